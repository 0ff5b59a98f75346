/// <reference types="vite/client" />
interface ImportMetaEnv {
  /** t.me link of the bot, for the "open in Telegram" screen. */
  readonly VITE_TRYON_BOT_URL?: string;
  /** Development only: a signed initData to launch with (`npm run dev`). */
  readonly VITE_DEV_INIT_DATA?: string;
}
interface ImportMeta {
  readonly env: ImportMetaEnv;
}
