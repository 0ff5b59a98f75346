// The scenarios on the real app (webapp/dist, TRYON_WEBAPP_DIST), launched as
// Telegram launches it (lib/harness.mjs). Only the agreed data-testids are used. Steps
// are driven the native way: platform ios + version 8.0 make the MainButton Telegram's,
// so a step's primary action is press('main_button_pressed') once the app has shown the
// button (its last web_app_setup_main_button event says visible and active).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOT_TOKEN,
  DARK_THEME,
  LIGHT_THEME,
  launchBrowser,
  openMiniApp,
  signInitData,
  startStack,
  tgUser,
} from './lib/harness.mjs';

const DIST = process.env.TRYON_WEBAPP_DIST;
const STEP_MS = 15000;
const RESULT_MS = 90000;

let stack, browser, files;
let nextTg = 770001;
const newUser = (opts) => tgUser(nextTg++, opts);

// ----------------------------------------------------------------------------- images

function makeImages() {
  const dir = mkdtempSync(join(tmpdir(), 'tryon-photos-'));
  const im = (args) => execFileSync('convert', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const person = join(dir, 'person.jpg');
  const item = join(dir, 'item.jpg');
  const gif = join(dir, 'photo.jpg'); // a GIF under a JPEG name
  const big = join(dir, 'phone-12mp.jpg');
  im(['-size', '768x1024', 'gradient:#c9d6e3-#3b5b7a', '-fill', '#e0b090', '-draw', 'ellipse 384,260 90,110 0,360',
    '-fill', '#334455', '-draw', 'rectangle 250,380 520,900', '-quality', '90', person]);
  im(['-size', '800x800', 'xc:#f4f4f4', '-fill', '#c0392b', '-draw', 'polygon 200,150 600,150 680,300 600,320 600,700 200,700 200,320 120,300',
    '-quality', '90', item]);
  im(['-size', '400x400', 'xc:#88aa33', `gif:${gif}`]);
  // A 12 MP phone photo near 9 MB: noise keeps JPEG from compressing it away.
  im(['-size', '4032x3024', 'plasma:', '-attenuate', '0.6', '+noise', 'Gaussian', '-quality', '92', big]);
  return { dir, person, item, gif, big };
}

// ------------------------------------------------------------------------ API helpers

async function api(path, { token, method = 'GET', body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined && !(body instanceof FormData)) h['Content-Type'] = 'application/json';
  const r = await fetch(`${stack.base}${path}`, {
    method,
    headers: h,
    body: body === undefined || body instanceof FormData ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function signInApi(user) {
  const r = await api('/api/auth/telegram', { method: 'POST', body: { init_data: signInitData(user) } });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.token;
}

async function uploadApi(token, path, name = 'photo.jpg', type = 'image/jpeg') {
  const form = new FormData();
  form.append('file', new Blob([readFileSync(path)], { type }), name);
  return api('/api/uploads', { token, method: 'POST', body: form });
}

function cli(...args) {
  return execFileSync(process.env.TRYONCTL_BIN, args, {
    encoding: 'utf8',
    env: { ...process.env, TRYON_ENV_FILE: '/dev/null', TRYON_DATABASE_URL: stack.conninfo },
  });
}

const balanceOf = (tg) => JSON.parse(cli('credits', 'balance', String(tg), '--json')).total;

// ------------------------------------------------------------------------ app helpers

const el = (app, id) => app.page.getByTestId(id);

async function signedIn(user, launch = {}) {
  const app = await openMiniApp(browser, stack.base, { initData: signInitData(user, { botToken: BOT_TOKEN }), ...launch });
  await el(app, 'screen-home').waitFor({ timeout: STEP_MS });
  return app;
}

/** The MainButton as the app last set it up. */
async function mainButton(app) {
  const setups = (await app.events()).filter((e) => e.name === 'web_app_setup_main_button');
  return setups.length ? setups[setups.length - 1].data ?? {} : {};
}

/** Presses the MainButton (when shown and active) until `target` is visible. */
async function advanceTo(app, target, timeout = STEP_MS) {
  const end = Date.now() + timeout;
  const loc = typeof target === 'string' ? el(app, target) : target;
  while (Date.now() < end) {
    if (await loc.first().isVisible()) return;
    const b = await mainButton(app);
    if (b.is_visible && b.is_active !== false && !b.is_progress_visible) await app.press('main_button_pressed');
    await app.page.waitForTimeout(250);
  }
  throw new Error(`${typeof target === 'string' ? target : 'target'} did not appear`);
}

/** Home → the try-on quiz with two uploads → the category → confirm (cost shown). */
async function quizToConfirm(app, shots) {
  await el(app, 'tool-tryon').click();
  await el(app, 'screen-tryon').waitFor({ timeout: STEP_MS });
  if (shots) await app.shot('tryon-person');
  await el(app, 'person-file-input').setInputFiles(files.person);
  await advanceTo(app, 'item-file-input');
  if (shots) await app.shot('tryon-item');
  await el(app, 'item-file-input').setInputFiles(files.item);
  await advanceTo(app, 'category-top');
  if (shots) await app.shot('tryon-category');
  await el(app, 'category-top').click();
  await advanceTo(app, 'confirm-cost');
  if (shots) await app.shot('tryon-confirm');
}

async function resultLoaded(app) {
  await el(app, 'screen-result').waitFor({ timeout: RESULT_MS });
  const img = el(app, 'result-image');
  await img.waitFor();
  await app.page.waitForFunction(
    (node) => node && node.complete && node.naturalWidth > 0,
    await img.elementHandle(),
    { timeout: STEP_MS },
  );
}

async function background(app) {
  return app.page.evaluate(() => {
    const pick = (n) => getComputedStyle(n).backgroundColor;
    const body = pick(document.body);
    return body !== 'rgba(0, 0, 0, 0)' ? body : pick(document.documentElement);
  });
}

// ---------------------------------------------------------------------------- set-up

before(async () => {
  if (!DIST) throw new Error('TRYON_WEBAPP_DIST is not set: run through ctest (scripts/test)');
  files = makeImages();
  stack = await startStack({ webappDir: DIST });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (files) rmSync(files.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------- scenarios

test('sign-in lands on home with the balance', async () => {
  const user = newUser({ first: 'Anna', lang: 'en' });
  const app = await signedIn(user);
  const total = balanceOf(user.id);
  assert.match(await el(app, 'balance-total').first().innerText(), new RegExp(`\\b${total}\\b`));
  assert.ok((await app.events()).some((e) => e.name === 'web_app_ready'));
  await app.shot('home');
  assert.deepEqual(app.errors, []);
  await app.context.close();
});

test('a full try-on from two uploads reaches the result, with before/after and the free-tier watermark note', async () => {
  const user = newUser();
  const app = await signedIn(user);
  await quizToConfirm(app, true);
  assert.match(await el(app, 'confirm-cost').innerText(), /\b2\b/);
  await advanceTo(app, app.page.locator('[data-testid="screen-progress"], [data-testid="screen-result"]'));
  if (await el(app, 'screen-progress').isVisible()) await app.shot('progress');
  await resultLoaded(app);
  await el(app, 'before-after').waitFor();
  // Paid from the free allowance: the result says it carries a watermark.
  await el(app, 'watermark-note').waitFor();
  await app.shot('result');
  await app.context.close();
});

test('a 9 MB phone photo is downscaled on the device and accepted', async () => {
  const size = statSync(files.big).size;
  assert.ok(size > 5 * 1024 * 1024, `the test photo is ${size} bytes, not over the 5 MB limit`);
  const user = newUser();
  const app = await signedIn(user);
  await el(app, 'tool-tryon').click();
  await el(app, 'screen-tryon').waitFor();
  await el(app, 'person-file-input').setInputFiles(files.big);
  await advanceTo(app, 'item-file-input', 30000);
  assert.equal(await el(app, 'error-message').count(), 0);
  const long = stack.sql(
    `SELECT greatest(u.width, u.height) FROM uploads u JOIN users s ON s.id = u.user_id WHERE s.telegram_id = ${user.id}`,
  );
  assert.ok(Number(long) > 0 && Number(long) <= 2560, `stored long side ${long}`);
  await app.shot('tryon-after-big-photo');
  await app.context.close();
});

test("a GIF renamed .jpg gets the server's message", async () => {
  const user = newUser();
  // What the server says about these bytes, asked directly.
  const token = await signInApi(user);
  const direct = await uploadApi(token, files.gif, 'photo.jpg', 'image/jpeg');
  assert.ok(direct.status >= 400, `the server took a GIF: ${direct.status}`);
  const app = await signedIn(user);
  await el(app, 'tool-tryon').click();
  await el(app, 'screen-tryon').waitFor();
  await el(app, 'person-file-input').setInputFiles(files.gif);
  await el(app, 'error-message').waitFor({ timeout: STEP_MS });
  assert.match(await el(app, 'error-message').innerText(), new RegExp(direct.json.error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'));
  await app.shot('tryon-gif-refused');
  await app.context.close();
});

test('insufficient credits open the wallet', async () => {
  const user = newUser();
  await signInApi(user); // the wallet exists from the first sign-in
  const total = balanceOf(user.id);
  if (total > 1) cli('credits', 'revoke', String(user.id), String(total - 1), '--reason', 'browser test: a low balance');
  assert.equal(balanceOf(user.id), 1);
  const app = await signedIn(user);
  await quizToConfirm(app, false);
  await advanceTo(app, 'screen-wallet');
  await app.shot('wallet-insufficient');
  assert.equal(balanceOf(user.id), 1); // nothing was charged
  await app.context.close();
});

test('history lists the results and deletes one', async () => {
  const user = newUser();
  const token = await signInApi(user);
  const p = await uploadApi(token, files.person);
  const i = await uploadApi(token, files.item);
  const t = await api('/api/tryon', {
    token,
    method: 'POST',
    headers: { 'Idempotency-Key': `browser-history-${user.id}` },
    body: { person_upload_id: p.json.id, item_upload_id: i.json.id, category: 'top' },
  });
  assert.equal(t.status, 202, JSON.stringify(t.json));
  for (let n = 0; n < 300; n++) {
    const j = await api(`/api/jobs/${t.json.job_id}`, { token });
    if (j.json.state === 'succeeded') break;
    assert.ok(!['failed', 'cancelled'].includes(j.json.state), `the try-on ${j.json.state}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const app = await signedIn(user);
  await el(app, 'nav-history').click();
  await el(app, 'screen-history').waitFor();
  await el(app, 'history-item').first().waitFor();
  assert.equal(await el(app, 'history-item').count(), 1);
  await app.shot('history');
  await el(app, 'history-item').first().click();
  await resultLoaded(app);
  await el(app, 'delete-result').click();
  // A confirmation through Telegram's popup, when the app asks for one: answer with the
  // destructive button.
  await app.page.waitForTimeout(300);
  const popup = (await app.events()).filter((e) => e.name === 'web_app_open_popup').pop();
  if (popup) {
    const buttons = popup.data?.buttons ?? [];
    const yes = buttons.find((b) => b.type === 'destructive') ?? buttons.find((b) => b.type !== 'cancel') ?? buttons[0];
    await app.press('popup_closed', { button_id: yes?.id });
  }
  await el(app, 'screen-history').waitFor({ timeout: STEP_MS }).catch(async () => {
    await app.press('back_button_pressed');
    await el(app, 'screen-history').waitFor({ timeout: STEP_MS });
  });
  await app.page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 0, null, {
    timeout: STEP_MS,
  });
  const list = await api('/api/generations', { token });
  assert.equal(list.json.items.length, 0);
  await app.shot('history-empty');
  await app.context.close();
});

test('dark theme: the page follows the theme parameters, and theme_changed live', async () => {
  const app = await signedIn(newUser(), { theme: DARK_THEME });
  assert.equal(await background(app), 'rgb(24, 34, 45)');
  await app.shot('home-dark');
  await app.press('theme_changed', { theme_params: LIGHT_THEME });
  await app.page.waitForFunction(
    () => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.documentElement).backgroundColor].includes('rgb(255, 255, 255)'),
    null,
    { timeout: STEP_MS },
  );
  await app.context.close();
});

test("Russian and English follow the user's language_code, and the switch changes it", async () => {
  const cyrillic = /[А-Яа-яЁё]/;
  const en = await signedIn(newUser({ first: 'Mark', lang: 'en' }));
  assert.doesNotMatch(await el(en, 'screen-home').innerText(), cyrillic);
  await en.context.close();
  const ru = await signedIn(newUser({ first: 'Mark', lang: 'ru' }));
  assert.match(await el(ru, 'screen-home').innerText(), cyrillic);
  await ru.shot('home-ru');
  const sw = el(ru, 'lang-switch');
  if ((await sw.evaluate((n) => n.tagName)) === 'SELECT') await sw.selectOption('en');
  else await sw.click();
  await ru.page.waitForFunction(
    () => !/[А-Яа-яЁё]/.test(document.querySelector('[data-testid="screen-home"]')?.innerText ?? 'я'),
    null,
    { timeout: STEP_MS },
  );
  await ru.context.close();
});

test('from 320 to 480 px wide nothing overflows sideways (home, try-on, wallet)', async () => {
  const app = await signedIn(newUser({ first: 'Narrow', lang: 'ru' })); // Russian: the longer words
  const overflow = () =>
    app.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  for (const width of [320, 480]) {
    await app.page.setViewportSize({ width, height: 640 });
    assert.ok((await overflow()) <= 0, `home overflows at ${width} px`);
    await el(app, 'tool-tryon').click();
    await el(app, 'screen-tryon').waitFor({ timeout: STEP_MS });
    assert.ok((await overflow()) <= 0, `try-on overflows at ${width} px`);
    if (width === 320) await app.shot('tryon-320');
    await app.press('back_button_pressed');
    await el(app, 'screen-home').waitFor({ timeout: STEP_MS });
    await el(app, 'nav-wallet').first().click();
    await el(app, 'screen-wallet').waitFor({ timeout: STEP_MS });
    assert.ok((await overflow()) <= 0, `wallet overflows at ${width} px`);
    if (width === 320) await app.shot('wallet-320');
    await app.press('back_button_pressed');
    await el(app, 'screen-home').waitFor({ timeout: STEP_MS });
  }
  assert.deepEqual(app.errors, []);
  await app.context.close();
});

test('opened without initData: the explanatory screen, never a blank page', async () => {
  const app = await openMiniApp(browser, stack.base, { initData: undefined });
  await el(app, 'screen-outside-telegram').waitFor({ timeout: STEP_MS });
  assert.ok((await el(app, 'screen-outside-telegram').innerText()).trim().length > 0);
  await app.shot('outside-telegram');
  await app.context.close();
  // A plain link in a fresh browser: no launch parameters at all.
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(`${stack.base}/`);
  await page.getByTestId('screen-outside-telegram').waitFor({ timeout: STEP_MS });
  await context.close();
});
