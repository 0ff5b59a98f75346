/*
 * Reading the ledger: a user's history and the audit of every wallet against it. (The
 * ledger is written only by tryon__billing_ledger_add, in wallet.c.)
 */
#include <stdio.h>
#include <string.h>

#include "billing_internal.h"

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
