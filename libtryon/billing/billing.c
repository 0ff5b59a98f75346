/*
 * Credits: the wallet, the ledger, periods, spending and refunds.
 *
 * Every operation follows one shape, inside one transaction:
 *   1. lock the user's wallet row (SELECT ... FOR UPDATE; created on first use), so all
 *      changes to one user's credits happen one at a time, in full;
 *   2. bring the wallet up to date at `now` (refresh): expire ended periods, start
 *      queued ones, grant this month's free allowance;
 *   3. look the operation's idempotency key up — after the lock, so that of two
 *      concurrent calls with one key the second sees the first's committed row;
 *   4. decide, then write each change as a ledger row (with the balances after it) and
 *      the wallet row to match.
 * The C code keeps the wallet's state while it decides; the database's CHECKs and
 * unique indexes are the backstop.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/billing.h>

/* ------------------------------------------------------------------------- products */

static const tryon_product products[] = {
    {"free", "Free", 0, TRYON_FREE_MONTHLY_CREDITS, 0, TRYON_PLAN_FREE, true},
    {"start", "Start", 29900, 50, TRYON_SUBSCRIPTION_DAYS, TRYON_PLAN_START, false},
    {"pro", "Pro", 49900, 150, TRYON_SUBSCRIPTION_DAYS, TRYON_PLAN_PRO, false},
    {"max", "Max", 89900, 500, TRYON_SUBSCRIPTION_DAYS, TRYON_PLAN_MAX, false},
    {"pack", "Pack of 100", 19900, 100, 0, TRYON_PLAN_NONE, false},
};
#define PRODUCT_COUNT (sizeof products / sizeof products[0])

const tryon_product *tryon_billing_products(size_t *count) {
  if (count != NULL)
    *count = PRODUCT_COUNT;
  return products;
}

const tryon_product *tryon_billing_product(const char *code) {
  for (size_t i = 0; code != NULL && i < PRODUCT_COUNT; i++) {
    if (strcmp(products[i].code, code) == 0)
      return &products[i];
  }
  return NULL;
}

const tryon_product *tryon_billing_plan_product(tryon_plan plan) {
  for (size_t i = 0; i < PRODUCT_COUNT; i++) {
    if (plan != TRYON_PLAN_NONE && products[i].plan == plan)
      return &products[i];
  }
  return NULL;
}

const char *tryon_billing_plan_code(tryon_plan plan) {
  const tryon_product *prod = tryon_billing_plan_product(plan);
  return prod ? prod->code : "none";
}

/* wallets.period_source ⇄ plan: the product codes (tryon_billing_plan_code one way). */
static tryon_plan source_plan(const char *s) {
  const tryon_product *prod = tryon_billing_product(s);
  return prod ? prod->plan : TRYON_PLAN_NONE;
}

static bool is_paid(tryon_plan p) {
  return p == TRYON_PLAN_START || p == TRYON_PLAN_PRO || p == TRYON_PLAN_MAX;
}

/* ------------------------------------------------------------------- SQL helpers */

/* A timestamptz from a bigint of milliseconds, exactly (no floating point). */
#define TS(n) TRYON_DB_TS(n)
#define MS(col) TRYON_DB_MS(col)

/* No single change is larger than this; with it, sums cannot overflow. */
#define AMOUNT_MAX 1000000000LL

/* ---------------------------------------------------------------- idempotency keys */

bool tryon_billing_key_has_kind(const char *s) {
  size_t i = 0;

  if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z'))
    return false;
  while ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_')
    i++;
  return s[i] == ':';
}

/* "kind:rest", the shape the ledger's CHECK wants. */
bool tryon_billing_key_valid(const char *key) {
  bool ok = tryon_billing_key_has_kind(key) && strlen(key) <= TRYON_LEDGER_KEY_MAX;
  const char *rest = ok ? strchr(key, ':') + 1 : "";

  ok = ok && *rest != '\0';
  /* White space as isspace() sees it in the C locale: a key is one word. */
  for (const char *p = rest; ok && *p != '\0'; p++)
    ok = !(*p == ' ' || (*p >= '\t' && *p <= '\r'));
  return ok;
}

/* Key kinds the module writes itself or that callers' flows own: an operator's grant
 * or revoke under one of them could take a key a later grant, charge or payment needs. */
bool tryon_billing_key_reserved(const char *key) {
  static const char *const kinds[] = {"free:", "sub:", "expire:", "job:", "payment:"};
  for (size_t i = 0; key != NULL && i < sizeof kinds / sizeof kinds[0]; i++) {
    if (strncmp(key, kinds[i], strlen(kinds[i])) == 0)
      return true;
  }
  return false;
}

/* --------------------------------------------------------------------- the wallet */

/* The wallet as the transaction sees it, and what changed. */
typedef struct wallet {
  int64_t user_id;
  int64_t period;
  int64_t pack;
  tryon_plan plan;
  char period_key[64]; /* "" for none */
  int64_t ends_ms;     /* 0 for none */
  bool blocked;
  char month[8];        /* the Moscow month at now: "2026-11" */
  int64_t month_end_ms; /* when that month ends */
  bool dirty;
} wallet;

/* One ledger row. Strings may be NULL (SQL NULL). */
typedef struct entry {
  const char *key;
  const char *reason;
  int64_t delta_period;
  int64_t delta_pack;
  bool from_free;
  const char *job_id;
  const char *payment_id;
  const char *subscription_id;
  int64_t refund_of; /* 0: none */
  const char *actor;
  const char *note;
  const char *period_key;
} entry;

static void result_from_row(PGresult *res, int row, tryon_billing_result *out) {
  if (out == NULL)
    return;
  out->ledger_id = tryon_db_get_i64(res, row, 0);
  out->delta_period = tryon_db_get_i64(res, row, 1);
  out->delta_pack = tryon_db_get_i64(res, row, 2);
  out->period_after = tryon_db_get_i64(res, row, 3);
  out->pack_after = tryon_db_get_i64(res, row, 4);
  out->from_free = PQgetvalue(res, row, 5)[0] == 't';
}

#define RESULT_COLUMNS "id, delta_period, delta_pack, period_after, pack_after, from_free"

/* Appends `e` to the ledger, applying its deltas to `w`. With `if_new`, a used key
 * inserts nothing and *inserted says so (the free grant); otherwise a used key is an
 * error (the callers look keys up first). */
static tryon_status ledger_add(tryon_db_conn *c, wallet *w, const entry *e, bool if_new,
                               bool *inserted, tryon_billing_result *out, tryon_err *err) {
  PGresult *res = NULL;
  int64_t check;
  if (__builtin_add_overflow(w->period, e->delta_period, &check) ||
      __builtin_add_overflow(w->pack, e->delta_pack, &check) ||
      __builtin_add_overflow(w->period + e->delta_period, w->pack + e->delta_pack, &check))
    return tryon_err_set(err, TRYON_E_INVALID, "the balance would be out of range");
  tryon_db_num uid = tryon_db_num_i64(w->user_id), dp = tryon_db_num_i64(e->delta_period),
               dk = tryon_db_num_i64(e->delta_pack);
  tryon_db_num pa = tryon_db_num_i64(w->period + e->delta_period),
               ka = tryon_db_num_i64(w->pack + e->delta_pack);
  tryon_db_num rof = tryon_db_num_i64(e->refund_of);
  const char *p[] = {uid.s,
                     e->key,
                     e->reason,
                     dp.s,
                     dk.s,
                     pa.s,
                     ka.s,
                     e->from_free ? "true" : "false",
                     e->job_id,
                     e->payment_id,
                     e->subscription_id,
                     e->refund_of ? rof.s : NULL,
                     e->actor,
                     e->note,
                     e->period_key};
  tryon_status st = tryon_db_exec(
      c,
      if_new ? "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_period,"
               " delta_pack, period_after, pack_after, from_free, job_id, payment_id,"
               " subscription_id, refund_of, actor, note, period_key) VALUES ($1::bigint, $2,"
               " $3, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $8::boolean, $9::uuid,"
               " $10::uuid, $11::uuid, $12::bigint, $13, $14, $15)"
               " ON CONFLICT (idempotency_key) DO NOTHING RETURNING " RESULT_COLUMNS
             : "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_period,"
               " delta_pack, period_after, pack_after, from_free, job_id, payment_id,"
               " subscription_id, refund_of, actor, note, period_key) VALUES ($1::bigint, $2,"
               " $3, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $8::boolean, $9::uuid,"
               " $10::uuid, $11::uuid, $12::bigint, $13, $14, $15) RETURNING " RESULT_COLUMNS,
      15, p, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (inserted != NULL)
    *inserted = PQntuples(res) == 1;
  if (PQntuples(res) == 1) {
    w->period += e->delta_period;
    w->pack += e->delta_pack;
    w->dirty = true;
    result_from_row(res, 0, out);
  }
out:
  PQclear(res);
  return st;
}

static tryon_status wallet_save(tryon_db_conn *c, wallet *w, tryon_err *err) {
  if (!w->dirty)
    return TRYON_OK;
  tryon_db_num uid = tryon_db_num_i64(w->user_id), per = tryon_db_num_i64(w->period),
               pk = tryon_db_num_i64(w->pack), ends = tryon_db_num_i64(w->ends_ms);
  bool none = w->plan == TRYON_PLAN_NONE;
  const char *p[] = {uid.s,
                     per.s,
                     pk.s,
                     tryon_billing_plan_code(w->plan),
                     none ? NULL : w->period_key,
                     none ? NULL : ends.s};
  tryon_status st =
      tryon_db_exec(c,
                    "UPDATE wallets SET period_credits = $2::bigint,"
                    " pack_credits = $3::bigint, period_source = $4,"
                    " period_key = $5, period_ends_at = " TS(6) " WHERE user_id = $1::bigint",
                    6, p, NULL, err);
  if (st == TRYON_OK)
    w->dirty = false;
  return st;
}

/* Locks the wallet (creating it on first use) and reads it with the Moscow month. */
static tryon_status wallet_lock(tryon_db_conn *c, int64_t user_id, int64_t now_ms, wallet *w,
                                tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num uid = tryon_db_num_i64(user_id), now = tryon_db_num_i64(now_ms);
  const char *p[] = {uid.s, now.s};
  tryon_status st = TRYON_OK;

  memset(w, 0, sizeof *w);
  w->user_id = user_id;
  for (int attempt = 0; attempt < 2; attempt++) {
    st = tryon_db_exec(
        c,
        "SELECT w.period_credits, w.pack_credits, w.period_source, coalesce(w.period_key, ''),"
        " coalesce(" MS(
            "w.period_ends_at") ", 0), u.blocked,"
                                " to_char(" TS(
                                    2) " AT TIME ZONE 'Europe/Moscow', 'YYYY-MM'),"
                                       " " MS("((date_trunc('month', " TS(
                                           2) " AT TIME ZONE 'Europe/Moscow')"
                                              " + interval '1 month') AT TIME ZONE "
                                              "'Europe/Moscow')") " FROM wallets w JOIN users u ON "
                                                                  "u.id = w.user_id"
                                                                  " WHERE w.user_id = $1::bigint "
                                                                  "FOR UPDATE OF w",
        2, p, &res, err);
    if (st != TRYON_OK || PQntuples(res) == 1)
      break;
    PQclear(res);
    res = NULL;
    /* First use: make the wallet (a concurrent first use makes it too: no conflict). */
    st = tryon_db_exec(c,
                       "INSERT INTO wallets (user_id) SELECT id FROM users WHERE id = $1::bigint"
                       " ON CONFLICT (user_id) DO NOTHING",
                       1, p, NULL, err);
    if (st != TRYON_OK)
      break;
  }
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) != 1) {
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such user");
    goto out;
  }
  w->period = tryon_db_get_i64(res, 0, 0);
  w->pack = tryon_db_get_i64(res, 0, 1);
  w->plan = source_plan(PQgetvalue(res, 0, 2));
  snprintf(w->period_key, sizeof w->period_key, "%s", PQgetvalue(res, 0, 3));
  w->ends_ms = tryon_db_get_i64(res, 0, 4);
  w->blocked = PQgetvalue(res, 0, 5)[0] == 't';
  snprintf(w->month, sizeof w->month, "%s", PQgetvalue(res, 0, 6));
  w->month_end_ms = tryon_db_get_i64(res, 0, 7);
out:
  PQclear(res);
  return st;
}

/* Ends the current period: its unused credits expire (a ledger row when any). */
static tryon_status end_period(tryon_db_conn *c, wallet *w, tryon_err *err) {
  tryon_status st = TRYON_OK;
  if (w->period > 0) {
    char key[128];
    if (w->plan == TRYON_PLAN_FREE)
      snprintf(key, sizeof key, "expire:free:%" PRId64 ":%s", w->user_id, w->period_key);
    else
      snprintf(key, sizeof key, "expire:%s", w->period_key);
    entry e = {
        .key = key, .reason = "expire", .delta_period = -w->period, .period_key = w->period_key};
    st = ledger_add(c, w, &e, false, NULL, NULL, err);
  }
  if (st == TRYON_OK && is_paid(w->plan)) {
    const char *p[] = {w->period_key};
    st = tryon_db_exec(c,
                       "UPDATE subscriptions SET status = 'expired' WHERE id = $1::uuid"
                       " AND status = 'active'",
                       1, p, NULL, err);
  }
  w->plan = TRYON_PLAN_NONE;
  w->period_key[0] = '\0';
  w->ends_ms = 0;
  w->dirty = true;
  return st;
}

/* Starts subscription `id` (plan, credits, end) as the current period. */
static tryon_status start_period(tryon_db_conn *c, wallet *w, const char *id, tryon_plan plan,
                                 int64_t credits, int64_t ends_ms, tryon_err *err) {
  char key[64];
  const char *p[] = {id};
  tryon_status st = tryon_db_exec(
      c, "UPDATE subscriptions SET status = 'active' WHERE id = $1::uuid", 1, p, NULL, err);
  if (st != TRYON_OK)
    return st;
  w->plan = plan;
  snprintf(w->period_key, sizeof w->period_key, "%s", id);
  w->ends_ms = ends_ms;
  w->dirty = true;
  snprintf(key, sizeof key, "sub:%s", id);
  entry e = {.key = key,
             .reason = "subscription_grant",
             .delta_period = credits,
             .subscription_id = id,
             .period_key = id};
  return ledger_add(c, w, &e, false, NULL, NULL, err);
}

/* The next queued subscription period of the user, if any. */
static tryon_status next_queued(tryon_db_conn *c, int64_t user_id, char *id, tryon_plan *plan,
                                int64_t *credits, int64_t *starts_ms, int64_t *ends_ms, bool *found,
                                tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num uid = tryon_db_num_i64(user_id);
  const char *p[] = {uid.s};
  tryon_status st = tryon_db_exec(
      c,
      "SELECT id::text, plan, credits, " MS("starts_at") ", " MS(
          "ends_at") " FROM subscriptions WHERE user_id = $1::bigint AND status = 'queued'"
                     " ORDER BY starts_at, created_at LIMIT 1",
      1, p, &res, err);
  *found = st == TRYON_OK && PQntuples(res) == 1;
  if (*found) {
    snprintf(id, TRYON_UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
    *plan = source_plan(PQgetvalue(res, 0, 1));
    *credits = tryon_db_get_i64(res, 0, 2);
    *starts_ms = tryon_db_get_i64(res, 0, 3);
    *ends_ms = tryon_db_get_i64(res, 0, 4);
  }
  PQclear(res);
  return st;
}

/*
 * Brings a locked wallet up to date at now_ms: ended subscription periods expire and
 * the queued ones start in turn (several, if the user was away for months); a free
 * month that is over expires; with no subscription, this month's free allowance is
 * granted once (its key makes it once, even across a subscription in between).
 */
static tryon_status refresh(tryon_db_conn *c, wallet *w, int64_t now_ms, tryon_err *err) {
  tryon_status st = TRYON_OK;
  /* Each pass ends one period; the bound only guards against a loop on bad data. */
  for (int pass = 0; pass < 1000 && st == TRYON_OK; pass++) {
    if (is_paid(w->plan) && w->ends_ms <= now_ms) {
      st = end_period(c, w, err);
      char id[TRYON_UUID_STR_LEN];
      tryon_plan plan = TRYON_PLAN_NONE;
      int64_t credits = 0, starts = 0, ends = 0;
      bool found = false;
      if (st == TRYON_OK)
        st = next_queued(c, w->user_id, id, &plan, &credits, &starts, &ends, &found, err);
      if (st == TRYON_OK && found && starts <= now_ms)
        st = start_period(c, w, id, plan, credits, ends, err);
      continue;
    }
    /* Only a month that is over ends: a host whose clock is behind (an earlier "now")
     * must not expire a month that has already begun. */
    if (w->plan == TRYON_PLAN_FREE && strcmp(w->period_key, w->month) < 0) {
      st = end_period(c, w, err);
      continue;
    }
    break;
  }
  if (st == TRYON_OK && w->plan == TRYON_PLAN_NONE) {
    char key[64];
    bool granted = false;
    snprintf(key, sizeof key, "free:%" PRId64 ":%s", w->user_id, w->month);
    entry e = {.key = key,
               .reason = "free_grant",
               .delta_period = TRYON_FREE_MONTHLY_CREDITS,
               .period_key = w->month};
    st = ledger_add(c, w, &e, true, &granted, NULL, err);
    /* Granted before in this month (then a subscription took over and has ended): no
     * period until the next month — only pack credits, no watermark. A free period is
     * entered only by its own grant, so each free month is expired at most once. */
    if (st == TRYON_OK && granted) {
      w->plan = TRYON_PLAN_FREE;
      snprintf(w->period_key, sizeof w->period_key, "%s", w->month);
      w->ends_ms = w->month_end_ms;
      w->dirty = true;
    }
  }
  return st;
}

/* Lock + refresh: the start of every operation. */
static tryon_status open_wallet(tryon_db_conn *c, int64_t user_id, int64_t now_ms, wallet *w,
                                tryon_err *err) {
  tryon_status st = wallet_lock(c, user_id, now_ms, w, err);
  if (st == TRYON_OK)
    st = refresh(c, w, now_ms, err);
  /* Saved at once: the refresh's ledger rows and the wallet must agree whatever the
   * operation then decides (a refusal that returns early included). */
  if (st == TRYON_OK)
    st = wallet_save(c, w, err);
  return st;
}

/* A ledger row by key: found → its user, reason and result. */
static tryon_status find_key(tryon_db_conn *c, const char *key, bool *found, int64_t *user_id,
                             char *reason, size_t reason_cap, tryon_billing_result *out,
                             tryon_err *err) {
  PGresult *res = NULL;
  const char *p[] = {key};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT " RESULT_COLUMNS ", user_id, reason FROM credit_ledger"
                                  " WHERE idempotency_key = $1",
                                  1, p, &res, err);
  *found = st == TRYON_OK && PQntuples(res) == 1;
  if (*found) {
    result_from_row(res, 0, out);
    *user_id = tryon_db_get_i64(res, 0, 6);
    snprintf(reason, reason_cap, "%s", PQgetvalue(res, 0, 7));
  }
  PQclear(res);
  return st;
}

/* Looks `key` up for an operation of `reason` by `user_id`: a replay → E_DUPLICATE with
 * the first result; the key used for something else → E_INVALID. */
static tryon_status check_key(tryon_db_conn *c, const char *key, int64_t user_id,
                              const char *reason, tryon_billing_result *out, tryon_err *err) {
  bool found = false;
  int64_t owner = 0;
  char r[24] = "";
  tryon_status st = find_key(c, key, &found, &owner, r, sizeof r, out, err);
  if (st != TRYON_OK || !found)
    return st;
  if (owner != user_id || strcmp(r, reason) != 0)
    return tryon_err_set(err, TRYON_E_INVALID, "this key was used for another operation");
  return tryon_err_set(err, TRYON_E_DUPLICATE, "already done under this key");
}

/* Whether a payment (by its key or its id) already bought something: a pack (ledger) or
 * a subscription period (queued ones have no ledger row yet). One payment buys one
 * thing, once. */
static tryon_status payment_used(tryon_db_conn *c, const char *key, const char *payment_id,
                                 bool *used, tryon_err *err) {
  PGresult *res = NULL;
  const char *p[] = {key, payment_id};
  tryon_status st =
      tryon_db_exec(c,
                    "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE idempotency_key = $1"
                    "   OR ($2::uuid IS NOT NULL AND payment_id = $2::uuid))"
                    " OR EXISTS (SELECT 1 FROM credit_ledger WHERE idempotency_key = $1"
                    "   OR ($2::uuid IS NOT NULL AND payment_id = $2::uuid))",
                    2, p, &res, err);
  *used = st == TRYON_OK && PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return st;
}

/* Runs `fn` in its own transaction, or in the caller's. */
static tryon_status run(tryon_db_conn *c, bool inside_tx, tryon_db_tx_fn fn, void *ud,
                        tryon_err *err) {
  if (!inside_tx)
    return tryon_db_tx(c, fn, ud, err);
  /* Inside the caller's transaction, a savepoint makes "nothing changed" true for a
   * refusal or a replay, and keeps the caller's transaction usable after an error. */
  tryon_err ignored;
  tryon_status st = tryon_db_exec(c, "SAVEPOINT tryon_billing", 0, NULL, NULL, err);
  if (st != TRYON_OK)
    return st;
  st = fn(c, ud, err);
  tryon_db_exec(
      c, st == TRYON_OK ? "RELEASE SAVEPOINT tryon_billing" : "ROLLBACK TO SAVEPOINT tryon_billing",
      0, NULL, NULL, &ignored);
  return st;
}

/* ------------------------------------------------------------------------ balance */

typedef struct balance_op {
  int64_t user_id;
  int64_t now_ms;
  tryon_balance *out;
} balance_op;

static tryon_status balance_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  balance_op *op = ud;
  wallet w;
  PGresult *res = NULL;
  tryon_status st = open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = wallet_save(c, &w, err);
  if (st != TRYON_OK)
    return st;
  tryon_db_num uid = tryon_db_num_i64(op->user_id);
  const char *p[] = {uid.s};
  st = tryon_db_exec(
      c,
      "SELECT coalesce(" MS("max(ends_at)") ", 0) FROM subscriptions"
                                            " WHERE user_id = $1::bigint AND status = 'queued'",
      1, p, &res, err);
  if (st == TRYON_OK) {
    tryon_balance *b = op->out;
    memset(b, 0, sizeof *b);
    b->period = w.period;
    b->pack = w.pack;
    b->total = w.period + w.pack;
    b->plan = w.plan;
    b->period_ends_ms = w.ends_ms;
    b->queued_until_ms = tryon_db_get_i64(res, 0, 0);
    b->watermark = w.plan == TRYON_PLAN_FREE && w.period > 0;
  }
  PQclear(res);
  return st;
}

/* The common case without a lock or a transaction: the wallet exists and its period
 * is current, so reading it is all there is to do. *fresh says whether that held. */
static tryon_status peek(tryon_db_conn *c, int64_t user_id, int64_t now_ms, tryon_balance *b,
                         bool *fresh, tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num uid = tryon_db_num_i64(user_id), now = tryon_db_num_i64(now_ms);
  const char *p[] = {uid.s, now.s};
  *fresh = false;
  tryon_status st = tryon_db_exec(
      c,
      "SELECT period_credits, pack_credits, period_source, coalesce(" MS(
          "period_ends_at") ", 0),"
                            " (period_source = 'free' AND period_key = to_char(" TS(
                                2) " AT TIME ZONE 'Europe/Moscow',"
                                   " 'YYYY-MM')) OR (period_source IN ('start', 'pro', 'max') AND "
                                   "period_ends_at > " TS(
                                       2) "),"
                                          " coalesce((SELECT " MS(
                                              "max(ends_at)") " FROM subscriptions s WHERE "
                                                              "s.user_id = w.user_id"
                                                              " AND s.status = 'queued'), 0)"
                                                              " FROM wallets w WHERE user_id = "
                                                              "$1::bigint",
      2, p, &res, err);
  if (st == TRYON_OK && PQntuples(res) == 1 && PQgetvalue(res, 0, 4)[0] == 't') {
    *fresh = true;
    memset(b, 0, sizeof *b);
    b->period = tryon_db_get_i64(res, 0, 0);
    b->pack = tryon_db_get_i64(res, 0, 1);
    b->total = b->period + b->pack;
    b->plan = source_plan(PQgetvalue(res, 0, 2));
    b->period_ends_ms = tryon_db_get_i64(res, 0, 3);
    b->queued_until_ms = tryon_db_get_i64(res, 0, 5);
    b->watermark = b->plan == TRYON_PLAN_FREE && b->period > 0;
  }
  PQclear(res);
  return st;
}

tryon_status tryon_billing_balance(tryon_db_conn *c, int64_t user_id, int64_t now_ms,
                                   tryon_balance *out, tryon_err *err) {
  bool fresh = false;
  if (c == NULL || out == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_balance");
  tryon_status st = peek(c, user_id, now_ms, out, &fresh, err);
  if (st != TRYON_OK || fresh)
    return st;
  balance_op op = {.user_id = user_id, .now_ms = now_ms, .out = out};
  return tryon_db_tx(c, balance_tx, &op, err);
}

cJSON *tryon_balance_to_json(const tryon_balance *b) {
  cJSON *o = cJSON_CreateObject();
  if (o != NULL && b != NULL) {
    cJSON_AddNumberToObject(o, "total", (double)b->total);
    cJSON_AddNumberToObject(o, "period", (double)b->period);
    cJSON_AddNumberToObject(o, "pack", (double)b->pack);
    cJSON_AddStringToObject(o, "plan", tryon_billing_plan_code(b->plan));
    tryon_json_add_time(o, "period_ends_at", b->period_ends_ms);
    tryon_json_add_time(o, "queued_until", b->queued_until_ms);
    cJSON_AddBoolToObject(o, "watermark", b->watermark);
  }
  return o;
}

/* ------------------------------------------------------------------------ spending */

typedef struct spend_op {
  int64_t user_id;
  int64_t cost;
  const char *key;
  const char *job_id;
  int64_t now_ms;
  tryon_billing_result *out;
  tryon_billing_refusal *refusal;
} spend_op;

static tryon_status spend_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  spend_op *op = ud;
  wallet w;
  tryon_status st = open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = check_key(c, op->key, op->user_id, "charge", op->out, err);
  if (st == TRYON_E_DUPLICATE && op->out != NULL) {
    /* A replay of a charge that was refunded since: the caller must not treat the work
     * as paid. */
    PGresult *res = NULL;
    tryon_db_num id = tryon_db_num_i64(op->out->ledger_id);
    const char *p[] = {id.s};
    tryon_err ignored;
    if (tryon_db_exec(c, "SELECT 1 FROM credit_ledger WHERE refund_of = $1::bigint", 1, p, &res,
                      &ignored) == TRYON_OK)
      op->out->refunded = PQntuples(res) == 1;
    PQclear(res);
  }
  if (st != TRYON_OK)
    return st;
  if (w.blocked)
    return tryon_err_set(err, TRYON_E_FORBIDDEN, "this account is blocked");
  if (w.period + w.pack < op->cost) {
    if (op->refusal != NULL) {
      op->refusal->balance = w.period + w.pack;
      op->refusal->cost = op->cost;
    }
    return tryon_err_set(err, TRYON_E_INSUFFICIENT_CREDITS,
                         "not enough credits: you have %" PRId64 ", this costs %" PRId64,
                         w.period + w.pack, op->cost);
  }
  int64_t from_period = w.period < op->cost ? w.period : op->cost;
  entry e = {.key = op->key,
             .reason = "charge",
             .delta_period = -from_period,
             .delta_pack = -(op->cost - from_period),
             .from_free = from_period > 0 && w.plan == TRYON_PLAN_FREE,
             .job_id = op->job_id,
             .period_key = from_period > 0 ? w.period_key : NULL};
  st = ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK)
    st = wallet_save(c, &w, err);
  return st;
}

tryon_status tryon_billing_spend(tryon_db_conn *c, int64_t user_id, int64_t cost, const char *key,
                                 const char *job_id, int64_t now_ms, bool inside_tx,
                                 tryon_billing_result *out, tryon_billing_refusal *refusal,
                                 tryon_err *err) {
  if (c == NULL || cost < 1 || cost > AMOUNT_MAX || !tryon_billing_key_valid(key) ||
      !tryon_uuid_valid(job_id))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_spend");
  spend_op op = {.user_id = user_id,
                 .cost = cost,
                 .key = key,
                 .job_id = job_id,
                 .now_ms = now_ms,
                 .out = out,
                 .refusal = refusal};
  return run(c, inside_tx, spend_tx, &op, err);
}

/* ------------------------------------------------------------------------- refunds */

typedef struct refund_op {
  const char *charge_key;
  const char *refund_key;
  int64_t now_ms;
  tryon_billing_result *out;
} refund_op;

/*
 * Whether the period a charge took credits from is still the wallet's: the current one,
 * or a subscription an upgrade carried into the current one (an upgrade marks the old
 * subscription cancelled and carries its credits on; every subscription from that one
 * up to the current must have gone that way, none may have expired in between). A free
 * month that ended, or a subscription that expired, is over: its credits are gone.
 */
static tryon_status period_alive(tryon_db_conn *c, const wallet *w, const char *charge_period,
                                 bool *alive, tryon_err *err) {
  PGresult *res = NULL;
  tryon_status st = TRYON_OK;
  *alive = strcmp(charge_period, w->period_key) == 0;
  if (*alive || !is_paid(w->plan) || !tryon_uuid_valid(charge_period) ||
      !tryon_uuid_valid(w->period_key))
    return TRYON_OK;
  tryon_db_num uid = tryon_db_num_i64(w->user_id);
  const char *p[] = {charge_period, w->period_key, uid.s};
  st = tryon_db_exec(c,
                     "SELECT 1 FROM subscriptions old, subscriptions cur"
                     " WHERE old.id = $1::uuid AND cur.id = $2::uuid"
                     "   AND old.user_id = $3::bigint AND cur.user_id = $3::bigint"
                     "   AND old.starts_at <= cur.starts_at AND NOT EXISTS ("
                     "     SELECT 1 FROM subscriptions s WHERE s.user_id = $3::bigint"
                     "       AND s.starts_at >= old.starts_at AND s.starts_at <= cur.starts_at"
                     "       AND s.id <> cur.id AND s.status <> 'cancelled')",
                     3, p, &res, err);
  if (st == TRYON_OK)
    *alive = PQntuples(res) == 1;
  PQclear(res);
  return st;
}

static tryon_status refund_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  refund_op *op = ud;
  PGresult *res = NULL;
  wallet w;
  if (op->out != NULL)
    memset(op->out, 0, sizeof *op->out);
  const char *ck[] = {op->charge_key};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT id, user_id, delta_period, delta_pack, job_id::text,"
                                  " coalesce(period_key, '') FROM credit_ledger"
                                  " WHERE idempotency_key = $1 AND reason = 'charge'",
                                  1, ck, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) != 1) {
    st = tryon_err_set(err, TRYON_E_NOT_FOUND, "no such charge");
    goto out;
  }
  int64_t charge_id = tryon_db_get_i64(res, 0, 0), user_id = tryon_db_get_i64(res, 0, 1);
  int64_t took_period = -tryon_db_get_i64(res, 0, 2), took_pack = -tryon_db_get_i64(res, 0, 3);
  char job_id[TRYON_UUID_STR_LEN], charge_period[64];
  snprintf(job_id, sizeof job_id, "%s", PQgetvalue(res, 0, 4));
  snprintf(charge_period, sizeof charge_period, "%s", PQgetvalue(res, 0, 5));
  PQclear(res);
  res = NULL;

  st = open_wallet(c, user_id, op->now_ms, &w, err);
  if (st != TRYON_OK)
    goto out;
  /* Refunded already, under whatever key: the first refund stands. */
  tryon_db_num cid = tryon_db_num_i64(charge_id);
  const char *rp[] = {cid.s};
  st = tryon_db_exec(c, "SELECT " RESULT_COLUMNS " FROM credit_ledger WHERE refund_of = $1::bigint",
                     1, rp, &res, err);
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) == 1) {
    result_from_row(res, 0, op->out);
    PQclear(res);
    res = NULL;
    /* Its credits may have expired with their period at once: the same answer as the
     * first call gave (balances after the expiry, how many expired). */
    char xkey[64];
    snprintf(xkey, sizeof xkey, "expire:refund:%" PRId64, charge_id);
    const char *xp[] = {xkey};
    st = tryon_db_exec(c,
                       "SELECT -delta_period, period_after, pack_after FROM credit_ledger"
                       " WHERE idempotency_key = $1",
                       1, xp, &res, err);
    if (st == TRYON_OK && PQntuples(res) == 1 && op->out != NULL) {
      op->out->expired = tryon_db_get_i64(res, 0, 0);
      op->out->period_after = tryon_db_get_i64(res, 0, 1);
      op->out->pack_after = tryon_db_get_i64(res, 0, 2);
    }
    if (st == TRYON_OK)
      st = tryon_err_set(err, TRYON_E_DUPLICATE, "this charge was refunded already");
    goto out;
  }
  /* Not refunded yet, so a row under this key belongs to another operation. */
  bool used = false;
  int64_t owner = 0;
  char reason[24];
  st = find_key(c, op->refund_key, &used, &owner, reason, sizeof reason, NULL, err);
  if (st == TRYON_OK && used)
    st = tryon_err_set(err, TRYON_E_INVALID, "this key was used for another operation");
  bool alive = true;
  if (st == TRYON_OK && took_period > 0)
    st = period_alive(c, &w, charge_period, &alive, err);
  if (st != TRYON_OK)
    goto out;
  /* The same buckets. Credits of a period that has ended since come back to it and
   * expire with it at once (two rows, so the history says what happened): a refund
   * never carries one month's allowance into the next. Pack credits stay pack credits. */
  char note[160] = "";
  if (!alive)
    snprintf(note, sizeof note,
             "%" PRId64 " credits came back after their period (%s) had ended and expired with it",
             took_period, charge_period);
  entry e = {.key = op->refund_key,
             .reason = "refund",
             .delta_period = took_period,
             .delta_pack = took_pack,
             .job_id = job_id[0] ? job_id : NULL,
             .refund_of = charge_id,
             .note = alive ? NULL : note,
             .period_key = took_period <= 0 ? NULL
                           : alive          ? w.period_key
                                            : charge_period};
  st = ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK && !alive) {
    char key[64];
    snprintf(key, sizeof key, "expire:refund:%" PRId64, charge_id);
    entry x = {.key = key,
               .reason = "expire",
               .delta_period = -took_period,
               .note = note,
               .period_key = charge_period};
    tryon_billing_result after;
    st = ledger_add(c, &w, &x, false, NULL, &after, err);
    if (st == TRYON_OK && op->out != NULL) {
      op->out->period_after = after.period_after;
      op->out->pack_after = after.pack_after;
      op->out->expired = took_period;
    }
  }
  if (st == TRYON_OK)
    st = wallet_save(c, &w, err);
out:
  PQclear(res);
  return st;
}

tryon_status tryon_billing_refund(tryon_db_conn *c, const char *charge_key, const char *refund_key,
                                  int64_t now_ms, bool inside_tx, tryon_billing_result *out,
                                  tryon_err *err) {
  if (c == NULL || !tryon_billing_key_valid(charge_key) || !tryon_billing_key_valid(refund_key))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_refund");
  refund_op op = {.charge_key = charge_key, .refund_key = refund_key, .now_ms = now_ms, .out = out};
  return run(c, inside_tx, refund_tx, &op, err);
}

/* ------------------------------------------------------------------ grants, revokes */

typedef struct adjust_op {
  int64_t user_id;
  int64_t amount; /* > 0 add, < 0 take */
  const char *key;
  const char *reason; /* "grant", "revoke", "purchase" */
  const char *actor;
  const char *note;
  const char *payment_id;
  int64_t now_ms;
  tryon_billing_result *out;
} adjust_op;

static tryon_status adjust_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  adjust_op *op = ud;
  wallet w;
  tryon_status st = open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = check_key(c, op->key, op->user_id, op->reason, op->out, err);
  if (st == TRYON_OK && op->payment_id != NULL) {
    bool used = false;
    st = payment_used(c, op->key, op->payment_id, &used, err);
    if (st == TRYON_OK && used)
      st = tryon_err_set(err, TRYON_E_CONFLICT, "this payment was already credited");
  }
  if (st != TRYON_OK)
    return st;
  entry e = {.key = op->key,
             .reason = op->reason,
             .actor = op->actor,
             .note = op->note,
             .payment_id = op->payment_id};
  if (op->amount > 0) {
    e.delta_pack = op->amount; /* grants and packs never expire */
  } else {
    int64_t take = -op->amount;
    if (w.period + w.pack < take)
      return tryon_err_set(err, TRYON_E_INSUFFICIENT_CREDITS,
                           "cannot take %" PRId64 " credits: the user has %" PRId64, take,
                           w.period + w.pack);
    int64_t from_pack = w.pack < take ? w.pack : take;
    e.delta_pack = -from_pack;
    e.delta_period = -(take - from_pack);
    e.period_key = e.delta_period != 0 ? w.period_key : NULL;
  }
  st = ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK)
    st = wallet_save(c, &w, err);
  return st;
}

tryon_status tryon_billing_grant(tryon_db_conn *c, int64_t user_id, int64_t amount, const char *key,
                                 const char *actor, const char *note, int64_t now_ms,
                                 tryon_billing_result *out, tryon_err *err) {
  if (c == NULL || amount < 1 || amount > AMOUNT_MAX || !tryon_billing_key_valid(key) ||
      tryon_billing_key_reserved(key))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_grant");
  adjust_op op = {.user_id = user_id,
                  .amount = amount,
                  .key = key,
                  .reason = "grant",
                  .actor = actor,
                  .note = note,
                  .now_ms = now_ms,
                  .out = out};
  return tryon_db_tx(c, adjust_tx, &op, err);
}

tryon_status tryon_billing_revoke(tryon_db_conn *c, int64_t user_id, int64_t amount,
                                  const char *key, const char *actor, const char *note,
                                  int64_t now_ms, tryon_billing_result *out, tryon_err *err) {
  if (c == NULL || amount < 1 || amount > AMOUNT_MAX || !tryon_billing_key_valid(key) ||
      tryon_billing_key_reserved(key))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_revoke");
  adjust_op op = {.user_id = user_id,
                  .amount = -amount,
                  .key = key,
                  .reason = "revoke",
                  .actor = actor,
                  .note = note,
                  .now_ms = now_ms,
                  .out = out};
  return tryon_db_tx(c, adjust_tx, &op, err);
}

tryon_status tryon_billing_add_pack(tryon_db_conn *c, int64_t user_id, const char *payment_id,
                                    const char *key, int64_t now_ms, tryon_billing_result *out,
                                    tryon_err *err) {
  const tryon_product *pack = tryon_billing_product("pack");
  if (c == NULL || !tryon_uuid_valid(payment_id) || !tryon_billing_key_valid(key))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_add_pack");
  adjust_op op = {.user_id = user_id,
                  .amount = pack->credits,
                  .key = key,
                  .reason = "purchase",
                  .payment_id = payment_id,
                  .now_ms = now_ms,
                  .out = out};
  return tryon_db_tx(c, adjust_tx, &op, err);
}

/* ------------------------------------------------------------------- subscriptions */

typedef struct subscribe_op {
  int64_t user_id;
  tryon_plan plan;
  const char *key;
  const char *payment_id;
  int64_t now_ms;
  tryon_subscription *out;
} subscribe_op;

static void subscription_from_row(PGresult *res, tryon_subscription *s) {
  snprintf(s->id, sizeof s->id, "%s", PQgetvalue(res, 0, 0));
  s->plan = source_plan(PQgetvalue(res, 0, 1));
  s->starts_ms = tryon_db_get_i64(res, 0, 2);
  s->ends_ms = tryon_db_get_i64(res, 0, 3);
}

#define SUB_COLUMNS "id::text, plan, " MS("starts_at") ", " MS("ends_at") ", status"

static tryon_status insert_subscription(tryon_db_conn *c, const subscribe_op *op,
                                        const char *status, int64_t starts_ms,
                                        tryon_subscription *s, tryon_err *err) {
  PGresult *res = NULL;
  const tryon_product *prod = tryon_billing_plan_product(op->plan);
  tryon_db_num uid = tryon_db_num_i64(op->user_id), st_ms = tryon_db_num_i64(starts_ms),
               en_ms = tryon_db_num_i64(starts_ms + (int64_t)prod->period_days * 86400000),
               cr = tryon_db_num_i64(prod->credits);
  const char *p[] = {uid.s, prod->code, status, st_ms.s, en_ms.s, cr.s, op->payment_id, op->key};
  tryon_status st = tryon_db_exec(
      c,
      "INSERT INTO subscriptions (user_id, plan, status, starts_at,"
      " ends_at, credits, payment_id, idempotency_key) VALUES"
      " ($1::bigint, $2, $3, " TS(4) ", " TS(5) ", $6::bigint,"
                                                " $7::uuid, $8) RETURNING " SUB_COLUMNS,
      8, p, &res, err);
  if (st == TRYON_OK)
    subscription_from_row(res, s);
  PQclear(res);
  return st;
}

static tryon_status subscribe_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  subscribe_op *op = ud;
  PGresult *res = NULL;
  wallet w;
  tryon_subscription *s = op->out;
  tryon_status st = open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st != TRYON_OK)
    goto out;
  const char *kp[] = {op->key};
  st = tryon_db_exec(
      c, "SELECT " SUB_COLUMNS ", user_id FROM subscriptions WHERE idempotency_key = $1", 1, kp,
      &res, err);
  if (st != TRYON_OK)
    goto out;
  if (PQntuples(res) == 1) {
    if (tryon_db_get_i64(res, 0, 5) != op->user_id) {
      st = tryon_err_set(err, TRYON_E_INVALID, "this key was used for another operation");
      goto out;
    }
    subscription_from_row(res, s);
    s->effect = strcmp(PQgetvalue(res, 0, 4), "queued") == 0 ? TRYON_SUBSCRIBE_QUEUED
                                                             : TRYON_SUBSCRIBE_STARTED;
    st = tryon_err_set(err, TRYON_E_DUPLICATE, "this subscription was bought already");
    goto out;
  }
  PQclear(res);
  res = NULL;
  bool used = false;
  st = payment_used(c, op->key, op->payment_id, &used, err);
  if (st == TRYON_OK && used)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "this payment was already credited");
  if (st != TRYON_OK)
    goto out;

  const tryon_product *prod = tryon_billing_plan_product(op->plan);
  if (!is_paid(w.plan)) {
    /* The first paid period replaces the free month; its leftover expires. */
    st = end_period(c, &w, err);
    if (st == TRYON_OK)
      st = insert_subscription(c, op, "queued", op->now_ms, s, err);
    if (st == TRYON_OK)
      st = start_period(c, &w, s->id, op->plan, prod->credits, s->ends_ms, err);
    s->effect = TRYON_SUBSCRIBE_STARTED;
  } else if (op->plan > w.plan) {
    /* An upgrade starts now; the old period ends unrefunded, its credits carry over,
     * and periods queued after it move back by as much as the new one reaches further. */
    char old_id[TRYON_UUID_STR_LEN];
    int64_t old_end = w.ends_ms;
    snprintf(old_id, sizeof old_id, "%.36s", w.period_key);
    const char *op_[] = {old_id};
    st = tryon_db_exec(c, "UPDATE subscriptions SET status = 'cancelled' WHERE id = $1::uuid", 1,
                       op_, NULL, err);
    if (st == TRYON_OK)
      st = insert_subscription(c, op, "queued", op->now_ms, s, err);
    if (st == TRYON_OK) {
      tryon_db_num uid = tryon_db_num_i64(op->user_id),
                   shift = tryon_db_num_i64(s->ends_ms - old_end);
      const char *sp[] = {uid.s, shift.s, s->id};
      st = tryon_db_exec(c,
                         "UPDATE subscriptions SET starts_at = starts_at + $2::bigint *"
                         " interval '1 millisecond', ends_at = ends_at + $2::bigint * interval"
                         " '1 millisecond' WHERE user_id = $1::bigint AND status = 'queued'"
                         " AND id <> $3::uuid",
                         3, sp, NULL, err);
    }
    if (st == TRYON_OK)
      st = start_period(c, &w, s->id, op->plan, prod->credits, s->ends_ms, err);
    s->effect = TRYON_SUBSCRIBE_UPGRADED;
  } else {
    /* Same or lower plan: a period after the last one, credited when it starts. */
    tryon_db_num uid = tryon_db_num_i64(op->user_id);
    const char *lp[] = {uid.s};
    st = tryon_db_exec(c,
                       "SELECT " MS("max(ends_at)") " FROM subscriptions WHERE user_id = $1::bigint"
                                                    " AND status IN ('active', 'queued')",
                       1, lp, &res, err);
    int64_t last_end = st == TRYON_OK ? tryon_db_get_i64(res, 0, 0) : 0;
    if (last_end < w.ends_ms)
      last_end = w.ends_ms;
    if (st == TRYON_OK)
      st = insert_subscription(c, op, "queued", last_end, s, err);
    s->effect = TRYON_SUBSCRIBE_QUEUED;
  }
  if (st == TRYON_OK)
    st = wallet_save(c, &w, err);
out:
  PQclear(res);
  return st;
}

tryon_status tryon_billing_subscribe(tryon_db_conn *c, int64_t user_id, tryon_plan plan,
                                     const char *key, const char *payment_id, int64_t now_ms,
                                     tryon_subscription *out, tryon_err *err) {
  tryon_subscription ignored;
  if (c == NULL || !is_paid(plan) || key == NULL || key[0] == '\0' || strlen(key) > 200 ||
      (payment_id != NULL && !tryon_uuid_valid(payment_id)))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_billing_subscribe");
  subscribe_op op = {.user_id = user_id,
                     .plan = plan,
                     .key = key,
                     .payment_id = payment_id,
                     .now_ms = now_ms,
                     .out = out ? out : &ignored};
  memset(op.out, 0, sizeof *op.out);
  return tryon_db_tx(c, subscribe_tx, &op, err);
}

tryon_status tryon_billing_expire_due(tryon_db_conn *c, int64_t now_ms, size_t *count,
                                      tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num now = tryon_db_num_i64(now_ms);
  const char *p[] = {now.s};
  size_t changed = 0;
  tryon_status st = tryon_db_exec(
      c, "SELECT user_id FROM wallets WHERE period_ends_at <= " TS(1) " ORDER BY user_id", 1, p,
      &res, err);
  for (int i = 0; st == TRYON_OK && i < PQntuples(res); i++) {
    tryon_balance b;
    tryon_err one;
    /* One transaction per wallet: a long sweep never holds many locks at once, and one
     * wallet that fails does not stop the others (only a lost database does). */
    tryon_status w = tryon_billing_balance(c, tryon_db_get_i64(res, i, 0), now_ms, &b, &one);
    if (w == TRYON_OK)
      changed++;
    else if (w == TRYON_E_DB_UNAVAILABLE)
      st = tryon_err_set(err, w, "%s", one.message);
    else
      TRYON_LOG_ERROR("cannot bring a wallet up to date",
                      TRYON_LF_INT("user", tryon_db_get_i64(res, i, 0)),
                      TRYON_LF_STR("error", tryon_err_message(&one)));
  }
  if (count != NULL)
    *count = changed;
  PQclear(res);
  return st;
}

/* ------------------------------------------------------------------- audit, history */

tryon_status tryon_billing_history(tryon_db_conn *c, int64_t user_id, size_t max,
                                   tryon_ledger_entry *out, size_t *n, tryon_err *err) {
  PGresult *res = NULL;
  tryon_db_num uid = tryon_db_num_i64(user_id),
               lim = tryon_db_num_i64((int64_t)(max > 10000 ? 10000 : max));
  const char *p[] = {uid.s, lim.s};
  *n = 0;
  tryon_status st = tryon_db_exec(
      c,
      "SELECT id, idempotency_key, reason, delta_period, delta_pack, period_after, pack_after,"
      " from_free, coalesce(note, ''), " MS(
          "created_at") " FROM credit_ledger"
                        " WHERE user_id = $1::bigint ORDER BY id DESC LIMIT $2::bigint",
      2, p, &res, err);
  for (int i = 0; st == TRYON_OK && i < PQntuples(res); i++) {
    tryon_ledger_entry *e = &out[i];
    memset(e, 0, sizeof *e);
    e->id = tryon_db_get_i64(res, i, 0);
    snprintf(e->key, sizeof e->key, "%s", PQgetvalue(res, i, 1));
    snprintf(e->reason, sizeof e->reason, "%s", PQgetvalue(res, i, 2));
    e->delta_period = tryon_db_get_i64(res, i, 3);
    e->delta_pack = tryon_db_get_i64(res, i, 4);
    e->period_after = tryon_db_get_i64(res, i, 5);
    e->pack_after = tryon_db_get_i64(res, i, 6);
    e->from_free = PQgetvalue(res, i, 7)[0] == 't';
    tryon_utf8_copy(e->note, sizeof e->note, PQgetvalue(res, i, 8));
    e->created_ms = tryon_db_get_i64(res, i, 9);
    (*n)++;
  }
  PQclear(res);
  return st;
}

tryon_status tryon_billing_audit(tryon_db_conn *c, tryon_audit_problem *out, size_t max, size_t *n,
                                 tryon_err *err) {
  PGresult *res = NULL;
  *n = 0;
  tryon_status st = tryon_db_exec(
      c,
      "WITH sums AS (SELECT user_id, sum(delta_period) AS p, sum(delta_pack) AS k"
      "   FROM credit_ledger GROUP BY user_id),"
      " chain AS (SELECT DISTINCT user_id FROM (SELECT user_id, period_after, pack_after,"
      "   sum(delta_period) OVER (PARTITION BY user_id ORDER BY id) AS rp,"
      "   sum(delta_pack) OVER (PARTITION BY user_id ORDER BY id) AS rk"
      "   FROM credit_ledger) x WHERE period_after <> rp OR pack_after <> rk)"
      " SELECT u.id, u.telegram_id, coalesce(w.period_credits, 0), coalesce(w.pack_credits, 0),"
      "   coalesce(s.p, 0), coalesce(s.k, 0), ch.user_id IS NOT NULL"
      " FROM wallets w FULL JOIN sums s ON s.user_id = w.user_id"
      " JOIN users u ON u.id = coalesce(w.user_id, s.user_id)"
      " LEFT JOIN chain ch ON ch.user_id = u.id"
      " WHERE w.user_id IS NULL OR coalesce(s.p, 0) <> w.period_credits"
      "   OR coalesce(s.k, 0) <> w.pack_credits OR ch.user_id IS NOT NULL"
      " ORDER BY u.id",
      0, NULL, &res, err);
  for (int i = 0; st == TRYON_OK && i < PQntuples(res); i++) {
    if ((size_t)i < max) {
      tryon_audit_problem *a = &out[i];
      a->user_id = tryon_db_get_i64(res, i, 0);
      a->telegram_id = tryon_db_get_i64(res, i, 1);
      a->wallet_period = tryon_db_get_i64(res, i, 2);
      a->wallet_pack = tryon_db_get_i64(res, i, 3);
      a->ledger_period = tryon_db_get_i64(res, i, 4);
      a->ledger_pack = tryon_db_get_i64(res, i, 5);
      a->chain_broken = PQgetvalue(res, i, 6)[0] == 't';
    }
    (*n)++;
  }
  PQclear(res);
  return st;
}
