/*
 * Statements and transactions on a leased connection, and SQLSTATE → status mapping.
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tryon__db_trim(char *msg) {
  if (msg == NULL)
    return "";
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  return msg;
}

tryon_status tryon_db_status_from_sqlstate(const char *s) {
  if (s == NULL || strlen(s) != 5)
    return TRYON_E_DB;
  if (strcmp(s, "23505") == 0)
    return TRYON_E_CONFLICT;
  if (strncmp(s, "23", 2) == 0)
    return TRYON_E_CONSTRAINT;
  if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
    return TRYON_E_SERIALIZATION;
  if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
      strcmp(s, "57P03") == 0)
    return TRYON_E_DB_UNAVAILABLE;
  if (strcmp(s, "57014") == 0)
    return TRYON_E_TIMEOUT;
  if (strncmp(s, "22", 2) == 0)
    return TRYON_E_INVALID;
  return TRYON_E_DB;
}

/* Turns a finished PGresult into a status; fills err from the server's diagnostics. */
static tryon_status result_status(tryon_db_conn *c, PGresult *res, tryon_err *err) {
  ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK || es == PGRES_EMPTY_QUERY)
    return TRYON_OK;

  if (PQstatus(c->pg) == CONNECTION_BAD) {
    /* The server went away mid-statement: this connection is done for; the pool remakes
     * it on the next lease. Whether the statement ran is unknown to us. */
    c->broken = true;
    return tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "lost the database connection: %s",
                         tryon__db_trim(PQerrorMessage(c->pg)));
  }
  const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  tryon_status st = tryon_db_status_from_sqlstate(sqlstate);
  if (primary != NULL)
    tryon_err_set(err, st, "%s", primary);
  else
    tryon_err_set(err, st, "%s", tryon__db_trim(PQerrorMessage(c->pg)));
  if (err != NULL && sqlstate != NULL) {
    memcpy(err->sqlstate, sqlstate, 5);
    err->sqlstate[5] = '\0';
  }
  return st;
}

void tryon__db_prepared_reset(tryon_db_conn *c) {
  memset(c->prepared, 0, sizeof c->prepared);
  c->nprepared = 0;
}

/* The statement text's hash; never 0 (0 marks a free slot). */
static uint64_t sql_hash(const char *sql) {
  uint64_t h = tryon_hash64(sql);
  return h ? h : 1;
}

/* Finds `h` among the prepared statements; with `add`, claims its slot. */
static bool prepared_lookup(tryon_db_conn *c, uint64_t h, bool add) {
  size_t i = (size_t)h % TRYON__DB_PREPARED_MAX;
  for (int n = 0; n < TRYON__DB_PREPARED_MAX; n++, i = (i + 1) % TRYON__DB_PREPARED_MAX) {
    if (c->prepared[i] == h)
      return true;
    if (c->prepared[i] == 0) {
      if (add) {
        c->prepared[i] = h;
        c->nprepared++;
      }
      return false;
    }
  }
  return false;
}

/*
 * Statements with parameters are prepared once per connection and then executed by
 * name: the server parses and plans them once, not on every call (a sign-in's upsert
 * costs the server markedly less this way). Named by the hash of their text, so the
 * same text always maps to the same name. A connection that collected too many
 * statements forgets them all (DEALLOCATE ALL) and starts over.
 */
static PGresult *exec_prepared(tryon_db_conn *c, const char *sql, int nparams,
                               const char *const *params) {
  uint64_t h = sql_hash(sql);
  char name[24];
  snprintf(name, sizeof name, "t%016llx", (unsigned long long)h);
  if (!prepared_lookup(c, h, false)) {
    if (c->nprepared >= TRYON__DB_PREPARED_MAX / 2) {
      PQclear(PQexec(c->pg, "DEALLOCATE ALL"));
      tryon__db_prepared_reset(c);
    }
    PGresult *prep = PQprepare(c->pg, name, sql, nparams, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK)
      return prep; /* the caller reports the error (a syntax error, a lost connection) */
    PQclear(prep);
    prepared_lookup(c, h, true);
  }
  PGresult *res = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  if (state != NULL && strcmp(state, "0A000") == 0 && PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
    /* "cached plan must not change result type": a table changed shape under the
     * prepared statement. Outside a transaction nothing ran; forget the statement and
     * run the text afresh. */
    PQclear(res);
    PQclear(PQexec(c->pg, "DEALLOCATE ALL"));
    tryon__db_prepared_reset(c);
    res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
  }
  return res;
}

tryon_status tryon_db_exec(tryon_db_conn *c, const char *sql, int nparams,
                           const char *const *params, PGresult **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  PGresult *res = NULL;

  if (out != NULL)
    *out = NULL;
  if (c == NULL || c->pg == NULL || sql == NULL || nparams < 0 || (nparams > 0 && !params)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_db_exec");
    goto out;
  }
  /* Statements without parameters (BEGIN, COMMIT, DDL in tests) run unnamed: some
   * cannot be prepared and none gains from it. */
  res = nparams > 0 ? exec_prepared(c, sql, nparams, params)
                    : PQexecParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
  st = result_status(c, res, err);
  if (st == TRYON_OK && out != NULL) {
    *out = res;
    res = NULL;
  }
out:
  PQclear(res);
  return st;
}

tryon_status tryon_db_exec_script(tryon_db_conn *c, const char *sql, tryon_err *err) {
  if (c == NULL || c->pg == NULL || sql == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_db_exec_script");
  /* PQexec runs every statement of the script; its result is the last one's, and the
   * first failure stops the script, so checking that one result is enough. */
  PGresult *res = PQexec(c->pg, sql);
  tryon_status st = result_status(c, res, err);
  PQclear(res);
  return st;
}

#define TX_TRIES 3

tryon_status tryon_db_tx(tryon_db_conn *c, tryon_db_tx_fn fn, void *ud, tryon_err *err) {
  tryon_status st = TRYON_OK;

  if (c == NULL || fn == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_db_tx");
  for (int attempt = 1; attempt <= TX_TRIES; attempt++) {
    PGresult *res = NULL;
    tryon_err_clear(err);
    st = tryon_db_exec(c, "BEGIN", 0, NULL, NULL, err);
    if (st != TRYON_OK)
      break;
    st = fn(c, ud, err);
    if (st == TRYON_OK) {
      st = tryon_db_exec(c, "COMMIT", 0, NULL, &res, err);
      /* COMMIT of a transaction that already failed answers "ROLLBACK" without an
       * error: a body that swallowed a failed statement must not look committed. */
      if (st == TRYON_OK && strcmp(PQcmdStatus(res), "COMMIT") != 0)
        st = tryon_err_set(err, TRYON_E_DB, "transaction was aborted and rolled back");
      PQclear(res);
    } else if (!c->broken) {
      /* Keep the body's err: the rollback's own outcome is secondary. */
      PGresult *rb = PQexec(c->pg, "ROLLBACK");
      if (PQresultStatus(rb) != PGRES_COMMAND_OK)
        c->broken = true;
      PQclear(rb);
    }
    if (st != TRYON_E_SERIALIZATION || c->broken)
      break;
  }
  return st;
}
