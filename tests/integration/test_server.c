/*
 * tryon-server end to end: the real binary on a loopback port, a real PostgreSQL
 * (a migrated scratch database) and libcurl as the client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <tryon/auth.h>

#include "testserver.h"

/* ---------------------------------------------------------------------------- tests */

#define METRICS_TOKEN "metrics-token-for-the-test-0123456789"

static void test_server__sign_in_creates_the_user_once(void **state) {
  (void)state;
  tryon_reply a = tryon_test_sign_in(555000111, "Вера");
  assert_int_equal(a.status, 200);
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(a.json, "user");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(user, "first_name")->valuestring, "Вера");
  assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a.json, "expires_at")));
  double id = cJSON_GetObjectItemCaseSensitive(user, "id")->valuedouble;

  /* Again, with a new name: the same user, refreshed. */
  tryon_reply b = tryon_test_sign_in(555000111, "Vera");
  assert_int_equal(b.status, 200);
  user = cJSON_GetObjectItemCaseSensitive(b.json, "user");
  assert_true(cJSON_GetObjectItemCaseSensitive(user, "id")->valuedouble == id);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(user, "first_name")->valuestring, "Vera");
  char *n = tryon_testserver_db_value("SELECT count(*) FROM users WHERE telegram_id = 555000111");
  assert_string_equal(n, "1");
  free(n);
  n = tryon_testserver_db_value("SELECT first_name FROM users WHERE telegram_id = 555000111");
  assert_string_equal(n, "Vera");
  free(n);

  /* The same initData through the `Authorization: tma` header works too. */
  char init[2048], auth[2200];
  tryon_test_init_data(555000111, "Vera", 1, init, sizeof init);
  snprintf(auth, sizeof auth, "Authorization: tma %s", init);
  const char *h[] = {auth, NULL};
  tryon_reply c = tryon_test_http("POST", "/api/auth/telegram", h, NULL, 0);
  assert_int_equal(c.status, 200);
  tryon_reply_free(&a);
  tryon_reply_free(&b);
  tryon_reply_free(&c);
}

static void test_server__me_needs_a_valid_token(void **state) {
  (void)state;
  tryon_reply a = tryon_test_sign_in(555000222, "Ivan");
  assert_int_equal(a.status, 200);
  char *token = tryon_reply_token(&a);

  tryon_reply me = tryon_test_get_me(token);
  assert_int_equal(me.status, 200);
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(me.json, "user");
  assert_int_equal((int64_t)cJSON_GetObjectItemCaseSensitive(user, "telegram_id")->valuedouble,
                   555000222);
  tryon_reply_free(&me);

  tryon_expect_error(tryon_test_get_me(NULL), 401, "token_missing");

  /* One changed character in the signature. */
  char *tampered = strdup(token);
  size_t len = strlen(tampered);
  tampered[len - 2] = tampered[len - 2] == 'A' ? 'B' : 'A';
  tryon_expect_error(tryon_test_get_me(tampered), 401, "token_bad_signature");

  /* alg:none with the same claims. */
  const char *dot = strchr(token, '.');
  char none[1024];
  snprintf(none, sizeof none, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0%.*s.",
           (int)(strrchr(token, '.') - dot), dot);
  tryon_expect_error(tryon_test_get_me(none), 401, "token_bad_alg");

  /* A token that expired an hour ago (issued by the same secret, two hours back). */
  tryon_fixed_clock past;
  tryon_fixed_clock_init(&past, ((int64_t)time(NULL) - 7200) * 1000);
  char old[TRYON_JWT_MAX];
  tryon_err err;
  char *sub = tryon_testserver_db_value("SELECT id FROM users WHERE telegram_id = 555000222");
  assert_int_equal(tryon_jwt_issue(TRYON_TEST_JWT_SECRET, strlen(TRYON_TEST_JWT_SECRET),
                                   strtoll(sub, NULL, 10), 3600, &past.clock, old, sizeof old, NULL,
                                   &err),
                   TRYON_OK);
  tryon_expect_error(tryon_test_get_me(old), 401, "token_expired");
  free(sub);
  free(tampered);
  free(token);
  tryon_reply_free(&a);
}

static void test_server__bad_sign_in_data_is_refused(void **state) {
  (void)state;
  char init[2048], body[2400];

  /* Forged: signed, then one byte of the user changed. */
  tryon_test_init_data(555000333, "Olga", 5, init, sizeof init);
  char *p = strstr(init, "Olga");
  p[0] = 'X';
  snprintf(body, sizeof body, "{\"init_data\":\"%s\"}", init);
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", body), 401, "initdata_bad_hash");

  /* Signed correctly but two days old. */
  tryon_test_init_data(555000333, "Olga", 2 * 86400, init, sizeof init);
  snprintf(body, sizeof body, "{\"init_data\":\"%s\"}", init);
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", body), 401, "initdata_expired");

  /* No hash at all. */
  tryon_expect_error(
      tryon_test_post_json("/api/auth/telegram", "{\"init_data\":\"auth_date=1&user=%7B%7D\"}"),
      401, "initdata_missing_hash");
  char *n = tryon_testserver_db_value("SELECT count(*) FROM users WHERE telegram_id = 555000333");
  assert_string_equal(n, "0"); /* nothing was written */
  free(n);
}

static void test_server__malformed_requests_get_their_status(void **state) {
  (void)state;
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", "{\"init_data\": "), 400,
                     "malformed_json");
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", "[1,2]"), 422, "invalid_request");
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", "{\"init_data\": 42}"), 422,
                     "invalid_request");
  tryon_expect_error(tryon_test_post_json("/api/auth/telegram", "{}"), 422, "invalid_request");
  const char *text[] = {"Content-Type: text/plain", NULL};
  tryon_expect_error(tryon_test_http("POST", "/api/auth/telegram", text, "init_data=x", 11), 415,
                     "unsupported_media_type");
  tryon_expect_error(tryon_test_http("POST", "/api/auth/telegram", NULL, NULL, 0), 400,
                     "missing_init_data");

  /* 20 KiB against a 16 KiB ceiling. */
  size_t big = 20 * 1024;
  char *body = malloc(big + 1);
  memset(body, 'a', big);
  memcpy(body, "{\"init_data\":\"", 14);
  memcpy(body + big - 2, "\"}", 2);
  body[big] = '\0';
  const char *json[] = {"Content-Type: application/json", NULL};
  tryon_expect_error(tryon_test_http("POST", "/api/auth/telegram", json, body, big), 413,
                     "body_too_large");
  free(body);

  tryon_expect_error(tryon_test_http("GET", "/api/nothing-here", NULL, NULL, 0), 404, "not_found");
  tryon_reply r = tryon_test_http("PUT", "/api/me", NULL, NULL, 0);
  assert_int_equal(r.status, 405);
  assert_string_equal(tryon_reply_error_code(&r), "method_not_allowed");
  assert_true(tryon_reply_has_header(&r, "Allow: GET"));
  tryon_reply_free(&r);
}

static void test_server__blocked_user_is_refused(void **state) {
  (void)state;
  tryon_reply a = tryon_test_sign_in(555000444, "Petr");
  assert_int_equal(a.status, 200);
  char *token = tryon_reply_token(&a);
  free(tryon_testserver_db_value(
      "UPDATE users SET blocked = true, blocked_at = now(),"
      " blocked_reason = 'test' WHERE telegram_id = 555000444 RETURNING id"));
  tryon_reply b = tryon_test_sign_in(555000444, "Petr");
  tryon_expect_error(b, 403, "user_blocked");
  tryon_expect_error(tryon_test_get_me(token), 403, "user_blocked");
  free(token);
  tryon_reply_free(&a);
}

static void test_server__wallet_shows_the_free_month(void **state) {
  (void)state;
  tryon_reply a = tryon_test_sign_in(555000555, "Nina");
  assert_int_equal(a.status, 200);
  char *token = tryon_reply_token(&a);
  char auth[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};

  tryon_reply me = tryon_test_get_me(token);
  assert_int_equal(me.status, 200);
  const cJSON *bal = cJSON_GetObjectItemCaseSensitive(me.json, "balance");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(bal, "total")->valuedouble, 10);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(bal, "plan")->valuestring, "free");
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bal, "watermark")));
  tryon_reply_free(&me);

  tryon_reply b = tryon_test_http("GET", "/api/billing", h, NULL, 0);
  assert_int_equal(b.status, 200);
  bal = cJSON_GetObjectItemCaseSensitive(b.json, "balance");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(bal, "period")->valuedouble, 10);
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(bal, "pack")->valuedouble, 0);
  const cJSON *products = cJSON_GetObjectItemCaseSensitive(b.json, "products");
  assert_int_equal(cJSON_GetArraySize(products), 5);
  const cJSON *start = cJSON_GetArrayItem(products, 1);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(start, "code")->valuestring, "start");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(start, "price")->valuestring, "299.00");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(start, "price_kopecks")->valuedouble, 29900);
  const cJSON *costs = cJSON_GetObjectItemCaseSensitive(b.json, "costs");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(costs, "tryon")->valuedouble, 2);
  const cJSON *hist = cJSON_GetObjectItemCaseSensitive(b.json, "history");
  assert_int_equal(cJSON_GetArraySize(hist), 1);
  assert_string_equal(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(hist, 0), "reason")->valuestring,
      "free_grant");
  tryon_reply_free(&b);
  /* Reading again grants nothing more. */
  char *n = tryon_testserver_db_value(
      "SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id"
      " WHERE u.telegram_id = 555000555");
  assert_string_equal(n, "1");
  free(n);
  tryon_expect_error(tryon_test_http("GET", "/api/billing", NULL, NULL, 0), 401, "token_missing");
  free(token);
  tryon_reply_free(&a);
}

static void test_server__operations_and_headers(void **state) {
  (void)state;
  tryon_reply h = tryon_test_http("GET", "/healthz", NULL, NULL, 0);
  assert_int_equal(h.status, 200);
  assert_true(tryon_reply_has_header(&h, "X-Content-Type-Options: nosniff"));
  assert_true(tryon_reply_has_header(&h, "Content-Type: application/json"));
  assert_true(tryon_reply_has_header(&h, "Cache-Control: no-store"));
  tryon_reply_free(&h);
  tryon_reply r = tryon_test_http("GET", "/readyz", NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  tryon_reply_free(&r);
  /* /metrics on the API port needs TRYON_METRICS_TOKEN (issue 12, item 5). */
  tryon_expect_error(tryon_test_http("GET", "/metrics", NULL, NULL, 0), 401,
                     "metrics_token_invalid");
  const char *wrong[] = {"Authorization: Bearer metrics-token-for-the-test-0000", NULL};
  tryon_expect_error(tryon_test_http("GET", "/metrics", wrong, NULL, 0), 401,
                     "metrics_token_invalid");
  const char *right[] = {"Authorization: Bearer " METRICS_TOKEN, NULL};
  tryon_reply m = tryon_test_http("GET", "/metrics", right, NULL, 0);
  assert_int_equal(m.status, 200);
  assert_non_null(strstr(m.body.data, "route=\"/api/auth/telegram\",status=\"200\""));
  assert_non_null(strstr(m.body.data, "tryon_db_pool_connections{state=\"max\"} 4"));
  tryon_reply_free(&m);
}

/* The real binary with TRYON_WEBAPP_DIR on a small fake dist (written by main): the
 * app's pages, its assets and their encodings, while the API keeps its own answers. */
static const char FAKE_INDEX[] = "<!doctype html><title>fake app</title>";

static void test_server__serves_the_web_app(void **state) {
  (void)state;
  tryon_reply r = tryon_test_http("GET", "/history", NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body.data, FAKE_INDEX);
  assert_true(tryon_reply_has_header(&r, "Content-Type: text/html"));
  assert_true(tryon_reply_has_header(&r, "Cache-Control: no-cache"));
  assert_true(tryon_reply_has_header(
      &r, "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
          "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; "
          "base-uri 'none'; form-action 'self'; frame-ancestors "
          "https://web.telegram.org https://*.telegram.org"));
  assert_false(tryon_reply_has_header(&r, "X-Frame-Options"));
  tryon_reply_free(&r);

  const char *br[] = {"Accept-Encoding: gzip, br", NULL};
  r = tryon_test_http("GET", "/assets/app-1.js", br, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body.data, "BR");
  assert_true(tryon_reply_has_header(&r, "Content-Encoding: br"));
  assert_true(tryon_reply_has_header(&r, "Vary: Accept-Encoding"));
  assert_true(tryon_reply_has_header(&r, "Cache-Control: public, max-age=31536000, immutable"));
  assert_true(tryon_reply_has_header(&r, "Content-Type: text/javascript"));
  assert_true(tryon_reply_has_header(&r, "X-Frame-Options: DENY"));
  char inm[80] = "If-None-Match: ";
  const char *etag = strstr(r.headers.data, "ETag: ");
  assert_non_null(etag);
  snprintf(inm + 15, sizeof inm - 15, "%.*s", (int)strcspn(etag + 6, "\r\n"), etag + 6);
  tryon_reply_free(&r);
  const char *again[] = {"Accept-Encoding: br", inm, NULL};
  r = tryon_test_http("GET", "/assets/app-1.js", again, NULL, 0);
  assert_int_equal(r.status, 304);
  tryon_reply_free(&r);

  r = tryon_test_http("GET", "/assets/app-1.js", NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body.data, "console.log(1)");
  assert_false(tryon_reply_has_header(&r, "Content-Encoding"));
  tryon_reply_free(&r);
  tryon_expect_error(tryon_test_http("GET", "/assets/stale-0.js", NULL, NULL, 0), 404, "not_found");
  tryon_expect_error(tryon_test_http("GET", "/api/nope", NULL, NULL, 0), 404, "not_found");
  r = tryon_test_http("GET", "/healthz", NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_true(tryon_reply_has_header(&r, "X-Frame-Options: DENY"));
  tryon_reply_free(&r);
}

/* A small dist in a temporary folder (removed by the caller). */
static void write_fake_dist(const char *dir) {
  static const struct {
    const char *name;
    const char *data;
  } files[] = {{"index.html", FAKE_INDEX},
               {"assets/app-1.js", "console.log(1)"},
               {"assets/app-1.js.br", "BR"},
               {"assets/app-1.js.gz", "GZ"}};
  char path[256];
  snprintf(path, sizeof path, "%s/assets", dir);
  if (mkdir(path, 0700) != 0)
    abort();
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fputs(files[i].data, fp) == EOF || fclose(fp) != 0)
      abort();
  }
}

int main(void) {
  static char dist[64] = "/tmp/tryon-dist-XXXXXX", webapp[96];
  if (mkdtemp(dist) == NULL)
    return 1;
  write_fake_dist(dist);
  snprintf(webapp, sizeof webapp, "TRYON_WEBAPP_DIR=%s", dist);
  const char *const env[] = {"TRYON_METRICS_TOKEN=" METRICS_TOKEN, webapp, NULL};
  tryon_testserver_extra_env = env;
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server__sign_in_creates_the_user_once),
      cmocka_unit_test(test_server__me_needs_a_valid_token),
      cmocka_unit_test(test_server__bad_sign_in_data_is_refused),
      cmocka_unit_test(test_server__malformed_requests_get_their_status),
      cmocka_unit_test(test_server__blocked_user_is_refused),
      cmocka_unit_test(test_server__wallet_shows_the_free_month),
      cmocka_unit_test(test_server__operations_and_headers),
      cmocka_unit_test(test_server__serves_the_web_app),
  };
  int rc =
      cmocka_run_group_tests_name("server", tests, tryon_testserver_start, tryon_testserver_stop);
  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dist);
  if (system(cmd) != 0)
    rc = 1;
  return rc;
}
