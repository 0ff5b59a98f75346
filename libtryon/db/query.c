/*
 * Statements and transactions on a leased connection, and SQLSTATE → status mapping.
 */
#include "db/db_internal.h"

#include <inttypes.h>
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
  for (int i = 0; i < c->nprepared; i++)
    free(c->prepared[i].sql);
  memset(c->prepared, 0, sizeof c->prepared);
  c->nprepared = 0;
}

static tryon__db_prepared *prepared_find(tryon_db_conn *c, uint64_t h, const char *sql) {
  for (int i = 0; i < c->nprepared; i++) {
    /* The hash only narrows the search; the text decides. */
    if (c->prepared[i].hash == h && strcmp(c->prepared[i].sql, sql) == 0)
      return &c->prepared[i];
  }
  return NULL;
}

static void prepared_forget(tryon_db_conn *c, tryon__db_prepared *p) {
  free(p->sql);
  *p = c->prepared[--c->nprepared];
  memset(&c->prepared[c->nprepared], 0, sizeof c->prepared[0]);
}

static PGresult *exec_unnamed(tryon_db_conn *c, const char *sql, int nparams,
                              const char *const *params) {
  return PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
}

/*
 * Statements with parameters are prepared once per connection and then executed by
 * name: the server parses and plans them once, not on every call (a sign-in's upsert
 * costs the server markedly less this way). A full cache is emptied with DEALLOCATE ALL
 * only between transactions; inside one, a new statement simply runs unnamed.
 */
static PGresult *exec_prepared(tryon_db_conn *c, const char *sql, int nparams,
                               const char *const *params) {
  uint64_t h = tryon_hash64(sql);
  bool idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
  tryon__db_prepared *p = prepared_find(c, h, sql);
  char name[16];

  if (p == NULL) {
    if (c->nprepared == TRYON__DB_PREPARED_MAX) {
      if (!idle)
        return exec_unnamed(c, sql, nparams, params);
      PGresult *d = PQexec(c->pg, "DEALLOCATE ALL");
      bool ok = PQresultStatus(d) == PGRES_COMMAND_OK;
      PQclear(d);
      if (!ok)
        return exec_unnamed(c, sql, nparams, params);
      tryon__db_prepared_reset(c);
    }
    char *copy = strdup(sql);
    if (copy == NULL)
      return exec_unnamed(c, sql, nparams, params);
    uint32_t id = c->next_name++;
    snprintf(name, sizeof name, "t%u", (unsigned)id);
    PGresult *prep = PQprepare(c->pg, name, sql, nparams, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
      free(copy);
      return prep; /* the caller reports the error (a syntax error, a lost connection) */
    }
    PQclear(prep);
    p = &c->prepared[c->nprepared++];
    *p = (tryon__db_prepared){.hash = h, .sql = copy, .name = id};
  }
  snprintf(name, sizeof name, "t%u", (unsigned)p->name);
  PGresult *res = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  if (state != NULL && (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0)) {
    /* "cached plan must not change result type" (a table changed shape under the
     * statement) or an unknown statement name: forget this one; the next call prepares
     * it afresh under a new name. Outside a transaction nothing ran, so run it now. */
    prepared_forget(c, p);
    if (idle) {
      PQclear(res);
      res = exec_unnamed(c, sql, nparams, params);
    }
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
  res = nparams > 0 ? exec_prepared(c, sql, nparams, params) : exec_unnamed(c, sql, 0, NULL);
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

tryon_db_num tryon_db_num_i64(int64_t v) {
  tryon_db_num n;
  snprintf(n.s, sizeof n.s, "%" PRId64, v);
  return n;
}

int64_t tryon_db_get_i64(const PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}
