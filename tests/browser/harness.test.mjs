// The harness itself, on a tiny stand-in app (so it runs before and apart from the real
// one): the launch as Telegram does it, the real server's initData check, the bridge in
// both directions, the page's CSP, compressed assets, and who may frame the page.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { DARK_THEME, launchBrowser, openMiniApp, signInitData, startStack, tgUser, writeDist } from './lib/harness.mjs';

// A stand-in for webapp/dist: the page reads the launch parameters from the fragment,
// signs in with the raw initData, follows theme_changed, and tells Telegram it is ready.
const FAKE_APP = `
const params = new URLSearchParams(location.hash.slice(1));
const status = document.getElementById('status');
const theme = (t) => { if (t && t.bg_color) document.body.style.background = t.bg_color; };
window.Telegram = { WebView: { receiveEvent(name, data) {
  if (name === 'theme_changed') theme(data.theme_params);
  window.__received = (window.__received || []).concat(name);
} } };
theme(JSON.parse(params.get('tgWebAppThemeParams') || '{}'));
const post = (name, data) => window.TelegramWebviewProxy.postEvent(name, JSON.stringify(data));
post('web_app_ready', {});
const initData = params.get('tgWebAppData');
if (!initData) {
  status.textContent = 'outside Telegram';
} else {
  fetch('/api/auth/telegram', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ init_data: initData }) })
    .then(async (r) => {
      const body = await r.json();
      if (!r.ok) { status.textContent = 'refused: ' + body.error.code; return; }
      const me = await fetch('/api/me', { headers: { Authorization: 'Bearer ' + body.token } });
      const m = await me.json();
      status.textContent = 'signed in as ' + m.user.first_name + ', lang ' + m.user.language_code;
    });
}
`;
const INDEX = `<!doctype html><html><head><meta charset="utf-8"><title>stand-in</title>
<script type="module" src="/assets/app-0001.js"></script></head>
<body><p id="status">loading</p><script>window.__inline = true;</script></body></html>`;

let stack, browser, dist;

before(async () => {
  dist = writeDist({
    'index.html': INDEX,
    'assets/app-0001.js': FAKE_APP,
    'assets/app-0001.js.gz': gzipSync(FAKE_APP),
    'assets/app-0001.js.br': brotliCompressSync(FAKE_APP),
  });
  stack = await startStack({ webappDir: dist });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (dist) rmSync(dist, { recursive: true, force: true });
});

test('a signed launch signs in through the real check; the bridge works both ways', async () => {
  const user = tgUser(880001, { first: 'Анна', lang: 'ru' });
  const app = await openMiniApp(browser, stack.base, { initData: signInitData(user) });
  await app.page.locator('#status').filter({ hasText: 'signed in as Анна, lang ru' }).waitFor();
  assert.deepEqual((await app.events()).map((e) => e.name), ['web_app_ready']);
  // The CSP: the module script from 'self' ran, the inline one did not.
  assert.equal(await app.page.evaluate(() => window.__inline), undefined);
  await app.shot('harness-signed-in');
  await app.press('theme_changed', { theme_params: DARK_THEME });
  const bg = await app.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(24, 34, 45)');
  assert.deepEqual(await app.page.evaluate(() => window.__received), ['theme_changed']);
  await app.shot('harness-dark');
  await app.context.close();
});

test('initData signed with another token is refused by the server', async () => {
  const forged = signInitData(tgUser(880002), { botToken: '7000000002:AAnot-the-bot-token' });
  const app = await openMiniApp(browser, stack.base, { initData: forged });
  await app.page.locator('#status').filter({ hasText: 'refused: initdata_bad_hash' }).waitFor();
  await app.context.close();
});

test('the page and its compressed assets arrive with the served headers', async () => {
  const app = await openMiniApp(browser, stack.base, {});
  const page = await app.page.request.get(`${stack.base}/some/route`);
  assert.equal(page.status(), 200);
  const h = page.headers();
  assert.equal(h['cache-control'], 'no-cache');
  assert.match(h['content-security-policy'], /frame-ancestors https:\/\/web\.telegram\.org/);
  assert.equal(h['x-frame-options'], undefined);
  const js = await app.page.request.get(`${stack.base}/assets/app-0001.js`, {
    headers: { 'Accept-Encoding': 'br' },
  });
  assert.equal(js.headers()['content-encoding'], 'br');
  assert.equal(await js.text(), FAKE_APP); // decoded by the client: the right bytes
  await app.page.locator('#status').filter({ hasText: 'outside Telegram' }).waitFor();
  await app.context.close();
});

test("Telegram's web client may frame the app; another site may not", async () => {
  // The framing sites are faked by routing their https origins to a page of the test's;
  // Chromium's local-network rules (a public site reaching 127.0.0.1) are turned off, as
  // they would block any loopback frame whatever its headers say.
  const other = await launchBrowser({
    args: ['--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,BlockInsecurePrivateNetworkRequests'],
  });
  const context = await other.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const host = (origin) =>
    page.route(`${origin}/**`, (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><iframe id="app" src="${stack.base}/" width="390" height="600"></iframe>`,
      }),
    );
  await host('https://web.telegram.org');
  await host('https://evil.example');
  const framed = async (url) => {
    await page.goto(url);
    const frame = await (await page.waitForSelector('#app')).contentFrame();
    await frame.waitForLoadState('load').catch(() => {});
    return frame.evaluate(() => document.title).catch(() => null);
  };
  assert.equal(await framed('https://web.telegram.org/k/'), 'stand-in');
  assert.notEqual(await framed('https://evil.example/'), 'stand-in');
  await other.close();
});
