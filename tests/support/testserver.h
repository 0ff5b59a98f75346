/*
 * Integration-test harness for tryon-server (see testserver.c): start it as a process
 * on a free loopback port against a migrated scratch database and a scratch storage
 * folder, talk to it with libcurl, stop it with SIGTERM and require a clean exit.
 *
 * Use as cmocka group setup/teardown:
 *   cmocka_run_group_tests_name("x", tests, tryon_testserver_start, tryon_testserver_stop);
 * Set tryon_testserver_extra_env (NULL-terminated "NAME=value") before, for settings
 * of the test's own.
 */
#ifndef TRYON_TESTSERVER_H
#define TRYON_TESTSERVER_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <sys/types.h>

#include "testsupport.h"

#define TRYON_TEST_BOT_TOKEN "7000000001:AAtest-bot-token-for-integration"
#define TRYON_TEST_JWT_SECRET "integration-secret-0123456789abcdef"

typedef struct tryon_testserver {
  tryon_testdb t;
  pid_t pid;
  int port;
  char base[64];    /* "http://127.0.0.1:<port>" */
  char storage[64]; /* TRYON_STORAGE_DIR */
} tryon_testserver;

extern tryon_testserver tryon_test_server;
extern const char *const *tryon_testserver_extra_env;

int tryon_testserver_start(void **state);
int tryon_testserver_stop(void **state);

/* A response: status, body, raw header lines, and the body parsed as JSON (or NULL). */
typedef struct tryon_reply {
  long status;
  tryon_buf body;
  tryon_buf headers;
  cJSON *json;
} tryon_reply;

void tryon_reply_free(tryon_reply *r);
/* One request; `headers` is a NULL-terminated list of "Name: value" (or NULL). */
tryon_reply tryon_test_http(const char *method, const char *path, const char *const *headers,
                            const char *body, size_t body_len);
tryon_reply tryon_test_post_json(const char *path, const char *body);
/* POST /api/uploads as multipart/form-data with one part "file" (filename and
 * content_type optional). */
tryon_reply tryon_test_upload(const char *token, const void *data, size_t len, const char *filename,
                              const char *content_type);
/* GET a signed /files/ link (absolute or not) on the harness's server. */
tryon_reply tryon_test_get_url(const char *url, const char *const *headers);
/* error.code of a JSON error body, or "(none)". */
const char *tryon_reply_error_code(const tryon_reply *r);
/* Fails the test unless `r` has `status` and error code `code`; frees r. */
void tryon_expect_error(tryon_reply r, long status, const char *code);
/* Whether a response header line starts with `line` (names case-insensitive). */
bool tryon_reply_has_header(const tryon_reply *r, const char *line);

/* A signed initData for Telegram user `tg_id` named `first`, dated `age_s` ago. */
void tryon_test_init_data(int64_t tg_id, const char *first, int64_t age_s, char *out, size_t cap);
/* POST /api/auth/telegram for that user; the reply's "token" via tryon_reply_token. */
tryon_reply tryon_test_sign_in(int64_t tg_id, const char *first);
char *tryon_reply_token(const tryon_reply *r); /* malloc'd */
tryon_reply tryon_test_get_me(const char *token);
/* The first value of `sql` on the scratch database (malloc'd, or NULL). */
char *tryon_testserver_db_value(const char *sql);

#endif
