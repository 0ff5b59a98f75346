// After `vite build`: writes .gz and .br next to every compressible file in dist/
// (index.html included) and prints sizes, with the first screen's JavaScript gzipped.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const dist = resolve(dirname(fileURLToPath(import.meta.url)), '../dist');
const compressible = /\.(html|js|mjs|css|svg|json|txt|webmanifest|ico|map)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

const sizes = new Map();
for (const file of walk(dist)) {
  if (!compressible.test(file)) continue;
  const raw = readFileSync(file);
  const gz = gzipSync(raw, { level: 9 });
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
  writeFileSync(file + '.gz', gz);
  writeFileSync(file + '.br', br);
  sizes.set(relative(dist, file), { raw: raw.length, gz: gz.length, br: br.length });
}

const kb = (n) => (n / 1024).toFixed(1).padStart(7) + ' KB';
console.log('\nfile'.padEnd(52) + 'raw'.padStart(10) + 'gzip'.padStart(11) + 'brotli'.padStart(11));
for (const [name, s] of [...sizes].sort()) {
  console.log(name.padEnd(50) + kb(s.raw) + kb(s.gz) + kb(s.br));
}

// The first screen: the entry script and what index.html preloads.
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [...html.matchAll(/(?:src|href)="\/([^"]+\.js)"/g)].map((m) => m[1]);
let first = 0;
for (const r of refs) first += sizes.get(r)?.gz ?? 0;
console.log(`\nfirst-screen JS (${refs.length} file(s)) gzipped: ${kb(first).trim()} (target <= 150 KB)`);
if (first > 150 * 1024) {
  console.error('first-screen JS is over the 150 KB gzipped target');
  process.exit(1);
}
