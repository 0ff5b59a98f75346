import { describe, expect, it } from 'vitest';
import { contrast, ensureContrast, parseHex, readableVars } from './contrast';

// Telegram's real default palettes (web K / iOS light, web K dark, Android night blue).
const LIGHT = { bg_color: '#ffffff', text_color: '#000000', hint_color: '#999999', link_color: '#2481cc', button_color: '#2481cc', button_text_color: '#ffffff', secondary_bg_color: '#efeff3', destructive_text_color: '#ff3b30' };
const DARK = { bg_color: '#212121', text_color: '#ffffff', hint_color: '#aaaaaa', link_color: '#8774e1', button_color: '#8774e1', button_text_color: '#ffffff', secondary_bg_color: '#0f0f0f', destructive_text_color: '#ff595a' };
const NIGHT = { bg_color: '#18222d', text_color: '#ffffff', hint_color: '#b1c3d5', link_color: '#62bcf9', button_color: '#2ea6ff', button_text_color: '#ffffff', secondary_bg_color: '#131415', destructive_text_color: '#ef5b5b' };

const c = (a: string | undefined, b: string) => contrast(parseHex(a ?? '')!, parseHex(b)!);

describe('contrast', () => {
  it('matches the WCAG figures', () => {
    expect(c('#000000', '#ffffff')).toBeCloseTo(21, 5);
    expect(c('#999999', '#ffffff')).toBeCloseTo(2.85, 2);
  });

  it('keeps a colour that already reads, moves one that does not just enough', () => {
    expect(ensureContrast('#aaaaaa', ['#212121'], '#ffffff')).toBe('#aaaaaa');
    const h = ensureContrast('#999999', ['#ffffff', '#efeff3'], '#000000');
    expect(c(h, '#ffffff')).toBeGreaterThanOrEqual(4.5);
    expect(c(h, '#efeff3')).toBeGreaterThanOrEqual(4.5);
    expect(c(h, '#efeff3')).toBeLessThan(6);
  });

  it('ignores what it cannot parse', () => {
    expect(ensureContrast('red', ['#ffffff'], '#000000')).toBe('red');
    expect(readableVars({})).toEqual({});
  });

  for (const [name, theme] of Object.entries({ LIGHT, DARK, NIGHT })) {
    it(`gives readable text in the ${name} palette`, () => {
      const v = readableVars(theme);
      for (const k of ['--app-hint-color', '--app-link-color', '--app-destructive-color']) {
        expect(c(v[k], theme.bg_color)).toBeGreaterThanOrEqual(4.5);
        expect(c(v[k], theme.secondary_bg_color)).toBeGreaterThanOrEqual(4.5);
      }
      expect(c(v['--app-button-color'], theme.button_text_color)).toBeGreaterThanOrEqual(4.5);
    });
  }
});
