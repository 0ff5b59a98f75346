/*
 * Generations against a real PostgreSQL: the try-on transaction (charge + generation +
 * job, all or nothing; idempotent by key; ownership; money under concurrency), the
 * history, the worker's updates and the failure hook's refund with its message.
 * The ledger audit must hold after every scenario.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tryon/generations.h>

#include "testsupport.h"

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
  int64_t now;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tryon_testdb_open(&f->t, 12, 30000, &f->db, &f->c);
  f->now = tryon_clock_now_ms(NULL);
  *state = f;
  return 0;
}

/* The books balance: no audit offender. */
static void check_books(fixture *f) {
  tryon_err err;
  tryon_audit_problem p[4];
  size_t n = 99;
  EXPECT_STATUS(tryon_billing_audit(f->c, p, 4, &n, &err), TRYON_OK, &err, "audit");
  if (n > 0)
    fail_msg("the ledger audit found %zu offenders (user %lld first)", n, (long long)p[0].user_id);
}

static int teardown(void **state) {
  fixture *f = *state;
  check_books(f);
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

static char *value(fixture *f, const char *sql, const char *arg) {
  const char *p[] = {arg};
  char *v = tryon_test_query_value(f->c, sql, arg ? 1 : 0, arg ? p : NULL);
  return v ? v : strdup("(null)");
}

static void expect_sql(fixture *f, const char *sql, const char *arg, const char *want,
                       const char *ctx) {
  char *got = value(f, sql, arg);
  if (strcmp(got, want) != 0)
    fail_msg("%s: %s is %s, want %s", ctx, sql, got, want);
  free(got);
}

static int64_t new_user(fixture *f, int64_t tg, const char *lang) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO users (telegram_id, language_code) VALUES (%lld, %s%s%s) RETURNING id",
           (long long)tg, lang ? "'" : "", lang ? lang : "NULL", lang ? "'" : "");
  char *id = value(f, sql, NULL);
  int64_t v = strtoll(id, NULL, 10);
  free(id);
  return v;
}

/* A stored photo of `user` (the row only; these tests never read the files). */
static void new_upload(fixture *f, int64_t user, char id[TRYON_UUID_STR_LEN]) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO uploads (user_id, origin, mime, width, height, bytes, sha256) VALUES"
           " (%lld, 'upload', 'image/jpeg', 800, 1000, 12345, sha256(random()::text::bytea))"
           " RETURNING id",
           (long long)user);
  char *v = value(f, sql, NULL);
  snprintf(id, TRYON_UUID_STR_LEN, "%s", v);
  free(v);
}

static tryon_status try_on(fixture *f, int64_t user, const char *person, const char *item,
                           const char *key, tryon_generations_created *out,
                           tryon_billing_refusal *refusal) {
  tryon_err err;
  tryon_generations_tryon_params p = {.user_id = user,
                                      .person_upload_id = person,
                                      .item_upload_id = item,
                                      .category = "top",
                                      .aspect_ratio = "3:4",
                                      .idempotency_key = key};
  return tryon_generations_create_tryon(f->c, &p, f->now, out, refusal, &err);
}

/* ------------------------------------------------------------------------ prompts */

static void test_generations__prompts_cover_every_category(void **state) {
  (void)state;
  static const char *const cats[] = {"top",      "bottom",  "dress", "outerwear", "shoes",
                                     "headwear", "glasses", "bag",   "jewelry",   "other"};
  for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++) {
    const char *p = tryon_generations_prompt(cats[i]);
    if (p == NULL || strstr(p, "first image") == NULL || strstr(p, "second image") == NULL ||
        strstr(p, "face") == NULL || strstr(p, "colours") == NULL || strlen(p) > 5000)
      fail_msg("the %s prompt does not keep the person and the item", cats[i]);
    assert_true(tryon_generations_category_ok(cats[i]));
  }
  assert_null(tryon_generations_prompt("hat"));
  assert_null(tryon_generations_prompt(NULL));
  assert_false(tryon_generations_category_ok("Top"));
  assert_true(tryon_kie_aspect_ratio_ok("auto"));
  assert_true(tryon_kie_aspect_ratio_ok("21:9"));
  assert_false(tryon_kie_aspect_ratio_ok("7:5"));
  assert_false(tryon_kie_aspect_ratio_ok(""));
}

static void test_generations__user_messages_say_the_credits_are_back(void **state) {
  (void)state;
  char m[512];
  tryon_generations_user_message("content_refused", "en", 2, 0, m, sizeof m);
  assert_non_null(strstr(m, "refused"));
  assert_non_null(strstr(m, "2 credits are back"));
  tryon_generations_user_message("content_refused", "ru-RU", 2, 0, m, sizeof m);
  assert_non_null(strstr(m, "2 кредита вернулись"));
  tryon_generations_user_message("generation_failed", "ru", 1, 0, m, sizeof m);
  assert_non_null(strstr(m, "1 кредит вернулся"));
  tryon_generations_user_message("lease_expired", NULL, 5, 0, m, sizeof m);
  assert_non_null(strstr(m, "not answering"));
  assert_non_null(strstr(m, "5 credits are back"));
  tryon_generations_user_message("generation_failed", "de", 1, 0, m, sizeof m);
  assert_non_null(strstr(m, "1 credit is back"));
  tryon_generations_user_message("refused", "en", 2, 0, m, sizeof m); /* no partial matches */
  assert_non_null(strstr(m, "not answering"));
}

/* ----------------------------------------------------------------------- creating */

static void test_generations__create_charges_enqueues_and_records(void **state) {
  fixture *f = *state;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 100, "en");
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c1, c2;
  assert_int_equal(try_on(f, u, a, b, "key-1", &c1, NULL), TRYON_OK);
  assert_true(c1.created);
  assert_int_equal(c1.cost, 2);
  assert_int_equal(c1.balance, 8); /* the free month's 10, less 2 */
  assert_true(c1.watermark);
  expect_sql(f,
             "SELECT kind || ' ' || state"
             " FROM jobs WHERE id = $1::uuid",
             c1.job_id, "tryon queued", "the job");
  expect_sql(f, "SELECT payload->>'generation_id' FROM jobs WHERE id = $1::uuid", c1.job_id,
             c1.generation_id, "the job names its generation");
  expect_sql(f,
             "SELECT status || ' ' || category || ' ' || prompt_version || ' ' || aspect_ratio"
             " || ' ' || output_format || ' ' || cost || ' ' || watermarked FROM generations"
             " WHERE id = $1::uuid",
             c1.generation_id, "queued top tryon-1 3:4 png 2 true", "generation");
  expect_sql(f,
             "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'job:' || $1 ||"
             " ':charge'",
             c1.job_id, "1", "one charge");

  /* The same key: the same answer, nothing charged. */
  assert_int_equal(try_on(f, u, a, b, "key-1", &c2, NULL), TRYON_OK);
  assert_false(c2.created);
  assert_string_equal(c2.job_id, c1.job_id);
  assert_string_equal(c2.generation_id, c1.generation_id);
  assert_int_equal(c2.balance, 8);
  expect_sql(f, "SELECT count(*) FROM jobs", NULL, "1", "one job");
  expect_sql(f, "SELECT count(*) FROM credit_ledger WHERE delta_period + delta_pack < 0", NULL, "1",
             "one spend");

  /* The same key for another try-on is a conflict; another key is a new try-on. */
  assert_int_equal(try_on(f, u, b, a, "key-1", &c2, NULL), TRYON_E_CONFLICT);
  assert_int_equal(try_on(f, u, a, b, "key-2", &c2, NULL), TRYON_OK);
  assert_true(c2.created);
  assert_int_equal(c2.balance, 6);
}

static void test_generations__create_refuses_foreign_photos_and_bad_input(void **state) {
  fixture *f = *state;
  char mine[TRYON_UUID_STR_LEN], mine2[TRYON_UUID_STR_LEN], theirs[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 200, NULL), v = new_user(f, 201, NULL);
  new_upload(f, u, mine);
  new_upload(f, u, mine2);
  new_upload(f, v, theirs);
  tryon_generations_created c;
  assert_int_equal(try_on(f, u, mine, theirs, "k1", &c, NULL), TRYON_E_NOT_FOUND);
  assert_int_equal(try_on(f, u, theirs, mine, "k2", &c, NULL), TRYON_E_NOT_FOUND);
  assert_int_equal(try_on(f, u, mine, "00000000-0000-4000-8000-000000000000", "k3", &c, NULL),
                   TRYON_E_NOT_FOUND);
  assert_int_equal(try_on(f, u, mine, "not-a-uuid", "k4", &c, NULL), TRYON_E_NOT_FOUND);
  assert_int_equal(try_on(f, u, mine, mine, "k5", &c, NULL), TRYON_E_INVALID);
  assert_int_equal(try_on(f, u, mine, mine2, "", &c, NULL), TRYON_E_INVALID);
  assert_int_equal(try_on(f, u, mine, mine2, "with space", &c, NULL), TRYON_E_INVALID);
  tryon_err err;
  tryon_generations_tryon_params p = {.user_id = u,
                                      .person_upload_id = mine,
                                      .item_upload_id = mine2,
                                      .category = "hat",
                                      .idempotency_key = "k6"};
  EXPECT_STATUS(tryon_generations_create_tryon(f->c, &p, f->now, &c, NULL, &err), TRYON_E_INVALID,
                &err, "category");
  p.category = "shoes";
  p.aspect_ratio = "7:5";
  EXPECT_STATUS(tryon_generations_create_tryon(f->c, &p, f->now, &c, NULL, &err), TRYON_E_INVALID,
                &err, "ratio");
  p.aspect_ratio = NULL;
  p.output_format = "gif";
  EXPECT_STATUS(tryon_generations_create_tryon(f->c, &p, f->now, &c, NULL, &err), TRYON_E_INVALID,
                &err, "format");
  /* A deleted photo is gone for try-ons too. */
  const char *q[] = {mine2};
  EXPECT_STATUS(tryon_db_exec(f->c, "UPDATE uploads SET deleted_at = now() WHERE id = $1::uuid", 1,
                              q, NULL, &err),
                TRYON_OK, &err, "delete a photo");
  assert_int_equal(try_on(f, u, mine, mine2, "k7", &c, NULL), TRYON_E_NOT_FOUND);
  expect_sql(f, "SELECT count(*) FROM jobs", NULL, "0", "no job for a refused request");
  expect_sql(f, "SELECT count(*) FROM generations", NULL, "0", "no generation either");
  expect_sql(f, "SELECT count(*) FROM credit_ledger WHERE delta_period + delta_pack < 0", NULL, "0",
             "and no charge");
}

static void test_generations__unaffordable_leaves_nothing(void **state) {
  fixture *f = *state;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], key[16];
  int64_t u = new_user(f, 300, NULL);
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c;
  for (int i = 0; i < 5; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(try_on(f, u, a, b, key, &c, NULL), TRYON_OK);
  }
  assert_int_equal(c.balance, 0);
  tryon_billing_refusal r = {0};
  assert_int_equal(try_on(f, u, a, b, "k-last", &c, &r), TRYON_E_INSUFFICIENT_CREDITS);
  assert_int_equal(r.balance, 0);
  assert_int_equal(r.cost, 2);
  expect_sql(f, "SELECT count(*) FROM jobs", NULL, "5", "no job for the refused one");
  expect_sql(f, "SELECT count(*) FROM generations", NULL, "5", "nor a generation");
}

typedef struct racer {
  fixture *f;
  int64_t user;
  const char *a, *b;
  char key[16];
  tryon_status st;
  tryon_generations_created out;
} racer;

static void *race(void *arg) {
  racer *r = arg;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_generations_tryon_params p = {.user_id = r->user,
                                      .person_upload_id = r->a,
                                      .item_upload_id = r->b,
                                      .category = "dress",
                                      .idempotency_key = r->key};
  r->st = tryon_db_acquire(r->f->db, &c, &err);
  if (r->st == TRYON_OK)
    r->st = tryon_generations_create_tryon(c, &p, r->f->now, &r->out, NULL, &err);
  tryon_db_release(c);
  return NULL;
}

/* 10 credits, 16 racing try-ons with 8 distinct keys (each sent twice): exactly 5 jobs,
 * 5 charges, and both requests of a key agree. */
static void test_generations__racing_requests_spend_exactly_the_balance(void **state) {
  fixture *f = *state;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 400, NULL);
  new_upload(f, u, a);
  new_upload(f, u, b);
  racer rs[16];
  pthread_t th[16];
  for (int i = 0; i < 16; i++) {
    rs[i] = (racer){.f = f, .user = u, .a = a, .b = b};
    snprintf(rs[i].key, sizeof rs[i].key, "race-%d", i / 2);
    pthread_create(&th[i], NULL, race, &rs[i]);
  }
  int ok = 0, poor = 0;
  for (int i = 0; i < 16; i++) {
    pthread_join(th[i], NULL);
    ok += rs[i].st == TRYON_OK;
    poor += rs[i].st == TRYON_E_INSUFFICIENT_CREDITS;
  }
  if (ok + poor != 16)
    fail_msg("%d succeeded and %d were refused for want of credits, of 16", ok, poor);
  for (int i = 0; i < 16; i += 2) { /* both requests of a key got the same answer */
    if (rs[i].st != rs[i + 1].st ||
        (rs[i].st == TRYON_OK && strcmp(rs[i].out.job_id, rs[i + 1].out.job_id) != 0))
      fail_msg("the two requests of %s disagree", rs[i].key);
  }
  expect_sql(f, "SELECT count(*) FROM jobs", NULL, "5", "five jobs");
  expect_sql(f, "SELECT count(*) FROM generations", NULL, "5", "five generations");
  expect_sql(f, "SELECT count(*) FROM credit_ledger WHERE delta_period + delta_pack < 0", NULL, "5",
             "five charges");
  expect_sql(f, "SELECT period_credits + pack_credits FROM wallets", NULL, "0", "all spent");
}

/* -------------------------------------------------------------- the worker's side */

static void test_generations__worker_updates_and_history(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], key[16];
  int64_t u = new_user(f, 500, NULL), other = new_user(f, 501, NULL);
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c[3];
  for (int i = 0; i < 3; i++) {
    snprintf(key, sizeof key, "h%d", i);
    assert_int_equal(try_on(f, u, a, b, key, &c[i], NULL), TRYON_OK);
  }
  const char *g = c[2].generation_id;
  EXPECT_STATUS(tryon_generations_start(f->c, g, "offline", "offline-compose", f->now, &err),
                TRYON_OK, &err, "start");
  EXPECT_STATUS(tryon_generations_start(f->c, g, "offline", "offline-compose", f->now + 5, &err),
                TRYON_OK, &err, "start again (a rerun)");
  EXPECT_STATUS(tryon_generations_set_task(f->c, g, "task-1", &err), TRYON_OK, &err, "task");
  EXPECT_STATUS(tryon_generations_set_task(f->c, g, "task-1", &err), TRYON_OK, &err, "same task");
  EXPECT_STATUS(tryon_generations_set_task(f->c, g, "task-2", &err), TRYON_E_CONFLICT, &err,
                "another task");
  char rid[TRYON_UUID_STR_LEN];
  tryon_uuid ru;
  tryon_uuid_v4(&ru);
  tryon_uuid_format(&ru, rid);
  unsigned char px[4] = {1, 2, 3, 4}, th[2] = {5, 6};
  tryon_image img = {.mime = "image/png",
                     .width = 600,
                     .height = 800,
                     .data = px,
                     .len = sizeof px,
                     .thumb = th,
                     .thumb_len = 2};
  EXPECT_STATUS(tryon_db_exec(f->c, "BEGIN", 0, NULL, NULL, &err), TRYON_OK, &err, "begin");
  EXPECT_STATUS(tryon_generations_succeed(f->c, g, rid, &img, true, f->now + 10, &err), TRYON_OK,
                &err, "succeed");
  EXPECT_STATUS(tryon_db_exec(f->c, "COMMIT", 0, NULL, NULL, &err), TRYON_OK, &err, "commit");

  tryon_generation gen;
  EXPECT_STATUS(tryon_generations_get(f->c, u, g, &gen, &err), TRYON_OK, &err, "get");
  assert_string_equal(gen.status, "succeeded");
  assert_string_equal(gen.result_upload_id, rid);
  assert_true(gen.result_has_thumb);
  assert_string_equal(gen.provider, "offline");
  assert_string_equal(gen.provider_task_id, "task-1");
  assert_true(gen.finished_ms >= gen.started_ms && gen.started_ms > 0);
  EXPECT_STATUS(tryon_generations_get(f->c, other, g, &gen, &err), TRYON_E_NOT_FOUND, &err,
                "someone else's");
  char want[64];
  snprintf(want, sizeof want, "result %lld", (long long)u);
  expect_sql(f, "SELECT origin || ' ' || user_id FROM uploads WHERE id = $1::uuid", rid, want,
             "the result is the user's image");

  /* History: newest first, two pages. */
  tryon_generation page[2];
  size_t n = 0;
  char next[TRYON_GENERATIONS_CURSOR_MAX];
  EXPECT_STATUS(tryon_generations_list(f->c, u, 2, NULL, page, &n, next, &err), TRYON_OK, &err,
                "page 1");
  assert_int_equal(n, 2);
  assert_string_equal(page[0].id, c[2].generation_id);
  assert_string_equal(page[1].id, c[1].generation_id);
  assert_true(next[0] != '\0');
  EXPECT_STATUS(tryon_generations_list(f->c, u, 2, next, page, &n, next, &err), TRYON_OK, &err,
                "page 2");
  assert_int_equal(n, 1);
  assert_string_equal(page[0].id, c[0].generation_id);
  assert_string_equal(next, "");
  EXPECT_STATUS(tryon_generations_list(f->c, u, 2, "garbage", page, &n, next, &err),
                TRYON_E_INVALID, &err, "bad cursor");
  EXPECT_STATUS(tryon_generations_list(f->c, other, 2, NULL, page, &n, next, &err), TRYON_OK, &err,
                "another user's history");
  assert_int_equal(n, 0);

  /* Delete: not while queued; a finished one goes with its result image. */
  char gone[TRYON_UUID_STR_LEN];
  EXPECT_STATUS(tryon_generations_delete(f->c, u, c[0].generation_id, gone, &err), TRYON_E_CONFLICT,
                &err, "queued");
  EXPECT_STATUS(tryon_generations_delete(f->c, other, g, gone, &err), TRYON_E_NOT_FOUND, &err,
                "not theirs");
  EXPECT_STATUS(tryon_generations_delete(f->c, u, g, gone, &err), TRYON_OK, &err, "delete");
  assert_string_equal(gone, rid);
  expect_sql(f, "SELECT count(*) FROM uploads WHERE id = $1::uuid", rid, "0", "result gone");
  EXPECT_STATUS(tryon_generations_get(f->c, u, g, &gen, &err), TRYON_E_NOT_FOUND, &err, "gone");
}

typedef struct hook_op {
  tryon_job *job;
} hook_op;

static tryon_status hook_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  return tryon_generations_fail_hook(c, ((hook_op *)ud)->job, NULL, err);
}

static void fail_with(fixture *f, const tryon_generations_created *cr, const char *error_json) {
  tryon_err err;
  tryon_job job;
  EXPECT_STATUS(tryon_jobs_get(f->c, cr->job_id, 0, &job, &err), TRYON_OK, &err, "job");
  free(job.error);
  job.error = strdup(error_json);
  hook_op op = {&job};
  EXPECT_STATUS(tryon_db_tx(f->c, hook_tx, &op, &err), TRYON_OK, &err, "hook");
  tryon_job_release(&job);
}

static void test_generations__fail_hook_refunds_once_and_explains(void **state) {
  fixture *f = *state;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 600, "ru"), v = new_user(f, 601, "en");
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c;
  assert_int_equal(try_on(f, u, a, b, "f1", &c, NULL), TRYON_OK);
  assert_int_equal(c.balance, 8);
  fail_with(f, &c, "{\"code\":\"content_refused\",\"message\":\"nsfw filter 0.97\"}");
  fail_with(f, &c, "{\"code\":\"content_refused\"}"); /* a second run changes nothing */
  char uid[24];
  snprintf(uid, sizeof uid, "%lld", (long long)u);
  expect_sql(f, "SELECT period_credits + pack_credits FROM wallets WHERE user_id = $1::bigint", uid,
             "10", "the credits are back");
  expect_sql(f,
             "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'job:' || $1 ||"
             " ':refund'",
             c.job_id, "1", "one refund");
  expect_sql(f, "SELECT status || ' ' || error_code FROM generations WHERE id = $1::uuid",
             c.generation_id, "failed content_refused", "failed");
  /* The provider's words are kept for operators; users see words picked by the code. */
  expect_sql(f, "SELECT error_message FROM generations WHERE id = $1::uuid", c.generation_id,
             "nsfw filter 0.97", "operator detail");

  /* Another user, a failure without detail. */
  new_upload(f, v, a);
  new_upload(f, v, b);
  assert_int_equal(try_on(f, v, a, b, "f2", &c, NULL), TRYON_OK);
  fail_with(f, &c, "{\"code\":\"lease_expired\"}");
  expect_sql(f,
             "SELECT error_code || ' ' || coalesce(error_message, 'none') FROM generations"
             " WHERE id = $1::uuid",
             c.generation_id, "lease_expired none", "no detail given");
}

/* A try-on paid from March's free credits and cancelled after Moscow midnight: the
 * credits expired with March (billing's refund rule), the generation records it, and
 * the user's words say so instead of "your credits are back". */
static void test_generations__credits_of_an_ended_month_are_not_promised_back(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], uid[24], m[320];
  int64_t u = new_user(f, 703, "en");
  snprintf(uid, sizeof uid, "%lld", (long long)u);
  new_upload(f, u, a);
  new_upload(f, u, b);
  int64_t saved = f->now;
  f->now = 1774990200000LL; /* 2026-03-31 23:50 in Moscow */
  tryon_generations_created c;
  assert_int_equal(try_on(f, u, a, b, "c4", &c, NULL), TRYON_OK);
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, u, 1774991400000LL, &err),
                TRYON_OK, &err, "cancel at 00:10, in April");
  f->now = saved;
  expect_sql(f, "SELECT credits_expired FROM generations WHERE id = $1::uuid", c.generation_id, "2",
             "recorded on the generation");
  tryon_generation g;
  EXPECT_STATUS(tryon_generations_get(f->c, u, c.generation_id, &g, &err), TRYON_OK, &err, "get");
  assert_int_equal(g.credits_expired, 2);
  tryon_generations_user_message(g.error_code, "en", g.cost, g.credits_expired, m, sizeof m);
  assert_string_equal(m, "The try-on was cancelled. The 2 credits it cost came from a period "
                         "that has ended and expired.");
  assert_null(strstr(m, "back"));
  check_books(f);
}

/* The words for credits that did not come back, whole or in part, in both languages. */
static void test_generations__user_messages_for_expired_credits(void **state) {
  (void)state;
  char m[320];
  tryon_generations_user_message("content_refused", "en", 2, 1, m, sizeof m);
  assert_string_equal(m, "The image service refused these photos under its content rules. Your 1 "
                         "credit is back. Try other photos. 1 of them came from a period that "
                         "has ended and expired.");
  tryon_generations_user_message("content_refused", "ru", 2, 2, m, sizeof m);
  assert_string_equal(m, "Сервис генерации отклонил эти фото по своим правилам. 2 кредита из "
                         "закончившегося периода сгорели вместе с ним. Попробуйте другие фото.");
  tryon_generations_user_message("cancelled", "ru", 2, 1, m, sizeof m);
  assert_string_equal(m, "Примерка отменена. 1 кредит вернулся на ваш счёт. 1 кредит из "
                         "закончившегося периода сгорел вместе с ним.");
  tryon_generations_user_message("cancelled", "en", 2, 9, m, sizeof m); /* never above cost */
  assert_null(strstr(m, "9"));
}

static void test_generations__cancel_refunds_and_marks_cancelled(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN];
  int64_t u = new_user(f, 700, "en"), v = new_user(f, 701, "en");
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c;
  assert_int_equal(try_on(f, u, a, b, "c1", &c, NULL), TRYON_OK);
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, v, f->now, &err),
                TRYON_E_NOT_FOUND, &err, "someone else's");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, u, f->now, &err), TRYON_OK, &err,
                "cancel");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, u, f->now, &err),
                TRYON_E_CONFLICT, &err, "twice");
  expect_sql(f, "SELECT status || ' ' || error_code FROM generations WHERE id = $1::uuid",
             c.generation_id, "cancelled cancelled", "the generation");
  expect_sql(f, "SELECT state FROM jobs WHERE id = $1::uuid", c.job_id, "cancelled", "the job");
  char uid[24];
  snprintf(uid, sizeof uid, "%lld", (long long)u);
  expect_sql(f, "SELECT period_credits + pack_credits FROM wallets WHERE user_id = $1::bigint", uid,
             "10", "refunded");
  char m[256];
  tryon_generations_user_message("cancelled", "en", 2, 0, m, sizeof m);
  assert_non_null(strstr(m, "cancelled"));
  /* A finished try-on can be deleted now. */
  char gone[TRYON_UUID_STR_LEN];
  EXPECT_STATUS(tryon_generations_delete(f->c, u, c.generation_id, gone, &err), TRYON_OK, &err,
                "delete");
}

/* Once a billed provider task exists (the job was queued again for a retry after
 * createTask), the owner's cancel is refused and changes nothing (issue 12, item 8); an
 * operator may still cancel, with the refund. */
static void test_generations__owner_cannot_cancel_once_a_provider_task_exists(void **state) {
  fixture *f = *state;
  tryon_err err;
  char a[TRYON_UUID_STR_LEN], b[TRYON_UUID_STR_LEN], uid[24];
  int64_t u = new_user(f, 702, "en");
  snprintf(uid, sizeof uid, "%lld", (long long)u);
  new_upload(f, u, a);
  new_upload(f, u, b);
  tryon_generations_created c;
  assert_int_equal(try_on(f, u, a, b, "c2", &c, NULL), TRYON_OK);
  EXPECT_STATUS(tryon_generations_set_task(f->c, c.generation_id, "kie-task-1", &err), TRYON_OK,
                &err, "the provider task is recorded");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, u, f->now, &err),
                TRYON_E_FORBIDDEN, &err, "owner's cancel");
  expect_sql(f, "SELECT state FROM jobs WHERE id = $1::uuid", c.job_id, "queued", "job goes on");
  expect_sql(f, "SELECT status FROM generations WHERE id = $1::uuid", c.generation_id, "queued",
             "generation goes on");
  expect_sql(f, "SELECT period_credits + pack_credits FROM wallets WHERE user_id = $1::bigint", uid,
             "8", "no refund");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, c.job_id, 0, f->now, &err), TRYON_OK, &err,
                "operator's cancel");
  expect_sql(f, "SELECT period_credits + pack_credits FROM wallets WHERE user_id = $1::bigint", uid,
             "10", "refunded by the operator's cancel");

  /* The task id is first checkpointed in the job's payload; the generation learns it a
   * step later. A job queued again in between is refused all the same. */
  tryon_generations_created d;
  assert_int_equal(try_on(f, u, a, b, "c3", &d, NULL), TRYON_OK);
  const char *jp[] = {d.job_id};
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "UPDATE jobs SET payload = payload || '{\"task_id\":\"kie-task-2\"}'"
                              " WHERE id = $1::uuid",
                              1, jp, NULL, &err),
                TRYON_OK, &err, "checkpoint only");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, d.job_id, u, f->now, &err),
                TRYON_E_FORBIDDEN, &err, "owner's cancel after the checkpoint alone");
  expect_sql(f, "SELECT state FROM jobs WHERE id = $1::uuid", d.job_id, "queued", "goes on");

  /* A createTask that left and whose answer never came (create_sent) counts the same:
   * kie.ai may be billing a task for it. */
  tryon_generations_created e;
  assert_int_equal(try_on(f, u, a, b, "c5", &e, NULL), TRYON_OK);
  const char *ep[] = {e.job_id};
  EXPECT_STATUS(tryon_db_exec(f->c,
                              "UPDATE jobs SET payload = payload || '{\"create_sent\":true}'"
                              " WHERE id = $1::uuid",
                              1, ep, NULL, &err),
                TRYON_OK, &err, "create in flight");
  EXPECT_STATUS(tryon_generations_cancel_job(f->c, NULL, e.job_id, u, f->now, &err),
                TRYON_E_FORBIDDEN, &err, "owner's cancel with a create in flight");
  check_books(f);
}

static void test_generations__result_ids_are_stable_per_generation(void **state) {
  (void)state;
  char r1[TRYON_UUID_STR_LEN], r2[TRYON_UUID_STR_LEN], r3[TRYON_UUID_STR_LEN];
  tryon_generations_result_id("11111111-1111-4111-8111-111111111111", r1);
  tryon_generations_result_id("11111111-1111-4111-8111-111111111111", r2);
  tryon_generations_result_id("22222222-2222-4222-8222-222222222222", r3);
  assert_string_equal(r1, r2);
  assert_string_not_equal(r1, r3);
  assert_string_not_equal(r1, "11111111-1111-4111-8111-111111111111");
  tryon_uuid u;
  assert_int_equal(tryon_uuid_parse(r1, &u), TRYON_OK);
  assert_true(tryon_storage_key_valid(r1));
}

/* Files no upload row names, older than the cut-off, go; everything else stays. */
static void test_generations__orphan_files_are_swept(void **state) {
  fixture *f = *state;
  tryon_err err;
  char root[64], cmd[512], path[256];
  snprintf(root, sizeof root, "/tmp/tryon-sweep-XXXXXX");
  assert_non_null(mkdtemp(root));
  tryon_storage *s = NULL;
  assert_int_equal(tryon_storage_local_new(root, &s, &err), TRYON_OK);
  int64_t u = new_user(f, 800, NULL);
  char kept[TRYON_UUID_STR_LEN], thumb[48];
  new_upload(f, u, kept); /* a row: its files stay, thumbnail too */
  snprintf(thumb, sizeof thumb, "%s.thumb", kept);
  const char *orphan = "0a1b2c3d-0000-4000-8000-000000000001";
  const char *fresh = "0a1b2c3d-0000-4000-8000-000000000002";
  const char *keys[] = {kept, thumb, orphan, fresh};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(tryon_storage_put(s, keys[i], "x", 1, &err), TRYON_OK);
  /* Age all but `fresh` by two hours; plant a stale temporary file. */
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", root, keys[i], keys[i] + 2, keys[i]);
    snprintf(cmd, sizeof cmd, "touch -d '2 hours ago' '%s'", path);
    assert_int_equal(system(cmd), 0);
  }
  snprintf(cmd, sizeof cmd, "touch -d '3 hours ago' '%s/%.2s/%.2s/.tmp-dead'", root, orphan,
           orphan + 2);
  assert_int_equal(system(cmd), 0);
  size_t removed = 99;
  char next[TRYON_FILES_SWEEP_CURSOR_MAX];
  EXPECT_STATUS(
      tryon_files_sweep_orphans(f->c, s, f->now - 3600 * 1000, 100, NULL, next, &removed, &err),
      TRYON_OK, &err, "sweep");
  assert_string_equal(next, ""); /* one batch covered it all */
  assert_int_equal(removed, 1);
  tryon_buf b;
  tryon_buf_init(&b, 16);
  EXPECT_STATUS(tryon_storage_get(s, orphan, &b, &err), TRYON_E_NOT_FOUND, &err, "orphan gone");
  for (size_t i = 0; i < 4; i++) {
    if (strcmp(keys[i], orphan) == 0)
      continue;
    tryon_buf_reset(&b);
    EXPECT_STATUS(tryon_storage_get(s, keys[i], &b, &err), TRYON_OK, &err, keys[i]);
  }
  tryon_buf_release(&b);
  snprintf(path, sizeof path, "%s/%.2s/%.2s/.tmp-dead", root, orphan, orphan + 2);
  assert_int_not_equal(access(path, F_OK), 0); /* the stale temporary went too */
  tryon_storage_free(s);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generations__prompts_cover_every_category),
      cmocka_unit_test(test_generations__user_messages_say_the_credits_are_back),
      T(test_generations__create_charges_enqueues_and_records),
      T(test_generations__create_refuses_foreign_photos_and_bad_input),
      T(test_generations__unaffordable_leaves_nothing),
      T(test_generations__racing_requests_spend_exactly_the_balance),
      T(test_generations__worker_updates_and_history),
      T(test_generations__fail_hook_refunds_once_and_explains),
      T(test_generations__cancel_refunds_and_marks_cancelled),
      T(test_generations__credits_of_an_ended_month_are_not_promised_back),
      cmocka_unit_test(test_generations__user_messages_for_expired_credits),
      T(test_generations__owner_cannot_cancel_once_a_provider_task_exists),
      T(test_generations__orphan_files_are_swept),
      cmocka_unit_test(test_generations__result_ids_are_stable_per_generation),
  };
  return cmocka_run_group_tests_name("generations", tests, NULL, NULL);
}
