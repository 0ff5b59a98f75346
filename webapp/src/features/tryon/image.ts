/** On-device preparation of a picked photo before upload. */

export const MAX_LONG_SIDE = 2560;
/** The server's ceiling (5 MiB); a file over it is always re-encoded. */
export const MAX_UPLOAD_BYTES = 5 * 1024 * 1024;
export const JPEG_QUALITY = 0.88;

export interface PickedFile {
  name: string;
  type: string;
  size: number;
}

export type Precheck = { ok: true } | { ok: false; reason: 'heic' | 'not_image' | 'empty' };

/** Before decoding: what the browser said about the file. */
export function precheck(f: PickedFile): Precheck {
  if (f.size === 0) return { ok: false, reason: 'empty' };
  const type = f.type.toLowerCase();
  const name = f.name.toLowerCase();
  if (type === 'image/heic' || type === 'image/heif' || /\.(heic|heif)$/.test(name)) {
    return { ok: false, reason: 'heic' };
  }
  if (type !== '' && !type.startsWith('image/')) return { ok: false, reason: 'not_image' };
  return { ok: true };
}

export type Plan =
  | { action: 'keep' }
  | { action: 'reencode'; width: number; height: number; type: 'image/jpeg'; quality: number };

/**
 * After decoding: keep a JPEG/PNG that is already small enough (the server re-encodes it
 * anyway); otherwise draw it at most MAX_LONG_SIDE on its long side and encode a JPEG.
 */
export function plan(f: PickedFile, width: number, height: number): Plan {
  const type = f.type.toLowerCase();
  const long = Math.max(width, height);
  const native = type === 'image/jpeg' || type === 'image/png' || type === '';
  if (native && long <= MAX_LONG_SIDE && f.size <= MAX_UPLOAD_BYTES) return { action: 'keep' };
  const scale = long > MAX_LONG_SIDE ? MAX_LONG_SIDE / long : 1;
  return {
    action: 'reencode',
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
    type: 'image/jpeg',
    quality: JPEG_QUALITY,
  };
}

export class PrepareError extends Error {
  readonly reason: 'heic' | 'not_image' | 'empty' | 'undecodable';
  constructor(reason: PrepareError['reason']) {
    super(reason);
    this.reason = reason;
  }
}

export interface Prepared {
  blob: Blob;
  name: string;
}

/** Decodes with createImageBitmap (EXIF orientation applied), re-encodes on a canvas when the plan says so. */
export async function prepareImage(file: File): Promise<Prepared> {
  const pre = precheck(file);
  if (!pre.ok) throw new PrepareError(pre.reason);
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    throw new PrepareError('undecodable');
  }
  try {
    const p = plan(file, bitmap.width, bitmap.height);
    if (p.action === 'keep') return { blob: file, name: file.name || 'photo.jpg' };
    const canvas = document.createElement('canvas');
    canvas.width = p.width;
    canvas.height = p.height;
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new PrepareError('undecodable');
    ctx.fillStyle = '#fff'; // a transparent PNG becomes a JPEG on white, not on black
    ctx.fillRect(0, 0, p.width, p.height);
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, p.width, p.height);
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, p.type, p.quality));
    if (!blob) throw new PrepareError('undecodable');
    const base = (file.name || 'photo').replace(/\.[^.]*$/, '');
    return { blob, name: base + '.jpg' };
  } finally {
    bitmap.close();
  }
}
