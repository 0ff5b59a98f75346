/*
 * Try-on end to end: tryon-server + tryon-worker processes + a real PostgreSQL. With no
 * kie.ai key the worker uses the offline provider; with the loopback fake of kie.ai
 * (tests/fakes/fake_kie.c) it runs the real client: uploads, createTask, polling,
 * the result's download, retries, failures with their refund, and a worker killed while
 * polling. The ledger audit holds after every test.
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tryon/billing.h>
#include <tryon/generations.h>
#include <tryon/http.h>

#include "testserver.h"
#include "testworker.h"

/* ------------------------------------------------------------------------- helpers */

static char *read_corpus(const char *name, size_t *len) {
  const char *dir = getenv("TRYON_FILES_CORPUS");
  if (dir == NULL)
    fail_msg("TRYON_FILES_CORPUS is not set: run through ctest (fixture files_corpus)");
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot read %s", path);
  char *buf = malloc(8u << 20);
  *len = fread(buf, 1, 8u << 20, f);
  fclose(f);
  return buf;
}

typedef struct user {
  char *token;
  char person[TRYON_UUID_STR_LEN], item[TRYON_UUID_STR_LEN];
} user;

static void upload(const user *u, const char *file, const char *mime, char id[TRYON_UUID_STR_LEN]) {
  size_t len = 0;
  char *data = read_corpus(file, &len);
  tryon_reply r = tryon_test_upload(u->token, data, len, file, mime);
  free(data);
  if (r.status != 201)
    fail_msg("upload %s: %ld %s", file, r.status, r.body.data);
  snprintf(id, TRYON_UUID_STR_LEN, "%s",
           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "id")));
  tryon_reply_free(&r);
}

/* A signed-in user with a person photo and an item photo. */
static user new_user(int64_t tg) {
  user u;
  memset(&u, 0, sizeof u);
  tryon_reply r = tryon_test_sign_in(tg, "Try");
  u.token = tryon_reply_token(&r);
  tryon_reply_free(&r);
  upload(&u, "exif_rotated.jpg", "image/jpeg", u.person);
  upload(&u, "alpha.png", "image/png", u.item);
  return u;
}

static void user_free(user *u) {
  free(u->token);
}

static tryon_reply post_tryon(const user *u, const char *key, const char *body) {
  char auth[1200], idem[160];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", u->token);
  if (key != NULL)
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", key);
  const char *h[] = {auth, "Content-Type: application/json", key ? idem : NULL, NULL};
  return tryon_test_http("POST", "/api/tryon", h, body, strlen(body));
}

static tryon_reply get_auth(const user *u, const char *path) {
  char auth[1200];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", u->token);
  const char *h[] = {auth, NULL};
  return tryon_test_http("GET", path, h, NULL, 0);
}

static const char *jstr(const cJSON *o, const char *k) {
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
  return v ? v : "";
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

typedef struct started {
  char job[TRYON_UUID_STR_LEN], generation[TRYON_UUID_STR_LEN];
  double balance;
  bool watermark;
} started;

static started start_tryon(const user *u, const char *key, const char *category) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"%s\","
           "\"aspect_ratio\":\"3:4\"}",
           u->person, u->item, category);
  tryon_reply r = post_tryon(u, key, body);
  if (r.status != 202)
    fail_msg("POST /api/tryon: %ld %s", r.status, r.body.data);
  started s;
  snprintf(s.job, sizeof s.job, "%s", jstr(r.json, "job_id"));
  snprintf(s.generation, sizeof s.generation, "%s", jstr(r.json, "generation_id"));
  s.balance = jnum(r.json, "balance");
  s.watermark = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "watermark"));
  if (jnum(r.json, "cost") != 2)
    fail_msg("cost %s", r.body.data);
  tryon_reply_free(&r);
  return s;
}

/* Polls GET /api/jobs/{id} until the job ends; returns the generation as the API shows
 * it (the caller frees the reply). */
static tryon_reply wait_generation(const user *u, const started *s, int timeout_ms) {
  char path[96];
  snprintf(path, sizeof path, "/api/jobs/%s", s->job);
  char last[64] = "";
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    tryon_reply r = get_auth(u, path);
    if (r.status != 200)
      fail_msg("GET %s: %ld %s", path, r.status, r.body.data);
    snprintf(last, sizeof last, "%s", jstr(r.json, "state"));
    tryon_reply_free(&r);
    if (strcmp(last, "succeeded") == 0 || strcmp(last, "failed") == 0)
      break;
    usleep(50 * 1000);
  }
  snprintf(path, sizeof path, "/api/generations/%s", s->generation);
  tryon_reply g = get_auth(u, path);
  if (g.status != 200)
    fail_msg("GET %s: %ld %s (job %s)", path, g.status, g.body.data, last);
  return g;
}

static void check_refunds(void) {
  /* Every try-on that ended without a result gave its credits back. */
  char *v = tryon_testserver_db_value(
      "SELECT count(*) FROM generations g WHERE g.status IN ('failed', 'cancelled')"
      " AND NOT EXISTS (SELECT 1 FROM credit_ledger l"
      "  WHERE l.idempotency_key = 'job:' || g.job_id || ':refund')");
  if (v == NULL || strcmp(v, "0") != 0)
    fail_msg("failed or cancelled try-ons without a refund: %s", v ? v : "(null)");
  free(v);
}

/* The ledger audit (every wallet equals its ledger, every running balance chains) and
 * the refunds, after every test. */
static void check_books(void) {
  check_refunds();
  tryon_db *db = tryon_testdb_pool(&tryon_test_server.t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_audit_problem p[4];
  size_t n = 99;
  EXPECT_STATUS(tryon_db_acquire(db, &c, &err), TRYON_OK, &err, "acquire");
  EXPECT_STATUS(tryon_billing_audit(c, p, 4, &n, &err), TRYON_OK, &err, "audit");
  tryon_db_release(c);
  tryon_db_free(db);
  if (n > 0)
    fail_msg("the ledger audit found %zu offenders (user %lld first)", n, (long long)p[0].user_id);
}

static pid_t start_worker_log(const char *const *extra, const char *log_path) {
  char storage[128];
  snprintf(storage, sizeof storage, "TRYON_STORAGE_DIR=%s", tryon_test_server.storage);
  const char *env[16] = {storage, "TRYON_WORKER_POLL_MS=200", "TRYON_DB_POOL_SIZE=3"};
  size_t n = 3;
  for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
    env[n++] = extra[i];
  env[n] = NULL;
  return tryon_testworker_spawn(&tryon_test_server.t, env, log_path);
}

static pid_t start_worker(const char *const *extra) {
  return start_worker_log(extra, NULL);
}

static void stop_worker(pid_t pid) {
  int st = tryon_testworker_signal_wait(pid, SIGTERM);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("the worker did not stop cleanly (status %d)", st);
}

static int teardown(void **state) {
  (void)state;
  tryon_testworker_kill_all();
  check_books();
  return 0;
}

/* ------------------------------------------------------------------------ offline */

static void test_tryon__offline_provider_makes_a_watermarked_result(void **state) {
  (void)state;
  user u = new_user(91001);
  pid_t w = start_worker(NULL);
  started s = start_tryon(&u, "offline-1", "top");
  assert_int_equal((int)s.balance, 8);
  assert_true(s.watermark);
  tryon_reply g = wait_generation(&u, &s, 30000);
  if (strcmp(jstr(g.json, "status"), "succeeded") != 0)
    fail_msg("generation: %s", g.body.data);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g.json, "watermarked")));
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g.json, "offline_preview")));
  const cJSON *res = cJSON_GetObjectItemCaseSensitive(g.json, "result");
  tryon_reply img = tryon_test_get_url(jstr(res, "url"), NULL);
  assert_int_equal(img.status, 200);
  if (img.body.len < 1000 || (unsigned char)img.body.data[0] != 0xFF)
    fail_msg("the result is not a JPEG (%zu bytes)", img.body.len);
  tryon_reply_free(&img);
  tryon_reply th = tryon_test_get_url(jstr(res, "thumb_url"), NULL);
  assert_int_equal(th.status, 200);
  tryon_reply_free(&th);
  tryon_reply_free(&g);

  /* The job reports its end; the history lists the try-on. */
  char path[96];
  snprintf(path, sizeof path, "/api/jobs/%s", s.job);
  tryon_reply j = get_auth(&u, path);
  assert_int_equal((int)jnum(j.json, "progress"), 100);
  assert_string_equal(jstr(j.json, "generation_id"), s.generation);
  tryon_reply_free(&j);
  tryon_reply l = get_auth(&u, "/api/generations?limit=5");
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(l.json, "items");
  assert_int_equal(cJSON_GetArraySize(items), 1);
  assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "id"), s.generation);
  tryon_reply_free(&l);
  stop_worker(w);
  user_free(&u);
}

static void test_tryon__idempotency_key_means_one_job_one_charge(void **state) {
  (void)state;
  user u = new_user(91002);
  started a = start_tryon(&u, "same-key", "shoes");
  started b = start_tryon(&u, "same-key", "shoes");
  assert_string_equal(a.job, b.job);
  assert_string_equal(a.generation, b.generation);
  assert_int_equal((int)a.balance, 8);
  assert_int_equal((int)b.balance, 8);
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'job:%s:charge'", a.job);
  char *n = tryon_testserver_db_value(sql);
  assert_string_equal(n, "1");
  free(n);
  /* The same key for something else is refused, not silently answered. */
  char body[512];
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"bag\"}", u.person,
           u.item);
  tryon_expect_error(post_tryon(&u, "same-key", body), 409, "idempotency_key_reused");
  user_free(&u);
}

static void test_tryon__bad_requests_are_refused_and_cost_nothing(void **state) {
  (void)state;
  user u = new_user(91003), v = new_user(91004);
  char body[512];
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"top\"}", u.person,
           v.item);
  tryon_expect_error(post_tryon(&u, "k-foreign", body), 404, "not_found");
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"top\"}", u.person,
           u.item);
  tryon_expect_error(post_tryon(&u, NULL, body), 400, "idempotency_key_required");
  tryon_expect_error(post_tryon(&u, "k-json", "{\"person_upload_id\":"), 400, "malformed_json");
  tryon_expect_error(post_tryon(&u, "k-arr", "[1,2]"), 422, "invalid_request");
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"hat\"}", u.person,
           u.item);
  tryon_expect_error(post_tryon(&u, "k-cat", body), 422, "invalid_request");
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"top\","
           "\"aspect_ratio\":\"7:5\"}",
           u.person, u.item);
  tryon_expect_error(post_tryon(&u, "k-ratio", body), 422, "invalid_request");
  snprintf(body, sizeof body,
           "{\"person_upload_id\":1,\"item_upload_id\":\"%s\","
           "\"category\":\"top\"}",
           u.item);
  tryon_expect_error(post_tryon(&u, "k-type", body), 422, "invalid_request");
  user nobody = {.token = "not-a-token"};
  tryon_expect_error(post_tryon(&nobody, "k-auth", "{}"), 401, "token_malformed");
  /* Five paid try-ons spend the ten free credits; the sixth is refused with 402. */
  char key[16];
  for (int i = 0; i < 5; i++) {
    snprintf(key, sizeof key, "spend-%d", i);
    start_tryon(&u, key, "top");
  }
  snprintf(body, sizeof body,
           "{\"person_upload_id\":\"%s\",\"item_upload_id\":\"%s\",\"category\":\"top\"}", u.person,
           u.item);
  tryon_reply r = post_tryon(&u, "spend-6", body);
  assert_int_equal(r.status, 402);
  assert_string_equal(tryon_reply_error_code(&r), "insufficient_credits");
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(r.json, "error");
  assert_int_equal((int)jnum(e, "balance"), 0);
  assert_int_equal((int)jnum(e, "cost"), 2);
  tryon_reply_free(&r);
  /* Someone else's job and try-on are not there for this user. */
  started mine = start_tryon(&v, "v-1", "glasses");
  char path[96];
  snprintf(path, sizeof path, "/api/jobs/%s", mine.job);
  tryon_expect_error(get_auth(&u, path), 404, "not_found");
  snprintf(path, sizeof path, "/api/generations/%s", mine.generation);
  tryon_expect_error(get_auth(&u, path), 404, "not_found");
  tryon_expect_error(get_auth(&u, "/api/generations?limit=0"), 422, "invalid_request");
  tryon_expect_error(get_auth(&u, "/api/generations?cursor=zzz"), 422, "invalid_request");
  user_free(&u);
  user_free(&v);
}

static void test_tryon__delete_removes_the_result(void **state) {
  (void)state;
  user u = new_user(91005);
  pid_t w = start_worker(NULL);
  started s = start_tryon(&u, "del-1", "bottom");
  tryon_reply g = wait_generation(&u, &s, 30000);
  assert_string_equal(jstr(g.json, "status"), "succeeded");
  char url[512];
  snprintf(url, sizeof url, "%s", jstr(cJSON_GetObjectItemCaseSensitive(g.json, "result"), "url"));
  tryon_reply_free(&g);
  stop_worker(w);
  char auth[1200], path[96];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", u.token);
  const char *h[] = {auth, NULL};
  snprintf(path, sizeof path, "/api/generations/%s", s.generation);
  tryon_reply d = tryon_test_http("DELETE", path, h, NULL, 0);
  assert_int_equal(d.status, 204);
  tryon_reply_free(&d);
  tryon_expect_error(get_auth(&u, path), 404, "not_found");
  tryon_reply img = tryon_test_get_url(url, NULL);
  assert_int_equal(img.status, 404);
  tryon_reply_free(&img);
  user_free(&u);
}

/* The owner cancels a queued try-on: the credits are back at once, once. */
static void test_tryon__owner_cancels_a_queued_tryon(void **state) {
  (void)state;
  user u = new_user(91006), v = new_user(91007);
  started s = start_tryon(&u, "cancel-1", "top"); /* no worker: it stays queued */
  assert_int_equal((int)s.balance, 8);
  char path[128], auth[1200];
  snprintf(path, sizeof path, "/api/jobs/%s/cancel", s.job);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", v.token);
  const char *hv[] = {auth, NULL};
  tryon_expect_error(tryon_test_http("POST", path, hv, NULL, 0), 404, "not_found");
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", u.token);
  const char *hu[] = {auth, NULL};
  tryon_reply r = tryon_test_http("POST", path, hu, NULL, 0);
  if (r.status != 200)
    fail_msg("cancel: %ld %s", r.status, r.body.data);
  assert_string_equal(jstr(r.json, "state"), "cancelled");
  assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(r.json, "balance"), "total"), 10);
  tryon_reply_free(&r);
  tryon_expect_error(tryon_test_http("POST", path, hu, NULL, 0), 409, "too_late");
  snprintf(path, sizeof path, "/api/generations/%s", s.generation);
  tryon_reply g = get_auth(&u, path);
  assert_string_equal(jstr(g.json, "status"), "cancelled");
  assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(g.json, "error"), "code"), "cancelled");
  tryon_reply_free(&g);
  user_free(&u);
  user_free(&v);
}

/* ------------------------------------------------------------ the kie.ai fake */

static pid_t fake_pid;
static int fake_port;

static void fake_start(void) {
  const char *bin = getenv("TRYON_FAKE_KIE_BIN");
  if (bin == NULL)
    fail_msg("TRYON_FAKE_KIE_BIN is not set: run through ctest");
  int fds[2];
  if (pipe(fds) != 0)
    fail_msg("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char *argv[] = {(char *)bin, "--api-key", "test-kie-key", NULL};
  extern char **environ;
  if (posix_spawn(&fake_pid, bin, &fa, NULL, argv, environ) != 0)
    fail_msg("cannot start %s", bin);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  FILE *out = fdopen(fds[0], "r");
  char line[64] = "";
  if (out == NULL || fgets(line, sizeof line, out) == NULL ||
      sscanf(line, "listening %d", &fake_port) != 1)
    fail_msg("fake-kie did not say it was listening");
  fclose(out);
}

/* A control call to the fake; the JSON answer (caller deletes). */
static cJSON *fake_call(const char *method, const char *path, const char *json) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", fake_port, path);
  tryon_http_request req = {.method = method,
                            .url = url,
                            .body = json,
                            .body_len = json ? strlen(json) : 0,
                            .content_type = "application/json",
                            .max_attempts = 1,
                            .max_response_bytes = 32u << 20};
  tryon_http_response resp;
  tryon_err err;
  if (tryon_http_perform(&req, &resp, &err) != TRYON_OK)
    fail_msg("fake %s %s: %s", method, path, tryon_err_message(&err));
  cJSON *doc = cJSON_Parse(resp.body.data);
  tryon_http_response_release(&resp);
  return doc;
}

static void fake_script(const char *json) {
  cJSON_Delete(fake_call("POST", "/_fake/script", json));
}

static int fake_count(const char *path_part) {
  cJSON *doc = fake_call("GET", "/_fake/requests", NULL);

  int n = 0;
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "requests")) {
    if (strstr(jstr(r, "path"), path_part) != NULL)
      n++;
  }
  cJSON_Delete(doc);
  return n;
}

/* A clean slate for a kie test: the fake forgets, and try-ons queued by earlier tests
 * (which had no worker) are cancelled, so they do not reach this test's worker. */
static void fresh_kie(void) {
  cJSON_Delete(fake_call("POST", "/_fake/reset", NULL));
  tryon_db *db = tryon_testdb_pool(&tryon_test_server.t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  PGresult *res = NULL;
  EXPECT_STATUS(tryon_db_acquire(db, &c, &err), TRYON_OK, &err, "acquire");
  EXPECT_STATUS(
      tryon_db_exec(c, "SELECT id::text FROM jobs WHERE state = 'queued'", 0, NULL, &res, &err),
      TRYON_OK, &err, "queued jobs");
  for (int i = 0; i < PQntuples(res); i++) /* refunded, as an operator's cancel does */
    EXPECT_STATUS(tryon_generations_cancel_job(c, NULL, PQgetvalue(res, i, 0), 0,
                                               tryon_clock_now_ms(NULL), &err),
                  TRYON_OK, &err, "cancel");
  PQclear(res);
  tryon_db_release(c);
  tryon_db_free(db);
}

static int group_setup(void **state) {
  /* The tests poll their jobs quickly: lift the per-user limit. */
  static const char *const env[] = {"TRYON_RATE_LIMIT_USER_RPS=100000",
                                    "TRYON_RATE_LIMIT_USER_BURST=100000",
                                    "TRYON_KIE_WEBHOOK_HMAC_KEY=fake-kie-webhook-key",
                                    /* the route exists only with a callback URL */
                                    "TRYON_KIE_CALLBACK_URL=http://127.0.0.1/webhooks/kie", NULL};
  tryon_testserver_extra_env = env;
  tryon_testserver_start(state);
  fake_start();
  return 0;
}

static int group_teardown(void **state) {
  int st = tryon_testworker_signal_wait(fake_pid, SIGTERM);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("fake-kie did not stop cleanly (status %d)", st);
  return tryon_testserver_stop(state);
}

/* A worker that talks to the fake. */
static pid_t start_kie_worker(void) {
  static char api[96], up[96];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  const char *env[] = {"TRYON_KIE_API_KEY=test-kie-key", api, up, NULL};
  return start_worker(env);
}

static char *user_id_of(int64_t tg) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT id FROM users WHERE telegram_id = %lld", (long long)tg);
  return tryon_testserver_db_value(sql);
}

/* Makes the user a paying subscriber (Start): their try-ons carry no watermark. */
static void subscribe(int64_t tg) {
  tryon_db *db = tryon_testdb_pool(&tryon_test_server.t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_subscription sub;
  char *id = user_id_of(tg), key[64];
  snprintf(key, sizeof key, "grant:test-sub-%lld", (long long)tg);
  EXPECT_STATUS(tryon_db_acquire(db, &c, &err), TRYON_OK, &err, "acquire");
  EXPECT_STATUS(tryon_billing_subscribe(c, strtoll(id, NULL, 10), TRYON_PLAN_START, key, NULL,
                                        tryon_clock_now_ms(NULL), &sub, &err),
                TRYON_OK, &err, "subscribe");
  tryon_db_release(c);
  tryon_db_free(db);
  free(id);
}

static void test_tryon__kie_success_with_and_without_watermark(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"task\":{\"waiting_ms\":300,\"generating_ms\":300}}");
  user free_user = new_user(92001), paid = new_user(92002);
  subscribe(92002);
  pid_t w = start_kie_worker();
  started a = start_tryon(&free_user, "kie-1", "dress");
  started b = start_tryon(&paid, "kie-2", "dress");
  assert_true(a.watermark);
  assert_false(b.watermark);
  tryon_reply ga = wait_generation(&free_user, &a, 60000);
  tryon_reply gb = wait_generation(&paid, &b, 60000);
  if (strcmp(jstr(ga.json, "status"), "succeeded") != 0 ||
      strcmp(jstr(gb.json, "status"), "succeeded") != 0)
    fail_msg("generations: %s / %s", ga.body.data, gb.body.data);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ga.json, "watermarked")));
  assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(gb.json, "watermarked")));
  assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ga.json, "offline_preview")));
  tryon_reply img =
      tryon_test_get_url(jstr(cJSON_GetObjectItemCaseSensitive(gb.json, "result"), "url"), NULL);
  assert_int_equal(img.status, 200);
  assert_true(img.body.len > 1000);
  tryon_reply_free(&img);
  tryon_reply_free(&ga);
  tryon_reply_free(&gb);
  stop_worker(w);

  /* What kie.ai saw: two uploads and one task per try-on, every field explicit. */
  assert_int_equal(fake_count("/api/file-stream-upload"), 4);
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 2);
  cJSON *doc = fake_call("GET", "/_fake/requests", NULL);
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "requests")) {
    if (strstr(jstr(r, "path"), "/api/") == NULL)
      continue;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "auth_ok")) ||
        jstr(r, "user_agent")[0] == '\0')
      fail_msg("a request without the key or a User-Agent: %s", jstr(r, "path"));
    if (strcmp(jstr(r, "path"), "/api/v1/jobs/createTask") == 0) {
      const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, "json");
      const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
      assert_string_equal(jstr(j, "model"), "google/nano-banana-edit");
      assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(in, "image_urls")), 2);
      assert_string_equal(jstr(in, "aspect_ratio"), "3:4");
      assert_string_equal(jstr(in, "output_format"), "png");
      assert_non_null(strstr(jstr(in, "prompt"), "dress"));
    }
  }
  cJSON_Delete(doc);
  char sql[160];
  snprintf(sql, sizeof sql,
           "SELECT provider || ' ' || (provider_task_id IS NOT NULL)"
           " FROM generations WHERE id = '%s'",
           a.generation);
  char *v = tryon_testserver_db_value(sql);
  assert_string_equal(v, "kie true");
  free(v);
  user_free(&free_user);
  user_free(&paid);
}

static void test_tryon__kie_rate_limits_and_errors_in_200_are_retried(void **state) {
  (void)state;
  fresh_kie();
  /* createTask: 429 twice (Retry-After 1 s), then a task; recordInfo: maintenance inside
   * an HTTP 200, then a server error, then the normal answers. */
  fake_script("{\"create\":[{\"http\":429,\"retry_after\":1},{\"http\":429,"
              "\"retry_after\":1}],\"record\":[{\"http\":200,\"code\":455,"
              "\"msg\":\"maintenance\"},{\"http\":200,\"code\":500,\"msg\":\"busy\"}]}");
  user u = new_user(92003);
  pid_t w = start_kie_worker();
  started s = start_tryon(&u, "retry-1", "top");
  tryon_reply g = wait_generation(&u, &s, 90000);
  if (strcmp(jstr(g.json, "status"), "succeeded") != 0)
    fail_msg("generation: %s", g.body.data);
  tryon_reply_free(&g);
  stop_worker(w);
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 3);
  cJSON *tasks = fake_call("GET", "/_fake/tasks", NULL);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tasks, "tasks")), 1);
  cJSON_Delete(tasks);
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT attempts FROM jobs WHERE id = '%s'", s.job);
  char *v = tryon_testserver_db_value(sql);
  assert_string_equal(v, "1"); /* retried inside the attempt */
  free(v);
  user_free(&u);
}

static void test_tryon__kie_refusal_refunds_once_and_explains(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"task\":{\"fail_code\":\"400\",\"fail_msg\":\"Content policy violation:"
              " nsfw\"}}");
  user u = new_user(92004);
  pid_t w = start_kie_worker();
  started s = start_tryon(&u, "refused-1", "top");
  assert_int_equal((int)s.balance, 8);
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "failed") != 0)
    fail_msg("generation: %s", g.body.data);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(g.json, "error");
  assert_string_equal(jstr(e, "code"), "content_refused");
  /* The test users sign in with Telegram's language_code "ru". */
  if ((strstr(jstr(e, "message"), "2 credits are back") == NULL &&
       strstr(jstr(e, "message"), "2 кредита вернулись") == NULL) ||
      strstr(jstr(e, "message"), "nsfw") != NULL)
    fail_msg("the user's message: %s", jstr(e, "message"));
  tryon_reply_free(&g);
  stop_worker(w);
  tryon_reply me = tryon_test_get_me(u.token);
  const cJSON *bal = cJSON_GetObjectItemCaseSensitive(me.json, "balance");
  assert_int_equal((int)jnum(bal, "total"), 10);
  tryon_reply_free(&me);
  char sql[200];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'job:%s:refund'", s.job);
  char *v = tryon_testserver_db_value(sql);
  assert_string_equal(v, "1");
  free(v);
  /* One task, never retried: a refusal is final. */
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 1);
  user_free(&u);
}

static void test_tryon__worker_killed_while_polling_resumes_the_same_task(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"task\":{\"generating_ms\":6000}}");
  user u = new_user(92005);
  const char *lease[] = {"TRYON_WORKER_LEASE_MS=1500", NULL};
  static char api[96], up[96];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  const char *env[] = {lease[0], "TRYON_KIE_API_KEY=test-kie-key", api, up, NULL};
  pid_t w1 = start_worker(env);
  started s = start_tryon(&u, "kill-1", "top");
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT payload ? 'task_id' FROM jobs WHERE id = '%s'", s.job);
  bool has = false;
  for (int i = 0; i < 1500 && !has; i++) {
    char *v = tryon_testserver_db_value(sql);
    has = v != NULL && strcmp(v, "t") == 0;
    free(v);
    if (!has)
      usleep(20 * 1000);
  }
  if (!has) /* the kill must land while polling, or the test proves nothing */
    fail_msg("the first worker never saved its task id");
  tryon_testworker_signal_wait(w1, SIGKILL);
  pid_t w2 = start_worker(env);
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "succeeded") != 0)
    fail_msg("generation: %s", g.body.data);
  tryon_reply_free(&g);
  stop_worker(w2);
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 1); /* the same task, polled on */
  snprintf(sql, sizeof sql, "SELECT attempts FROM jobs WHERE id = '%s'", s.job);
  char *v = tryon_testserver_db_value(sql);
  assert_string_equal(v, "2");
  free(v);
  user_free(&u);
}

static int count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[4096];
  int n = 0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    n += strstr(line, needle) != NULL;
  if (f != NULL)
    fclose(f);
  return n;
}

static void test_tryon__kie_callback_wakes_the_poll_and_bad_ones_are_refused(void **state) {
  (void)state;
  fresh_kie();
  /* Two tasks finishing between two polls: one signed callback, one badly signed. */
  fake_script("{\"task_queue\":[{\"generating_ms\":4000,\"callback\":\"signed\"},"
              "{\"generating_ms\":4000,\"callback\":\"bad_signature\"}]}");
  user u = new_user(92006);
  static char api[96], up[96], cb[128], logp[128];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  snprintf(cb, sizeof cb, "TRYON_KIE_CALLBACK_URL=%s/webhooks/kie", tryon_test_server.base);
  snprintf(logp, sizeof logp, "/tmp/%s_kie_cb.log", tryon_test_server.t.name);
  unlink(logp);
  const char *env[] = {"TRYON_LOG_LEVEL=info",
                       "TRYON_KIE_API_KEY=test-kie-key",
                       "TRYON_KIE_WEBHOOK_HMAC_KEY=fake-kie-webhook-key",
                       api,
                       up,
                       cb,
                       NULL};
  pid_t w = start_worker_log(env, logp);
  started a = start_tryon(&u, "cb-1", "top"), b = start_tryon(&u, "cb-2", "top");
  tryon_reply ga = wait_generation(&u, &a, 60000), gb = wait_generation(&u, &b, 60000);
  assert_string_equal(jstr(ga.json, "status"), "succeeded");
  assert_string_equal(jstr(gb.json, "status"), "succeeded"); /* polling finished it */
  tryon_reply_free(&ga);
  tryon_reply_free(&gb);
  stop_worker(w);
  cJSON *tasks = fake_call("GET", "/_fake/tasks", NULL);
  int ok = 0, refused = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(tasks, "tasks")) {
    double st = jnum(t, "callback_status");
    ok += st == 200;
    refused += st == 403;
    assert_non_null(strstr(jstr(t, "callback_url"), "/webhooks/kie"));
  }
  cJSON_Delete(tasks);
  assert_int_equal(ok, 1);
  assert_int_equal(refused, 1);
  assert_int_equal(count_lines(logp, "job woken early"), 1);
  unlink(logp);

  /* Not a callback; a signed one about a task nobody runs (answered, nothing woken). */
  const char *h[] = {"Content-Type: application/json", NULL};
  tryon_expect_error(tryon_test_http("POST", "/webhooks/kie", h, "{\"x\":1}", 7), 400,
                     "invalid_callback");
  tryon_expect_error(tryon_test_http("POST", "/webhooks/kie", h, "garbage", 7), 400,
                     "invalid_callback");
  const char *unsigned_body = "{\"code\":200,\"msg\":\"ok\",\"data\":{\"taskId\":\"task_x_1\","
                              "\"state\":\"success\"}}";
  tryon_expect_error(
      tryon_test_http("POST", "/webhooks/kie", h, unsigned_body, strlen(unsigned_body)), 403,
      "forbidden");
  user_free(&u);
}

/* A createTask that may have gone through (a server error after sending) is never
 * posted again: the try-on fails, the credits come back, kie.ai saw one request. */
static void test_tryon__kie_ambiguous_create_is_not_repeated(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"create\":[{\"http\":502}]}");
  user u = new_user(92007);
  pid_t w = start_kie_worker();
  started s = start_tryon(&u, "ambiguous-1", "top");
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "failed") != 0)
    fail_msg("generation: %s", g.body.data);
  tryon_reply_free(&g);
  stop_worker(w);
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 1);
  tryon_reply me = tryon_test_get_me(u.token);
  assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(me.json, "balance"), "total"), 10);
  tryon_reply_free(&me);
  user_free(&u);
}

/* A worker stopped while its createTask is in flight (the answer is slower than the
 * stop's grace): kie.ai may have made a task we never learnt. The rerun must not post
 * again; it fails with create_unconfirmed and refunds (second review, finding 1). */
static void test_tryon__stop_mid_create_is_not_posted_again(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"create\":[{\"delay_ms\":8000,\"body\":\"{\\\"code\\\":200,"
              "\\\"msg\\\":\\\"success\\\",\\\"data\\\":{\\\"taskId\\\":"
              "\\\"slow-task-1\\\"}}\"}]}");
  user u = new_user(92009);
  static char api[96], up[96];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  const char *env[] = {"TRYON_WORKER_GRACE_MS=1000", "TRYON_KIE_API_KEY=test-kie-key", api, up,
                       NULL};
  pid_t w1 = start_worker(env);
  started s = start_tryon(&u, "midcreate-1", "top");
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT payload->>'create_sent' FROM jobs WHERE id = '%s'", s.job);
  bool sent = false;
  for (int i = 0; i < 1500 && !sent; i++) {
    char *v = tryon_testserver_db_value(sql);
    sent = v != NULL && strcmp(v, "true") == 0;
    free(v);
    if (!sent)
      usleep(20 * 1000);
  }
  if (!sent)
    fail_msg("the first worker never marked its createTask");
  usleep(300 * 1000); /* the request is on its way to the fake */
  stop_worker(w1);    /* the grace ends long before the answer */
  pid_t w2 = start_kie_worker();
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "failed") != 0)
    fail_msg("generation: %s", g.body.data);
  assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(g.json, "error"), "code"),
                      "create_unconfirmed");
  tryon_reply_free(&g);
  stop_worker(w2);
  assert_int_equal(fake_count("/api/v1/jobs/createTask"), 1);
  tryon_reply me = tryon_test_get_me(u.token);
  assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(me.json, "balance"), "total"), 10);
  tryon_reply_free(&me);
  user_free(&u);
}

/* A task that finishes in the poll budget's last interval is delivered: when the budget
 * runs out the job looks once more before giving up (second review, finding 3). */
static void test_tryon__a_task_done_at_the_poll_limit_is_delivered(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"task\":{\"generating_ms\":3500}}");
  user u = new_user(92010);
  static char api[96], up[96];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  const char *env[] = {"TRYON_KIE_POLL_LIMIT_S=4", "TRYON_KIE_API_KEY=test-kie-key", api, up, NULL};
  pid_t w = start_worker(env);
  started s = start_tryon(&u, "lastlook-1", "top");
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "succeeded") != 0)
    fail_msg("generation: %s", g.body.data);
  tryon_reply_free(&g);
  stop_worker(w);
  user_free(&u);
}

/* A task that never ends: the job gives up at the poll limit and refunds. */
static void test_tryon__kie_poll_limit_fails_and_refunds(void **state) {
  (void)state;
  fresh_kie();
  fake_script("{\"task\":{\"generating_ms\":600000},\"record\":[{\"http\":429,"
              "\"retry_after\":3600}]}");
  user u = new_user(92008);
  static char api[96], up[96];
  snprintf(api, sizeof api, "TRYON_KIE_API_URL=http://127.0.0.1:%d", fake_port);
  snprintf(up, sizeof up, "TRYON_KIE_UPLOAD_URL=http://127.0.0.1:%d", fake_port);
  /* A one-hour Retry-After on the first poll must not outlast the 4 s limit. */
  const char *env[] = {"TRYON_KIE_POLL_LIMIT_S=4", "TRYON_KIE_API_KEY=test-kie-key", api, up, NULL};
  pid_t w = start_worker(env);
  started s = start_tryon(&u, "limit-1", "top");
  tryon_reply g = wait_generation(&u, &s, 60000);
  if (strcmp(jstr(g.json, "status"), "failed") != 0)
    fail_msg("generation: %s", g.body.data);
  assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(g.json, "error"), "code"), "timeout");
  tryon_reply_free(&g);
  stop_worker(w);
  tryon_reply me = tryon_test_get_me(u.token);
  assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(me.json, "balance"), "total"), 10);
  tryon_reply_free(&me);
  user_free(&u);
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_teardown(name, teardown)
  const struct CMUnitTest tests[] = {
      T(test_tryon__offline_provider_makes_a_watermarked_result),
      T(test_tryon__idempotency_key_means_one_job_one_charge),
      T(test_tryon__bad_requests_are_refused_and_cost_nothing),
      T(test_tryon__delete_removes_the_result),
      T(test_tryon__owner_cancels_a_queued_tryon),
      T(test_tryon__kie_success_with_and_without_watermark),
      T(test_tryon__kie_rate_limits_and_errors_in_200_are_retried),
      T(test_tryon__kie_refusal_refunds_once_and_explains),
      T(test_tryon__worker_killed_while_polling_resumes_the_same_task),
      T(test_tryon__kie_callback_wakes_the_poll_and_bad_ones_are_refused),
      T(test_tryon__kie_ambiguous_create_is_not_repeated),
      T(test_tryon__stop_mid_create_is_not_posted_again),
      T(test_tryon__a_task_done_at_the_poll_limit_is_delivered),
      T(test_tryon__kie_poll_limit_fails_and_refunds),
  };
  return cmocka_run_group_tests_name("tryon", tests, group_setup, group_teardown);
}
