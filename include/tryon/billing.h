/*
 * tryon/billing.h - credits: products, the wallet, the append-only ledger, the free
 * monthly allowance, subscriptions, spending and refunds.
 *
 * Sections:
 *   1. Products and costs
 *   2. Balances
 *   3. Spending and refunds
 *   4. Grants and subscriptions
 *   5. Audit and history
 *   6. Idempotency keys
 *
 * Money rules (SPEC §5), enforced here and by the schema:
 * - Two buckets per user: the period allowance (the free month or a subscription
 *   period; expires at its end, never carried into the next) and pack credits (never
 *   expire). Spending takes the period bucket first, then packs.
 * - Every balance change is one credit_ledger row with a unique idempotency key,
 *   written in the same transaction as the wallet update; replaying a key changes
 *   nothing and returns TRYON_E_DUPLICATE with the first result. Balances never go
 *   below zero (the wallet row is locked for every change; CHECK constraints back it).
 * - The free allowance (10 credits a calendar month, Europe/Moscow) is granted lazily
 *   and idempotently (`free:<user>:<YYYY-MM>`) the first time the wallet is touched in a
 *   month with no active subscription. Periods that ended are expired on every touch
 *   (and by a periodic job), so a missed job never grants extra.
 *
 * Periods are [start, end): at exactly its end a period is over. A subscription that
 * ends in a month whose free allowance was already granted leaves no period until the
 * next month (plan TRYON_PLAN_NONE: pack credits only, no watermark).
 *
 * Every function takes a leased connection and runs its own transaction(s) on it
 * (the connection must be idle), except where it says "inside the caller's
 * transaction". `now_ms` (wall clock, ms) is explicit so that tests can stand at month
 * and period boundaries. Users are our users.id. Thread-safety: as the connection's.
 */
#ifndef TRYON_BILLING_H
#define TRYON_BILLING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/core.h>
#include <tryon/db.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ 1. Products and costs */

typedef enum tryon_plan {
  TRYON_PLAN_NONE = 0, /* no period: only pack credits (a transient state) */
  TRYON_PLAN_FREE = 1,
  TRYON_PLAN_START = 2,
  TRYON_PLAN_PRO = 3,
  TRYON_PLAN_MAX = 4,
} tryon_plan;

typedef struct tryon_product {
  const char *code;      /* "free", "start", "pro", "max", "pack" */
  const char *title;     /* English display name */
  int64_t price_kopecks; /* 0 for free */
  int64_t credits;       /* per period (plans) or per purchase (pack) */
  int period_days;       /* 30 for subscriptions; 0 otherwise (free is a calendar month) */
  tryon_plan plan;       /* TRYON_PLAN_NONE for the pack */
  bool watermark;        /* results paid from this product carry a watermark */
} tryon_product;

/* The product table (in this order: free, start, pro, max, pack) and its length. */
TRYON_API const tryon_product *tryon_billing_products(size_t *count);
/* A product by code, or NULL. */
TRYON_API const tryon_product *tryon_billing_product(const char *code);
/* The product of a plan, or NULL for TRYON_PLAN_NONE. */
TRYON_API const tryon_product *tryon_billing_plan_product(tryon_plan plan);
/* The code of `plan`'s product ("free", "start", "pro", "max"), or "none" for
 * TRYON_PLAN_NONE and values outside the enum: the one spelling of a plan, in the
 * wallets table, the API and tryonctl. A static string. */
TRYON_API const char *tryon_billing_plan_code(tryon_plan plan);

/* What actions cost, in credits. */
#define TRYON_COST_TRYON 2
#define TRYON_COST_ASSISTANT 1
#define TRYON_COST_EDIT 1
#define TRYON_FREE_MONTHLY_CREDITS 10
#define TRYON_SUBSCRIPTION_DAYS 30

/* ---------------------------------------------------------------------- 2. Balances */

typedef struct tryon_balance {
  int64_t period;          /* the current period's credits */
  int64_t pack;            /* pack credits */
  int64_t total;           /* period + pack */
  tryon_plan plan;         /* whose period it is */
  int64_t period_ends_ms;  /* end of the current period (0 when none) */
  int64_t queued_until_ms; /* end of the last queued subscription period (0 when none) */
  bool watermark;          /* the next spend would take free-allowance credits */
} tryon_balance;

/*
 * Brings the wallet up to date at `now_ms` (expires ended periods, starts queued
 * subscription periods, grants this month's free allowance) and reads it. Creates the
 * wallet on first use. TRYON_E_NOT_FOUND for an unknown user.
 */
TRYON_API tryon_status tryon_billing_balance(tryon_db_conn *c, int64_t user_id, int64_t now_ms,
                                             tryon_balance *out, tryon_err *err);

/*
 * The balance `b` (borrowed for the call) as JSON, the one shape the API and tryonctl
 * print: a new object {"total","period","pack","plan","period_ends_at","queued_until",
 * "watermark"} (plan as tryon_billing_plan_code, times as tryon_json_add_time: null
 * for none). The caller owns it: cJSON_Delete, or add it to a parent that then does.
 * NULL when out of memory. Pure; thread-safe.
 */
TRYON_API cJSON *tryon_balance_to_json(const tryon_balance *b);

/* ------------------------------------------------------------ 3. Spending and refunds */

/* What one spend, grant or refund did: the ledger row's view. */
typedef struct tryon_billing_result {
  int64_t ledger_id;
  int64_t delta_period; /* negative for a spend */
  int64_t delta_pack;
  int64_t period_after; /* balances right after this entry */
  int64_t pack_after;
  bool from_free;  /* a spend took free-allowance credits: watermark the result */
  bool refunded;   /* a replayed charge (TRYON_E_DUPLICATE) that has been refunded since */
  int64_t expired; /* a refund: period credits that came back to a period that had ended
                      and expired with it (the balances above are after that) */
} tryon_billing_result;

/* Details of a refused spend (TRYON_E_INSUFFICIENT_CREDITS). */
typedef struct tryon_billing_refusal {
  int64_t balance; /* total credits the user has */
  int64_t cost;
} tryon_billing_refusal;

/*
 * Spends `cost` (>= 1) credits of `user_id` for job `job_id` (canonical UUID text),
 * under the idempotency key `key` (e.g. "job:<id>:charge"): period credits first, then
 * pack credits. Statuses:
 *   TRYON_OK — `out` says what was taken and whether any came from the free allowance;
 *   TRYON_E_DUPLICATE — `key` was used before: `out` is the first result (with
 *     `refunded` set if that charge was refunded since: the work is not paid), nothing
 *     changed;
 *   TRYON_E_INSUFFICIENT_CREDITS — nothing changed; `refusal` (optional) has the
 *     balance and the cost;
 *   TRYON_E_FORBIDDEN — the user is blocked; TRYON_E_NOT_FOUND — no such user;
 *   TRYON_E_INVALID — bad arguments (a key not of the form "kind:rest").
 * `inside_tx`: false runs its own transaction; true runs inside the caller's open
 * transaction on `c` (so a job and its charge commit together), under a savepoint: on
 * any status but TRYON_OK nothing of the call remains and the caller's transaction is
 * still usable. Amounts are at most 1,000,000,000.
 */
TRYON_API tryon_status tryon_billing_spend(tryon_db_conn *c, int64_t user_id, int64_t cost,
                                           const char *key, const char *job_id, int64_t now_ms,
                                           bool inside_tx, tryon_billing_result *out,
                                           tryon_billing_refusal *refusal, tryon_err *err);

/*
 * Returns exactly what the charge recorded under `charge_key` took, to the same
 * buckets, once, under `refund_key` (e.g. "job:<id>:refund"). Period credits go back to
 * the period they came from: the current one, or one an upgrade carried into it. If that
 * period has ended meanwhile (a free month over, a subscription expired), they come
 * back to it and expire with it at once — the refund row and an "expire" row under
 * "expire:refund:<charge id>", both with a note that says so — so a refund never carries
 * one period's credits into the next; out->expired says how many. Pack credits always
 * come back as pack credits. Statuses: TRYON_OK;
 * TRYON_E_DUPLICATE (this charge was already refunded, under any key: `out` is that
 * refund); TRYON_E_NOT_FOUND (no such charge). `inside_tx` as for spend.
 */
TRYON_API tryon_status tryon_billing_refund(tryon_db_conn *c, const char *charge_key,
                                            const char *refund_key, int64_t now_ms, bool inside_tx,
                                            tryon_billing_result *out, tryon_err *err);

/* -------------------------------------------------------- 4. Grants and subscriptions */

/*
 * Adds `amount` (1..1,000,000,000) pack credits (they never expire) under `key`
 * ("grant:<uuid>" for operators), recording `actor` and `note` (both optional, no
 * secrets). Blocked users may receive grants. TRYON_E_DUPLICATE for a used key (first
 * result in `out`); TRYON_E_INVALID for a key used for another operation or of a kind
 * the system owns (free:, sub:, expire:, job:, payment:); TRYON_E_NOT_FOUND for an
 * unknown user.
 */
TRYON_API tryon_status tryon_billing_grant(tryon_db_conn *c, int64_t user_id, int64_t amount,
                                           const char *key, const char *actor, const char *note,
                                           int64_t now_ms, tryon_billing_result *out,
                                           tryon_err *err);

/*
 * Takes away `amount` (>= 1) credits, pack first, then period, under `key`. Never below
 * zero: TRYON_E_INSUFFICIENT_CREDITS (nothing changed) when the user has less.
 */
TRYON_API tryon_status tryon_billing_revoke(tryon_db_conn *c, int64_t user_id, int64_t amount,
                                            const char *key, const char *actor, const char *note,
                                            int64_t now_ms, tryon_billing_result *out,
                                            tryon_err *err);

/* Adds a pack purchase (product "pack") paid by `payment_id` (payments.id, UUID text),
 * under key "payment:<provider payment id>" given as `key`. TRYON_E_CONFLICT when that
 * payment (its key or its id) already bought something else, e.g. a subscription. */
TRYON_API tryon_status tryon_billing_add_pack(tryon_db_conn *c, int64_t user_id,
                                              const char *payment_id, const char *key,
                                              int64_t now_ms, tryon_billing_result *out,
                                              tryon_err *err);

typedef enum tryon_subscribe_effect {
  TRYON_SUBSCRIBE_STARTED = 1,  /* a new period started now (no active one before) */
  TRYON_SUBSCRIBE_UPGRADED = 2, /* a higher plan started now; unused period credits kept */
  TRYON_SUBSCRIBE_QUEUED = 3,   /* same or lower plan: a period after the current ones */
} tryon_subscribe_effect;

typedef struct tryon_subscription {
  char id[TRYON_UUID_STR_LEN];
  tryon_plan plan;
  int64_t starts_ms;
  int64_t ends_ms;
  tryon_subscribe_effect effect;
} tryon_subscription;

/*
 * Buys a 30-day period of `plan` (START, PRO or MAX) under `key` (e.g.
 * "payment:<provider id>"; at most 200 characters); `payment_id` (payments.id) may be
 * NULL for operator grants.
 *   No active subscription (free allowance or nothing) → it starts now and replaces the
 *     free allowance, whose unused credits expire (TRYON_SUBSCRIBE_STARTED).
 *   An active subscription of a lower plan → the new plan starts now, the old period
 *     ends (not refunded) and its unused credits are carried over; queued periods move
 *     to after the new one (TRYON_SUBSCRIBE_UPGRADED).
 *   An active subscription of the same or a higher plan → a period queued after the
 *     last one; its credits are granted when it starts (TRYON_SUBSCRIBE_QUEUED).
 * TRYON_E_DUPLICATE for a used key (`out` describes that subscription; its effect is
 * reported as STARTED or QUEUED from its state). TRYON_E_CONFLICT when the payment (key
 * or id) already bought something else. Blocked users may be subscribed (a payment
 * must never be lost).
 */
TRYON_API tryon_status tryon_billing_subscribe(tryon_db_conn *c, int64_t user_id, tryon_plan plan,
                                               const char *key, const char *payment_id,
                                               int64_t now_ms, tryon_subscription *out,
                                               tryon_err *err);

/* Brings every wallet whose period ended at or before `now_ms` up to date (what the
 * periodic job runs; reads do the same lazily for their own user). `*count` (optional):
 * how many wallets were brought up to date. A wallet that fails is logged and skipped;
 * only a lost database stops the sweep. */
TRYON_API tryon_status tryon_billing_expire_due(tryon_db_conn *c, int64_t now_ms, size_t *count,
                                                tryon_err *err);

/* ---------------------------------------------------------------- 5. Audit and history */

typedef struct tryon_ledger_entry {
  int64_t id;
  char key[201];
  char reason[24]; /* "charge", "refund", "grant", ... */
  int64_t delta_period;
  int64_t delta_pack;
  int64_t period_after;
  int64_t pack_after;
  bool from_free;
  char note[1001]; /* the schema allows 1000 characters */
  int64_t created_ms;
} tryon_ledger_entry;

/* The user's newest ledger entries first, at most `max` into `out`; `*n` how many. */
TRYON_API tryon_status tryon_billing_history(tryon_db_conn *c, int64_t user_id, size_t max,
                                             tryon_ledger_entry *out, size_t *n, tryon_err *err);

typedef struct tryon_audit_problem {
  int64_t user_id;
  int64_t telegram_id;
  int64_t wallet_period, wallet_pack; /* what the wallet says */
  int64_t ledger_period, ledger_pack; /* what the ledger sums to */
  bool chain_broken; /* an entry's balances-after differ from the running sums before it */
} tryon_audit_problem;

/*
 * Checks every user: the wallet's buckets equal the sums of the ledger's deltas, every
 * entry's period_after/pack_after equal the running sums up to it, and a user with
 * ledger rows has a wallet. Up to `max` offenders into `out`; `*n` how many
 * were found in all (may exceed max). TRYON_OK whether or not there are offenders.
 */
TRYON_API tryon_status tryon_billing_audit(tryon_db_conn *c, tryon_audit_problem *out, size_t max,
                                           size_t *n, tryon_err *err);

/* ---------------------------------------------------------------- 6. Idempotency keys */

/* The longest idempotency key, in bytes (the ledger's CHECK). */
#define TRYON_LEDGER_KEY_MAX 200

/* Whether `s` (borrowed) starts with a key kind: "[a-z][a-z_]*:". Operators may give a
 * key without one (tryonctl puts "grant:" or "revoke:" in front). NULL: false. */
TRYON_API bool tryon_billing_key_has_kind(const char *s);

/* Whether `key` (borrowed) is an idempotency key every function here accepts: a kind
 * (see tryon_billing_key_has_kind), then a rest that is not empty and holds no white
 * space, at most TRYON_LEDGER_KEY_MAX bytes in all. NULL: false. Pure; thread-safe. */
TRYON_API bool tryon_billing_key_valid(const char *key);

/* Whether the kind of `key` (borrowed) is one the system writes itself: free, sub,
 * expire, job, payment. Grants and revokes refuse such keys (TRYON_E_INVALID): an
 * operator's entry could otherwise take the key a later charge or payment needs. */
TRYON_API bool tryon_billing_key_reserved(const char *key);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_BILLING_H */
