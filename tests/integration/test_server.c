/*
 * tryon-server end to end: the real binary on a loopback port, a real PostgreSQL
 * (a migrated scratch database) and libcurl as the client.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tryon/auth.h>

#include "testsupport.h"

#define BOT_TOKEN "7000000001:AAtest-bot-token-for-integration"
#define JWT_SECRET "integration-secret-0123456789abcdef"

typedef struct server {
  tryon_testdb t;
  pid_t pid;
  int port;
  char base[64];
} server;

static server S;

/* ------------------------------------------------------------------------- HTTP client */

typedef struct reply {
  long status;
  tryon_buf body;
  tryon_buf headers;
  cJSON *json;
} reply;

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  tryon_buf *b = ud;
  return tryon_buf_append(b, p, size * n) == TRYON_OK ? size * n : 0;
}

static void reply_free(reply *r) {
  tryon_buf_release(&r->body);
  tryon_buf_release(&r->headers);
  cJSON_Delete(r->json);
  memset(r, 0, sizeof *r);
}

/* One request. `headers` is a NULL-terminated list of "Name: value". */
static reply http(const char *method, const char *path, const char *const *headers,
                  const char *body, size_t body_len) {
  reply r;
  char url[256];
  struct curl_slist *hl = NULL;
  CURL *c = curl_easy_init();
  memset(&r, 0, sizeof r);
  tryon_buf_init(&r.body, 1 << 20);
  tryon_buf_init(&r.headers, 1 << 16);
  snprintf(url, sizeof url, "%s%s", S.base, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
  for (size_t i = 0; headers && headers[i]; i++)
    hl = curl_slist_append(hl, headers[i]);
  hl = curl_slist_append(hl, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  if (body != NULL) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK)
    fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.json = cJSON_ParseWithLength(r.body.data, r.body.len);
  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  return r;
}

static reply post_json(const char *path, const char *body) {
  const char *h[] = {"Content-Type: application/json", NULL};
  return http("POST", path, h, body, strlen(body));
}

static const char *error_code(const reply *r) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
  return cJSON_IsString(c) ? c->valuestring : "(none)";
}

static void expect_error(reply r, long status, const char *code) {
  if (r.status != status || strcmp(error_code(&r), code) != 0)
    fail_msg("want %ld %s, got %ld %s", status, code, r.status, r.body.data);
  reply_free(&r);
}

/* Whether a response header line starts with `line` (names compare case-insensitively). */
static bool has_header(const reply *r, const char *line) {
  size_t n = strlen(line);
  for (const char *p = r->headers.data; p != NULL && *p; p = strchr(p, '\n')) {
    if (*p == '\n')
      p++;
    if (strncasecmp(p, line, n) == 0)
      return true;
  }
  return false;
}

/* ---------------------------------------------------------------------- test helpers */

/* A signed initData for Telegram user `tg_id` named `first`, dated `age_s` ago. */
static void make_init_data(int64_t tg_id, const char *first, int64_t age_s, char *out, size_t cap) {
  char fields[1024];
  char *name = curl_easy_escape(NULL, first, 0);
  snprintf(fields, sizeof fields,
           "query_id=AAE1&user=%%7B%%22id%%22%%3A%lld%%2C%%22first_name%%22%%3A%%22%s%%22%%2C"
           "%%22language_code%%22%%3A%%22ru%%22%%7D&auth_date=%lld",
           (long long)tg_id, name, (long long)(time(NULL) - age_s));
  curl_free(name);
  tryon_err err;
  if (tryon_initdata_sign(fields, BOT_TOKEN, out, cap, &err) != TRYON_OK)
    fail_msg("sign: %s", err.message);
}

static reply sign_in(int64_t tg_id, const char *first) {
  char init[2048], body[2300];
  make_init_data(tg_id, first, 5, init, sizeof init);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "init_data", init);
  char *text = cJSON_PrintUnformatted(doc);
  snprintf(body, sizeof body, "%s", text);
  cJSON_free(text);
  cJSON_Delete(doc);
  return post_json("/api/auth/telegram", body);
}

static char *token_of(const reply *r) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->json, "token");
  assert_true(cJSON_IsString(t));
  return strdup(t->valuestring);
}

static reply get_me(const char *token) {
  char auth[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};
  return http("GET", "/api/me", token ? h : NULL, NULL, 0);
}

static char *db_value(const char *sql) {
  tryon_db *db = tryon_testdb_pool(&S.t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *v = tryon_test_query_value(c, sql, 0, NULL);
  tryon_db_release(c);
  tryon_db_free(db);
  return v;
}

/* ------------------------------------------------------------------- server lifecycle */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static int start_server(void **state) {
  (void)state;
  const char *bin = getenv("TRYON_SERVER_BIN");
  if (bin == NULL)
    fail_msg("TRYON_SERVER_BIN is not set: run through ctest");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  tryon_testdb_create_migrated(&S.t);
  S.port = free_port();
  snprintf(S.base, sizeof S.base, "http://127.0.0.1:%d", S.port);

  char db[1024], port[32];
  snprintf(db, sizeof db, "TRYON_DATABASE_URL=%s", S.t.conninfo);
  snprintf(port, sizeof port, "TRYON_HTTP_PORT=%d", S.port);
  char *env[] = {db,
                 port,
                 "TRYON_BOT_TOKEN=" BOT_TOKEN,
                 "TRYON_JWT_SECRET=" JWT_SECRET,
                 "TRYON_ENV_FILE=/dev/null",
                 "TRYON_LOG_LEVEL=warn",
                 "TRYON_PUBLIC_URL=http://127.0.0.1",
                 "TRYON_DB_POOL_SIZE=4",
                 "TRYON_RATE_LIMIT_IP_RPS=10000",
                 "TRYON_RATE_LIMIT_IP_BURST=10000",
                 "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1",
                 NULL};
  char *argv[] = {(char *)bin, NULL};
  if (posix_spawn(&S.pid, bin, NULL, NULL, argv, env) != 0)
    fail_msg("cannot start %s", bin);
  /* Ready when /healthz answers; give a sanitizer build time to start. */
  for (int i = 0; i < 200; i++) {
    CURL *c = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "%s/healthz", S.base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK)
      return 0;
    usleep(50 * 1000);
  }
  fail_msg("the server did not come up on port %d", S.port);
  return -1;
}

static int stop_server(void **state) {
  (void)state;
  int status = 0;
  if (S.pid > 0) {
    kill(S.pid, SIGTERM);
    waitpid(S.pid, &status, 0);
  }
  tryon_testdb_drop(&S.t);
  curl_global_cleanup();
  /* A clean, graceful stop: exit status 0, and no sanitizer report. */
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the server did not stop cleanly (status %d)", status);
  return 0;
}

/* ---------------------------------------------------------------------------- tests */

static void test_server__sign_in_creates_the_user_once(void **state) {
  (void)state;
  reply a = sign_in(555000111, "Вера");
  assert_int_equal(a.status, 200);
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(a.json, "user");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(user, "first_name")->valuestring, "Вера");
  assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a.json, "expires_at")));
  double id = cJSON_GetObjectItemCaseSensitive(user, "id")->valuedouble;

  /* Again, with a new name: the same user, refreshed. */
  reply b = sign_in(555000111, "Vera");
  assert_int_equal(b.status, 200);
  user = cJSON_GetObjectItemCaseSensitive(b.json, "user");
  assert_true(cJSON_GetObjectItemCaseSensitive(user, "id")->valuedouble == id);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(user, "first_name")->valuestring, "Vera");
  char *n = db_value("SELECT count(*) FROM users WHERE telegram_id = 555000111");
  assert_string_equal(n, "1");
  free(n);
  n = db_value("SELECT first_name FROM users WHERE telegram_id = 555000111");
  assert_string_equal(n, "Vera");
  free(n);

  /* The same initData through the `Authorization: tma` header works too. */
  char init[2048], auth[2200];
  make_init_data(555000111, "Vera", 1, init, sizeof init);
  snprintf(auth, sizeof auth, "Authorization: tma %s", init);
  const char *h[] = {auth, NULL};
  reply c = http("POST", "/api/auth/telegram", h, NULL, 0);
  assert_int_equal(c.status, 200);
  reply_free(&a);
  reply_free(&b);
  reply_free(&c);
}

static void test_server__me_needs_a_valid_token(void **state) {
  (void)state;
  reply a = sign_in(555000222, "Ivan");
  assert_int_equal(a.status, 200);
  char *token = token_of(&a);

  reply me = get_me(token);
  assert_int_equal(me.status, 200);
  const cJSON *user = cJSON_GetObjectItemCaseSensitive(me.json, "user");
  assert_int_equal((int64_t)cJSON_GetObjectItemCaseSensitive(user, "telegram_id")->valuedouble,
                   555000222);
  reply_free(&me);

  expect_error(get_me(NULL), 401, "token_missing");

  /* One changed character in the signature. */
  char *tampered = strdup(token);
  size_t len = strlen(tampered);
  tampered[len - 2] = tampered[len - 2] == 'A' ? 'B' : 'A';
  expect_error(get_me(tampered), 401, "token_bad_signature");

  /* alg:none with the same claims. */
  const char *dot = strchr(token, '.');
  char none[1024];
  snprintf(none, sizeof none, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0%.*s.",
           (int)(strrchr(token, '.') - dot), dot);
  expect_error(get_me(none), 401, "token_bad_alg");

  /* A token that expired an hour ago (issued by the same secret, two hours back). */
  tryon_fixed_clock past;
  tryon_fixed_clock_init(&past, ((int64_t)time(NULL) - 7200) * 1000);
  char old[TRYON_JWT_MAX];
  tryon_err err;
  char *sub = db_value("SELECT id FROM users WHERE telegram_id = 555000222");
  assert_int_equal(tryon_jwt_issue(JWT_SECRET, strlen(JWT_SECRET), strtoll(sub, NULL, 10), 3600,
                                   &past.clock, old, sizeof old, NULL, &err),
                   TRYON_OK);
  expect_error(get_me(old), 401, "token_expired");
  free(sub);
  free(tampered);
  free(token);
  reply_free(&a);
}

static void test_server__bad_sign_in_data_is_refused(void **state) {
  (void)state;
  char init[2048], body[2400];

  /* Forged: signed, then one byte of the user changed. */
  make_init_data(555000333, "Olga", 5, init, sizeof init);
  char *p = strstr(init, "Olga");
  p[0] = 'X';
  snprintf(body, sizeof body, "{\"init_data\":\"%s\"}", init);
  expect_error(post_json("/api/auth/telegram", body), 401, "initdata_bad_hash");

  /* Signed correctly but two days old. */
  make_init_data(555000333, "Olga", 2 * 86400, init, sizeof init);
  snprintf(body, sizeof body, "{\"init_data\":\"%s\"}", init);
  expect_error(post_json("/api/auth/telegram", body), 401, "initdata_expired");

  /* No hash at all. */
  expect_error(post_json("/api/auth/telegram", "{\"init_data\":\"auth_date=1&user=%7B%7D\"}"), 401,
               "initdata_missing_hash");
  char *n = db_value("SELECT count(*) FROM users WHERE telegram_id = 555000333");
  assert_string_equal(n, "0"); /* nothing was written */
  free(n);
}

static void test_server__malformed_requests_get_their_status(void **state) {
  (void)state;
  expect_error(post_json("/api/auth/telegram", "{\"init_data\": "), 400, "malformed_json");
  expect_error(post_json("/api/auth/telegram", "[1,2]"), 422, "invalid_request");
  expect_error(post_json("/api/auth/telegram", "{\"init_data\": 42}"), 422, "invalid_request");
  expect_error(post_json("/api/auth/telegram", "{}"), 422, "invalid_request");
  const char *text[] = {"Content-Type: text/plain", NULL};
  expect_error(http("POST", "/api/auth/telegram", text, "init_data=x", 11), 415,
               "unsupported_media_type");
  expect_error(http("POST", "/api/auth/telegram", NULL, NULL, 0), 400, "missing_init_data");

  /* 20 KiB against a 16 KiB ceiling. */
  size_t big = 20 * 1024;
  char *body = malloc(big + 1);
  memset(body, 'a', big);
  memcpy(body, "{\"init_data\":\"", 14);
  memcpy(body + big - 2, "\"}", 2);
  body[big] = '\0';
  const char *json[] = {"Content-Type: application/json", NULL};
  expect_error(http("POST", "/api/auth/telegram", json, body, big), 413, "body_too_large");
  free(body);

  expect_error(http("GET", "/api/nothing-here", NULL, NULL, 0), 404, "not_found");
  reply r = http("PUT", "/api/me", NULL, NULL, 0);
  assert_int_equal(r.status, 405);
  assert_string_equal(error_code(&r), "method_not_allowed");
  assert_true(has_header(&r, "Allow: GET"));
  reply_free(&r);
}

static void test_server__blocked_user_is_refused(void **state) {
  (void)state;
  reply a = sign_in(555000444, "Petr");
  assert_int_equal(a.status, 200);
  char *token = token_of(&a);
  free(db_value("UPDATE users SET blocked = true, blocked_at = now(),"
                " blocked_reason = 'test' WHERE telegram_id = 555000444 RETURNING id"));
  reply b = sign_in(555000444, "Petr");
  expect_error(b, 403, "user_blocked");
  expect_error(get_me(token), 403, "user_blocked");
  free(token);
  reply_free(&a);
}

static void test_server__operations_and_headers(void **state) {
  (void)state;
  reply h = http("GET", "/healthz", NULL, NULL, 0);
  assert_int_equal(h.status, 200);
  assert_true(has_header(&h, "X-Content-Type-Options: nosniff"));
  assert_true(has_header(&h, "Content-Type: application/json"));
  assert_true(has_header(&h, "Cache-Control: no-store"));
  reply_free(&h);
  reply r = http("GET", "/readyz", NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  reply_free(&r);
  reply m = http("GET", "/metrics", NULL, NULL, 0);
  assert_int_equal(m.status, 200);
  assert_non_null(strstr(m.body.data, "route=\"/api/auth/telegram\",status=\"200\""));
  assert_non_null(strstr(m.body.data, "tryon_db_pool_connections{state=\"max\"} 4"));
  reply_free(&m);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server__sign_in_creates_the_user_once),
      cmocka_unit_test(test_server__me_needs_a_valid_token),
      cmocka_unit_test(test_server__bad_sign_in_data_is_refused),
      cmocka_unit_test(test_server__malformed_requests_get_their_status),
      cmocka_unit_test(test_server__blocked_user_is_refused),
      cmocka_unit_test(test_server__operations_and_headers),
  };
  return cmocka_run_group_tests_name("server", tests, start_server, stop_server);
}
