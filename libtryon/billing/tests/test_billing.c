/*
 * The billing module against a real PostgreSQL (a migrated scratch database per test),
 * written from its contract (include/tryon/billing.h) and the money rules (SPEC §5),
 * not from its implementation.
 *
 * After every scenario the books must balance (check_books): the audit reports no
 * offender, each wallet bucket equals the sum of its ledger deltas, and every ledger
 * entry's period_after/pack_after is the running sum of the entries up to it.
 *
 * Times are explicit (now_ms): Moscow is UTC+3 all year, so a Moscow month starts at
 * 21:00 UTC on the last day of the previous month.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tryon/billing.h>

#include "testsupport.h"

#define MIN_MS (60LL * 1000)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define PERIOD_MS (TRYON_SUBSCRIPTION_DAYS * DAY_MS)

/* ------------------------------------------------------------------------- fixtures */

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c; /* the test's own connection; racers lease their own */
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  /* 1 for the test + 8 racers + slack. */
  tryon_testdb_open(&f->t, 10, 30000, &f->db, &f->c);
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

/* "2026-03-31T20:59:59Z" or "2026-03-31T20:59:59.999Z" (UTC) in ms since the epoch. */
static int64_t ms_of(const char *iso) {
  int y, mo, d, h, mi, s;
  int64_t ms = 0;
  struct tm tm;
  if (sscanf(iso, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &s) != 6)
    fail_msg("bad time literal %s", iso);
  const char *dot = strchr(iso, '.');
  if (dot != NULL)
    ms = strtoll(dot + 1, NULL, 10);
  memset(&tm, 0, sizeof tm);
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return (int64_t)timegm(&tm) * 1000 + ms;
}

static const char *plan_name(tryon_plan p) {
  switch (p) {
    case TRYON_PLAN_NONE:
      return "NONE";
    case TRYON_PLAN_FREE:
      return "FREE";
    case TRYON_PLAN_START:
      return "START";
    case TRYON_PLAN_PRO:
      return "PRO";
    case TRYON_PLAN_MAX:
      return "MAX";
  }
  return "?";
}

/* The first column of the first row of `sql` as an integer; fails on no value. */
static int64_t qiv(tryon_db_conn *c, const char *sql, int n, const char *const *p) {
  char *v = tryon_test_query_value(c, sql, n, p);
  if (v == NULL)
    fail_msg("no value from: %s", sql);
  char *end = NULL;
  long long x = strtoll(v, &end, 10);
  int ok = end != v && *end == '\0';
  char copy[64];
  snprintf(copy, sizeof copy, "%s", v);
  free(v);
  if (!ok)
    fail_msg("not an integer (%s) from: %s", copy, sql);
  return x;
}

/* Same with the user id as $1. */
static int64_t qi(tryon_db_conn *c, const char *sql, int64_t user) {
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)user);
  const char *p[] = {id};
  return qiv(c, sql, 1, p);
}

/* Same with the user id as $1 and a text $2. */
static int64_t qi2(tryon_db_conn *c, const char *sql, int64_t user, const char *text) {
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)user);
  const char *p[] = {id, text};
  return qiv(c, sql, 2, p);
}

/* A text value with the user id as $1 (caller frees; NULL for no row or SQL NULL). */
static char *qs(tryon_db_conn *c, const char *sql, int64_t user) {
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)user);
  const char *p[] = {id};
  return tryon_test_query_value(c, sql, 1, p);
}

static void expect_qs(tryon_db_conn *c, const char *sql, int64_t user, const char *want,
                      const char *ctx) {
  char *v = qs(c, sql, user);
  char got[256];
  snprintf(got, sizeof got, "%s", v != NULL ? v : "(null)");
  free(v);
  if (strcmp(got, want) != 0)
    fail_msg("%s: %s gave '%s', want '%s'", ctx, sql, got, want);
}

static int64_t new_user(fixture *f, int64_t telegram_id) {
  char tg[24];
  snprintf(tg, sizeof tg, "%lld", (long long)telegram_id);
  const char *p[] = {tg, "Billing test"};
  return qiv(f->c, "INSERT INTO users (telegram_id, first_name) VALUES ($1, $2) RETURNING id", 2,
             p);
}

static void block_user(fixture *f, int64_t user) {
  free(qs(f->c,
          "UPDATE users SET blocked = true, blocked_at = now(), blocked_reason = 'test'"
          " WHERE id = $1 RETURNING id",
          user));
}

static void new_uuid(char out[TRYON_UUID_STR_LEN]) {
  tryon_uuid u;
  assert_int_equal(tryon_uuid_v4(&u), TRYON_OK);
  tryon_uuid_format(&u, out);
}

/* A job with its charge and refund keys. */
typedef struct job {
  char id[TRYON_UUID_STR_LEN];
  char charge[64];
  char refund[64];
} job;

static job new_job(void) {
  job j;
  new_uuid(j.id);
  snprintf(j.charge, sizeof j.charge, "job:%s:charge", j.id);
  snprintf(j.refund, sizeof j.refund, "job:%s:refund", j.id);
  return j;
}

static void grant_key(char out[64]) {
  char u[TRYON_UUID_STR_LEN];
  new_uuid(u);
  snprintf(out, 64, "grant:%s", u);
}

/* Inserts a succeeded YooKassa payment with consistent accounting (fee 2.8 %, tax 4 %)
 * and returns its id (caller frees). */
static char *insert_payment(fixture *f, int64_t user, const char *product, int64_t amount,
                            const char *provider_id) {
  char uid[24], amt[24], fee[24], tax[24], net[24], idem[80];
  int64_t fe = amount * 28 / 1000, tx = amount * 4 / 100;
  snprintf(uid, sizeof uid, "%lld", (long long)user);
  snprintf(amt, sizeof amt, "%lld", (long long)amount);
  snprintf(fee, sizeof fee, "%lld", (long long)fe);
  snprintf(tax, sizeof tax, "%lld", (long long)tx);
  snprintf(net, sizeof net, "%lld", (long long)(amount - fe - tx));
  snprintf(idem, sizeof idem, "idem-%s", provider_id);
  const char *p[] = {uid, provider_id, idem, product, amt, fee, tax, net};
  char *id = tryon_test_query_value(
      f->c,
      "INSERT INTO payments (user_id, provider_payment_id, idempotence_key, product, status,"
      " amount_kopecks, income_kopecks, fee_kopecks, tax_kopecks, net_kopecks, succeeded_at)"
      " VALUES ($1, $2, $3, $4, 'succeeded', $5, $5::bigint - $6::bigint, $6, $7, $8, now())"
      " RETURNING id",
      8, p);
  assert_non_null(id);
  return id;
}

static void expect_result(const tryon_billing_result *r, int64_t dperiod, int64_t dpack,
                          int64_t period_after, int64_t pack_after, bool from_free,
                          const char *ctx) {
  if (r->delta_period != dperiod || r->delta_pack != dpack || r->period_after != period_after ||
      r->pack_after != pack_after || r->from_free != from_free)
    fail_msg("%s: result delta %lld/%lld after %lld/%lld from_free %d; want delta %lld/%lld "
             "after %lld/%lld from_free %d",
             ctx, (long long)r->delta_period, (long long)r->delta_pack, (long long)r->period_after,
             (long long)r->pack_after, (int)r->from_free, (long long)dperiod, (long long)dpack,
             (long long)period_after, (long long)pack_after, (int)from_free);
  if (r->ledger_id <= 0)
    fail_msg("%s: ledger_id %lld", ctx, (long long)r->ledger_id);
}

static void expect_same_result(const tryon_billing_result *a, const tryon_billing_result *b,
                               const char *ctx) {
  if (a->ledger_id != b->ledger_id || a->delta_period != b->delta_period ||
      a->delta_pack != b->delta_pack || a->period_after != b->period_after ||
      a->pack_after != b->pack_after || a->from_free != b->from_free)
    fail_msg("%s: replay result id %lld delta %lld/%lld after %lld/%lld ff %d differs from the "
             "first: id %lld delta %lld/%lld after %lld/%lld ff %d",
             ctx, (long long)b->ledger_id, (long long)b->delta_period, (long long)b->delta_pack,
             (long long)b->period_after, (long long)b->pack_after, (int)b->from_free,
             (long long)a->ledger_id, (long long)a->delta_period, (long long)a->delta_pack,
             (long long)a->period_after, (long long)a->pack_after, (int)a->from_free);
}

/* Reads the balance at `now` and checks the buckets and the plan. */
static tryon_balance expect_balance(fixture *f, int64_t user, int64_t now, int64_t period,
                                    int64_t pack, tryon_plan plan, const char *ctx) {
  tryon_balance b;
  tryon_err err;
  memset(&b, 0, sizeof b);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_balance(f->c, user, now, &b, &err), TRYON_OK, &err, ctx);
  if (b.period != period || b.pack != pack || b.total != period + pack || b.plan != plan)
    fail_msg("%s: balance period %lld pack %lld total %lld plan %s; want period %lld pack %lld "
             "total %lld plan %s",
             ctx, (long long)b.period, (long long)b.pack, (long long)b.total, plan_name(b.plan),
             (long long)period, (long long)pack, (long long)(period + pack), plan_name(plan));
  return b;
}

/* Reads the balance at `now` and checks only the buckets (the plan is checked apart). */
static tryon_balance expect_buckets(fixture *f, int64_t user, int64_t now, int64_t period,
                                    int64_t pack, const char *ctx) {
  tryon_balance b;
  tryon_err err;
  memset(&b, 0, sizeof b);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_balance(f->c, user, now, &b, &err), TRYON_OK, &err, ctx);
  if (b.period != period || b.pack != pack || b.total != period + pack)
    fail_msg("%s: balance period %lld pack %lld total %lld; want period %lld pack %lld total %lld",
             ctx, (long long)b.period, (long long)b.pack, (long long)b.total, (long long)period,
             (long long)pack, (long long)(period + pack));
  return b;
}

/* With no period (a subscription ended in a month whose free allowance was used) the
 * balance says so: plan NONE, no period end, no watermark. */
static void expect_no_period(const tryon_balance *b, const char *ctx) {
  if (b->plan != TRYON_PLAN_NONE || b->period_ends_ms != 0 || b->watermark)
    fail_msg("%s: with no current period the balance reads plan %s, period_ends_ms %lld, "
             "watermark %d; want plan NONE, 0, 0",
             ctx, plan_name(b->plan), (long long)b->period_ends_ms, (int)b->watermark);
}

static tryon_billing_result do_spend(fixture *f, int64_t user, int64_t cost, const job *j,
                                     int64_t now) {
  tryon_billing_result r;
  tryon_billing_refusal ref;
  tryon_err err;
  memset(&r, 0, sizeof r);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_spend(f->c, user, cost, j->charge, j->id, now, false, &r, &ref, &err),
                TRYON_OK, &err, "spend");
  return r;
}

static tryon_billing_result do_grant(fixture *f, int64_t user, int64_t amount, int64_t now) {
  tryon_billing_result r;
  tryon_err err;
  char key[64];
  grant_key(key);
  memset(&r, 0, sizeof r);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_grant(f->c, user, amount, key, "test", "test grant", now, &r, &err),
                TRYON_OK, &err, "grant");
  return r;
}

static tryon_subscription do_subscribe(fixture *f, int64_t user, tryon_plan plan, int64_t now,
                                       tryon_subscribe_effect effect, const char *ctx) {
  tryon_subscription s;
  tryon_err err;
  char u[TRYON_UUID_STR_LEN], key[80];
  new_uuid(u);
  snprintf(key, sizeof key, "payment:test-%s", u);
  memset(&s, 0, sizeof s);
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_subscribe(f->c, user, plan, key, NULL, now, &s, &err), TRYON_OK, &err,
                ctx);
  if (s.effect != effect || s.plan != plan)
    fail_msg("%s: subscribe effect %d plan %s, want effect %d plan %s", ctx, (int)s.effect,
             plan_name(s.plan), (int)effect, plan_name(plan));
  if (strlen(s.id) != 36)
    fail_msg("%s: subscription id '%s'", ctx, s.id);
  return s;
}

static int64_t sub_ms(fixture *f, const char *sub_id, const char *column) {
  char sql[160];
  const char *p[] = {sub_id};
  snprintf(sql, sizeof sql,
           "SELECT (extract(epoch FROM %s) * 1000)::bigint FROM subscriptions WHERE id = $1::uuid",
           column);
  return qiv(f->c, sql, 1, p);
}

static void expect_sub_status(fixture *f, const char *sub_id, const char *want, const char *ctx) {
  const char *p[] = {sub_id};
  char *v =
      tryon_test_query_value(f->c, "SELECT status FROM subscriptions WHERE id = $1::uuid", 1, p);
  char got[32];
  snprintf(got, sizeof got, "%s", v != NULL ? v : "(none)");
  free(v);
  if (strcmp(got, want) != 0)
    fail_msg("%s: subscription %s status '%s', want '%s'", ctx, sub_id, got, want);
}

/* The books balance: the audit finds nobody, the user's wallet equals the ledger sums,
 * and every entry's *_after is the running sum up to it. */
static void check_books(fixture *f, int64_t user) {
  tryon_audit_problem probs[8];
  size_t n = 12345;
  tryon_err err;
  tryon_err_clear(&err);
  memset(probs, 0, sizeof probs);
  EXPECT_STATUS(tryon_billing_audit(f->c, probs, 8, &n, &err), TRYON_OK, &err, "audit");
  if (n != 0)
    fail_msg("audit found %zu offender(s); first: user %lld wallet %lld/%lld ledger %lld/%lld", n,
             (long long)probs[0].user_id, (long long)probs[0].wallet_period,
             (long long)probs[0].wallet_pack, (long long)probs[0].ledger_period,
             (long long)probs[0].ledger_pack);
  int64_t wp =
      qi(f->c, "SELECT coalesce((SELECT period_credits FROM wallets WHERE user_id = $1), 0)", user);
  int64_t wk =
      qi(f->c, "SELECT coalesce((SELECT pack_credits FROM wallets WHERE user_id = $1), 0)", user);
  int64_t lp =
      qi(f->c, "SELECT coalesce(sum(delta_period), 0) FROM credit_ledger WHERE user_id = $1", user);
  int64_t lk =
      qi(f->c, "SELECT coalesce(sum(delta_pack), 0) FROM credit_ledger WHERE user_id = $1", user);
  if (wp != lp || wk != lk)
    fail_msg("user %lld: wallet period %lld pack %lld, ledger sums period %lld pack %lld",
             (long long)user, (long long)wp, (long long)wk, (long long)lp, (long long)lk);
  if (wp < 0 || wk < 0)
    fail_msg("user %lld: negative wallet %lld/%lld", (long long)user, (long long)wp, (long long)wk);
  int64_t bad = qi(f->c,
                   "SELECT count(*) FROM (SELECT period_after, pack_after,"
                   " sum(delta_period) OVER w AS sp, sum(delta_pack) OVER w AS sk"
                   " FROM credit_ledger WHERE user_id = $1 WINDOW w AS (ORDER BY id)) x"
                   " WHERE period_after <> sp OR pack_after <> sk",
                   user);
  if (bad != 0)
    fail_msg("user %lld: %lld ledger entries whose period_after/pack_after are not the running "
             "sums of the deltas",
             (long long)user, (long long)bad);
}

/* What must not move when an operation is refused. */
typedef struct snap {
  int64_t period, pack, rows, subs;
} snap;

static snap take_snap(fixture *f, int64_t user) {
  snap s;
  s.period = qi(
      f->c, "SELECT coalesce((SELECT period_credits FROM wallets WHERE user_id = $1), -1)", user);
  s.pack =
      qi(f->c, "SELECT coalesce((SELECT pack_credits FROM wallets WHERE user_id = $1), -1)", user);
  s.rows = qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", user);
  s.subs = qi(f->c, "SELECT count(*) FROM subscriptions WHERE user_id = $1", user);
  return s;
}

static void expect_same_snap(const snap *a, const snap *b, const char *ctx) {
  if (a->period != b->period || a->pack != b->pack || a->rows != b->rows || a->subs != b->subs)
    fail_msg("%s: something changed: wallet %lld/%lld -> %lld/%lld, ledger rows %lld -> %lld, "
             "subscriptions %lld -> %lld",
             ctx, (long long)a->period, (long long)a->pack, (long long)b->period,
             (long long)b->pack, (long long)a->rows, (long long)b->rows, (long long)a->subs,
             (long long)b->subs);
}

static int64_t count_reason(fixture *f, int64_t user, const char *reason) {
  return qi2(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = $2", user,
             reason);
}

static int64_t count_key(fixture *f, int64_t user, const char *key) {
  return qi2(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND idempotency_key = $2",
             user, key);
}

static char *free_key(int64_t user, const char *month) {
  char *k = malloc(64);
  assert_non_null(k);
  snprintf(k, 64, "free:%lld:%s", (long long)user, month);
  return k;
}

static int64_t count_free_grant(fixture *f, int64_t user, const char *month) {
  char *k = free_key(user, month);
  int64_t n = qi2(f->c,
                  "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = 'free_grant'"
                  " AND idempotency_key = $2",
                  user, k);
  free(k);
  return n;
}

/* ------------------------------------------------------------ 1. products and costs */

static void test_billing__products_table_matches_the_price_list(void **state) {
  (void)state;
  static const struct {
    const char *code;
    int64_t price;
    int64_t credits;
    int days;
    tryon_plan plan;
    bool watermark;
  } want[] = {
      {"free", 0, 10, 0, TRYON_PLAN_FREE, true},
      {"start", 29900, 50, 30, TRYON_PLAN_START, false},
      {"pro", 49900, 150, 30, TRYON_PLAN_PRO, false},
      {"max", 89900, 500, 30, TRYON_PLAN_MAX, false},
      {"pack", 19900, 100, 0, TRYON_PLAN_NONE, false},
  };
  size_t n = 0;
  const tryon_product *all = tryon_billing_products(&n);
  assert_non_null(all);
  assert_int_equal(n, sizeof want / sizeof want[0]);
  for (size_t i = 0; i < n; i++) {
    const tryon_product *p = &all[i];
    if (p->code == NULL || strcmp(p->code, want[i].code) != 0)
      fail_msg("product %zu: code %s, want %s", i, p->code ? p->code : "(null)", want[i].code);
    if (p->title == NULL || p->title[0] == '\0')
      fail_msg("product %s has no title", want[i].code);
    if (p->price_kopecks != want[i].price || p->credits != want[i].credits ||
        p->period_days != want[i].days || p->plan != want[i].plan ||
        p->watermark != want[i].watermark)
      fail_msg("product %s: price %lld credits %lld days %d plan %s watermark %d; want %lld %lld "
               "%d %s %d",
               want[i].code, (long long)p->price_kopecks, (long long)p->credits, p->period_days,
               plan_name(p->plan), (int)p->watermark, (long long)want[i].price,
               (long long)want[i].credits, want[i].days, plan_name(want[i].plan),
               (int)want[i].watermark);
    const tryon_product *by_code = tryon_billing_product(want[i].code);
    if (by_code == NULL || by_code->price_kopecks != want[i].price ||
        by_code->credits != want[i].credits)
      fail_msg("tryon_billing_product(\"%s\") does not give the table's entry", want[i].code);
    if (want[i].plan != TRYON_PLAN_NONE) {
      const tryon_product *by_plan = tryon_billing_plan_product(want[i].plan);
      if (by_plan == NULL || strcmp(by_plan->code, want[i].code) != 0)
        fail_msg("tryon_billing_plan_product(%s) is not %s", plan_name(want[i].plan), want[i].code);
    }
  }
  assert_null(tryon_billing_product("gold"));
  assert_null(tryon_billing_product(""));
  assert_null(tryon_billing_plan_product(TRYON_PLAN_NONE));
  assert_int_equal(tryon_billing_product("free")->credits, TRYON_FREE_MONTHLY_CREDITS);
}

static void test_billing__costs_are_two_one_one(void **state) {
  (void)state;
  static const struct {
    const char *what;
    int64_t cost, want;
  } costs[] = {
      {"try-on", TRYON_COST_TRYON, 2},
      {"assistant", TRYON_COST_ASSISTANT, 1},
      {"edit", TRYON_COST_EDIT, 1},
      {"free monthly", TRYON_FREE_MONTHLY_CREDITS, 10},
      {"subscription days", TRYON_SUBSCRIPTION_DAYS, 30},
  };
  for (size_t i = 0; i < sizeof costs / sizeof costs[0]; i++)
    if (costs[i].cost != costs[i].want)
      fail_msg("%s: %lld, want %lld", costs[i].what, (long long)costs[i].cost,
               (long long)costs[i].want);
}

/* --------------------------------------------------------------- 2. free allowance */

static void test_billing__first_read_grants_the_free_allowance_once(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 1001);
  int64_t t = ms_of("2026-03-15T12:00:00Z");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM wallets WHERE user_id = $1", u), 0, "before");

  tryon_balance b = expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "first read");
  assert_true(b.watermark);
  EXPECT_I64(b.period_ends_ms, ms_of("2026-03-31T21:00:00Z"), "free period ends at Moscow month");
  EXPECT_I64(b.queued_until_ms, 0, "no queue");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM wallets WHERE user_id = $1", u), 1, "wallet created");
  EXPECT_I64(count_free_grant(f, u, "2026-03"), 1, "one free grant keyed by the month");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u), 1, "rows");
  expect_qs(f->c,
            "SELECT delta_period || '/' || delta_pack FROM credit_ledger WHERE user_id = $1"
            " AND reason = 'free_grant'",
            u, "10/0", "free grant deltas");
  check_books(f, u);

  /* A second read later in the month grants nothing. */
  b = expect_balance(f, u, ms_of("2026-03-28T08:00:00Z"), 10, 0, TRYON_PLAN_FREE, "second read");
  assert_true(b.watermark);
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u), 1,
             "no second grant");
  check_books(f, u);
}

static void test_billing__free_month_follows_moscow_time(void **state) {
  fixture *f = *state;
  static const struct {
    const char *now;
    const char *month;
    const char *ends;
  } cases[] = {
      {"2026-03-31T20:59:59Z", "2026-03", "2026-03-31T21:00:00Z"},
      {"2026-03-31T20:59:59.999Z", "2026-03", "2026-03-31T21:00:00Z"},
      {"2026-03-31T21:00:00Z", "2026-04", "2026-04-30T21:00:00Z"},
      {"2026-03-01T00:00:00Z", "2026-03", "2026-03-31T21:00:00Z"},
      {"2026-02-28T21:00:00Z", "2026-03", "2026-03-31T21:00:00Z"},
      {"2025-12-31T20:59:59Z", "2025-12", "2025-12-31T21:00:00Z"},
      {"2025-12-31T21:00:00Z", "2026-01", "2026-01-31T21:00:00Z"},
      {"2028-02-28T21:00:00Z", "2028-02", "2028-02-29T21:00:00Z"}, /* leap year */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[96];
    snprintf(ctx, sizeof ctx, "case %zu (%s)", i, cases[i].now);
    int64_t u = new_user(f, 2000 + (int64_t)i);
    tryon_balance b = expect_balance(f, u, ms_of(cases[i].now), 10, 0, TRYON_PLAN_FREE, ctx);
    EXPECT_I64(b.period_ends_ms, ms_of(cases[i].ends), ctx);
    if (count_free_grant(f, u, cases[i].month) != 1) {
      char *k = qs(f->c,
                   "SELECT string_agg(idempotency_key, ',') FROM credit_ledger"
                   " WHERE user_id = $1",
                   u);
      char keys[160];
      snprintf(keys, sizeof keys, "%s", k ? k : "(none)");
      free(k);
      fail_msg("%s: want one free grant for %s, ledger keys: %s", ctx, cases[i].month, keys);
    }
    char want[32];
    snprintf(want, sizeof want, "free %s", cases[i].month);
    expect_qs(f->c, "SELECT period_source || ' ' || period_key FROM wallets WHERE user_id = $1", u,
              want, ctx);
    check_books(f, u);
  }
}

static void test_billing__free_leftover_expires_at_the_moscow_month_end(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 3001);
  int64_t march_last = ms_of("2026-03-31T20:59:59Z");
  int64_t april_first = ms_of("2026-03-31T21:00:00Z");

  expect_balance(f, u, march_last, 10, 0, TRYON_PLAN_FREE, "march");
  expect_balance(f, u, march_last, 10, 0, TRYON_PLAN_FREE, "march again");
  EXPECT_I64(count_free_grant(f, u, "2026-03"), 1, "one march grant");
  job j = new_job();
  tryon_billing_result r = do_spend(f, u, 4, &j, march_last);
  expect_result(&r, -4, 0, 6, 0, true, "spend 4 in march");
  do_grant(f, u, 3, march_last); /* pack credits survive the month */
  check_books(f, u);

  /* April in Moscow: the 6 left of March expire, April brings exactly 10 (not 16). */
  tryon_balance b = expect_balance(f, u, april_first, 10, 3, TRYON_PLAN_FREE, "april");
  assert_true(b.watermark);
  EXPECT_I64(b.period_ends_ms, ms_of("2026-04-30T21:00:00Z"), "april ends");
  EXPECT_I64(count_free_grant(f, u, "2026-04"), 1, "april grant");
  EXPECT_I64(count_reason(f, u, "expire"), 1, "one expire row");
  expect_qs(f->c,
            "SELECT delta_period || '/' || delta_pack FROM credit_ledger WHERE user_id = $1"
            " AND reason = 'expire'",
            u, "-6/0", "march leftover expired");
  check_books(f, u);

  int64_t rows = qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u);
  expect_balance(f, u, ms_of("2026-04-15T10:00:00Z"), 10, 3, TRYON_PLAN_FREE, "mid april");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u), rows,
             "nothing new within april");
  check_books(f, u);
}

/* --------------------------------------------------------------- 3. spending order */

static void test_billing__spend_takes_period_first_then_pack(void **state) {
  fixture *f = *state;
  static const struct {
    int64_t period; /* free credits left before the spend (of 10) */
    int64_t pack;
    int64_t cost;
    int64_t dperiod, dpack, period_after, pack_after;
    bool from_free;
  } cases[] = {
      {10, 5, 12, -10, -2, 0, 3, true}, /* split: the whole period, then pack */
      {10, 5, 3, -3, 0, 7, 5, true},
      {10, 5, 10, -10, 0, 0, 5, true},
      {10, 5, 15, -10, -5, 0, 0, true},
      {1, 5, TRYON_COST_TRYON, -1, -1, 0, 4, true}, /* one free credit is enough to mark */
      {0, 5, TRYON_COST_TRYON, 0, -2, 0, 3, false}, /* entirely from pack */
      {0, 5, 5, 0, -5, 0, 0, false},
  };
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "case %zu", i);
    int64_t u = new_user(f, 4000 + (int64_t)i);
    expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, ctx);
    tryon_billing_result g = do_grant(f, u, cases[i].pack, t);
    expect_result(&g, 0, cases[i].pack, 10, cases[i].pack, false, ctx);
    if (cases[i].period < 10) {
      job pre = new_job();
      do_spend(f, u, 10 - cases[i].period, &pre, t);
    }
    job j = new_job();
    tryon_billing_result r = do_spend(f, u, cases[i].cost, &j, t + MIN_MS);
    expect_result(&r, cases[i].dperiod, cases[i].dpack, cases[i].period_after, cases[i].pack_after,
                  cases[i].from_free, ctx);
    tryon_balance b = expect_balance(f, u, t + MIN_MS, cases[i].period_after, cases[i].pack_after,
                                     TRYON_PLAN_FREE, ctx);
    /* The watermark flag says whether the NEXT spend would take free credits. */
    if (b.watermark != (cases[i].period_after > 0))
      fail_msg("%s: watermark %d with %lld free credits left", ctx, (int)b.watermark,
               (long long)cases[i].period_after);
    char want[96];
    snprintf(want, sizeof want, "charge %s %s", cases[i].from_free ? "true" : "false", j.id);
    expect_qs(f->c,
              "SELECT reason || ' ' || from_free || ' ' || job_id FROM credit_ledger"
              " WHERE user_id = $1 ORDER BY id DESC LIMIT 1",
              u, want, ctx);
    check_books(f, u);
  }
}

static void test_billing__spend_from_pack_after_period_is_empty(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 5001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  do_grant(f, u, 5, t);
  job a = new_job(), b = new_job();
  tryon_billing_result r = do_spend(f, u, 12, &a, t);
  expect_result(&r, -10, -2, 0, 3, true, "split spend");
  r = do_spend(f, u, 1, &b, t);
  expect_result(&r, 0, -1, 0, 2, false, "pack-only spend");
  tryon_balance bal = expect_balance(f, u, t, 0, 2, TRYON_PLAN_FREE, "after");
  assert_false(bal.watermark);
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND from_free", u), 1,
             "one from_free charge");
  check_books(f, u);
}

/* ------------------------------------------------------------------ 4. insufficient */

static void test_billing__insufficient_credits_change_nothing(void **state) {
  fixture *f = *state;
  static const struct {
    int64_t pack;
    int64_t cost;
    tryon_status want;
  } cases[] = {
      {5, 16, TRYON_E_INSUFFICIENT_CREDITS},
      {5, 100, TRYON_E_INSUFFICIENT_CREDITS},
      {0, 11, TRYON_E_INSUFFICIENT_CREDITS},
      {5, 15, TRYON_OK}, /* exactly everything is fine */
  };
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "case %zu (cost %lld)", i, (long long)cases[i].cost);
    int64_t u = new_user(f, 6000 + (int64_t)i);
    expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, ctx);
    if (cases[i].pack > 0)
      do_grant(f, u, cases[i].pack, t);
    int64_t total = 10 + cases[i].pack;
    snap before = take_snap(f, u);
    job j = new_job();
    tryon_billing_result r;
    tryon_billing_refusal ref = {-1, -1};
    tryon_err err;
    tryon_err_clear(&err);
    memset(&r, 0, sizeof r);
    EXPECT_STATUS(
        tryon_billing_spend(f->c, u, cases[i].cost, j.charge, j.id, t, false, &r, &ref, &err),
        cases[i].want, &err, ctx);
    if (cases[i].want == TRYON_E_INSUFFICIENT_CREDITS) {
      EXPECT_I64(ref.balance, total, ctx);
      EXPECT_I64(ref.cost, cases[i].cost, ctx);
      snap after = take_snap(f, u);
      expect_same_snap(&before, &after, ctx);
      EXPECT_I64(count_key(f, u, j.charge), 0, ctx);
      expect_balance(f, u, t, 10, cases[i].pack, TRYON_PLAN_FREE, ctx);
      /* A refused spend leaves no key behind: the same key works once credits arrive. */
      do_grant(f, u, cases[i].cost, t);
      r = do_spend(f, u, cases[i].cost, &j, t);
      EXPECT_I64(r.delta_period + r.delta_pack, -cases[i].cost, ctx);
    } else {
      expect_result(&r, -10, -cases[i].pack, 0, 0, true, ctx);
      expect_balance(f, u, t, 0, 0, TRYON_PLAN_FREE, ctx);
    }
    check_books(f, u);
  }
  /* The refusal is optional. */
  int64_t u = new_user(f, 6100);
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "no refusal struct");
  job j = new_job();
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 11, j.charge, j.id, t, false, &r, NULL, &err),
                TRYON_E_INSUFFICIENT_CREDITS, &err, "refusal NULL");
  check_books(f, u);
}

static void test_billing__bad_arguments_are_refused(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 7001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  snap before = take_snap(f, u);
  job ok = new_job();
  static const struct {
    const char *key; /* NULL: use the job's good key */
    bool null_key;
    const char *job_id; /* NULL: the job's good id */
    int64_t cost;
  } cases[] = {
      {NULL, true, NULL, 1},   {"", false, NULL, 1},           {"nocolon", false, NULL, 1},
      {":x", false, NULL, 1},  {"job:", false, NULL, 1},       {NULL, false, NULL, 0},
      {NULL, false, NULL, -2}, {NULL, false, "not-a-uuid", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "spend case %zu", i);
    const char *key = cases[i].null_key ? NULL : cases[i].key ? cases[i].key : ok.charge;
    const char *jid = cases[i].job_id ? cases[i].job_id : ok.id;
    tryon_billing_result r;
    tryon_err err;
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_billing_spend(f->c, u, cases[i].cost, key, jid, t, false, &r, NULL, &err),
                  TRYON_E_INVALID, &err, ctx);
    snap after = take_snap(f, u);
    expect_same_snap(&before, &after, ctx);
  }
  tryon_billing_result r;
  tryon_subscription s;
  tryon_err err;
  char key[64];
  grant_key(key);
  tryon_err_clear(&err);
  if (tryon_billing_grant(f->c, u, 0, key, NULL, NULL, t, &r, &err) == TRYON_OK)
    fail_msg("a grant of 0 credits was accepted");
  if (tryon_billing_revoke(f->c, u, 0, key, NULL, NULL, t, &r, &err) == TRYON_OK)
    fail_msg("a revoke of 0 credits was accepted");
  if (tryon_billing_subscribe(f->c, u, TRYON_PLAN_FREE, "payment:bad-free", NULL, t, &s, &err) ==
      TRYON_OK)
    fail_msg("subscribing to the free plan was accepted");
  if (tryon_billing_subscribe(f->c, u, TRYON_PLAN_NONE, "payment:bad-none", NULL, t, &s, &err) ==
      TRYON_OK)
    fail_msg("subscribing to no plan was accepted");
  snap after = take_snap(f, u);
  expect_same_snap(&before, &after, "after refused grant/revoke/subscribe");
  check_books(f, u);
}

static void test_billing__unknown_user_is_not_found(void **state) {
  fixture *f = *state;
  int64_t ghost = 987654321;
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  tryon_balance b;
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_balance(f->c, ghost, t, &b, &err), TRYON_E_NOT_FOUND, &err,
                "balance");
  job j = new_job();
  EXPECT_STATUS(tryon_billing_spend(f->c, ghost, 1, j.charge, j.id, t, false, &r, NULL, &err),
                TRYON_E_NOT_FOUND, &err, "spend");
  char key[64];
  grant_key(key);
  if (tryon_billing_grant(f->c, ghost, 5, key, NULL, NULL, t, &r, &err) == TRYON_OK)
    fail_msg("a grant to an unknown user succeeded");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM wallets WHERE user_id = $1", ghost), 0, "no wallet");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", ghost), 0,
             "no rows");
}

/* ----------------------------------------------------------------- 5. idempotency */

static void test_billing__charge_replay_is_duplicate_with_first_result(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 8001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  job a = new_job(), b = new_job();
  tryon_billing_result first = do_spend(f, u, 2, &a, t);
  expect_result(&first, -2, 0, 8, 0, true, "first");

  tryon_billing_result again;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, a.charge, a.id, t, false, &again, NULL, &err),
                TRYON_E_DUPLICATE, &err, "replay");
  expect_same_result(&first, &again, "replay");
  expect_balance(f, u, t, 8, 0, TRYON_PLAN_FREE, "after replay");
  EXPECT_I64(count_reason(f, u, "charge"), 1, "one charge row");

  /* After other activity the replay still reports the first result, not today's. */
  do_spend(f, u, 8, &b, t + MIN_MS);
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(
      tryon_billing_spend(f->c, u, 2, a.charge, a.id, t + 2 * MIN_MS, false, &again, NULL, &err),
      TRYON_E_DUPLICATE, &err, "replay with an empty wallet is still a duplicate");
  expect_same_result(&first, &again, "late replay");
  expect_balance(f, u, t + 2 * MIN_MS, 0, 0, TRYON_PLAN_FREE, "after late replay");
  EXPECT_I64(count_reason(f, u, "charge"), 2, "two charge rows");
  check_books(f, u);
}

static void test_billing__grant_replay_is_duplicate(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 8101);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  char key[64];
  grant_key(key);
  tryon_billing_result first, again;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_grant(f->c, u, 7, key, "ops", "apology", t, &first, &err), TRYON_OK,
                &err, "grant");
  expect_result(&first, 0, 7, 10, 7, false, "grant");
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_grant(f->c, u, 7, key, "ops", "apology", t + 1, &again, &err),
                TRYON_E_DUPLICATE, &err, "grant replay");
  expect_same_result(&first, &again, "grant replay");
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_grant(f->c, u, 50, key, "ops", "other", t + 2, &again, &err),
                TRYON_E_DUPLICATE, &err, "same key, other amount");
  expect_same_result(&first, &again, "same key, other amount");
  EXPECT_I64(count_key(f, u, key), 1, "one row for the key");
  expect_balance(f, u, t + 3, 10, 7, TRYON_PLAN_FREE, "after");
  expect_qs(
      f->c,
      "SELECT actor || '|' || note FROM credit_ledger WHERE user_id = $1 AND reason = 'grant'", u,
      "ops|apology", "actor and note recorded");
  check_books(f, u);
}

/* ---------------------------------------------------------------------- 6. refunds */

static void test_billing__refund_returns_exact_buckets_once(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 9001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  do_grant(f, u, 5, t);
  job j = new_job();
  tryon_billing_result charge = do_spend(f, u, 12, &j, t);
  expect_result(&charge, -10, -2, 0, 3, true, "charge");

  tryon_billing_result ref, again;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&ref, 0, sizeof ref);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t + MIN_MS, false, &ref, &err),
                TRYON_OK, &err, "refund");
  expect_result(&ref, 10, 2, 10, 5, false, "refund");
  expect_balance(f, u, t + MIN_MS, 10, 5, TRYON_PLAN_FREE, "after refund");
  char want[32];
  snprintf(want, sizeof want, "%lld", (long long)charge.ledger_id);
  expect_qs(f->c, "SELECT refund_of FROM credit_ledger WHERE user_id = $1 AND reason = 'refund'", u,
            want, "refund_of points at the charge");

  /* The same refund key again, and another refund key: the charge was refunded. */
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t + 2 * MIN_MS, false, &again, &err),
                TRYON_E_DUPLICATE, &err, "same refund key");
  expect_same_result(&ref, &again, "same refund key");
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, "job:other-refund-key:refund", t + 3 * MIN_MS,
                                     false, &again, &err),
                TRYON_E_DUPLICATE, &err, "other refund key");
  expect_same_result(&ref, &again, "other refund key");
  EXPECT_I64(count_reason(f, u, "refund"), 1, "one refund row");
  expect_balance(f, u, t + 3 * MIN_MS, 10, 5, TRYON_PLAN_FREE, "credits returned once");
  check_books(f, u);
}

static void test_billing__refund_of_unknown_charge_is_not_found(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 9101);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  snap before = take_snap(f, u);
  job j = new_job();
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t, false, &r, &err),
                TRYON_E_NOT_FOUND, &err, "unknown charge");
  /* A key that exists but is not a charge is no charge either. */
  char *fk = free_key(u, "2026-03");
  EXPECT_STATUS(tryon_billing_refund(f->c, fk, j.refund, t, false, &r, &err), TRYON_E_NOT_FOUND,
                &err, "refund of a free grant");
  free(fk);
  snap after = take_snap(f, u);
  expect_same_snap(&before, &after, "unknown refund");
  check_books(f, u);
}

static void test_billing__refund_after_its_period_ended_expires_with_it(void **state) {
  fixture *f = *state;
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);

  /* Charged from March's free allowance, refunded in April: the four credits come back
   * to March and expire with it at once (issue 12, item 3); April keeps its own ten. */
  int64_t u = new_user(f, 9201);
  int64_t march = ms_of("2026-03-20T10:00:00Z");
  int64_t april = ms_of("2026-04-02T10:00:00Z");
  expect_balance(f, u, march, 10, 0, TRYON_PLAN_FREE, "march");
  job j = new_job();
  tryon_billing_result charge = do_spend(f, u, 4, &j, march);
  expect_result(&charge, -4, 0, 6, 0, true, "march charge");
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, april, false, &r, &err), TRYON_OK,
                &err, "april refund");
  expect_result(&r, 4, 0, 10, 0, false, "april refund, expired with march");
  EXPECT_I64(r.expired, 4, "expired with its period");
  tryon_billing_result again;
  memset(&again, 0x5a, sizeof again); /* whatever the caller's struct held */
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, april, false, &again, &err),
                TRYON_E_DUPLICATE, &err, "replayed refund");
  expect_result(&again, 4, 0, 10, 0, false, "the replay answers as the first call did");
  EXPECT_I64(again.expired, 4, "replay: expired");
  tryon_balance b = expect_balance(f, u, april, 10, 0, TRYON_PLAN_FREE, "april after refund");
  EXPECT_I64(b.period_ends_ms, ms_of("2026-04-30T21:00:00Z"), "april period");
  EXPECT_I64(count_free_grant(f, u, "2026-04"), 1, "april grant");
  expect_qs(f->c,
            "SELECT sum(delta_period) FROM credit_ledger WHERE user_id = $1 AND reason = 'expire'"
            " AND period_key = '2026-03'",
            u, "-10", "march's leftover and its refunded credits expired with march");
  expect_qs(f->c,
            "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND note LIKE"
            " '4 credits came back after their period (2026-03) had ended and expired with it'",
            u, "2", "the refund and its expiry say so in plain words");
  check_books(f, u);

  /* Charged from the free allowance, then a subscription replaced the free month (its
   * leftover expired): the refunded free credits expire the same way. */
  int64_t v = new_user(f, 9202);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, v, t, 10, 0, TRYON_PLAN_FREE, "v start");
  job k = new_job();
  do_spend(f, v, 4, &k, t);
  do_subscribe(f, v, TRYON_PLAN_START, t + HOUR_MS, TRYON_SUBSCRIBE_STARTED, "v subscribe");
  expect_balance(f, v, t + HOUR_MS, 50, 0, TRYON_PLAN_START, "v subscribed");
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(tryon_billing_refund(f->c, k.charge, k.refund, t + 2 * HOUR_MS, false, &r, &err),
                TRYON_OK, &err, "v refund");
  expect_result(&r, 4, 0, 50, 0, false, "free credits refunded after the free month ended");
  EXPECT_I64(r.expired, 4, "v expired");
  expect_balance(f, v, t + 2 * HOUR_MS, 50, 0, TRYON_PLAN_START, "v after refund");
  check_books(f, v);

  /* Charged from START, refunded after an upgrade to PRO: the upgrade carried START's
   * credits on, so the PRO period gets them. */
  int64_t w = new_user(f, 9203);
  expect_balance(f, w, t, 10, 0, TRYON_PLAN_FREE, "w start");
  do_subscribe(f, w, TRYON_PLAN_START, t, TRYON_SUBSCRIBE_STARTED, "w start");
  job m = new_job();
  tryon_billing_result wc = do_spend(f, w, 5, &m, t + HOUR_MS);
  expect_result(&wc, -5, 0, 45, 0, false, "w charge");
  do_subscribe(f, w, TRYON_PLAN_PRO, t + 2 * HOUR_MS, TRYON_SUBSCRIBE_UPGRADED, "w upgrade");
  expect_balance(f, w, t + 2 * HOUR_MS, 195, 0, TRYON_PLAN_PRO, "w upgraded");
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(tryon_billing_refund(f->c, m.charge, m.refund, t + 3 * HOUR_MS, false, &r, &err),
                TRYON_OK, &err, "w refund");
  expect_result(&r, 5, 0, 200, 0, false, "refund into the upgraded period");
  EXPECT_I64(r.expired, 0, "w nothing expired");
  expect_balance(f, w, t + 3 * HOUR_MS, 200, 0, TRYON_PLAN_PRO, "w after refund");
  check_books(f, w);
}

static void test_billing__refund_with_no_current_period_expires(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 9301);
  int64_t t0 = ms_of("2026-03-01T10:00:00Z");
  int64_t late_march = ms_of("2026-03-31T12:00:00Z"); /* 15:00 in Moscow, still March */
  expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, "march free");
  tryon_subscription s = do_subscribe(f, u, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_STARTED, "sub");
  EXPECT_I64(s.ends_ms, t0 + PERIOD_MS, "ends");
  job j = new_job();
  tryon_billing_result charge = do_spend(f, u, 5, &j, t0 + DAY_MS);
  expect_result(&charge, -5, 0, 45, 0, false, "subscription-funded charge");

  /* START ended on 31 March; March's free key is used: no period at all (the plan label
   * is test_billing__ended_subscription_does_not_regrant_a_used_free_month's concern). */
  expect_buckets(f, u, late_march, 0, 0, "no period");

  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, late_march, false, &r, &err),
                TRYON_OK, &err, "refund");
  expect_result(&r, 5, 0, 0, 0, false, "START's credits expire with START, not into pack");
  EXPECT_I64(r.expired, 5, "expired");
  expect_buckets(f, u, late_march, 0, 0, "after refund");
  check_books(f, u);

  /* April: the free allowance comes back, nothing more. */
  expect_balance(f, u, ms_of("2026-03-31T21:00:00Z"), 10, 0, TRYON_PLAN_FREE, "april");
  check_books(f, u);
}

static void test_billing__refund_after_subscription_ended_does_not_carry_over(void **state) {
  fixture *f = *state;
  static const struct {
    const char *what;
    bool charge_from_free; /* charge March's free credits (before subscribing) or START's */
  } cases[] = {
      {"a START charge", false},
      {"a free charge", true},
  };
  char failures[768] = "";
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *ctx = cases[i].what;
    int64_t u = new_user(f, 9401 + (int64_t)i);
    int64_t t0 = ms_of("2026-03-01T10:00:00Z");
    int64_t late_march = ms_of("2026-03-31T12:00:00Z");
    expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, ctx);
    job j = new_job();
    if (cases[i].charge_from_free)
      do_spend(f, u, 4, &j, t0);
    do_subscribe(f, u, TRYON_PLAN_START, t0 + MIN_MS, TRYON_SUBSCRIBE_STARTED, ctx);
    if (!cases[i].charge_from_free)
      do_spend(f, u, 4, &j, t0 + DAY_MS);
    expect_buckets(f, u, late_march, 0, 0, ctx); /* START over, March's free used */

    tryon_billing_result r;
    tryon_err err;
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, late_march, false, &r, &err),
                  TRYON_OK, &err, ctx);
    check_books(f, u);

    /* The refunded credits expired with their period; the wallet stays readable and
     * April has exactly its 10 free credits. */
    tryon_balance b;
    memset(&b, 0, sizeof b);
    tryon_err_clear(&err);
    tryon_status st = tryon_billing_balance(f->c, u, ms_of("2026-03-31T21:00:00Z"), &b, &err);
    size_t len = strlen(failures);
    if (st != TRYON_OK)
      snprintf(failures + len, sizeof failures - len, " [%s: april read gives %s (%.120s)]", ctx,
               tryon_status_name(st), err.message);
    else if (b.total != 10 || b.period != 10 || b.pack != 0)
      snprintf(failures + len, sizeof failures - len,
               " [%s: april balance period %lld pack %lld, want 10 + 0]", ctx, (long long)b.period,
               (long long)b.pack);
    check_books(f, u);
  }
  if (failures[0] != '\0')
    fail_msg("refunded credits after a subscription ended:%s", failures);
}

/* The reproduction of issue 12, item 3: a free user queues try-ons before Moscow
 * midnight on the last day of the month and cancels them after it. The allowance must
 * not roll over (it used to go 10 → 20 → 30). The same across a paid period's end, and a
 * charge that took pack credits gets exactly those back as pack credits. */
static void test_billing__refunds_across_the_month_boundary_do_not_roll_over(void **state) {
  fixture *f = *state;
  tryon_err err;
  tryon_err_clear(&err);
  int64_t u = new_user(f, 9501);
  const char *eve[] = {"2026-03-31T20:50:00Z", "2026-04-30T20:50:00Z"};   /* 23:50 Moscow */
  const char *after[] = {"2026-03-31T21:10:00Z", "2026-04-30T21:10:00Z"}; /* 00:10 */
  expect_balance(f, u, ms_of("2026-03-05T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "march");
  for (int month = 0; month < 2; month++) {
    job jobs[5];
    for (int i = 0; i < 5; i++) {
      jobs[i] = new_job();
      do_spend(f, u, 2, &jobs[i], ms_of(eve[month]));
    }
    expect_buckets(f, u, ms_of(eve[month]), 0, 0, "all spent before midnight");
    for (int i = 0; i < 5; i++) {
      tryon_billing_result r;
      memset(&r, 0, sizeof r);
      EXPECT_STATUS(tryon_billing_refund(f->c, jobs[i].charge, jobs[i].refund, ms_of(after[month]),
                                         false, &r, &err),
                    TRYON_OK, &err, "cancel after midnight");
      EXPECT_I64(r.expired, 2, "the refund expired with last month");
    }
    expect_balance(f, u, ms_of(after[month]), 10, 0, TRYON_PLAN_FREE,
                   month == 0 ? "april: 10, not 20" : "may: 10, not 30");
    check_books(f, u);
  }

  /* Paid: START charged on its last day, refunded once it ended and a queued START
   * started; pack credits of the same charge come back as pack. */
  int64_t p = new_user(f, 9502);
  int64_t t0 = ms_of("2026-03-01T10:00:00Z");
  expect_balance(f, p, t0, 10, 0, TRYON_PLAN_FREE, "p march");
  do_subscribe(f, p, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_STARTED, "p start");
  do_subscribe(f, p, TRYON_PLAN_START, t0 + HOUR_MS, TRYON_SUBSCRIBE_QUEUED, "p queued");
  do_grant(f, p, 3, t0 + HOUR_MS);
  job burn = new_job();
  do_spend(f, p, 48, &burn, t0 + 2 * HOUR_MS); /* 50 - 48: 2 period left, 3 pack */
  job mixed = new_job();
  tryon_billing_result mc = do_spend(f, p, 4, &mixed, t0 + PERIOD_MS - HOUR_MS);
  expect_result(&mc, -2, -2, 0, 1, false, "two from START, two from pack");
  tryon_billing_result r;
  memset(&r, 0, sizeof r);
  EXPECT_STATUS(tryon_billing_refund(f->c, mixed.charge, mixed.refund, t0 + PERIOD_MS + HOUR_MS,
                                     false, &r, &err),
                TRYON_OK, &err, "refund in the next START period");
  EXPECT_I64(r.expired, 2, "the first START's two expired with it");
  expect_balance(f, p, t0 + PERIOD_MS + HOUR_MS, 50, 3, TRYON_PLAN_START,
                 "the new START's 50, pack 1 + 2 back");
  check_books(f, p);
}

/* ------------------------------------------------------------------ 7. blocked users */

static void test_billing__blocked_user_cannot_spend_but_gets_grants(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 10001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "start");
  block_user(f, u);
  snap before = take_snap(f, u);
  job j = new_job();
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 1, j.charge, j.id, t, false, &r, NULL, &err),
                TRYON_E_FORBIDDEN, &err, "blocked spend");
  snap after = take_snap(f, u);
  expect_same_snap(&before, &after, "blocked spend");
  EXPECT_I64(count_key(f, u, j.charge), 0, "no charge row");

  tryon_billing_result g = do_grant(f, u, 5, t);
  expect_result(&g, 0, 5, 10, 5, false, "grant to a blocked user");
  do_subscribe(f, u, TRYON_PLAN_START, t, TRYON_SUBSCRIBE_STARTED, "subscribe a blocked user");
  EXPECT_I64(qi(f->c, "SELECT pack_credits FROM wallets WHERE user_id = $1", u), 5, "pack");
  EXPECT_I64(qi(f->c, "SELECT period_credits FROM wallets WHERE user_id = $1", u), 50, "period");
  check_books(f, u);
}

/* ------------------------------------------------------------------ 8. subscriptions */

static void test_billing__subscribe_start_replaces_the_free_allowance(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 11001);
  int64_t t0 = ms_of("2026-03-10T09:00:00Z");
  expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, "free");
  job j = new_job();
  do_spend(f, u, 3, &j, t0);

  tryon_subscription s =
      do_subscribe(f, u, TRYON_PLAN_START, t0 + MIN_MS, TRYON_SUBSCRIBE_STARTED, "start");
  EXPECT_I64(s.starts_ms, t0 + MIN_MS, "starts now");
  EXPECT_I64(s.ends_ms, t0 + MIN_MS + PERIOD_MS, "ends in 30 days");
  tryon_balance b = expect_balance(f, u, t0 + MIN_MS, 50, 0, TRYON_PLAN_START, "started");
  assert_false(b.watermark);
  EXPECT_I64(b.period_ends_ms, t0 + MIN_MS + PERIOD_MS, "period end");
  EXPECT_I64(b.queued_until_ms, 0, "no queue");
  EXPECT_I64(count_reason(f, u, "expire"), 1, "free leftover expired");
  expect_qs(f->c,
            "SELECT delta_period || '/' || delta_pack FROM credit_ledger WHERE user_id = $1"
            " AND reason = 'expire'",
            u, "-7/0", "the 7 free credits left expire");
  char want[96];
  snprintf(want, sizeof want, "50 %s", s.id);
  expect_qs(f->c,
            "SELECT delta_period || ' ' || subscription_id FROM credit_ledger WHERE user_id = $1"
            " AND reason = 'subscription_grant'",
            u, want, "the period's 50 credits, tied to the subscription");
  expect_sub_status(f, s.id, "active", "started subscription");
  EXPECT_I64(sub_ms(f, s.id, "ends_at"), s.ends_ms, "stored end");

  /* Spending a subscription's credits is never watermarked. */
  job k = new_job();
  tryon_billing_result r = do_spend(f, u, TRYON_COST_TRYON, &k, t0 + HOUR_MS);
  expect_result(&r, -2, 0, 48, 0, false, "subscription-funded spend");
  check_books(f, u);
}

static void test_billing__subscribe_effect_by_plan(void **state) {
  fixture *f = *state;
  static const struct {
    tryon_plan first, second;
    tryon_subscribe_effect effect;
    tryon_plan plan_after;
    int64_t period_after;
  } cases[] = {
      {TRYON_PLAN_START, TRYON_PLAN_START, TRYON_SUBSCRIBE_QUEUED, TRYON_PLAN_START, 50},
      {TRYON_PLAN_START, TRYON_PLAN_PRO, TRYON_SUBSCRIBE_UPGRADED, TRYON_PLAN_PRO, 150 + 50},
      {TRYON_PLAN_START, TRYON_PLAN_MAX, TRYON_SUBSCRIBE_UPGRADED, TRYON_PLAN_MAX, 500 + 50},
      {TRYON_PLAN_PRO, TRYON_PLAN_MAX, TRYON_SUBSCRIBE_UPGRADED, TRYON_PLAN_MAX, 500 + 150},
      {TRYON_PLAN_PRO, TRYON_PLAN_START, TRYON_SUBSCRIBE_QUEUED, TRYON_PLAN_PRO, 150},
      {TRYON_PLAN_PRO, TRYON_PLAN_PRO, TRYON_SUBSCRIBE_QUEUED, TRYON_PLAN_PRO, 150},
      {TRYON_PLAN_MAX, TRYON_PLAN_PRO, TRYON_SUBSCRIBE_QUEUED, TRYON_PLAN_MAX, 500},
      {TRYON_PLAN_MAX, TRYON_PLAN_START, TRYON_SUBSCRIBE_QUEUED, TRYON_PLAN_MAX, 500},
  };
  int64_t t = ms_of("2026-05-05T12:00:00Z");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "case %zu (%s then %s)", i, plan_name(cases[i].first),
             plan_name(cases[i].second));
    int64_t u = new_user(f, 12000 + (int64_t)i);
    expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, ctx);
    do_subscribe(f, u, cases[i].first, t, TRYON_SUBSCRIBE_STARTED, ctx);
    int64_t t2 = t + HOUR_MS;
    tryon_subscription s = do_subscribe(f, u, cases[i].second, t2, cases[i].effect, ctx);
    tryon_balance b = expect_balance(f, u, t2, cases[i].period_after, 0, cases[i].plan_after, ctx);
    assert_false(b.watermark);
    if (cases[i].effect == TRYON_SUBSCRIBE_QUEUED) {
      EXPECT_I64(s.starts_ms, t + PERIOD_MS, ctx);
      EXPECT_I64(s.ends_ms, t + 2 * PERIOD_MS, ctx);
      EXPECT_I64(b.period_ends_ms, t + PERIOD_MS, ctx);
      EXPECT_I64(b.queued_until_ms, t + 2 * PERIOD_MS, ctx);
      expect_sub_status(f, s.id, "queued", ctx);
      EXPECT_I64(count_reason(f, u, "subscription_grant"), 1, "queued period grants nothing yet");
    } else {
      EXPECT_I64(s.starts_ms, t2, ctx);
      EXPECT_I64(s.ends_ms, t2 + PERIOD_MS, ctx);
      EXPECT_I64(b.period_ends_ms, t2 + PERIOD_MS, ctx);
      EXPECT_I64(b.queued_until_ms, 0, ctx);
      expect_sub_status(f, s.id, "active", ctx);
    }
    EXPECT_I64(
        qi(f->c, "SELECT count(*) FROM subscriptions WHERE user_id = $1 AND status = 'active'", u),
        1, ctx);
    check_books(f, u);
  }
}

static void test_billing__subscription_queue_upgrade_and_expiry(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 13001);
  int64_t t0 = ms_of("2026-03-10T09:00:00Z");
  expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, "free");
  tryon_subscription s1 = do_subscribe(f, u, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_STARTED, "s1");
  job j1 = new_job();
  do_spend(f, u, 20, &j1, t0 + DAY_MS);
  expect_balance(f, u, t0 + DAY_MS, 30, 0, TRYON_PLAN_START, "start, 20 spent");

  /* START again while START is active: queued after it, no credits now. */
  tryon_subscription s2 =
      do_subscribe(f, u, TRYON_PLAN_START, t0 + DAY_MS, TRYON_SUBSCRIBE_QUEUED, "s2");
  EXPECT_I64(s2.starts_ms, t0 + PERIOD_MS, "s2 starts at s1's end");
  EXPECT_I64(s2.ends_ms, t0 + 2 * PERIOD_MS, "s2 ends");
  tryon_balance b = expect_balance(f, u, t0 + DAY_MS, 30, 0, TRYON_PLAN_START, "s2 queued");
  EXPECT_I64(b.queued_until_ms, t0 + 2 * PERIOD_MS, "queued until");
  check_books(f, u);

  /* PRO while START is active: at once, 150 + the 30 unused; the queue moves back. */
  int64_t t2 = t0 + 2 * DAY_MS;
  tryon_subscription s3 = do_subscribe(f, u, TRYON_PLAN_PRO, t2, TRYON_SUBSCRIBE_UPGRADED, "s3");
  EXPECT_I64(s3.starts_ms, t2, "pro starts now");
  EXPECT_I64(s3.ends_ms, t2 + PERIOD_MS, "pro ends");
  b = expect_balance(f, u, t2, 180, 0, TRYON_PLAN_PRO, "upgraded");
  EXPECT_I64(b.period_ends_ms, t2 + PERIOD_MS, "pro period end");
  EXPECT_I64(b.queued_until_ms, t2 + PERIOD_MS + PERIOD_MS, "queue after pro");
  EXPECT_I64(sub_ms(f, s2.id, "starts_at"), t2 + PERIOD_MS, "queued start moved");
  EXPECT_I64(sub_ms(f, s2.id, "ends_at"), t2 + 2 * PERIOD_MS, "queued end moved");
  expect_sub_status(f, s2.id, "queued", "s2 still queued");
  expect_sub_status(f, s3.id, "active", "s3 active");
  EXPECT_I64(qi2(f->c,
                 "SELECT count(*) FROM subscriptions WHERE user_id = $1 AND id = $2::uuid"
                 " AND status IN ('active', 'queued')",
                 u, s1.id),
             0, "the upgraded-from START is over");
  check_books(f, u);

  /* START while PRO is active: queued after the last queued period. */
  int64_t t3 = t0 + 3 * DAY_MS;
  tryon_subscription s4 = do_subscribe(f, u, TRYON_PLAN_START, t3, TRYON_SUBSCRIBE_QUEUED, "s4");
  EXPECT_I64(s4.starts_ms, t2 + 2 * PERIOD_MS, "s4 after s2");
  EXPECT_I64(s4.ends_ms, t2 + 3 * PERIOD_MS, "s4 end");
  job j2 = new_job();
  tryon_billing_result r = do_spend(f, u, 2, &j2, t3);
  expect_result(&r, -2, 0, 178, 0, false, "pro-funded spend");
  b = expect_balance(f, u, t3, 178, 0, TRYON_PLAN_PRO, "pro with queue");
  EXPECT_I64(b.queued_until_ms, t2 + 3 * PERIOD_MS, "queued until s4 end");
  check_books(f, u);

  /* PRO ends: its 178 expire, s2 starts with 50. */
  int64_t pro_end = t2 + PERIOD_MS;
  b = expect_balance(f, u, pro_end + MIN_MS, 50, 0, TRYON_PLAN_START, "s2 running");
  EXPECT_I64(b.period_ends_ms, t2 + 2 * PERIOD_MS, "s2 end");
  EXPECT_I64(b.queued_until_ms, t2 + 3 * PERIOD_MS, "s4 still queued");
  assert_false(b.watermark);
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = 'expire'"
                " AND delta_period = -178",
                u),
             1, "pro's leftover expired");
  EXPECT_I64(qi2(f->c,
                 "SELECT coalesce(sum(delta_period), 0) FROM credit_ledger WHERE user_id = $1"
                 " AND reason = 'subscription_grant' AND subscription_id = $2::uuid",
                 u, s2.id),
             50, "s2 granted its 50");
  expect_sub_status(f, s2.id, "active", "s2 active");
  expect_sub_status(f, s3.id, "expired", "s3 expired");
  check_books(f, u);

  /* s2 ends: s4 starts. */
  b = expect_balance(f, u, t2 + 2 * PERIOD_MS + MIN_MS, 50, 0, TRYON_PLAN_START, "s4 running");
  EXPECT_I64(b.period_ends_ms, t2 + 3 * PERIOD_MS, "s4 end");
  EXPECT_I64(b.queued_until_ms, 0, "queue empty");
  expect_sub_status(f, s4.id, "active", "s4 active");
  check_books(f, u);

  /* Everything over (June 2026 in Moscow): back to the free allowance for June. */
  int64_t end = t2 + 3 * PERIOD_MS + MIN_MS;
  b = expect_balance(f, u, end, 10, 0, TRYON_PLAN_FREE, "back to free");
  assert_true(b.watermark);
  EXPECT_I64(b.period_ends_ms, ms_of("2026-06-30T21:00:00Z"), "june free period");
  EXPECT_I64(b.queued_until_ms, 0, "no queue");
  EXPECT_I64(count_free_grant(f, u, "2026-06"), 1, "june grant");
  EXPECT_I64(count_reason(f, u, "free_grant"), 2, "only march and june: never with a subscription");
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM subscriptions WHERE user_id = $1"
                " AND status IN ('active', 'queued')",
                u),
             0, "no period left");
  check_books(f, u);
}

static void test_billing__missed_reads_catch_up_without_extra_credits(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 13101);
  int64_t t0 = ms_of("2026-03-10T09:00:00Z");
  expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, "free");
  do_grant(f, u, 7, t0);
  do_subscribe(f, u, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_STARTED, "s1");
  do_subscribe(f, u, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_QUEUED, "s2");
  tryon_subscription s3 =
      do_subscribe(f, u, TRYON_PLAN_PRO, t0 + HOUR_MS, TRYON_SUBSCRIBE_UPGRADED, "s3");
  /* PRO until t0+1h+30d, then the queued START until t0+1h+60d (9 May, 13:00 Moscow).
   * Nobody reads the wallet in between, and no job runs. */
  int64_t end = s3.ends_ms + PERIOD_MS;
  check_books(f, u);

  tryon_balance b = expect_balance(f, u, end + HOUR_MS, 10, 7, TRYON_PLAN_FREE, "caught up");
  assert_true(b.watermark);
  EXPECT_I64(b.period_ends_ms, ms_of("2026-05-31T21:00:00Z"), "may free period");
  EXPECT_I64(b.queued_until_ms, 0, "no queue");
  EXPECT_I64(count_free_grant(f, u, "2026-03"), 1, "march");
  EXPECT_I64(count_free_grant(f, u, "2026-04"), 0, "april was covered by subscriptions");
  EXPECT_I64(count_free_grant(f, u, "2026-05"), 1, "may");
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM subscriptions WHERE user_id = $1"
                " AND status IN ('active', 'queued')",
                u),
             0, "every period over");
  check_books(f, u);

  /* A second read at the same time changes nothing. */
  int64_t rows = qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u);
  expect_balance(f, u, end + HOUR_MS, 10, 7, TRYON_PLAN_FREE, "again");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1", u), rows, "rows");
  check_books(f, u);
}

static void test_billing__ended_subscription_does_not_regrant_a_used_free_month(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 13201);
  int64_t t0 = ms_of("2026-03-01T10:00:00Z");
  expect_balance(f, u, t0, 10, 0, TRYON_PLAN_FREE, "march free");
  do_grant(f, u, 3, t0);
  tryon_subscription s = do_subscribe(f, u, TRYON_PLAN_START, t0, TRYON_SUBSCRIBE_STARTED, "sub");
  EXPECT_I64(s.ends_ms, ms_of("2026-03-31T10:00:00Z"), "ends 31 March");

  /* 31 March 15:00 Moscow: START over, March's free key already used → no period. */
  int64_t late = ms_of("2026-03-31T12:00:00Z");
  tryon_balance none = expect_buckets(f, u, late, 0, 3, "nothing to regrant");
  EXPECT_I64(count_free_grant(f, u, "2026-03"), 1, "march granted once");
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = 'expire'"
                " AND delta_period = -50",
                u),
             1, "start's credits expired");
  /* Only pack credits to spend now, and they carry no watermark. */
  job j = new_job();
  tryon_billing_result r = do_spend(f, u, 1, &j, late);
  expect_result(&r, 0, -1, 0, 2, false, "pack spend with no period");
  tryon_billing_refusal ref = {-1, -1};
  tryon_err err;
  tryon_err_clear(&err);
  job k = new_job();
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 3, k.charge, k.id, late, false, &r, &ref, &err),
                TRYON_E_INSUFFICIENT_CREDITS, &err, "more than the pack");
  EXPECT_I64(ref.balance, 2, "refusal balance");
  EXPECT_I64(ref.cost, 3, "refusal cost");
  check_books(f, u);

  /* April in Moscow: a new free month. */
  tryon_balance b =
      expect_balance(f, u, ms_of("2026-03-31T21:00:00Z"), 10, 2, TRYON_PLAN_FREE, "april");
  assert_true(b.watermark);
  EXPECT_I64(count_free_grant(f, u, "2026-04"), 1, "april grant");
  check_books(f, u);

  /* Last, so that the money checks above run whatever this says. */
  expect_no_period(&none, "31 March after START ended");
}

static void test_billing__expire_due_updates_due_wallets_and_counts_them(void **state) {
  fixture *f = *state;
  /* a: START that ended; b: START still running; c: March free, not over; d: February
   * free, over. */
  int64_t a = new_user(f, 14001), b = new_user(f, 14002), c = new_user(f, 14003),
          d = new_user(f, 14004);
  expect_balance(f, a, ms_of("2026-03-01T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "a");
  do_subscribe(f, a, TRYON_PLAN_START, ms_of("2026-03-01T10:00:00Z"), TRYON_SUBSCRIBE_STARTED, "a");
  expect_balance(f, b, ms_of("2026-03-11T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "b");
  do_subscribe(f, b, TRYON_PLAN_START, ms_of("2026-03-11T10:00:00Z"), TRYON_SUBSCRIBE_STARTED, "b");
  expect_balance(f, c, ms_of("2026-03-05T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "c");
  expect_balance(f, d, ms_of("2026-02-15T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "d");

  int64_t now = ms_of("2026-03-31T12:00:00Z");
  size_t count = 999;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_expire_due(f->c, now, &count, &err), TRYON_OK, &err, "expire_due");
  EXPECT_I64((int64_t)count, 2, "a and d were due");

  /* Without any read: a's START is over and its credits expired. */
  EXPECT_I64(qi(f->c, "SELECT period_credits FROM wallets WHERE user_id = $1", a), 0, "a period");
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = 'expire'"
                " AND delta_period = -50",
                a),
             1, "a expire row");
  EXPECT_I64(
      qi(f->c, "SELECT count(*) FROM subscriptions WHERE user_id = $1 AND status = 'active'", a), 0,
      "a has no active subscription");
  /* d's February leftover expired. */
  EXPECT_I64(qi(f->c,
                "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND reason = 'expire'"
                " AND delta_period = -10",
                d),
             1, "d expire row");
  EXPECT_I64(
      qi(f->c, "SELECT count(*) FROM wallets WHERE user_id = $1 AND period_key = '2026-02'", d), 0,
      "d no longer in February");
  /* b and c were not due: untouched. */
  EXPECT_I64(qi(f->c, "SELECT period_credits FROM wallets WHERE user_id = $1", b), 50, "b");
  EXPECT_I64(count_reason(f, b, "expire"), 1, "b: only the free leftover at subscribe");
  EXPECT_I64(qi(f->c, "SELECT period_credits FROM wallets WHERE user_id = $1", c), 10, "c");
  EXPECT_I64(count_reason(f, c, "expire"), 0, "c: nothing expired");
  for (int i = 0; i < 4; i++)
    check_books(f, (int64_t[]){a, b, c, d}[i]);

  /* Nothing is due any more. */
  count = 999;
  EXPECT_STATUS(tryon_billing_expire_due(f->c, now, &count, &err), TRYON_OK, &err, "again");
  EXPECT_I64((int64_t)count, 0, "second run changes nothing");
  EXPECT_STATUS(tryon_billing_expire_due(f->c, now, NULL, &err), TRYON_OK, &err, "count NULL");

  /* Reads agree and grant nothing extra. */
  expect_buckets(f, a, now, 0, 0, "a read");
  expect_balance(f, b, now, 50, 0, TRYON_PLAN_START, "b read");
  expect_balance(f, c, now, 10, 0, TRYON_PLAN_FREE, "c read");
  tryon_balance bd = expect_balance(f, d, now, 10, 0, TRYON_PLAN_FREE, "d read");
  EXPECT_I64(bd.period_ends_ms, ms_of("2026-03-31T21:00:00Z"), "d in march");
  EXPECT_I64(count_free_grant(f, d, "2026-03"), 1, "d march grant once");
  EXPECT_I64(count_free_grant(f, a, "2026-03"), 1, "a march grant once");
  for (int i = 0; i < 4; i++)
    check_books(f, (int64_t[]){a, b, c, d}[i]);
}

static void test_billing__subscribe_replay_is_duplicate_with_same_period(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 15001);
  int64_t t = ms_of("2026-03-10T09:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");
  char *pid = insert_payment(f, u, "start", 29900, "yk-sub-1");
  const char *key = "payment:yk-sub-1";
  tryon_subscription first, again;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&first, 0, sizeof first);
  EXPECT_STATUS(tryon_billing_subscribe(f->c, u, TRYON_PLAN_START, key, pid, t, &first, &err),
                TRYON_OK, &err, "subscribe");
  assert_int_equal(first.effect, TRYON_SUBSCRIBE_STARTED);

  for (int i = 0; i < 2; i++) {
    /* The same call, then the same key with another plan: both replay the first. */
    tryon_plan plan = i == 0 ? TRYON_PLAN_START : TRYON_PLAN_PRO;
    memset(&again, 0, sizeof again);
    EXPECT_STATUS(
        tryon_billing_subscribe(f->c, u, plan, key, pid, t + (i + 1) * HOUR_MS, &again, &err),
        TRYON_E_DUPLICATE, &err, i == 0 ? "replay" : "replay with another plan");
    if (strcmp(again.id, first.id) != 0 || again.plan != first.plan ||
        again.starts_ms != first.starts_ms || again.ends_ms != first.ends_ms)
      fail_msg("replay %d describes %s %s %lld..%lld, want %s %s %lld..%lld", i, again.id,
               plan_name(again.plan), (long long)again.starts_ms, (long long)again.ends_ms,
               first.id, plan_name(first.plan), (long long)first.starts_ms,
               (long long)first.ends_ms);
  }
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM subscriptions WHERE user_id = $1", u), 1,
             "one subscription");
  EXPECT_I64(count_reason(f, u, "subscription_grant"), 1, "one period granted");
  tryon_balance b = expect_balance(f, u, t + 3 * HOUR_MS, 50, 0, TRYON_PLAN_START, "after");
  EXPECT_I64(b.queued_until_ms, 0, "nothing queued");
  expect_qs(f->c, "SELECT payment_id FROM subscriptions WHERE user_id = $1", u, pid,
            "the payment is recorded");
  free(pid);
  check_books(f, u);

  /* A queued period is idempotent too, before it has any ledger row. */
  tryon_subscription q1, q2;
  memset(&q1, 0, sizeof q1);
  memset(&q2, 0, sizeof q2);
  EXPECT_STATUS(tryon_billing_subscribe(f->c, u, TRYON_PLAN_START, "grant:queued-1", NULL,
                                        t + 4 * HOUR_MS, &q1, &err),
                TRYON_OK, &err, "queue");
  assert_int_equal(q1.effect, TRYON_SUBSCRIBE_QUEUED);
  EXPECT_STATUS(tryon_billing_subscribe(f->c, u, TRYON_PLAN_START, "grant:queued-1", NULL,
                                        t + 5 * HOUR_MS, &q2, &err),
                TRYON_E_DUPLICATE, &err, "queue replay");
  assert_string_equal(q2.id, q1.id);
  EXPECT_I64(q2.starts_ms, q1.starts_ms, "queued replay start");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM subscriptions WHERE user_id = $1", u), 2,
             "one queued period");
  b = expect_balance(f, u, t + 5 * HOUR_MS, 50, 0, TRYON_PLAN_START, "after queue replay");
  EXPECT_I64(b.queued_until_ms, t + 2 * PERIOD_MS, "one period queued");
  check_books(f, u);
}

/* ------------------------------------------------------------------------ 9. revoke */

static void test_billing__revoke_takes_pack_first_then_period(void **state) {
  fixture *f = *state;
  static const struct {
    int64_t amount;
    tryon_status want;
    int64_t dperiod, dpack;
  } cases[] = {
      {3, TRYON_OK, 0, -3},
      {5, TRYON_OK, 0, -5},
      {7, TRYON_OK, -2, -5},
      {15, TRYON_OK, -10, -5},
      {16, TRYON_E_INSUFFICIENT_CREDITS, 0, 0},
      {1000, TRYON_E_INSUFFICIENT_CREDITS, 0, 0},
  };
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char ctx[64], key[64];
    snprintf(ctx, sizeof ctx, "revoke %lld", (long long)cases[i].amount);
    int64_t u = new_user(f, 16000 + (int64_t)i);
    expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, ctx);
    do_grant(f, u, 5, t);
    snap before = take_snap(f, u);
    char uuid[TRYON_UUID_STR_LEN];
    new_uuid(uuid);
    snprintf(key, sizeof key, "revoke:%s", uuid);
    tryon_billing_result r;
    tryon_err err;
    tryon_err_clear(&err);
    memset(&r, 0, sizeof r);
    EXPECT_STATUS(tryon_billing_revoke(f->c, u, cases[i].amount, key, "ops", "fraud", t, &r, &err),
                  cases[i].want, &err, ctx);
    if (cases[i].want == TRYON_OK) {
      expect_result(&r, cases[i].dperiod, cases[i].dpack, 10 + cases[i].dperiod, 5 + cases[i].dpack,
                    false, ctx);
      expect_balance(f, u, t, 10 + cases[i].dperiod, 5 + cases[i].dpack, TRYON_PLAN_FREE, ctx);
      EXPECT_I64(count_reason(f, u, "revoke"), 1, ctx);
    } else {
      snap after = take_snap(f, u);
      expect_same_snap(&before, &after, ctx);
      expect_balance(f, u, t, 10, 5, TRYON_PLAN_FREE, ctx);
    }
    check_books(f, u);
  }
}

/* ---------------------------------------------------------------------- 10. add_pack */

static void test_billing__add_pack_credits_a_payment_once(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 17001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");
  char *pid = insert_payment(f, u, "pack", 19900, "yk-pack-1");
  const char *key = "payment:yk-pack-1";
  tryon_billing_result first, again;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&first, 0, sizeof first);
  EXPECT_STATUS(tryon_billing_add_pack(f->c, u, pid, key, t, &first, &err), TRYON_OK, &err,
                "add_pack");
  expect_result(&first, 0, 100, 10, 100, false, "add_pack");
  memset(&again, 0, sizeof again);
  EXPECT_STATUS(tryon_billing_add_pack(f->c, u, pid, key, t + MIN_MS, &again, &err),
                TRYON_E_DUPLICATE, &err, "replay");
  expect_same_result(&first, &again, "replay");
  EXPECT_I64(count_key(f, u, key), 1, "one row");
  char want[96];
  snprintf(want, sizeof want, "purchase %s", pid);
  expect_qs(f->c,
            "SELECT reason || ' ' || payment_id FROM credit_ledger WHERE user_id = $1"
            " AND idempotency_key = 'payment:yk-pack-1'",
            u, want, "a purchase row tied to the payment");
  free(pid);
  /* Pack credits outlive months. */
  expect_balance(f, u, ms_of("2026-07-10T10:00:00Z"), 10, 100, TRYON_PLAN_FREE, "july");
  check_books(f, u);
}

/* ------------------------------------------------------ spend inside a caller's tx */

static void test_billing__spend_inside_caller_transaction(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 18001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");
  job j = new_job();
  tryon_billing_result r;
  tryon_err err;
  tryon_err_clear(&err);

  EXPECT_STATUS(tryon_db_exec(f->c, "BEGIN", 0, NULL, NULL, &err), TRYON_OK, &err, "begin");
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, j.charge, j.id, t, true, &r, NULL, &err), TRYON_OK,
                &err, "spend in tx");
  expect_result(&r, -2, 0, 8, 0, true, "spend in tx");
  EXPECT_STATUS(tryon_db_exec(f->c, "ROLLBACK", 0, NULL, NULL, &err), TRYON_OK, &err, "rollback");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "rolled back with the caller");
  EXPECT_I64(count_key(f, u, j.charge), 0, "no row after rollback");

  EXPECT_STATUS(tryon_db_exec(f->c, "BEGIN", 0, NULL, NULL, &err), TRYON_OK, &err, "begin 2");
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, j.charge, j.id, t, true, &r, NULL, &err), TRYON_OK,
                &err, "same key after rollback");
  EXPECT_STATUS(tryon_db_exec(f->c, "COMMIT", 0, NULL, NULL, &err), TRYON_OK, &err, "commit");
  expect_balance(f, u, t, 8, 0, TRYON_PLAN_FREE, "committed with the caller");
  EXPECT_I64(count_key(f, u, j.charge), 1, "row after commit");

  /* A refund inside the caller's transaction commits with it too. */
  EXPECT_STATUS(tryon_db_exec(f->c, "BEGIN", 0, NULL, NULL, &err), TRYON_OK, &err, "begin 3");
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t, true, &r, &err), TRYON_OK, &err,
                "refund in tx");
  EXPECT_STATUS(tryon_db_exec(f->c, "COMMIT", 0, NULL, NULL, &err), TRYON_OK, &err, "commit 3");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "refund committed");
  check_books(f, u);
}

/* ----------------------------------------------------------- 12. review regressions */

/* A refused or replayed call inside the caller's committed transaction leaves the
 * wallet and the ledger in agreement (the refresh it did is kept consistent). */
static void test_billing__refusals_inside_caller_transaction_keep_books(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19001);
  int64_t march = ms_of("2026-03-31T20:59:00Z"), april = ms_of("2026-03-31T21:01:00Z");
  job j = new_job();
  tryon_billing_result r;
  tryon_billing_refusal ref;
  tryon_err err;
  tryon_err_clear(&err);
  do_spend(f, u, 2, &j, march);
  /* A worker's retry in the next month: a replay inside its transaction, committed. */
  EXPECT_STATUS(tryon_db_exec(f->c, "BEGIN", 0, NULL, NULL, &err), TRYON_OK, &err, "begin");
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, j.charge, j.id, april, true, &r, &ref, &err),
                TRYON_E_DUPLICATE, &err, "replay in tx");
  job big = new_job();
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 500, big.charge, big.id, april, true, &r, &ref, &err),
                TRYON_E_INSUFFICIENT_CREDITS, &err, "refused in tx");
  EXPECT_STATUS(tryon_db_exec(f->c, "COMMIT", 0, NULL, NULL, &err), TRYON_OK, &err, "commit");
  check_books(f, u);
  expect_balance(f, u, april + MIN_MS, 10, 0, TRYON_PLAN_FREE, "April works afterwards");
  check_books(f, u);
}

/* A host whose clock is behind must not undo a month that has begun elsewhere. */
static void test_billing__clock_behind_does_not_expire_a_new_month(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19002);
  expect_balance(f, u, ms_of("2026-03-31T21:00:01Z"), 10, 0, TRYON_PLAN_FREE, "April");
  tryon_balance b = expect_balance(f, u, ms_of("2026-03-31T20:59:59Z"), 10, 0, TRYON_PLAN_FREE,
                                   "a reader two seconds behind");
  (void)b;
  expect_balance(f, u, ms_of("2026-04-02T10:00:00Z"), 10, 0, TRYON_PLAN_FREE, "April, later");
  EXPECT_I64(count_reason(f, u, "expire"), 0, "nothing expired");
  check_books(f, u);
}

/* One payment buys one thing: a pack and a subscription cannot share it. */
static void test_billing__one_payment_buys_one_thing(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19003);
  int64_t t = ms_of("2026-05-05T10:00:00Z");
  char *pay = insert_payment(f, u, "pack", 19900, "yk-one");
  tryon_billing_result r;
  tryon_subscription s;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_add_pack(f->c, u, pay, "payment:yk-one", t, &r, &err), TRYON_OK, &err,
                "pack");
  EXPECT_STATUS(
      tryon_billing_subscribe(f->c, u, TRYON_PLAN_MAX, "payment:yk-one", pay, t, &s, &err),
      TRYON_E_CONFLICT, &err, "the same payment for a subscription");
  EXPECT_STATUS(
      tryon_billing_subscribe(f->c, u, TRYON_PLAN_MAX, "payment:yk-other", pay, t, &s, &err),
      TRYON_E_CONFLICT, &err, "the same payment id under another key");
  char *pay2 = insert_payment(f, u, "start", 29900, "yk-two");
  EXPECT_STATUS(
      tryon_billing_subscribe(f->c, u, TRYON_PLAN_START, "payment:yk-two", pay2, t, &s, &err),
      TRYON_OK, &err, "a subscription");
  EXPECT_STATUS(tryon_billing_add_pack(f->c, u, pay2, "payment:yk-two", t, &r, &err),
                TRYON_E_CONFLICT, &err, "the same payment for a pack");
  expect_buckets(f, u, t, 50, 100, "one pack and one period, nothing more");
  check_books(f, u);
  free(pay);
  free(pay2);
}

/* Operators cannot take keys the system owns, nor overflow a balance. */
static void test_billing__grants_keep_off_system_keys_and_bounds(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19004);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  char key[96];
  tryon_billing_result r;
  tryon_err err;
  static const char *const kinds[] = {"free", "sub", "expire", "job", "payment"};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    snprintf(key, sizeof key, "%s:%lld:2026-04", kinds[i], (long long)u);
    EXPECT_STATUS(tryon_billing_grant(f->c, u, 5, key, "test", NULL, t, &r, &err), TRYON_E_INVALID,
                  &err, kinds[i]);
  }
  grant_key(key);
  EXPECT_STATUS(tryon_billing_grant(f->c, u, 1000000001LL, key, "test", NULL, t, &r, &err),
                TRYON_E_INVALID, &err, "over the amount bound");
  expect_balance(f, u, ms_of("2026-04-02T10:00:00Z"), 10, 0, TRYON_PLAN_FREE,
                 "April's allowance still arrives");
  check_books(f, u);
}

/* The audit also checks each entry's balances-after against the running sums. */
static void test_billing__audit_detects_a_broken_chain(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19006);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  tryon_audit_problem probs[4];
  size_t n = 0;
  tryon_err err;
  do_grant(f, u, 5, t);
  do_grant(f, u, 7, t);
  /* Only a table owner switching the append-only trigger off can do this. */
  EXPECT_STATUS(
      tryon_db_exec_script(
          f->c, "ALTER TABLE credit_ledger DISABLE TRIGGER credit_ledger_no_update", &err),
      TRYON_OK, &err, "disable");
  free(qs(f->c,
          "UPDATE credit_ledger SET pack_after = pack_after + 1 WHERE user_id = $1"
          " AND reason = 'grant' AND delta_pack = 5 RETURNING id",
          u));
  EXPECT_STATUS(tryon_db_exec_script(
                    f->c, "ALTER TABLE credit_ledger ENABLE TRIGGER credit_ledger_no_update", &err),
                TRYON_OK, &err, "enable");
  EXPECT_STATUS(tryon_billing_audit(f->c, probs, 4, &n, &err), TRYON_OK, &err, "audit");
  EXPECT_I64((int64_t)n, 1, "one offender");
  assert_true(probs[0].chain_broken);
  EXPECT_I64(probs[0].wallet_pack, probs[0].ledger_pack, "the sums still agree");
}

/* Replaying a charge that was refunded says so: the work is not paid. */
static void test_billing__replayed_refunded_charge_says_refunded(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 19005);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  job j = new_job();
  tryon_billing_result r;
  tryon_err err;
  do_spend(f, u, 2, &j, t);
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, j.charge, j.id, t, false, &r, NULL, &err),
                TRYON_E_DUPLICATE, &err, "replay before the refund");
  assert_false(r.refunded);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t, false, &r, &err), TRYON_OK, &err,
                "refund");
  EXPECT_STATUS(tryon_billing_spend(f->c, u, 2, j.charge, j.id, t, false, &r, NULL, &err),
                TRYON_E_DUPLICATE, &err, "replay after the refund");
  assert_true(r.refunded);
  check_books(f, u);
}

/* ------------------------------------------------------------------- 11. concurrency */

typedef struct race {
  tryon_db *db;
  int64_t user;
  int64_t now;
  int ntasks;
  const job *jobs; /* one per task */
  tryon_status *status;
  tryon_billing_result *res;
  int next;
  int acquire_failures;
  pthread_barrier_t barrier;
  pthread_mutex_t mu;
  char first_error[256];
} race;

static void *racer(void *arg) {
  race *r = arg;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_db_acquire(r->db, &c, &err);
  /* Everyone holds a connection of their own before anyone spends. */
  pthread_barrier_wait(&r->barrier);
  if (st != TRYON_OK) {
    __atomic_add_fetch(&r->acquire_failures, 1, __ATOMIC_SEQ_CST);
    return NULL;
  }
  for (;;) {
    int i = __atomic_fetch_add(&r->next, 1, __ATOMIC_SEQ_CST);
    if (i >= r->ntasks)
      break;
    tryon_err e;
    tryon_err_clear(&e);
    r->status[i] = tryon_billing_spend(c, r->user, 1, r->jobs[i].charge, r->jobs[i].id, r->now,
                                       false, &r->res[i], NULL, &e);
    if (r->status[i] != TRYON_OK && r->status[i] != TRYON_E_INSUFFICIENT_CREDITS &&
        r->status[i] != TRYON_E_DUPLICATE) {
      pthread_mutex_lock(&r->mu);
      if (r->first_error[0] == '\0')
        snprintf(r->first_error, sizeof r->first_error, "%s: %.200s",
                 tryon_status_name(r->status[i]), e.message);
      pthread_mutex_unlock(&r->mu);
    }
  }
  tryon_db_release(c);
  return NULL;
}

#define RACERS 8

static void run_race(fixture *f, race *r) {
  pthread_t th[RACERS];
  r->db = f->db;
  pthread_barrier_init(&r->barrier, NULL, RACERS);
  pthread_mutex_init(&r->mu, NULL);
  for (int i = 0; i < RACERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, racer, r), 0);
  for (int i = 0; i < RACERS; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&r->barrier);
  pthread_mutex_destroy(&r->mu);
  if (r->acquire_failures != 0)
    fail_msg("%d racers could not get a connection", r->acquire_failures);
}

static void test_billing__concurrent_spends_never_overdraw(void **state) {
  fixture *f = *state;
  enum { TASKS = 200 };
  int64_t u = new_user(f, 19001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");
  do_grant(f, u, 40, t);
  expect_balance(f, u, t, 10, 40, TRYON_PLAN_FREE, "exactly 50");

  race *r = calloc(1, sizeof *r);
  job *jobs = calloc(TASKS, sizeof *jobs);
  tryon_status *st = calloc(TASKS, sizeof *st);
  tryon_billing_result *res = calloc(TASKS, sizeof *res);
  assert_true(r && jobs && st && res);
  for (int i = 0; i < TASKS; i++)
    jobs[i] = new_job();
  r->user = u;
  r->now = t + MIN_MS;
  r->ntasks = TASKS;
  r->jobs = jobs;
  r->status = st;
  r->res = res;
  run_race(f, r);

  int ok = 0, insufficient = 0, other = 0, from_free = 0, bad_delta = 0;
  for (int i = 0; i < TASKS; i++) {
    if (st[i] == TRYON_OK) {
      ok++;
      from_free += res[i].from_free;
      bad_delta += res[i].delta_period + res[i].delta_pack != -1;
    } else if (st[i] == TRYON_E_INSUFFICIENT_CREDITS) {
      insufficient++;
    } else {
      other++;
    }
  }
  char err_copy[256];
  snprintf(err_copy, sizeof err_copy, "%s", r->first_error);
  free(r);
  free(jobs);
  free(st);
  free(res);
  if (ok != 50 || insufficient != 150 || other != 0)
    fail_msg("200 parallel spends on 50 credits: %d ok, %d insufficient, %d other (first: %s); "
             "want 50/150/0",
             ok, insufficient, other, err_copy);
  EXPECT_I64(bad_delta, 0, "every ok spend took exactly 1");
  EXPECT_I64(from_free, 10, "exactly the 10 free credits were marked");
  EXPECT_I64(count_reason(f, u, "charge"), 50, "50 charge rows");
  EXPECT_I64(qi(f->c, "SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND from_free", u), 10,
             "10 from_free rows");
  expect_balance(f, u, t + MIN_MS, 0, 0, TRYON_PLAN_FREE, "all spent, nothing below zero");
  check_books(f, u);
}

static void test_billing__concurrent_replays_of_one_key_charge_once(void **state) {
  fixture *f = *state;
  enum { TASKS = 20 };
  int64_t u = new_user(f, 19101);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");

  race *r = calloc(1, sizeof *r);
  job *jobs = calloc(TASKS, sizeof *jobs);
  tryon_status *st = calloc(TASKS, sizeof *st);
  tryon_billing_result *res = calloc(TASKS, sizeof *res);
  assert_true(r && jobs && st && res);
  jobs[0] = new_job();
  for (int i = 1; i < TASKS; i++)
    jobs[i] = jobs[0];
  r->user = u;
  r->now = t;
  r->ntasks = TASKS;
  r->jobs = jobs;
  r->status = st;
  r->res = res;
  run_race(f, r);

  int ok = 0, dup = 0, other = 0, mismatched = 0;
  int64_t ok_id = 0;
  for (int i = 0; i < TASKS; i++)
    if (st[i] == TRYON_OK) {
      ok++;
      ok_id = res[i].ledger_id;
    }
  for (int i = 0; i < TASKS; i++) {
    if (st[i] == TRYON_E_DUPLICATE) {
      dup++;
      mismatched += res[i].ledger_id != ok_id || res[i].delta_period != -1 ||
                    res[i].delta_pack != 0 || res[i].period_after != 9 || !res[i].from_free;
    } else if (st[i] != TRYON_OK) {
      other++;
    }
  }
  char err_copy[256];
  snprintf(err_copy, sizeof err_copy, "%s", r->first_error);
  free(r);
  free(jobs);
  free(st);
  free(res);
  if (ok != 1 || dup != 19 || other != 0)
    fail_msg("20 parallel replays of one key: %d ok, %d duplicate, %d other (first: %s); want "
             "1/19/0",
             ok, dup, other, err_copy);
  EXPECT_I64(mismatched, 0, "every duplicate reports the first result");
  EXPECT_I64(count_reason(f, u, "charge"), 1, "one charge row");
  expect_balance(f, u, t, 9, 0, TRYON_PLAN_FREE, "charged once");
  check_books(f, u);
}

/* ------------------------------------------------------------- 12. history and audit */

static void test_billing__history_is_newest_first_with_fields(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 20001);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "free");
  char gkey[64];
  grant_key(gkey);
  tryon_billing_result g, c, rf;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_billing_grant(f->c, u, 5, gkey, "operator", "welcome bonus", t, &g, &err),
                TRYON_OK, &err, "grant");
  job j = new_job();
  c = do_spend(f, u, 3, &j, t + MIN_MS);
  EXPECT_STATUS(tryon_billing_refund(f->c, j.charge, j.refund, t + 2 * MIN_MS, false, &rf, &err),
                TRYON_OK, &err, "refund");

  tryon_ledger_entry e[10];
  size_t n = 999;
  memset(e, 0, sizeof e);
  EXPECT_STATUS(tryon_billing_history(f->c, u, 10, e, &n, &err), TRYON_OK, &err, "history");
  assert_int_equal(n, 4);
  char *fk = free_key(u, "2026-03");
  static const struct {
    const char *reason;
    int64_t dp, dk, pa, ka;
    bool from_free;
  } want[] = {
      {"refund", 3, 0, 10, 5, false},
      {"charge", -3, 0, 7, 5, true},
      {"grant", 0, 5, 10, 5, false},
      {"free_grant", 10, 0, 10, 0, false},
  };
  const char *keys[] = {j.refund, j.charge, gkey, fk};
  int64_t ids[] = {rf.ledger_id, c.ledger_id, g.ledger_id, 0};
  for (size_t i = 0; i < 4; i++) {
    char ctx[48];
    snprintf(ctx, sizeof ctx, "history[%zu]", i);
    if (strcmp(e[i].reason, want[i].reason) != 0 || strcmp(e[i].key, keys[i]) != 0 ||
        e[i].delta_period != want[i].dp || e[i].delta_pack != want[i].dk ||
        e[i].period_after != want[i].pa || e[i].pack_after != want[i].ka ||
        e[i].from_free != want[i].from_free)
      fail_msg("%s: %s %s %lld/%lld after %lld/%lld ff %d; want %s %s %lld/%lld after %lld/%lld "
               "ff %d",
               ctx, e[i].reason, e[i].key, (long long)e[i].delta_period, (long long)e[i].delta_pack,
               (long long)e[i].period_after, (long long)e[i].pack_after, (int)e[i].from_free,
               want[i].reason, keys[i], (long long)want[i].dp, (long long)want[i].dk,
               (long long)want[i].pa, (long long)want[i].ka, (int)want[i].from_free);
    if (ids[i] != 0)
      EXPECT_I64(e[i].id, ids[i], ctx);
    if (i > 0 && e[i].id >= e[i - 1].id)
      fail_msg("%s: id %lld not older than %lld", ctx, (long long)e[i].id, (long long)e[i - 1].id);
    if (e[i].created_ms <= 0)
      fail_msg("%s: created_ms %lld", ctx, (long long)e[i].created_ms);
  }
  free(fk);
  assert_string_equal(e[2].note, "welcome bonus");

  /* `max` bounds the answer: the newest two. */
  tryon_ledger_entry two[2];
  n = 999;
  EXPECT_STATUS(tryon_billing_history(f->c, u, 2, two, &n, &err), TRYON_OK, &err, "history 2");
  assert_int_equal(n, 2);
  assert_string_equal(two[0].reason, "refund");
  assert_string_equal(two[1].reason, "charge");

  /* Someone with no entries has an empty history. */
  int64_t v = new_user(f, 20002);
  n = 999;
  EXPECT_STATUS(tryon_billing_history(f->c, v, 10, e, &n, &err), TRYON_OK, &err, "empty");
  assert_int_equal(n, 0);
  check_books(f, u);
}

static void test_billing__audit_detects_a_corrupted_wallet(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 21001), v = new_user(f, 21002);
  int64_t t = ms_of("2026-03-10T10:00:00Z");
  expect_balance(f, u, t, 10, 0, TRYON_PLAN_FREE, "u");
  do_grant(f, u, 5, t);
  job j = new_job();
  do_spend(f, u, 12, &j, t); /* u: period 0, pack 3 */
  expect_balance(f, v, t, 10, 0, TRYON_PLAN_FREE, "v");
  check_books(f, u);
  check_books(f, v);

  free(qs(f->c,
          "UPDATE wallets SET pack_credits = pack_credits + 1 WHERE user_id = $1 RETURNING user_id",
          u));
  tryon_audit_problem p[4];
  size_t n = 999;
  tryon_err err;
  tryon_err_clear(&err);
  memset(p, 0, sizeof p);
  EXPECT_STATUS(tryon_billing_audit(f->c, p, 4, &n, &err), TRYON_OK, &err, "audit");
  assert_int_equal(n, 1);
  if (p[0].user_id != u || p[0].telegram_id != 21001 || p[0].wallet_period != 0 ||
      p[0].wallet_pack != 4 || p[0].ledger_period != 0 || p[0].ledger_pack != 3)
    fail_msg("offender: user %lld tg %lld wallet %lld/%lld ledger %lld/%lld; want user %lld tg "
             "21001 wallet 0/4 ledger 0/3",
             (long long)p[0].user_id, (long long)p[0].telegram_id, (long long)p[0].wallet_period,
             (long long)p[0].wallet_pack, (long long)p[0].ledger_period,
             (long long)p[0].ledger_pack, (long long)u);

  /* Two offenders, room for one: *n counts them all. */
  free(qs(f->c,
          "UPDATE wallets SET period_credits = period_credits - 1 WHERE user_id = $1"
          " RETURNING user_id",
          v));
  n = 999;
  memset(p, 0, sizeof p);
  EXPECT_STATUS(tryon_billing_audit(f->c, p, 1, &n, &err), TRYON_OK, &err, "audit max 1");
  assert_int_equal(n, 2);
  assert_true(p[0].user_id == u || p[0].user_id == v);
  assert_int_equal(p[1].user_id, 0); /* nothing written past max */

  /* Put both right again: clean. */
  free(qs(f->c,
          "UPDATE wallets SET pack_credits = pack_credits - 1 WHERE user_id = $1 RETURNING user_id",
          u));
  free(qs(f->c,
          "UPDATE wallets SET period_credits = period_credits + 1 WHERE user_id = $1"
          " RETURNING user_id",
          v));
  check_books(f, u);
  check_books(f, v);
}

static void test_billing__audit_flags_ledger_rows_without_wallet(void **state) {
  fixture *f = *state;
  int64_t u = new_user(f, 22001);
  free(qs(f->c,
          "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
          " pack_after) VALUES ($1, 'grant:manual-1', 'grant', 5, 0, 5) RETURNING id",
          u));
  tryon_audit_problem p[2];
  size_t n = 999;
  tryon_err err;
  tryon_err_clear(&err);
  memset(p, 0, sizeof p);
  EXPECT_STATUS(tryon_billing_audit(f->c, p, 2, &n, &err), TRYON_OK, &err, "audit");
  assert_int_equal(n, 1);
  if (p[0].user_id != u || p[0].telegram_id != 22001 || p[0].wallet_period != 0 ||
      p[0].wallet_pack != 0 || p[0].ledger_period != 0 || p[0].ledger_pack != 5)
    fail_msg("offender: user %lld tg %lld wallet %lld/%lld ledger %lld/%lld; want wallet 0/0 "
             "ledger 0/5",
             (long long)p[0].user_id, (long long)p[0].telegram_id, (long long)p[0].wallet_period,
             (long long)p[0].wallet_pack, (long long)p[0].ledger_period,
             (long long)p[0].ledger_pack);
}

/* The key syntax and plan codes every caller (the API, tryonctl) takes from here. */
static void test_billing__key_syntax_and_plan_codes(void **state) {
  static const struct {
    const char *key;
    bool has_kind, valid, reserved;
  } keys[] = {
      {"grant:ticket-17", true, true, false},
      {"support_x:t18", true, true, false},
      {"payment:2f6e", true, true, true},
      {"job:1:charge", true, true, true},
      {"free:1:2026-01", true, true, true},
      {"grant:", true, false, false},
      {"grant:a b", true, false, false},
      {"grant:a\vb", true, false, false},
      {"ticket-17", false, false, false},
      {"Grant:x", false, false, false},
      {"_x:y", false, false, false},
      {"", false, false, false},
      {NULL, false, false, false},
  };
  char longest[TRYON_LEDGER_KEY_MAX + 2];
  (void)state;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    assert_int_equal(tryon_billing_key_has_kind(keys[i].key), keys[i].has_kind);
    assert_int_equal(tryon_billing_key_valid(keys[i].key), keys[i].valid);
    assert_int_equal(tryon_billing_key_reserved(keys[i].key), keys[i].reserved);
  }
  memset(longest, 'k', sizeof longest);
  memcpy(longest, "grant:", 6);
  longest[TRYON_LEDGER_KEY_MAX] = '\0';
  assert_true(tryon_billing_key_valid(longest));
  longest[TRYON_LEDGER_KEY_MAX] = 'k';
  longest[TRYON_LEDGER_KEY_MAX + 1] = '\0';
  assert_false(tryon_billing_key_valid(longest));
  assert_string_equal(tryon_billing_plan_code(TRYON_PLAN_NONE), "none");
  assert_string_equal(tryon_billing_plan_code(TRYON_PLAN_FREE), "free");
  assert_string_equal(tryon_billing_plan_code(TRYON_PLAN_START), "start");
  assert_string_equal(tryon_billing_plan_code(TRYON_PLAN_PRO), "pro");
  assert_string_equal(tryon_billing_plan_code(TRYON_PLAN_MAX), "max");
  assert_string_equal(tryon_billing_plan_code((tryon_plan)99), "none");
}

int main(void) {
  tryon_test_log_init();
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_billing__products_table_matches_the_price_list),
      cmocka_unit_test(test_billing__costs_are_two_one_one),
      cmocka_unit_test(test_billing__key_syntax_and_plan_codes),
      T(test_billing__first_read_grants_the_free_allowance_once),
      T(test_billing__free_month_follows_moscow_time),
      T(test_billing__free_leftover_expires_at_the_moscow_month_end),
      T(test_billing__spend_takes_period_first_then_pack),
      T(test_billing__spend_from_pack_after_period_is_empty),
      T(test_billing__insufficient_credits_change_nothing),
      T(test_billing__bad_arguments_are_refused),
      T(test_billing__unknown_user_is_not_found),
      T(test_billing__charge_replay_is_duplicate_with_first_result),
      T(test_billing__grant_replay_is_duplicate),
      T(test_billing__refund_returns_exact_buckets_once),
      T(test_billing__refund_of_unknown_charge_is_not_found),
      T(test_billing__refund_after_its_period_ended_expires_with_it),
      T(test_billing__refund_with_no_current_period_expires),
      T(test_billing__refund_after_subscription_ended_does_not_carry_over),
      T(test_billing__refunds_across_the_month_boundary_do_not_roll_over),
      T(test_billing__blocked_user_cannot_spend_but_gets_grants),
      T(test_billing__subscribe_start_replaces_the_free_allowance),
      T(test_billing__subscribe_effect_by_plan),
      T(test_billing__subscription_queue_upgrade_and_expiry),
      T(test_billing__missed_reads_catch_up_without_extra_credits),
      T(test_billing__ended_subscription_does_not_regrant_a_used_free_month),
      T(test_billing__expire_due_updates_due_wallets_and_counts_them),
      T(test_billing__subscribe_replay_is_duplicate_with_same_period),
      T(test_billing__revoke_takes_pack_first_then_period),
      T(test_billing__add_pack_credits_a_payment_once),
      T(test_billing__spend_inside_caller_transaction),
      T(test_billing__refusals_inside_caller_transaction_keep_books),
      T(test_billing__clock_behind_does_not_expire_a_new_month),
      T(test_billing__one_payment_buys_one_thing),
      T(test_billing__grants_keep_off_system_keys_and_bounds),
      T(test_billing__replayed_refunded_charge_says_refunded),
      T(test_billing__audit_detects_a_broken_chain),
      T(test_billing__concurrent_spends_never_overdraw),
      T(test_billing__concurrent_replays_of_one_key_charge_once),
      T(test_billing__history_is_newest_first_with_fields),
      T(test_billing__audit_detects_a_corrupted_wallet),
      T(test_billing__audit_flags_ledger_rows_without_wallet),
  };
#undef T
  return cmocka_run_group_tests_name("billing", tests, NULL, NULL);
}
