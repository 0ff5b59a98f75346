/*
 * The runner in-process on a real PostgreSQL: HTTP transfers through its loop (with a
 * retry), a stop abandoning a transfer at the grace deadline and handing the job back,
 * a handler that forgets its next step, a lease stolen from under a waiting job, and
 * the validation of options and kinds. The worker process tests
 * (tests/integration/test_worker.c) cover claims, retries, hooks, kills and drains
 * across processes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <tryon/http.h>
#include <tryon/runner.h>

#include "testsupport.h"
#include "testworker.h"

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
  tryon_runner *r;
  pthread_t thread;
  tryon_status run_status;
  struct MHD_Daemon *http;
  int http_port;
  int flaky_calls;
  int hook_calls; /* the "doomed" kind's final-failure hook */
} fixture;

/* ------------------------------------------------------------- a loopback server */

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req_cls) {
  (void)method;
  (void)version;
  (void)upload;
  (void)upload_size;
  (void)req_cls;
  fixture *f = cls;
  unsigned status = 200;
  if (strcmp(url, "/flaky") == 0 && __atomic_fetch_add(&f->flaky_calls, 1, __ATOMIC_SEQ_CST) == 0)
    status = 503;
  static const char body[] = "{\"ok\":true}";
  struct MHD_Response *res =
      MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result r = MHD_queue_response(conn, status, res);
  MHD_destroy_response(res);
  return r;
}

/* -------------------------------------------------------------- the "fetch" kind */

typedef struct fetch {
  tryon_http_call *call;
} fetch;

static void fetch_free(void *p) {
  fetch *fe = p;
  tryon_http_call_free(fe->call);
  free(fe);
}

static void fetch_go(tryon_run *run);

static void fetch_done(tryon_run *run, CURLcode code, void *ud) {
  (void)ud;
  fetch *fe = tryon_run_data(run);
  int64_t delay = 0;
  if (tryon_http_call_finished(fe->call, code, &delay) == TRYON_HTTP_RETRY) {
    tryon_run_sleep(run, delay, fetch_go);
    return;
  }
  tryon_err err;
  tryon_status st = tryon_http_call_status(fe->call, &err);
  const tryon_http_response *r = tryon_http_call_response(fe->call);
  char result[160];
  snprintf(result, sizeof result, "{\"status\":%ld,\"attempts\":%d,\"ok\":%s}", r->status,
           r->attempts, st == TRYON_OK ? "true" : "false");
  tryon_run_succeed(run, result, NULL, NULL);
}

static void fetch_go(tryon_run *run) {
  fetch *fe = tryon_run_data(run);
  tryon_run_transfer(run, tryon_http_call_easy(fe->call), fetch_done, NULL);
}

static void fetch_start(tryon_run *run) {
  const char *url =
      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), "url"));
  fetch *fe = calloc(1, sizeof *fe);
  tryon_err err;
  tryon_http_request req = {.url = url, .backoff_base_ms = 5, .log_label = "test"};
  if (fe == NULL || tryon_http_call_new(&req, &fe->call, &err) != TRYON_OK) {
    free(fe);
    tryon_run_fail(run, "{\"code\":\"bad_url\"}", false, 0);
    return;
  }
  tryon_run_set_data(run, fe, fetch_free);
  fetch_go(run);
}

/* The "doomed" kind: every attempt fails retryably; its final-failure hook records the
 * job it was given in the failing transaction (a table the test makes). */
static void doomed_start(tryon_run *run) {
  tryon_run_fail(run, "{\"code\":\"doomed\",\"message\":\"it always fails\"}", true, 1);
}

static tryon_status doomed_final(tryon_db_conn *c, const tryon_job *job, void *ud, tryon_err *err) {
  fixture *f = ud;
  __atomic_add_fetch(&f->hook_calls, 1, __ATOMIC_SEQ_CST);
  tryon_db_num attempts = tryon_db_num_i64(job->attempts);
  const char *p[] = {job->id, attempts.s, job->error ? job->error : "{}"};
  return tryon_db_exec(c,
                       "INSERT INTO hook_runs (job, attempts, code) VALUES ($1::uuid, $2::int,"
                       " $3::jsonb->>'code')",
                       3, p, NULL, err);
}

/* A handler with a bug: it returns without choosing what comes next. */
static void forgetful_start(tryon_run *run) {
  (void)run;
}

/* ------------------------------------------------------------------------ harness */

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tryon_testdb_open(&f->t, 4, 5000, &f->db, &f->c);
  f->http_port = tryon_test_free_port();
  f->http = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)f->http_port, NULL, NULL,
                             answer, f, MHD_OPTION_END);
  assert_non_null(f->http);
  *state = f;
  return 0;
}

static void *run_thread(void *arg) {
  fixture *f = arg;
  tryon_err err;
  f->run_status = tryon_runner_run(f->r, &err);
  return NULL;
}

/* A runner with the test kinds plus fetch and forgetful, running on its own thread. */
static void start_runner(fixture *f, int64_t lease_ms, int64_t grace_ms) {
  tryon_err err;
  tryon_runner_options o = {.db = f->db,
                            .conninfo = f->t.conninfo,
                            .owner = "test-runner",
                            .db_threads = 2,
                            .lease_ms = lease_ms,
                            .poll_ms = 100,
                            .grace_ms = grace_ms};
  EXPECT_STATUS(tryon_runner_new(&o, &f->r, &err), TRYON_OK, &err, "new");
  EXPECT_STATUS(tryon_runner_add_test_kinds(f->r, &err), TRYON_OK, &err, "test kinds");
  const tryon_job_kind fetch_kind = {.name = "fetch", .start = fetch_start};
  const tryon_job_kind forgetful = {.name = "forgetful", .start = forgetful_start};
  const tryon_job_kind doomed = {
      .name = "doomed", .start = doomed_start, .on_final = doomed_final, .ud = f, .backoff_ms = 1};
  EXPECT_STATUS(tryon_runner_add_kind(f->r, &fetch_kind, &err), TRYON_OK, &err, "fetch");
  EXPECT_STATUS(tryon_runner_add_kind(f->r, &forgetful, &err), TRYON_OK, &err, "forgetful");
  EXPECT_STATUS(tryon_runner_add_kind(f->r, &doomed, &err), TRYON_OK, &err, "doomed");
  assert_int_equal(pthread_create(&f->thread, NULL, run_thread, f), 0);
}

static void stop_runner(fixture *f) {
  if (f->r == NULL)
    return;
  tryon_runner_stop(f->r);
  pthread_join(f->thread, NULL);
  tryon_runner_free(f->r);
  f->r = NULL;
}

static int teardown(void **state) {
  fixture *f = *state;
  stop_runner(f);
  MHD_stop_daemon(f->http);
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

static void enqueue(fixture *f, const char *kind, const char *payload,
                    char id[TRYON_UUID_STR_LEN]) {
  tryon_err err;
  tryon_job_spec s = {.kind = kind, .payload_json = payload};
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, tryon_clock_now_ms(NULL), id, NULL, &err), TRYON_OK,
                &err, "enqueue");
}

static void wait_job(fixture *f, const char *id, const char *expr, const char *want,
                     const char *ctx) {
  char sql[256], last[128];
  snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = '%s'", expr, id);
  if (!tryon_test_wait_value(f->c, sql, want, 15000, last))
    fail_msg("%s: %s is %s, want %s", ctx, expr, last, want);
}

/* Waits (up to 5 s) until the runner has lost one run and holds none; the stats. */
static tryon_runner_stats wait_lost_and_idle(fixture *f) {
  tryon_runner_stats s;
  for (int i = 0; i < 500; i++) {
    tryon_runner_stats_get(f->r, &s);
    if (s.lost == 1 && s.running == 0)
      break;
    usleep(10 * 1000);
  }
  return s;
}

/* -------------------------------------------------------------------------- tests */

static void test_runner__transfers_run_on_the_loop_with_retries(void **state) {
  fixture *f = *state;
  char ok[TRYON_UUID_STR_LEN], flaky[TRYON_UUID_STR_LEN], refused[TRYON_UUID_STR_LEN];
  char payload[128];
  start_runner(f, 0, 0);
  snprintf(payload, sizeof payload, "{\"url\":\"http://127.0.0.1:%d/ok\"}", f->http_port);
  enqueue(f, "fetch", payload, ok);
  snprintf(payload, sizeof payload, "{\"url\":\"http://127.0.0.1:%d/flaky\"}", f->http_port);
  enqueue(f, "fetch", payload, flaky);
  /* Nothing listens on port 1: connection refused on every try. */
  enqueue(f, "fetch", "{\"url\":\"http://127.0.0.1:1/\"}", refused);
  wait_job(f, ok, "state", "succeeded", "plain transfer");
  wait_job(f, ok, "result->>'status'", "200", "its status");
  wait_job(f, flaky, "state", "succeeded", "503 then 200");
  wait_job(f, flaky, "result->>'attempts'", "2", "retried once inside the job");
  wait_job(f, flaky, "attempts", "1", "one claim: the retry was the http call's");
  wait_job(f, refused, "result->>'ok'", "false", "refused everywhere");
  wait_job(f, refused, "result->>'attempts'", "3", "three tries");
  tryon_runner_stats s;
  tryon_runner_stats_get(f->r, &s);
  assert_int_equal(s.waiting, 0);
  assert_true(s.listening);
}

static void test_runner__stop_releases_a_hung_transfer_at_the_deadline(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN], payload[128];
  int port = 0;
  int fd = tryon_test_silent_socket(&port);
  start_runner(f, 0, 300);
  snprintf(payload, sizeof payload, "{\"url\":\"http://127.0.0.1:%d/hang\"}", port);
  enqueue(f, "fetch", payload, id);
  wait_job(f, id, "state", "running", "claimed");
  tryon_runner_stats s;
  for (int i = 0; i < 500; i++) {
    tryon_runner_stats_get(f->r, &s);
    if (s.waiting == 1)
      break;
    usleep(10 * 1000);
  }
  assert_int_equal(s.waiting, 1);
  stop_runner(f); /* returns once the deadline passed and the job went back */
  assert_int_equal(f->run_status, TRYON_OK);
  wait_job(f, id, "state", "queued", "handed back");
  wait_job(f, id, "attempts", "0", "attempt not spent");
  close(fd);
}

static void test_runner__a_handler_without_a_next_step_fails_its_job(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN];
  start_runner(f, 0, 0);
  enqueue(f, "forgetful", NULL, id);
  wait_job(f, id, "state", "failed", "the bug is reported, not hung");
  wait_job(f, id, "error->>'code'", "internal", "as an internal error");
}

/* The final-failure hook runs once, when the last attempt fails, inside the failing
 * transaction, and sees the job as it ends (issue 12, item 9: only the slow process
 * tests checked it). */
static void test_runner__the_final_failure_hook_runs_once(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  EXPECT_STATUS(tryon_db_exec(f->c, "CREATE TABLE hook_runs (job uuid, attempts int, code text)", 0,
                              NULL, NULL, &err),
                TRYON_OK, &err, "hook table");
  tryon_job_spec s = {.kind = "doomed", .max_attempts = 3};
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, tryon_clock_now_ms(NULL), id, NULL, &err), TRYON_OK,
                &err, "enqueue");
  start_runner(f, 0, 0);
  wait_job(f, id, "state", "failed", "failed after its attempts");
  wait_job(f, id, "attempts", "3", "every attempt was used");
  wait_job(f, id, "error->>'code'", "doomed", "its own error");
  stop_runner(f);
  assert_int_equal(__atomic_load_n(&f->hook_calls, __ATOMIC_SEQ_CST), 1);
  char *row = tryon_test_query_value(
      f->c, "SELECT job::text || ' ' || attempts || ' ' || code FROM hook_runs", 0, NULL);
  char want[80];
  snprintf(want, sizeof want, "%s 3 doomed", id);
  assert_non_null(row);
  assert_string_equal(row, want);
  free(row);
  char *n = tryon_test_query_value(f->c, "SELECT count(*) FROM hook_runs", 0, NULL);
  assert_string_equal(n, "1");
  free(n);
}

static void test_runner__a_stolen_lease_is_dropped_without_writes(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  start_runner(f, 600, 0); /* heartbeat every 200 ms */
  enqueue(f, "sleep", "{\"ms\":60000}", id);
  wait_job(f, id, "lease_owner LIKE 'test-runner#%'", "t", "held");
  /* Another worker took it over (as after a reap while this one stalled). */
  const char *p[] = {id};
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "UPDATE jobs SET lease_owner = 'thief', lease_expires_at = now()"
                              " + interval '1 hour' WHERE id = $1::uuid",
                              1, p, NULL, &err),
                TRYON_OK, &err, "steal");
  tryon_runner_stats s = wait_lost_and_idle(f);
  assert_int_equal(s.lost, 1);
  assert_int_equal(s.running, 0);
  stop_runner(f);
  wait_job(f, id, "lease_owner || ' ' || state", "thief running", "the thief's job untouched");
}

static void test_runner__options_and_kinds_are_checked(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_runner *r = NULL;
  tryon_runner_options bad[] = {
      {.conninfo = f->t.conninfo},                              /* no pool */
      {.db = f->db},                                            /* no conninfo */
      {.db = f->db, .conninfo = f->t.conninfo, .lease_ms = 10}, /* too short a lease */
      {.db = f->db, .conninfo = f->t.conninfo, .owner = ""},
      {.db = f->db, .conninfo = f->t.conninfo, .db_threads = 1000},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    EXPECT_STATUS(tryon_runner_new(&bad[i], &r, &err), TRYON_E_INVALID, &err, "bad options");
    assert_null(r);
  }
  tryon_runner_options ok = {.db = f->db, .conninfo = f->t.conninfo};
  EXPECT_STATUS(tryon_runner_new(&ok, &r, &err), TRYON_OK, &err, "good options");
  const tryon_job_kind k = {.name = "fetch", .start = fetch_start};
  const tryon_job_kind nameless = {.name = "Fetch!", .start = fetch_start};
  const tryon_job_kind startless = {.name = "idle"};
  EXPECT_STATUS(tryon_runner_add_kind(r, &k, &err), TRYON_OK, &err, "kind");
  EXPECT_STATUS(tryon_runner_add_kind(r, &k, &err), TRYON_E_INVALID, &err, "twice");
  EXPECT_STATUS(tryon_runner_add_kind(r, &nameless, &err), TRYON_E_INVALID, &err, "bad name");
  EXPECT_STATUS(tryon_runner_add_kind(r, &startless, &err), TRYON_E_INVALID, &err, "no start");
  EXPECT_STATUS(tryon_runner_schedule(r, "unknown", 60000, &err), TRYON_E_INVALID, &err,
                "schedule of an unknown kind");
  EXPECT_STATUS(tryon_runner_schedule(r, "fetch", 10, &err), TRYON_E_INVALID, &err, "too frequent");
  tryon_runner_free(r);
  tryon_runner_free(NULL);
}

/* The same worker claims a job again while its first run still waits (its lease was
 * lost and the job requeued): the first run must stop without a write, the second
 * finishes, and nothing runs twice at once — leases name the claim, not the worker. */
static void test_runner__a_reclaimed_job_stops_its_older_run(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  start_runner(f, 600, 0);
  enqueue(f, "sleep", "{\"ms\":1500,\"steps\":3}", id);
  wait_job(f, id, "stage", "sleeping", "the first run waits after a step");
  const char *p[] = {id};
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "UPDATE jobs SET state = 'queued', lease_owner = NULL,"
                              " lease_expires_at = NULL, run_after = now() WHERE id = $1::uuid",
                              1, p, NULL, &err),
                TRYON_OK, &err, "requeue under the runner's feet");
  wait_job(f, id, "state", "succeeded", "the second run finishes");
  wait_job(f, id, "attempts", "2", "claimed twice");
  wait_job(f, id, "result->>'attempt'", "2", "finished by the second run, not the first");
  wait_job(f, id, "(result->>'resumed_from')::int >= 1", "t", "from the checkpoint");
  tryon_runner_stats s = wait_lost_and_idle(f);
  assert_int_equal(s.lost, 1);      /* the first run, found by the heartbeat */
  assert_int_equal(s.abandoned, 0); /* no write of it was refused */
  assert_int_equal(s.succeeded, 1);
}

/* The listener's backend (the runner's application_name on the scratch database). */
static char *listen_pid(fixture *f) {
  const char *p[] = {f->t.name};
  return tryon_testdb_admin_query(
      &f->t,
      "SELECT string_agg(pid::text, ',') FROM pg_stat_activity"
      " WHERE datname = $1 AND application_name = 'tryon-worker-listen'",
      1, p);
}

static void test_runner__listens_again_after_its_connection_is_killed(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN], last[128];
  tryon_runner_stats s;
  start_runner(f, 0, 0);
  enqueue(f, "sleep", "{\"ms\":600000}", id);
  wait_job(f, id, "stage IS NULL AND state = 'running'", "t", "waiting");
  char *before = listen_pid(f);
  assert_non_null(before);
  const char *p[] = {f->t.name};
  free(tryon_testdb_admin_query(&f->t,
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE datname = $1 AND application_name = 'tryon-worker-listen'",
                                1, p));
  /* A new backend, then listening again (the loss was seen before the new connect). */
  char *after = NULL;
  for (int i = 0; i < 1000; i++) {
    free(after);
    after = listen_pid(f);
    if (after != NULL && strcmp(after, before) != 0)
      break;
    usleep(10 * 1000);
  }
  assert_non_null(after);
  assert_string_not_equal(after, before);
  for (int i = 0; i < 1000; i++) {
    tryon_runner_stats_get(f->r, &s);
    if (s.listening)
      break;
    usleep(10 * 1000);
  }
  assert_true(s.listening);
  /* tryon_wake is listened to again: the ten-minute wait ends now. */
  snprintf(last, sizeof last, "SELECT pg_notify('tryon_wake', '%s')", id);
  free(tryon_test_query_value(f->c, last, 0, NULL));
  wait_job(f, id, "state", "succeeded", "woken through the new connection");
  free(before);
  free(after);
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_runner__transfers_run_on_the_loop_with_retries),
      T(test_runner__stop_releases_a_hung_transfer_at_the_deadline),
      T(test_runner__a_handler_without_a_next_step_fails_its_job),
      T(test_runner__the_final_failure_hook_runs_once),
      T(test_runner__a_stolen_lease_is_dropped_without_writes),
      T(test_runner__a_reclaimed_job_stops_its_older_run),
      T(test_runner__options_and_kinds_are_checked),
      T(test_runner__listens_again_after_its_connection_is_killed),
  };
  return cmocka_run_group_tests_name("runner", tests, NULL, NULL);
}
