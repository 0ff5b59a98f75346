/*
 * test_files.c - unit tests of section 1 of tryon/files.h (validation and
 * normalisation), driven by tests/data/files/manifest.tsv over the corpus that
 * tests/data/files/generate.sh makes (the ctest fixture files_corpus writes it into the
 * build tree and TRYON_FILES_CORPUS names the folder).
 * Run: ctest --test-dir build-sanitize -R test_files
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <tryon/files.h>
#include <vips/vips.h>

#include "testsupport.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_CASES 128

typedef struct corpus_case {
  char name[64];
  char declared[32]; /* "" for none */
  char status[40];   /* tryon_status_code */
  char mime[16];     /* for ok */
  int width, height; /* for ok; 0 when not fixed */
} corpus_case;

static corpus_case cases[MAX_CASES];
static size_t ncases;
static const char *corpus_dir;

/* ==================================================================== helpers */

/* Splits a manifest line in place at tabs; returns the number of fields. */
static size_t split_tabs(char *line, char **fields, size_t max) {
  size_t n = 0;
  char *p = line;

  while (n < max) {
    fields[n++] = p;
    p = strchr(p, '\t');
    if (p == NULL)
      break;
    *p++ = '\0';
  }
  return n;
}

/* Copies a manifest field; false when it does not fit (a manifest mistake). */
static bool copy_field(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap)
    return false;
  memcpy(dst, src, n + 1);
  return true;
}

static int load_manifest(void **state) {
  char *path = tryon_test_path("tests/data/files/manifest.tsv");
  FILE *f = fopen(path, "r");
  char line[512];

  (void)state;
  corpus_dir = getenv("TRYON_FILES_CORPUS");
  if (corpus_dir == NULL || corpus_dir[0] == '\0') {
    fprintf(stderr, "TRYON_FILES_CORPUS is not set: run through ctest, which generates the "
                    "corpus (fixture files_corpus) and sets it\n");
    free(path);
    if (f != NULL)
      fclose(f);
    return -1;
  }
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    free(path);
    return -1;
  }
  free(path);
  while (fgets(line, sizeof line, f) != NULL && ncases < MAX_CASES) {
    char *fields[5] = {0};
    size_t n;
    corpus_case *c = &cases[ncases];

    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0')
      continue;
    n = split_tabs(line, fields, ARRAY_LEN(fields));
    if (n < 3) {
      fprintf(stderr, "manifest line for %s has %zu fields\n", fields[0], n);
      fclose(f);
      return -1;
    }
    if (!copy_field(c->name, sizeof c->name, fields[0]) ||
        !copy_field(c->declared, sizeof c->declared,
                    strcmp(fields[1], "-") == 0 ? "" : fields[1]) ||
        !copy_field(c->status, sizeof c->status, fields[2]) ||
        (n >= 4 && !copy_field(c->mime, sizeof c->mime, fields[3])) ||
        (n >= 5 && strcmp(fields[4], "-") != 0 &&
         sscanf(fields[4], "%dx%d", &c->width, &c->height) != 2)) {
      fprintf(stderr, "manifest line for %s: a field is too long or the size is not WxH\n",
              fields[0]);
      fclose(f);
      return -1;
    }
    ncases++;
  }
  fclose(f);
  return ncases > 0 ? 0 : -1;
}

static const corpus_case *case_named(const char *name) {
  for (size_t i = 0; i < ncases; i++) {
    if (strcmp(cases[i].name, name) == 0)
      return &cases[i];
  }
  fail_msg("no manifest line for %s", name);
  return NULL;
}

/* The whole corpus file `name` (malloc'd; free it). An empty file gives a valid
 * pointer and *len 0. Not thread-safe in failure (uses fail_msg). */
static unsigned char *read_corpus(const char *name, size_t *len) {
  char path[1024];
  FILE *f;
  unsigned char *buf = NULL;
  long size = 0;

  snprintf(path, sizeof path, "%s/%s", corpus_dir, name);
  f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot open %s (was the corpus generated?)", path);
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    fail_msg("cannot size %s", path);
  buf = malloc((size_t)size + 1);
  assert_non_null(buf);
  *len = fread(buf, 1, (size_t)size, f);
  fclose(f);
  assert_int_equal(*len, (size_t)size);
  return buf;
}

static void require_init(void) {
  tryon_err err;
  tryon_err_clear(&err);
  assert_int_equal(tryon_files_global_init(&err), TRYON_OK);
}

/* Normalises a corpus file with its manifest declaration. */
static tryon_status normalise_case(const corpus_case *c, tryon_image *img, tryon_err *err) {
  size_t len = 0;
  unsigned char *data = read_corpus(c->name, &len);
  tryon_status st = tryon_image_normalise(data, len, c->declared[0] ? c->declared : NULL, img, err);
  free(data);
  return st;
}

static bool contains(const unsigned char *hay, size_t n, const void *needle, size_t m) {
  for (size_t i = 0; m <= n && i <= n - m; i++) {
    if (memcmp(hay + i, needle, m) == 0)
      return true;
  }
  return false;
}

/* Byte strings no clean output may hold: metadata blocks, payloads seen in the corpus,
 * and the filler of exactly_5mib.jpg. */
static const struct {
  const char *bytes;
  size_t len;
} forbidden[] = {
    {"Exif\0\0", 6},
    {"GPSInfo", 7},
    {"http://ns.adobe.com/xap", 23},
    {"<?php", 5},
    {"PK\x03\x04", 4},
    {"TRYON-PADDING", 13},
    {"secret-creator", 14},
    {"TryonCam", 8},
    {"ICC_PROFILE", 11},
    {"hello from inside", 17},
};

/* The only segments a clean JPEG has before its first scan: JFIF APP0 and the tables
 * and frame libjpeg writes. No APP1..15 (EXIF, XMP, ICC, Photoshop), no COM. */
static void assert_clean_jpeg(const unsigned char *p, size_t n, const char *what) {
  size_t i = 2;

  assert_true(n > 4 && p[0] == 0xFF && p[1] == 0xD8);
  while (i + 4 <= n) {
    unsigned m;
    if (p[i] != 0xFF)
      fail_msg("%s: no marker at %zu", what, i);
    m = p[i + 1];
    if (m == 0xDA)
      break;
    if (!(m == 0xE0 || m == 0xDB || m == 0xC4 || m == 0xDD || (m >= 0xC0 && m <= 0xCF)))
      fail_msg("%s: segment FF%02X kept", what, m);
    i += 2 + (((size_t)p[i + 2] << 8) | p[i + 3]);
  }
  /* Nothing after the end of image. */
  assert_true(p[n - 2] == 0xFF && p[n - 1] == 0xD9);
}

/* A clean PNG has only IHDR, PLTE, tRNS, pHYs (pixel density), IDAT and IEND, and ends
 * with IEND. */
static void assert_clean_png(const unsigned char *p, size_t n, const char *what) {
  static const char allowed[][5] = {"IHDR", "PLTE", "tRNS", "pHYs", "IDAT", "IEND"};
  size_t i = 8;

  assert_true(n > 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0);
  while (i + 12 <= n) {
    size_t len = (size_t)p[i] << 24 | (size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 | p[i + 3];
    bool ok = false;
    for (size_t k = 0; k < ARRAY_LEN(allowed); k++)
      ok |= memcmp(p + i + 4, allowed[k], 4) == 0;
    if (!ok)
      fail_msg("%s: chunk %.4s kept", what, (const char *)(p + i + 4));
    i += 12 + len;
  }
  assert_int_equal(i, n);
  assert_memory_equal(p + n - 8, "IEND", 4);
}

static void assert_clean(const unsigned char *p, size_t n, const char *mime, const char *what) {
  for (size_t k = 0; k < ARRAY_LEN(forbidden); k++) {
    if (contains(p, n, forbidden[k].bytes, forbidden[k].len))
      fail_msg("%s: output holds \"%s\"", what, forbidden[k].bytes);
  }
  if (strcmp(mime, "image/jpeg") == 0)
    assert_clean_jpeg(p, n, what);
  else
    assert_clean_png(p, n, what);
}

typedef struct decoded {
  int width, height, bands;
  VipsBandFormat format;
  VipsInterpretation interpretation;
  double mean[4];
} decoded;

/* Decodes `data` again with libvips, reading every pixel, and takes its band means. */
static void decode_again(const unsigned char *data, size_t len, decoded *d, const char *what) {
  VipsImage *img = vips_image_new_from_buffer(data, len, "", "fail_on", VIPS_FAIL_ON_ERROR, NULL);

  if (img == NULL) {
    vips_error_clear();
    fail_msg("%s: the output does not decode", what);
  }
  memset(d, 0, sizeof *d);
  d->width = img->Xsize;
  d->height = img->Ysize;
  d->bands = img->Bands;
  d->format = img->BandFmt;
  d->interpretation = vips_image_get_interpretation(img);
  for (int b = 0; b < d->bands && b < 4; b++) {
    VipsImage *band = NULL;
    if (vips_extract_band(img, &band, b, NULL) != 0 || vips_avg(band, &d->mean[b], NULL) != 0) {
      vips_error_clear();
      if (band != NULL)
        g_object_unref(band);
      g_object_unref(img);
      fail_msg("%s: band %d does not decode", what, b);
    }
    g_object_unref(band);
  }
  g_object_unref(img);
}

/* ==================================================================== tests */

/* Runs first, before anything has called tryon_files_global_init. */
static void test_files__refuses_before_init(void **state) {
  tryon_image img;
  tryon_err err;
  (void)state;
  tryon_err_clear(&err);
  assert_int_equal(tryon_image_normalise("\xff\xd8\xff", 3, NULL, &img, &err), TRYON_E_INTERNAL);
  assert_null(img.data);
}

static void test_files__init_is_idempotent(void **state) {
  (void)state;
  require_init();
  require_init();
}

static void test_files__manifest_verdicts(void **state) {
  (void)state;
  require_init();
  for (size_t i = 0; i < ncases; i++) {
    const corpus_case *c = &cases[i];
    tryon_image img = {0};
    tryon_err err;
    tryon_status st;

    tryon_err_clear(&err);
    st = normalise_case(c, &img, &err);
    if (strcmp(tryon_status_code(st), c->status) != 0)
      fail_msg("%s: got %s (%s), want %s", c->name, tryon_status_code(st), tryon_err_message(&err),
               c->status);
    if (st != TRYON_OK) {
      /* A refusal leaves nothing to free and says what is wrong in words. */
      assert_null(img.data);
      assert_null(img.thumb);
      assert_int_equal(err.status, st);
      assert_true(strlen(err.message) > 0);
      continue;
    }
    assert_string_equal(img.mime, c->mime);
    assert_string_equal(img.thumb_mime, c->mime);
    if (c->width > 0) {
      assert_int_equal(img.width, c->width);
      assert_int_equal(img.height, c->height);
    }
    assert_true(img.len > 0 && img.thumb_len > 0);

    /* The thumbnail: at most 512 on its longer side, the shape of the image. */
    int longer = img.thumb_width > img.thumb_height ? img.thumb_width : img.thumb_height;
    assert_true(longer <= TRYON_FILES_THUMB_SIDE);
    assert_true(longer == TRYON_FILES_THUMB_SIDE ||
                (img.thumb_width == img.width && img.thumb_height == img.height));
    assert_true((img.width > img.height) == (img.thumb_width > img.thumb_height) ||
                img.width == img.height);

    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(img.data, img.len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_memory_equal(md, img.sha256, 32);

    assert_clean(img.data, img.len, img.mime, c->name);
    assert_clean(img.thumb, img.thumb_len, img.thumb_mime, c->name);

    decoded d, td;
    decode_again(img.data, img.len, &d, c->name);
    assert_int_equal(d.width, img.width);
    assert_int_equal(d.height, img.height);
    assert_int_equal(d.format, VIPS_FORMAT_UCHAR);
    assert_int_equal(d.interpretation, VIPS_INTERPRETATION_sRGB);
    assert_int_equal(d.bands, strcmp(img.mime, "image/png") == 0 ? 4 : 3);
    decode_again(img.thumb, img.thumb_len, &td, c->name);
    assert_int_equal(td.width, img.thumb_width);
    assert_int_equal(td.height, img.thumb_height);
    assert_int_equal(td.bands, d.bands);

    tryon_image_release(&img);
    assert_null(img.data);
  }
}

static void test_files__exif_orientation_applied_and_dropped(void **state) {
  tryon_image img = {0}, plain = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_int_equal(normalise_case(case_named("exif_rotated.jpg"), &img, &err), TRYON_OK);
  assert_int_equal(normalise_case(case_named("plain.jpg"), &plain, &err), TRYON_OK);
  /* Stored 640x480 with Orientation 6: shown (and kept) upright, 480x640. */
  assert_int_equal(img.width, plain.height);
  assert_int_equal(img.height, plain.width);
  assert_int_equal(img.thumb_width, 384);
  assert_int_equal(img.thumb_height, 512);
  assert_false(contains(img.data, img.len, "Leaky", 5));
  tryon_image_release(&img);
  tryon_image_release(&plain);
}

/* Whether a PNG has a chunk of `type`: walks the chunk list (length, type, data, CRC). */
static bool png_has_chunk(const unsigned char *p, size_t n, const char *type) {
  for (size_t i = 8; i + 12 <= n;) {
    size_t len = (size_t)p[i] << 24 | (size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 | p[i + 3];
    if (memcmp(p + i + 4, type, 4) == 0)
      return true;
    if (len > n - i - 12)
      break;
    i += 12 + len;
  }
  return false;
}

/* An alpha PNG stays a PNG: its eXIf chunk (GPS, Artist) and every text chunk must go,
 * from the image and the thumbnail (issue 12, item 9: with PNG strip off, both came out
 * and no test noticed). */
static void test_files__png_exif_and_text_chunks_dropped(void **state) {
  static const char *const meta[] = {"eXIf", "tEXt", "iTXt", "zTXt"};
  size_t len = 0;
  tryon_image img = {0};
  tryon_err err;
  (void)state;
  require_init();
  unsigned char *src = read_corpus("alpha_exif.png", &len);
  /* The source really carries them, so the checks below cannot pass by accident. */
  assert_true(png_has_chunk(src, len, "eXIf"));
  assert_true(contains(src, len, "SecretArtistName", 16));
  free(src);
  assert_int_equal(normalise_case(case_named("alpha_exif.png"), &img, &err), TRYON_OK);
  assert_string_equal(img.mime, "image/png");
  assert_non_null(img.thumb);
  for (size_t i = 0; i < ARRAY_LEN(meta); i++) {
    if (png_has_chunk((const unsigned char *)img.data, img.len, meta[i]))
      fail_msg("the stored image keeps a %s chunk", meta[i]);
    if (png_has_chunk((const unsigned char *)img.thumb, img.thumb_len, meta[i]))
      fail_msg("the thumbnail keeps a %s chunk", meta[i]);
  }
  assert_false(contains((const unsigned char *)img.data, img.len, "SecretArtistName", 16));
  assert_false(contains((const unsigned char *)img.thumb, img.thumb_len, "SecretArtistName", 16));
  tryon_image_release(&img);
}

/* CMYK (with and without a profile), 16-bit and grey sources come out as 8-bit sRGB,
 * three bands, and look like the plain source: means within a few levels, so an
 * inverted CMYK or a 16-bit value cut instead of scaled would show. */
static void test_files__deep_and_cmyk_become_8bit_srgb(void **state) {
  static const char *const names[] = {"cmyk.jpg", "cmyk_icc.jpg", "rgb16.png", "palette.png",
                                      "interlaced.png"};
  tryon_image plain = {0};
  tryon_err err;
  decoded ref;
  (void)state;
  require_init();
  assert_int_equal(normalise_case(case_named("plain.jpg"), &plain, &err), TRYON_OK);
  decode_again(plain.data, plain.len, &ref, "plain.jpg");
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    tryon_image img = {0};
    decoded d;
    assert_int_equal(normalise_case(case_named(names[i]), &img, &err), TRYON_OK);
    assert_string_equal(img.mime, "image/jpeg");
    decode_again(img.data, img.len, &d, names[i]);
    assert_int_equal(d.bands, 3);
    assert_int_equal(d.format, VIPS_FORMAT_UCHAR);
    assert_int_equal(d.interpretation, VIPS_INTERPRETATION_sRGB);
    for (int b = 0; b < 3; b++) {
      /* ImageMagick's CMYK without a profile is the naive 255 - RGB, which libvips reads
       * through a press profile: some 20 levels off, where an inverted one would be
       * 100 off. With the profile embedded the round trip is close. */
      double tolerance = strcmp(names[i], "cmyk.jpg") == 0       ? 24.0
                         : strcmp(names[i], "cmyk_icc.jpg") == 0 ? 10.0
                                                                 : 4.0;
      if (d.mean[b] < ref.mean[b] - tolerance || d.mean[b] > ref.mean[b] + tolerance)
        fail_msg("%s: band %d mean %.1f, plain %.1f", names[i], b, d.mean[b], ref.mean[b]);
    }
    tryon_image_release(&img);
  }
  /* Grey stays grey, as three equal bands. */
  tryon_image grey = {0};
  decoded g;
  assert_int_equal(normalise_case(case_named("grey.jpg"), &grey, &err), TRYON_OK);
  decode_again(grey.data, grey.len, &g, "grey.jpg");
  assert_int_equal(g.bands, 3);
  assert_true(g.mean[0] - g.mean[1] < 1.0 && g.mean[1] - g.mean[0] < 1.0);
  assert_true(g.mean[2] - g.mean[1] < 1.0 && g.mean[1] - g.mean[2] < 1.0);
  tryon_image_release(&grey);
  tryon_image_release(&plain);
}

static void test_files__alpha_stays_png_with_four_bands(void **state) {
  static const char *const names[] = {"alpha.png", "grey_alpha.png"};
  (void)state;
  require_init();
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    tryon_image img = {0};
    tryon_err err;
    decoded d;
    assert_int_equal(normalise_case(case_named(names[i]), &img, &err), TRYON_OK);
    assert_string_equal(img.mime, "image/png");
    assert_string_equal(img.thumb_mime, "image/png");
    decode_again(img.data, img.len, &d, names[i]);
    assert_int_equal(d.bands, 4);
    /* The alpha gradient survives: neither flattened to opaque nor lost. */
    assert_true(d.mean[3] > 64.0 && d.mean[3] < 192.0);
    tryon_image_release(&img);
  }
}

/* Trailing bytes and a ZIP ride along in the upload but not in what is kept: the kept
 * bytes are those of the bare photo. (php_comment.jpg is a re-encoding, so only the
 * manifest test's byte checks apply to it.) */
static void test_files__payloads_do_not_survive(void **state) {
  static const char *const names[] = {"polyglot_zip.jpg", "exactly_5mib.jpg"};
  tryon_image plain = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_int_equal(normalise_case(case_named("plain.jpg"), &plain, &err), TRYON_OK);
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    tryon_image img = {0};
    assert_int_equal(normalise_case(case_named(names[i]), &img, &err), TRYON_OK);
    assert_int_equal(img.len, plain.len);
    assert_memory_equal(img.sha256, plain.sha256, 32);
    tryon_image_release(&img);
  }
  tryon_image_release(&plain);
}

/* A profile that does not fit the pixels (CMYK on RGB) is ignored like any metadata:
 * the photo comes out as if it had none. */
static void test_files__unfit_profile_ignored(void **state) {
  tryon_image img = {0}, plain = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_int_equal(normalise_case(case_named("icc_mismatch.jpg"), &img, &err), TRYON_OK);
  assert_int_equal(normalise_case(case_named("plain.jpg"), &plain, &err), TRYON_OK);
  assert_memory_equal(img.sha256, plain.sha256, 32);
  tryon_image_release(&img);
  tryon_image_release(&plain);
}

static void test_files__declared_types(void **state) {
  static const struct {
    const char *declared;
    tryon_status want;
  } rows[] = {
      {NULL, TRYON_OK},
      {"", TRYON_OK},
      {"image/jpeg", TRYON_OK},
      {"IMAGE/JPEG", TRYON_OK},
      {"image/jpeg; charset=binary", TRYON_OK},
      {" image/jpg", TRYON_OK},
      {"image/pjpeg", TRYON_OK},
      {"image/png", TRYON_E_TYPE_MISMATCH},
      {"image/gif", TRYON_E_TYPE_MISMATCH},
      {"application/octet-stream", TRYON_E_TYPE_MISMATCH},
      {"image/jpegx", TRYON_E_TYPE_MISMATCH},
  };
  size_t len = 0;
  unsigned char *jpeg;
  (void)state;
  require_init();
  jpeg = read_corpus("plain.jpg", &len);
  for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
    tryon_image img = {0};
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_image_normalise(jpeg, len, rows[i].declared, &img, &err);
    if (st != rows[i].want)
      fail_msg("declared \"%s\": got %s", rows[i].declared ? rows[i].declared : "(null)",
               tryon_status_code(st));
    /* The message never echoes what the client declared. */
    if (rows[i].declared != NULL && rows[i].declared[0] != '\0')
      assert_null(strstr(err.message, rows[i].declared));
    tryon_image_release(&img);
  }
  free(jpeg);
}

static void test_files__bad_arguments(void **state) {
  tryon_image img;
  tryon_err err;
  (void)state;
  require_init();
  tryon_err_clear(&err);
  assert_int_equal(tryon_image_normalise("x", 1, NULL, NULL, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_image_normalise(NULL, 10, NULL, &img, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_image_normalise(NULL, 0, NULL, &img, &err), TRYON_E_EMPTY_FILE);
  assert_int_equal(tryon_image_normalise(NULL, 0, NULL, &img, NULL), TRYON_E_EMPTY_FILE);
  /* Release accepts a zeroed image, and an image twice. */
  memset(&img, 0, sizeof img);
  tryon_image_release(&img);
  tryon_image_release(&img);
  tryon_image_release(NULL);
}

/* Hand-made headers the corpus does not cover: the limits' exact edges and structure
 * the header walk must refuse before any decoder runs. */
static void test_files__header_edges(void **state) {
  size_t len = 0;
  unsigned char *tiny = read_corpus("bomb_9000.jpg", &len);
  unsigned char *copy = malloc(len);
  size_t sof = 0;
  tryon_image img = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_non_null(copy);
  for (size_t i = 2; i + 1 < len; i++) {
    if (tiny[i] == 0xFF && tiny[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  }
  assert_true(sof > 0);
  static const struct {
    int w, h;
    tryon_status want;
  } sizes[] = {
      {8193, 1, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS}, /* one over a side */
      {1, 8193, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS},
      {8192, 4883, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS}, /* 40,001,536 pixels */
      {65535, 65535, TRYON_E_IMAGE_TOO_LARGE_DIMENSIONS},
      {16, 0, TRYON_E_CORRUPT_IMAGE},      /* height from DNL: refused */
      {8192, 4882, TRYON_E_CORRUPT_IMAGE}, /* within limits: the pixels are missing */
  };
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    memcpy(copy, tiny, len);
    copy[sof + 5] = (unsigned char)(sizes[i].h >> 8);
    copy[sof + 6] = (unsigned char)sizes[i].h;
    copy[sof + 7] = (unsigned char)(sizes[i].w >> 8);
    copy[sof + 8] = (unsigned char)sizes[i].w;
    tryon_err_clear(&err);
    tryon_status st = tryon_image_normalise(copy, len, NULL, &img, &err);
    if (st != sizes[i].want)
      fail_msg("%dx%d: got %s, want %s", sizes[i].w, sizes[i].h, tryon_status_code(st),
               tryon_status_code(sizes[i].want));
  }

  /* A scan before any frame header, and a JPEG that has no frame at all. */
  static const unsigned char no_frame[] = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1,    1,
                                           0,    0,    63,   0,    0x12, 0x34, 0xFF, 0xD9};
  assert_int_equal(tryon_image_normalise(no_frame, sizeof no_frame, NULL, &img, &err),
                   TRYON_E_CORRUPT_IMAGE);
  static const unsigned char only_soi[] = {0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, 'h', 'i'};
  assert_int_equal(tryon_image_normalise(only_soi, sizeof only_soi, NULL, &img, &err),
                   TRYON_E_CORRUPT_IMAGE);
  free(copy);
  free(tiny);
}

/* A progressive JPEG with hundreds of scans (a CPU bomb) is refused without decoding. */
static void test_files__jpeg_scan_bomb_refused(void **state) {
  size_t len = 0;
  unsigned char *jpeg = read_corpus("progressive.jpg", &len);
  unsigned char *bomb;
  size_t eoi = len - 2, n = 0;
  /* An empty DC-refinement scan repeated: SOS for component 1, Ss=Se=0, Ah=Al=1. */
  static const unsigned char scan[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01,
                                       0x00, 0x00, 0x00, 0x10, 0x00};
  tryon_image img = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_true(jpeg[eoi] == 0xFF && jpeg[eoi + 1] == 0xD9);
  bomb = malloc(len + 200 * sizeof scan);
  assert_non_null(bomb);
  memcpy(bomb, jpeg, eoi);
  n = eoi;
  for (int i = 0; i < 200; i++) {
    memcpy(bomb + n, scan, sizeof scan);
    n += sizeof scan;
  }
  bomb[n++] = 0xFF;
  bomb[n++] = 0xD9;
  tryon_err_clear(&err);
  assert_int_equal(tryon_image_normalise(bomb, n, "image/jpeg", &img, &err), TRYON_E_CORRUPT_IMAGE);
  free(bomb);
  free(jpeg);
}

/* CRC-32 as PNG uses it (bitwise: the test needs a handful of them). */
static uint32_t png_crc(const unsigned char *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* A PNG carrying a zTXt chunk that inflates to 64 MiB (a 64 KiB upload): the chunk is
 * dropped before libpng sees the file, so the photo goes through untouched. */
static void test_files__png_text_bomb_dropped(void **state) {
  const size_t inflated = (size_t)64 << 20;
  size_t len = 0, zlen = 0, n = 0;
  unsigned char *png = read_corpus("alpha.png", &len);
  unsigned char *zeros = calloc(inflated, 1);
  unsigned char *z = malloc((size_t)1 << 20);
  unsigned char *bomb = NULL;
  GZlibCompressor *comp = g_zlib_compressor_new(G_ZLIB_COMPRESSOR_FORMAT_ZLIB, 9);
  gsize in_used = 0, out_used = 0;
  tryon_image img = {0}, plain = {0};
  tryon_err err;
  (void)state;
  require_init();
  assert_non_null(zeros);
  assert_non_null(z);
  assert_int_equal(g_converter_convert(G_CONVERTER(comp), zeros, inflated, z, (size_t)1 << 20,
                                       G_CONVERTER_INPUT_AT_END, &in_used, &out_used, NULL),
                   G_CONVERTER_FINISHED);
  g_object_unref(comp);
  zlen = out_used;

  /* signature + IHDR (33 bytes), the zTXt chunk, then the rest of the PNG. */
  bomb = malloc(len + zlen + 64);
  assert_non_null(bomb);
  memcpy(bomb, png, 33);
  n = 33;
  put_be32(bomb + n, (uint32_t)(6 + zlen)); /* keyword "bomb", NUL, method 0, stream */
  memcpy(bomb + n + 4, "zTXtbomb\0\0", 10);
  memcpy(bomb + n + 14, z, zlen);
  put_be32(bomb + n + 14 + zlen, png_crc(bomb + n + 4, 10 + zlen));
  n += 18 + zlen;
  memcpy(bomb + n, png + 33, len - 33);
  n += len - 33;

  tryon_err_clear(&err);
  assert_int_equal(tryon_image_normalise(bomb, n, "image/png", &img, &err), TRYON_OK);
  assert_int_equal(tryon_image_normalise(png, len, "image/png", &plain, &err), TRYON_OK);
  assert_memory_equal(img.sha256, plain.sha256, 32);
  tryon_image_release(&img);
  tryon_image_release(&plain);
  free(bomb);
  free(z);
  free(zeros);
  free(png);
}

/* Appends one chunk (length, type, data, CRC) at out + *n. */
static void put_chunk(unsigned char *out, size_t *n, const char *type, const unsigned char *data,
                      size_t len) {
  put_be32(out + *n, (uint32_t)len);
  memcpy(out + *n + 4, type, 4);
  if (len > 0)
    memcpy(out + *n + 8, data, len);
  put_be32(out + *n + 8 + len, png_crc(out + *n + 4, 4 + len));
  *n += 12 + len;
}

/* A PNG whose compressed pixels stop half way while every chunk is well formed (one
 * IDAT with half the stream, then IEND): libpng only warns "Not enough image data",
 * and the photo must still be refused, not kept with an empty bottom. */
static void test_files__short_png_stream_refused(void **state) {
  static const char *const names[] = {"interlaced.png", "palette.png", "alpha.png", "rgb16.png"};
  (void)state;
  require_init();
  for (size_t f = 0; f < ARRAY_LEN(names); f++) {
    size_t len = 0, i = 8, n = 8, idat_len = 0;
    unsigned char *png = read_corpus(names[f], &len);
    unsigned char *idat = malloc(len), *cut = malloc(len + 64);
    tryon_image img = {0};
    tryon_err err;

    assert_non_null(idat);
    assert_non_null(cut);
    memcpy(cut, png, 8);
    while (i + 12 <= len) {
      size_t clen =
          (size_t)png[i] << 24 | (size_t)png[i + 1] << 16 | (size_t)png[i + 2] << 8 | png[i + 3];
      if (memcmp(png + i + 4, "IDAT", 4) == 0) {
        memcpy(idat + idat_len, png + i + 8, clen);
        idat_len += clen;
      } else if (memcmp(png + i + 4, "IEND", 4) != 0) {
        memcpy(cut + n, png + i, 12 + clen); /* IHDR, PLTE, tRNS ... as they were */
        n += 12 + clen;
      }
      i += 12 + clen;
    }
    assert_true(idat_len > 100);
    put_chunk(cut, &n, "IDAT", idat, idat_len / 2);
    put_chunk(cut, &n, "IEND", NULL, 0);
    tryon_err_clear(&err);
    tryon_status st = tryon_image_normalise(cut, n, "image/png", &img, &err);
    if (st != TRYON_E_CORRUPT_IMAGE)
      fail_msg("%s cut short: got %s", names[f], tryon_status_code(st));
    free(cut);
    free(idat);
    free(png);
  }
}

/* ------------------------------------------------------------------ concurrency */

#define THREADS 4
#define ROUNDS 3

static const char *const mixed[] = {
    "plain.jpg",     "cmyk_icc.jpg",     "alpha.png",   "png_named.jpg", "gif_as.jpg",
    "truncated.jpg", "exif_rotated.jpg", "rgb16.png",   "bomb_9000.jpg", "html_as.jpg",
    "svg_as.png",    "grey.jpg",         "bad_crc.png", "palette.png",
};

typedef struct expected {
  tryon_status st;
  uint8_t sha256[32];
} expected;

typedef struct worker {
  int index;
  unsigned char *data[ARRAY_LEN(mixed)];
  size_t len[ARRAY_LEN(mixed)];
  const char *declared[ARRAY_LEN(mixed)];
  const expected *want;
  int mismatches;
} worker;

static void *worker_run(void *arg) {
  worker *w = arg;
  size_t n = ARRAY_LEN(mixed);

  for (int round = 0; round < ROUNDS; round++) {
    for (size_t k = 0; k < n; k++) {
      /* Each thread walks the list from its own starting point, so different formats
       * (and so different libmagic verdicts) are in flight at once. */
      size_t i = (k + (size_t)w->index * 3 + (size_t)round) % n;
      tryon_image img = {0};
      tryon_status st = tryon_image_normalise(w->data[i], w->len[i], w->declared[i], &img, NULL);
      if (st != w->want[i].st || (st == TRYON_OK && memcmp(img.sha256, w->want[i].sha256, 32) != 0))
        w->mismatches++;
      tryon_image_release(&img);
    }
  }
  return NULL;
}

static void test_files__concurrent_results_match(void **state) {
  expected want[ARRAY_LEN(mixed)];
  worker workers[THREADS];
  pthread_t th[THREADS];
  unsigned char *data[ARRAY_LEN(mixed)];
  size_t len[ARRAY_LEN(mixed)];
  const char *declared[ARRAY_LEN(mixed)];
  (void)state;
  require_init();
  for (size_t i = 0; i < ARRAY_LEN(mixed); i++) {
    const corpus_case *c = case_named(mixed[i]);
    tryon_image img = {0};
    data[i] = read_corpus(mixed[i], &len[i]);
    declared[i] = c->declared[0] ? c->declared : NULL;
    want[i].st = tryon_image_normalise(data[i], len[i], declared[i], &img, NULL);
    assert_string_equal(tryon_status_code(want[i].st), c->status);
    memcpy(want[i].sha256, img.sha256, 32);
    tryon_image_release(&img);
  }
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (worker){.index = t, .want = want};
    memcpy(workers[t].data, data, sizeof data);
    memcpy(workers[t].len, len, sizeof len);
    memcpy(workers[t].declared, declared, sizeof declared);
    assert_int_equal(pthread_create(&th[t], NULL, worker_run, &workers[t]), 0);
  }
  int mismatches = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(th[t], NULL);
    mismatches += workers[t].mismatches;
  }
  for (size_t i = 0; i < ARRAY_LEN(mixed); i++)
    free(data[i]);
  assert_int_equal(mismatches, 0);
}

/* Runs last: after shutdown the module refuses, and cannot be started again. */
static void test_files__shutdown_is_final(void **state) {
  tryon_image img;
  tryon_err err;
  (void)state;
  require_init();
  tryon_files_global_shutdown();
  tryon_files_global_shutdown();
  tryon_err_clear(&err);
  assert_int_equal(tryon_files_global_init(&err), TRYON_E_INTERNAL);
  assert_int_equal(tryon_image_normalise("\xff\xd8\xff", 3, NULL, &img, &err), TRYON_E_INTERNAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_files__refuses_before_init),
      cmocka_unit_test(test_files__init_is_idempotent),
      cmocka_unit_test(test_files__manifest_verdicts),
      cmocka_unit_test(test_files__exif_orientation_applied_and_dropped),
      cmocka_unit_test(test_files__png_exif_and_text_chunks_dropped),
      cmocka_unit_test(test_files__deep_and_cmyk_become_8bit_srgb),
      cmocka_unit_test(test_files__alpha_stays_png_with_four_bands),
      cmocka_unit_test(test_files__payloads_do_not_survive),
      cmocka_unit_test(test_files__unfit_profile_ignored),
      cmocka_unit_test(test_files__declared_types),
      cmocka_unit_test(test_files__bad_arguments),
      cmocka_unit_test(test_files__header_edges),
      cmocka_unit_test(test_files__jpeg_scan_bomb_refused),
      cmocka_unit_test(test_files__png_text_bomb_dropped),
      cmocka_unit_test(test_files__short_png_stream_refused),
      cmocka_unit_test(test_files__concurrent_results_match),
      cmocka_unit_test(test_files__shutdown_is_final),
  };
  tryon_test_log_init();
  return cmocka_run_group_tests(tests, load_manifest, NULL);
}
