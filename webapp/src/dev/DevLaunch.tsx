import { useState } from 'react';

/**
 * Development only (imported behind `import.meta.env.DEV`, so the production build has
 * none of it): the app cannot sign initData without the bot token, so a developer pastes
 * one signed by the test bot, or sets VITE_DEV_INIT_DATA. It becomes a Telegram-style
 * launch fragment and the page reloads as if Telegram had opened it.
 */
export function devFragmentFromEnv(): string | null {
  const raw = import.meta.env.VITE_DEV_INIT_DATA;
  return raw ? fragmentFor(raw) : null;
}

function fragmentFor(initData: string): string {
  const p = new URLSearchParams();
  p.set('tgWebAppData', initData);
  p.set('tgWebAppVersion', '8.0');
  p.set('tgWebAppPlatform', 'unknown');
  p.set('tgWebAppThemeParams', '{}');
  return '#' + p.toString();
}

export function DevLaunch() {
  const [value, setValue] = useState('');
  return (
    <main className="mx-auto flex max-w-md flex-col gap-3 p-6">
      <h1 className="text-xl font-semibold">Development launch</h1>
      <p className="text-hint">Paste an initData string signed with the test bot token (or set VITE_DEV_INIT_DATA).</p>
      <label htmlFor="dev-init" className="font-medium">
        initData
      </label>
      <textarea id="dev-init" className="h-40 rounded-xl bg-card p-2 font-mono text-sm" value={value} onChange={(e) => setValue(e.target.value)} />
      <button
        type="button"
        className="min-h-11 rounded-xl bg-btn px-4 py-2 font-semibold text-btn-fg disabled:opacity-50"
        disabled={value.trim() === ''}
        onClick={() => {
          window.location.hash = fragmentFor(value.trim()).slice(1);
          window.location.reload();
        }}
      >
        Launch
      </button>
    </main>
  );
}
