/*
 * Image storage (local backend) and signed links.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tryon/files.h>

#include "files/files_internal.h"
#include "testsupport.h"

#define ID "3f2a9c1e-7b4d-4e8a-9c21-0a1b2c3d4e5f"

typedef struct fixture {
  char root[64];
  tryon_storage *s;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_err err;
  snprintf(f->root, sizeof f->root, "/tmp/tryon-storage-XXXXXX");
  assert_non_null(mkdtemp(f->root));
  char root[96];
  snprintf(root, sizeof root, "%s/objects", f->root); /* created by the backend */
  assert_int_equal(tryon_storage_local_new(root, &f->s, &err), TRYON_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char cmd[128];
  tryon_storage_free(f->s);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void test_storage__put_get_remove(void **state) {
  fixture *f = *state;
  tryon_buf b;
  tryon_err err;
  tryon_buf_init(&b, 1 << 20);

  assert_int_equal(tryon_storage_put(f->s, ID, "image-bytes", 11, &err), TRYON_OK);
  assert_int_equal(tryon_storage_put(f->s, ID ".thumb", "thumb", 5, &err), TRYON_OK);
  assert_int_equal(tryon_storage_get(f->s, ID, &b, &err), TRYON_OK);
  assert_int_equal(b.len, 11);
  assert_memory_equal(b.data, "image-bytes", 11);

  /* Sharded by the first four hex digits; private permissions; no temporary left. */
  char path[160];
  struct stat sb;
  snprintf(path, sizeof path, "%s/objects/3f/2a/" ID, f->root);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  snprintf(path, sizeof path, "%s/objects/3f/2a", f->root);
  DIR *d = opendir(path);
  struct dirent *de;
  int entries = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || de->d_name[1] == '.'))
      continue;
    assert_null(strstr(de->d_name, ".tmp-"));
    entries++;
  }
  closedir(d);
  assert_int_equal(entries, 2);

  /* Never overwritten. */
  assert_int_equal(tryon_storage_put(f->s, ID, "other", 5, &err), TRYON_E_CONFLICT);
  tryon_buf_reset(&b);
  assert_int_equal(tryon_storage_get(f->s, ID, &b, &err), TRYON_OK);
  assert_memory_equal(b.data, "image-bytes", 11);

  assert_int_equal(tryon_storage_remove(f->s, ID, &err), TRYON_OK);
  assert_int_equal(tryon_storage_remove(f->s, ID, &err), TRYON_OK); /* already gone: fine */
  tryon_buf_reset(&b);
  assert_int_equal(tryon_storage_get(f->s, ID, &b, &err), TRYON_E_NOT_FOUND);

  /* A reader's ceiling holds. */
  tryon_buf small;
  tryon_buf_init(&small, 3);
  assert_int_equal(tryon_storage_get(f->s, ID ".thumb", &small, &err), TRYON_E_TOO_LARGE);
  tryon_buf_release(&small);
  tryon_buf_release(&b);
}

static void test_storage__keys_are_ours_only(void **state) {
  fixture *f = *state;
  static const struct {
    const char *key;
    bool valid;
  } cases[] = {
      {ID, true},
      {ID ".thumb", true},
      {"3F2A9C1E-7B4D-4E8A-9C21-0A1B2C3D4E5F", false}, /* one spelling: lower case */
      {"../../etc/passwd", false},
      {ID "/../x", false},
      {ID ".thumb.thumb", false},
      {ID ".png", false},
      {"photo.jpg", false},
      {"", false},
      {NULL, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tryon_err err;
    assert_int_equal(tryon_storage_key_valid(cases[i].key), cases[i].valid);
    if (!cases[i].valid && cases[i].key != NULL)
      assert_int_equal(tryon_storage_put(f->s, cases[i].key, "x", 1, &err), TRYON_E_INVALID);
  }
}

/* ----------------------------------------------------------------------- signed links */

/* Splits "/files/<id>[/thumb]?exp=E&sig=S" into its parts (test-only parser). */
static void parse_link(const char *link, char *id, bool *thumb, char *exp, char *sig) {
  assert_int_equal(strncmp(link, "/files/", 7), 0);
  memcpy(id, link + 7, 36);
  id[36] = '\0';
  *thumb = strncmp(link + 43, "/thumb", 6) == 0;
  const char *e = strstr(link, "?exp=") + 5;
  const char *s = strstr(link, "&sig=") + 5;
  snprintf(exp, 24, "%.*s", (int)(s - 5 - e), e);
  snprintf(sig, 65, "%s", s);
}

static void test_links__sign_verify_and_tamper(void **state) {
  (void)state;
  tryon_link_key key, other;
  char link[TRYON_LINK_MAX], id[40], exp[24], sig[65];
  bool thumb;
  tryon_err err;
  const int64_t now = 1800000000;

  tryon_link_key_derive("server-secret-0123456789abcdef0123", 34, &key);
  tryon_link_key_derive("another-secret-0123456789abcdef012", 34, &other);
  assert_int_equal(tryon_link_sign(&key, ID, true, now + 3600, link, sizeof link, &err), TRYON_OK);
  assert_non_null(strstr(link, "/files/" ID "/thumb?exp=1800003600&sig="));
  parse_link(link, id, &thumb, exp, sig);
  assert_true(thumb);
  assert_int_equal(tryon_link_verify(&key, id, thumb, exp, sig, now, &err), TRYON_OK);
  /* Valid up to and including its second; not one after. */
  assert_int_equal(tryon_link_verify(&key, id, thumb, exp, sig, now + 3600, &err), TRYON_OK);
  assert_int_equal(tryon_link_verify(&key, id, thumb, exp, sig, now + 3601, &err),
                   TRYON_E_FORBIDDEN);
  /* Another variant, another key. */
  assert_int_equal(tryon_link_verify(&key, id, false, exp, sig, now, &err), TRYON_E_FORBIDDEN);
  assert_int_equal(tryon_link_verify(&other, id, thumb, exp, sig, now, &err), TRYON_E_FORBIDDEN);

  /* Every single changed byte of id, exp and sig is refused. */
  for (size_t i = 0; i < strlen(id); i++) {
    char t[40];
    snprintf(t, sizeof t, "%s", id);
    if (t[i] == '-')
      continue;
    t[i] = t[i] == 'a' ? 'b' : 'a';
    assert_int_equal(tryon_link_verify(&key, t, thumb, exp, sig, now, &err), TRYON_E_FORBIDDEN);
  }
  for (size_t i = 0; i < strlen(exp); i++) {
    char t[24];
    snprintf(t, sizeof t, "%s", exp);
    t[i] = t[i] == '9' ? '8' : '9';
    assert_int_equal(tryon_link_verify(&key, id, thumb, t, sig, now, &err), TRYON_E_FORBIDDEN);
  }
  for (size_t i = 0; i < strlen(sig); i++) {
    char t[65];
    snprintf(t, sizeof t, "%s", sig);
    t[i] = t[i] == '0' ? '1' : '0';
    assert_int_equal(tryon_link_verify(&key, id, thumb, exp, t, now, &err), TRYON_E_FORBIDDEN);
  }
  /* Missing or malformed parts. */
  static const char *bad_exp[] = {NULL,          "",      "+1800003600",         " 1800003600",
                                  "01800003600", "1.8e9", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad_exp / sizeof bad_exp[0]; i++)
    assert_int_equal(tryon_link_verify(&key, id, thumb, bad_exp[i], sig, now, &err),
                     TRYON_E_FORBIDDEN);
  assert_int_equal(tryon_link_verify(&key, id, thumb, exp, NULL, now, &err), TRYON_E_FORBIDDEN);
  assert_int_equal(tryon_link_verify(&key, id, thumb, exp, "abc", now, &err), TRYON_E_FORBIDDEN);
  assert_int_equal(tryon_link_verify(&key, "not-a-uuid", thumb, exp, sig, now, &err),
                   TRYON_E_FORBIDDEN);
  assert_int_equal(tryon_link_sign(&key, "../x", false, now, link, sizeof link, &err),
                   TRYON_E_INVALID);
}

/* ------------------------------------------------------------------- ICC profiles */

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* A profile of `len` bytes with one tag `sig` of type `type` at offset 144. */
static void make_profile(unsigned char *p, size_t len, const char *sig, const char *type,
                         uint32_t count, uint32_t tag_size) {
  memset(p, 0, len);
  put32(p, (uint32_t)len);
  put32(p + 128, count);
  memcpy(p + 132, sig, 4);
  put32(p + 136, 144);
  put32(p + 140, tag_size);
  memcpy(p + 144, type, 4);
}

static void test_files__icc_profiles_lcms_may_not_see(void **state) {
  (void)state;
  static unsigned char p[2048];
  static const struct {
    const char *name;
    const char *sig;
    const char *type;
    uint32_t count;
    uint32_t tag_size;
    size_t len;
    bool safe;
  } cases[] = {
      {"a plain curve", "rTRC", "curv", 1, 16, 512, true},
      {"a D2B0 tag", "D2B0", "mpet", 1, 16, 512, false},
      {"a B2D1 tag", "B2D1", "mAB ", 1, 16, 512, false},
      {"an mpet type under another name", "A2B0", "mpet", 1, 16, 512, false},
      {"a tag past the end", "rTRC", "curv", 1, 4096, 512, false},
      {"more tags than the profile holds", "rTRC", "curv", 200, 16, 512, false},
      {"too short", "rTRC", "curv", 1, 16, 100, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].len >= 148)
      make_profile(p, cases[i].len, cases[i].sig, cases[i].type, cases[i].count, cases[i].tag_size);
    if (tryon__files_icc_safe(p, cases[i].len) != cases[i].safe)
      fail_msg("%s: want %s", cases[i].name, cases[i].safe ? "safe" : "unsafe");
  }
  assert_false(tryon__files_icc_safe(NULL, 0));
  /* Over 1 MiB is refused whatever it holds. */
  size_t big = 1024 * 1024 + 1;
  unsigned char *b = calloc(1, big);
  make_profile(b, 512, "rTRC", "curv", 1, 16);
  put32(b, (uint32_t)big);
  assert_false(tryon__files_icc_safe(b, big));
  free(b);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_storage__put_get_remove, setup, teardown),
      cmocka_unit_test_setup_teardown(test_storage__keys_are_ours_only, setup, teardown),
      cmocka_unit_test(test_links__sign_verify_and_tamper),
      cmocka_unit_test(test_files__icc_profiles_lcms_may_not_see),
  };
  return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
