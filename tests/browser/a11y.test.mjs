// Accessibility: axe-core (from npm, evaluated in the page) on the home, try-on, history
// and wallet screens in Telegram's light theme and two dark ones; no serious or critical
// violation (ctest browser_a11y).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  DARK_K_THEME,
  DARK_THEME,
  LIGHT_THEME,
  launchBrowser,
  openMiniApp,
  signInitData,
  startStack,
  tgUser,
} from './lib/harness.mjs';

let stack, browser;
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

async function axeSerious(app) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (a
  // <script> tag added to the page would be refused by it, as it should be).
  if (!(await app.page.evaluate(() => typeof window.axe === 'object'))) await app.page.evaluate(AXE);
  const res = await app.page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return res.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => `${n.target.join(' ')} (${n.failureSummary?.split('\n').slice(1).join(' ').trim()})`).join(', ')}`);
}

before(async () => {
  stack = await startStack({ webappDir: process.env.TRYON_WEBAPP_DIST, worker: false });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

// Each screen from home, as a person reaches it; the home screen waits for the balance.
const SCREENS = {
  home: null,
  tryon: 'tool-tryon',
  history: 'nav-history',
  wallet: 'nav-wallet',
};

let uid = 760000;
for (const [name, theme] of [['light', LIGHT_THEME], ['dark', DARK_THEME], ['dark (Web K)', DARK_K_THEME]]) {
  test(`axe finds no serious violation in the ${name} theme`, async (t) => {
    const app = await openMiniApp(browser, stack.base, { initData: signInitData(tgUser(uid++)), theme });
    try {
      for (const [screen, via] of Object.entries(SCREENS)) {
        await t.test(screen, async () => {
          await app.page.getByTestId('balance-total').first().waitFor();
          if (!via) return assert.deepEqual(await axeSerious(app), []);
          await app.page.getByTestId(via).click();
          await app.page.getByTestId(`screen-${screen}`).waitFor();
          await app.page.waitForLoadState('networkidle');
          try {
            assert.deepEqual(await axeSerious(app), []);
          } finally {
            await app.press('back_button_pressed');
            await app.page.getByTestId('screen-home').waitFor();
          }
        });
      }
    } finally {
      await app.context.close();
    }
  });
}
