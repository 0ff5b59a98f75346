// The production build carries no development launch code (run after `npm run build`).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const assets = resolve(import.meta.dirname, '../dist/assets');

// Before a first build there is nothing to check; under ctest (CI=1, after scripts/test
// built the app) a missing dist/ is a failure, not a skip.
const required = process.env.CI === '1';
describe.skipIf(!existsSync(assets) && !required)('dist/', () => {
  it('exists', () => {
    expect(existsSync(assets), 'npm run build first').toBe(true);
  });
  it('has no trace of the dev launch simulation', () => {
    for (const f of readdirSync(assets).filter((n) => n.endsWith('.js'))) {
      const s = readFileSync(join(assets, f), 'utf8');
      expect(s.includes('VITE_DEV_INIT_DATA'), f).toBe(false);
      expect(s.includes('Development launch'), f).toBe(false);
      expect(s.includes('DevLaunch'), f).toBe(false);
    }
  });
});
