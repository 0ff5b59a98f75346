import {
  backButton,
  closingBehavior,
  downloadFile,
  hapticFeedback,
  init,
  mainButton,
  miniApp,
  openTelegramLink,
  themeParams,
  viewport,
} from '@telegram-apps/sdk-react';
import { readableVars } from './contrast';
import type { LaunchInfo } from './launchParams';

/** Runs a bridge call that may be unavailable on this client; never throws. */
function safe(fn: () => unknown): void {
  try {
    const r = fn();
    if (r instanceof Promise) r.catch(() => undefined);
  } catch {
    /* not supported by this client: the app falls back to its in-page controls */
  }
}

/** Theme keys as CSS variables (the same names the SDK's bindCssVars uses). */
export function applyThemeVars(theme: Record<string, string | undefined>, root = document.documentElement): void {
  for (const [k, v] of Object.entries(theme)) {
    if (v) root.style.setProperty('--tg-theme-' + k.replace(/_/g, '-'), v);
  }
  applyReadableVars(theme, root);
}

/** The app's readable text colours (contrast.ts) derived from `theme`, as --app-* variables. */
export function applyReadableVars(theme: Record<string, string | undefined>, root = document.documentElement): void {
  for (const [name, v] of Object.entries(readableVars(theme))) root.style.setProperty(name, v);
}

let started = false;

/**
 * The init order (the reactjs-template's): SDK init → back button → mini app and theme
 * bound to CSS variables (followed live on themeChanged) → viewport (expand, safe-area
 * and content-safe-area insets as CSS variables) → closing behaviour, main button → ready.
 */
export function startTelegram(info: LaunchInfo): void {
  if (started) return;
  started = true;
  // The launch's theme first, so the first paint has the right colours even before the bridge answers.
  applyThemeVars(info.themeParams);
  // Telegram's custom style injection would be an inline <style>, which the CSP refuses.
  safe(() => init({ acceptCustomStyles: false }));
  safe(() => backButton.mount.ifAvailable());
  safe(() => themeParams.mountSync.ifAvailable());
  safe(() => themeParams.bindCssVars.ifAvailable());
  // The derived colours follow the theme live too (theme_changed updates the state).
  safe(() => themeParams.state.sub((st) => applyReadableVars(st)));
  safe(() => miniApp.mountSync.ifAvailable());
  safe(() => miniApp.bindCssVars.ifAvailable());
  safe(() => {
    const m = viewport.mount.ifAvailable();
    const after = () => {
      safe(() => viewport.bindCssVars.ifAvailable());
      safe(() => viewport.expand.ifAvailable());
    };
    const [called, promise] = m.length === 2 ? m : [false, undefined];
    if (called && promise) promise.then(after, after);
    else after();
  });
  safe(() => closingBehavior.mount.ifAvailable());
  safe(() => mainButton.mount.ifAvailable());
  safe(() => miniApp.ready.ifAvailable());
}

export function haptic(kind: 'success' | 'error' | 'warning'): void {
  safe(() => hapticFeedback.notificationOccurred.ifAvailable(kind));
}

export function haptic_select(): void {
  safe(() => hapticFeedback.selectionChanged.ifAvailable());
}

export function setClosingConfirmation(on: boolean): void {
  safe(() => (on ? closingBehavior.enableConfirmation.ifAvailable() : closingBehavior.disableConfirmation.ifAvailable()));
}

/** Telegram's download sheet where supported (Bot API 8.0); false when the caller should just open the link. */
export function tryDownload(url: string, fileName: string): boolean {
  try {
    if (!downloadFile.isAvailable()) return false;
    downloadFile(url, fileName).catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

export function openBotLink(url: string): void {
  try {
    if (openTelegramLink.isAvailable()) {
      openTelegramLink(url);
      return;
    }
  } catch {
    /* fall through to a plain navigation */
  }
  window.location.href = url;
}

export { backButton, mainButton };
