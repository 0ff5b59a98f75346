/*
 * Credits: products, idempotency keys, balances, spending, refunds, grants, revokes and
 * packs. Each operation locks and refreshes the wallet first (wallet.c; the shape of
 * every operation is in billing_internal.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "billing_internal.h"

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
tryon_plan tryon__billing_source_plan(const char *s) {
  const tryon_product *prod = tryon_billing_product(s);
  return prod ? prod->plan : TRYON_PLAN_NONE;
}

bool tryon__billing_is_paid(tryon_plan p) {
  return p == TRYON_PLAN_START || p == TRYON_PLAN_PRO || p == TRYON_PLAN_MAX;
}

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

/* ------------------------------------------------------------------------ balance */

typedef struct balance_op {
  int64_t user_id;
  int64_t now_ms;
  tryon_balance *out;
} balance_op;

static tryon_status balance_tx(tryon_db_conn *c, void *ud, tryon_err *err) {
  balance_op *op = ud;
  tryon__billing_wallet w;
  PGresult *res = NULL;
  tryon_status st = tryon__billing_open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = tryon__billing_wallet_save(c, &w, err);
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
    b->plan = tryon__billing_source_plan(PQgetvalue(res, 0, 2));
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
  tryon__billing_wallet w;
  tryon_status st = tryon__billing_open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = tryon__billing_check_key(c, op->key, op->user_id, "charge", op->out, err);
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
  tryon__billing_entry e = {.key = op->key,
                            .reason = "charge",
                            .delta_period = -from_period,
                            .delta_pack = -(op->cost - from_period),
                            .from_free = from_period > 0 && w.plan == TRYON_PLAN_FREE,
                            .job_id = op->job_id,
                            .period_key = from_period > 0 ? w.period_key : NULL};
  st = tryon__billing_ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK)
    st = tryon__billing_wallet_save(c, &w, err);
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
  return tryon__billing_run(c, inside_tx, spend_tx, &op, err);
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
static tryon_status period_alive(tryon_db_conn *c, const tryon__billing_wallet *w,
                                 const char *charge_period, bool *alive, tryon_err *err) {
  PGresult *res = NULL;
  tryon_status st = TRYON_OK;
  *alive = strcmp(charge_period, w->period_key) == 0;
  if (*alive || !tryon__billing_is_paid(w->plan) || !tryon_uuid_valid(charge_period) ||
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
  tryon__billing_wallet w;
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

  st = tryon__billing_open_wallet(c, user_id, op->now_ms, &w, err);
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
    tryon__billing_result_from_row(res, 0, op->out);
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
  st = tryon__billing_find_key(c, op->refund_key, &used, &owner, reason, sizeof reason, NULL, err);
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
  tryon__billing_entry e = {.key = op->refund_key,
                            .reason = "refund",
                            .delta_period = took_period,
                            .delta_pack = took_pack,
                            .job_id = job_id[0] ? job_id : NULL,
                            .refund_of = charge_id,
                            .note = alive ? NULL : note,
                            .period_key = took_period <= 0 ? NULL
                                          : alive          ? w.period_key
                                                           : charge_period};
  st = tryon__billing_ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK && !alive) {
    char key[64];
    snprintf(key, sizeof key, "expire:refund:%" PRId64, charge_id);
    tryon__billing_entry x = {.key = key,
                              .reason = "expire",
                              .delta_period = -took_period,
                              .note = note,
                              .period_key = charge_period};
    tryon_billing_result after;
    st = tryon__billing_ledger_add(c, &w, &x, false, NULL, &after, err);
    if (st == TRYON_OK && op->out != NULL) {
      op->out->period_after = after.period_after;
      op->out->pack_after = after.pack_after;
      op->out->expired = took_period;
    }
  }
  if (st == TRYON_OK)
    st = tryon__billing_wallet_save(c, &w, err);
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
  return tryon__billing_run(c, inside_tx, refund_tx, &op, err);
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
  tryon__billing_wallet w;
  tryon_status st = tryon__billing_open_wallet(c, op->user_id, op->now_ms, &w, err);
  if (st == TRYON_OK)
    st = tryon__billing_check_key(c, op->key, op->user_id, op->reason, op->out, err);
  if (st == TRYON_OK && op->payment_id != NULL) {
    bool used = false;
    st = tryon__billing_payment_used(c, op->key, op->payment_id, &used, err);
    if (st == TRYON_OK && used)
      st = tryon_err_set(err, TRYON_E_CONFLICT, "this payment was already credited");
  }
  if (st != TRYON_OK)
    return st;
  tryon__billing_entry e = {.key = op->key,
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
  st = tryon__billing_ledger_add(c, &w, &e, false, NULL, op->out, err);
  if (st == TRYON_OK)
    st = tryon__billing_wallet_save(c, &w, err);
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
