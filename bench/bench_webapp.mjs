// bench/bench_webapp.mjs - the web app's figures in Debian's Chromium, launched as Telegram
// launches it (tests/browser/lib/harness.mjs), against tryon-server on loopback: first-
// screen JavaScript and bytes transferred to the balance, time to the balance under 4×
// CPU throttling (cold loads), and the try-on screen's interaction latency. Prints
// figures; asserts nothing. Run through bench/bench_webapp.sh (it sets the env).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LIGHT_THEME, launchBrowser, launchUrl, signInitData, startStack, tgUser } from '../tests/browser/lib/harness.mjs';

const DIST = process.env.TRYON_WEBAPP_DIST;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const RATE = Number(process.env.BENCH_CPU_RATE ?? 4);
let nextUser = 990001;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
const ms = (xs) => `median ${median(xs).toFixed(0)} ms (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)}; ${xs.map((x) => x.toFixed(0)).join(', ')})`;

// Runs in the page before its scripts: Telegram's bridge (as the harness plays it) and the
// moment, on the page's clock (ms since navigation start), the balance first shows a number.
function pageInit() {
  window.__tgEvents = [];
  window.TelegramWebviewProxy = {
    postEvent(name, data) {
      let parsed = null;
      try {
        parsed = data ? JSON.parse(data) : null;
      } catch {
        /* kept out */
      }
      window.__tgEvents.push({ name, data: parsed });
    },
  };
  const seen = () => {
    const el = document.querySelector('[data-testid="balance-total"]');
    if (el && el.textContent && el.getClientRects().length && window.__balanceAt === undefined) {
      window.__balanceAt = performance.now();
      return true;
    }
    return false;
  };
  new MutationObserver((_, obs) => {
    if (seen()) obs.disconnect();
  }).observe(document, { childList: true, subtree: true, characterData: true });
}

/** A fresh (cold: empty cache) phone-sized context, CPU throttled by `rate`, network accounted. */
async function open(browser, base, rate) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true, locale: 'en-US' });
  await context.addInitScript(pageInit);
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  if (rate > 1) await cdp.send('Emulation.setCPUThrottlingRate', { rate });
  const reqs = new Map();
  cdp.on('Network.responseReceived', (e) => reqs.set(e.requestId, { url: e.response.url, type: e.type, bytes: 0 }));
  cdp.on('Network.loadingFinished', (e) => {
    const r = reqs.get(e.requestId);
    if (r) r.bytes = e.encodedDataLength;
  });
  return { context, page, cdp, reqs };
}

async function loadHome(browser, base, rate) {
  const s = await open(browser, base, rate);
  const url = launchUrl(base, { initData: signInitData(tgUser(nextUser++)), theme: LIGHT_THEME });
  const t0 = performance.now();
  await s.page.goto(url);
  await s.page.getByTestId('balance-total').waitFor();
  s.wall = performance.now() - t0;
  s.balanceAt = await s.page.evaluate(() => window.__balanceAt);
  return s;
}

/** Time on the page's clock from a click on `selector` until `done()` holds (checked each frame). */
function clickLatency(page, selector, doneSrc) {
  return page.evaluate(
    ([sel, src]) =>
      new Promise((ok) => {
        const done = new Function(`return (${src})`)();
        const t0 = performance.now();
        document.querySelector(sel).click();
        const check = () => (done() ? ok(performance.now() - t0) : requestAnimationFrame(check));
        check();
      }),
    [selector, doneSrc],
  );
}

async function mainButton(page) {
  const setups = (await page.evaluate(() => window.__tgEvents)).filter((e) => e.name === 'web_app_setup_main_button');
  return setups.length ? setups[setups.length - 1].data ?? {} : {};
}

async function advanceTo(page, testId) {
  const end = Date.now() + 30000;
  while (Date.now() < end) {
    if (await page.getByTestId(testId).first().isVisible()) return;
    const b = await mainButton(page);
    if (b.is_visible && b.is_active !== false && !b.is_progress_visible)
      await page.evaluate(() => window.Telegram.WebView.receiveEvent('main_button_pressed', null));
    await page.waitForTimeout(100);
  }
  throw new Error(`${testId} did not appear`);
}

/** First-screen JS from dist/index.html: the entry script and its modulepreloads, gzipped. */
function firstScreenJs() {
  const html = readFileSync(join(DIST, 'index.html'), 'utf8');
  const files = [...html.matchAll(/(?:src|href)="\/?(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
  let raw = 0;
  let gz = 0;
  for (const f of files) {
    raw += statSync(join(DIST, f)).size;
    gz += statSync(join(DIST, `${f}.gz`)).size;
  }
  return { files, raw, gz };
}

const dir = mkdtempSync(join(tmpdir(), 'tryon-bench-web-'));
const person = join(dir, 'person.jpg');
const item = join(dir, 'item.jpg');
execFileSync('convert', ['-size', '768x1024', 'gradient:#c9d6e3-#3b5b7a', '-quality', '90', person]);
execFileSync('convert', ['-size', '800x800', 'xc:#f4f4f4', '-fill', '#c0392b', '-draw', 'rectangle 200,150 600,700', '-quality', '90', item]);

const stack = await startStack({ webappDir: DIST, worker: false });
const browser = await launchBrowser();
try {
  // (a) bytes: one cold, unthrottled load to the balance.
  const js = firstScreenJs();
  console.log(`first-screen JS (dist/index.html: ${js.files.join(', ')}): ${kb(js.raw)} raw, ${kb(js.gz)} gzipped (target <= 150 KB)`);
  {
    const s = await loadHome(browser, stack.base, 1);
    const rs = [...s.reqs.values()];
    const sum = (f) => rs.filter(f).reduce((a, r) => a + r.bytes, 0);
    console.log(
      `transferred to the balance (cold, encodedDataLength, as Chromium asks: br): ${kb(sum(() => true))} in ${rs.length} responses` +
        ` (JS ${kb(sum((r) => r.type === 'Script'))}, CSS ${kb(sum((r) => r.type === 'Stylesheet'))}, HTML ${kb(sum((r) => r.type === 'Document'))}, API ${kb(sum((r) => r.url.includes('/api/')))})`,
    );
    await s.context.close();
  }

  // (b) cold loads under CPU throttling.
  const onPage = [];
  const wall = [];
  for (let i = 0; i < RUNS; i++) {
    const s = await loadHome(browser, stack.base, RATE);
    onPage.push(s.balanceAt);
    wall.push(s.wall);
    await s.context.close();
  }
  console.log(`${RATE}x CPU, loopback, cold: navigation → balance-total shown: ${ms(onPage)} (target < 1500 ms)`);
  console.log(`  same, as the driver sees it (goto → visible): ${ms(wall)}`);

  // (c) try-on interaction latency, same throttling, each run in a fresh context.
  const toTryon = [];
  const toCategory = [];
  for (let i = 0; i < RUNS; i++) {
    const s = await loadHome(browser, stack.base, RATE);
    toTryon.push(await clickLatency(s.page, '[data-testid="tool-tryon"]', `() => !!document.querySelector('[data-testid="screen-tryon"]')`));
    await s.page.getByTestId('person-file-input').setInputFiles(person);
    await advanceTo(s.page, 'item-file-input');
    await s.page.getByTestId('item-file-input').setInputFiles(item);
    await advanceTo(s.page, 'category-top');
    toCategory.push(
      await clickLatency(s.page, '[data-testid="category-dress"]', `() => document.querySelector('[data-testid="category-dress"]')?.getAttribute('aria-pressed') === 'true'`),
    );
    await s.context.close();
  }
  console.log(`${RATE}x CPU: click tool-tryon → screen-tryon shown (lazy chunk, cold): ${ms(toTryon)}`);
  console.log(`${RATE}x CPU: click a category → its selected state: ${ms(toCategory)}`);
} finally {
  await browser.close();
  await stack.stop();
  rmSync(dir, { recursive: true, force: true });
}
