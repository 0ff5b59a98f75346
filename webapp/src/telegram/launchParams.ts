/** Telegram's launch parameters, read the way Telegram passes them: in the URL fragment. */
export interface ThemeParams {
  [key: string]: string | undefined;
  bg_color?: string;
  text_color?: string;
  hint_color?: string;
  link_color?: string;
  button_color?: string;
  button_text_color?: string;
  secondary_bg_color?: string;
  destructive_text_color?: string;
}

export interface LaunchInfo {
  /** The raw initData string, exactly as Telegram signed it (what the server checks). */
  initData: string;
  version: string;
  platform: string;
  themeParams: ThemeParams;
  /** From the initData's `user` field, when it parses. */
  languageCode: string | null;
  startParam: string | null;
}

/** "6.10" vs "6.9": compares dotted versions numerically; negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Parses a URL fragment or query string (`#tgWebAppData=...&tgWebAppVersion=...`).
 * Returns null when there is no initData: the page was not opened by Telegram.
 */
export function parseLaunchParams(fragment: string): LaunchInfo | null {
  const s = fragment.replace(/^[#?]/, '');
  if (s === '') return null;
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(s);
  } catch {
    return null;
  }
  const initData = params.get('tgWebAppData');
  if (initData === null || initData === '') return null;
  return {
    initData,
    version: params.get('tgWebAppVersion') ?? '6.0',
    platform: params.get('tgWebAppPlatform') ?? 'unknown',
    themeParams: parseTheme(params.get('tgWebAppThemeParams')),
    languageCode: languageOf(initData),
    startParam: params.get('tgWebAppStartParam') ?? new URLSearchParams(initData).get('start_param'),
  };
}

function parseTheme(raw: string | null): ThemeParams {
  if (raw === null || raw === '') return {};
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
    const out: ThemeParams = {};
    for (const [k, c] of Object.entries(v as Record<string, unknown>)) {
      if (typeof c === 'string' && /^#[0-9a-fA-F]{3,8}$/.test(c)) out[k] = c;
    }
    return out;
  } catch {
    return {};
  }
}

function languageOf(initData: string): string | null {
  const user = new URLSearchParams(initData).get('user');
  if (user === null) return null;
  try {
    const u: unknown = JSON.parse(user);
    if (typeof u === 'object' && u !== null && 'language_code' in u) {
      const lc = (u as { language_code: unknown }).language_code;
      return typeof lc === 'string' ? lc : null;
    }
  } catch {
    return null;
  }
  return null;
}

/** Whether the platform draws Telegram's native MainButton (Bot API 6.1+, a real client). */
export function hasNativeMainButton(info: Pick<LaunchInfo, 'platform' | 'version'>): boolean {
  return info.platform !== 'unknown' && compareVersions(info.version, '6.1') >= 0;
}

/** `downloadFile` arrived in Bot API 8.0. */
export function hasDownloadFile(info: Pick<LaunchInfo, 'platform' | 'version'>): boolean {
  return info.platform !== 'unknown' && compareVersions(info.version, '8.0') >= 0;
}

const STORE_KEY = 'tryon.launch';

/**
 * The fragment of this page load, or — after an in-app reload that lost it — the one
 * kept in sessionStorage (the tab's own; initData is not a secret the app must hide from
 * itself, and it is never sent anywhere but our /api/auth/telegram).
 */
export function readLaunchFragment(): string {
  const hash = window.location.hash;
  if (hash.includes('tgWebAppData=')) {
    try {
      sessionStorage.setItem(STORE_KEY, hash);
    } catch {
      /* storage may be disabled; the fragment is still used */
    }
    return hash;
  }
  try {
    return sessionStorage.getItem(STORE_KEY) ?? hash;
  } catch {
    return hash;
  }
}
