/*
 * Subscriptions: buying a period (start, upgrade or queue) and the sweep that brings
 * every wallet whose period ended up to date.
 */
#include <stdio.h>
#include <string.h>

#include "billing_internal.h"

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
  s->plan = tryon__billing_source_plan(PQgetvalue(res, 0, 1));
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
  tryon__billing_wallet w;
  tryon_subscription *s = op->out;
  tryon_status st = tryon__billing_open_wallet(c, op->user_id, op->now_ms, &w, err);
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
  st = tryon__billing_payment_used(c, op->key, op->payment_id, &used, err);
  if (st == TRYON_OK && used)
    st = tryon_err_set(err, TRYON_E_CONFLICT, "this payment was already credited");
  if (st != TRYON_OK)
    goto out;

  const tryon_product *prod = tryon_billing_plan_product(op->plan);
  if (!tryon__billing_is_paid(w.plan)) {
    /* The first paid period replaces the free month; its leftover expires. */
    st = tryon__billing_end_period(c, &w, err);
    if (st == TRYON_OK)
      st = insert_subscription(c, op, "queued", op->now_ms, s, err);
    if (st == TRYON_OK)
      st = tryon__billing_start_period(c, &w, s->id, op->plan, prod->credits, s->ends_ms, err);
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
      st = tryon__billing_start_period(c, &w, s->id, op->plan, prod->credits, s->ends_ms, err);
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
    st = tryon__billing_wallet_save(c, &w, err);
out:
  PQclear(res);
  return st;
}

tryon_status tryon_billing_subscribe(tryon_db_conn *c, int64_t user_id, tryon_plan plan,
                                     const char *key, const char *payment_id, int64_t now_ms,
                                     tryon_subscription *out, tryon_err *err) {
  tryon_subscription ignored;
  if (c == NULL || !tryon__billing_is_paid(plan) || key == NULL || key[0] == '\0' ||
      strlen(key) > 200 || (payment_id != NULL && !tryon_uuid_valid(payment_id)))
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
