/*
 * files/image.c - section 1 of tryon/files.h: what an uploaded photo must be, and its
 * clean re-encoding.
 *
 * The checks run cheapest first and each refusal has its own status: size; libmagic's
 * verdict on the bytes; the format's own signature and the declared type; the
 * dimensions, read here from the JPEG frame header or the PNG IHDR before any decoder
 * sees the file; the structure (JPEG scan count, PNG chunk list); then a full decode by
 * libvips that must report neither an error nor a truncation. What comes out is built
 * from decoded pixels alone, so nothing of the upload's other bytes can survive.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <magic.h>
#include <openssl/evp.h>
#include <vips/vips.h>

#include <tryon/core.h>
#include <tryon/files.h>

#include "files/files_internal.h"

/* Progressive JPEGs from cameras, browsers, jpegtran and mozjpeg have 10 to about 20
 * scans; each scan is a pass over the whole coefficient buffer, so a file with
 * thousands of tiny scans costs minutes of CPU while staying small ("scan bomb"). */
#define JPEG_MAX_SCANS 100

/* Idle libmagic cookies kept for reuse; more callers at once get fresh ones that are
 * closed when they are done. */
#define MAGIC_POOL_MAX 32

/* libvips worker threads per pipeline. The callers (HTTP dispatch threads, workers)
 * already normalise several uploads at once, and JPEG/PNG decoding and encoding are
 * serial inside libjpeg and libpng, so more threads add contention, not speed
 * (bench/bench_files.c). */
#define VIPS_THREADS 1

/* What libmagic needs to run: no decompressing, no archive or ELF parsing. Text checks
 * stay on so that an HTML or SVG file is named as such. */
#define MAGIC_FLAGS                                                                     \
  (MAGIC_MIME_TYPE | MAGIC_ERROR | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_TAR |       \
   MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_CDF | MAGIC_NO_CHECK_CSV | MAGIC_NO_CHECK_JSON | \
   MAGIC_NO_CHECK_APPTYPE)

#define MSG_UNSUPPORTED "only JPEG and PNG photos are accepted"
#define MSG_CORRUPT "the image is damaged and cannot be read"

typedef enum image_format { FORMAT_NONE, FORMAT_JPEG, FORMAT_PNG } image_format;

static const char *const format_mime[] = {NULL, "image/jpeg", "image/png"};
static const char *const format_label[] = {"unknown", "JPEG", "PNG"};

static const unsigned char jpeg_signature[3] = {0xFF, 0xD8, 0xFF};
static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

/* ------------------------------------------------------------------ global state */

enum { STATE_NEW, STATE_READY, STATE_FAILED, STATE_SHUT };

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int files_state = STATE_NEW;
static const char *init_problem = "";

/* libmagic cookies are not thread-safe: each is used by one thread at a time, taken
 * from this pool and given back. */
static pthread_mutex_t magic_lock = PTHREAD_MUTEX_INITIALIZER;
static magic_t magic_idle[MAGIC_POOL_MAX];
static size_t magic_nidle;

static magic_t magic_cookie_new(void) {
  magic_t m = magic_open(MAGIC_FLAGS);

  if (m != NULL && magic_load(m, NULL) != 0) {
    TRYON_LOG_DEBUG("libmagic cannot load its database", TRYON_LF_STR("why", magic_error(m)));
    magic_close(m);
    m = NULL;
  }
  return m;
}

static magic_t magic_acquire(void) {
  magic_t m = NULL;

  pthread_mutex_lock(&magic_lock);
  if (magic_nidle > 0)
    m = magic_idle[--magic_nidle];
  else
    /* Made under the lock: magic_load fills tables shared by all cookies and is not
     * documented as safe on several threads at once. It happens only when the pool
     * grows, so the lock is rarely held for long. */
    m = magic_cookie_new();
  pthread_mutex_unlock(&magic_lock);
  return m;
}

static void magic_give_back(magic_t m) {
  pthread_mutex_lock(&magic_lock);
  if (magic_nidle < MAGIC_POOL_MAX && atomic_load(&files_state) == STATE_READY) {
    magic_idle[magic_nidle++] = m;
    m = NULL;
  }
  pthread_mutex_unlock(&magic_lock);
  if (m != NULL)
    magic_close(m);
}

/* libvips reports decoder warnings ("Premature end of JPEG file" ...) through GLib,
 * which would print them on stderr; the library never prints, so they become debug
 * lines. They name no file and quote none of its bytes. */
static void vips_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                             gpointer ud) {
  (void)domain;
  (void)ud;
  if (level & G_LOG_LEVEL_CRITICAL)
    TRYON_LOG_ERROR("libvips critical", TRYON_LF_STR("message", message ? message : ""));
  else
    TRYON_LOG_DEBUG("libvips warning", TRYON_LF_STR("message", message ? message : ""));
}

static void files_init_once(void) {
  magic_t m = NULL;

  g_log_set_handler("VIPS", G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE,
                    vips_log_handler, NULL);
  if (VIPS_INIT("tryon") != 0) {
    vips_error_clear();
    init_problem = "libvips cannot start";
    goto out;
  }
  /* An upload is seen once: caching operations would only keep decoded pixels (and
   * the upload's buffer) alive after the request. */
  vips_cache_set_max(0);
  vips_cache_set_max_mem(0);
  vips_cache_set_max_files(0);
  vips_concurrency_set(VIPS_THREADS);
  /* We call jpegload_buffer and pngload_buffer by name, but block every other loader
   * too, so that no path inside libvips (a profile or a fallback loader) can reach the
   * decoders marked untrusted (ImageMagick, PDF, SVG, MATLAB ...). */
  vips_block_untrusted_set(TRUE);
  vips_operation_block_set("VipsForeignLoad", TRUE);
  vips_operation_block_set("VipsForeignLoadJpeg", FALSE);
  vips_operation_block_set("VipsForeignLoadPng", FALSE);

  /* Loading the magic database now turns a missing database into a start-up error
   * instead of a refusal of every upload. */
  m = magic_cookie_new();
  if (m == NULL) {
    init_problem = "libmagic cannot load its database";
    goto out;
  }
  magic_idle[magic_nidle++] = m;
  atomic_store(&files_state, STATE_READY);
  return;
out:
  atomic_store(&files_state, STATE_FAILED);
}

tryon_status tryon_files_global_init(tryon_err *err) {
  tryon_status st = TRYON_OK;

  pthread_once(&init_once, files_init_once);
  switch (atomic_load(&files_state)) {
    case STATE_READY:
      break;
    case STATE_SHUT:
      st = tryon_err_set(err, TRYON_E_INTERNAL, "the files module was shut down");
      break;
    default:
      st = tryon_err_set(err, TRYON_E_INTERNAL, "%s", init_problem);
      break;
  }
  return st;
}

void tryon_files_global_shutdown(void) {
  int ready = STATE_READY;

  if (!atomic_compare_exchange_strong(&files_state, &ready, STATE_SHUT))
    return;
  pthread_mutex_lock(&magic_lock);
  while (magic_nidle > 0)
    magic_close(magic_idle[--magic_nidle]);
  pthread_mutex_unlock(&magic_lock);
  vips_shutdown();
}

/* ------------------------------------------------------------------ small helpers */

static uint32_t be16(const unsigned char *p) {
  return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The type libmagic names from the bytes, reduced to what we accept. */
static tryon_status magic_format(const void *data, size_t len, image_format *fmt, tryon_err *err) {
  magic_t m = magic_acquire();
  const char *mime;
  tryon_status st = TRYON_OK;

  *fmt = FORMAT_NONE;
  if (m == NULL) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "libmagic is unavailable");
    goto out;
  }
  mime = magic_buffer(m, data, len);
  if (mime == NULL)
    /* libmagic could not classify the bytes at all: nothing it recognises, so not a
     * photo we take. */
    TRYON_LOG_DEBUG("libmagic failed", TRYON_LF_STR("why", magic_error(m)));
  else if (strcmp(mime, "image/jpeg") == 0)
    *fmt = FORMAT_JPEG;
  else if (strcmp(mime, "image/png") == 0)
    *fmt = FORMAT_PNG;
out:
  if (m != NULL)
    magic_give_back(m);
  return st;
}

static image_format signature_format(const unsigned char *p, size_t len) {
  if (len >= sizeof jpeg_signature && memcmp(p, jpeg_signature, sizeof jpeg_signature) == 0)
    return FORMAT_JPEG;
  if (len >= sizeof png_signature && memcmp(p, png_signature, sizeof png_signature) == 0)
    return FORMAT_PNG;
  return FORMAT_NONE;
}

/* The format a declared type names: its media type before any parameter, any case.
 * The aliases are what browsers and old clients really send. */
static image_format declared_format(const char *declared) {
  static const struct {
    const char *name;
    image_format fmt;
  } names[] = {{"image/jpeg", FORMAT_JPEG},
               {"image/jpg", FORMAT_JPEG},
               {"image/pjpeg", FORMAT_JPEG},
               {"image/png", FORMAT_PNG},
               {"image/x-png", FORMAT_PNG}};
  size_t n;

  while (*declared == ' ' || *declared == '\t')
    declared++;
  n = strcspn(declared, "; \t");
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strlen(names[i].name) == n && strncasecmp(declared, names[i].name, n) == 0)
      return names[i].fmt;
  }
  return FORMAT_NONE;
}

/* ------------------------------------------------------------------ JPEG structure */

typedef struct jpeg_info {
  bool frame; /* a frame header (SOFn) was found */
  uint32_t width, height;
  unsigned scans;
  bool malformed; /* something libjpeg refuses: a second frame, a scan before it ... */
} jpeg_info;

static bool jpeg_is_sof(unsigned m) {
  return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* From just after an SOS segment's header to the 0xFF of the next marker: entropy-coded
 * data, where 0xFF 0x00 is a stuffed byte and 0xFF 0xD0..D7 a restart marker. */
static size_t jpeg_skip_entropy(const unsigned char *p, size_t n, size_t i) {
  while (i < n) {
    const unsigned char *ff = memchr(p + i, 0xFF, n - i);
    if (ff == NULL || (size_t)(ff - p) + 1 >= n)
      return n;
    i = (size_t)(ff - p);
    if (p[i + 1] == 0x00 || (p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7))
      i += 2;
    else if (p[i + 1] == 0xFF)
      i += 1; /* fill bytes before a marker */
    else
      return i;
  }
  return n;
}

/*
 * Walks the marker segments the way libjpeg reads them (bytes between segments are
 * skipped, as libjpeg does with a warning) up to EOI or the end of the data, to learn
 * the frame's size and count the scans. Everything after EOI is ignored, as it is by
 * the decoder. A truncated file is not malformed here: the decode reports it.
 */
static void jpeg_walk(const unsigned char *p, size_t n, jpeg_info *info) {
  size_t i = 2;

  memset(info, 0, sizeof *info);
  for (;;) {
    while (i < n && p[i] != 0xFF)
      i++;
    while (i < n && p[i] == 0xFF)
      i++;
    if (i >= n)
      break;
    unsigned m = p[i++];
    if (m == 0xD9) /* EOI */
      break;
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
      continue; /* no length: TEM, RSTn, SOI; a stray 0xFF00 is skipped as libjpeg does */
    if (i + 2 > n)
      break;
    size_t seglen = be16(p + i);
    if (seglen < 2) {
      info->malformed = true;
      break;
    }
    if (jpeg_is_sof(m)) {
      if (info->frame || seglen < 8 || i + 7 > n) {
        info->malformed = info->frame || seglen < 8;
        break;
      }
      info->frame = true;
      info->height = be16(p + i + 3);
      info->width = be16(p + i + 5);
    } else if (m == 0xDA) {
      if (!info->frame) {
        info->malformed = true;
        break;
      }
      if (++info->scans > JPEG_MAX_SCANS)
        break;
      i = jpeg_skip_entropy(p, n, i + seglen < n ? i + seglen : n);
      continue;
    }
    i += seglen;
  }
}

/* ------------------------------------------------------------------- PNG structure */

static bool png_ihdr(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h) {
  if (n < 8 + 8 + 13 + 4 || be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
    return false;
  *w = be32(p + 16);
  *h = be32(p + 20);
  /* The PNG specification caps both at 2^31 - 1; zero is not an image. */
  return *w > 0 && *h > 0 && *w <= 0x7FFFFFFFu && *h <= 0x7FFFFFFFu;
}

/* The chunks a decoder needs for the pixels, their transparency and their colours.
 * Text, XMP, time, APNG frames and every private chunk are left behind before libpng
 * sees the file: compressed text (zTXt, iTXt) is the PNG decompression bomb, and none
 * of it would be kept anyway. eXIf stays for its orientation. */
static bool png_keep_chunk(const unsigned char *type) {
  static const char keep[][5] = {"IHDR", "PLTE", "IDAT", "IEND", "tRNS", "gAMA",
                                 "cHRM", "sRGB", "iCCP", "sBIT", "eXIf"};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    if (memcmp(type, keep[i], 4) == 0)
      return true;
  }
  return false;
}

/*
 * Copies the signature and the kept chunks, up to and including IEND, into a new
 * malloc buffer (*out, at most n bytes; the caller frees it). Trailing data after
 * IEND is dropped. TRYON_E_CORRUPT_IMAGE when the chunk list is broken: a length past
 * the end, a type that is not four letters, a critical chunk we do not know (the
 * image cannot be decoded faithfully without it), or no IEND.
 */
static tryon_status png_clean(const unsigned char *p, size_t n, unsigned char **out,
                              size_t *out_len, tryon_err *err) {
  unsigned char *buf = malloc(n);
  size_t i = 8, k = 8;
  bool ended = false;
  tryon_status st = TRYON_OK;

  *out = NULL;
  *out_len = 0;
  if (buf == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  memcpy(buf, p, 8);
  while (!ended && n - i >= 12) {
    uint32_t len = be32(p + i);
    const unsigned char *type = p + i + 4;
    bool letters = true;

    for (int j = 0; j < 4; j++)
      letters &= (type[j] >= 'A' && type[j] <= 'Z') || (type[j] >= 'a' && type[j] <= 'z');
    if (!letters || len > 0x7FFFFFFFu || len > n - i - 12)
      break;
    if (png_keep_chunk(type)) {
      memcpy(buf + k, p + i, 12 + (size_t)len);
      k += 12 + (size_t)len;
    } else if (type[0] >= 'A' && type[0] <= 'Z') {
      break; /* an unknown critical chunk */
    }
    ended = memcmp(type, "IEND", 4) == 0;
    i += 12 + (size_t)len;
  }
  if (!ended) {
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT);
    goto out;
  }
  *out = buf;
  *out_len = k;
  buf = NULL;
out:
  free(buf);
  return st;
}

/* ------------------------------------------------------------------ decode, encode */

/* Logs what libvips said (debug only: it is for us, not the user) and clears its error
 * buffer, which would otherwise grow with every refused upload. */
void tryon__files_vips_log_reason(const char *stage) {
  char *why = vips_error_buffer_copy(); /* copies and clears in one locked step */

  TRYON_LOG_DEBUG("libvips failed", TRYON_LF_STR("stage", stage),
                  TRYON_LF_STR("why", why ? why : ""));
  g_free(why);
}

/* vips_log_reason, then sets `st` with a user-readable message and returns it. */
tryon_status tryon__files_vips_failed(tryon_err *err, tryon_status st, const char *stage,
                                      const char *message) {
  tryon__files_vips_log_reason(stage);
  return tryon_err_set(err, st, "%s", message);
}

/* Saves `img` as JPEG, or PNG when it has alpha, with no metadata at all. */
/* Whether an ICC profile is safe to hand to lcms: at most 1 MiB and 100 tags, every
 * tag inside the profile, and none of the multi-process-element kind (D2Bx/B2Dx tags,
 * type 'mpet'), whose pipelines cost lcms time quadratic in their length: a few
 * kilobytes can ask for hours. */
bool tryon__files_icc_safe(const void *data, size_t len) {
  const unsigned char *p = data;
  if (p == NULL || len < 132 || len > 1024 * 1024)
    return false;
  uint32_t declared = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
  uint32_t count = (uint32_t)p[128] << 24 | (uint32_t)p[129] << 16 | (uint32_t)p[130] << 8 | p[131];
  if (declared > len || count > 100 || 132 + (size_t)count * 12 > len)
    return false;
  for (uint32_t i = 0; i < count; i++) {
    const unsigned char *e = p + 132 + (size_t)i * 12;
    uint32_t off = (uint32_t)e[4] << 24 | (uint32_t)e[5] << 16 | (uint32_t)e[6] << 8 | e[7];
    uint32_t size = (uint32_t)e[8] << 24 | (uint32_t)e[9] << 16 | (uint32_t)e[10] << 8 | e[11];
    if (off > len || size > len - off || size < 4)
      return false;
    if ((memcmp(e, "D2B", 3) == 0 || memcmp(e, "B2D", 3) == 0) || memcmp(p + off, "mpet", 4) == 0)
      return false;
  }
  return true;
}

static int save(VipsImage *img, bool png, void **buf, size_t *len) {
  if (png)
    return vips_pngsave_buffer(img, buf, len, "strip", TRUE, NULL);
  return vips_jpegsave_buffer(img, buf, len, "Q", TRYON_FILES_JPEG_QUALITY, "strip", TRUE,
                              "optimize_coding", TRUE, NULL);
}

/*
 * Decodes `len` bytes known to be `fmt` whose header says w x h, and fills `out`.
 * Every intermediate image lives in a local array of `scope`, so one unref frees them.
 */
static tryon_status transcode(image_format fmt, const unsigned char *src, size_t len, uint32_t w,
                              uint32_t h, tryon_image *out, tryon_err *err) {
  VipsImage *scope = vips_image_new();
  VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(scope), 8);
  VipsImage *img = NULL;
  void *main_buf = NULL, *thumb_buf = NULL;
  size_t main_len = 0, thumb_len = 0;
  unsigned char md[32];
  bool png;
  int rc;
  tryon_status st = TRYON_OK;

  /* Sequential access: the pixels stream through the colour conversion into one
   * 8-bit memory image, so a 16-bit source is never held whole at 16 bits.
   * fail_on makes damage an error instead of grey rows. libjpeg reports a scan cut
   * short before an EOI marker ("premature end of data segment") or a bad Huffman
   * code only as a warning, so JPEG fails on warnings (as sharp does by default).
   * libpng's warnings are mostly about harmless ancillary chunks, and a short IDAT
   * stream already fails at ERROR. */
  if (fmt == FORMAT_JPEG)
    rc = vips_jpegload_buffer((void *)src, len, &t[0], "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                              VIPS_FAIL_ON_WARNING, NULL);
  else
    rc = vips_pngload_buffer((void *)src, len, &t[0], "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                             VIPS_FAIL_ON_ERROR, NULL);
  if (rc != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "header", MSG_CORRUPT);
    goto out;
  }
  img = t[0];
  if ((uint32_t)img->Xsize != w || (uint32_t)img->Ysize != h) {
    /* Our header walk and the decoder disagree about the size: only a crafted file
     * does that, and the limits were checked against our reading. */
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT);
    goto out;
  }

  /* An embedded profile says what the numbers mean (Display P3 from phones, CMYK from
   * print tools): convert through it so that colours survive dropping it. A profile
   * lcms refuses, or one that does not fit the bands, is ignored like any metadata. */
  if (vips_image_get_typeof(img, VIPS_META_ICC_NAME) != 0) {
    const void *icc = NULL;
    size_t icc_len = 0;
    if (vips_image_get_blob(img, VIPS_META_ICC_NAME, &icc, &icc_len) != 0 ||
        !tryon__files_icc_safe(icc, icc_len)) {
      /* A profile that could make lcms work for minutes is ignored like any metadata. */
      vips_error_clear();
      TRYON_LOG_DEBUG("icc profile ignored", TRYON_LF_INT("bytes", (int64_t)icc_len));
    } else if (vips_icc_transform(img, &t[1], "srgb", "embedded", TRUE, "depth", 8, "intent",
                                  VIPS_INTENT_RELATIVE, NULL) == 0) {
      img = t[1];
    } else {
      tryon__files_vips_log_reason("icc");
    }
  }
  if (vips_image_get_interpretation(img) != VIPS_INTERPRETATION_sRGB) {
    if (vips_colourspace(img, &t[2], VIPS_INTERPRETATION_sRGB, NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "colourspace", MSG_CORRUPT);
      goto out;
    }
    img = t[2];
  }
  if (vips_image_get_format(img) != VIPS_FORMAT_UCHAR) {
    if (vips_cast_uchar(img, &t[3], NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "cast", MSG_CORRUPT);
      goto out;
    }
    img = t[3];
  }
  if (img->Bands != 3 && img->Bands != 4) {
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT);
    goto out;
  }

  /* The full decode happens here, once: every pixel read, every error seen. */
  t[4] = vips_image_copy_memory(img);
  if (t[4] == NULL) {
    st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "decode", MSG_CORRUPT);
    goto out;
  }
  if (vips_autorot(t[4], &t[5], NULL) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "autorot", MSG_CORRUPT);
    goto out;
  }
  img = t[5];

  png = vips_image_hasalpha(img);
  /* What is kept is bounded: a crafted small input must not become a huge file (a
   * palette PNG expands to RGBA). The image models need no more pixels than this. */
  int side = png ? TRYON_FILES_MAX_OUTPUT_SIDE_ALPHA : TRYON_FILES_MAX_OUTPUT_SIDE;
  if (img->Xsize > side || img->Ysize > side) {
    if (vips_thumbnail_image(img, &t[7], side, "height", side, "size", VIPS_SIZE_DOWN, NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "downscale",
                                    "the image could not be re-encoded");
      goto out;
    }
    img = t[7];
  }
  if (save(img, png, &main_buf, &main_len) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "save",
                                  "the image could not be re-encoded");
    goto out;
  }
  if (main_len > TRYON_FILES_MAX_OUTPUT_BYTES) {
    st = tryon_err_set(err, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS,
                       "the image holds too much detail to keep; try a smaller one");
    goto out;
  }
  if (vips_thumbnail_image(img, &t[6], TRYON_FILES_THUMB_SIDE, "height", TRYON_FILES_THUMB_SIDE,
                           "size", VIPS_SIZE_DOWN, NULL) != 0 ||
      save(t[6], png, &thumb_buf, &thumb_len) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "thumbnail",
                                  "the thumbnail could not be made");
    goto out;
  }
  if (EVP_Digest(main_buf, main_len, md, NULL, EVP_sha256(), NULL) != 1) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "SHA-256 failed");
    goto out;
  }

  out->mime = format_mime[png ? FORMAT_PNG : FORMAT_JPEG];
  out->width = img->Xsize;
  out->height = img->Ysize;
  out->data = main_buf;
  out->len = main_len;
  memcpy(out->sha256, md, sizeof md);
  out->thumb_mime = out->mime;
  out->thumb_width = t[6]->Xsize;
  out->thumb_height = t[6]->Ysize;
  out->thumb = thumb_buf;
  out->thumb_len = thumb_len;
  main_buf = NULL;
  thumb_buf = NULL;
out:
  g_free(main_buf);
  g_free(thumb_buf);
  g_object_unref(scope);
  return st;
}

/* ------------------------------------------------------------------ the public face */

static tryon_status normalise(const void *data, size_t len, size_t max_len,
                              const char *declared_mime, tryon_image *out, tryon_err *err);

tryon_status tryon_image_normalise(const void *data, size_t len, const char *declared_mime,
                                   tryon_image *out, tryon_err *err) {
  return normalise(data, len, TRYON_FILES_MAX_BYTES, declared_mime, out, err);
}

tryon_status tryon_image_normalise_result(const void *data, size_t len, tryon_image *out,
                                          tryon_err *err) {
  return normalise(data, len, TRYON_FILES_MAX_OUTPUT_BYTES, NULL, out, err);
}

static tryon_status normalise(const void *data, size_t len, size_t max_len,
                              const char *declared_mime, tryon_image *out, tryon_err *err) {
  const unsigned char *p = data;
  unsigned char *clean = NULL;
  size_t clean_len = 0;
  image_format fmt = FORMAT_NONE;
  uint32_t w = 0, h = 0;
  jpeg_info jpeg;
  tryon_status st = TRYON_OK;

  if (out == NULL || (data == NULL && len > 0)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no image or no place for the result");
    goto out;
  }
  memset(out, 0, sizeof *out);
  if (atomic_load(&files_state) != STATE_READY) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "tryon_files_global_init has not succeeded");
    goto out;
  }
  if (len == 0) {
    st = tryon_err_set(err, TRYON_E_EMPTY_FILE, "the file is empty");
    goto out;
  }
  if (len > max_len) {
    st = max_len == TRYON_FILES_MAX_BYTES
             ? tryon_err_set(err, TRYON_E_FILE_TOO_LARGE, "the photo is larger than 5 MB")
             : tryon_err_set(err, TRYON_E_FILE_TOO_LARGE, "the image is larger than %zu bytes",
                             max_len);
    goto out;
  }

  st = magic_format(data, len, &fmt, err);
  if (st != TRYON_OK)
    goto out;
  if (fmt == FORMAT_NONE) {
    st = tryon_err_set(err, TRYON_E_UNSUPPORTED_TYPE, MSG_UNSUPPORTED);
    goto out;
  }
  if (signature_format(p, len) != fmt) {
    st = tryon_err_set(err, TRYON_E_TYPE_MISMATCH, "the file's content does not match its type");
    goto out;
  }
  /* An empty declared type is no declaration (a part sent without Content-Type). */
  if (declared_mime != NULL && declared_mime[0] != '\0' && declared_format(declared_mime) != fmt) {
    st = tryon_err_set(err, TRYON_E_TYPE_MISMATCH,
                       "the file is a %s image but was sent as another type", format_label[fmt]);
    goto out;
  }

  if (fmt == FORMAT_JPEG) {
    jpeg_walk(p, len, &jpeg);
    if (jpeg.frame) {
      w = jpeg.width;
      h = jpeg.height;
    }
  } else if (!png_ihdr(p, len, &w, &h)) {
    w = h = 0;
  }
  /* A JPEG height of 0 (size given later by a DNL marker) is not supported by libjpeg. */
  if (w == 0 || h == 0) {
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT);
    goto out;
  }
  if (w > TRYON_FILES_MAX_SIDE || h > TRYON_FILES_MAX_SIDE ||
      (long long)w * h > TRYON_FILES_MAX_PIXELS) {
    st = tryon_err_set(err, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS,
                       "the photo is %ux%u pixels; at most %d a side and %lld megapixels are "
                       "accepted",
                       (unsigned)w, (unsigned)h, TRYON_FILES_MAX_SIDE,
                       TRYON_FILES_MAX_PIXELS / 1000000);
    goto out;
  }

  if (fmt == FORMAT_JPEG) {
    if (jpeg.malformed || jpeg.scans > JPEG_MAX_SCANS) {
      TRYON_LOG_DEBUG("JPEG structure refused", TRYON_LF_BOOL("malformed", jpeg.malformed),
                      TRYON_LF_INT("scans", jpeg.scans));
      st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT);
      goto out;
    }
    st = transcode(fmt, p, len, w, h, out, err);
  } else {
    st = png_clean(p, len, &clean, &clean_len, err);
    if (st == TRYON_OK)
      st = transcode(fmt, clean, clean_len, w, h, out, err);
  }
out:
  free(clean);
  return st;
}

void tryon_image_release(tryon_image *img) {
  if (img == NULL)
    return;
  g_free(img->data);
  g_free(img->thumb);
  memset(img, 0, sizeof *img);
}
