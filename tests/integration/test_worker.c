/*
 * tryon-worker as processes on a real PostgreSQL: the schema check, jobs run, retried
 * and failed with their hook once, 1,000 jobs over 3 workers with one killed (each job
 * ran exactly once but for those the killed worker held), a kill -9 mid-job resumed by
 * another worker from its checkpoint, the per-user limit across workers, SIGTERM
 * handing jobs back, housekeeping, health and metrics.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <tryon/jobs.h>

#include "testserver.h"
#include "testworker.h"

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tryon_testdb_open(&f->t, 2, 5000, &f->db, &f->c);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_testworker_kill_all();
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

/* Settings every test worker shares: short leases and polls so tests stay quick. */
#define FAST "TRYON_WORKER_LEASE_MS=1000", "TRYON_WORKER_POLL_MS=200", "TRYON_DB_POOL_SIZE=3"

static void enqueue(fixture *f, const char *kind, const char *payload, int64_t user,
                    int max_attempts, char id[TRYON_UUID_STR_LEN]) {
  tryon_err err;
  tryon_job_spec s = {
      .kind = kind, .payload_json = payload, .user_id = user, .max_attempts = max_attempts};
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, tryon_clock_now_ms(NULL), id, NULL, &err), TRYON_OK,
                &err, "enqueue");
}

static char *value(fixture *f, const char *sql) {
  char *v = tryon_test_query_value(f->c, sql, 0, NULL);
  return v ? v : strdup("(null)");
}

/* The job's column or JSON expression, e.g. "state", "result->>'owner'". */
static char *job_value(fixture *f, const char *id, const char *expr) {
  char sql[512];
  snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = '%s'", expr, id);
  return value(f, sql);
}

static void expect_job(fixture *f, const char *id, const char *expr, const char *want,
                       const char *ctx) {
  char *got = job_value(f, id, expr);
  if (strcmp(got, want) != 0)
    fail_msg("%s: %s is %s, want %s", ctx, expr, got, want);
  free(got);
}

static void wait_value(fixture *f, const char *sql, const char *want, int timeout_ms,
                       const char *ctx) {
  char last[128];
  if (!tryon_test_wait_value(f->c, sql, want, timeout_ms, last))
    fail_msg("%s: `%s` is %s, want %s", ctx, sql, last, want);
}

static void expect_clean_exit(int status, const char *ctx) {
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("%s: the worker did not stop cleanly (status %d)", ctx, status);
}

static char *log_path(const fixture *f, const char *name) {
  char *p = malloc(256);
  snprintf(p, 256, "/tmp/%s_%s.log", f->t.name, name);
  unlink(p);
  return p;
}

/* ------------------------------------------------------------------ start-up checks */

static void test_worker__refuses_a_schema_behind(void **state) {
  (void)state;
  tryon_testdb t;
  tryon_testdb_create(&t); /* no migrations applied */
  pid_t pid = tryon_testworker_spawn(&t, NULL, NULL);
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 200 && (done = waitpid(pid, &status, WNOHANG)) == 0; i++)
    usleep(50 * 1000);
  if (done == 0) {
    tryon_testworker_signal_wait(pid, SIGKILL);
    fail_msg("the worker ran on a database without the schema");
  }
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  tryon_testdb_drop(&t);
}

/* ---------------------------------------------------------------------- running jobs */

static void test_worker__runs_retries_and_fails_with_one_hook(void **state) {
  fixture *f = *state;
  char ok[TRYON_UUID_STR_LEN], flaky[TRYON_UUID_STR_LEN], doomed[TRYON_UUID_STR_LEN],
      refused[TRYON_UUID_STR_LEN];
  const char *env[] = {FAST, NULL};
  pid_t pid = tryon_testworker_spawn(&f->t, env, NULL);

  enqueue(f, "noop", NULL, 0, 0, ok);
  enqueue(f, "sleep", "{\"fail_attempts\":2,\"retry_after_ms\":20}", 0, 3, flaky);
  enqueue(f, "sleep", "{\"fail_attempts\":9,\"retry_after_ms\":20}", 0, 2, doomed);
  enqueue(f, "sleep", "{\"fail_attempts\":1,\"retryable\":false}", 0, 3, refused);
  wait_value(f,
             "SELECT count(*) FROM jobs WHERE kind IN ('noop', 'sleep') AND state IN"
             " ('succeeded', 'failed')",
             "4", 20000, "all four end");

  expect_job(f, ok, "state", "succeeded", "noop");
  expect_job(f, ok, "attempts", "1", "noop");
  expect_job(f, ok, "progress", "100", "noop");
  expect_job(f, flaky, "state", "succeeded", "retried twice, then succeeded");
  expect_job(f, flaky, "attempts", "3", "retried twice");
  expect_job(f, flaky, "coalesce(result->>'final_hook_runs', 'none')", "none",
             "no hook for a success");
  expect_job(f, doomed, "state", "failed", "out of attempts");
  expect_job(f, doomed, "attempts", "2", "both attempts used");
  expect_job(f, doomed, "error->>'code'", "test_failure", "its error");
  expect_job(f, doomed, "result->>'final_hook_runs'", "1", "the failure hook ran once");
  expect_job(f, refused, "state", "failed", "a final error is not retried");
  expect_job(f, refused, "attempts", "1", "one attempt");
  expect_job(f, refused, "result->>'final_hook_runs'", "1", "the failure hook ran once");

  /* Housekeeping was scheduled once for this minute and ran. */
  wait_value(f,
             "SELECT count(*) >= 1 FROM jobs WHERE kind = 'billing.expire_due'"
             " AND state = 'succeeded'",
             "t", 10000, "housekeeping ran");
  expect_clean_exit(tryon_testworker_signal_wait(pid, SIGTERM), "SIGTERM");
  /* Still exactly once: the hook did not run again at shutdown. */
  expect_job(f, doomed, "result->>'final_hook_runs'", "1", "after the stop");
}

static void test_worker__sweeps_ended_periods(void **state) {
  fixture *f = *state;
  tryon_err err;
  /* A wallet whose free month ended long ago, never read since. */
  EXPECT_STATUS(tryon_db_exec_script(f->c,
                                     "INSERT INTO users (telegram_id) VALUES (7070);"
                                     "INSERT INTO wallets (user_id, period_source, period_key,"
                                     " period_ends_at) SELECT id, 'free', '2020-01',"
                                     " '2020-01-31 21:00Z' FROM users",
                                     &err),
                TRYON_OK, &err, "old wallet");
  const char *env[] = {FAST, NULL};
  pid_t pid = tryon_testworker_spawn(&f->t, env, NULL);
  wait_value(f, "SELECT period_key <> '2020-01' FROM wallets", "t", 10000,
             "the scheduled sweep brought the wallet up to date");
  wait_value(f, "SELECT count(*) FROM credit_ledger WHERE reason = 'free_grant'", "1", 1000,
             "one grant");
  expect_clean_exit(tryon_testworker_signal_wait(pid, SIGTERM), "SIGTERM");
}

static void test_worker__runs_no_test_kind_unless_asked(void **state) {
  fixture *f = *state;
  char noop[TRYON_UUID_STR_LEN], purge[TRYON_UUID_STR_LEN];
  /* As production runs it: TRYON_WORKER_TEST_KINDS is off. */
  const char *env[] = {"TRYON_WORKER_TEST_KINDS=false", FAST, NULL};
  pid_t pid = tryon_testworker_spawn(&f->t, env, NULL);
  enqueue(f, "noop", NULL, 0, 0, noop);
  /* A kind it runs, queued after the noop: once it is done, the noop was passed over. */
  enqueue(f, "jobs.purge", NULL, 0, 1, purge);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT state FROM jobs WHERE id = '%s'", purge);
  wait_value(f, sql, "succeeded", 20000, "the purge ran");
  expect_job(f, noop, "state", "queued", "noop is not a kind of this worker");
  expect_job(f, noop, "attempts", "0", "never claimed");
  expect_clean_exit(tryon_testworker_signal_wait(pid, SIGTERM), "SIGTERM");
  expect_job(f, noop, "state", "queued", "still queued");
}

/* ------------------------------------------------------------- exactly once, killed */

/* Loads "job started" lines of a worker's log into the table `starts`. */
static size_t load_starts(fixture *f, const char *path) {
  tryon_err err;
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    fail_msg("no log at %s", path);
  char line[4096];
  size_t n = 0;
  while (fgets(line, sizeof line, fp) != NULL) {
    cJSON *doc = cJSON_Parse(line);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "msg");
    if (cJSON_IsString(msg) && strcmp(msg->valuestring, "job started") == 0) {
      const char *p[] = {cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "job")),
                         cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "owner"))};
      EXPECT_STATUS(
          tryon_db_exec(f->c, "INSERT INTO starts VALUES ($1::uuid, $2)", 2, p, NULL, &err),
          TRYON_OK, &err, "record a start");
      n++;
    }
    cJSON_Delete(doc);
  }
  fclose(fp);
  return n;
}

static void test_worker__thousand_jobs_three_workers_one_killed(void **state) {
  fixture *f = *state;
  tryon_err err;
  const char *env[] = {FAST, "TRYON_LOG_LEVEL=debug", NULL};
  char *logs[3];
  pid_t pids[3];
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "w%d", i);
    logs[i] = log_path(f, name);
    pids[i] = tryon_testworker_spawn(&f->t, env, logs[i]);
  }
  /* 1,000 jobs that each wait a little, so that many are in flight at the kill. */
  EXPECT_STATUS(tryon_db_exec_script(f->c,
                                     "INSERT INTO jobs (kind, payload) SELECT 'sleep',"
                                     " '{\"ms\":100}' FROM generate_series(1, 1000);"
                                     "NOTIFY tryon_jobs, 'sleep'",
                                     &err),
                TRYON_OK, &err, "enqueue 1000");
  /* Kill one worker a third of the way through, at a moment it holds jobs (on a loaded
   * machine it may briefly hold none, and then the kill would prove nothing). */
  char held[200];
  snprintf(held, sizeof held,
           "SELECT count(*) >= 300 FROM jobs WHERE state = 'succeeded' AND EXISTS (SELECT 1"
           " FROM jobs WHERE state = 'running' AND lease_owner LIKE '%%:%ld#%%')",
           (long)pids[1]);
  for (int i = 0; i < 3000; i++) {
    char *ready = value(f, held);
    bool now = strcmp(ready, "t") == 0;
    free(ready);
    if (now)
      break;
    usleep(5 * 1000);
  }
  tryon_testworker_signal_wait(pids[1], SIGKILL);
  wait_value(f, "SELECT count(*) FROM jobs WHERE kind = 'sleep' AND state = 'succeeded'", "1000",
             60000, "every job succeeds, the killed worker's after their leases expired");
  expect_clean_exit(tryon_testworker_signal_wait(pids[0], SIGTERM), "worker 0");
  expect_clean_exit(tryon_testworker_signal_wait(pids[2], SIGTERM), "worker 2");

  EXPECT_STATUS(
      tryon_db_exec(f->c, "CREATE TABLE starts (job uuid, owner text)", 0, NULL, NULL, &err),
      TRYON_OK, &err, "starts table");
  size_t n[3];
  for (int i = 0; i < 3; i++) {
    n[i] = load_starts(f, logs[i]);
    if (n[i] == 0)
      fail_msg("worker %d started no job", i);
  }
  char killed[64];
  snprintf(killed, sizeof killed, ":%ld#", (long)pids[1]); /* its leases: host:pid#claim */
  const char *kp[] = {killed};
  PGresult *res = NULL;
  /* For every sleep job: its starts, those by the killed worker, its claims. */
  EXPECT_STATUS(
      tryon_db_exec(
          f->c,
          "WITH s AS (SELECT j.id, j.attempts, j.result->>'owner' AS winner,"
          "   count(s.job) AS n, count(s.job) FILTER (WHERE s.owner LIKE '%' || $1 || '%')"
          "   AS k FROM jobs j LEFT JOIN starts s ON s.job = j.id"
          "   WHERE j.kind = 'sleep' GROUP BY j.id)"
          " SELECT count(*) FILTER (WHERE n = 0)," /* never started */
          "  count(*) FILTER (WHERE attempts <> n AND NOT (attempts = n + 1 AND k = 0)),"
          "  count(*) FILTER (WHERE n > 2 OR (n = 2 AND k <> 1))," /* ran twice */
          "  count(*) FILTER (WHERE attempts > 1 AND winner || '#' LIKE '%' || $1),"
          "  count(*) FILTER (WHERE attempts > 1) FROM s",
          1, kp, &res, &err),
      TRYON_OK, &err, "analysis");
  int64_t never = tryon_db_get_i64(res, 0, 0), unlogged = tryon_db_get_i64(res, 0, 1),
          twice = tryon_db_get_i64(res, 0, 2), dead_won = tryon_db_get_i64(res, 0, 3),
          rerun = tryon_db_get_i64(res, 0, 4);
  PQclear(res);
  print_message("starts per worker: %zu, %zu (killed), %zu; rerun after the kill: %lld\n", n[0],
                n[1], n[2], (long long)rerun);
  if (rerun == 0)
    fail_msg("the killed worker held no job: the kill proved nothing");
  if (never || unlogged || twice || dead_won)
    fail_msg("never started %lld, claims without a start (beyond the killed worker's last"
             " batch) %lld, run twice outside the kill %lld,"
             " finished by the dead worker after a rerun %lld",
             (long long)never, (long long)unlogged, (long long)twice, (long long)dead_won);
  for (int i = 0; i < 3; i++) {
    unlink(logs[i]);
    free(logs[i]);
  }
}

static void test_worker__kill_9_mid_job_resumes_elsewhere(void **state) {
  fixture *f = *state;
  char resumable[TRYON_UUID_STR_LEN], last_try[TRYON_UUID_STR_LEN];
  const char *env[] = {FAST, NULL};
  pid_t a = tryon_testworker_spawn(&f->t, env, NULL);
  enqueue(f, "sleep", "{\"ms\":3000,\"steps\":6}", 0, 3, resumable);
  enqueue(f, "sleep", "{\"ms\":60000}", 0, 1, last_try);
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT (payload->>'step')::int >= 2 FROM jobs WHERE id = '%s'",
           resumable);
  wait_value(f, sql, "t", 20000, "two steps checkpointed");
  expect_job(f, last_try, "state", "running", "the other job is held too");
  tryon_testworker_signal_wait(a, SIGKILL);

  pid_t b = tryon_testworker_spawn(&f->t, env, NULL);
  snprintf(sql, sizeof sql, "SELECT state FROM jobs WHERE id = '%s'", resumable);
  wait_value(f, sql, "succeeded", 20000, "the killed job completes on the other worker");
  expect_job(f, resumable, "attempts", "2", "claimed once more");
  expect_job(f, resumable, "(result->>'resumed_from')::int >= 2", "t",
             "resumed from its checkpoint, not from the start");
  char owner[32];
  snprintf(owner, sizeof owner, ":%ld", (long)b);
  char *winner = job_value(f, resumable, "result->>'owner'");
  const char *tail = strstr(winner, owner);
  if (tail == NULL || tail[strlen(owner)] != '\0')
    fail_msg("finished by %s, want the second worker (pid %ld)", winner, (long)b);
  free(winner);
  /* The job on its last attempt failed at lease expiry, its hook run once. */
  snprintf(sql, sizeof sql, "SELECT state FROM jobs WHERE id = '%s'", last_try);
  wait_value(f, sql, "failed", 10000, "the last attempt's lease expired");
  expect_job(f, last_try, "error->>'code'", "lease_expired", "why");
  expect_job(f, last_try, "result->>'final_hook_runs'", "1", "the hook ran once");
  expect_clean_exit(tryon_testworker_signal_wait(b, SIGTERM), "second worker");
}

static void test_worker__per_user_limit_across_workers(void **state) {
  fixture *f = *state;
  tryon_err err;
  EXPECT_STATUS(tryon_db_exec_script(f->c,
                                     "INSERT INTO users (telegram_id) VALUES (1), (2);"
                                     "INSERT INTO jobs (kind, payload, user_id) SELECT 'sleep',"
                                     " '{\"ms\":150}', u.id FROM users u,"
                                     " generate_series(1, 8)",
                                     &err),
                TRYON_OK, &err, "16 jobs of two users");
  const char *env[] = {FAST, "TRYON_JOBS_PER_USER=2", NULL};
  pid_t a = tryon_testworker_spawn(&f->t, env, NULL), b = tryon_testworker_spawn(&f->t, env, NULL);
  int64_t most = 0, most_total = 0;
  for (int i = 0; i < 1500; i++) {
    PGresult *res = NULL;
    EXPECT_STATUS(tryon_db_exec(f->c,
                                "SELECT coalesce(max(n), 0), coalesce(sum(n), 0),"
                                " (SELECT count(*) FROM jobs WHERE kind = 'sleep'"
                                "   AND state <> 'succeeded')"
                                " FROM (SELECT count(*) AS n FROM jobs WHERE state = 'running'"
                                " AND user_id IS NOT NULL GROUP BY user_id) r",
                                0, NULL, &res, &err),
                  TRYON_OK, &err, "sample");
    int64_t m = tryon_db_get_i64(res, 0, 0), total = tryon_db_get_i64(res, 0, 1),
            left = tryon_db_get_i64(res, 0, 2);
    PQclear(res);
    most = m > most ? m : most;
    most_total = total > most_total ? total : most_total;
    if (left == 0)
      break;
    usleep(5 * 1000);
  }
  expect_clean_exit(tryon_testworker_signal_wait(a, SIGTERM), "worker a");
  expect_clean_exit(tryon_testworker_signal_wait(b, SIGTERM), "worker b");
  wait_value(f, "SELECT count(*) FROM jobs WHERE kind = 'sleep' AND state = 'succeeded'", "16", 0,
             "all done");
  if (most > 2)
    fail_msg("a user had %lld jobs running at once, limit 2", (long long)most);
  if (most_total < 3)
    fail_msg("at most %lld jobs ran at once: the two users never ran side by side",
             (long long)most_total);
}

static void test_worker__sigterm_hands_waiting_jobs_back(void **state) {
  fixture *f = *state;
  char ids[3][TRYON_UUID_STR_LEN];
  const char *env[] = {FAST, "TRYON_WORKER_GRACE_MS=30000", NULL};
  pid_t a = tryon_testworker_spawn(&f->t, env, NULL);
  for (int i = 0; i < 3; i++)
    enqueue(f, "sleep", "{\"ms\":600000,\"steps\":600}", 0, 3, ids[i]);
  wait_value(f, "SELECT count(*) FROM jobs WHERE state = 'running' AND stage = 'sleeping'", "3",
             20000, "all three waiting after a step");
  /* The grace period is long, but a waiting job has nothing to finish: the stop is
   * quick, and the jobs are queued again without spending their attempt. */
  expect_clean_exit(tryon_testworker_signal_wait(a, SIGTERM), "SIGTERM");
  for (int i = 0; i < 3; i++) {
    expect_job(f, ids[i], "state", "queued", "handed back");
    expect_job(f, ids[i], "attempts", "0", "the attempt was not spent");
    expect_job(f, ids[i], "lease_owner IS NULL", "t", "no lease");
    expect_job(f, ids[i], "(payload->>'step')::int >= 1", "t", "its checkpoint kept");
  }
  pid_t b = tryon_testworker_spawn(&f->t, env, NULL);
  char want[32];
  snprintf(want, sizeof want, "%%:%ld#%%", (long)b);
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_owner"
           " LIKE '%s'",
           want);
  wait_value(f, sql, "3", 10000, "another worker takes them at once");
  tryon_testworker_signal_wait(b, SIGKILL);
}

/* ------------------------------------------------------------------ health, metrics */

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  return tryon_buf_append(ud, p, size * n) == TRYON_OK ? size * n : 0;
}

/* GET http://127.0.0.1:port/path; the body into `body` (caller releases). */
static long get_local(int port, const char *path, tryon_buf *body) {
  char url[128];
  long status = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  tryon_buf_init(body, 1 << 20);
  CURL *h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  if (curl_easy_perform(h) == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(h);
  return status;
}

static void test_worker__health_and_metrics(void **state) {
  fixture *f = *state;
  char port[48], ok[TRYON_UUID_STR_LEN];
  int p = tryon_test_free_port();
  snprintf(port, sizeof port, "TRYON_WORKER_METRICS_PORT=%d", p);
  const char *env[] = {FAST, port, NULL};
  pid_t a = tryon_testworker_spawn(&f->t, env, NULL);
  enqueue(f, "noop", NULL, 0, 0, ok);
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT state FROM jobs WHERE id = '%s'", ok);
  wait_value(f, sql, "succeeded", 10000, "the job ran");

  tryon_buf body;
  assert_int_equal(get_local(p, "/healthz", &body), 200);
  if (strstr(body.data, "\"status\":\"ok\"") == NULL)
    fail_msg("healthz body: %s", body.data);
  tryon_buf_release(&body);
  assert_int_equal(get_local(p, "/metrics", &body), 200);
  /* The noop job and housekeeping: at least one success counted. */
  if (strstr(body.data, "tryon_worker_jobs_total{outcome=\"succeeded\"} ") == NULL ||
      strstr(body.data, "tryon_worker_jobs_total{outcome=\"succeeded\"} 0\n") != NULL ||
      strstr(body.data, "tryon_worker_job_duration_seconds_count") == NULL ||
      strstr(body.data, "tryon_queue_jobs{state=\"queued\"}") == NULL)
    fail_msg("metrics body: %s", body.data);
  tryon_buf_release(&body);
  assert_int_equal(get_local(p, "/nope", &body), 404);
  tryon_buf_release(&body);
  expect_clean_exit(tryon_testworker_signal_wait(a, SIGTERM), "SIGTERM");
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_worker__refuses_a_schema_behind),
      T(test_worker__runs_retries_and_fails_with_one_hook),
      T(test_worker__sweeps_ended_periods),
      T(test_worker__runs_no_test_kind_unless_asked),
      T(test_worker__thousand_jobs_three_workers_one_killed),
      T(test_worker__kill_9_mid_job_resumes_elsewhere),
      T(test_worker__per_user_limit_across_workers),
      T(test_worker__sigterm_hands_waiting_jobs_back),
      T(test_worker__health_and_metrics),
  };
  return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
