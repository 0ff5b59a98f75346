// Fails when src/api/schema.d.ts no longer matches docs/api/openapi.yaml:
// regenerates into a temporary file with the same generator and compares.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const spec = resolve(root, '../docs/api/openapi.yaml');
const committed = resolve(root, 'src/api/schema.d.ts');
const dir = mkdtempSync(join(tmpdir(), 'tryon-api-'));
const fresh = join(dir, 'schema.d.ts');
try {
  const bin = resolve(root, 'node_modules/openapi-typescript/bin/cli.js');
  execFileSync(process.execPath, [bin, spec, '-o', fresh], { stdio: 'pipe' });
  const a = readFileSync(committed, 'utf8');
  const b = readFileSync(fresh, 'utf8');
  if (a !== b) {
    console.error(
      'check:api: src/api/schema.d.ts is out of date with docs/api/openapi.yaml.\n' +
        'Run `npm run gen:api` and commit the result.',
    );
    process.exit(1);
  }
  console.log('check:api: src/api/schema.d.ts matches docs/api/openapi.yaml');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
