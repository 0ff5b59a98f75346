// Readable colours derived from Telegram's theme (pure). Telegram's own palettes give
// colours that fail WCAG AA as text on our surfaces (light: hint #999999 on #ffffff is
// 2.8:1, white on button #2481cc is 4.1:1, destructive #ff3b30 is 3.6:1), so essential
// text never uses them raw: each is moved toward a contrasting colour just far enough to
// reach 4.5:1 on every surface it sits on, and is left as Telegram gave it when it
// already does. See webapp/CLAUDE.md "Theme colours".

type RGB = [number, number, number];

export const MIN_TEXT_CONTRAST = 4.5;

/** #rgb / #rrggbb → [r, g, b] 0–255; null for anything else. */
export function parseHex(c: string | undefined): RGB | null {
  if (!c) return null;
  const hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(c.trim())?.[1];
  if (!hex) return null;
  const h = hex.length === 3 ? [...hex].map((x) => x + x).join('') : hex;
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16)) as RGB;
}

export function toHex(c: RGB): string {
  return '#' + c.map((v) => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, '0')).join('');
}

/** WCAG 2 relative luminance. */
export function luminance([r, g, b]: RGB): number {
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** WCAG 2 contrast ratio, 1–21. */
export function contrast(a: RGB, b: RGB): number {
  const la = luminance(a);
  const lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

function mix(a: RGB, b: RGB, t: number): RGB {
  // Rounded to whole channels, so the checked colour is the one written out.
  const m = (x: number, y: number) => Math.round(x + (y - x) * t);
  return [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])];
}

/**
 * `color` moved toward `toward` in small steps until its contrast with every colour in
 * `against` is at least `min`; `color` itself when it already is (or cannot be parsed).
 * When even `toward` does not reach `min`, the best step is returned.
 */
export function ensureContrast(color: string, against: (string | undefined)[], toward: string, min = MIN_TEXT_CONTRAST): string {
  const c = parseHex(color);
  const to = parseHex(toward);
  const bgs = against.map(parseHex).filter((x): x is RGB => x !== null);
  if (!c || !to || bgs.length === 0) return color;
  const worst = (x: RGB) => Math.min(...bgs.map((b) => contrast(x, b)));
  if (worst(c) >= min) return color;
  let best = c;
  for (let t = 0.05; t <= 1.0001; t += 0.05) {
    const x = mix(c, to, t);
    if (worst(x) >= min) return toHex(x);
    if (worst(x) > worst(best)) best = x;
  }
  return toHex(best);
}

/** Black or white, whichever contrasts more with `bg`. */
export function extreme(bg: string): string {
  const b = parseHex(bg);
  if (!b) return '#000000';
  return contrast(b, [0, 0, 0]) >= contrast(b, [255, 255, 255]) ? '#000000' : '#ffffff';
}

/**
 * The app's own text colours (CSS variable name → value) from Telegram's theme:
 * - hint, link, destructive: readable on bg and secondary_bg, moved toward text_color
 *   (or black/white when text_color is missing);
 * - button: the in-page button's background, moved away from button_text_color until the
 *   label reads (Telegram's native MainButton keeps its own colours).
 * Keys missing from the theme are left out, so the CSS defaults stay.
 */
export function readableVars(theme: Record<string, string | undefined>): Record<string, string> {
  const bg = theme.bg_color;
  const card = theme.secondary_bg_color;
  const surfaces = [bg, card].filter(Boolean);
  const text = theme.text_color ?? (bg ? extreme(bg) : undefined);
  const out: Record<string, string> = {};
  if (surfaces.length && text) {
    for (const [key, name] of [
      ['hint_color', '--app-hint-color'],
      ['link_color', '--app-link-color'],
      ['destructive_text_color', '--app-destructive-color'],
    ] as const) {
      const v = theme[key];
      if (v) out[name] = ensureContrast(v, surfaces, text);
    }
  }
  const btn = theme.button_color;
  const btnText = theme.button_text_color;
  if (btn && btnText) {
    // Away from the label: toward black under a light label, toward white under a dark one.
    out['--app-button-color'] = ensureContrast(btn, [btnText], extreme(btnText));
  }
  return out;
}
