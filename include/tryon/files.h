/*
 * tryon/files.h - photos people upload: validation, normalisation, storage, links.
 *
 * Sections:
 *   1. Validation and normalisation (libmagic + signatures + libvips)
 *   2. Storage (local filesystem today; the interface admits an S3-compatible store)
 *   3. Signed links
 *   4. Upload records (the uploads table, deletion, the orphan sweep)
 *   5. Watermark and offline previews
 *
 * Nothing about an upload is trusted: not its name, not its declared type, not its
 * first bytes alone. What is kept is a clean re-encoding: EXIF orientation applied,
 * sRGB 8-bit, every metadata block gone, no trailing bytes.
 *
 * Thread-safety: every function may be called from any number of threads at once once
 * tryon_files_global_init has returned.
 */
#ifndef TRYON_FILES_H
#define TRYON_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/core.h>
#include <tryon/db.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------ 1. Validation and normalisation */

#define TRYON_FILES_MAX_BYTES (5u * 1024u * 1024u) /* 5 MiB, inclusive */
#define TRYON_FILES_MAX_SIDE 8192                  /* pixels, either side */
#define TRYON_FILES_MAX_PIXELS 40000000LL          /* width * height */
#define TRYON_FILES_THUMB_SIDE 512                 /* the thumbnail's longer side, at most */
#define TRYON_FILES_JPEG_QUALITY 90
/* What is kept is bounded, whatever the input: larger images are scaled down to this
 * longer side (JPEG) or this (PNG with alpha, which expands most), and a re-encoding
 * over TRYON_FILES_MAX_OUTPUT_BYTES is refused (TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS). */
#define TRYON_FILES_MAX_OUTPUT_SIDE 4096
#define TRYON_FILES_MAX_OUTPUT_SIDE_ALPHA 2048
#define TRYON_FILES_MAX_OUTPUT_BYTES (16u * 1024u * 1024u)

/*
 * Starts libvips (once per process; later calls do nothing) and sets it up for
 * untrusted input: no operation cache, and the loaders limited to what we accept.
 * TRYON_E_INTERNAL if libvips cannot start or libmagic has no database. Call from the
 * program's main before any other function here; tryon_files_global_shutdown at exit
 * (optional; with no call in flight: libvips cannot be started again afterwards).
 */
TRYON_API tryon_status tryon_files_global_init(tryon_err *err);
TRYON_API void tryon_files_global_shutdown(void);

/* A normalised image and its thumbnail; every buffer is owned (tryon_image_release). */
typedef struct tryon_image {
  const char *mime; /* "image/jpeg" or "image/png" (PNG when the source has alpha) */
  int width;        /* after orientation */
  int height;
  unsigned char *data;
  size_t len;
  uint8_t sha256[32]; /* of data */
  const char *thumb_mime;
  int thumb_width;
  int thumb_height;
  unsigned char *thumb;
  size_t thumb_len;
} tryon_image;

/*
 * Validates `len` bytes of an uploaded file and produces its clean re-encoding and a
 * thumbnail. Checks, in this order, each with its own status:
 *   len == 0 → TRYON_E_EMPTY_FILE; len > TRYON_FILES_MAX_BYTES → TRYON_E_FILE_TOO_LARGE;
 *   libmagic's MIME type from the bytes is neither image/jpeg nor image/png →
 *   TRYON_E_UNSUPPORTED_TYPE; the format's own signature disagrees with it (or with
 *   `declared_mime` when given, e.g. the multipart part's Content-Type or what the file
 *   name implies) → TRYON_E_TYPE_MISMATCH; the header's dimensions over
 *   TRYON_FILES_MAX_SIDE a side or TRYON_FILES_MAX_PIXELS in all →
 *   TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS (read from the header before any pixel is
 *   decoded, so a small file claiming 20000x20000 costs nothing); a full decode that
 *   fails → TRYON_E_CORRUPT_IMAGE.
 * Then: EXIF orientation applied; converted to sRGB 8 bits a channel (CMYK, 16-bit and
 * grey inputs included); all metadata dropped; re-encoded as JPEG (quality 90) or, when
 * the source has alpha, PNG; a thumbnail of at most TRYON_FILES_THUMB_SIDE on its
 * longer side in the same format. Trailing data and embedded payloads do not survive.
 * `declared_mime` may be NULL or "" (only the bytes count then); otherwise its media
 * type (any case, parameters ignored; image/jpg, image/pjpeg and image/x-png are
 * aliases) must name the detected format: a generic type such as
 * application/octet-stream is a mismatch, so pass NULL for it. A JPEG with more than 100
 * scans, or a PNG whose chunk list is broken, is TRYON_E_CORRUPT_IMAGE before decoding.
 * Also: TRYON_E_INVALID (out NULL, or data NULL with len > 0), TRYON_E_NOMEM,
 * TRYON_E_INTERNAL (tryon_files_global_init has not succeeded, or re-encoding failed).
 * On any failure *out is left zeroed. `err->message` says what was wrong in words a
 * user can read; it never quotes the file.
 */
TRYON_API tryon_status tryon_image_normalise(const void *data, size_t len,
                                             const char *declared_mime, tryon_image *out,
                                             tryon_err *err);

/* The same checks and output for an image we fetched rather than one a user sent (a
 * provider's result): the input may be up to TRYON_FILES_MAX_OUTPUT_BYTES, as large as
 * anything we store, instead of the upload limit. */
TRYON_API tryon_status tryon_image_normalise_result(const void *data, size_t len, tryon_image *out,
                                                    tryon_err *err);

/* Frees the buffers and zeroes img. A zeroed image is accepted. */
TRYON_API void tryon_image_release(tryon_image *img);

/* ---------------------------------------------------------------------- 2. Storage */

/*
 * Where image bytes live, behind a small interface so that an S3-compatible store can
 * be added without touching callers. Keys are ours, never a user's file name:
 * "<uuid>" for an image and "<uuid>.thumb" for its thumbnail (lower-case hex and '-',
 * at most one ".thumb"); anything else is refused with TRYON_E_INVALID.
 *
 * Contract of every backend: put never overwrites (an existing key → TRYON_E_CONFLICT)
 * and is atomic (a reader sees the whole object or nothing); get of a missing key →
 * TRYON_E_NOT_FOUND; remove of a missing key succeeds.
 */
typedef struct tryon_storage tryon_storage;

/* Called for each stored object: its key and when it was written (ms since the epoch).
 * Return false to stop the listing. */
typedef bool (*tryon_storage_list_fn)(const char *key, int64_t written_ms, void *ud);

typedef struct tryon_storage_ops {
  tryon_status (*put)(void *impl, const char *key, const void *data, size_t len, tryon_err *err);
  tryon_status (*get)(void *impl, const char *key, tryon_buf *out, tryon_err *err);
  tryon_status (*remove)(void *impl, const char *key, tryon_err *err);
  /* The objects in key order (bytewise), starting after `after` (NULL or "": from the
   * first), until fn returns false (NULL: the backend cannot list). Key order is what
   * lets a long walk resume where it stopped (S3's ListObjectsV2 StartAfter does the
   * same). */
  tryon_status (*list)(void *impl, const char *after, tryon_storage_list_fn fn, void *ud,
                       tryon_err *err);
  void (*free)(void *impl);
} tryon_storage_ops;

/* Wraps a backend (`ops` borrowed for the storage's life, `impl` taken: ops->free runs
 * on it in tryon_storage_free). NULL on out of memory (and ops->free(impl) has run). */
TRYON_API tryon_storage *tryon_storage_new(const tryon_storage_ops *ops, void *impl);

/*
 * The local filesystem backend: objects under `root` in folders sharded by the key's
 * first four hex digits (root/ab/cd/<key>), created 0700, files 0600; put writes a
 * temporary file, fsyncs it and links it into place (link(2) refuses to replace), then
 * fsyncs the folder. `root` is created if missing.
 */
TRYON_API tryon_status tryon_storage_local_new(const char *root, tryon_storage **out,
                                               tryon_err *err);

TRYON_API tryon_status tryon_storage_put(tryon_storage *s, const char *key, const void *data,
                                         size_t len, tryon_err *err);
/* Reads the whole object into `out` (appended; the buffer's ceiling applies:
 * TRYON_E_TOO_LARGE past it). */
TRYON_API tryon_status tryon_storage_get(tryon_storage *s, const char *key, tryon_buf *out,
                                         tryon_err *err);
TRYON_API tryon_status tryon_storage_remove(tryon_storage *s, const char *key, tryon_err *err);
/* Calls `fn` for every object whose key sorts after `after` (NULL or "": all), in key
 * order, until fn returns false (housekeeping); TRYON_E_INVALID for a backend that
 * cannot list. Objects put or removed meanwhile may or may not be seen. */
TRYON_API tryon_status tryon_storage_list(tryon_storage *s, const char *after,
                                          tryon_storage_list_fn fn, void *ud, tryon_err *err);
TRYON_API void tryon_storage_free(tryon_storage *s);

/* Whether `key` is a valid storage key (see above). */
TRYON_API bool tryon_storage_key_valid(const char *key);

/* ----------------------------------------------------------------- 3. Signed links */

/*
 * Links to stored images that carry no user token, for <img> tags and for the image
 * providers: /files/<id>[/thumb]?exp=<unix seconds>&sig=<64 hex>, where sig is
 * HMAC-SHA256 over "v1\n<id>\n<variant>\n<exp>" with a key derived from the server
 * secret. Anyone holding the link may fetch the image until exp; nobody can make one.
 */
typedef struct tryon_link_key {
  uint8_t k[32];
} tryon_link_key;

/* Derives the link key from a server secret (key separation: the JWT secret can serve,
 * the derived key is used for nothing else). */
TRYON_API void tryon_link_key_derive(const char *secret, size_t secret_len, tryon_link_key *out);

#define TRYON_LINK_MAX 160

/* Writes the link path (no scheme or host) for image `id` (canonical UUID text), its
 * thumbnail when `thumb`, valid until `exp` (Unix seconds), into `out` (caller-owned,
 * TRYON_LINK_MAX bytes suffice). TRYON_E_INVALID for a bad id. */
TRYON_API tryon_status tryon_link_sign(const tryon_link_key *key, const char *id, bool thumb,
                                       int64_t exp, char *out, size_t cap, tryon_err *err);

/* Checks a link's parts as received (`exp` and `sig` are the raw query values, NULL when
 * absent) at `now_s`. TRYON_OK; TRYON_E_FORBIDDEN when expired, forged, or any part is
 * missing or malformed (one answer for all, so a prober learns nothing). Constant-time
 * comparison. */
TRYON_API tryon_status tryon_link_verify(const tryon_link_key *key, const char *id, bool thumb,
                                         const char *exp, const char *sig, int64_t now_s,
                                         tryon_err *err);

/* ---------------------------------------------------------------- 4. Upload records */

/*
 * Rows of `uploads`: one per stored image (a user's upload or a generation's result).
 * Functions take a leased connection; tryon_uploads_insert must run inside the
 * caller's transaction (it locks the user's row to count against the quota).
 */
typedef struct tryon_upload {
  char id[TRYON_UUID_STR_LEN];
  int64_t user_id;
  char origin[8]; /* "upload" or "result" */
  char mime[16];
  int width;
  int height;
  int64_t bytes;
  bool has_thumb;
  int64_t created_at_us; /* microseconds since the epoch (the list's cursor) */
} tryon_upload;

/* Records image `id` of `user_id` (origin "upload") as described by `img`. Within the
 * caller's transaction: locks the user's row, so concurrent uploads of one user count
 * one at a time; more than `quota` stored uploads → TRYON_E_QUOTA_EXCEEDED. */
TRYON_API tryon_status tryon_uploads_insert(tryon_db_conn *c, int64_t user_id, const char *id,
                                            const tryon_image *img, int quota, tryon_upload *out,
                                            tryon_err *err);

/* Whether the user already keeps `quota` or more uploads (origin "upload", not deleted).
 * Without a lock: a cheap early answer; tryon_uploads_insert decides under its lock. */
TRYON_API tryon_status tryon_uploads_at_quota(tryon_db_conn *c, int64_t user_id, int quota,
                                              bool *full, tryon_err *err);

/* The user's upload `id` (not deleted). TRYON_E_NOT_FOUND when it is not theirs, does
 * not exist, is deleted, or `id` is not a UUID: one answer, so ids cannot be probed. */
TRYON_API tryon_status tryon_uploads_get(tryon_db_conn *c, int64_t user_id, const char *id,
                                         tryon_upload *out, tryon_err *err);

#define TRYON_UPLOADS_CURSOR_MAX 64

/* The user's uploads (origin "upload", not deleted), newest first, at most `limit`
 * (1..100) into `out` (caller-owned, `limit` entries); `*n` how many. `cursor` (NULL or
 * "" for the first page) continues a previous page; `next` (TRYON_UPLOADS_CURSOR_MAX
 * bytes) receives the cursor of the next page or "" when there is none. A malformed
 * cursor → TRYON_E_INVALID. */
TRYON_API tryon_status tryon_uploads_list(tryon_db_conn *c, int64_t user_id, int limit,
                                          const char *cursor, tryon_upload *out, size_t *n,
                                          char *next, tryon_err *err);

/* Room for a sweep cursor (a storage key) and its NUL. */
#define TRYON_FILES_SWEEP_CURSOR_MAX 64

/*
 * Housekeeping, one batch: removes stored files that no `uploads` row names (an upload
 * whose recording crashed after its file was written, a result whose job never
 * finished) and that were written before `before_ms` (so nothing being recorded right
 * now is touched), and stale temporary files the local backend left. The walk goes in
 * key order from after `cursor` (NULL or "": the start) until it has met `max`
 * candidates (old files; 1..500, more is 500) — files too young to judge are passed
 * over and do not count — and writes where it stopped into `next`
 * (TRYON_FILES_SWEEP_CURSOR_MAX bytes), or "" when the walk reached the end. Call again
 * with `next` until it is "" to cover the whole store. `*removed` (optional) counts the
 * files removed in this batch.
 */
TRYON_API tryon_status tryon_files_sweep_orphans(tryon_db_conn *c, tryon_storage *s,
                                                 int64_t before_ms, size_t max, const char *cursor,
                                                 char *next, size_t *removed, tryon_err *err);

/* Removes the user's upload `id`: the row, or, when another row still refers to the
 * image through a foreign key (a generation, a chat), marks it deleted (the history
 * keeps its shape). Decided by the foreign keys, not by reading their tables: the
 * DELETE is tried and a violation turns it into the mark. Atomic on its own, or inside
 * the caller's transaction (a savepoint undoes the failed DELETE). The caller removes
 * the files. TRYON_E_NOT_FOUND as for tryon_uploads_get. */
TRYON_API tryon_status tryon_uploads_delete(tryon_db_conn *c, int64_t user_id, const char *id,
                                            tryon_err *err);

/* ------------------------------------------ 5. Watermark and offline previews */

/*
 * Image operations on pictures we made or validated: the free tier's watermark and the
 * previews shown when no image model is configured (offline mode). libvips, text by
 * Pango in "DejaVu Sans Bold" (package fonts-dejavu-core; another font is used if it
 * is missing). Implementation: libtryon/files/compose.c.
 *
 * Common to the three functions below:
 * - Inputs (borrowed for the call) must be JPEG or PNG bytes we produced or that
 *   tryon_image_normalise accepted. Checked before decoding: not NULL/empty, a JPEG or
 *   PNG signature, at most 100 JPEG scans, PNG chunks only of the kinds we keep (no
 *   zTXt/iTXt, no private chunks), else TRYON_E_INVALID; over
 *   TRYON_FILES_MAX_OUTPUT_BYTES → TRYON_E_TOO_LARGE; over TRYON_FILES_MAX_SIDE a side
 *   or TRYON_FILES_MAX_PIXELS (from the header) → TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS;
 *   a header or pixel decode failure → TRYON_E_CORRUPT_IMAGE (pixels stream from the
 *   decoder to the encoder, so a failed encode reports this status too).
 * - Pixels: EXIF orientation applied if present, sRGB 8 bits, metadata stripped; JPEG
 *   output at quality TRYON_FILES_JPEG_QUALITY; PNG output keeps alpha when the
 *   (person/source) input had it; a JPEG output flattens alpha onto white.
 * - `out` is a caller-initialised tryon_buf (tryon_buf_init; caller releases). It is
 *   reset first and receives the encoded bytes; on any failure it is left empty. A
 *   result over TRYON_FILES_MAX_OUTPUT_BYTES or over out's own ceiling →
 *   TRYON_E_TOO_LARGE.
 * - Also TRYON_E_INVALID (out NULL, bad text/category/format), TRYON_E_NOMEM,
 *   TRYON_E_INTERNAL (the module could not start or was shut down; rendering failed).
 *   These call tryon_files_global_init themselves (a no-op once done), but programs
 *   still call it from main.
 * - Memory: the decoded image is not held whole (except for an input that needs
 *   rotating): a few strips plus the overlays and, for a try-on, the scaled item.
 * - Thread-safe: any number of calls at once (Pango is serialised inside vips_text).
 */

#define TRYON_IMAGE_WATERMARK_TEXT "tryon" /* the mark when `text` is NULL */
#define TRYON_IMAGE_WATERMARK_TEXT_MAX 64  /* bytes of UTF-8 */

/*
 * The free-tier watermark: `text` (NULL for TRYON_IMAGE_WATERMARK_TEXT; UTF-8, 1 to
 * TRYON_IMAGE_WATERMARK_TEXT_MAX bytes, no control characters, not blank, any script;
 * taken literally, not as markup) in white at 68 % opacity over a soft shadow and a
 * translucent dark pill, in the bottom-right corner, its em about 4.5 % of the shorter
 * side (at least 10 px) with a 3 % margin, smaller when it would not fit. Images too
 * small for a legible mark (a few pixels) are re-encoded without one. Same dimensions
 * and format as the input (JPEG → JPEG, PNG → PNG, alpha kept); pixels outside the
 * mark are unchanged (within JPEG re-encoding for a JPEG).
 */
TRYON_API tryon_status tryon_image_watermark(const void *data, size_t len, const char *text,
                                             tryon_buf *out, tryon_err *err);

/*
 * The offline try-on preview: `item` scaled (aspect kept) into a box of the `person`
 * photo chosen by `category` — "top", "outerwear", "dress" (torso, about half the
 * width), "bottom" (lower middle), "shoes" (bottom centre, small), "headwear" (top
 * centre), "glasses" (upper fifth, small), "bag" (right side), "jewelry" (neck, small),
 * "other" (centre) — with a soft drop shadow; the item's alpha is used when it has one,
 * else a feathered rounded rectangle at 92 % opacity. Labelled "offline preview" in
 * the top-left corner so that nobody takes it for a generation. Same size as the
 * person photo. `output_format`: "png" (also NULL or "") or "jpeg"/"jpg", any case.
 * An unknown category or format → TRYON_E_INVALID; statuses about an input name it
 * ("person"/"item") in err->message.
 */
TRYON_API tryon_status tryon_image_offline_tryon(const void *person, size_t person_len,
                                                 const void *item, size_t item_len,
                                                 const char *category, const char *output_format,
                                                 tryon_buf *out, tryon_err *err);

/*
 * A JPEG copy of a stored image (alpha flattened onto white) of at most `max_bytes`
 * (>= 1024), scaled down as far as needed (aspect kept): for a provider whose upload
 * limit is below our storage ceiling. TRYON_E_TOO_LARGE when four smaller tries are
 * still too big; other statuses as the functions above.
 */
TRYON_API tryon_status tryon_image_shrink_to(const void *src, size_t len, size_t max_bytes,
                                             tryon_buf *out, tryon_err *err);

/*
 * The offline edit preview: `src` with a warm colour grade (deterministic, the same for
 * every prompt) and the "offline preview" label. `prompt` is borrowed, may be NULL and
 * is not interpreted. Same size as `src`; `output_format` as for
 * tryon_image_offline_tryon.
 */
TRYON_API tryon_status tryon_image_offline_edit(const void *src, size_t len, const char *prompt,
                                                const char *output_format, tryon_buf *out,
                                                tryon_err *err);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_FILES_H */
