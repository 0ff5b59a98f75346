/*
 * The wallet: the lock, the refresh at `now` (periods that end, queued ones that start,
 * the free month), the ledger append, the idempotency-key lookups after the lock and the
 * transaction runner — the steps every billing operation is built from.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "billing_internal.h"

/* --------------------------------------------------------------------- the wallet */

void tryon__billing_result_from_row(PGresult *res, int row, tryon_billing_result *out) {
  if (out == NULL)
    return;
  out->ledger_id = tryon_db_get_i64(res, row, 0);
  out->delta_period = tryon_db_get_i64(res, row, 1);
  out->delta_pack = tryon_db_get_i64(res, row, 2);
  out->period_after = tryon_db_get_i64(res, row, 3);
  out->pack_after = tryon_db_get_i64(res, row, 4);
  out->from_free = PQgetvalue(res, row, 5)[0] == 't';
}

/* Appends `e` to the ledger, applying its deltas to `w`. With `if_new`, a used key
 * inserts nothing and *inserted says so (the free grant); otherwise a used key is an
 * error (the callers look keys up first). */
tryon_status tryon__billing_ledger_add(tryon_db_conn *c, tryon__billing_wallet *w,
                                       const tryon__billing_entry *e, bool if_new, bool *inserted,
                                       tryon_billing_result *out, tryon_err *err) {
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
    tryon__billing_result_from_row(res, 0, out);
  }
out:
  PQclear(res);
  return st;
}

tryon_status tryon__billing_wallet_save(tryon_db_conn *c, tryon__billing_wallet *w,
                                        tryon_err *err) {
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
static tryon_status wallet_lock(tryon_db_conn *c, int64_t user_id, int64_t now_ms,
                                tryon__billing_wallet *w, tryon_err *err) {
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
  w->plan = tryon__billing_source_plan(PQgetvalue(res, 0, 2));
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
tryon_status tryon__billing_end_period(tryon_db_conn *c, tryon__billing_wallet *w, tryon_err *err) {
  tryon_status st = TRYON_OK;
  if (w->period > 0) {
    char key[128];
    if (w->plan == TRYON_PLAN_FREE)
      snprintf(key, sizeof key, "expire:free:%" PRId64 ":%s", w->user_id, w->period_key);
    else
      snprintf(key, sizeof key, "expire:%s", w->period_key);
    tryon__billing_entry e = {
        .key = key, .reason = "expire", .delta_period = -w->period, .period_key = w->period_key};
    st = tryon__billing_ledger_add(c, w, &e, false, NULL, NULL, err);
  }
  if (st == TRYON_OK && tryon__billing_is_paid(w->plan)) {
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
tryon_status tryon__billing_start_period(tryon_db_conn *c, tryon__billing_wallet *w, const char *id,
                                         tryon_plan plan, int64_t credits, int64_t ends_ms,
                                         tryon_err *err) {
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
  tryon__billing_entry e = {.key = key,
                            .reason = "subscription_grant",
                            .delta_period = credits,
                            .subscription_id = id,
                            .period_key = id};
  return tryon__billing_ledger_add(c, w, &e, false, NULL, NULL, err);
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
    *plan = tryon__billing_source_plan(PQgetvalue(res, 0, 1));
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
static tryon_status refresh(tryon_db_conn *c, tryon__billing_wallet *w, int64_t now_ms,
                            tryon_err *err) {
  tryon_status st = TRYON_OK;
  /* Each pass ends one period; the bound only guards against a loop on bad data. */
  for (int pass = 0; pass < 1000 && st == TRYON_OK; pass++) {
    if (tryon__billing_is_paid(w->plan) && w->ends_ms <= now_ms) {
      st = tryon__billing_end_period(c, w, err);
      char id[TRYON_UUID_STR_LEN];
      tryon_plan plan = TRYON_PLAN_NONE;
      int64_t credits = 0, starts = 0, ends = 0;
      bool found = false;
      if (st == TRYON_OK)
        st = next_queued(c, w->user_id, id, &plan, &credits, &starts, &ends, &found, err);
      if (st == TRYON_OK && found && starts <= now_ms)
        st = tryon__billing_start_period(c, w, id, plan, credits, ends, err);
      continue;
    }
    /* Only a month that is over ends: a host whose clock is behind (an earlier "now")
     * must not expire a month that has already begun. */
    if (w->plan == TRYON_PLAN_FREE && strcmp(w->period_key, w->month) < 0) {
      st = tryon__billing_end_period(c, w, err);
      continue;
    }
    break;
  }
  if (st == TRYON_OK && w->plan == TRYON_PLAN_NONE) {
    char key[64];
    bool granted = false;
    snprintf(key, sizeof key, "free:%" PRId64 ":%s", w->user_id, w->month);
    tryon__billing_entry e = {.key = key,
                              .reason = "free_grant",
                              .delta_period = TRYON_FREE_MONTHLY_CREDITS,
                              .period_key = w->month};
    st = tryon__billing_ledger_add(c, w, &e, true, &granted, NULL, err);
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
tryon_status tryon__billing_open_wallet(tryon_db_conn *c, int64_t user_id, int64_t now_ms,
                                        tryon__billing_wallet *w, tryon_err *err) {
  tryon_status st = wallet_lock(c, user_id, now_ms, w, err);
  if (st == TRYON_OK)
    st = refresh(c, w, now_ms, err);
  /* Saved at once: the refresh's ledger rows and the wallet must agree whatever the
   * operation then decides (a refusal that returns early included). */
  if (st == TRYON_OK)
    st = tryon__billing_wallet_save(c, w, err);
  return st;
}

/* ---------------------------------------------------------------------- key lookups */

/* A ledger row by key: found → its user, reason and result. */
tryon_status tryon__billing_find_key(tryon_db_conn *c, const char *key, bool *found,
                                     int64_t *user_id, char *reason, size_t reason_cap,
                                     tryon_billing_result *out, tryon_err *err) {
  PGresult *res = NULL;
  const char *p[] = {key};
  tryon_status st = tryon_db_exec(c,
                                  "SELECT " RESULT_COLUMNS ", user_id, reason FROM credit_ledger"
                                  " WHERE idempotency_key = $1",
                                  1, p, &res, err);
  *found = st == TRYON_OK && PQntuples(res) == 1;
  if (*found) {
    tryon__billing_result_from_row(res, 0, out);
    *user_id = tryon_db_get_i64(res, 0, 6);
    snprintf(reason, reason_cap, "%s", PQgetvalue(res, 0, 7));
  }
  PQclear(res);
  return st;
}

/* Looks `key` up for an operation of `reason` by `user_id`: a replay → E_DUPLICATE with
 * the first result; the key used for something else → E_INVALID. */
tryon_status tryon__billing_check_key(tryon_db_conn *c, const char *key, int64_t user_id,
                                      const char *reason, tryon_billing_result *out,
                                      tryon_err *err) {
  bool found = false;
  int64_t owner = 0;
  char r[24] = "";
  tryon_status st = tryon__billing_find_key(c, key, &found, &owner, r, sizeof r, out, err);
  if (st != TRYON_OK || !found)
    return st;
  if (owner != user_id || strcmp(r, reason) != 0)
    return tryon_err_set(err, TRYON_E_INVALID, "this key was used for another operation");
  return tryon_err_set(err, TRYON_E_DUPLICATE, "already done under this key");
}

/* Whether a payment (by its key or its id) already bought something: a pack (ledger) or
 * a subscription period (queued ones have no ledger row yet). One payment buys one
 * thing, once. */
tryon_status tryon__billing_payment_used(tryon_db_conn *c, const char *key, const char *payment_id,
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

/* ----------------------------------------------------------- the transaction runner */

/* Runs `fn` in its own transaction, or in the caller's. */
tryon_status tryon__billing_run(tryon_db_conn *c, bool inside_tx, tryon_db_tx_fn fn, void *ud,
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
