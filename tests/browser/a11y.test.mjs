// Accessibility: axe-core (from npm, evaluated in the page) on the home screen in the
// light and the dark theme; no serious or critical violation. Not in ctest yet: run by
// hand (node --test a11y.test.mjs, env as in CLAUDE.md) until the app's findings are fixed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DARK_THEME, LIGHT_THEME, launchBrowser, openMiniApp, signInitData, startStack, tgUser } from './lib/harness.mjs';

let stack, browser;

async function axeSerious(app) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (a
  // <script> tag added to the page would be refused by it, as it should be).
  const require = createRequire(import.meta.url);
  await app.page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
  const res = await app.page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return res.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

before(async () => {
  stack = await startStack({ webappDir: process.env.TRYON_WEBAPP_DIST, worker: false });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

for (const [name, theme] of [['light', LIGHT_THEME], ['dark', DARK_THEME]]) {
  test(`axe finds no serious violation on home in the ${name} theme`, async () => {
    const app = await openMiniApp(browser, stack.base, { initData: signInitData(tgUser(760000 + name.length)), theme });
    await app.page.getByTestId('screen-home').waitFor();
    assert.deepEqual(await axeSerious(app), []);
    await app.context.close();
  });
}
