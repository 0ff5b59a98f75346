/*
 * The bounded connection pool.
 *
 * Slots are fixed at creation; a slot's connection is opened lazily and remade when
 * found broken. The mutex guards only the bookkeeping (who holds which slot, counters):
 * connecting, health checks and closing happen outside it, so one slow connect never
 * stalls the other threads' leases and releases.
 */
#include "db/db_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tryon_db {
  char *conninfo;
  char *application_name;
  char connect_timeout[16];
  int size;
  int acquire_timeout_ms;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled when a slot is released */
  tryon_db_conn *slots;
  int in_use;
  int open; /* slots with an established connection; kept here, not read off the slots,
             * because a holder changes its slot's connection outside the lock */
  int waiting;
  uint64_t acquired;
  uint64_t timeouts;
  uint64_t reconnects;
};

static void deadline_after_ms(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec += 1;
    ts->tv_nsec -= 1000000000L;
  }
}

tryon_status tryon_db_new(const tryon_db_options *opt, tryon_db **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_db *db = NULL;
  pthread_condattr_t ca;
  bool ca_init = false;

  if (out == NULL || opt == NULL || opt->conninfo == NULL || opt->pool_size < 1 ||
      opt->acquire_timeout_ms < 0 || opt->connect_timeout_s < 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid database pool options");
    goto out;
  }
  *out = NULL;
  db = calloc(1, sizeof *db);
  if (db == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory creating the pool");
    goto out;
  }
  db->conninfo = strdup(opt->conninfo);
  db->application_name = strdup(opt->application_name ? opt->application_name : "tryon");
  db->slots = calloc((size_t)opt->pool_size, sizeof *db->slots);
  if (db->conninfo == NULL || db->application_name == NULL || db->slots == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory creating the pool");
    goto out;
  }
  snprintf(db->connect_timeout, sizeof db->connect_timeout, "%d",
           opt->connect_timeout_s > 0 ? opt->connect_timeout_s : 5);
  db->size = opt->pool_size;
  db->acquire_timeout_ms = opt->acquire_timeout_ms;
  for (int i = 0; i < db->size; i++)
    db->slots[i].db = db;

  /* Waits are measured on the monotonic clock: a wall-clock jump must not turn a
   * 5-second acquire timeout into an hour or into nothing. */
  if (pthread_condattr_init(&ca) != 0) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot initialise the pool");
    goto out;
  }
  ca_init = true;
  if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
      pthread_cond_init(&db->cv, &ca) != 0) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot initialise the pool");
    goto out;
  }
  if (pthread_mutex_init(&db->mu, NULL) != 0) {
    pthread_cond_destroy(&db->cv);
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot initialise the pool");
    goto out;
  }
  *out = db;
  db = NULL;
out:
  if (ca_init)
    pthread_condattr_destroy(&ca);
  if (db != NULL) {
    free(db->conninfo);
    free(db->application_name);
    free(db->slots);
    free(db);
  }
  return st;
}

void tryon_db_free(tryon_db *db) {
  if (db == NULL)
    return;
  for (int i = 0; i < db->size; i++) {
    if (db->slots[i].pg != NULL)
      PQfinish(db->slots[i].pg);
    tryon__db_prepared_reset(&db->slots[i]);
  }
  pthread_mutex_destroy(&db->mu);
  pthread_cond_destroy(&db->cv);
  free(db->slots);
  free(db->conninfo);
  free(db->application_name);
  free(db);
}

/* Whether an idle connection is still usable. An idle healthy connection has nothing
 * to read but notifications; after a server restart or pg_terminate_backend it has a
 * FATAL message and then EOF. PQconsumeInput reads without blocking, one chunk per call,
 * so read while the socket says there is more: the EOF turns the status to
 * CONNECTION_BAD. */
static bool conn_alive(PGconn *pg) {
  if (PQstatus(pg) != CONNECTION_OK)
    return false;
  for (int i = 0; i < 8; i++) {
    struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
    int n = poll(&p, 1, 0);
    if (n == 0)
      break;
    if (n < 0 && errno != EINTR)
      return false;
    if (PQconsumeInput(pg) == 0 || PQstatus(pg) != CONNECTION_OK)
      return false;
  }
  /* Drop stale notifications a previous holder left behind. */
  PGnotify *note;
  while ((note = PQnotifies(pg)) != NULL)
    PQfreemem(note);
  return PQtransactionStatus(pg) == PQTRANS_IDLE;
}

static tryon_status conn_open(tryon_db *db, tryon_db_conn *c, tryon_err *err) {
  /* Our defaults come first and the caller's conninfo last, so anything it names wins. */
  const char *keys[] = {"connect_timeout", "application_name", "client_encoding", "dbname", NULL};
  const char *vals[] = {db->connect_timeout, db->application_name, "UTF8", db->conninfo, NULL};
  tryon_status st = TRYON_OK;
  PGresult *res = NULL;

  if (c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  c->pg = PQconnectdbParams(keys, vals, 1);
  if (c->pg == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory connecting to the database");
    goto out;
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    /* libpq's message names the host and the reason, never the password. */
    st = tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "cannot connect to the database: %s",
                       tryon__db_trim(PQerrorMessage(c->pg)));
    goto out;
  }
  /* Every timestamp the programs read back is UTC, whatever the server's default. */
  res = PQexec(c->pg, "SET TIME ZONE 'UTC'");
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    st = tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "cannot set up the database session: %s",
                       tryon__db_trim(PQerrorMessage(c->pg)));
    goto out;
  }
out:
  PQclear(res);
  if (st != TRYON_OK && c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
  c->broken = false;
  tryon__db_prepared_reset(c);
  return st;
}

static void slot_give_back(tryon_db *db, tryon_db_conn *c, int open_delta) {
  pthread_mutex_lock(&db->mu);
  c->in_use = false;
  db->in_use--;
  db->open += open_delta;
  pthread_cond_signal(&db->cv);
  pthread_mutex_unlock(&db->mu);
}

tryon_status tryon_db_acquire(tryon_db *db, tryon_db_conn **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_db_conn *c = NULL;
  struct timespec deadline;
  bool reconnect = false;

  if (db == NULL || out == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_db_acquire");
  *out = NULL;
  deadline_after_ms(&deadline, db->acquire_timeout_ms);

  pthread_mutex_lock(&db->mu);
  for (;;) {
    /* Prefer a slot with an open connection: reusing beats connecting. */
    tryon_db_conn *closed = NULL;
    for (int i = 0; i < db->size && c == NULL; i++) {
      tryon_db_conn *s = &db->slots[i];
      if (s->in_use)
        continue;
      if (s->pg != NULL)
        c = s;
      else if (closed == NULL)
        closed = s;
    }
    if (c == NULL)
      c = closed;
    if (c != NULL)
      break;
    db->waiting++;
    int rc = pthread_cond_timedwait(&db->cv, &db->mu, &deadline);
    db->waiting--;
    if (rc == ETIMEDOUT) {
      /* One last look: a release may have raced with the timeout. */
      for (int i = 0; i < db->size && c == NULL; i++) {
        if (!db->slots[i].in_use)
          c = &db->slots[i];
      }
      if (c != NULL)
        break;
      db->timeouts++;
      pthread_mutex_unlock(&db->mu);
      return tryon_err_set(err, TRYON_E_POOL_TIMEOUT,
                           "no database connection became free within %d ms",
                           db->acquire_timeout_ms);
    }
  }
  c->in_use = true;
  db->in_use++;
  db->acquired++;
  pthread_mutex_unlock(&db->mu);

  if (c->pg == NULL || c->broken || !conn_alive(c->pg)) {
    reconnect = c->pg != NULL;
    st = conn_open(db, c, err);
    if (st != TRYON_OK) {
      slot_give_back(db, c, reconnect ? -1 : 0);
      goto out;
    }
    pthread_mutex_lock(&db->mu);
    if (reconnect)
      db->reconnects++;
    else
      db->open++;
    pthread_mutex_unlock(&db->mu);
  }
  *out = c;
out:
  return st;
}

void tryon_db_release(tryon_db_conn *c) {
  if (c == NULL)
    return;
  if (c->pg != NULL && !c->broken) {
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
      /* A holder that returned mid-transaction must not hand its half-done work to the
       * next one: roll it back here. */
      PGresult *res = PQexec(c->pg, "ROLLBACK");
      if (PQresultStatus(res) != PGRES_COMMAND_OK)
        c->broken = true;
      PQclear(res);
    } else if (ts != PQTRANS_IDLE) {
      c->broken = true; /* a query still running or an unknown state: start afresh */
    }
  }
  int open_delta = 0;
  if (c->broken && c->pg != NULL) {
    PQfinish(c->pg);
    c->pg = NULL;
    open_delta = -1;
  }
  slot_give_back(c->db, c, open_delta);
}

PGconn *tryon_db_conn_pg(tryon_db_conn *c) {
  return c ? c->pg : NULL;
}

void tryon_db_stats_get(tryon_db *db, tryon_db_stats *out) {
  memset(out, 0, sizeof *out);
  if (db == NULL)
    return;
  pthread_mutex_lock(&db->mu);
  out->size = db->size;
  out->open = db->open;
  out->in_use = db->in_use;
  out->waiting = db->waiting;
  out->acquired = db->acquired;
  out->timeouts = db->timeouts;
  out->reconnects = db->reconnects;
  pthread_mutex_unlock(&db->mu);
}

tryon_status tryon_db_conninfo_with_dbname(const char *conninfo, const char *dbname, char **out,
                                           tryon_err *err) {
  tryon_status st = TRYON_OK;
  char *perr = NULL;
  PQconninfoOption *opts = NULL;
  tryon_buf b;

  tryon_buf_init(&b, 64 * 1024);
  if (out == NULL || conninfo == NULL || dbname == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to conninfo rewrite");
    goto out;
  }
  *out = NULL;
  opts = PQconninfoParse(conninfo, &perr);
  if (opts == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "the database URL does not parse");
    goto out;
  }
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    const char *val = strcmp(o->keyword, "dbname") == 0 ? dbname : o->val;
    if (val == NULL)
      continue;
    /* key='value' with ' and \ escaped: the quoting rules of libpq's key=value form. */
    st = tryon_buf_appendf(&b, "%s%s='", b.len ? " " : "", o->keyword);
    for (const char *p = val; st == TRYON_OK && *p; p++) {
      if (*p == '\'' || *p == '\\')
        st = tryon_buf_append(&b, "\\", 1);
      if (st == TRYON_OK)
        st = tryon_buf_append(&b, p, 1);
    }
    if (st == TRYON_OK)
      st = tryon_buf_append(&b, "'", 1);
    if (st != TRYON_OK) {
      st = tryon_err_set(err, st, "cannot rewrite the database URL");
      goto out;
    }
  }
  *out = tryon_buf_steal(&b, NULL);
  if (*out == NULL)
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
out:
  if (perr != NULL)
    PQfreemem(perr);
  PQconninfoFree(opts);
  tryon_buf_release(&b);
  return st;
}
