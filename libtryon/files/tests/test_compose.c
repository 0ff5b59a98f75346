/*
 * test_compose.c - unit tests of section 5 of tryon/files.h (compose.c): the free-tier
 * watermark and the offline try-on and edit previews. Every image is made here with
 * libvips, and every result is decoded again and checked by its pixels.
 * Run: ctest --test-dir build-sanitize -R test_compose
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <tryon/files.h>
#include <vips/vips.h>

#include "testsupport.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define OUT_MAX (64u * 1024u * 1024u)

/* Pango fills fontconfig's process-wide caches on the first text it lays out and
 * never frees them (libvips keeps its font map for the life of the process). They do
 * not grow with calls (measured: 1 and 20 watermarks leave the same ~42 KB), so they
 * are not ours to report; everything else still is. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) {
  return "print_suppressions=0";
}
const char *__lsan_default_suppressions(void) {
  return "leak:libfontconfig.so\n"
         "leak:libpangoft2-1.0.so\n"
         "leak:libpango-1.0.so\n";
}

/* ==================================================================== helpers */

typedef struct encoded {
  void *data; /* g_free */
  size_t len;
} encoded;

/* A w x h sRGB image: red rises left to right, green top to bottom, blue fixed; with
 * `alpha`, a fourth band at that constant value. Deterministic, and smooth enough that
 * JPEG keeps it within a few levels. */
static VipsImage *gradient(int w, int h, int blue, int alpha) {
  VipsImage *xy = NULL, *x = NULL, *y = NULL, *r = NULL, *g = NULL, *b = NULL, *rgb = NULL,
            *u = NULL, *out = NULL;
  VipsImage *bands[3];

  assert_int_equal(vips_xyz(&xy, w, h, NULL), 0);
  assert_int_equal(vips_extract_band(xy, &x, 0, NULL), 0);
  assert_int_equal(vips_extract_band(xy, &y, 1, NULL), 0);
  assert_int_equal(vips_linear1(x, &r, 200.0 / w, 30, NULL), 0);
  assert_int_equal(vips_linear1(y, &g, 200.0 / h, 20, NULL), 0);
  assert_int_equal(vips_linear1(x, &b, 0.0, blue, NULL), 0);
  bands[0] = r;
  bands[1] = g;
  bands[2] = b;
  assert_int_equal(vips_bandjoin(bands, &rgb, 3, NULL), 0);
  if (alpha >= 0) {
    VipsImage *with = NULL;
    assert_int_equal(vips_bandjoin_const1(rgb, &with, alpha, NULL), 0);
    g_object_unref(rgb);
    rgb = with;
  }
  assert_int_equal(vips_cast_uchar(rgb, &u, NULL), 0);
  assert_int_equal(vips_copy(u, &out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL), 0);
  VipsImage *mem = vips_image_copy_memory(out);
  assert_non_null(mem);
  g_object_unref(xy);
  g_object_unref(x);
  g_object_unref(y);
  g_object_unref(r);
  g_object_unref(g);
  g_object_unref(b);
  g_object_unref(rgb);
  g_object_unref(u);
  g_object_unref(out);
  return mem;
}

/* A w x h image of one colour (3 or 4 values). */
static VipsImage *solid(int w, int h, const double *ink, int n) {
  VipsImage *black = NULL, *img, *out = NULL;

  assert_int_equal(vips_black(&black, w, h, "bands", n, NULL), 0);
  img = vips_image_new_from_image(black, ink, n);
  assert_non_null(img);
  assert_int_equal(vips_copy(img, &out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL), 0);
  g_object_unref(black);
  g_object_unref(img);
  return out;
}

static encoded save_jpeg(VipsImage *img) {
  encoded e = {NULL, 0};
  assert_int_equal(vips_jpegsave_buffer(img, &e.data, &e.len, "Q", 90, "strip", TRUE, NULL), 0);
  return e;
}

static encoded save_png(VipsImage *img) {
  encoded e = {NULL, 0};
  assert_int_equal(vips_pngsave_buffer(img, &e.data, &e.len, "strip", TRUE, NULL), 0);
  return e;
}

static bool is_jpeg(const void *p, size_t n) {
  return n > 3 && memcmp(p, "\xFF\xD8\xFF", 3) == 0;
}

static bool is_png(const void *p, size_t n) {
  return n > 8 && memcmp(p, "\x89PNG\r\n\x1A\n", 8) == 0;
}

/* Decodes a JPEG or PNG into a memory image (fails the test otherwise). */
static VipsImage *decode(const void *p, size_t n) {
  VipsImage *img = NULL, *mem;

  if (is_jpeg(p, n))
    assert_int_equal(vips_jpegload_buffer((void *)p, n, &img, NULL), 0);
  else if (is_png(p, n))
    assert_int_equal(vips_pngload_buffer((void *)p, n, &img, NULL), 0);
  else
    fail_msg("the result is neither JPEG nor PNG (%zu bytes)", n);
  mem = vips_image_copy_memory(img);
  assert_non_null(mem);
  g_object_unref(img);
  return mem;
}

typedef struct diff {
  int max;      /* largest difference of one sample */
  double mean;  /* mean absolute difference over the samples */
  long changed; /* pixels whose largest difference is over 24 */
} diff;

/* Compares the first 3 bands of two same-size memory images over a rectangle. */
static diff compare(VipsImage *a, VipsImage *b, int x0, int y0, int w, int h) {
  diff d = {0, 0.0, 0};
  double sum = 0;

  assert_int_equal(a->Xsize, b->Xsize);
  assert_int_equal(a->Ysize, b->Ysize);
  for (int y = y0; y < y0 + h; y++) {
    for (int x = x0; x < x0 + w; x++) {
      const VipsPel *pa = VIPS_IMAGE_ADDR(a, x, y);
      const VipsPel *pb = VIPS_IMAGE_ADDR(b, x, y);
      int px = 0;
      for (int k = 0; k < 3; k++) {
        int v = abs((int)pa[k] - (int)pb[k]);
        sum += v;
        if (v > px)
          px = v;
      }
      if (px > d.max)
        d.max = px;
      if (px > 24)
        d.changed++;
    }
  }
  d.mean = sum / (3.0 * w * h);
  return d;
}

/* The bounding box of pixels changed by more than 24 levels. */
static void changed_box(VipsImage *a, VipsImage *b, int *x0, int *y0, int *x1, int *y1) {
  *x0 = a->Xsize;
  *y0 = a->Ysize;
  *x1 = -1;
  *y1 = -1;
  for (int y = 0; y < a->Ysize; y++) {
    const VipsPel *ra = VIPS_IMAGE_ADDR(a, 0, y);
    const VipsPel *rb = VIPS_IMAGE_ADDR(b, 0, y);
    int ba = a->Bands, bb = b->Bands;
    for (int x = 0; x < a->Xsize; x++) {
      for (int k = 0; k < 3; k++) {
        if (abs((int)ra[x * ba + k] - (int)rb[x * bb + k]) > 24) {
          *x0 = x < *x0 ? x : *x0;
          *y0 = y < *y0 ? y : *y0;
          *x1 = x > *x1 ? x : *x1;
          *y1 = y > *y1 ? y : *y1;
          break;
        }
      }
    }
  }
}

static void pixel(VipsImage *img, int x, int y, int rgba[4]) {
  const VipsPel *p = VIPS_IMAGE_ADDR(img, x, y);
  for (int k = 0; k < 4; k++)
    rgba[k] = k < img->Bands ? p[k] : 255;
}

/* Watermarks `in` and returns the decoded result; the encoded bytes in *bytes. */
static VipsImage *watermark_ok(const encoded *in, const char *text, tryon_buf *bytes) {
  tryon_err err = {0};
  tryon_status st = tryon_image_watermark(in->data, in->len, text, bytes, &err);
  EXPECT_STATUS(st, TRYON_OK, &err, "watermark");
  return decode(bytes->data, bytes->len);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long peak_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* ==================================================================== watermark */

static void test_compose__watermark_jpeg_stays_jpeg(void **state) {
  (void)state;
  VipsImage *src = gradient(640, 480, 120, -1);
  encoded in = save_jpeg(src);
  VipsImage *orig = decode(in.data, in.len);
  tryon_buf out;
  tryon_buf_init(&out, OUT_MAX);
  VipsImage *res = watermark_ok(&in, NULL, &out);

  assert_true(is_jpeg(out.data, out.len));
  assert_int_equal(res->Xsize, 640);
  assert_int_equal(res->Ysize, 480);
  assert_int_equal(res->Bands, 3);
  /* Top-left untouched but for a second JPEG pass. */
  diff tl = compare(orig, res, 0, 0, 320, 240);
  if (tl.max > 12 || tl.mean > 2.0)
    fail_msg("top-left changed: max %d mean %.2f", tl.max, tl.mean);
  /* The mark is in the bottom-right corner. */
  diff br = compare(orig, res, 640 - 200, 480 - 60, 200, 60);
  if (br.max < 60 || br.changed < 300)
    fail_msg("bottom-right barely changed: max %d, %ld pixels", br.max, br.changed);
  /* No metadata: nothing but the JFIF header before the tables. */
  assert_true(vips_image_get_typeof(res, VIPS_META_EXIF_NAME) == 0);
  assert_true(vips_image_get_typeof(res, VIPS_META_ICC_NAME) == 0);

  tryon_buf_release(&out);
  g_free(in.data);
  g_object_unref(src);
  g_object_unref(orig);
  g_object_unref(res);
}

static void test_compose__watermark_png_alpha_kept(void **state) {
  (void)state;
  VipsImage *src = gradient(300, 200, 60, 128);
  encoded in = save_png(src);
  tryon_buf out;
  tryon_buf_init(&out, OUT_MAX);
  VipsImage *res = watermark_ok(&in, "tryon", &out);
  int a[4], b[4];

  assert_true(is_png(out.data, out.len));
  assert_int_equal(res->Xsize, 300);
  assert_int_equal(res->Ysize, 200);
  assert_int_equal(res->Bands, 4);
  /* PNG is lossless: the top-left is byte for byte the same, alpha included. */
  for (int y = 0; y < 100; y += 7) {
    for (int x = 0; x < 150; x += 5) {
      pixel(src, x, y, a);
      pixel(res, x, y, b);
      if (memcmp(a, b, sizeof a) != 0)
        fail_msg("(%d,%d) changed: %d,%d,%d,%d -> %d,%d,%d,%d", x, y, a[0], a[1], a[2], a[3], b[0],
                 b[1], b[2], b[3]);
    }
  }
  pixel(res, 10, 10, b);
  assert_int_equal(b[3], 128);
  diff br = compare(src, res, 300 - 110, 200 - 40, 110, 40);
  if (br.changed < 50)
    fail_msg("bottom-right barely changed: %ld pixels", br.changed);

  tryon_buf_release(&out);
  g_free(in.data);
  g_object_unref(src);
  g_object_unref(res);
}

static void test_compose__watermark_png_opaque_stays_three_bands(void **state) {
  (void)state;
  VipsImage *src = gradient(200, 150, 200, -1);
  encoded in = save_png(src);
  tryon_buf out;
  tryon_buf_init(&out, OUT_MAX);
  VipsImage *res = watermark_ok(&in, NULL, &out);

  assert_true(is_png(out.data, out.len));
  assert_int_equal(res->Bands, 3);
  diff tl = compare(src, res, 0, 0, 100, 75);
  assert_int_equal(tl.max, 0);

  tryon_buf_release(&out);
  g_free(in.data);
  g_object_unref(src);
  g_object_unref(res);
}

/* Readable on both: darker pixels appear on white (pill, shadow), lighter on black. */
static void test_compose__watermark_light_and_dark(void **state) {
  (void)state;
  static const double white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
  const double *inks[2] = {white, black};

  for (int i = 0; i < 2; i++) {
    VipsImage *src = solid(800, 600, inks[i], 3);
    encoded in = save_jpeg(src);
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    VipsImage *res = watermark_ok(&in, NULL, &out);
    int lo = 255, hi = 0, px[4];

    for (int y = 600 - 80; y < 600; y++) {
      for (int x = 800 - 250; x < 800; x++) {
        pixel(res, x, y, px);
        lo = px[1] < lo ? px[1] : lo;
        hi = px[1] > hi ? px[1] : hi;
      }
    }
    if (i == 0 && lo > 200)
      fail_msg("on white the darkest mark pixel is %d", lo);
    if (i == 1 && hi < 140)
      fail_msg("on black the lightest mark pixel is %d", hi);
    tryon_buf_release(&out);
    g_free(in.data);
    g_object_unref(src);
    g_object_unref(res);
  }
}

static void test_compose__watermark_tiny_and_large(void **state) {
  (void)state;
  static const int sizes[][2] = {{64, 64}, {8, 8}, {1, 1}, {4096, 3072}, {100, 3000}};

  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    int w = sizes[i][0], h = sizes[i][1];
    VipsImage *src = gradient(w, h, 90, -1);
    encoded in = save_jpeg(src);
    VipsImage *orig = decode(in.data, in.len);
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    VipsImage *res = watermark_ok(&in, NULL, &out);
    int x0, y0, x1, y1;

    assert_true(is_jpeg(out.data, out.len));
    assert_int_equal(res->Xsize, w);
    assert_int_equal(res->Ysize, h);
    changed_box(orig, res, &x0, &y0, &x1, &y1);
    if (w >= 64 && h >= 64) {
      int shorter = w < h ? w : h;
      if (x1 < 0)
        fail_msg("%dx%d: no pixel changed", w, h);
      /* In the bottom-right corner, and about as tall as planned (the em is 4.5 % of
       * the shorter side; the pill adds its padding). */
      if (x0 < (shorter < 200 ? w / 4 : w / 3) || y0 < h / 2 || x1 < w * 3 / 4 || y1 < h * 3 / 4)
        fail_msg("%dx%d: mark at (%d,%d)-(%d,%d)", w, h, x0, y0, x1, y1);
      if (shorter >= 1000 && (y1 - y0 < shorter * 0.04 || y1 - y0 > shorter * 0.12))
        fail_msg("%dx%d: mark %d px high", w, h, y1 - y0);
    }
    tryon_buf_release(&out);
    g_free(in.data);
    g_object_unref(src);
    g_object_unref(orig);
    g_object_unref(res);
  }
}

static void test_compose__watermark_text_accepted(void **state) {
  (void)state;
  static const char *const texts[] = {"пример", "tryon <b>&amp;", "試着 ✓", "a"};
  VipsImage *src = gradient(400, 300, 100, -1);
  encoded in = save_jpeg(src);
  VipsImage *orig = decode(in.data, in.len);

  for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    VipsImage *res = watermark_ok(&in, texts[i], &out);
    diff br = compare(orig, res, 200, 200, 200, 100);
    if (br.changed < 40)
      fail_msg("text %zu: bottom-right barely changed (%ld pixels)", i, br.changed);
    tryon_buf_release(&out);
    g_object_unref(res);
  }
  /* The longest text (32 Cyrillic letters, 64 bytes) is made smaller to fit, inside
   * the margins, and stays in the lower part. */
  char longest[TRYON_IMAGE_WATERMARK_TEXT_MAX + 1];
  for (int i = 0; i < TRYON_IMAGE_WATERMARK_TEXT_MAX / 2; i++)
    memcpy(longest + 2 * i, "\xD0\x96", 2); /* Ж */
  longest[TRYON_IMAGE_WATERMARK_TEXT_MAX] = '\0';
  tryon_buf out;
  int x0, y0, x1, y1;
  tryon_buf_init(&out, OUT_MAX);
  VipsImage *res = watermark_ok(&in, longest, &out);
  changed_box(orig, res, &x0, &y0, &x1, &y1);
  if (x1 < 0 || x0 < 4 || x1 > 400 - 4 || y0 < 150 || y1 > 300 - 4 || x1 - x0 < 300)
    fail_msg("the longest text's mark is at (%d,%d)-(%d,%d)", x0, y0, x1, y1);
  g_object_unref(res);
  tryon_buf_release(&out);

  g_free(in.data);
  g_object_unref(src);
  g_object_unref(orig);
}

static void test_compose__watermark_text_refused(void **state) {
  (void)state;
  char longer[TRYON_IMAGE_WATERMARK_TEXT_MAX + 2];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  const char *const texts[] = {"",         "   ",          "bad\xC3",   "tab\there",
                               "\xFF\xFE", "\xE2\x80\x8D", "\xC2\xA0 ", longer};
  VipsImage *src = gradient(100, 100, 100, -1);
  encoded in = save_jpeg(src);

  for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(tryon_image_watermark(in.data, in.len, texts[i], &out, &err), TRYON_E_INVALID,
                  &err, texts[i]);
    assert_int_equal(out.len, 0);
    tryon_buf_release(&out);
  }
  g_free(in.data);
  g_object_unref(src);
}

/* A PNG with one extra chunk of `type` (CRC not checked by us: we refuse before). */
static unsigned char *png_with_chunk(const encoded *png, const char *type, size_t *len) {
  static const unsigned char chunk_body[] = {0,   0,   0,   4,   0, 0, 0, 0,
                                             'a', 'b', 'c', 'd', 1, 2, 3, 4};
  unsigned char *p = malloc(png->len + sizeof chunk_body);
  size_t at = 8 + 25; /* after the signature and IHDR */

  assert_non_null(p);
  memcpy(p, png->data, at);
  memcpy(p + at, chunk_body, sizeof chunk_body);
  memcpy(p + at + 4, type, 4);
  memcpy(p + at + sizeof chunk_body, (const unsigned char *)png->data + at, png->len - at);
  *len = png->len + sizeof chunk_body;
  return p;
}

static void test_compose__watermark_refuses_garbage(void **state) {
  (void)state;
  VipsImage *src = gradient(120, 90, 100, -1);
  encoded jpg = save_jpeg(src);
  encoded png = save_png(src);
  VipsImage *wide_src = solid(9000, 4, (const double[]){0, 0, 0}, 3);
  encoded wide = save_png(wide_src);
  size_t ztxt_len = 0, priv_len = 0;
  unsigned char *ztxt = png_with_chunk(&png, "zTXt", &ztxt_len);
  unsigned char *priv = png_with_chunk(&png, "prVt", &priv_len);
  unsigned char *huge = calloc(1, TRYON_FILES_MAX_OUTPUT_BYTES + 1);
  static const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
  static const char text[] = "<html>not an image</html>";
  unsigned char noise[4096];
  struct {
    const void *data;
    size_t len;
    tryon_status want;
    const char *what;
  } cases[] = {
      {NULL, 0, TRYON_E_INVALID, "null"},
      {jpg.data, 0, TRYON_E_INVALID, "empty"},
      {gif, sizeof gif - 1, TRYON_E_INVALID, "gif"},
      {text, sizeof text - 1, TRYON_E_INVALID, "html"},
      {noise, sizeof noise, TRYON_E_INVALID, "noise"},
      {"\xFF\xD8\xFF\xE0", 4, TRYON_E_INVALID, "jpeg signature only"},
      {png.data, 40, TRYON_E_INVALID, "png cut inside the chunk list"},
      {ztxt, ztxt_len, TRYON_E_INVALID, "png with zTXt"},
      {priv, priv_len, TRYON_E_INVALID, "png with a private chunk"},
      {jpg.data, jpg.len / 2, TRYON_E_CORRUPT_IMAGE, "jpeg cut in half"},
      {wide.data, wide.len, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS, "9000 px wide"},
      {huge, TRYON_FILES_MAX_OUTPUT_BYTES + 1, TRYON_E_TOO_LARGE, "over 16 MiB"},
  };

  assert_non_null(huge);
  memcpy(huge, "\xFF\xD8\xFF", 3);
  for (size_t i = 0; i < sizeof noise; i++)
    noise[i] = (unsigned char)(i * 2654435761u >> 13);
  noise[0] = 0x12;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(tryon_image_watermark(cases[i].data, cases[i].len, NULL, &out, &err),
                  cases[i].want, &err, cases[i].what);
    assert_int_equal(out.len, 0);
    tryon_buf_release(&out);
  }
  {
    tryon_err err = {0};
    EXPECT_STATUS(tryon_image_watermark(jpg.data, jpg.len, NULL, NULL, &err), TRYON_E_INVALID, &err,
                  "no out");
  }
  {
    /* A caller's ceiling below the result. */
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, 100);
    EXPECT_STATUS(tryon_image_watermark(jpg.data, jpg.len, NULL, &out, &err), TRYON_E_TOO_LARGE,
                  &err, "small out");
    assert_int_equal(out.len, 0);
    tryon_buf_release(&out);
  }
  free(huge);
  free(ztxt);
  free(priv);
  g_free(jpg.data);
  g_free(png.data);
  g_free(wide.data);
  g_object_unref(src);
  g_object_unref(wide_src);
}

typedef struct thread_job {
  const encoded *in;
  tryon_buf out;
  tryon_status st;
} thread_job;

static void *watermark_thread(void *arg) {
  thread_job *j = arg;
  for (int i = 0; i < 3 && j->st == TRYON_OK; i++)
    j->st = tryon_image_watermark(j->in->data, j->in->len, "пример", &j->out, NULL);
  return NULL;
}

/* Four threads at once give byte for byte what one gives alone. */
static void test_compose__watermark_concurrent(void **state) {
  (void)state;
  VipsImage *src = gradient(500, 400, 70, -1);
  encoded in = save_jpeg(src);
  tryon_buf ref;
  thread_job jobs[4];
  pthread_t th[4];

  tryon_buf_init(&ref, OUT_MAX);
  EXPECT_STATUS(tryon_image_watermark(in.data, in.len, "пример", &ref, NULL), TRYON_OK, NULL,
                "single");
  for (int i = 0; i < 4; i++) {
    jobs[i].in = &in;
    jobs[i].st = TRYON_OK;
    tryon_buf_init(&jobs[i].out, OUT_MAX);
    assert_int_equal(pthread_create(&th[i], NULL, watermark_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    EXPECT_STATUS(jobs[i].st, TRYON_OK, NULL, "thread");
    assert_int_equal(jobs[i].out.len, ref.len);
    assert_memory_equal(jobs[i].out.data, ref.data, ref.len);
    tryon_buf_release(&jobs[i].out);
  }
  tryon_buf_release(&ref);
  g_free(in.data);
  g_object_unref(src);
}

/* ==================================================================== offline try-on */

/* The centre of each category's box, as fractions (as compose.c places them), and a
 * point the item must not reach. */
static const struct {
  const char *category;
  double cx, cy;
  double fx, fy; /* far away */
} tryon_cases[] = {
    {"top", 0.50, 0.42, 0.50, 0.95},       {"bottom", 0.50, 0.71, 0.50, 0.10},
    {"shoes", 0.50, 0.92, 0.50, 0.50},     {"headwear", 0.50, 0.10, 0.50, 0.70},
    {"glasses", 0.50, 0.21, 0.50, 0.60},   {"bag", 0.76, 0.60, 0.20, 0.60},
    {"jewelry", 0.50, 0.32, 0.50, 0.80},   {"dress", 0.50, 0.55, 0.90, 0.05},
    {"outerwear", 0.50, 0.45, 0.50, 0.97}, {"other", 0.50, 0.50, 0.95, 0.95},
};

static void test_compose__tryon_places_item_by_category(void **state) {
  (void)state;
  static const double red[3] = {230, 20, 30};
  VipsImage *person = gradient(600, 800, 150, -1);
  VipsImage *item = solid(200, 300, red, 3);
  encoded pj = save_jpeg(person);
  encoded ij = save_jpeg(item);
  VipsImage *orig = decode(pj.data, pj.len);

  for (size_t i = 0; i < ARRAY_LEN(tryon_cases); i++) {
    tryon_err err = {0};
    tryon_buf out;
    int px[4];
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(tryon_image_offline_tryon(pj.data, pj.len, ij.data, ij.len,
                                            tryon_cases[i].category, NULL, &out, &err),
                  TRYON_OK, &err, tryon_cases[i].category);
    assert_true(is_png(out.data, out.len));
    VipsImage *res = decode(out.data, out.len);
    assert_int_equal(res->Xsize, 600);
    assert_int_equal(res->Ysize, 800);
    assert_int_equal(res->Bands, 3);
    pixel(res, (int)(tryon_cases[i].cx * 600), (int)(tryon_cases[i].cy * 800), px);
    if (px[0] < 190 || px[1] > 80 || px[2] > 90)
      fail_msg("%s: the box centre is %d,%d,%d, not the red item", tryon_cases[i].category, px[0],
               px[1], px[2]);
    int fx = (int)(tryon_cases[i].fx * 600), fy = (int)(tryon_cases[i].fy * 800);
    diff far = compare(orig, res, fx - 5, fy - 5, 10, 10);
    if (far.max > 3)
      fail_msg("%s: far from the box (%d,%d) changed by %d", tryon_cases[i].category, fx, fy,
               far.max);
    /* The "offline preview" label in the top-left corner. */
    diff label = compare(orig, res, 0, 0, 300, 60);
    if (label.changed < 200)
      fail_msg("%s: no label (%ld pixels changed)", tryon_cases[i].category, label.changed);
    g_object_unref(res);
    tryon_buf_release(&out);
  }
  g_free(pj.data);
  g_free(ij.data);
  g_object_unref(person);
  g_object_unref(item);
  g_object_unref(orig);
}

/* An item's own alpha is used: a transparent item leaves the person as it was. */
static void test_compose__tryon_uses_item_alpha(void **state) {
  (void)state;
  static const double clear[4] = {230, 20, 30, 0}, opaque[4] = {230, 20, 30, 255};
  const double *inks[2] = {clear, opaque};
  VipsImage *person = gradient(400, 600, 40, -1);
  encoded pp = save_png(person);

  for (int i = 0; i < 2; i++) {
    VipsImage *item = solid(100, 100, inks[i], 4);
    encoded ip = save_png(item);
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(
        tryon_image_offline_tryon(pp.data, pp.len, ip.data, ip.len, "top", "png", &out, &err),
        TRYON_OK, &err, "alpha item");
    VipsImage *res = decode(out.data, out.len);
    diff centre = compare(person, res, 170, 220, 60, 60);
    if (i == 0 && centre.max != 0)
      fail_msg("a transparent item changed the torso by %d", centre.max);
    if (i == 1 && centre.changed < 3000)
      fail_msg("an opaque item changed only %ld torso pixels", centre.changed);
    g_object_unref(res);
    tryon_buf_release(&out);
    g_free(ip.data);
    g_object_unref(item);
  }
  g_free(pp.data);
  g_object_unref(person);
}

static void test_compose__tryon_jpeg_and_alpha_person(void **state) {
  (void)state;
  VipsImage *person = gradient(320, 480, 90, 200);
  VipsImage *item = gradient(64, 64, 250, -1);
  encoded pp = save_png(person);
  encoded ij = save_jpeg(item);
  tryon_err err = {0};
  tryon_buf out;

  tryon_buf_init(&out, OUT_MAX);
  EXPECT_STATUS(
      tryon_image_offline_tryon(pp.data, pp.len, ij.data, ij.len, "bag", "JPEG", &out, &err),
      TRYON_OK, &err, "jpeg out");
  assert_true(is_jpeg(out.data, out.len));
  VipsImage *res = decode(out.data, out.len);
  assert_int_equal(res->Xsize, 320);
  assert_int_equal(res->Ysize, 480);
  assert_int_equal(res->Bands, 3);
  g_object_unref(res);

  EXPECT_STATUS(
      tryon_image_offline_tryon(pp.data, pp.len, ij.data, ij.len, "shoes", "png", &out, &err),
      TRYON_OK, &err, "png out");
  assert_true(is_png(out.data, out.len));
  res = decode(out.data, out.len);
  assert_int_equal(res->Bands, 4);
  int px[4];
  pixel(res, 300, 200, px); /* untouched: alpha as the person's */
  assert_int_equal(px[3], 200);
  g_object_unref(res);

  tryon_buf_release(&out);
  g_free(pp.data);
  g_free(ij.data);
  g_object_unref(person);
  g_object_unref(item);
}

static void test_compose__tryon_refuses(void **state) {
  (void)state;
  VipsImage *img = gradient(100, 120, 90, -1);
  encoded ok = save_jpeg(img);
  static const char junk[] = "this is not an image at all, just words";
  struct {
    const void *person;
    size_t plen;
    const void *item;
    size_t ilen;
    const char *category, *format;
    const char *what;
  } cases[] = {
      {ok.data, ok.len, ok.data, ok.len, "hat", NULL, "unknown category"},
      {ok.data, ok.len, ok.data, ok.len, "", NULL, "empty category"},
      {ok.data, ok.len, ok.data, ok.len, NULL, NULL, "no category"},
      {ok.data, ok.len, ok.data, ok.len, "TOP", NULL, "category case"},
      {ok.data, ok.len, ok.data, ok.len, "top", "gif", "bad format"},
      {junk, sizeof junk, ok.data, ok.len, "top", NULL, "garbage person"},
      {ok.data, ok.len, junk, sizeof junk, "top", NULL, "garbage item"},
      {ok.data, ok.len, NULL, 0, "top", NULL, "no item"},
      {NULL, 0, ok.data, ok.len, "top", NULL, "no person"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(tryon_image_offline_tryon(cases[i].person, cases[i].plen, cases[i].item,
                                            cases[i].ilen, cases[i].category, cases[i].format, &out,
                                            &err),
                  TRYON_E_INVALID, &err, cases[i].what);
    assert_int_equal(out.len, 0);
    tryon_buf_release(&out);
  }
  {
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(
        tryon_image_offline_tryon(ok.data, ok.len, ok.data, ok.len / 2, "top", NULL, &out, &err),
        TRYON_E_CORRUPT_IMAGE, &err, "item cut in half");
    assert_non_null(strstr(err.message, "item"));
    assert_int_equal(out.len, 0);
    tryon_buf_release(&out);
  }
  g_free(ok.data);
  g_object_unref(img);
}

/* Extreme sizes and shapes: a 1x1 person, a long thin item, a tiny item enlarged. */
static void test_compose__tryon_tiny_and_odd_shapes(void **state) {
  (void)state;
  static const int cases[][4] = {
      {1, 1, 50, 50}, {8, 8, 8, 8}, {64, 64, 2000, 10}, {300, 400, 1, 1}, {2, 900, 40, 3000}};

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    VipsImage *person = gradient(cases[i][0], cases[i][1], 90, -1);
    VipsImage *item = gradient(cases[i][2], cases[i][3], 250, -1);
    encoded pj = save_jpeg(person);
    encoded ij = save_png(item);
    for (size_t c = 0; c < ARRAY_LEN(tryon_cases); c++) {
      tryon_err err = {0};
      tryon_buf out;
      tryon_buf_init(&out, OUT_MAX);
      EXPECT_STATUS(tryon_image_offline_tryon(pj.data, pj.len, ij.data, ij.len,
                                              tryon_cases[c].category, "jpeg", &out, &err),
                    TRYON_OK, &err, tryon_cases[c].category);
      VipsImage *res = decode(out.data, out.len);
      assert_int_equal(res->Xsize, cases[i][0]);
      assert_int_equal(res->Ysize, cases[i][1]);
      g_object_unref(res);
      tryon_buf_release(&out);
    }
    tryon_err err = {0};
    tryon_buf out;
    tryon_buf_init(&out, OUT_MAX);
    EXPECT_STATUS(tryon_image_offline_edit(pj.data, pj.len, "", "png", &out, &err), TRYON_OK, &err,
                  "tiny edit");
    VipsImage *res = decode(out.data, out.len);
    assert_int_equal(res->Xsize, cases[i][0]);
    assert_int_equal(res->Ysize, cases[i][1]);
    g_object_unref(res);
    tryon_buf_release(&out);
    g_free(pj.data);
    g_free(ij.data);
    g_object_unref(person);
    g_object_unref(item);
  }
}

/* A validated upload may still carry an EXIF orientation: it is applied, since the
 * tag does not survive. 200x100 stored, orientation 6 (90 degrees clockwise). */
static void test_compose__orientation_applied(void **state) {
  (void)state;
  VipsImage *src = gradient(200, 100, 90, -1), *tagged = NULL;
  encoded in = {NULL, 0};
  tryon_err err = {0};
  tryon_buf out;

  assert_int_equal(vips_copy(src, &tagged, NULL), 0);
  vips_image_set_int(tagged, VIPS_META_ORIENTATION, 6);
  assert_int_equal(vips_jpegsave_buffer(tagged, &in.data, &in.len, "Q", 90, NULL), 0);
  tryon_buf_init(&out, OUT_MAX);
  EXPECT_STATUS(tryon_image_watermark(in.data, in.len, NULL, &out, &err), TRYON_OK, &err, "wm");
  VipsImage *res = decode(out.data, out.len);
  assert_int_equal(res->Xsize, 100);
  assert_int_equal(res->Ysize, 200);
  assert_int_equal(vips_image_get_typeof(res, VIPS_META_ORIENTATION), 0);
  g_object_unref(res);
  tryon_buf_release(&out);
  g_free(in.data);
  g_object_unref(tagged);
  g_object_unref(src);
}

/* ==================================================================== offline edit */

static void test_compose__edit_changes_image(void **state) {
  (void)state;
  VipsImage *src = gradient(320, 240, 128, -1);
  encoded in = save_png(src);
  tryon_err err = {0};
  tryon_buf out;
  int a[4], b[4];

  tryon_buf_init(&out, OUT_MAX);
  EXPECT_STATUS(tryon_image_offline_edit(in.data, in.len, "make it warmer", NULL, &out, &err),
                TRYON_OK, &err, "edit");
  assert_true(is_png(out.data, out.len));
  VipsImage *res = decode(out.data, out.len);
  assert_int_equal(res->Xsize, 320);
  assert_int_equal(res->Ysize, 240);
  /* Warmer: more red, less blue, everywhere outside the label. */
  for (int y = 100; y < 240; y += 20) {
    for (int x = 0; x < 320; x += 20) {
      pixel(src, x, y, a);
      pixel(res, x, y, b);
      if (b[0] <= a[0] || b[2] >= a[2])
        fail_msg("(%d,%d) not warmer: %d,%d,%d -> %d,%d,%d", x, y, a[0], a[1], a[2], b[0], b[1],
                 b[2]);
    }
  }
  diff label = compare(src, res, 0, 0, 160, 30);
  if (label.max < 100)
    fail_msg("no label: top-left changed by at most %d", label.max);
  g_object_unref(res);

  EXPECT_STATUS(tryon_image_offline_edit(in.data, in.len, NULL, "jpeg", &out, &err), TRYON_OK, &err,
                "edit jpeg");
  assert_true(is_jpeg(out.data, out.len));
  EXPECT_STATUS(tryon_image_offline_edit(in.data, in.len, NULL, "webp", &out, &err),
                TRYON_E_INVALID, &err, "edit webp");
  assert_int_equal(out.len, 0);
  EXPECT_STATUS(tryon_image_offline_edit("GIF89a", 6, NULL, NULL, &out, &err), TRYON_E_INVALID,
                &err, "edit gif");

  tryon_buf_release(&out);
  g_free(in.data);
  g_object_unref(src);
}

/* ==================================================================== cost */

/* Not an assertion (no test asserts time): the figures for the report and for sizing
 * the worker. ru_maxrss is the process's peak so far, so this runs first. */
static void test_compose__cost_2048x1536(void **state) {
  (void)state;
  VipsImage *base = gradient(2048, 1536, 100, -1), *noise = NULL, *sum = NULL, *photo = NULL;
  VipsImage *item = gradient(900, 1200, 200, -1);
  tryon_buf out;
  double t0, t1, t2;
  long rss0, rss1, rss2;

  /* Noise makes the JPEG cost what a photo costs to decode and encode. */
  assert_int_equal(vips_gaussnoise(&noise, 2048, 1536, "sigma", 25.0, "mean", 0.0, NULL), 0);
  assert_int_equal(vips_add(base, noise, &sum, NULL), 0);
  assert_int_equal(vips_cast_uchar(sum, &photo, NULL), 0);
  encoded pj = save_jpeg(photo);
  encoded ij = save_jpeg(item);
  tryon_buf_init(&out, OUT_MAX);

  rss0 = peak_rss_kib();
  t0 = now_ms();
  EXPECT_STATUS(tryon_image_watermark(pj.data, pj.len, NULL, &out, NULL), TRYON_OK, NULL, "wm");
  t1 = now_ms();
  rss1 = peak_rss_kib();
  EXPECT_STATUS(
      tryon_image_offline_tryon(pj.data, pj.len, ij.data, ij.len, "top", "jpeg", &out, NULL),
      TRYON_OK, NULL, "tryon");
  t2 = now_ms();
  rss2 = peak_rss_kib();
  print_message("cost on a 2048x1536 JPEG (%zu KB): watermark %.1f ms (first call, with font "
                "setup), peak RSS %ld -> %ld KiB; offline try-on %.1f ms, peak RSS %ld KiB\n",
                pj.len / 1024, t1 - t0, rss0, rss1, t2 - t1, rss2);
  t0 = now_ms();
  EXPECT_STATUS(tryon_image_watermark(pj.data, pj.len, NULL, &out, NULL), TRYON_OK, NULL, "wm2");
  t1 = now_ms();
  print_message("watermark again: %.1f ms, peak RSS %ld KiB\n", t1 - t0, peak_rss_kib());

  tryon_buf_release(&out);
  g_free(pj.data);
  g_free(ij.data);
  g_object_unref(base);
  g_object_unref(noise);
  g_object_unref(sum);
  g_object_unref(photo);
  g_object_unref(item);
}

/* ==================================================================== main */

static int setup(void **state) {
  tryon_err err = {0};
  (void)state;
  tryon_test_log_init();
  if (tryon_files_global_init(&err) != TRYON_OK) {
    fprintf(stderr, "tryon_files_global_init: %s\n", tryon_err_message(&err));
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tryon_files_global_shutdown();
  return 0;
}

/* A provider's result may be bigger than an upload: the result validator takes up to
 * the storage ceiling, the upload one refuses past 5 MB. */
static void test_compose__results_may_exceed_the_upload_limit(void **state) {
  (void)state;
  VipsImage *img = NULL, *bands[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++) /* independent noise per band: PNG cannot shrink it */
    assert_int_equal(
        vips_gaussnoise(&bands[i], 1600, 1600, "sigma", 80.0, "mean", 128.0, "seed", i + 1, NULL),
        0);
  VipsImage *rgb = NULL;
  assert_int_equal(vips_bandjoin(bands, &rgb, 3, NULL), 0);
  assert_int_equal(vips_cast_uchar(rgb, &img, NULL), 0);
  encoded big = save_png(img);
  if (big.len <= TRYON_FILES_MAX_BYTES)
    fail_msg("the test image is only %zu bytes", big.len);
  tryon_image out;
  tryon_err err;
  EXPECT_STATUS(tryon_image_normalise(big.data, big.len, NULL, &out, &err), TRYON_E_FILE_TOO_LARGE,
                &err, "as an upload");
  EXPECT_STATUS(tryon_image_normalise_result(big.data, big.len, &out, &err), TRYON_OK, &err,
                "as a result");
  assert_int_equal(out.width, 1600);
  assert_non_null(out.thumb);
  tryon_image_release(&out);
  /* For a provider with a lower limit: a smaller JPEG copy. */
  tryon_buf small;
  tryon_buf_init(&small, 16u << 20);
  EXPECT_STATUS(tryon_image_shrink_to(big.data, big.len, 1u << 20, &small, &err), TRYON_OK, &err,
                "shrink");
  if (small.len > (1u << 20) || !is_jpeg(small.data, small.len))
    fail_msg("shrunk to %zu bytes", small.len);
  VipsImage *back = decode(small.data, small.len);
  assert_true(back->Xsize < 1600 && back->Xsize == back->Ysize);
  g_object_unref(back);
  EXPECT_STATUS(tryon_image_shrink_to(big.data, big.len, 10, &small, &err), TRYON_E_INVALID, &err,
                "a limit too small");
  /* A JPEG source saved at a lower quality than ours: its bytes per pixel are fewer, so
   * the first round's guess overshoots and later rounds must step down — reading the
   * input again each round, into the caller's buffer no larger than the target. */
  void *lq = NULL;
  size_t lq_len = 0;
  assert_int_equal(vips_jpegsave_buffer(img, &lq, &lq_len, "Q", 40, "strip", TRUE, NULL), 0);
  static const size_t targets[] = {1u << 20, 600u << 10, 300u << 10};
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    tryon_buf tight;
    tryon_buf_init(&tight, targets[i]);
    EXPECT_STATUS(tryon_image_shrink_to(lq, lq_len, targets[i], &tight, &err), TRYON_OK, &err,
                  "shrink a low-quality JPEG into a buffer of the target's size");
    if (tight.len > targets[i] || !is_jpeg(tight.data, tight.len))
      fail_msg("target %zu: %zu bytes", targets[i], tight.len);
    tryon_buf_release(&tight);
  }
  g_free(lq);
  tryon_buf_release(&small);
  g_free(big.data);
  for (int i = 0; i < 3; i++)
    g_object_unref(bands[i]);
  g_object_unref(rgb);
  g_object_unref(img);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compose__results_may_exceed_the_upload_limit),
      cmocka_unit_test(test_compose__cost_2048x1536),
      cmocka_unit_test(test_compose__watermark_jpeg_stays_jpeg),
      cmocka_unit_test(test_compose__watermark_png_alpha_kept),
      cmocka_unit_test(test_compose__watermark_png_opaque_stays_three_bands),
      cmocka_unit_test(test_compose__watermark_light_and_dark),
      cmocka_unit_test(test_compose__watermark_tiny_and_large),
      cmocka_unit_test(test_compose__watermark_text_accepted),
      cmocka_unit_test(test_compose__watermark_text_refused),
      cmocka_unit_test(test_compose__watermark_refuses_garbage),
      cmocka_unit_test(test_compose__watermark_concurrent),
      cmocka_unit_test(test_compose__tryon_places_item_by_category),
      cmocka_unit_test(test_compose__tryon_uses_item_alpha),
      cmocka_unit_test(test_compose__tryon_jpeg_and_alpha_person),
      cmocka_unit_test(test_compose__tryon_refuses),
      cmocka_unit_test(test_compose__tryon_tiny_and_odd_shapes),
      cmocka_unit_test(test_compose__orientation_applied),
      cmocka_unit_test(test_compose__edit_changes_image),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
