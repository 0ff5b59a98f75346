/*
 * The tryon-server harness for integration tests: the real binary on a free loopback
 * port against a migrated scratch database, and a small libcurl client.
 */
#include "testserver.h"
#include "testworker.h"

#include <arpa/inet.h>
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

tryon_testserver tryon_test_server;

/* ------------------------------------------------------------------------- HTTP client */

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  tryon_buf *b = ud;
  return tryon_buf_append(b, p, size * n) == TRYON_OK ? size * n : 0;
}

void tryon_reply_free(tryon_reply *r) {
  tryon_buf_release(&r->body);
  tryon_buf_release(&r->headers);
  cJSON_Delete(r->json);
  memset(r, 0, sizeof *r);
}

/* One request. `headers` is a NULL-terminated list of "Name: value". */
/* A file to send as one multipart part. */
typedef struct upload_part {
  const void *data;
  size_t len;
  const char *filename;
  const char *content_type;
} upload_part;

static tryon_reply perform(const char *method, const char *path, const char *const *headers,
                           const char *body, size_t body_len, const upload_part *part) {
  tryon_reply r;
  char url[512];
  struct curl_slist *hl = NULL;
  curl_mime *mime = NULL;
  CURL *c = curl_easy_init();
  memset(&r, 0, sizeof r);
  tryon_buf_init(&r.body, 16u << 20);
  tryon_buf_init(&r.headers, 1 << 16);
  snprintf(url, sizeof url, "%s%s", tryon_test_server.base, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  for (size_t i = 0; headers && headers[i]; i++)
    hl = curl_slist_append(hl, headers[i]);
  hl = curl_slist_append(hl, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  if (part != NULL) {
    mime = curl_mime_init(c);
    curl_mimepart *mp = curl_mime_addpart(mime);
    curl_mime_name(mp, "file");
    curl_mime_data(mp, part->data, part->len);
    if (part->filename != NULL)
      curl_mime_filename(mp, part->filename);
    if (part->content_type != NULL)
      curl_mime_type(mp, part->content_type);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
  } else if (body != NULL) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK)
    fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.json = cJSON_ParseWithLength(r.body.data, r.body.len);
  curl_mime_free(mime);
  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  return r;
}

tryon_reply tryon_test_http(const char *method, const char *path, const char *const *headers,
                            const char *body, size_t body_len) {
  return perform(method, path, headers, body, body_len, NULL);
}

tryon_reply tryon_test_upload(const char *token, const void *data, size_t len, const char *filename,
                              const char *content_type) {
  char auth[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};
  upload_part part = {.data = data, .len = len, .filename = filename, .content_type = content_type};
  return perform("POST", "/api/uploads", h, NULL, 0, &part);
}

tryon_reply tryon_test_get_url(const char *url, const char *const *headers) {
  /* Signed links are absolute (TRYON_PUBLIC_URL); the harness talks to its own port. */
  const char *path = strstr(url, "/files/");
  if (path == NULL)
    fail_msg("not a file link: %s", url);
  return perform("GET", path, headers, NULL, 0, NULL);
}

tryon_reply tryon_test_post_json(const char *path, const char *body) {
  const char *h[] = {"Content-Type: application/json", NULL};
  return tryon_test_http("POST", path, h, body, strlen(body));
}

const char *tryon_reply_error_code(const tryon_reply *r) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
  return cJSON_IsString(c) ? c->valuestring : "(none)";
}

void tryon_expect_error(tryon_reply r, long status, const char *code) {
  if (r.status != status || strcmp(tryon_reply_error_code(&r), code) != 0)
    fail_msg("want %ld %s, got %ld %s", status, code, r.status, r.body.data);
  tryon_reply_free(&r);
}

/* Whether a response header line starts with `line` (names compare case-insensitively). */
bool tryon_reply_has_header(const tryon_reply *r, const char *line) {
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
void tryon_test_init_data(int64_t tg_id, const char *first, int64_t age_s, char *out, size_t cap) {
  char fields[1024];
  char *name = curl_easy_escape(NULL, first, 0);
  snprintf(fields, sizeof fields,
           "query_id=AAE1&user=%%7B%%22id%%22%%3A%lld%%2C%%22first_name%%22%%3A%%22%s%%22%%2C"
           "%%22language_code%%22%%3A%%22ru%%22%%7D&auth_date=%lld",
           (long long)tg_id, name, (long long)(time(NULL) - age_s));
  curl_free(name);
  tryon_err err;
  if (tryon_initdata_sign(fields, TRYON_TEST_BOT_TOKEN, out, cap, &err) != TRYON_OK)
    fail_msg("sign: %s", err.message);
}

tryon_reply tryon_test_sign_in(int64_t tg_id, const char *first) {
  char init[2048], body[2300];
  tryon_test_init_data(tg_id, first, 5, init, sizeof init);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "init_data", init);
  char *text = cJSON_PrintUnformatted(doc);
  snprintf(body, sizeof body, "%s", text);
  cJSON_free(text);
  cJSON_Delete(doc);
  return tryon_test_post_json("/api/auth/telegram", body);
}

char *tryon_reply_token(const tryon_reply *r) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->json, "token");
  assert_true(cJSON_IsString(t));
  return strdup(t->valuestring);
}

tryon_reply tryon_test_get_me(const char *token) {
  char auth[1024];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *h[] = {auth, NULL};
  return tryon_test_http("GET", "/api/me", token ? h : NULL, NULL, 0);
}

char *tryon_testserver_db_value(const char *sql) {
  tryon_db *db = tryon_testdb_pool(&tryon_test_server.t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *v = tryon_test_query_value(c, sql, 0, NULL);
  tryon_db_release(c);
  tryon_db_free(db);
  return v;
}

/* ------------------------------------------------------------------- server lifecycle */

const char *const *tryon_testserver_extra_env;

int tryon_testserver_start(void **state) {
  (void)state;
  const char *bin = getenv("TRYON_SERVER_BIN");
  if (bin == NULL)
    fail_msg("TRYON_SERVER_BIN is not set: run through ctest");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  tryon_testdb_create_migrated(&tryon_test_server.t);
  tryon_test_server.port = tryon_test_free_port();
  snprintf(tryon_test_server.base, sizeof tryon_test_server.base, "http://127.0.0.1:%d",
           tryon_test_server.port);
  snprintf(tryon_test_server.storage, sizeof tryon_test_server.storage,
           "/tmp/tryon-test-storage-XXXXXX");
  if (mkdtemp(tryon_test_server.storage) == NULL)
    fail_msg("cannot make a storage folder");

  char db[1024], port[32], storage[96];
  snprintf(db, sizeof db, "TRYON_DATABASE_URL=%s", tryon_test_server.t.conninfo);
  snprintf(port, sizeof port, "TRYON_HTTP_PORT=%d", tryon_test_server.port);
  snprintf(storage, sizeof storage, "TRYON_STORAGE_DIR=%s", tryon_test_server.storage);
  char *env[64] = {db,
                   port,
                   storage,
                   "TRYON_BOT_TOKEN=" TRYON_TEST_BOT_TOKEN,
                   "TRYON_JWT_SECRET=" TRYON_TEST_JWT_SECRET,
                   "TRYON_ENV_FILE=/dev/null",
                   "TRYON_LOG_LEVEL=warn",
                   "TRYON_PUBLIC_URL=http://127.0.0.1",
                   "TRYON_DB_POOL_SIZE=4",
                   "TRYON_RATE_LIMIT_IP_RPS=10000",
                   "TRYON_RATE_LIMIT_IP_BURST=10000",
                   "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1",
                   NULL};
  /* The test's own settings come last: the server reads the first of a name, so put them
   * first instead. */
  size_t n = 0;
  while (env[n] != NULL)
    n++;
  for (size_t i = 0; tryon_testserver_extra_env && tryon_testserver_extra_env[i]; i++) {
    if (n + 1 >= sizeof env / sizeof env[0])
      fail_msg("too many extra settings");
    memmove(env + 1, env, (n + 1) * sizeof env[0]);
    env[0] = (char *)tryon_testserver_extra_env[i];
    n++;
  }
  const char *lsan = getenv("LSAN_OPTIONS");
  char lsan_env[512];
  if (lsan != NULL) {
    snprintf(lsan_env, sizeof lsan_env, "LSAN_OPTIONS=%s", lsan);
    env[n++] = lsan_env;
    env[n] = NULL;
  }
  char *argv[] = {(char *)bin, NULL};
  if (posix_spawn(&tryon_test_server.pid, bin, NULL, NULL, argv, env) != 0)
    fail_msg("cannot start %s", bin);
  /* Ready when /healthz answers; give a sanitizer build time to start. */
  for (int i = 0; i < 200; i++) {
    CURL *c = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "%s/healthz", tryon_test_server.base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK)
      return 0;
    usleep(50 * 1000);
  }
  fail_msg("the server did not come up on port %d", tryon_test_server.port);
  return -1;
}

int tryon_testserver_stop(void **state) {
  (void)state;
  int status = 0;
  if (tryon_test_server.pid > 0) {
    kill(tryon_test_server.pid, SIGTERM);
    waitpid(tryon_test_server.pid, &status, 0);
  }
  tryon_testdb_drop(&tryon_test_server.t);
  curl_global_cleanup();
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tryon_test_server.storage);
  if (tryon_test_server.storage[0] != '\0' && system(cmd) != 0)
    fail_msg("cannot remove %s", tryon_test_server.storage);
  /* A clean, graceful stop: exit status 0, and no sanitizer report. */
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the server did not stop cleanly (status %d)", status);
  return 0;
}
