/*
 * Internal to the billing module: what its files share (the wallet as a transaction
 * sees it, a ledger row, the steps every operation is built from).
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
 *
 * wallet.c holds steps 1 to 3 and the ledger append; billing.c, subscriptions.c and
 * ledger.c the operations.
 */
#ifndef TRYON_BILLING_INTERNAL_H
#define TRYON_BILLING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/billing.h>

/* ---------------------------------------------------------------------- SQL helpers */

/* A timestamptz from a bigint of milliseconds, exactly (no floating point). */
#define TS(n) TRYON_DB_TS(n)
#define MS(col) TRYON_DB_MS(col)

#define RESULT_COLUMNS "id, delta_period, delta_pack, period_after, pack_after, from_free"

/* ---------------------------------------------------------------- plans (billing.c) */

/* wallets.period_source ⇄ plan: the product codes (tryon_billing_plan_code one way). */
tryon_plan tryon__billing_source_plan(const char *s);
/* START, PRO or MAX: a subscription period. */
bool tryon__billing_is_paid(tryon_plan p);

/* ------------------------------------------------------------ the wallet (wallet.c) */

/* The wallet as the transaction sees it, and what changed. */
typedef struct tryon__billing_wallet {
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
} tryon__billing_wallet;

/* One ledger row. Strings may be NULL (SQL NULL). */
typedef struct tryon__billing_entry {
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
} tryon__billing_entry;

/* The ledger row `res`/`row` (RESULT_COLUMNS first) into `out` (may be NULL). */
void tryon__billing_result_from_row(PGresult *res, int row, tryon_billing_result *out);

/* Appends `e` to the ledger, applying its deltas to `w` (see wallet.c). */
tryon_status tryon__billing_ledger_add(tryon_db_conn *c, tryon__billing_wallet *w,
                                       const tryon__billing_entry *e, bool if_new, bool *inserted,
                                       tryon_billing_result *out, tryon_err *err);
/* Writes `w` back to its row when it changed. */
tryon_status tryon__billing_wallet_save(tryon_db_conn *c, tryon__billing_wallet *w, tryon_err *err);
/* Lock + refresh + save: the start of every operation. */
tryon_status tryon__billing_open_wallet(tryon_db_conn *c, int64_t user_id, int64_t now_ms,
                                        tryon__billing_wallet *w, tryon_err *err);
/* Ends the current period: its unused credits expire. */
tryon_status tryon__billing_end_period(tryon_db_conn *c, tryon__billing_wallet *w, tryon_err *err);
/* Starts subscription `id` (plan, credits, end) as the current period. */
tryon_status tryon__billing_start_period(tryon_db_conn *c, tryon__billing_wallet *w, const char *id,
                                         tryon_plan plan, int64_t credits, int64_t ends_ms,
                                         tryon_err *err);

/* ----------------------------------------------------------- key lookups (wallet.c) */

/* A ledger row by key: found → its user, reason and result. */
tryon_status tryon__billing_find_key(tryon_db_conn *c, const char *key, bool *found,
                                     int64_t *user_id, char *reason, size_t reason_cap,
                                     tryon_billing_result *out, tryon_err *err);
/* A replay → E_DUPLICATE with the first result; the key used for something else →
 * E_INVALID. */
tryon_status tryon__billing_check_key(tryon_db_conn *c, const char *key, int64_t user_id,
                                      const char *reason, tryon_billing_result *out,
                                      tryon_err *err);
/* Whether a payment (by its key or its id) already bought something. */
tryon_status tryon__billing_payment_used(tryon_db_conn *c, const char *key, const char *payment_id,
                                         bool *used, tryon_err *err);
/* Runs `fn` in its own transaction, or in the caller's under a savepoint. */
tryon_status tryon__billing_run(tryon_db_conn *c, bool inside_tx, tryon_db_tx_fn fn, void *ud,
                                tryon_err *err);

#endif
