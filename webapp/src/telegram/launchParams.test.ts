import { describe, expect, it } from 'vitest';
import { compareVersions, hasDownloadFile, hasNativeMainButton, parseLaunchParams } from './launchParams';

const user = JSON.stringify({ id: 1, first_name: 'Ann', language_code: 'ru' });
const initData = new URLSearchParams({ query_id: 'Q', user, auth_date: '1764362880', hash: 'abc' }).toString();

function fragment(extra: Record<string, string> = {}): string {
  const p = new URLSearchParams({
    tgWebAppData: initData,
    tgWebAppVersion: '8.0',
    tgWebAppPlatform: 'ios',
    tgWebAppThemeParams: JSON.stringify({ bg_color: '#17212b', text_color: '#ffffff', bad: 'red' }),
    ...extra,
  });
  return '#' + p.toString();
}

describe('launch parameters', () => {
  it('reads the fragment as Telegram passes it, keeping initData raw', () => {
    const lp = parseLaunchParams(fragment());
    expect(lp).not.toBeNull();
    expect(lp?.initData).toBe(initData);
    expect(lp?.version).toBe('8.0');
    expect(lp?.platform).toBe('ios');
    expect(lp?.themeParams).toEqual({ bg_color: '#17212b', text_color: '#ffffff' });
    expect(lp?.languageCode).toBe('ru');
  });

  it('no initData means not launched by Telegram', () => {
    expect(parseLaunchParams('')).toBeNull();
    expect(parseLaunchParams('#/history')).toBeNull();
    expect(parseLaunchParams('#tgWebAppVersion=7.0')).toBeNull();
  });

  it('tolerates a broken theme and a missing version or platform', () => {
    const lp = parseLaunchParams('#' + new URLSearchParams({ tgWebAppData: 'hash=1', tgWebAppThemeParams: '{' }).toString());
    expect(lp).toMatchObject({ themeParams: {}, version: '6.0', platform: 'unknown', languageCode: null });
  });

  it('versions compare numerically; the MainButton needs a real platform and 6.1', () => {
    expect(compareVersions('6.10', '6.9')).toBeGreaterThan(0);
    expect(compareVersions('6.1', '6.1.0')).toBe(0);
    expect(hasNativeMainButton({ platform: 'android', version: '6.1' })).toBe(true);
    expect(hasNativeMainButton({ platform: 'android', version: '6.0' })).toBe(false);
    expect(hasNativeMainButton({ platform: 'unknown', version: '8.0' })).toBe(false);
    expect(hasDownloadFile({ platform: 'tdesktop', version: '8.0' })).toBe(true);
    expect(hasDownloadFile({ platform: 'tdesktop', version: '7.10' })).toBe(false);
  });
});
