// The browser-test harness: a scratch PostgreSQL database, the real tryon-server and
// tryon-worker on it, and Debian's Chromium (through playwright-core) opening the web app
// the way Telegram opens a Mini App. See tests/browser/CLAUDE.md.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const SOURCE_DIR = resolve(process.env.TRYON_SOURCE_DIR ?? new URL('../../..', import.meta.url).pathname);
export const BOT_TOKEN = '7000000002:AAbrowser-test-bot-token';
const JWT_SECRET = 'browser-test-jwt-secret-0123456789abcdef';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests through ctest (scripts/test)`);
  return v;
}

/** Where screenshots go: TRYON_BROWSER_ARTIFACTS (ctest sets <build>/browser-artifacts). */
export function artifactsDir() {
  const dir = process.env.TRYON_BROWSER_ARTIFACTS ?? join(SOURCE_DIR, 'build-sanitize', 'browser-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** The conninfo `admin` with its dbname replaced (libpq keyword=value form). */
function withDbname(admin, name) {
  const rest = admin.split(/\s+/).filter((kv) => kv && !kv.startsWith('dbname='));
  return [...rest, `dbname=${name}`].join(' ');
}

function psql(conninfo, sql) {
  return execFileSync('psql', ['-X', '-q', '-tA', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql], {
    encoding: 'utf8',
  }).trim();
}

async function waitReady(base, proc, what) {
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with status ${proc.exitCode}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up at ${base}`);
}

function stopProcess(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc?.exitCode ?? 0);
  return new Promise((ok) => {
    proc.once('exit', (code, signal) => ok(signal ? 128 : code));
    proc.kill('SIGTERM');
  });
}

/**
 * Starts the product on a scratch database: tryon-server serving `webappDir` on a free
 * loopback port, and tryon-worker (offline provider: no kie key) unless `worker: false`.
 * Returns { base, port, sql(query), stop() }; stop() ends both with SIGTERM, requires a
 * clean exit (status 0: no sanitizer report) and drops the database.
 */
export async function startStack({ webappDir, worker = true, env: extra = {} } = {}) {
  const admin = need('TRYON_TEST_DATABASE_URL');
  const serverBin = need('TRYON_SERVER_BIN');
  const workerBin = need('TRYON_WORKER_BIN');
  const cliBin = need('TRYONCTL_BIN');
  const name = `tryon_b_${process.pid}_${randomBytes(4).toString('hex')}`;
  const scratch = mkdtempSync(join(tmpdir(), 'tryon-browser-'));
  const storage = join(scratch, 'storage');
  mkdirSync(storage);
  psql(admin, `CREATE DATABASE ${name}`);
  const conninfo = withDbname(admin, name);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    PATH: process.env.PATH,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=1',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'print_stacktrace=1:halt_on_error=1',
    ...(process.env.LSAN_OPTIONS ? { LSAN_OPTIONS: process.env.LSAN_OPTIONS } : {}),
    TRYON_ENV_FILE: '/dev/null',
    TRYON_DATABASE_URL: conninfo,
    TRYON_MIGRATIONS_DIR: join(SOURCE_DIR, 'migrations'),
    TRYON_HTTP_PORT: String(port),
    TRYON_HTTP_BIND: '127.0.0.1',
    TRYON_PUBLIC_URL: base,
    TRYON_STORAGE_DIR: storage,
    TRYON_BOT_TOKEN: BOT_TOKEN,
    TRYON_JWT_SECRET: JWT_SECRET,
    TRYON_LOG_LEVEL: 'warn',
    TRYON_DB_POOL_SIZE: '3',
    TRYON_WORKER_POLL_MS: '200',
    TRYON_RATE_LIMIT_IP_RPS: '10000',
    TRYON_RATE_LIMIT_IP_BURST: '10000',
    ...(webappDir ? { TRYON_WEBAPP_DIR: webappDir } : {}),
    ...extra,
  };
  const procs = [];
  const stack = {
    base,
    port,
    conninfo,
    sql: (q) => psql(conninfo, q),
    async stop() {
      const codes = [];
      for (const p of procs.reverse()) codes.push(await stopProcess(p));
      try {
        psql(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
      if (codes.some((c) => c !== 0)) throw new Error(`a program did not stop cleanly: ${codes}`);
    },
  };
  try {
    execFileSync(cliBin, ['migrate'], { env, cwd: scratch, stdio: ['ignore', 'ignore', 'inherit'] });
    const opts = { env, cwd: scratch, stdio: ['ignore', 'inherit', 'inherit'] };
    const server = spawn(serverBin, [], opts);
    procs.push(server);
    await waitReady(base, server, 'tryon-server');
    if (worker) procs.push(spawn(workerBin, [], opts));
  } catch (e) {
    await stack.stop().catch(() => {});
    throw e;
  }
  return stack;
}

/**
 * Telegram's initData for `user`, signed with `botToken` as Telegram signs it:
 * secret = HMAC_SHA256(key "WebAppData", bot_token); hash = hex HMAC_SHA256(secret,
 * data_check_string), the data-check-string being the sorted key=value lines of every
 * field but `hash` (`signature` included).
 */
export function signInitData(user, { botToken = BOT_TOKEN, authDate = Math.floor(Date.now() / 1000) } = {}) {
  // Telegram's clients always send `signature` too (Ed25519, for third parties; the
  // SDK's parser requires it). Only Telegram can make a valid one; the HMAC check hashes
  // it like any other field, so a well-formed stand-in is what a real launch looks like.
  const fields = {
    query_id: `AAH${randomBytes(6).toString('hex')}`,
    user: JSON.stringify(user),
    auth_date: String(authDate),
    signature: randomBytes(64).toString('base64url'),
  };
  const dcs = Object.keys(fields)
    .sort()
    .map((k) => `${k}=${fields[k]}`)
    .join('\n');
  const secret = createHmac('sha256', 'WebAppData').update(botToken).digest();
  const hash = createHmac('sha256', secret).update(dcs).digest('hex');
  return new URLSearchParams({ ...fields, hash }).toString();
}

// Telegram's real default palettes: LIGHT is the light theme (iOS / Web K), DARK the
// Android and Desktop night theme, DARK_K Web K's dark theme.
export const LIGHT_THEME = {
  bg_color: '#ffffff',
  text_color: '#000000',
  hint_color: '#999999',
  link_color: '#2481cc',
  button_color: '#2481cc',
  button_text_color: '#ffffff',
  secondary_bg_color: '#efeff3',
  header_bg_color: '#ffffff',
  accent_text_color: '#2481cc',
  section_bg_color: '#ffffff',
  section_header_text_color: '#6d6d71',
  subtitle_text_color: '#999999',
  destructive_text_color: '#ff3b30',
};

export const DARK_THEME = {
  bg_color: '#18222d',
  text_color: '#ffffff',
  hint_color: '#b1c3d5',
  link_color: '#62bcf9',
  button_color: '#2ea6ff',
  button_text_color: '#ffffff',
  secondary_bg_color: '#131415',
  header_bg_color: '#18222d',
  accent_text_color: '#62bcf9',
  section_bg_color: '#18222d',
  section_header_text_color: '#b1c3d5',
  subtitle_text_color: '#b1c3d5',
  destructive_text_color: '#ef5b5b',
};

export const DARK_K_THEME = {
  bg_color: '#212121',
  text_color: '#ffffff',
  hint_color: '#aaaaaa',
  link_color: '#8774e1',
  button_color: '#8774e1',
  button_text_color: '#ffffff',
  secondary_bg_color: '#0f0f0f',
  header_bg_color: '#212121',
  accent_text_color: '#8774e1',
  section_bg_color: '#212121',
  section_header_text_color: '#aaaaaa',
  subtitle_text_color: '#aaaaaa',
  destructive_text_color: '#ff595a',
};

/** The URL Telegram opens: the app's address with the launch parameters in the fragment. */
export function launchUrl(base, { initData, version = '8.0', platform = 'ios', theme = LIGHT_THEME, path = '/' } = {}) {
  const p = [];
  if (initData !== undefined) p.push(`tgWebAppData=${encodeURIComponent(initData)}`);
  p.push(`tgWebAppVersion=${version}`, `tgWebAppPlatform=${platform}`);
  p.push(`tgWebAppThemeParams=${encodeURIComponent(JSON.stringify(theme))}`);
  return `${base}${path}#${p.join('&')}`;
}

// Runs in the page before any of its scripts: Telegram's native bridge. The iOS and
// Android clients inject window.TelegramWebviewProxy; the app posts events to it and
// the client answers by calling window.Telegram.WebView.receiveEvent (which the app's
// SDK defines). Every posted event is recorded for the test.
function bridgeInit() {
  window.__tgEvents = [];
  window.TelegramWebviewProxy = {
    postEvent(name, data) {
      let parsed = data;
      try {
        parsed = data ? JSON.parse(data) : null;
      } catch {
        /* kept as sent */
      }
      window.__tgEvents.push({ name, data: parsed });
    },
  };
}

/** Chromium as the machine runs it: Debian's binary, headless, no background traffic. */
export function launchBrowser({ args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.TRYON_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...args,
    ],
  });
}

/**
 * Opens the app in a new 390×844 phone-sized context as Telegram does (see launchUrl;
 * `initData: undefined` opens it outside Telegram). Returns { page, context, events(),
 * press(name, payload), shot(name) }: press sends a client event through
 * window.Telegram.WebView.receiveEvent (main_button_pressed, back_button_pressed,
 * theme_changed ...); shot saves a screenshot under the artifacts folder.
 */
export async function openMiniApp(browser, base, launch = {}) {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
    locale: launch.locale ?? 'en-US',
  });
  await context.addInitScript(bridgeInit);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(launchUrl(base, launch));
  return {
    page,
    context,
    errors,
    events: () => page.evaluate(() => window.__tgEvents),
    press: (name, payload = null) =>
      page.evaluate(([n, p]) => window.Telegram.WebView.receiveEvent(n, p), [name, payload]),
    shot: (name) => page.screenshot({ path: join(artifactsDir(), `${name}.png`), fullPage: false }),
  };
}

/** A Telegram user for initData. */
export function tgUser(id, { first = 'Anna', lang = 'en' } = {}) {
  return { id, first_name: first, last_name: 'Test', username: `u${id}`, language_code: lang, allows_write_to_pm: true };
}

/** Writes `files` ({"index.html": "...", "assets/x.js": "..."}) into a new temp folder. */
export function writeDist(files) {
  const dir = mkdtempSync(join(tmpdir(), 'tryon-dist-'));
  for (const [rel, data] of Object.entries(files)) {
    const path = join(dir, rel);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, data);
  }
  return dir;
}
