/*
 * Photo uploads end to end: the corpus through POST /api/uploads, signed links, the
 * list, delete, the quota, and bad requests — against the real server, PostgreSQL and
 * a scratch storage folder.
 */
/* nftw is an XSI interface. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testserver.h"

/* ------------------------------------------------------------------ corpus and files */

typedef struct entry {
  char name[96];
  char declared[48]; /* "" for none */
  char code[48];     /* "ok" or a status code */
  char out_mime[24];
} entry;

static entry entries[128];
static size_t nentries;

static const char *corpus_dir(void) {
  const char *d = getenv("TRYON_FILES_CORPUS");
  if (d == NULL)
    fail_msg("TRYON_FILES_CORPUS is not set: run through ctest (fixture files_corpus)");
  return d;
}

/* tests/data/files/manifest.tsv: name, declared mime or -, expected code, then for
 * accepted files the output mime (and more columns this test does not need). */
static void load_manifest(void) {
  char *path = tryon_test_path("tests/data/files/manifest.tsv");
  FILE *f = fopen(path, "r");
  char line[512];
  if (f == NULL)
    fail_msg("cannot open %s", path);
  nentries = 0;
  while (fgets(line, sizeof line, f) != NULL && nentries < 128) {
    if (line[0] == '#' || line[0] == '\n')
      continue;
    line[strcspn(line, "\r\n")] = '\0';
    char *cols[5] = {0};
    int n = 0;
    for (char *p = line; n < 5;) {
      cols[n++] = p;
      char *tab = strchr(p, '\t');
      if (tab == NULL)
        break;
      *tab = '\0';
      p = tab + 1;
    }
    if (n < 3 || strcmp(cols[0], "name") == 0 || strcmp(cols[0], "file") == 0)
      continue;
    entry *e = &entries[nentries++];
    snprintf(e->name, sizeof e->name, "%.95s", cols[0]);
    snprintf(e->declared, sizeof e->declared, "%.47s", strcmp(cols[1], "-") ? cols[1] : "");
    snprintf(e->code, sizeof e->code, "%.47s", cols[2]);
    snprintf(e->out_mime, sizeof e->out_mime, "%.23s", n > 3 ? cols[3] : "");
  }
  fclose(f);
  free(path);
  if (nentries == 0)
    fail_msg("the manifest lists no files");
}

static char *read_file(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", corpus_dir(), name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)n + 1);
  assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return data;
}

/* The first accepted JPEG of the corpus, for tests that need any good photo. */
static char *a_good_photo(size_t *len) {
  for (size_t i = 0; i < nentries; i++) {
    if (strcmp(entries[i].code, "ok") == 0 && strcmp(entries[i].out_mime, "image/jpeg") == 0 &&
        strstr(entries[i].name, "5mib") == NULL)
      return read_file(entries[i].name, len);
  }
  fail_msg("no accepted JPEG in the corpus");
  return NULL;
}

static bool contains(const tryon_buf *b, const void *needle, size_t n) {
  if (b->len < n)
    return false;
  for (size_t i = 0; i + n <= b->len; i++) {
    if (memcmp(b->data + i, needle, n) == 0)
      return true;
  }
  return false;
}

static long stored_files;
static long temp_files;

static int count_file(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  if (type == FTW_F) {
    stored_files++;
    if (strstr(path, ".tmp-") != NULL)
      temp_files++;
  }
  return 0;
}

static long count_stored(void) {
  stored_files = temp_files = 0;
  assert_int_equal(nftw(tryon_test_server.storage, count_file, 16, FTW_PHYS), 0);
  assert_int_equal(temp_files, 0);
  return stored_files;
}

static long expected_status(const char *code) {
  static const struct {
    const char *code;
    long status;
  } map[] = {{"ok", 201},
             {"file_too_large", 413},
             {"unsupported_type", 415},
             {"type_mismatch", 415},
             {"empty_file", 400},
             {"corrupt_image", 422},
             {"image_too_large_dimensions", 422}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(map[i].code, code) == 0)
      return map[i].status;
  }
  fail_msg("unknown code %s in the manifest", code);
  return 0;
}

static char *sign_in_token(int64_t tg_id) {
  tryon_reply r = tryon_test_sign_in(tg_id, "Uploader");
  assert_int_equal(r.status, 200);
  char *t = tryon_reply_token(&r);
  tryon_reply_free(&r);
  return t;
}

static const char *json_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(v))
    fail_msg("no string %s in the reply", k);
  return v->valuestring;
}

/* ---------------------------------------------------------------------------- tests */

static void test_uploads__corpus_verdicts_over_http(void **state) {
  (void)state;
  long accepted = 0;
  for (size_t i = 0; i < nentries; i++) {
    const entry *e = &entries[i];
    size_t len = 0;
    char *data = read_file(e->name, &len);
    char *token = sign_in_token(610000 + (int64_t)i); /* one user each: the quota is small */
    tryon_reply r = tryon_test_upload(token, data, len, e->name,
                                      e->declared[0] ? e->declared : "application/octet-stream");
    long want = expected_status(e->code);
    if (r.status != want)
      fail_msg("%s: status %ld, want %ld: %s", e->name, r.status, want, r.body.data);
    if (strcmp(e->code, "ok") != 0) {
      if (strcmp(tryon_reply_error_code(&r), e->code) != 0)
        fail_msg("%s: code %s, want %s", e->name, tryon_reply_error_code(&r), e->code);
    } else {
      accepted++;
      assert_string_equal(json_str(r.json, "mime"), e->out_mime);
      /* The stored image: the normalised bytes only, no metadata, no payload. */
      tryon_reply img = tryon_test_get_url(json_str(r.json, "url"), NULL);
      assert_int_equal(img.status, 200);
      char ct[64];
      snprintf(ct, sizeof ct, "Content-Type: %s", e->out_mime);
      assert_true(tryon_reply_has_header(&img, ct));
      assert_int_equal((double)img.body.len,
                       cJSON_GetObjectItemCaseSensitive(r.json, "bytes")->valuedouble);
      assert_false(contains(&img.body, "Exif\0\0", 6));
      assert_false(contains(&img.body, "<?php", 5));
      assert_false(contains(&img.body, "PK\x03\x04", 4));
      assert_false(contains(&img.body, "http://ns.adobe.com/xap", 23));
      tryon_reply_free(&img);
      tryon_reply th = tryon_test_get_url(json_str(r.json, "thumb_url"), NULL);
      assert_int_equal(th.status, 200);
      assert_true(th.body.len > 0);
      tryon_reply_free(&th);
    }
    tryon_reply_free(&r);
    free(token);
    free(data);
  }
  /* Nothing half-written: exactly the accepted uploads have rows and files. */
  char *rows = tryon_testserver_db_value("SELECT count(*) FROM uploads");
  assert_int_equal(strtol(rows, NULL, 10), accepted);
  free(rows);
  assert_int_equal(count_stored(), 2 * accepted);
}

static void test_uploads__links_are_cached_and_refuse_tampering(void **state) {
  (void)state;
  size_t len = 0;
  char *data = a_good_photo(&len);
  char *token = sign_in_token(620001);
  tryon_reply r = tryon_test_upload(token, data, len, "me.jpg", "image/jpeg");
  assert_int_equal(r.status, 201);
  const char *url = json_str(r.json, "url");

  tryon_reply ok = tryon_test_get_url(url, NULL);
  assert_int_equal(ok.status, 200);
  assert_true(tryon_reply_has_header(&ok, "Cache-Control: private, max-age="));
  assert_true(tryon_reply_has_header(&ok, "ETag: \""));
  assert_false(tryon_reply_has_header(&ok, "Content-Disposition"));
  tryon_reply_free(&ok);
  char inm[96];
  snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", json_str(r.json, "id"));
  const char *h[] = {inm, NULL};
  tryon_reply nm = tryon_test_get_url(url, h);
  assert_int_equal(nm.status, 304);
  tryon_reply_free(&nm);

  /* &download=1 (Telegram's downloadFile): the same signed link, saved as a file, and
   * readable by Telegram's web client. */
  char dl[1024], disp[128];
  snprintf(dl, sizeof dl, "%s&download=1", url);
  tryon_reply d = tryon_test_get_url(dl, NULL);
  assert_int_equal(d.status, 200);
  snprintf(disp, sizeof disp, "Content-Disposition: attachment; filename=\"tryon-%s.jpg\"",
           json_str(r.json, "id"));
  assert_true(tryon_reply_has_header(&d, disp));
  assert_true(tryon_reply_has_header(&d, "Access-Control-Allow-Origin: https://web.telegram.org"));
  tryon_reply_free(&d);

  /* One changed character of the signature; no signature; the thumb's link for the
   * full image. */
  char *bad = strdup(url);
  char *sig = strstr(bad, "sig=") + 4;
  sig[0] = sig[0] == '0' ? '1' : '0';
  tryon_expect_error(tryon_test_get_url(bad, NULL), 403, "forbidden");
  *strstr(bad, "&sig=") = '\0';
  tryon_expect_error(tryon_test_get_url(bad, NULL), 403, "forbidden");
  free(bad);
  char *swapped = strdup(json_str(r.json, "thumb_url"));
  char *t = strstr(swapped, "/thumb?");
  memmove(t, t + 6, strlen(t + 6) + 1);
  tryon_expect_error(tryon_test_get_url(swapped, NULL), 403, "forbidden");
  free(swapped);
  tryon_reply_free(&r);
  free(token);
  free(data);
}

static void test_uploads__list_pages_and_delete_removes(void **state) {
  (void)state;
  size_t len = 0;
  char *data = a_good_photo(&len);
  char *token = sign_in_token(620002);
  char *other = sign_in_token(620003);
  char auth[1024], auth_other[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  snprintf(auth_other, sizeof auth_other, "Authorization: Bearer %s", other);
  const char *h[] = {auth, NULL};
  const char *ho[] = {auth_other, NULL};
  char ids[3][40];
  for (int i = 0; i < 3; i++) {
    tryon_reply r = tryon_test_upload(token, data, len, "p.jpg", "image/jpeg");
    assert_int_equal(r.status, 201);
    snprintf(ids[i], sizeof ids[i], "%s", json_str(r.json, "id"));
    tryon_reply_free(&r);
  }
  tryon_reply p1 = tryon_test_http("GET", "/api/uploads?limit=2", h, NULL, 0);
  assert_int_equal(p1.status, 200);
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(p1.json, "items");
  assert_int_equal(cJSON_GetArraySize(items), 2);
  assert_string_equal(json_str(cJSON_GetArrayItem(items, 0), "id"), ids[2]); /* newest first */
  char path[256];
  snprintf(path, sizeof path, "/api/uploads?limit=2&cursor=%s", json_str(p1.json, "next_cursor"));
  tryon_reply p2 = tryon_test_http("GET", path, h, NULL, 0);
  assert_int_equal(p2.status, 200);
  items = cJSON_GetObjectItemCaseSensitive(p2.json, "items");
  assert_int_equal(cJSON_GetArraySize(items), 1);
  assert_string_equal(json_str(cJSON_GetArrayItem(items, 0), "id"), ids[0]);
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p2.json, "next_cursor")));
  tryon_reply_free(&p1);
  tryon_reply_free(&p2);
  tryon_expect_error(tryon_test_http("GET", "/api/uploads?cursor=garbage", h, NULL, 0), 422,
                     "invalid_request");
  tryon_expect_error(tryon_test_http("GET", "/api/uploads?limit=1000", h, NULL, 0), 422,
                     "invalid_request");
  /* A cursor the database cannot hold gets our words, not PostgreSQL's. */
  snprintf(path, sizeof path, "/api/uploads?cursor=99999999999999999999.%s", ids[0]);
  tryon_reply big = tryon_test_http("GET", path, h, NULL, 0);
  assert_int_equal(big.status, 422);
  assert_null(strstr(big.body.data, "bigint"));
  tryon_reply_free(&big);

  /* Someone else cannot see or delete them; the owner can. */
  tryon_reply lo = tryon_test_http("GET", "/api/uploads", ho, NULL, 0);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(lo.json, "items")), 0);
  tryon_reply_free(&lo);
  snprintf(path, sizeof path, "/api/uploads/%s", ids[1]);
  tryon_expect_error(tryon_test_http("DELETE", path, ho, NULL, 0), 404, "not_found");
  tryon_reply d = tryon_test_http("DELETE", path, h, NULL, 0);
  assert_int_equal(d.status, 204);
  tryon_reply_free(&d);
  tryon_expect_error(tryon_test_http("DELETE", path, h, NULL, 0), 404, "not_found");
  tryon_expect_error(tryon_test_http("DELETE", "/api/uploads/not-a-uuid", h, NULL, 0), 404,
                     "not_found");
  char *left =
      tryon_testserver_db_value("SELECT count(*) FROM uploads u JOIN users s ON s.id = u.user_id"
                                " WHERE s.telegram_id = 620002");
  assert_string_equal(left, "2");
  free(left);
  free(token);
  free(other);
  free(data);
}

static void test_uploads__deleted_upload_link_is_gone(void **state) {
  (void)state;
  size_t len = 0;
  char *data = a_good_photo(&len);
  char *token = sign_in_token(620004);
  char auth[1024], path[96];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};
  tryon_reply r = tryon_test_upload(token, data, len, "p.jpg", "image/jpeg");
  assert_int_equal(r.status, 201);
  /* Deleted by its upper-case spelling: the files must go all the same. */
  snprintf(path, sizeof path, "/api/uploads/%s", json_str(r.json, "id"));
  for (char *p = path + strlen("/api/uploads/"); *p; p++) {
    if (*p >= 'a' && *p <= 'f')
      *p = (char)(*p - 'a' + 'A');
  }
  tryon_reply d = tryon_test_http("DELETE", path, h, NULL, 0);
  assert_int_equal(d.status, 204);
  tryon_reply_free(&d);
  /* The link is still correctly signed, but the bytes are gone. */
  tryon_expect_error(tryon_test_get_url(json_str(r.json, "url"), NULL), 404, "not_found");
  tryon_expect_error(tryon_test_get_url(json_str(r.json, "thumb_url"), NULL), 404, "not_found");
  tryon_reply_free(&r);
  free(token);
  free(data);
}

static void test_uploads__quota_is_enforced(void **state) {
  (void)state;
  size_t len = 0;
  char *data = a_good_photo(&len);
  char *token = sign_in_token(620005);
  char auth[1024], path[96];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};
  char first[40] = "";
  for (int i = 0; i < 4; i++) { /* TRYON_UPLOAD_QUOTA=4 for this server */
    tryon_reply r = tryon_test_upload(token, data, len, "p.jpg", "image/jpeg");
    assert_int_equal(r.status, 201);
    if (i == 0)
      snprintf(first, sizeof first, "%s", json_str(r.json, "id"));
    tryon_reply_free(&r);
  }
  long before = count_stored();
  tryon_expect_error(tryon_test_upload(token, data, len, "p.jpg", "image/jpeg"), 409,
                     "upload_quota_exceeded");
  assert_int_equal(count_stored(), before); /* the refused upload left no file behind */
  snprintf(path, sizeof path, "/api/uploads/%s", first);
  tryon_reply d = tryon_test_http("DELETE", path, h, NULL, 0);
  assert_int_equal(d.status, 204);
  tryon_reply_free(&d);
  tryon_reply again = tryon_test_upload(token, data, len, "p.jpg", "image/jpeg");
  assert_int_equal(again.status, 201);
  tryon_reply_free(&again);
  free(token);
  free(data);
}

static void test_uploads__bad_requests(void **state) {
  (void)state;
  size_t len = 0;
  char *data = a_good_photo(&len);
  char *token = sign_in_token(620006);
  char auth[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);

  tryon_expect_error(tryon_test_upload("not-a-token", data, len, "p.jpg", "image/jpeg"), 401,
                     "token_malformed");
  /* No token: refused before the body is read (a large body is for signed-in users). */
  const char *anon[] = {"Content-Type: multipart/form-data; boundary=XyZ", "Expect: 100-continue",
                        NULL};
  size_t five = 5u * 1024u * 1024u;
  char *body = calloc(1, five);
  tryon_expect_error(tryon_test_http("POST", "/api/uploads", anon, body, five), 401,
                     "token_missing");
  free(body);
  const char *json[] = {auth, "Content-Type: application/json", NULL};
  tryon_expect_error(tryon_test_http("POST", "/api/uploads", json, "{}", 2), 415,
                     "unsupported_media_type");
  const char *mp[] = {auth, "Content-Type: multipart/form-data; boundary=XyZ", NULL};
  const char *other = "--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n"
                      "hello\r\n--XyZ--\r\n";
  tryon_expect_error(tryon_test_http("POST", "/api/uploads", mp, other, strlen(other)), 400,
                     "missing_file");
  /* Over the body ceiling as a whole: refused before the rest is read. */
  size_t big = 6u * 1024u * 1024u;
  char *huge = calloc(1, big);
  tryon_expect_error(tryon_test_upload(token, huge, big, "big.jpg", "image/jpeg"), 413,
                     "file_too_large");
  free(huge);
  char *n =
      tryon_testserver_db_value("SELECT count(*) FROM uploads u JOIN users s ON s.id = u.user_id"
                                " WHERE s.telegram_id = 620006");
  assert_string_equal(n, "0");
  free(n);
  free(token);
  free(data);
}

static const char *const extra_env[] = {"TRYON_UPLOAD_QUOTA=4", NULL};

int main(void) {
  tryon_test_log_init();
  load_manifest();
  tryon_testserver_extra_env = extra_env;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uploads__corpus_verdicts_over_http),
      cmocka_unit_test(test_uploads__links_are_cached_and_refuse_tampering),
      cmocka_unit_test(test_uploads__list_pages_and_delete_removes),
      cmocka_unit_test(test_uploads__deleted_upload_link_is_gone),
      cmocka_unit_test(test_uploads__quota_is_enforced),
      cmocka_unit_test(test_uploads__bad_requests),
  };
  return cmocka_run_group_tests_name("uploads", tests, tryon_testserver_start,
                                     tryon_testserver_stop);
}
