import { describe, expect, it } from 'vitest';
import { MAX_UPLOAD_BYTES, plan, precheck } from './image';

describe('downscaling decisions', () => {
  it('refuses HEIC by type or name, non-images and empty files', () => {
    expect(precheck({ name: 'a.HEIC', type: '', size: 10 })).toEqual({ ok: false, reason: 'heic' });
    expect(precheck({ name: 'a.jpg', type: 'image/heif', size: 10 })).toEqual({ ok: false, reason: 'heic' });
    expect(precheck({ name: 'a.pdf', type: 'application/pdf', size: 10 })).toEqual({ ok: false, reason: 'not_image' });
    expect(precheck({ name: 'a.jpg', type: 'image/jpeg', size: 0 })).toEqual({ ok: false, reason: 'empty' });
    expect(precheck({ name: 'a.jpg', type: 'image/jpeg', size: 10 })).toEqual({ ok: true });
  });

  it('keeps a small JPEG or PNG as it is (a GIF named .jpg goes up for the server to judge)', () => {
    expect(plan({ name: 'a.jpg', type: 'image/jpeg', size: 1_000_000 }, 2000, 1500)).toEqual({ action: 'keep' });
    expect(plan({ name: 'a.png', type: 'image/png', size: 1_000_000 }, 2560, 2560)).toEqual({ action: 'keep' });
  });

  it('downscales a 12 MP phone photo to 2560 on the long side, as JPEG', () => {
    const p = plan({ name: 'p.jpg', type: 'image/jpeg', size: 9 * 1024 * 1024 }, 4032, 3024);
    expect(p).toEqual({ action: 'reencode', width: 2560, height: 1920, type: 'image/jpeg', quality: 0.88 });
    const tall = plan({ name: 'p.jpg', type: 'image/jpeg', size: 3_000_000 }, 3024, 4032);
    expect(tall).toMatchObject({ width: 1920, height: 2560 });
  });

  it('re-encodes an over-limit file even when it is small in pixels, and other formats always', () => {
    expect(plan({ name: 'a.png', type: 'image/png', size: MAX_UPLOAD_BYTES + 1 }, 2000, 2000)).toMatchObject({
      action: 'reencode',
      width: 2000,
      height: 2000,
    });
    expect(plan({ name: 'a.webp', type: 'image/webp', size: 100_000 }, 800, 600)).toMatchObject({ action: 'reencode', width: 800 });
  });
});
