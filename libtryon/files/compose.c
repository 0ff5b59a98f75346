/*
 * files/compose.c - section 5 of tryon/files.h: the free-tier watermark and the
 * offline previews (try-on and edit) made with libvips.
 *
 * Every input here is an image we produced or one tryon_image_normalise accepted, but
 * it is still checked before any decoder sees it: a JPEG or PNG signature, at most 100
 * JPEG scans, a PNG chunk list of the kinds normalise keeps, the module's byte and
 * pixel limits. The pixels then stream from the decoder through the compositing into
 * the encoder (sequential access), so the memory of one call is a few strips of the
 * image plus the small overlays, not the whole decoded photo. Every intermediate image
 * hangs off one "scope" object, so a single unref frees them on every path.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vips/vips.h>

#include <tryon/core.h>
#include <tryon/files.h>

#include "files/files_internal.h"

/* Pango renders "<family> <size>"; at 72 dpi one point is one pixel, so the size is
 * the font's em in pixels. */
#define FONT_FAMILY "DejaVu Sans Bold"
#define FONT_DPI 72

/* Below this em the glyphs are a smudge: the mark is made smaller only to fit a tiny
 * image, and left out when even this size cannot fit. */
#define MARK_MIN_PX 4
#define MARK_START_MIN_PX 10

/* The em of the trial rendering that predicts a mark's size. */
#define MARK_PROBE_PX 24

/* As tryon_image_normalise: real encoders write 10 to about 20 scans. */
#define JPEG_MAX_SCANS 100

#define LABEL_OFFLINE "offline preview"

#define MSG_NOT_OURS "the %s image is not a JPEG or PNG this service made or checked"
#define MSG_CORRUPT "the %s image is damaged and cannot be read"
#define MSG_ENCODE "the image could not be decoded or re-encoded"

static const unsigned char jpeg_signature[3] = {0xFF, 0xD8, 0xFF};
static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

/* How a rendered text is dressed: white glyphs over a soft dark shadow and a dark,
 * translucent pill. Alphas are 0..1. */
typedef struct mark_style {
  double text_alpha;
  double shadow_alpha;
  double pill_alpha;
} mark_style;

/* The free-tier mark: present but quiet. White at 68 % keeps the photo visible through
 * it; the pill and the shadow keep it legible on white shirts and bright skies. */
static const mark_style watermark_style = {0.68, 0.55, 0.30};

/* The offline label must be read at a glance, so it is almost opaque. */
static const mark_style label_style = {0.95, 0.60, 0.55};

/* Where an item goes on the person photo, as fractions of the photo's width and
 * height: the centre of the box and the box the scaled item must fit in. These are
 * guesses for a person standing upright and centred, which is what try-on photos are;
 * the preview only has to look plausible and be obviously not a generation. */
typedef struct placement {
  const char *category;
  double cx, cy; /* centre */
  double bw, bh; /* box */
} placement;

static const placement placements[] = {
    {"top", 0.50, 0.42, 0.50, 0.36},     {"outerwear", 0.50, 0.45, 0.55, 0.44},
    {"dress", 0.50, 0.55, 0.50, 0.56},   {"bottom", 0.50, 0.71, 0.42, 0.40},
    {"shoes", 0.50, 0.92, 0.30, 0.12},   {"headwear", 0.50, 0.10, 0.30, 0.16},
    {"glasses", 0.50, 0.21, 0.22, 0.08}, {"bag", 0.76, 0.60, 0.24, 0.26},
    {"jewelry", 0.50, 0.32, 0.14, 0.10}, {"other", 0.50, 0.50, 0.40, 0.40},
};

/* A decoded input: sRGB, 8 bits, 3 bands or 4 with alpha, orientation applied, no ICC
 * profile attached. `img` belongs to the caller's scope. */
typedef struct input {
  VipsImage *img;
  bool png;   /* the source was a PNG */
  bool alpha; /* img has 4 bands */
} input;

/* ------------------------------------------------------------------ small helpers */

/* Rounds half away from zero; here rather than lround so the library needs no libm. */
static long rnd(double v) {
  return v >= 0 ? (long)(v + 0.5) : -(long)(-v + 0.5);
}

static int clampi(long v, long lo, long hi) {
  return (int)(v < lo ? lo : v > hi ? hi : v);
}

static int mini(int a, int b) {
  return a < b ? a : b;
}

/* Local arrays of `scope` are unreffed with it: whatever a helper puts there lives as
 * long as the public call. */
static VipsImage **scratch(VipsObject *scope, int n) {
  return (VipsImage **)vips_object_local_array(scope, n);
}

/* ------------------------------------------------------------------ input checks */

/* Counts SOS markers over the whole file: inside entropy-coded data 0xFF is always
 * followed by 0x00 or a restart marker, so each 0xFF 0xDA is a scan (or one inside an
 * embedded thumbnail, which only makes the count stricter). */
static bool jpeg_scans_ok(const unsigned char *p, size_t n) {
  unsigned scans = 0;
  size_t i = 0;

  while (i + 1 < n) {
    const unsigned char *ff = memchr(p + i, 0xFF, n - i - 1);
    if (ff == NULL)
      break;
    i = (size_t)(ff - p) + 1;
    if (p[i] == 0xDA && ++scans > JPEG_MAX_SCANS)
      return false;
  }
  return scans > 0;
}

/* The chunk kinds tryon_image_normalise keeps or writes (and tEXt/tIME, harmless and
 * bounded by the file); anything else, zTXt and iTXt above all, is not ours. */
static bool png_chunk_ours(const unsigned char *type) {
  static const char ours[][5] = {"IHDR", "PLTE", "IDAT", "IEND", "tRNS", "gAMA", "cHRM",
                                 "sRGB", "sBIT", "pHYs", "bKGD", "tEXt", "tIME"};
  for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
    if (memcmp(type, ours[i], 4) == 0)
      return true;
  }
  return false;
}

/* The chunk list from the signature to IEND is whole and holds only our kinds, IHDR
 * first. */
static bool png_chunks_ok(const unsigned char *p, size_t n) {
  size_t i = 8;

  if (n < 8 + 12 + 13 || memcmp(p + 12, "IHDR", 4) != 0)
    return false;
  while (n - i >= 12) {
    uint32_t len =
        (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 | p[i + 3];
    const unsigned char *type = p + i + 4;

    if (len > n - i - 12 || !png_chunk_ours(type))
      return false;
    if (memcmp(type, "IEND", 4) == 0)
      return true;
    i += 12 + (size_t)len;
  }
  return false;
}

/*
 * Checks and opens one input (`what` names it in messages: "source", "person",
 * "item"). The pixels are not decoded here: the loader reads the header, and the
 * decode happens as the result is encoded.
 */
static tryon_status load_input(VipsObject *scope, const char *what, const void *data, size_t len,
                               input *in, tryon_err *err) {
  VipsImage **t = scratch(scope, 6);
  const unsigned char *p = data;
  VipsImage *img;
  bool png;
  int rc;
  tryon_status st = TRYON_OK;

  memset(in, 0, sizeof *in);
  if (data == NULL || len == 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no %s image", what);
    goto out;
  }
  if (len > TRYON_FILES_MAX_OUTPUT_BYTES) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE, "the %s image is larger than %u MB", what,
                       TRYON_FILES_MAX_OUTPUT_BYTES / (1024u * 1024u));
    goto out;
  }
  if (len >= sizeof png_signature && memcmp(p, png_signature, sizeof png_signature) == 0)
    png = true;
  else if (len >= sizeof jpeg_signature && memcmp(p, jpeg_signature, sizeof jpeg_signature) == 0)
    png = false;
  else {
    st = tryon_err_set(err, TRYON_E_INVALID, MSG_NOT_OURS, what);
    goto out;
  }
  if (png ? !png_chunks_ok(p, len) : !jpeg_scans_ok(p, len)) {
    st = tryon_err_set(err, TRYON_E_INVALID, MSG_NOT_OURS, what);
    goto out;
  }

  /* Sequential: the decoder runs once, top to bottom, as the encoder pulls strips.
   * fail_on as in tryon_image_normalise, so damage is an error, not grey rows. */
  if (png)
    rc = vips_pngload_buffer((void *)data, len, &t[0], "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                             VIPS_FAIL_ON_ERROR, NULL);
  else
    rc = vips_jpegload_buffer((void *)data, len, &t[0], "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                              VIPS_FAIL_ON_WARNING, NULL);
  if (rc != 0) {
    tryon__files_vips_log_reason("load");
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, what);
    goto out;
  }
  img = t[0];
  if (img->Xsize > TRYON_FILES_MAX_SIDE || img->Ysize > TRYON_FILES_MAX_SIDE ||
      (long long)img->Xsize * img->Ysize > TRYON_FILES_MAX_PIXELS) {
    st = tryon_err_set(err, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS,
                       "the %s image is %dx%d pixels; at most %d a side and %lld megapixels "
                       "are accepted",
                       what, img->Xsize, img->Ysize, TRYON_FILES_MAX_SIDE,
                       TRYON_FILES_MAX_PIXELS / 1000000);
    goto out;
  }

  /* Our own outputs carry no orientation. A validated upload that still does is turned
   * upright here, since the tag goes with the rest of the metadata; rotating needs
   * random access, so that rare input is decoded whole. */
  if (vips_image_get_orientation(img) > 1) {
    if (png)
      rc = vips_pngload_buffer((void *)data, len, &t[1], "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    else
      rc = vips_jpegload_buffer((void *)data, len, &t[1], "fail_on", VIPS_FAIL_ON_WARNING, NULL);
    if (rc != 0 || vips_autorot(t[1], &t[2], NULL) != 0) {
      tryon__files_vips_log_reason("autorot");
      st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, what);
      goto out;
    }
    img = t[2];
  }
  if (vips_image_get_interpretation(img) != VIPS_INTERPRETATION_sRGB) {
    if (vips_colourspace(img, &t[3], VIPS_INTERPRETATION_sRGB, NULL) != 0) {
      tryon__files_vips_log_reason("colourspace");
      st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, what);
      goto out;
    }
    img = t[3];
  }
  if (vips_image_get_format(img) != VIPS_FORMAT_UCHAR) {
    if (vips_cast_uchar(img, &t[4], NULL) != 0) {
      tryon__files_vips_log_reason("cast");
      st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, what);
      goto out;
    }
    img = t[4];
  }
  if (img->Bands != 3 && img->Bands != 4) {
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, what);
    goto out;
  }
  /* No later operation (the item's resize above all) may hand a profile to lcms:
   * profiles are validated only by tryon_image_normalise, and ours carry none. */
  if (vips_copy(img, &t[5], NULL) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "copy", "the image could not be prepared");
    goto out;
  }
  img = t[5];
  vips_image_remove(img, VIPS_META_ICC_NAME);

  in->img = img;
  in->png = png;
  in->alpha = img->Bands == 4;
out:
  return st;
}

/* "png" (also NULL or "") or "jpeg"/"jpg", any case. */
static tryon_status parse_format(const char *format, bool *png, tryon_err *err) {
  if (format == NULL || format[0] == '\0' || g_ascii_strcasecmp(format, "png") == 0)
    *png = true;
  else if (g_ascii_strcasecmp(format, "jpeg") == 0 || g_ascii_strcasecmp(format, "jpg") == 0)
    *png = false;
  else
    return tryon_err_set(err, TRYON_E_INVALID, "the output format must be png or jpeg");
  return TRYON_OK;
}

/* The watermark text as Pango markup: valid UTF-8, at most
 * TRYON_IMAGE_WATERMARK_TEXT_MAX bytes, no control characters, something visible, and
 * escaped, since vips_text reads markup ("<" or "&" would be tags and entities).
 * *markup is freed with g_free. */
static tryon_status text_markup(const char *text, char **markup, tryon_err *err) {
  size_t n = strlen(text);
  bool visible = false;

  *markup = NULL;
  if (n == 0 || n > TRYON_IMAGE_WATERMARK_TEXT_MAX || !g_utf8_validate(text, (gssize)n, NULL))
    return tryon_err_set(err, TRYON_E_INVALID, "the watermark text must be 1 to %d bytes of UTF-8",
                         TRYON_IMAGE_WATERMARK_TEXT_MAX);
  for (const char *s = text; *s != '\0'; s = g_utf8_next_char(s)) {
    gunichar c = g_utf8_get_char(s);
    if (g_unichar_iscntrl(c))
      return tryon_err_set(err, TRYON_E_INVALID, "the watermark text has a control character");
    visible |= g_unichar_isgraph(c); /* not space, format or unassigned */
  }
  if (!visible)
    return tryon_err_set(err, TRYON_E_INVALID, "the watermark text is blank");
  *markup = g_markup_escape_text(text, (gssize)n);
  return *markup != NULL ? TRYON_OK : tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
}

/* ------------------------------------------------------------------ drawing */

/* A one-band mask, 255 inside a w x h rectangle whose corners are rounded with radius
 * r, 0 outside. A new memory image (the caller unrefs it) or NULL. */
static VipsImage *rounded_rect(int w, int h, int r) {
  VipsImage *black = NULL, *m = NULL;

  if (vips_black(&black, w, h, NULL) != 0)
    return NULL;
  m = vips_image_copy_memory(black);
  g_object_unref(black);
  if (m == NULL)
    return NULL;
  r = clampi(r, 0, mini(w, h) / 2);
  if ((w - 2 * r > 0 && vips_draw_rect1(m, 255, r, 0, w - 2 * r, h, "fill", TRUE, NULL) != 0) ||
      (h - 2 * r > 0 && vips_draw_rect1(m, 255, 0, r, w, h - 2 * r, "fill", TRUE, NULL) != 0) ||
      (r > 0 && (vips_draw_circle1(m, 255, r, r, r, "fill", TRUE, NULL) != 0 ||
                 vips_draw_circle1(m, 255, w - 1 - r, r, r, "fill", TRUE, NULL) != 0 ||
                 vips_draw_circle1(m, 255, r, h - 1 - r, r, "fill", TRUE, NULL) != 0 ||
                 vips_draw_circle1(m, 255, w - 1 - r, h - 1 - r, r, "fill", TRUE, NULL) != 0))) {
    g_object_unref(m);
    return NULL;
  }
  return m;
}

/* An RGBA sRGB layer the size of `mask`: every pixel `grey`, alpha = mask * alpha. */
static int layer(VipsObject *scope, VipsImage *mask, double grey, double alpha, VipsImage **out) {
  VipsImage **t = scratch(scope, 4);
  double ink[3] = {grey, grey, grey};

  if (vips_linear1(mask, &t[0], alpha, 0.0, "uchar", TRUE, NULL) != 0)
    return -1;
  t[1] = vips_image_new_from_image(t[0], ink, 3);
  if (t[1] == NULL || vips_bandjoin2(t[1], t[0], &t[2], NULL) != 0 ||
      vips_copy(t[2], &t[3], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) != 0)
    return -1;
  *out = t[3];
  return 0;
}

/*
 * Renders `markup` at an em of `font_px` pixels as an RGBA memory image: a dark pill,
 * a blurred shadow one sixteenth of the em down and right, the white text. *out
 * belongs to scope.
 */
static tryon_status render_mark(VipsObject *scope, const char *markup, int font_px,
                                const mark_style *style, VipsImage **out, tryon_err *err) {
  VipsImage **t = scratch(scope, 8);
  VipsImage *layers[3];
  int modes[2] = {VIPS_BLEND_MODE_OVER, VIPS_BLEND_MODE_OVER};
  char font[64];
  int pad_x, pad_y, w, h, tx, ty, d;
  double sigma;
  tryon_status st = TRYON_OK;

  snprintf(font, sizeof font, "%s %d", FONT_FAMILY, font_px);
  /* vips_text serialises Pango behind its own lock, so this is safe on any thread. */
  if (vips_text(&t[0], markup, "font", font, "dpi", FONT_DPI, NULL) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "text", "the text could not be drawn");
    goto out;
  }
  pad_x = (int)rnd(0.55 * font_px);
  pad_y = (int)rnd(0.30 * font_px) + 1;
  h = t[0]->Ysize + 2 * pad_y;
  /* At least as wide as tall, so the pill's two round ends meet at worst. */
  w = t[0]->Xsize + 2 * pad_x < h ? h : t[0]->Xsize + 2 * pad_x;
  tx = (w - t[0]->Xsize) / 2;
  ty = pad_y;
  d = font_px / 16 > 1 ? font_px / 16 : 1;
  sigma = font_px / 18.0 > 0.6 ? font_px / 18.0 : 0.6;

  t[1] = rounded_rect(w, h, h / 2);
  if (t[1] == NULL || vips_gaussblur(t[1], &t[2], 0.7, NULL) != 0 ||
      vips_embed(t[0], &t[3], tx, ty, w, h, NULL) != 0 ||
      vips_embed(t[0], &t[4], tx + d, ty + d, w, h, NULL) != 0 ||
      vips_gaussblur(t[4], &t[5], sigma, NULL) != 0 ||
      layer(scope, t[2], 0, style->pill_alpha, &layers[0]) != 0 ||
      layer(scope, t[5], 0, style->shadow_alpha, &layers[1]) != 0 ||
      layer(scope, t[3], 255, style->text_alpha, &layers[2]) != 0 ||
      vips_composite(layers, &t[6], 3, modes, NULL) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "mark", "the text could not be drawn");
    goto out;
  }
  /* Small, and read by every strip of the result that crosses it: made once. */
  t[7] = vips_image_copy_memory(t[6]);
  if (t[7] == NULL) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "mark", "the text could not be drawn");
    goto out;
  }
  *out = t[7];
out:
  return st;
}

/*
 * render_mark at `font_px` or smaller, so that it fits in avail_w x avail_h. A probe
 * at a small size predicts the size first (text scales with the em), so a long text
 * on a large image is never drawn big only to be thrown away. *out is NULL when even
 * MARK_MIN_PX does not fit (an image of a few pixels): nothing legible fits, and the
 * caller leaves the mark out.
 */
static tryon_status fit_mark(VipsObject *scope, const char *markup, int font_px,
                             const mark_style *style, int avail_w, int avail_h, VipsImage **out,
                             tryon_err *err) {
  VipsImage **t = scratch(scope, 1);
  int probe_px = font_px < MARK_PROBE_PX ? font_px : MARK_PROBE_PX;
  char font[64];
  tryon_status st = TRYON_OK;

  *out = NULL;
  if (avail_w <= 0 || avail_h <= 0)
    goto out;
  snprintf(font, sizeof font, "%s %d", FONT_FAMILY, probe_px);
  if (vips_text(&t[0], markup, "font", font, "dpi", FONT_DPI, NULL) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "text", "the text could not be drawn");
    goto out;
  }
  /* The mark's size at font_px as render_mark lays it out, pads and pill included. */
  double est_w = (double)t[0]->Xsize * font_px / probe_px + 1.1 * font_px + 2;
  double est_h = (double)t[0]->Ysize * font_px / probe_px + 0.6 * font_px + 4;
  double s = avail_w / est_w < avail_h / est_h ? avail_w / est_w : avail_h / est_h;
  if (s < 1.0)
    font_px = (int)(font_px * s); /* >= 0: truncation is floor */

  for (int attempt = 0; attempt < 4 && font_px >= MARK_MIN_PX; attempt++) {
    VipsImage *m = NULL;

    st = render_mark(scope, markup, font_px, style, &m, err);
    if (st != TRYON_OK)
      break;
    if (m->Xsize <= avail_w && m->Ysize <= avail_h) {
      *out = m;
      break;
    }
    s = (double)avail_w / m->Xsize;
    if ((double)avail_h / m->Ysize < s)
      s = (double)avail_h / m->Ysize;
    /* Pads and the pill do not scale exactly with the em: aim a little lower. */
    font_px = (int)(font_px * s * 0.95);
  }
out:
  return st;
}

/* Composites `mark` (RGBA) onto `img` at x, y; *out belongs to scope. */
static tryon_status overlay(VipsObject *scope, VipsImage *img, VipsImage *over, int x, int y,
                            VipsImage **out, tryon_err *err) {
  VipsImage **t = scratch(scope, 1);

  if (vips_composite2(img, over, &t[0], VIPS_BLEND_MODE_OVER, "x", x, "y", y, NULL) != 0)
    return tryon__files_vips_failed(err, TRYON_E_INTERNAL, "composite",
                                    "the image could not be composed");
  *out = t[0];
  return TRYON_OK;
}

/* The "offline preview" label in the top-left corner, about 3.5 % of the shorter side
 * high, so that nobody takes the result for a generation. */
static tryon_status add_offline_label(VipsObject *scope, VipsImage *img, VipsImage **out,
                                      tryon_err *err) {
  int shorter = mini(img->Xsize, img->Ysize);
  int margin = clampi(rnd(0.025 * shorter), 2, 1000);
  int font_px = clampi(rnd(0.035 * shorter), MARK_START_MIN_PX, 1000);
  VipsImage *mark = NULL;
  tryon_status st;

  *out = img;
  st = fit_mark(scope, LABEL_OFFLINE, font_px, &label_style, img->Xsize - 2 * margin,
                img->Ysize - 2 * margin, &mark, err);
  if (st == TRYON_OK && mark != NULL)
    st = overlay(scope, img, mark, margin, margin, out, err);
  return st;
}

/* ------------------------------------------------------------------ encoding */

/*
 * Encodes `img` (sRGB uchar; composited images have 4 bands) as PNG or JPEG into `out`
 * after reset, with `alpha` saying whether the result keeps an alpha band: a JPEG never
 * does (alpha is flattened onto white), a PNG only when its source had one. This is
 * where the inputs are really decoded, so a failure here is most likely a damaged
 * input that passed the header checks.
 */
static tryon_status encode(VipsObject *scope, VipsImage *img, bool png, bool alpha, tryon_buf *out,
                           tryon_err *err) {
  VipsImage **t = scratch(scope, 2);
  void *buf = NULL;
  size_t n = 0;
  int rc;
  tryon_status st = TRYON_OK;

  if (img->Bands == 4 && !(png && alpha)) {
    if (alpha) {
      double white[3] = {255, 255, 255};
      VipsArrayDouble *bg = vips_array_double_new(white, 3);
      rc = vips_flatten(img, &t[0], "background", bg, NULL);
      vips_area_unref(VIPS_AREA(bg));
    } else {
      /* The alpha band compositing added is 255 everywhere: drop it. */
      rc = vips_extract_band(img, &t[0], 0, "n", 3, NULL);
    }
    if (rc != 0 || vips_cast_uchar(t[0], &t[1], NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "bands",
                                    "the image could not be composed");
      goto out;
    }
    img = t[1];
  }
  if (png)
    rc = vips_pngsave_buffer(img, &buf, &n, "strip", TRUE, NULL);
  else
    rc = vips_jpegsave_buffer(img, &buf, &n, "Q", TRYON_FILES_JPEG_QUALITY, "strip", TRUE,
                              "optimize_coding", TRUE, NULL);
  if (rc != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "save", MSG_ENCODE);
    goto out;
  }
  if (n > TRYON_FILES_MAX_OUTPUT_BYTES) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE, "the result is larger than %u MB",
                       TRYON_FILES_MAX_OUTPUT_BYTES / (1024u * 1024u));
    goto out;
  }
  st = tryon_buf_append(out, buf, n);
  if (st != TRYON_OK)
    tryon_err_set(err, st, "the result does not fit in the output buffer");
out:
  g_free(buf);
  return st;
}

/* tryon_files_global_init is idempotent and cheap once done (pthread_once and an
 * atomic load); it refuses after a shutdown, and is the only way to read the module's
 * state from this file. */
static tryon_status module_ready(tryon_err *err) {
  tryon_err local;

  if (tryon_files_global_init(&local) != TRYON_OK)
    return tryon_err_set(err, TRYON_E_INTERNAL, "%s", tryon_err_message(&local));
  return TRYON_OK;
}

/* ------------------------------------------------------------------ the public face */

tryon_status tryon_image_watermark(const void *data, size_t len, const char *text, tryon_buf *out,
                                   tryon_err *err) {
  VipsImage *scope = NULL;
  VipsImage *img, *mark = NULL;
  char *markup = NULL;
  input in;
  tryon_status st = TRYON_OK;

  if (out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no place for the result");
    goto out;
  }
  tryon_buf_reset(out);
  st = text_markup(text != NULL ? text : TRYON_IMAGE_WATERMARK_TEXT, &markup, err);
  if (st != TRYON_OK)
    goto out;
  st = module_ready(err);
  if (st != TRYON_OK)
    goto out;
  scope = vips_image_new();
  st = load_input(VIPS_OBJECT(scope), "source", data, len, &in, err);
  if (st != TRYON_OK)
    goto out;
  img = in.img;

  /* Text about 4.5 % of the shorter side high, a margin of 3 %: sized by the image, so
   * it reads the same on a thumbnail-sized result and a 4096-pixel one. */
  int shorter = mini(img->Xsize, img->Ysize);
  int margin = clampi(rnd(0.03 * shorter), 2, 1000);
  int font_px = clampi(rnd(0.045 * shorter), MARK_START_MIN_PX, 1000);
  st = fit_mark(VIPS_OBJECT(scope), markup, font_px, &watermark_style, img->Xsize - 2 * margin,
                img->Ysize - 2 * margin, &mark, err);
  if (st != TRYON_OK)
    goto out;
  if (mark != NULL) {
    st = overlay(VIPS_OBJECT(scope), img, mark, img->Xsize - margin - mark->Xsize,
                 img->Ysize - margin - mark->Ysize, &img, err);
    if (st != TRYON_OK)
      goto out;
  }
  st = encode(VIPS_OBJECT(scope), img, in.png, in.alpha, out, err);
out:
  if (st != TRYON_OK && out != NULL)
    tryon_buf_reset(out);
  g_free(markup);
  if (scope != NULL)
    g_object_unref(scope);
  return st;
}

tryon_status tryon_image_offline_tryon(const void *person, size_t person_len, const void *item,
                                       size_t item_len, const char *category,
                                       const char *output_format, tryon_buf *out, tryon_err *err) {
  VipsImage *scope = NULL;
  VipsImage **t = NULL;
  VipsImage *img, *rgb, *alpha, *item_layer = NULL, *shadow_layer = NULL;
  const placement *place = NULL;
  input pin, iin;
  bool png = true;
  tryon_status st = TRYON_OK;

  if (out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no place for the result");
    goto out;
  }
  tryon_buf_reset(out);
  for (size_t i = 0; category != NULL && i < sizeof placements / sizeof placements[0]; i++) {
    if (strcmp(category, placements[i].category) == 0)
      place = &placements[i];
  }
  if (place == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "unknown item category");
    goto out;
  }
  st = parse_format(output_format, &png, err);
  if (st != TRYON_OK)
    goto out;
  st = module_ready(err);
  if (st != TRYON_OK)
    goto out;
  scope = vips_image_new();
  t = scratch(VIPS_OBJECT(scope), 12);
  st = load_input(VIPS_OBJECT(scope), "person", person, person_len, &pin, err);
  if (st == TRYON_OK)
    st = load_input(VIPS_OBJECT(scope), "item", item, item_len, &iin, err);
  if (st != TRYON_OK)
    goto out;

  int pw = pin.img->Xsize, ph = pin.img->Ysize;
  int box_w = clampi(rnd(place->bw * pw), 1, pw);
  int box_h = clampi(rnd(place->bh * ph), 1, ph);

  /* The item fits the category's box, aspect kept, enlarged when small. It is decoded
   * and shrunk in one pass and kept in memory: it is at most the box, and the shadow
   * and the composite read it again. */
  if (vips_thumbnail_image(iin.img, &t[0], box_w, "height", box_h, "size", VIPS_SIZE_BOTH,
                           "no_rotate", TRUE, NULL) != 0) {
    tryon__files_vips_log_reason("item resize");
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, "item");
    goto out;
  }
  t[1] = vips_image_copy_memory(t[0]);
  if (t[1] == NULL) {
    tryon__files_vips_log_reason("item decode");
    st = tryon_err_set(err, TRYON_E_CORRUPT_IMAGE, MSG_CORRUPT, "item");
    goto out;
  }
  int iw = t[1]->Xsize, ih = t[1]->Ysize;
  int ishort = mini(iw, ih);

  /* Its own alpha when it has one (a cut-out product shot); else a rounded rectangle
   * with feathered edges, a little transparent, so it reads as pasted on. */
  if (iin.alpha && t[1]->Bands == 4) {
    if (vips_extract_band(t[1], &t[2], 0, "n", 3, NULL) != 0 ||
        vips_extract_band(t[1], &t[3], 3, NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "item alpha",
                                    "the image could not be composed");
      goto out;
    }
    rgb = t[2];
    alpha = t[3];
  } else {
    if (t[1]->Bands == 4) {
      if (vips_extract_band(t[1], &t[2], 0, "n", 3, NULL) != 0) {
        st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "item",
                                      "the image could not be composed");
        goto out;
      }
      rgb = t[2];
    } else {
      rgb = t[1];
    }
    t[4] = rounded_rect(iw, ih, (int)rnd(0.08 * ishort));
    if (t[4] == NULL ||
        vips_gaussblur(t[4], &t[5], ishort / 80.0 > 0.8 ? ishort / 80.0 : 0.8, NULL) != 0 ||
        vips_linear1(t[5], &t[3], 0.92, 0.0, "uchar", TRUE, NULL) != 0) {
      st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "item mask",
                                    "the image could not be composed");
      goto out;
    }
    alpha = t[3];
  }
  int pad = clampi(rnd(0.05 * ishort), 2, 1000);
  int drop = pad / 2 > 1 ? pad / 2 : 1;
  if (vips_bandjoin2(rgb, alpha, &t[6], NULL) != 0 ||
      vips_copy(t[6], &t[7], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) != 0 ||
      vips_embed(alpha, &t[8], pad, pad, iw + 2 * pad, ih + 2 * pad, NULL) != 0 ||
      vips_gaussblur(t[8], &t[9], pad / 2.5 > 0.6 ? pad / 2.5 : 0.6, NULL) != 0 ||
      layer(VIPS_OBJECT(scope), t[9], 0, 0.45, &shadow_layer) != 0) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "item layer",
                                  "the image could not be composed");
    goto out;
  }
  item_layer = t[7];
  t[10] = vips_image_copy_memory(shadow_layer);
  if (t[10] == NULL) {
    st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "shadow",
                                  "the image could not be composed");
    goto out;
  }

  int x = clampi(rnd(place->cx * pw - iw / 2.0), 0, pw - iw);
  int y = clampi(rnd(place->cy * ph - ih / 2.0), 0, ph - ih);
  img = pin.img;
  st = overlay(VIPS_OBJECT(scope), img, t[10], x - pad + drop, y - pad + drop, &img, err);
  if (st == TRYON_OK)
    st = overlay(VIPS_OBJECT(scope), img, item_layer, x, y, &img, err);
  if (st == TRYON_OK)
    st = add_offline_label(VIPS_OBJECT(scope), img, &img, err);
  if (st == TRYON_OK)
    st = encode(VIPS_OBJECT(scope), img, png, pin.alpha, out, err);
out:
  if (st != TRYON_OK && out != NULL)
    tryon_buf_reset(out);
  if (scope != NULL)
    g_object_unref(scope);
  return st;
}

tryon_status tryon_image_offline_edit(const void *src, size_t len, const char *prompt,
                                      const char *output_format, tryon_buf *out, tryon_err *err) {
  /* A warm grade: red up, blue down, a touch of lift; alpha untouched. Visible at a
   * glance and the same for every prompt, which offline mode does not interpret. */
  static const double gain[4] = {1.08, 1.01, 0.84, 1.0};
  static const double lift[4] = {10.0, 4.0, -6.0, 0.0};
  VipsImage *scope = NULL;
  VipsImage **t = NULL;
  VipsImage *img;
  input in;
  bool png = true;
  tryon_status st = TRYON_OK;

  (void)prompt;
  if (out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no place for the result");
    goto out;
  }
  tryon_buf_reset(out);
  st = parse_format(output_format, &png, err);
  if (st != TRYON_OK)
    goto out;
  st = module_ready(err);
  if (st != TRYON_OK)
    goto out;
  scope = vips_image_new();
  t = scratch(VIPS_OBJECT(scope), 2);
  st = load_input(VIPS_OBJECT(scope), "source", src, len, &in, err);
  if (st != TRYON_OK)
    goto out;
  if (vips_linear(in.img, &t[0], gain, lift, in.img->Bands, "uchar", TRUE, NULL) != 0 ||
      vips_copy(t[0], &t[1], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) != 0) {
    st =
        tryon__files_vips_failed(err, TRYON_E_INTERNAL, "grade", "the image could not be composed");
    goto out;
  }
  st = add_offline_label(VIPS_OBJECT(scope), t[1], &img, err);
  if (st == TRYON_OK)
    st = encode(VIPS_OBJECT(scope), img, png, in.alpha, out, err);
out:
  if (st != TRYON_OK && out != NULL)
    tryon_buf_reset(out);
  if (scope != NULL)
    g_object_unref(scope);
  return st;
}

/* ---------------------------------------------------------------- shrinking */

tryon_status tryon_image_shrink_to(const void *src, size_t len, size_t max_bytes, tryon_buf *out,
                                   tryon_err *err) {
  VipsImage *scope = NULL;
  input in;
  tryon_status st = TRYON_OK;
  if (out == NULL || max_bytes < 1024) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no place for the result or too small a limit");
    goto out;
  }
  tryon_buf_reset(out);
  st = module_ready(err);
  if (st != TRYON_OK)
    goto out;
  scope = vips_image_new();
  st = load_input(VIPS_OBJECT(scope), "image", src, len, &in, err);
  if (st != TRYON_OK)
    goto out;
  /* The input was opened for one top-to-bottom pass; later rounds read it again, so it
   * is decoded into memory once (a rare path: photos over a provider's limit). */
  VipsImage **mem = scratch(VIPS_OBJECT(scope), 1);
  if ((mem[0] = vips_image_copy_memory(in.img)) == NULL) {
    st = tryon__files_vips_failed(err, TRYON_E_CORRUPT_IMAGE, "shrink",
                                  "the image could not be decoded");
    goto out;
  }
  /* JPEG bytes grow about with the pixels: aim under the limit, then step down. */
  double f = len > max_bytes ? sqrt((double)max_bytes / (double)len) * 0.9 : 1.0;
  for (int round = 0; round < 4; round++, f *= 0.75) {
    VipsImage **t = scratch(VIPS_OBJECT(scope), 1);
    VipsImage *img = mem[0];
    if (f < 1.0) {
      if (vips_resize(mem[0], &t[0], f, NULL) != 0) {
        st = tryon__files_vips_failed(err, TRYON_E_INTERNAL, "shrink",
                                      "the image could not be scaled");
        goto out;
      }
      img = t[0];
    }
    tryon_buf_reset(out);
    st = encode(VIPS_OBJECT(scope), img, false, in.alpha, out, err);
    /* Past the caller's buffer is past the limit too: the next round is smaller. */
    if (st == TRYON_E_TOO_LARGE) {
      tryon_err_clear(err);
      continue;
    }
    if (st != TRYON_OK || out->len <= max_bytes)
      goto out;
  }
  st = tryon_err_set(err, TRYON_E_TOO_LARGE, "the image could not be made small enough");
out:
  if (st != TRYON_OK && out != NULL)
    tryon_buf_reset(out);
  if (scope != NULL)
    g_object_unref(scope);
  return st;
}
