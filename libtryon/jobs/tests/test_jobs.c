/*
 * The jobs module against a real PostgreSQL (a migrated scratch database per test),
 * written from its contract (include/tryon/jobs.h) and the `jobs` table of
 * migrations/0001_init.sql, not from its implementation.
 *
 * Times are explicit (now_ms). Each test starts from the wall clock (f->t0) so that
 * whatever the database stamps by itself stays near the times the test passes in; every
 * later instant is t0 plus an offset, so an implementation that reads the database's
 * clock instead of now_ms is caught by the tests that move time forward.
 *
 * Instants read back from timestamptz columns are compared within 1 ms (a millisecond
 * count may round on its way through a double).
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <tryon/jobs.h>

#include "testsupport.h"

#define SEC_MS 1000LL
#define MIN_MS (60 * SEC_MS)
#define BACKOFF_CAP_MS (5 * MIN_MS)
#define DEFAULT_BACKOFF_MS (2 * SEC_MS)
#define DEFAULT_LEASE_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)

/* ------------------------------------------------------------------------- fixtures */

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c; /* the test's own connection; racers lease their own */
  int64_t t0;       /* the wall clock at set-up, in ms */
} fixture;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  /* 1 for the test + 8 racers + slack. */
  tryon_testdb_open(&f->t, 10, 30000, &f->db, &f->c);
  f->t0 = wall_ms();
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

/* -------------------------------------------------------------------------- helpers */

/* An instant read back from the database: within 1 ms of `want`. */
#define EXPECT_MS(got, want, ctx)                                                                  \
  do {                                                                                             \
    int64_t g_ = (got), w_ = (want);                                                               \
    if (g_ < w_ - 1 || g_ > w_ + 1)                                                                \
      fail_msg("line %d: %s: %s = %lld, want %lld (t0%+lld, off by %lld ms)", __LINE__, (ctx),     \
               #got, (long long)g_, (long long)w_, (long long)(w_ - f->t0), (long long)(g_ - w_)); \
  } while (0)

#define EXPECT_STR(got, want, ctx)                                                             \
  do {                                                                                         \
    const char *g_ = (got), *w_ = (want);                                                      \
    if (g_ == NULL || strcmp(g_, w_) != 0)                                                     \
      fail_msg("line %d: %s: %s = '%s', want '%s'", __LINE__, (ctx), #got, g_ ? g_ : "(null)", \
               w_);                                                                            \
  } while (0)

static void sql(fixture *f, const char *stmt) {
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_db_exec(f->c, stmt, 0, NULL, NULL, &err), TRYON_OK, &err, stmt);
}
static void begin(fixture *f) {
  sql(f, "BEGIN");
}
static void commit(fixture *f) {
  sql(f, "COMMIT");
}
static void rollback(fixture *f) {
  sql(f, "ROLLBACK");
}

/* The first column of the first row of `q` as an integer; fails on no value. */
static int64_t qiv(tryon_db_conn *c, const char *q, int n, const char *const *p) {
  char *v = tryon_test_query_value(c, q, n, p);
  if (v == NULL)
    fail_msg("no value from: %s", q);
  char *end = NULL;
  long long x = strtoll(v, &end, 10);
  int ok = end != v && *end == '\0';
  char copy[64];
  snprintf(copy, sizeof copy, "%s", v);
  free(v);
  if (!ok)
    fail_msg("not an integer (%s) from: %s", copy, q);
  return x;
}

/* Same with a text $1 (a job id, a state). */
static int64_t qi1(fixture *f, const char *q, const char *arg) {
  const char *p[] = {arg};
  return qiv(f->c, q, 1, p);
}

static int64_t count_jobs(fixture *f) {
  return qiv(f->c, "SELECT count(*) FROM jobs", 0, NULL);
}

static int64_t count_state(fixture *f, const char *state) {
  return qi1(f, "SELECT count(*) FROM jobs WHERE state = $1", state);
}

static int64_t new_user(fixture *f, int64_t telegram_id) {
  char tg[24];
  snprintf(tg, sizeof tg, "%lld", (long long)telegram_id);
  const char *p[] = {tg, "Jobs test"};
  return qiv(f->c, "INSERT INTO users (telegram_id, first_name) VALUES ($1, $2) RETURNING id", 2,
             p);
}

/* Enqueues `s` in a transaction of its own (committed); expects TRYON_OK. */
static bool enqueue_spec(fixture *f, const tryon_job_spec *s, int64_t now,
                         char id[TRYON_UUID_STR_LEN]) {
  tryon_err err;
  bool created = false;
  tryon_err_clear(&err);
  memset(id, 0, TRYON_UUID_STR_LEN);
  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, s, now, id, &created, &err), TRYON_OK, &err, "enqueue");
  commit(f);
  if (strlen(id) != TRYON_UUID_STR_LEN - 1)
    fail_msg("enqueue gave id '%s'", id);
  return created;
}

/* A job of `kind` for `user` (0: none), due at now, with default attempts. */
static void enqueue(fixture *f, const char *kind, int64_t user, int64_t now,
                    char id[TRYON_UUID_STR_LEN]) {
  tryon_job_spec s = {.kind = kind, .user_id = user};
  if (!enqueue_spec(f, &s, now, id))
    fail_msg("enqueue of a new %s job said created=false", kind);
}

/* Same with max_attempts. */
static void enqueue_max(fixture *f, const char *kind, int64_t user, int max_attempts, int64_t now,
                        char id[TRYON_UUID_STR_LEN]) {
  tryon_job_spec s = {.kind = kind, .user_id = user, .max_attempts = max_attempts};
  if (!enqueue_spec(f, &s, now, id))
    fail_msg("enqueue of a new %s job said created=false", kind);
}

static tryon_job get_job(fixture *f, const char *id) {
  tryon_job j;
  tryon_err err;
  memset(&j, 0, sizeof j);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_jobs_get(f->c, id, 0, &j, &err), TRYON_OK, &err, "get");
  EXPECT_STR(j.id, id, "get returns the job asked for");
  return j;
}

static void expect_state(fixture *f, const char *id, tryon_job_state want, const char *ctx) {
  tryon_job j = get_job(f, id);
  tryon_job_state got = j.state;
  int attempts = j.attempts;
  tryon_job_release(&j);
  if (got != want)
    fail_msg("%s: job %s is %s (attempts %d), want %s", ctx, id, tryon_job_state_name(got),
             attempts, tryon_job_state_name(want));
}

static void release_all(tryon_job *jobs, size_t n) {
  for (size_t i = 0; i < n; i++)
    tryon_job_release(&jobs[i]);
}

/* Claims up to `max` (<= 16) jobs; expects TRYON_OK; `out` receives them. */
static size_t claim_opt(fixture *f, const tryon_claim_options *o, int64_t now, tryon_job *out) {
  tryon_err err;
  size_t n = 12345;
  tryon_err_clear(&err);
  memset(out, 0, sizeof *out * (size_t)o->max);
  EXPECT_STATUS(tryon_jobs_claim(f->c, o, now, out, &n, &err), TRYON_OK, &err, "claim");
  if (n > (size_t)o->max)
    fail_msg("claim returned n = %zu for max %d", n, o->max);
  return n;
}

static size_t claim(fixture *f, const char *owner, int max, int64_t lease_ms, int64_t now,
                    tryon_job *out) {
  tryon_claim_options o = {.owner = owner, .max = max, .lease_ms = lease_ms};
  return claim_opt(f, &o, now, out);
}

/* Claims one job and expects it to be `want`; returns its attempts. */
static int claim_expect(fixture *f, const char *owner, int64_t lease_ms, int64_t now,
                        const char *want, const char *ctx) {
  tryon_job j[1];
  size_t n = claim(f, owner, 1, lease_ms, now, j);
  if (n != 1)
    fail_msg("%s: claim at t0%+lld got %zu jobs, want %s", ctx, (long long)(now), n, want);
  int attempts = j[0].attempts;
  char got[TRYON_UUID_STR_LEN];
  snprintf(got, sizeof got, "%s", j[0].id);
  tryon_job_release(&j[0]);
  if (strcmp(got, want) != 0)
    fail_msg("%s: claimed %s, want %s", ctx, got, want);
  return attempts;
}

/* Claims with max 4 and expects nothing. */
static void claim_none(fixture *f, int64_t now, const char *ctx) {
  tryon_job j[4];
  size_t n = claim(f, "nobody", 4, 0, now, j);
  char first[TRYON_UUID_STR_LEN];
  snprintf(first, sizeof first, "%s", n > 0 ? j[0].id : "");
  release_all(j, n);
  if (n != 0)
    fail_msg("%s: claim got %zu jobs (first %s), want none", ctx, n, first);
}

static tryon_status succeed_tx(fixture *f, const char *id, const char *owner, const char *result,
                               int64_t now) {
  tryon_err err;
  tryon_err_clear(&err);
  begin(f);
  tryon_status st = tryon_jobs_succeed(f->c, id, owner, result, now, &err);
  if (st == TRYON_OK)
    commit(f);
  else
    rollback(f);
  return st;
}

static tryon_status fail_tx(fixture *f, const char *id, const char *owner, const char *error,
                            bool retryable, int64_t backoff_ms, int64_t retry_after_ms, int64_t now,
                            bool *final) {
  tryon_err err;
  tryon_err_clear(&err);
  *final = true; /* must be set either way */
  begin(f);
  tryon_status st = tryon_jobs_fail(f->c, id, owner, error, retryable, backoff_ms, retry_after_ms,
                                    now, final, &err);
  if (st == TRYON_OK)
    commit(f);
  else
    rollback(f);
  return st;
}

/* A parsed JSON object (the caller deletes it); fails on anything else. */
static cJSON *json_object(const char *text, const char *ctx) {
  if (text == NULL)
    fail_msg("%s: no JSON", ctx);
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(text, &end, true);
  if (j == NULL || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    fail_msg("%s: not a JSON object: %s", ctx, text);
  }
  return j;
}

static void expect_json_str(const char *text, const char *key, const char *want, const char *ctx) {
  cJSON *j = json_object(text, ctx);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  bool ok = cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
  cJSON_Delete(j);
  if (!ok)
    fail_msg("%s: %s has no \"%s\":\"%s\"", ctx, text, key, want);
}

static void expect_json_num(const char *text, const char *key, double want, const char *ctx) {
  cJSON *j = json_object(text, ctx);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  bool ok = cJSON_IsNumber(v) && v->valuedouble == want;
  cJSON_Delete(j);
  if (!ok)
    fail_msg("%s: %s has no \"%s\":%g", ctx, text, key, want);
}

static int json_size(const char *text, const char *ctx) {
  cJSON *j = json_object(text, ctx);
  int n = cJSON_GetArraySize(j);
  cJSON_Delete(j);
  return n;
}

/* ----------------------------------------------------------------------- enqueueing */

static void test_jobs__enqueue_commits_and_rolls_back_with_the_caller(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  tryon_job j;
  tryon_job_spec s = {.kind = "tryon.generate"};
  bool created = false;

  tryon_err_clear(&err);
  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0, id, &created, &err), TRYON_OK, &err, "enqueue");
  assert_true(created);
  EXPECT_I64(count_jobs(f), 1, "visible inside the transaction");
  rollback(f);
  EXPECT_I64(count_jobs(f), 0, "no job after rollback");
  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, id, 0, &j, &err), TRYON_E_NOT_FOUND, &err,
                "get a rolled-back job");
  tryon_job_release(&j);

  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0, id, &created, &err), TRYON_OK, &err,
                "enqueue 2");
  commit(f);
  EXPECT_I64(count_state(f, "queued"), 1, "one queued job after commit");
  expect_state(f, id, TRYON_JOB_QUEUED, "committed");
}

static void test_jobs__enqueue_defaults(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 1001);
  enqueue(f, "tryon.generate", u, f->t0, id);

  tryon_job j = get_job(f, id);
  EXPECT_STR(j.kind, "tryon.generate", "kind");
  EXPECT_I64(j.state, TRYON_JOB_QUEUED, "state");
  EXPECT_I64(j.max_attempts, 3, "max_attempts 0 means 3");
  EXPECT_I64(j.attempts, 0, "no claim yet");
  EXPECT_I64(j.user_id, u, "user");
  EXPECT_I64(j.progress, 0, "progress");
  EXPECT_MS(j.run_after_ms, f->t0, "run_after 0 means now");
  EXPECT_I64(json_size(j.payload, "payload NULL means {}"), 0, "payload {} has no keys");
  assert_null(j.result);
  assert_null(j.error);
  EXPECT_STR(j.lease_owner, "", "no lease");
  tryon_job_release(&j);

  /* Given values are kept. */
  tryon_job_spec s = {.kind = "a",
                      .payload_json = "{\"photo\":\"p1\",\"n\":2}",
                      .max_attempts = 5,
                      .run_after_ms = f->t0 + 30 * SEC_MS};
  enqueue_spec(f, &s, f->t0, id);
  j = get_job(f, id);
  EXPECT_STR(j.kind, "a", "kind");
  EXPECT_I64(j.max_attempts, 5, "max_attempts");
  EXPECT_I64(j.user_id, 0, "no user");
  EXPECT_MS(j.run_after_ms, f->t0 + 30 * SEC_MS, "run_after");
  expect_json_str(j.payload, "photo", "p1", "payload");
  expect_json_num(j.payload, "n", 2, "payload");
  tryon_job_release(&j);
}

static void test_jobs__enqueue_idempotency_key_returns_the_same_job(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id1[TRYON_UUID_STR_LEN], id2[TRYON_UUID_STR_LEN], id3[TRYON_UUID_STR_LEN];
  tryon_job_spec s = {
      .kind = "tryon.generate", .payload_json = "{\"v\":1}", .idempotency_key = "gen:42"};
  tryon_err_clear(&err);
  assert_true(enqueue_spec(f, &s, f->t0, id1));

  /* The same key, even with another payload, names the first job. */
  tryon_job_spec again = s;
  again.payload_json = "{\"v\":2}";
  bool created = true;
  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &again, f->t0 + 10, id2, &created, &err), TRYON_OK, &err,
                "enqueue again");
  commit(f);
  assert_false(created);
  EXPECT_STR(id2, id1, "same key, same id");
  EXPECT_I64(count_jobs(f), 1, "one row for the key");
  tryon_job j = get_job(f, id1);
  expect_json_num(j.payload, "v", 1, "the first payload is kept");
  tryon_job_release(&j);

  /* `created` is optional. */
  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &again, f->t0 + 20, id3, NULL, &err), TRYON_OK, &err,
                "enqueue again without created");
  commit(f);
  EXPECT_STR(id3, id1, "same key, same id (created NULL)");

  /* Another key is another job. */
  s.idempotency_key = "gen:43";
  assert_true(enqueue_spec(f, &s, f->t0, id2));
  if (strcmp(id1, id2) == 0)
    fail_msg("another key gave the same id %s", id1);
  EXPECT_I64(count_jobs(f), 2, "two keys, two rows");
}

static void test_jobs__enqueue_refuses_bad_input(void **state) {
  fixture *f = *state;
  static const char k64[] = "a234567890123456789012345678901234567890123456789012345678901234";
  static const char k65[] = "a2345678901234567890123456789012345678901234567890123456789012345";
  static const struct {
    const char *kind;
    const char *payload;
    int max_attempts;
    tryon_status want;
  } cases[] = {
      {"a", NULL, 0, TRYON_OK},
      {"tryon.generate_v2", "{}", 1, TRYON_OK},
      {k64, "{\"a\":[1,2]}", 10, TRYON_OK},
      {"", NULL, 0, TRYON_E_INVALID},
      {NULL, NULL, 0, TRYON_E_INVALID},
      {k65, NULL, 0, TRYON_E_INVALID},
      {"Tryon", NULL, 0, TRYON_E_INVALID},
      {"1job", NULL, 0, TRYON_E_INVALID},
      {"_job", NULL, 0, TRYON_E_INVALID},
      {".job", NULL, 0, TRYON_E_INVALID},
      {"job-x", NULL, 0, TRYON_E_INVALID},
      {"job x", NULL, 0, TRYON_E_INVALID},
      {"job'); DROP TABLE jobs; --", NULL, 0, TRYON_E_INVALID},
      {"job", "[]", 0, TRYON_E_INVALID},
      {"job", "[{\"a\":1}]", 0, TRYON_E_INVALID},
      {"job", "1", 0, TRYON_E_INVALID},
      {"job", "\"text\"", 0, TRYON_E_INVALID},
      {"job", "null", 0, TRYON_E_INVALID},
      {"job", "true", 0, TRYON_E_INVALID},
      {"job", "{", 0, TRYON_E_INVALID},
      {"job", "{\"a\":}", 0, TRYON_E_INVALID},
      {"job", "not json", 0, TRYON_E_INVALID},
      {"job", "", 0, TRYON_E_INVALID},
      {"job", NULL, -1, TRYON_E_INVALID},
  };
  int64_t ok = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tryon_err err;
    char id[TRYON_UUID_STR_LEN] = "";
    char ctx[160];
    tryon_job_spec s = {.kind = cases[i].kind,
                        .payload_json = cases[i].payload,
                        .max_attempts = cases[i].max_attempts};
    snprintf(ctx, sizeof ctx, "case %zu: kind '%s' payload '%s' max_attempts %d", i,
             cases[i].kind ? cases[i].kind : "(null)",
             cases[i].payload ? cases[i].payload : "(null)", cases[i].max_attempts);
    tryon_err_clear(&err);
    begin(f);
    EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0, id, NULL, &err), cases[i].want, &err, ctx);
    commit(f); /* a refusal must leave the caller's transaction usable */
    if (cases[i].want == TRYON_OK)
      ok++;
    EXPECT_I64(count_jobs(f), ok, ctx);
  }
}

/* ---------------------------------------------------------------------- claiming */

static void test_jobs__claim_marks_running_under_a_lease(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN], id2[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 2001);
  tryon_job_spec s = {.kind = "tryon.generate", .payload_json = "{\"x\":1}", .user_id = u};
  enqueue_spec(f, &s, f->t0, id);

  tryon_job out[4];
  int64_t now = f->t0 + 100;
  size_t n = claim(f, "host:1:0", 4, 5000, now, out);
  EXPECT_I64((int64_t)n, 1, "one due job");
  EXPECT_STR(out[0].id, id, "claimed id");
  EXPECT_STR(out[0].kind, "tryon.generate", "claimed kind");
  EXPECT_I64(out[0].state, TRYON_JOB_RUNNING, "claimed state");
  EXPECT_I64(out[0].attempts, 1, "claimed attempts");
  EXPECT_I64(out[0].max_attempts, 3, "claimed max_attempts");
  EXPECT_I64(out[0].user_id, u, "claimed user");
  EXPECT_STR(out[0].lease_owner, "host:1:0", "claimed lease owner");
  EXPECT_MS(out[0].lease_expires_ms, now + 5000, "lease = now + lease_ms");
  EXPECT_MS(out[0].started_ms, now, "started");
  expect_json_num(out[0].payload, "x", 1, "claimed payload");
  release_all(out, n);

  /* The row agrees. */
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "stored state");
  EXPECT_I64(j.attempts, 1, "stored attempts");
  EXPECT_STR(j.lease_owner, "host:1:0", "stored lease owner");
  EXPECT_MS(j.lease_expires_ms, now + 5000, "stored lease");
  tryon_job_release(&j);

  /* A running job is not claimed again. */
  claim_none(f, now + 1000, "running job");

  /* lease_ms 0 means 60 s. */
  enqueue(f, "tryon.generate", u, now, id2);
  n = claim(f, "host:1:1", 1, 0, now + 10, out);
  EXPECT_I64((int64_t)n, 1, "second job");
  EXPECT_STR(out[0].id, id2, "second id");
  EXPECT_MS(out[0].lease_expires_ms, now + 10 + DEFAULT_LEASE_MS, "default lease 60 s");
  release_all(out, n);
}

static void test_jobs__claim_takes_the_oldest_due_first(void **state) {
  fixture *f = *state;
  /* Enqueued in this order, due in the order of `due` (offsets from t0). */
  static const int64_t due[] = {-3000, -1000, -5000, -2000, -4000};
  enum { N = sizeof due / sizeof due[0] };
  char ids[N][TRYON_UUID_STR_LEN];
  for (int i = 0; i < N; i++) {
    tryon_job_spec s = {.kind = "k", .run_after_ms = f->t0 + due[i]};
    enqueue_spec(f, &s, f->t0 - 10 * SEC_MS + i, ids[i]);
  }
  /* Oldest due first: -5000 (2), -4000 (4), -3000 (0), -2000 (3), -1000 (1). */
  static const int order[] = {2, 4, 0, 3, 1};
  for (int i = 0; i < N; i++) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "claim %d", i);
    claim_expect(f, "w", 0, f->t0, ids[order[i]], ctx);
  }
  claim_none(f, f->t0, "all claimed");
}

static void test_jobs__claim_waits_for_run_after(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN];
  tryon_job_spec s = {.kind = "k", .run_after_ms = f->t0 + 10 * SEC_MS};
  enqueue_spec(f, &s, f->t0, id);

  claim_none(f, f->t0, "not due at enqueue time");
  claim_none(f, f->t0 + 10 * SEC_MS - 1, "not due 1 ms before run_after");
  claim_expect(f, "w", 0, f->t0 + 10 * SEC_MS, id, "due at run_after");
}

static void test_jobs__claim_filters_by_kind(void **state) {
  fixture *f = *state;
  static const char *const kinds[] = {"a", "b.x", "c", "b"};
  char ids[4][TRYON_UUID_STR_LEN];
  for (int i = 0; i < 4; i++)
    enqueue(f, kinds[i], 0, f->t0 + i, ids[i]);

  tryon_job out[8];
  const char *const want_b[] = {"b", "b.x", NULL};
  tryon_claim_options o = {.owner = "w", .max = 8, .kinds = want_b};
  size_t n = claim_opt(f, &o, f->t0 + 100, out);
  EXPECT_I64((int64_t)n, 2, "jobs of kinds b and b.x");
  for (size_t i = 0; i < n; i++)
    if (strcmp(out[i].kind, "b") != 0 && strcmp(out[i].kind, "b.x") != 0)
      fail_msg("claimed a job of kind %s with kinds {b, b.x}", out[i].kind);
  release_all(out, n);

  const char *const want_z[] = {"z", NULL};
  o.kinds = want_z;
  n = claim_opt(f, &o, f->t0 + 100, out);
  release_all(out, n);
  EXPECT_I64((int64_t)n, 0, "no job of kind z");

  o.kinds = NULL;
  n = claim_opt(f, &o, f->t0 + 100, out);
  EXPECT_I64((int64_t)n, 2, "NULL kinds: the rest (a, c)");
  for (size_t i = 0; i < n; i++)
    if (strcmp(out[i].kind, "a") != 0 && strcmp(out[i].kind, "c") != 0)
      fail_msg("claimed a job of kind %s again", out[i].kind);
  release_all(out, n);
}

static void test_jobs__claim_limits_running_jobs_per_user(void **state) {
  fixture *f = *state;
  int64_t a = new_user(f, 3001), b = new_user(f, 3002);
  char a1[TRYON_UUID_STR_LEN], a2[TRYON_UUID_STR_LEN], a3[TRYON_UUID_STR_LEN];
  char b1[TRYON_UUID_STR_LEN], h[TRYON_UUID_STR_LEN];
  enqueue(f, "k", a, f->t0 + 1, a1);
  enqueue(f, "k", a, f->t0 + 2, a2);
  enqueue(f, "k", a, f->t0 + 3, a3);
  enqueue(f, "k", b, f->t0 + 4, b1);
  enqueue(f, "k", 0, f->t0 + 5, h);

  int64_t now = f->t0 + 100;
  /* One at a time, default limit (2): a1, a2, then a3 is skipped for b1. */
  claim_expect(f, "w", 0, now, a1, "first");
  claim_expect(f, "w", 0, now, a2, "second");
  claim_expect(f, "w", 0, now, b1, "user a has 2 running: b's job next");
  claim_expect(f, "w", 0, now, h, "then the job without a user");
  claim_none(f, now, "only a's third job is left");
  expect_state(f, a3, TRYON_JOB_QUEUED, "a3 waits");

  /* When one of a's jobs finishes, a3 can run. */
  assert_int_equal(succeed_tx(f, a1, "w", NULL, now + 10), TRYON_OK);
  claim_expect(f, "w", 0, now + 20, a3, "a has a free slot");

  /* An explicit limit of 1. */
  char b2[TRYON_UUID_STR_LEN];
  enqueue(f, "k", b, now + 30, b2);
  tryon_job out[4];
  tryon_claim_options o = {.owner = "w", .max = 4, .per_user_running = 1};
  size_t n = claim_opt(f, &o, now + 40, out);
  release_all(out, n);
  EXPECT_I64((int64_t)n, 0, "b has 1 running: limit 1");
  o.per_user_running = 3;
  n = claim_opt(f, &o, now + 40, out);
  EXPECT_I64((int64_t)n, 1, "limit 3");
  EXPECT_STR(out[0].id, b2, "b's second job");
  release_all(out, n);
}

/* The limit bounds a user's running jobs after the claim, also within one batch. */
static void test_jobs__claim_limit_per_user_holds_within_one_batch(void **state) {
  fixture *f = *state;
  int64_t a = new_user(f, 3101), b = new_user(f, 3102);
  char ids[5][TRYON_UUID_STR_LEN];
  enqueue(f, "k", a, f->t0 + 1, ids[0]);
  enqueue(f, "k", a, f->t0 + 2, ids[1]);
  enqueue(f, "k", a, f->t0 + 3, ids[2]);
  enqueue(f, "k", a, f->t0 + 4, ids[3]);
  enqueue(f, "k", b, f->t0 + 5, ids[4]);

  tryon_job out[10];
  size_t n = claim(f, "w", 10, 0, f->t0 + 100, out);
  int for_a = 0, for_b = 0;
  for (size_t i = 0; i < n; i++) {
    if (out[i].user_id == a)
      for_a++;
    else if (out[i].user_id == b)
      for_b++;
  }
  release_all(out, n);
  if (for_a != 2 || for_b != 1 || n != 3)
    fail_msg("one claim of 10 with the default limit 2 took %d of a's 4 jobs and %d of b's 1 "
             "(%zu in all); want 2 and 1",
             for_a, for_b, n);
  EXPECT_I64(qiv(f->c,
                 "SELECT max(c) FROM (SELECT count(*) AS c FROM jobs"
                 " WHERE state = 'running' GROUP BY user_id) x",
                 0, NULL),
             2, "most running jobs of one user");
}

/* ------------------------------------------------------------------ racing claimers */

#define RACERS 8
#define RACE_JOBS 500

typedef struct racer_arg {
  tryon_db *db;
  pthread_barrier_t *barrier;
  int index;
  int64_t now;
  char (*got)[TRYON_UUID_STR_LEN]; /* RACE_JOBS entries */
  int ngot;
  int overflow;
  char error[256];
} racer_arg;

static void *racer(void *p) {
  racer_arg *r = p;
  tryon_db_conn *c = NULL;
  tryon_err err;
  char owner[32];
  tryon_err_clear(&err);
  snprintf(owner, sizeof owner, "racer:%d", r->index);
  tryon_status ast = tryon_db_acquire(r->db, &c, &err);
  pthread_barrier_wait(r->barrier);
  if (ast != TRYON_OK) {
    snprintf(r->error, sizeof r->error, "acquire: %.200s", err.message);
    return NULL;
  }
  /* Claims until a claim finds nothing; a bound stops a claim that never runs dry. */
  for (int round = 0; round < 2 * RACE_JOBS; round++) {
    tryon_job out[5];
    size_t n = 0;
    tryon_claim_options o = {.owner = owner, .max = 5, .per_user_running = 1000};
    memset(out, 0, sizeof out);
    tryon_status st = tryon_jobs_claim(c, &o, r->now, out, &n, &err);
    if (st != TRYON_OK) {
      snprintf(r->error, sizeof r->error, "claim: %s: %.200s", tryon_status_name(st), err.message);
      break;
    }
    for (size_t i = 0; i < n && i < 5; i++) {
      if (r->ngot < RACE_JOBS)
        snprintf(r->got[r->ngot++], TRYON_UUID_STR_LEN, "%.36s", out[i].id);
      else
        r->overflow++;
      tryon_job_release(&out[i]);
    }
    if (n == 0)
      break;
  }
  tryon_db_release(c);
  return NULL;
}

static int cmp_id(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

static void test_jobs__concurrent_claimers_take_each_job_once(void **state) {
  fixture *f = *state;
  tryon_err err;
  char(*queued)[TRYON_UUID_STR_LEN] = calloc(RACE_JOBS, TRYON_UUID_STR_LEN);
  char(*all)[TRYON_UUID_STR_LEN] = calloc(RACE_JOBS * (RACERS + 1), TRYON_UUID_STR_LEN);
  racer_arg *args = calloc(RACERS, sizeof *args);
  assert_true(queued && all && args);

  /* 500 due jobs, enqueued in one transaction. */
  tryon_err_clear(&err);
  begin(f);
  for (int i = 0; i < RACE_JOBS; i++) {
    tryon_job_spec s = {.kind = "race"};
    EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0 - MIN_MS + i, queued[i], NULL, &err), TRYON_OK,
                  &err, "enqueue");
  }
  commit(f);

  /* The racers claim at t0 + 1 min: every job is due. */
  pthread_t th[RACERS];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, RACERS);
  for (int i = 0; i < RACERS; i++) {
    args[i].db = f->db;
    args[i].barrier = &barrier;
    args[i].index = i;
    args[i].now = f->t0 + MIN_MS;
    args[i].got = all + (size_t)i * RACE_JOBS;
  }
  for (int i = 0; i < RACERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, racer, &args[i]), 0);
  for (int i = 0; i < RACERS; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&barrier);

  /* Gather every claimed id. */
  char(*claimed)[TRYON_UUID_STR_LEN] = calloc(RACE_JOBS * RACERS, TRYON_UUID_STR_LEN);
  assert_non_null(claimed);
  int total = 0, overflow = 0, busy = 0;
  char first_error[300] = "";
  for (int i = 0; i < RACERS; i++) {
    if (args[i].error[0] != '\0' && first_error[0] == '\0')
      snprintf(first_error, sizeof first_error, "racer %d: %s", i, args[i].error);
    overflow += args[i].overflow;
    if (args[i].ngot > 0)
      busy++;
    for (int k = 0; k < args[i].ngot; k++)
      memcpy(claimed[total++], args[i].got[k], TRYON_UUID_STR_LEN);
  }
  qsort(claimed, (size_t)total, TRYON_UUID_STR_LEN, cmp_id);
  qsort(queued, RACE_JOBS, TRYON_UUID_STR_LEN, cmp_id);
  int dups = 0;
  for (int i = 1; i < total; i++)
    if (strcmp(claimed[i - 1], claimed[i]) == 0)
      dups++;
  int mismatch = -1;
  if (total == RACE_JOBS)
    for (int i = 0; i < RACE_JOBS && mismatch < 0; i++)
      if (strcmp(claimed[i], queued[i]) != 0)
        mismatch = i;
  int64_t running = count_state(f, "running");
  int64_t left = count_state(f, "queued");
  int64_t not_once = qiv(f->c, "SELECT count(*) FROM jobs WHERE attempts <> 1", 0, NULL);
  free(claimed);
  free(queued);
  free(all);
  free(args);

  if (first_error[0] != '\0')
    fail_msg("%s", first_error);
  if (overflow > 0 || dups > 0 || total != RACE_JOBS || mismatch >= 0)
    fail_msg("%d racers claimed %d jobs (+%d beyond %d) with %d duplicates%s; want each of "
             "%d jobs exactly once",
             RACERS, total, overflow, RACE_JOBS, dups, mismatch >= 0 ? " and ids not enqueued" : "",
             RACE_JOBS);
  EXPECT_I64(running, RACE_JOBS, "all running");
  EXPECT_I64(left, 0, "none left queued");
  EXPECT_I64(not_once, 0, "jobs whose attempts is not 1");
  print_message("racers with work: %d of %d\n", busy, RACERS);
}

/* ------------------------------------------------------------------- leases, progress */

static void test_jobs__heartbeat_extends_the_lease(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  tryon_err_clear(&err);
  enqueue(f, "k", 0, f->t0, id);
  claim_expect(f, "w1", 1000, f->t0, id, "claim");

  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, id, "w1", 5000, f->t0 + 500, &err), TRYON_OK, &err,
                "heartbeat");
  tryon_job j = get_job(f, id);
  EXPECT_MS(j.lease_expires_ms, f->t0 + 5500, "lease renewed to now + lease_ms");
  EXPECT_STR(j.lease_owner, "w1", "owner kept");
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "still running");
  EXPECT_I64(j.attempts, 1, "a heartbeat is no attempt");
  tryon_job_release(&j);

  /* The old expiry passed: the reaper leaves the renewed lease alone. */
  size_t requeued = 99, nfailed = 99;
  EXPECT_STATUS(tryon_jobs_reap(f->c, NULL, f->t0 + 2000, &requeued, &nfailed, &err), TRYON_OK,
                &err, "reap");
  EXPECT_I64((int64_t)requeued, 0, "requeued");
  EXPECT_I64((int64_t)nfailed, 0, "failed");
  expect_state(f, id, TRYON_JOB_RUNNING, "renewed lease survives the reaper");

  /* Somebody else's heartbeat changes nothing. */
  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, id, "w2", 60000, f->t0 + 600, &err), TRYON_E_CONFLICT,
                &err, "heartbeat by another owner");
  j = get_job(f, id);
  EXPECT_MS(j.lease_expires_ms, f->t0 + 5500, "lease unchanged by the wrong owner");
  EXPECT_STR(j.lease_owner, "w1", "owner unchanged");
  tryon_job_release(&j);

  /* Once finished there is no lease to renew. */
  assert_int_equal(succeed_tx(f, id, "w1", NULL, f->t0 + 700), TRYON_OK);
  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, id, "w1", 5000, f->t0 + 800, &err), TRYON_E_CONFLICT,
                &err, "heartbeat of a finished job");

  /* A queued job is not running. */
  char q[TRYON_UUID_STR_LEN];
  enqueue(f, "k", 0, f->t0 + 900, q);
  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, q, "w1", 5000, f->t0 + 900, &err), TRYON_E_CONFLICT,
                &err, "heartbeat of a queued job");
}

static void test_jobs__progress_records_stage_and_merges_checkpoint(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 4001);
  tryon_err_clear(&err);
  tryon_job_spec s = {
      .kind = "tryon.generate", .payload_json = "{\"photo\":\"p1\",\"n\":7}", .user_id = u};
  enqueue_spec(f, &s, f->t0, id);
  claim_expect(f, "w1", 0, f->t0, id, "claim");

  EXPECT_STATUS(tryon_jobs_progress(f->c, id, "w1", 40, "uploading", NULL, f->t0 + 10, &err),
                TRYON_OK, &err, "progress without checkpoint");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.progress, 40, "progress");
  EXPECT_STR(j.stage, "uploading", "stage");
  EXPECT_I64(json_size(j.payload, "payload"), 2, "payload untouched without a checkpoint");
  tryon_job_release(&j);

  EXPECT_STATUS(tryon_jobs_progress(f->c, id, "w1", 60, "generating",
                                    "{\"task_id\":\"kie-123\",\"n\":8}", f->t0 + 20, &err),
                TRYON_OK, &err, "progress with checkpoint");
  j = get_job(f, id);
  EXPECT_I64(j.progress, 60, "progress");
  EXPECT_STR(j.stage, "generating", "stage");
  expect_json_str(j.payload, "task_id", "kie-123", "checkpoint key in the payload");
  expect_json_num(j.payload, "n", 8, "checkpoint value wins");
  expect_json_str(j.payload, "photo", "p1", "earlier payload key kept");
  EXPECT_I64(json_size(j.payload, "payload"), 3, "payload keys after the merge");
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "still running");
  tryon_job_release(&j);

  /* A second checkpoint adds to the first. */
  EXPECT_STATUS(tryon_jobs_progress(f->c, id, "w1", 80, "downloading", "{\"result_url\":\"u\"}",
                                    f->t0 + 30, &err),
                TRYON_OK, &err, "progress with a second checkpoint");
  j = get_job(f, id);
  expect_json_str(j.payload, "task_id", "kie-123", "first checkpoint kept");
  expect_json_str(j.payload, "result_url", "u", "second checkpoint");
  EXPECT_I64(j.progress, 80, "progress");
  tryon_job_release(&j);

  /* The wrong owner changes nothing. */
  EXPECT_STATUS(
      tryon_jobs_progress(f->c, id, "w2", 99, "stolen", "{\"task_id\":\"evil\"}", f->t0 + 40, &err),
      TRYON_E_CONFLICT, &err, "progress by another owner");
  j = get_job(f, id);
  EXPECT_I64(j.progress, 80, "progress unchanged");
  EXPECT_STR(j.stage, "downloading", "stage unchanged");
  expect_json_str(j.payload, "task_id", "kie-123", "checkpoint unchanged");
  tryon_job_release(&j);

  /* The checkpoint survives a requeue, so a rerun resumes. */
  tryon_job out[1];
  size_t requeued = 0;
  EXPECT_STATUS(tryon_jobs_reap(f->c, NULL, f->t0 + 2 * DEFAULT_LEASE_MS, &requeued, NULL, &err),
                TRYON_OK, &err, "reap");
  EXPECT_I64((int64_t)requeued, 1, "requeued");
  size_t n = claim(f, "w2", 1, 0, f->t0 + 2 * DEFAULT_LEASE_MS, out);
  EXPECT_I64((int64_t)n, 1, "claimed again");
  expect_json_str(out[0].payload, "task_id", "kie-123", "checkpoint in the rerun's payload");
  expect_json_str(out[0].payload, "photo", "p1", "original payload in the rerun");
  release_all(out, n);
}

/* ------------------------------------------------------------------------ finishing */

static void test_jobs__succeed_commits_with_the_caller(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 5001);
  tryon_err_clear(&err);
  enqueue(f, "tryon.generate", u, f->t0, id);
  claim_expect(f, "w1", 0, f->t0, id, "claim");

  /* Rolled back with the caller's transaction. */
  begin(f);
  EXPECT_STATUS(tryon_jobs_succeed(f->c, id, "w1", "{\"upload\":\"u1\"}", f->t0 + 100, &err),
                TRYON_OK, &err, "succeed");
  rollback(f);
  expect_state(f, id, TRYON_JOB_RUNNING, "succeed rolled back");

  begin(f);
  EXPECT_STATUS(tryon_jobs_succeed(f->c, id, "w1", "{\"upload\":\"u1\"}", f->t0 + 200, &err),
                TRYON_OK, &err, "succeed");
  commit(f);
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_SUCCEEDED, "state");
  expect_json_str(j.result, "upload", "u1", "result");
  EXPECT_MS(j.finished_ms, f->t0 + 200, "finished");
  EXPECT_STR(j.lease_owner, "", "lease gone");
  EXPECT_I64(j.attempts, 1, "attempts");
  tryon_job_release(&j);
  EXPECT_I64(qi1(f,
                 "SELECT count(*) FROM jobs WHERE id = $1::uuid"
                 " AND lease_owner IS NULL AND lease_expires_at IS NULL",
                 id),
             1, "no lease left on the row");

  /* Finished is final. */
  EXPECT_I64(succeed_tx(f, id, "w1", NULL, f->t0 + 300), TRYON_E_CONFLICT, "succeed twice");
  bool final = true;
  EXPECT_I64(fail_tx(f, id, "w1", "{\"code\":\"x\"}", false, 0, 0, f->t0 + 300, &final),
             TRYON_E_CONFLICT, "fail after success");
  assert_false(final);
  expect_state(f, id, TRYON_JOB_SUCCEEDED, "still succeeded");

  /* A NULL result is accepted. */
  char id2[TRYON_UUID_STR_LEN];
  enqueue(f, "k", 0, f->t0 + 400, id2);
  claim_expect(f, "w1", 0, f->t0 + 400, id2, "claim 2");
  EXPECT_I64(succeed_tx(f, id2, "w1", NULL, f->t0 + 500), TRYON_OK, "succeed with NULL result");
  expect_state(f, id2, TRYON_JOB_SUCCEEDED, "NULL result");
}

static void test_jobs__succeed_refuses_a_wrong_owner(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN], q[TRYON_UUID_STR_LEN];
  enqueue(f, "k", 0, f->t0, id);
  claim_expect(f, "w1", 0, f->t0, id, "claim");

  EXPECT_I64(succeed_tx(f, id, "w2", "{\"by\":\"w2\"}", f->t0 + 10), TRYON_E_CONFLICT,
             "succeed by another owner");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "still running");
  EXPECT_STR(j.lease_owner, "w1", "still w1's");
  assert_null(j.result);
  tryon_job_release(&j);

  /* Queued is not running: nobody can succeed it. */
  enqueue(f, "k", 0, f->t0 + 20, q);
  EXPECT_I64(succeed_tx(f, q, "w1", NULL, f->t0 + 30), TRYON_E_CONFLICT, "succeed a queued job");
  expect_state(f, q, TRYON_JOB_QUEUED, "still queued");

  EXPECT_I64(succeed_tx(f, id, "w1", "{\"by\":\"w1\"}", f->t0 + 40), TRYON_OK,
             "succeed by the owner");
}

static void test_jobs__fail_retryable_backs_off(void **state) {
  fixture *f = *state;
  /* The measured failure is that of attempt `attempt`; the delay must lie within
   * [0, min(base * 2^(attempt-1), 5 min)] (full jitter). */
  static const struct {
    int attempt;
    int64_t base;
    int64_t bound;
  } cases[] = {
      {1, 1000, 1000},
      {2, 1000, 2000},
      {3, 1000, 4000},
      {1, 0, DEFAULT_BACKOFF_MS},
      {2, 0, 2 * DEFAULT_BACKOFF_MS},
      {3, 0, 4 * DEFAULT_BACKOFF_MS},
      {4, 100 * SEC_MS, BACKOFF_CAP_MS},  /* 800 s uncapped */
      {9, 100 * SEC_MS, BACKOFF_CAP_MS},  /* 25600 s uncapped */
      {12, 100 * SEC_MS, BACKOFF_CAP_MS}, /* 2^11 * 100 s uncapped */
  };
  int64_t now = f->t0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    /* Several jobs per row, so that an uncapped or unbounded delay is not hidden by a
     * lucky draw; and full jitter means the delays are not all the bound itself. */
    int at_bound = 0;
    for (int rep = 0; rep < 3; rep++) {
      char id[TRYON_UUID_STR_LEN], ctx[128];
      bool final = true;
      snprintf(ctx, sizeof ctx, "case %zu (attempt %d, base %lld) #%d", c, cases[c].attempt,
               (long long)cases[c].base, rep);
      enqueue_max(f, "k", 0, 20, now, id);
      for (int a = 1; a <= cases[c].attempt; a++) {
        now += 10;
        int got = claim_expect(f, "w", 0, now, id, ctx);
        if (got != a)
          fail_msg("%s: claim %d counted attempts %d", ctx, a, got);
        if (a < cases[c].attempt) {
          /* Earlier attempts fail with a 1 ms Retry-After to get on quickly. */
          EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"busy\"}", true, 0, 1, now, &final), TRYON_OK,
                     ctx);
          assert_false(final);
          now += 1;
        }
      }
      now += 10;
      EXPECT_I64(
          fail_tx(f, id, "w", "{\"code\":\"provider_5xx\"}", true, cases[c].base, 0, now, &final),
          TRYON_OK, ctx);
      if (final)
        fail_msg("%s: final = true with attempts left", ctx);
      tryon_job j = get_job(f, id);
      int64_t run_after = j.run_after_ms;
      tryon_job_state st = j.state;
      int attempts = j.attempts;
      bool leased = j.lease_owner[0] != '\0';
      tryon_job_release(&j);
      if (st != TRYON_JOB_QUEUED || attempts != cases[c].attempt || leased)
        fail_msg("%s: after a retryable failure: %s, attempts %d, lease %s; want queued, %d, none",
                 ctx, tryon_job_state_name(st), attempts, leased ? "kept" : "gone",
                 cases[c].attempt);
      if (run_after < now - 1 || run_after > now + cases[c].bound + 1)
        fail_msg("%s: run_after = now %+lld ms, want within [0, %lld]", ctx,
                 (long long)(run_after - now), (long long)cases[c].bound);
      if (run_after >= now + cases[c].bound - 1)
        at_bound++;
      /* Not claimable before it is due; claimable once due, counting the next attempt. */
      if (run_after - now > 2)
        claim_none(f, run_after - 2, ctx);
      now = run_after > now ? run_after + 1 : now + 1;
      int got = claim_expect(f, "w", 0, now, id, ctx);
      if (got != cases[c].attempt + 1)
        fail_msg("%s: the retry's claim counted attempts %d, want %d", ctx, got,
                 cases[c].attempt + 1);
      EXPECT_I64(succeed_tx(f, id, "w", NULL, now), TRYON_OK, ctx);
    }
    if (at_bound == 3)
      fail_msg("case %zu: three delays all at the bound %lld ms: no jitter", c,
               (long long)cases[c].bound);
  }
}

static void test_jobs__fail_retry_after_is_honoured(void **state) {
  fixture *f = *state;
  static const int64_t retry_after[] = {1, 7000, 45 * SEC_MS, 4 * MIN_MS};
  for (size_t i = 0; i < sizeof retry_after / sizeof retry_after[0]; i++) {
    char id[TRYON_UUID_STR_LEN], ctx[64];
    bool final = true;
    int64_t now = f->t0 + (int64_t)i * 10 * MIN_MS;
    snprintf(ctx, sizeof ctx, "retry_after %lld ms", (long long)retry_after[i]);
    enqueue(f, "k", 0, now, id);
    claim_expect(f, "w", 0, now, id, ctx);
    EXPECT_I64(
        fail_tx(f, id, "w", "{\"code\":\"rate_limited\"}", true, 1000, retry_after[i], now, &final),
        TRYON_OK, ctx);
    assert_false(final);
    tryon_job j = get_job(f, id);
    EXPECT_I64(j.state, TRYON_JOB_QUEUED, ctx);
    EXPECT_MS(j.run_after_ms, now + retry_after[i], ctx);
    tryon_job_release(&j);
    if (retry_after[i] > 1)
      claim_none(f, now + retry_after[i] - 2, ctx);
    claim_expect(f, "w", 0, now + retry_after[i] + 1, id, ctx);
    EXPECT_I64(succeed_tx(f, id, "w", NULL, now + retry_after[i] + 2), TRYON_OK, ctx);
  }
}

static void test_jobs__fail_final_after_max_attempts_once(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 6001);
  bool final = true;
  int64_t now = f->t0;
  enqueue_max(f, "tryon.generate", u, 2, now, id);

  claim_expect(f, "w", 0, now, id, "attempt 1");
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e1\"}", true, 0, 1, now, &final), TRYON_OK, "fail 1");
  assert_false(final);
  now += 10;
  int a = claim_expect(f, "w", 0, now, id, "attempt 2");
  EXPECT_I64(a, 2, "attempts");

  /* Rolled back with the caller: still running. */
  tryon_err err;
  tryon_err_clear(&err);
  final = false;
  begin(f);
  EXPECT_STATUS(
      tryon_jobs_fail(f->c, id, "w", "{\"code\":\"e2\"}", true, 0, 0, now + 1, &final, &err),
      TRYON_OK, &err, "fail 2 (rolled back)");
  assert_true(final);
  rollback(f);
  expect_state(f, id, TRYON_JOB_RUNNING, "final failure rolled back");

  final = false;
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e2\"}", true, 0, 0, now + 2, &final), TRYON_OK,
             "fail 2");
  if (!final)
    fail_msg("the last attempt's failure gave final = false");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_FAILED, "state");
  expect_json_str(j.error, "code", "e2", "error");
  EXPECT_MS(j.finished_ms, now + 2, "finished");
  EXPECT_STR(j.lease_owner, "", "lease gone");
  tryon_job_release(&j);

  /* Only once: the hook must not run again. */
  final = true;
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e3\"}", true, 0, 0, now + 3, &final),
             TRYON_E_CONFLICT, "fail a failed job");
  if (final)
    fail_msg("a refused fail set final = true");
  final = true;
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e3\"}", false, 0, 0, now + 3, &final),
             TRYON_E_CONFLICT, "fail a failed job, not retryable");
  assert_false(final);
  j = get_job(f, id);
  expect_json_str(j.error, "code", "e2", "error unchanged");
  tryon_job_release(&j);
  claim_none(f, now + 60 * MIN_MS, "a failed job is not claimed");
}

static void test_jobs__fail_not_retryable_is_final(void **state) {
  fixture *f = *state;
  char id[TRYON_UUID_STR_LEN];
  bool final = false;
  enqueue_max(f, "k", 0, 5, f->t0, id);
  claim_expect(f, "w", 0, f->t0, id, "claim");

  EXPECT_I64(fail_tx(f, id, "w2", "{\"code\":\"x\"}", false, 0, 0, f->t0 + 5, &final),
             TRYON_E_CONFLICT, "fail by another owner");
  assert_false(final);
  expect_state(f, id, TRYON_JOB_RUNNING, "the wrong owner changed nothing");

  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"bad_input\"}", false, 0, 0, f->t0 + 10, &final),
             TRYON_OK, "fail, not retryable");
  if (!final)
    fail_msg("a non-retryable failure with 4 attempts left gave final = false");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_FAILED, "state");
  expect_json_str(j.error, "code", "bad_input", "error");
  EXPECT_I64(j.attempts, 1, "attempts");
  tryon_job_release(&j);
  claim_none(f, f->t0 + 60 * MIN_MS, "not claimed again");
}

/* ------------------------------------------------------------------------- reaping */

/* A failure hook that records what it saw, or refuses when told to. */
typedef struct hook_log {
  size_t n;
  char ids[8][TRYON_UUID_STR_LEN];
  tryon_job_state states[8];
  bool refuse; /* refuse refuse_id, or every job when it is "" */
  char refuse_id[TRYON_UUID_STR_LEN];
} hook_log;

static tryon_status record_hook(tryon_db_conn *c, const tryon_job *job, void *ud, tryon_err *err) {
  hook_log *h = ud;
  (void)c;
  if (h->refuse && (h->refuse_id[0] == '\0' || strcmp(h->refuse_id, job->id) == 0))
    return tryon_err_set(err, TRYON_E_INTERNAL, "hook refused");
  if (h->n < 8) {
    snprintf(h->ids[h->n], TRYON_UUID_STR_LEN, "%s", job->id);
    h->states[h->n] = job->state;
  }
  h->n++;
  return TRYON_OK;
}

static void test_jobs__reap_requeues_or_fails_expired_leases(void **state) {
  fixture *f = *state;
  tryon_err err;
  char again[TRYON_UUID_STR_LEN], last[TRYON_UUID_STR_LEN], live[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 7001);
  tryon_err_clear(&err);

  enqueue_max(f, "k", u, 3, f->t0, again);
  claim_expect(f, "w1", 1000, f->t0 + 10, again, "claim: attempts left");
  enqueue_max(f, "k", 0, 1, f->t0 + 15, last);
  claim_expect(f, "w2", 1000, f->t0 + 20, last, "claim: the last attempt");
  enqueue_max(f, "k", 0, 1, f->t0 + 25, live);
  claim_expect(f, "w3", 60000, f->t0 + 30, live, "claim: live lease");

  /* Nothing has expired yet. */
  size_t requeued = 99, nfailed = 99;
  hook_log failed = {0};
  tryon_reap_options ro = {.on_final = record_hook, .ud = &failed};
  EXPECT_STATUS(tryon_jobs_reap(f->c, &ro, f->t0 + 500, &requeued, &nfailed, &err), TRYON_OK, &err,
                "early reap");
  EXPECT_I64((int64_t)requeued, 0, "early requeued");
  EXPECT_I64((int64_t)nfailed, 0, "early failed");

  int64_t now = f->t0 + 5000;
  requeued = 99;
  nfailed = 99;
  EXPECT_STATUS(tryon_jobs_reap(f->c, &ro, now, &requeued, &nfailed, &err), TRYON_OK, &err, "reap");
  EXPECT_I64((int64_t)requeued, 1, "requeued");
  EXPECT_I64((int64_t)nfailed, 1, "failed");
  EXPECT_I64((int64_t)failed.n, 1, "the hook ran once");
  EXPECT_STR(failed.ids[0], last, "the hook saw the failed job");
  EXPECT_I64(failed.states[0], TRYON_JOB_FAILED, "the hook saw it failed");

  tryon_job j = get_job(f, again);
  EXPECT_I64(j.state, TRYON_JOB_QUEUED, "requeued job's state");
  EXPECT_I64(j.attempts, 1, "attempts count claims, not reaps");
  EXPECT_STR(j.lease_owner, "", "requeued job's lease gone");
  if (j.run_after_ms > now + 1)
    fail_msg("requeued job due at now %+lld ms, want at once", (long long)(j.run_after_ms - now));
  tryon_job_release(&j);

  j = get_job(f, last);
  EXPECT_I64(j.state, TRYON_JOB_FAILED, "last attempt's state");
  expect_json_str(j.error, "code", "lease_expired", "last attempt's error");
  EXPECT_STR(j.lease_owner, "", "failed job's lease gone");
  if (j.finished_ms == 0)
    fail_msg("a reaped failed job has no finished time");
  tryon_job_release(&j);

  j = get_job(f, live);
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "live lease untouched");
  EXPECT_STR(j.lease_owner, "w3", "live owner");
  EXPECT_MS(j.lease_expires_ms, f->t0 + 60030, "live lease");
  tryon_job_release(&j);

  /* The requeued job is claimable at once and counts its second attempt. */
  int a = claim_expect(f, "w4", 0, now, again, "claim the requeued job");
  EXPECT_I64(a, 2, "second claim");

  /* A second reap finds nothing: the failed job is listed once. */
  requeued = 99;
  nfailed = 99;
  EXPECT_STATUS(tryon_jobs_reap(f->c, &ro, now + 10, &requeued, &nfailed, &err), TRYON_OK, &err,
                "second reap");
  EXPECT_I64((int64_t)requeued, 0, "second reap requeued");
  EXPECT_I64((int64_t)nfailed, 0, "second reap failed");
  EXPECT_I64((int64_t)failed.n, 1, "the hook did not run again");

  /* Counts and list are optional. */
  EXPECT_STATUS(tryon_jobs_reap(f->c, NULL, now + 20, NULL, NULL, &err), TRYON_OK, &err,
                "reap without outputs");
}

static void test_jobs__expired_worker_cannot_finish_a_reclaimed_job(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  bool final = true;
  size_t requeued = 0;
  tryon_err_clear(&err);
  enqueue(f, "tryon.generate", 0, f->t0, id);
  claim_expect(f, "w1", 1000, f->t0, id, "w1 claims");

  EXPECT_STATUS(tryon_jobs_reap(f->c, NULL, f->t0 + 2000, &requeued, NULL, &err), TRYON_OK, &err,
                "reap");
  EXPECT_I64((int64_t)requeued, 1, "requeued");
  int a = claim_expect(f, "w2", 60000, f->t0 + 2000, id, "w2 claims");
  EXPECT_I64(a, 2, "w2's attempt");

  /* w1 wakes up: all refused, nothing changed. */
  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, id, "w1", 1000, f->t0 + 2100, &err), TRYON_E_CONFLICT,
                &err, "w1 heartbeat");
  EXPECT_STATUS(
      tryon_jobs_progress(f->c, id, "w1", 90, "late", "{\"w1\":true}", f->t0 + 2100, &err),
      TRYON_E_CONFLICT, &err, "w1 progress");
  EXPECT_I64(succeed_tx(f, id, "w1", "{\"by\":\"w1\"}", f->t0 + 2200), TRYON_E_CONFLICT,
             "w1 succeed");
  EXPECT_I64(fail_tx(f, id, "w1", "{\"code\":\"w1\"}", false, 0, 0, f->t0 + 2200, &final),
             TRYON_E_CONFLICT, "w1 fail");
  if (final)
    fail_msg("a refused fail set final = true");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_RUNNING, "still running");
  EXPECT_STR(j.lease_owner, "w2", "still w2's");
  EXPECT_MS(j.lease_expires_ms, f->t0 + 62000, "w2's lease");
  assert_null(j.result);
  assert_null(j.error);
  tryon_job_release(&j);

  /* w2 can. */
  EXPECT_I64(succeed_tx(f, id, "w2", "{\"by\":\"w2\"}", f->t0 + 3000), TRYON_OK, "w2 succeed");
  j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_SUCCEEDED, "succeeded");
  expect_json_str(j.result, "by", "w2", "w2's result");
  tryon_job_release(&j);
}

/* ------------------------------------------------------------- users and operators */

enum { BY_OWNER, BY_OPERATOR, BY_OTHER };

static void test_jobs__cancel(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 8001), other = new_user(f, 8002);
  static const struct {
    const char *name;
    int by;
    tryon_job_state before;
    tryon_status want;
    tryon_job_state after;
  } cases[] = {
      {"queued, by its user", BY_OWNER, TRYON_JOB_QUEUED, TRYON_OK, TRYON_JOB_CANCELLED},
      {"queued, by an operator", BY_OPERATOR, TRYON_JOB_QUEUED, TRYON_OK, TRYON_JOB_CANCELLED},
      {"queued, by another user", BY_OTHER, TRYON_JOB_QUEUED, TRYON_E_NOT_FOUND, TRYON_JOB_QUEUED},
      {"running, by its user", BY_OWNER, TRYON_JOB_RUNNING, TRYON_E_CONFLICT, TRYON_JOB_RUNNING},
      {"running, by an operator", BY_OPERATOR, TRYON_JOB_RUNNING, TRYON_E_CONFLICT,
       TRYON_JOB_RUNNING},
      {"running, by another user", BY_OTHER, TRYON_JOB_RUNNING, TRYON_E_NOT_FOUND,
       TRYON_JOB_RUNNING},
      {"succeeded, by its user", BY_OWNER, TRYON_JOB_SUCCEEDED, TRYON_E_CONFLICT,
       TRYON_JOB_SUCCEEDED},
      {"cancelled, by its user", BY_OWNER, TRYON_JOB_CANCELLED, TRYON_E_CONFLICT,
       TRYON_JOB_CANCELLED},
  };
  int64_t now = f->t0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char id[TRYON_UUID_STR_LEN];
    tryon_err err;
    tryon_err_clear(&err);
    now += 100;
    enqueue(f, "k", u, now, id);
    if (cases[i].before == TRYON_JOB_RUNNING || cases[i].before == TRYON_JOB_SUCCEEDED)
      claim_expect(f, "w", 0, now, id, cases[i].name);
    if (cases[i].before == TRYON_JOB_SUCCEEDED)
      EXPECT_I64(succeed_tx(f, id, "w", NULL, now), TRYON_OK, cases[i].name);
    if (cases[i].before == TRYON_JOB_CANCELLED) {
      begin(f);
      EXPECT_STATUS(tryon_jobs_cancel(f->c, id, u, now, &err), TRYON_OK, &err, cases[i].name);
      commit(f);
    }
    int64_t by = cases[i].by == BY_OWNER ? u : cases[i].by == BY_OPERATOR ? 0 : other;
    begin(f);
    EXPECT_STATUS(tryon_jobs_cancel(f->c, id, by, now + 1, &err), cases[i].want, &err,
                  cases[i].name);
    if (cases[i].want == TRYON_OK)
      commit(f);
    else
      rollback(f);
    expect_state(f, id, cases[i].after, cases[i].name);
    if (cases[i].want == TRYON_OK) {
      tryon_job j = get_job(f, id);
      int64_t fin = j.finished_ms;
      tryon_job_release(&j);
      EXPECT_MS(fin, now + 1, cases[i].name);
      claim_none(f, now + 2, cases[i].name);
    }
    /* Tidy up: leave nothing running to be claimed by the next case. */
    if (cases[i].after == TRYON_JOB_RUNNING)
      EXPECT_I64(succeed_tx(f, id, "w", NULL, now + 3), TRYON_OK, cases[i].name);
    if (cases[i].after == TRYON_JOB_QUEUED) {
      begin(f);
      EXPECT_STATUS(tryon_jobs_cancel(f->c, id, 0, now + 3, &err), TRYON_OK, &err, cases[i].name);
      commit(f);
    }
  }

  /* Inside the caller's transaction: a rollback undoes it. */
  char id[TRYON_UUID_STR_LEN];
  tryon_err err;
  tryon_err_clear(&err);
  enqueue(f, "k", u, now + 100, id);
  begin(f);
  EXPECT_STATUS(tryon_jobs_cancel(f->c, id, u, now + 101, &err), TRYON_OK, &err, "cancel");
  rollback(f);
  expect_state(f, id, TRYON_JOB_QUEUED, "cancel rolled back");

  /* An unknown id. */
  begin(f);
  EXPECT_STATUS(tryon_jobs_cancel(f->c, "00000000-0000-4000-8000-000000000000", 0, now + 102, &err),
                TRYON_E_NOT_FOUND, &err, "cancel an unknown job");
  rollback(f);
}

static void test_jobs__retry_requeues_a_failed_job(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN], c[TRYON_UUID_STR_LEN], q[TRYON_UUID_STR_LEN];
  bool final = false;
  int64_t u = new_user(f, 9001);
  tryon_err_clear(&err);
  enqueue_max(f, "k", u, 2, f->t0, id);
  claim_expect(f, "w", 0, f->t0, id, "attempt 1");
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e\"}", true, 0, 1, f->t0 + 1, &final), TRYON_OK,
             "fail 1");
  claim_expect(f, "w", 0, f->t0 + 10, id, "attempt 2");
  EXPECT_I64(fail_tx(f, id, "w", "{\"code\":\"e\"}", true, 0, 0, f->t0 + 11, &final), TRYON_OK,
             "fail 2");
  assert_true(final);
  expect_state(f, id, TRYON_JOB_FAILED, "failed");

  int64_t now = f->t0 + HOUR_MS;
  EXPECT_STATUS(tryon_jobs_retry(f->c, id, now, &err), TRYON_OK, &err, "retry");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_QUEUED, "retried state");
  EXPECT_I64(j.attempts, 0, "fresh attempts");
  EXPECT_I64(j.max_attempts, 2, "max_attempts kept");
  if (j.run_after_ms > now + 1)
    fail_msg("retried job due at now %+lld ms, want at once", (long long)(j.run_after_ms - now));
  tryon_job_release(&j);
  int a = claim_expect(f, "w", 0, now, id, "claim the retried job");
  EXPECT_I64(a, 1, "first attempt of the fresh set");

  /* Running, succeeded and queued jobs are not retried. */
  EXPECT_STATUS(tryon_jobs_retry(f->c, id, now + 1, &err), TRYON_E_CONFLICT, &err,
                "retry a running job");
  EXPECT_I64(succeed_tx(f, id, "w", NULL, now + 2), TRYON_OK, "succeed");
  EXPECT_STATUS(tryon_jobs_retry(f->c, id, now + 3, &err), TRYON_E_CONFLICT, &err,
                "retry a succeeded job");
  enqueue(f, "k", u, now + 4, q);
  EXPECT_STATUS(tryon_jobs_retry(f->c, q, now + 5, &err), TRYON_E_CONFLICT, &err,
                "retry a queued job");

  /* A cancelled job can be retried. */
  enqueue(f, "k", u, now + 6, c);
  begin(f);
  EXPECT_STATUS(tryon_jobs_cancel(f->c, c, u, now + 7, &err), TRYON_OK, &err, "cancel");
  commit(f);
  EXPECT_STATUS(tryon_jobs_retry(f->c, c, now + 8, &err), TRYON_OK, &err, "retry cancelled");
  expect_state(f, c, TRYON_JOB_QUEUED, "cancelled, retried");
}

/* A claim that waits on the row lock of an owner's cancel must not run the job once the
 * cancel commits (issue 12, item 2): the cancel holds the row in an open transaction, a
 * claim on a second connection blocks on it, the cancel commits, and the claim must come
 * back empty with the job still cancelled. */
typedef struct claim_racer {
  tryon_db *db;
  int64_t now;
  size_t n;
  tryon_status st;
  char first[TRYON_UUID_STR_LEN];
} claim_racer;

static void *claim_in_thread(void *ud) {
  claim_racer *r = ud;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_job out[4];
  memset(out, 0, sizeof out);
  r->st = tryon_db_acquire(r->db, &c, &err);
  if (r->st != TRYON_OK)
    return NULL;
  tryon_claim_options o = {.owner = "racer", .max = 4};
  r->st = tryon_jobs_claim(c, &o, r->now, out, &r->n, &err);
  if (r->n > 0)
    snprintf(r->first, sizeof r->first, "%.36s", out[0].id);
  for (size_t i = 0; i < r->n && i < 4; i++)
    tryon_job_release(&out[i]);
  tryon_db_release(c);
  return NULL;
}

static void test_jobs__claim_waiting_on_a_cancel_does_not_run_it(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 8101);
  char id[TRYON_UUID_STR_LEN];
  tryon_err err;
  tryon_db_conn *watch = NULL;
  tryon_err_clear(&err);
  enqueue(f, "k", u, f->t0, id);
  assert_int_equal(tryon_db_acquire(f->db, &watch, &err), TRYON_OK);

  begin(f);
  EXPECT_STATUS(tryon_jobs_cancel(f->c, id, u, f->t0 + 10, &err), TRYON_OK, &err, "cancel");
  claim_racer r = {.db = f->db, .now = f->t0 + 20};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, claim_in_thread, &r), 0);
  /* Until the claim is seen waiting for a lock (the cancelled row's). */
  bool waiting = false;
  for (int i = 0; i < 2000 && !waiting; i++) {
    waiting = qiv(watch,
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                  " AND wait_event_type = 'Lock' AND query LIKE 'WITH running AS%'",
                  0, NULL) > 0;
    if (!waiting)
      poll(NULL, 0, 5);
  }
  commit(f);
  pthread_join(t, NULL);
  tryon_db_release(watch);
  if (!waiting)
    fail_msg("the claim never waited on the cancel's row lock");
  EXPECT_STATUS(r.st, TRYON_OK, NULL, "the racing claim");
  if (r.n != 0)
    fail_msg("the claim took job %s that its owner had cancelled", r.first);
  expect_state(f, id, TRYON_JOB_CANCELLED, "after the cancel committed under a waiting claim");
  EXPECT_I64(qi1(f, "SELECT attempts FROM jobs WHERE id = $1::uuid", id), 0, "attempts");
}

static int64_t position(fixture *f, const char *id, int64_t now) {
  tryon_err err;
  int64_t p = -42;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_jobs_position(f->c, id, now, &p, &err), TRYON_OK, &err, "position");
  return p;
}

static void test_jobs__position(void **state) {
  fixture *f = *state;
  enum { N = 4 };
  char ids[N][TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 10001);
  for (int i = 0; i < N; i++)
    enqueue(f, "k", i % 2 ? u : 0, f->t0 + i, ids[i]);
  int64_t now = f->t0 + 100;
  for (int i = 0; i < N; i++)
    EXPECT_I64(position(f, ids[i], now), i + 1, "place in the queue");

  claim_expect(f, "w", 0, now, ids[0], "claim the first");
  EXPECT_I64(position(f, ids[0], now), 0, "running: not queued");
  for (int i = 1; i < N; i++)
    EXPECT_I64(position(f, ids[i], now), i, "one ahead fewer");

  tryon_err err;
  tryon_err_clear(&err);
  begin(f);
  EXPECT_STATUS(tryon_jobs_cancel(f->c, ids[2], 0, now, &err), TRYON_OK, &err, "cancel");
  commit(f);
  EXPECT_I64(position(f, ids[2], now), 0, "cancelled: not queued");
  EXPECT_I64(position(f, ids[1], now), 1, "still first");
  EXPECT_I64(position(f, ids[3], now), 2, "one ahead fewer again");

  EXPECT_I64(succeed_tx(f, ids[0], "w", NULL, now + 1), TRYON_OK, "succeed");
  EXPECT_I64(position(f, ids[0], now + 2), 0, "succeeded: not queued");
}

static void test_jobs__get_hides_other_users_jobs(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_job j;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 11001), other = new_user(f, 11002);
  tryon_err_clear(&err);
  enqueue(f, "k", u, f->t0, id);

  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, id, u, &j, &err), TRYON_OK, &err, "get own job");
  EXPECT_STR(j.id, id, "own job");
  EXPECT_I64(j.user_id, u, "own job's user");
  tryon_job_release(&j);

  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, id, other, &j, &err), TRYON_E_NOT_FOUND, &err,
                "get another user's job");
  tryon_job_release(&j);

  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, id, 0, &j, &err), TRYON_OK, &err, "get as operator");
  tryon_job_release(&j);

  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, "00000000-0000-4000-8000-000000000000", 0, &j, &err),
                TRYON_E_NOT_FOUND, &err, "get an unknown job");
  tryon_job_release(&j);

  /* A job without a user is not any user's. */
  char h[TRYON_UUID_STR_LEN];
  enqueue(f, "k", 0, f->t0 + 1, h);
  memset(&j, 0, sizeof j);
  EXPECT_STATUS(tryon_jobs_get(f->c, h, u, &j, &err), TRYON_E_NOT_FOUND, &err,
                "get a housekeeping job as a user");
  tryon_job_release(&j);

  /* A zeroed job may be released (twice, even). */
  memset(&j, 0, sizeof j);
  tryon_job_release(&j);
  tryon_job_release(&j);
}

static void test_jobs__list_filters_newest_first(void **state) {
  fixture *f = *state;
  int64_t u1 = new_user(f, 12001), u2 = new_user(f, 12002);
  enum { N = 5 };
  char ids[N][TRYON_UUID_STR_LEN];
  const int64_t owner[N] = {u1, u2, u1, u1, 0};
  for (int i = 0; i < N; i++)
    enqueue(f, "k", owner[i], f->t0 + i * 1000, ids[i]);
  claim_expect(f, "w", 0, f->t0 + 10000, ids[0], "claim the oldest");

  static const struct {
    const char *state;
    int who; /* 0 all, 1 u1, 2 u2 */
    size_t max;
    int want[N + 1]; /* indexes into ids, newest first, -1 ends */
  } cases[] = {
      {NULL, 0, 10, {4, 3, 2, 1, 0, -1}},
      {NULL, 0, 2, {4, 3, -1}},
      {"queued", 0, 10, {4, 3, 2, 1, -1}},
      {"running", 0, 10, {0, -1}},
      {"succeeded", 0, 10, {-1}},
      {NULL, 1, 10, {3, 2, 0, -1}},
      {"queued", 1, 10, {3, 2, -1}},
      {"running", 1, 10, {0, -1}},
      {"running", 2, 10, {-1}},
      {NULL, 2, 10, {1, -1}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    tryon_job out[10];
    size_t n = 999;
    tryon_err err;
    char ctx[96];
    int64_t user = cases[c].who == 1 ? u1 : cases[c].who == 2 ? u2 : 0;
    snprintf(ctx, sizeof ctx, "case %zu: state %s, user %d, max %zu", c,
             cases[c].state ? cases[c].state : "(all)", cases[c].who, cases[c].max);
    tryon_err_clear(&err);
    memset(out, 0, sizeof out);
    EXPECT_STATUS(tryon_jobs_list(f->c, cases[c].state, user, cases[c].max, out, &n, &err),
                  TRYON_OK, &err, ctx);
    size_t want_n = 0;
    while (cases[c].want[want_n] >= 0)
      want_n++;
    char got[512] = "";
    size_t len = 0;
    bool same = n == want_n;
    for (size_t i = 0; i < n && i < cases[c].max; i++) {
      int k = -1;
      for (int x = 0; x < N; x++)
        if (strcmp(out[i].id, ids[x]) == 0)
          k = x;
      len += (size_t)snprintf(got + len, sizeof got - len > 0 ? sizeof got - len : 0, " %d", k);
      if (len >= sizeof got)
        len = sizeof got - 1;
      if (i < want_n && k != cases[c].want[i])
        same = false;
    }
    release_all(out, n < cases[c].max ? n : cases[c].max);
    if (!same) {
      char want[64] = "";
      size_t wl = 0;
      for (size_t i = 0; i < want_n; i++)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, " %d", cases[c].want[i]);
      fail_msg("%s: got [%s ] (%zu), want [%s ]", ctx, got, n, want);
    }
  }
}

/* --------------------------------------------------------------------------- NOTIFY */

static PGconn *listen_on(fixture *f, const char *channel) {
  PGconn *pc = PQconnectdb(f->t.conninfo);
  if (PQstatus(pc) != CONNECTION_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(pc));
    PQfinish(pc);
    fail_msg("listener: %s", msg);
  }
  char q[64];
  snprintf(q, sizeof q, "LISTEN %s", channel);
  PGresult *r = PQexec(pc, q);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok) {
    PQfinish(pc);
    fail_msg("%s failed", q);
  }
  return pc;
}

typedef struct event_match {
  const char *channel;
  const char *job;   /* NULL: any */
  const char *state; /* NULL: any */
  int64_t user;      /* -1: any */
  int progress;      /* -1: any */
} event_match;

static bool event_matches(const PGnotify *n, const event_match *m) {
  if (strcmp(n->relname, m->channel) != 0)
    return false;
  if (m->job == NULL && m->state == NULL && m->user < 0 && m->progress < 0)
    return true;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(n->extra, &end, true);
  bool ok = cJSON_IsObject(j);
  const cJSON *v;
  if (ok && m->job != NULL) {
    v = cJSON_GetObjectItemCaseSensitive(j, "job");
    ok = cJSON_IsString(v) && strcmp(v->valuestring, m->job) == 0;
  }
  if (ok && m->state != NULL) {
    v = cJSON_GetObjectItemCaseSensitive(j, "state");
    ok = cJSON_IsString(v) && strcmp(v->valuestring, m->state) == 0;
  }
  if (ok && m->user >= 0) {
    v = cJSON_GetObjectItemCaseSensitive(j, "user");
    ok = cJSON_IsNumber(v) && v->valuedouble == (double)m->user;
  }
  if (ok && m->progress >= 0) {
    v = cJSON_GetObjectItemCaseSensitive(j, "progress");
    ok = cJSON_IsNumber(v) && v->valuedouble == (double)m->progress;
  }
  cJSON_Delete(j);
  return ok;
}

/* Waits up to timeout_ms for a notification matching `m`; notifications that do not
 * match are counted in *others and their payloads kept in `seen` (for the message). */
static bool wait_event(PGconn *pc, const event_match *m, int timeout_ms, int *others, char *seen,
                       size_t seen_size) {
  int64_t deadline = wall_ms() + timeout_ms;
  for (;;) {
    if (PQconsumeInput(pc) == 0)
      fail_msg("listener: %s", PQerrorMessage(pc));
    PGnotify *n;
    bool found = false;
    while ((n = PQnotifies(pc)) != NULL) {
      if (!found && event_matches(n, m)) {
        found = true;
      } else {
        if (others != NULL)
          (*others)++;
        if (seen != NULL) {
          size_t len = strlen(seen);
          if (len + 1 < seen_size)
            snprintf(seen + len, seen_size - len, "%s:%s; ", n->relname, n->extra);
        }
      }
      PQfreemem(n);
    }
    if (found)
      return true;
    int64_t left = deadline - wall_ms();
    if (left <= 0)
      return false;
    struct pollfd pfd = {.fd = PQsocket(pc), .events = POLLIN};
    (void)poll(&pfd, 1, (int)left);
  }
}

static void expect_event(PGconn *pc, const event_match *m, const char *ctx) {
  char seen[1024] = "";
  if (!wait_event(pc, m, 5000, NULL, seen, sizeof seen)) {
    PQfinish(pc);
    fail_msg("%s: no %s notification for job %s state %s within 5 s; saw: %s", ctx, m->channel,
             m->job ? m->job : "*", m->state ? m->state : "*", seen[0] ? seen : "nothing");
  }
}

static void test_jobs__notify_events_on_claim_progress_and_succeed(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 13001);
  tryon_err_clear(&err);
  enqueue(f, "tryon.generate", u, f->t0, id);

  PGconn *pc = listen_on(f, "tryon_events");
  claim_expect(f, "w", 0, f->t0 + 10, id, "claim");
  event_match m = {"tryon_events", id, "running", u, -1};
  expect_event(pc, &m, "claim");

  EXPECT_STATUS(tryon_jobs_progress(f->c, id, "w", 50, "generating", NULL, f->t0 + 20, &err),
                TRYON_OK, &err, "progress");
  event_match mp = {"tryon_events", id, "running", u, 50};
  expect_event(pc, &mp, "progress");

  /* succeed's notification waits for the caller's commit. */
  begin(f);
  EXPECT_STATUS(tryon_jobs_succeed(f->c, id, "w", "{\"ok\":true}", f->t0 + 30, &err), TRYON_OK,
                &err, "succeed");
  event_match ms = {"tryon_events", id, "succeeded", u, -1};
  char seen[512] = "";
  if (wait_event(pc, &ms, 300, NULL, seen, sizeof seen)) {
    rollback(f);
    PQfinish(pc);
    fail_msg("the succeeded notification arrived before the commit");
  }
  commit(f);
  expect_event(pc, &ms, "succeed");
  PQfinish(pc);
}

static void test_jobs__notify_jobs_after_enqueue_commits(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  tryon_job_spec s = {.kind = "k"};
  tryon_err_clear(&err);
  PGconn *pc = listen_on(f, "tryon_jobs");
  event_match any = {"tryon_jobs", NULL, NULL, -1, -1};

  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0, id, NULL, &err), TRYON_OK, &err, "enqueue");
  if (wait_event(pc, &any, 300, NULL, NULL, 0)) {
    rollback(f);
    PQfinish(pc);
    fail_msg("tryon_jobs notified before the commit");
  }
  commit(f);
  expect_event(pc, &any, "enqueue committed");

  begin(f);
  EXPECT_STATUS(tryon_jobs_enqueue(f->c, &s, f->t0 + 1, id, NULL, &err), TRYON_OK, &err, "enqueue");
  rollback(f);
  bool got = wait_event(pc, &any, 700, NULL, NULL, 0);
  PQfinish(pc);
  if (got)
    fail_msg("tryon_jobs notified for a rolled-back enqueue");
}

/* ----------------------------------------------------------------------- state names */

static void test_jobs__state_names(void **state) {
  (void)state;
  static const struct {
    tryon_job_state s;
    const char *name;
  } cases[] = {
      {TRYON_JOB_QUEUED, "queued"},       {TRYON_JOB_RUNNING, "running"},
      {TRYON_JOB_SUCCEEDED, "succeeded"}, {TRYON_JOB_FAILED, "failed"},
      {TRYON_JOB_CANCELLED, "cancelled"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    EXPECT_STR(tryon_job_state_name(cases[i].s), cases[i].name, "state name");
}

static void test_jobs__reap_hook_failure_holds_back_only_its_job(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], c[TRYON_UUID_STR_LEN], d[TRYON_UUID_STR_LEN];
  tryon_err_clear(&err);
  enqueue_max(f, "mine", 0, 1, f->t0, a);
  claim_expect(f, "w1", 1000, f->t0 + 10, a, "claim mine");
  enqueue_max(f, "theirs", 0, 1, f->t0 + 20, b);
  claim_expect(f, "w1", 1000, f->t0 + 30, b, "claim theirs");
  enqueue_max(f, "mine", 0, 3, f->t0 + 40, c);
  claim_expect(f, "w1", 1000, f->t0 + 50, c, "claim mine with attempts left");
  enqueue_max(f, "mine", 0, 1, f->t0 + 60, d);
  claim_expect(f, "w1", 1000, f->t0 + 70, d, "claim mine again");

  /* A hook that refuses the job `a` only: its error comes back, `a` stays expired for
   * the next reap, and everything else is reaped all the same. */
  hook_log h = {.refuse = true};
  snprintf(h.refuse_id, sizeof h.refuse_id, "%s", a);
  const char *const mine[] = {"mine", NULL};
  tryon_reap_options ro = {.kinds = mine, .on_final = record_hook, .ud = &h};
  size_t nfailed = 99, requeued = 99;
  EXPECT_STATUS(tryon_jobs_reap(f->c, &ro, f->t0 + 5000, &requeued, &nfailed, &err),
                TRYON_E_INTERNAL, &err, "reap with a refusing hook");
  EXPECT_I64((int64_t)requeued, 1, "the job with attempts left requeued anyway");
  EXPECT_I64((int64_t)nfailed, 1, "the other last attempt failed with its hook");
  EXPECT_I64((int64_t)h.n, 1, "hook ran for d only");
  EXPECT_STR(h.ids[0], d, "for d");
  expect_state(f, a, TRYON_JOB_RUNNING, "a's transaction rolled back: still expired");
  expect_state(f, c, TRYON_JOB_QUEUED, "c requeued");
  expect_state(f, d, TRYON_JOB_FAILED, "d failed");
  expect_state(f, b, TRYON_JOB_RUNNING, "another kind left for a worker that knows it");

  /* The hook mends: a is failed at the next reap, its hook run once. */
  h.refuse = false;
  EXPECT_STATUS(tryon_jobs_reap(f->c, &ro, f->t0 + 6000, NULL, &nfailed, &err), TRYON_OK, &err,
                "reap again");
  EXPECT_I64((int64_t)nfailed, 1, "a failed now");
  EXPECT_I64((int64_t)h.n, 2, "hook ran once more");
  EXPECT_STR(h.ids[1], a, "for a");
  expect_state(f, a, TRYON_JOB_FAILED, "a failed");

  const char *const bad[] = {"Bad Kind", NULL};
  tryon_reap_options rb = {.kinds = bad};
  EXPECT_STATUS(tryon_jobs_reap(f->c, &rb, f->t0 + 5000, NULL, NULL, &err), TRYON_E_INVALID, &err,
                "invalid kind");
}

static void test_jobs__heartbeat_many_renews_held_and_reports_lost(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], c[TRYON_UUID_STR_LEN];
  tryon_err_clear(&err);
  enqueue(f, "k", 0, f->t0, a);
  claim_expect(f, "w1", 1000, f->t0 + 1, a, "claim a");
  enqueue(f, "k", 0, f->t0 + 2, b);
  claim_expect(f, "w1", 1000, f->t0 + 3, b, "claim b");
  enqueue(f, "k", 0, f->t0 + 4, c);
  claim_expect(f, "w2", 1000, f->t0 + 5, c, "claim c by another worker");

  /* b's lease expires and another worker takes it. */
  size_t requeued = 0;
  EXPECT_STATUS(tryon_jobs_heartbeat(f->c, a, "w1", 60000, f->t0 + 500, &err), TRYON_OK, &err,
                "keep a alive");
  EXPECT_STATUS(tryon_jobs_reap(f->c, NULL, f->t0 + 2000, &requeued, NULL, &err), TRYON_OK, &err,
                "reap");
  claim_expect(f, "w3", 60000, f->t0 + 2001, b, "w3 takes b");

  const char *ids[] = {a, b, c, a};
  const char *owners[] = {"w1", "w1", "w1", "w3"};
  bool held[4] = {false, true, true, true};
  EXPECT_STATUS(tryon_jobs_heartbeat_many(f->c, ids, owners, 4, 30000, f->t0 + 2100, held, &err),
                TRYON_OK, &err, "heartbeat many");
  assert_true(held[0]);
  assert_false(held[1]); /* reaped and reclaimed */
  assert_false(held[2]); /* never ours */
  assert_false(held[3]); /* the right job under another lease */
  tryon_job j = get_job(f, a);
  EXPECT_MS(j.lease_expires_ms, f->t0 + 32100, "a renewed");
  tryon_job_release(&j);
  j = get_job(f, b);
  EXPECT_STR(j.lease_owner, "w3", "b untouched");
  EXPECT_MS(j.lease_expires_ms, f->t0 + 62001, "b's lease is w3's");
  tryon_job_release(&j);

  EXPECT_STATUS(tryon_jobs_heartbeat_many(f->c, NULL, NULL, 0, 30000, f->t0, NULL, &err), TRYON_OK,
                &err, "nothing to renew");
  const char *badids[] = {"not-a-uuid"}, *w1[] = {"w1"};
  bool h1[1];
  EXPECT_STATUS(tryon_jobs_heartbeat_many(f->c, badids, w1, 1, 30000, f->t0, h1, &err),
                TRYON_E_INVALID, &err, "bad id");
  /* Owners with quotes and backslashes are data, not syntax. */
  const char *odd[] = {"w\"1\\,{}"}, *aid[] = {a};
  EXPECT_STATUS(tryon_jobs_heartbeat_many(f->c, aid, odd, 1, 30000, f->t0 + 2200, h1, &err),
                TRYON_OK, &err, "odd owner");
  assert_false(h1[0]);
}

static void test_jobs__release_requeues_without_counting_the_attempt(void **state) {
  fixture *f = *state;
  tryon_err err;
  char id[TRYON_UUID_STR_LEN];
  tryon_err_clear(&err);
  enqueue_max(f, "k", 0, 1, f->t0, id);
  claim_expect(f, "w1", 60000, f->t0 + 10, id, "claim");
  EXPECT_STATUS(
      tryon_jobs_progress(f->c, id, "w1", 40, "polling", "{\"task\":\"t-1\"}", f->t0 + 20, &err),
      TRYON_OK, &err, "checkpoint");
  EXPECT_STATUS(tryon_jobs_release(f->c, id, "w2", f->t0 + 30, &err), TRYON_E_CONFLICT, &err,
                "release by another owner");
  EXPECT_STATUS(tryon_jobs_release(f->c, id, "w1", f->t0 + 30, &err), TRYON_OK, &err, "release");
  tryon_job j = get_job(f, id);
  EXPECT_I64(j.state, TRYON_JOB_QUEUED, "queued again");
  EXPECT_I64(j.attempts, 0, "the attempt is given back");
  EXPECT_STR(j.lease_owner, "", "lease cleared");
  expect_json_str(j.payload, "task", "t-1", "checkpoint kept");
  tryon_job_release(&j);
  EXPECT_STATUS(tryon_jobs_release(f->c, id, "w1", f->t0 + 40, &err), TRYON_E_CONFLICT, &err,
                "release of a queued job");
  /* Its only attempt is still there: the next worker runs it. */
  int a = claim_expect(f, "w2", 60000, f->t0 + 40, id, "claimed at once by another worker");
  EXPECT_I64(a, 1, "first counted attempt");
}

/* A job due within the claim's millisecond (run_after = now() has microseconds, the
 * claim's clock has milliseconds) is due: it once waited for the next claim. */
static void test_jobs__claim_takes_a_job_due_within_the_same_millisecond(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_db_num t0 = tryon_db_num_i64(f->t0);
  const char *p[] = {t0.s};
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "INSERT INTO jobs (kind, run_after, created_at) VALUES ('k',"
                              " to_timestamp(($1::bigint + 0.7) / 1000.0),"
                              " to_timestamp(($1::bigint + 0.7) / 1000.0))",
                              1, p, NULL, &err),
                TRYON_OK, &err, "insert with microseconds");
  tryon_job j[1];
  size_t n = claim(f, "w", 1, 0, f->t0, j);
  release_all(j, n);
  EXPECT_I64((int64_t)n, 1, "claimed in the same millisecond");
  claim_none(f, f->t0, "and only once");
}

static void test_jobs__purge_deletes_only_old_scheduled_housekeeping(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_err_clear(&err);
  int64_t u = new_user(f, 7301);
  tryon_db_num uid = tryon_db_num_i64(u);
  const char *p[] = {uid.s};
  EXPECT_STATUS(
      tryon_db_exec(f->c,
                    "INSERT INTO jobs (kind, user_id, state, idempotency_key, finished_at) VALUES"
                    " ('hk', NULL, 'succeeded', 'sched:hk:1', now() - interval '2 days'),"
                    " ('hk', NULL, 'failed', 'sched:hk:2', now() - interval '2 days'),"
                    " ('hk', NULL, 'succeeded', 'sched:hk:3', now()),"
                    " ('op', NULL, 'succeeded', 'operator-run', now() - interval '2 days'),"
                    " ('k', $1::bigint, 'succeeded', NULL, now() - interval '2 days');"
                    "",
                    1, p, NULL, &err),
      TRYON_OK, &err, "jobs of every sort");
  EXPECT_STATUS(
      tryon_db_exec(f->c, "INSERT INTO jobs (kind, idempotency_key) VALUES ('hk', 'sched:hk:4')", 0,
                    NULL, NULL, &err),
      TRYON_OK, &err, "a queued one");
  size_t n = 99;
  EXPECT_STATUS(tryon_jobs_purge(f->c, f->t0 - DAY_MS, &n, &err), TRYON_OK, &err, "purge");
  EXPECT_I64((int64_t)n, 2, "the two old finished scheduled jobs");
  char *left = tryon_test_query_value(f->c,
                                      "SELECT string_agg(coalesce(idempotency_key, 'user'),"
                                      " ',' ORDER BY idempotency_key) FROM jobs",
                                      0, NULL);
  EXPECT_STR(left, "operator-run,sched:hk:3,sched:hk:4,user", "what stays");
  free(left);
}

static void test_jobs__depth_counts_queued_and_running(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_err_clear(&err);
  int64_t q = -1, r = -1;
  EXPECT_STATUS(tryon_jobs_depth(f->c, &q, &r, &err), TRYON_OK, &err, "empty queue");
  EXPECT_I64(q, 0, "none queued");
  EXPECT_I64(r, 0, "none running");
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "INSERT INTO jobs (kind, state, lease_owner, lease_expires_at,"
                              " finished_at) VALUES ('k', 'queued', NULL, NULL, NULL),"
                              " ('k', 'queued', NULL, NULL, NULL),"
                              " ('k', 'running', 'w', now() + interval '1 minute', NULL),"
                              " ('k', 'succeeded', NULL, NULL, now())",
                              0, NULL, NULL, &err),
                TRYON_OK, &err, "jobs in several states");
  EXPECT_STATUS(tryon_jobs_depth(f->c, &q, &r, &err), TRYON_OK, &err, "depth");
  EXPECT_I64(q, 2, "queued");
  EXPECT_I64(r, 1, "running");
  EXPECT_STATUS(tryon_jobs_depth(f->c, NULL, NULL, &err), TRYON_OK, &err, "counts optional");
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jobs__state_names),
      T(test_jobs__enqueue_commits_and_rolls_back_with_the_caller),
      T(test_jobs__enqueue_defaults),
      T(test_jobs__enqueue_idempotency_key_returns_the_same_job),
      T(test_jobs__enqueue_refuses_bad_input),
      T(test_jobs__claim_marks_running_under_a_lease),
      T(test_jobs__claim_takes_the_oldest_due_first),
      T(test_jobs__claim_waits_for_run_after),
      T(test_jobs__claim_filters_by_kind),
      T(test_jobs__claim_limits_running_jobs_per_user),
      T(test_jobs__claim_limit_per_user_holds_within_one_batch),
      T(test_jobs__concurrent_claimers_take_each_job_once),
      T(test_jobs__heartbeat_extends_the_lease),
      T(test_jobs__progress_records_stage_and_merges_checkpoint),
      T(test_jobs__succeed_commits_with_the_caller),
      T(test_jobs__succeed_refuses_a_wrong_owner),
      T(test_jobs__fail_retryable_backs_off),
      T(test_jobs__fail_retry_after_is_honoured),
      T(test_jobs__fail_final_after_max_attempts_once),
      T(test_jobs__fail_not_retryable_is_final),
      T(test_jobs__claim_takes_a_job_due_within_the_same_millisecond),
      T(test_jobs__reap_requeues_or_fails_expired_leases),
      T(test_jobs__reap_hook_failure_holds_back_only_its_job),
      T(test_jobs__heartbeat_many_renews_held_and_reports_lost),
      T(test_jobs__release_requeues_without_counting_the_attempt),
      T(test_jobs__purge_deletes_only_old_scheduled_housekeeping),
      T(test_jobs__depth_counts_queued_and_running),
      T(test_jobs__expired_worker_cannot_finish_a_reclaimed_job),
      T(test_jobs__cancel),
      T(test_jobs__claim_waiting_on_a_cancel_does_not_run_it),
      T(test_jobs__retry_requeues_a_failed_job),
      T(test_jobs__position),
      T(test_jobs__get_hides_other_users_jobs),
      T(test_jobs__list_filters_newest_first),
      T(test_jobs__notify_events_on_claim_progress_and_succeed),
      T(test_jobs__notify_jobs_after_enqueue_commits),
  };
#undef T
  tryon_test_log_init();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
