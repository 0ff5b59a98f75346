import { DICTS } from '../i18n/strings';
import { langFromCode } from '../i18n/format';
import { openBotLink } from '../telegram/sdk';

/** Opened without initData (a plain browser): say so and offer the bot, never a blank page. */
export function OutsideTelegram() {
  const lang = langFromCode(typeof navigator !== 'undefined' ? navigator.language : null);
  const d = DICTS[lang];
  const bot: string = import.meta.env.VITE_TRYON_BOT_URL ?? 'https://t.me/';
  return (
    <main data-testid="screen-outside-telegram" className="mx-auto flex max-w-md flex-col items-center gap-4 p-6 text-center">
      <div aria-hidden="true" className="text-5xl">
        👕
      </div>
      <h1 className="text-xl font-semibold">{d.outsideTitle}</h1>
      <p className="text-hint">{d.outsideText}</p>
      <a
        href={bot}
        onClick={(e) => {
          e.preventDefault();
          openBotLink(bot);
        }}
        className="min-h-11 rounded-xl bg-btn px-5 py-3 font-semibold text-btn-fg"
      >
        {d.outsideButton}
      </a>
    </main>
  );
}
