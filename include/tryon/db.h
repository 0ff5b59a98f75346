/*
 * tryon/db.h - PostgreSQL access: a bounded connection pool, parameterised queries,
 * transactions, SQLSTATE mapping and schema migrations.
 *
 * Sections:
 *   1. The pool
 *   2. Queries
 *   3. Transactions
 *   4. Migrations
 *   5. Helpers
 *   6. The listener: LISTEN for event loops, with reconnects
 *
 * Thread-safety: a tryon_db (the pool) is shared by every thread of a program. A
 * leased tryon_db_conn belongs to the thread that acquired it until it is released.
 * A tryon_db_listener belongs to one thread at a time (its event loop's).
 */
#ifndef TRYON_DB_H
#define TRYON_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------------------- 1. The pool */

typedef struct tryon_db tryon_db;
typedef struct tryon_db_conn tryon_db_conn;

typedef struct tryon_db_options {
  const char *conninfo;         /* libpq URL or key=value string; borrowed for tryon_db_new */
  int pool_size;                /* connections at most, >= 1 */
  int acquire_timeout_ms;       /* how long tryon_db_acquire waits for a free connection */
  int connect_timeout_s;        /* libpq connect_timeout for each (re)connect; 0: 5 s */
  const char *application_name; /* shown in pg_stat_activity; NULL: "tryon" */
} tryon_db_options;

/*
 * Creates a pool. No connection is opened yet: connections are made on first use and
 * remade after they break, so a program can start before its database. `*out` is
 * caller-owned (tryon_db_free). TRYON_E_INVALID for bad options, TRYON_E_NOMEM.
 */
TRYON_API tryon_status tryon_db_new(const tryon_db_options *opt, tryon_db **out, tryon_err *err);

/* Closes every connection. All leased connections must have been released. NULL ok. */
TRYON_API void tryon_db_free(tryon_db *db);

/*
 * Leases a connection, waiting up to the pool's acquire timeout for one to be free.
 * A connection found broken (the server closed it, or restarted) is reconnected before
 * it is handed out; a fresh connection has `timezone = UTC`.
 *
 * Returns TRYON_OK; TRYON_E_POOL_TIMEOUT when none became free in time;
 * TRYON_E_DB_UNAVAILABLE when (re)connecting failed (the slot is kept for a later try).
 * Give the connection back with tryon_db_release.
 */
TRYON_API tryon_status tryon_db_acquire(tryon_db *db, tryon_db_conn **out, tryon_err *err);

/* Returns a leased connection to its pool. A connection left inside a transaction is
 * rolled back first; a broken one is closed and remade on its next lease. NULL ok. */
TRYON_API void tryon_db_release(tryon_db_conn *conn);

/* The underlying libpq connection, borrowed while the lease lasts (for LISTEN, COPY). */
TRYON_API PGconn *tryon_db_conn_pg(tryon_db_conn *conn);

typedef struct tryon_db_stats {
  int size;            /* the pool's bound */
  int open;            /* connections currently established */
  int in_use;          /* leased right now */
  int waiting;         /* threads waiting in tryon_db_acquire */
  uint64_t acquired;   /* leases granted since start */
  uint64_t timeouts;   /* acquires that timed out */
  uint64_t reconnects; /* connections remade after breaking */
} tryon_db_stats;

/* A consistent snapshot of the pool's counters (for /metrics). */
TRYON_API void tryon_db_stats_get(tryon_db *db, tryon_db_stats *out);

/* ------------------------------------------------------------------------- 2. Queries */

/*
 * Runs one parameterised statement: `sql` uses $1..$n, `params` are text values (a NULL
 * entry is SQL NULL), `nparams` may be 0 with params NULL. Never build SQL from input.
 *
 * On success returns TRYON_OK and, when `out` is non-NULL, the result (caller frees it
 * with PQclear); with `out` NULL the result is cleared here. A statement that returns
 * rows or not are both success.
 * On failure returns the status mapped from the SQLSTATE (tryon_db_status_from_sqlstate),
 * sets err->sqlstate and err->message, and `*out` stays NULL.
 */
TRYON_API tryon_status tryon_db_exec(tryon_db_conn *conn, const char *sql, int nparams,
                                     const char *const *params, PGresult **out, tryon_err *err);

/*
 * Runs a trusted multi-statement script with no parameters (the migration files from
 * disk, nothing built from input). Same statuses as tryon_db_exec.
 */
TRYON_API tryon_status tryon_db_exec_script(tryon_db_conn *conn, const char *sql, tryon_err *err);

/* ------------------------------------------------------------------- 3. Transactions */

/* The body of a transaction. Return TRYON_OK to commit; anything else rolls back. */
typedef tryon_status (*tryon_db_tx_fn)(tryon_db_conn *conn, void *ud, tryon_err *err);

/*
 * Runs fn inside BEGIN ... COMMIT on `conn`. A serialization failure or deadlock
 * (SQLSTATE 40001, 40P01), at the body or at COMMIT, reruns the whole body, up to 3
 * tries in all, so `fn` must only touch the database (or be safe to repeat). Any other
 * failure rolls back and returns the body's status (its err kept).
 */
TRYON_API tryon_status tryon_db_tx(tryon_db_conn *conn, tryon_db_tx_fn fn, void *ud,
                                   tryon_err *err);

/* ------------------------------------------------------------------------ 4. Migrations */

/*
 * Migration files are `NNNN_name.sql` (four or more digits, then `_`, letters, digits,
 * `_`) in one folder; other files are ignored. Each is applied in its own transaction
 * together with its row in `schema_migrations` (version, name, sha256 checksum,
 * applied_at), in version order, under an advisory lock so that concurrent runs wait
 * for each other. Applying is idempotent.
 *
 * Refusals (TRYON_E_MIGRATION, nothing applied): the database records a version that
 * no file has (a newer program ran against it), a file's checksum differs from the
 * one recorded when it was applied, two files share a version, or a malformed name
 * starting with digits.
 */
typedef struct tryon_db_migration {
  int64_t version;
  char name[128];        /* "0001_init" without ".sql" */
  char checksum[65];     /* hex SHA-256 of the file */
  bool applied;          /* recorded in schema_migrations */
  bool has_file;         /* found in the folder */
  int64_t applied_at_ms; /* 0 unless applied */
} tryon_db_migration;

typedef struct tryon_db_migrations {
  tryon_db_migration *items; /* owned; sorted by version */
  size_t count;
  size_t newly_applied; /* how many tryon_db_migrate applied in this call */
} tryon_db_migrations;

/* Applies what is pending from `dir`. `report` (optional) receives every migration
 * after the run; release it with tryon_db_migrations_release. */
TRYON_API tryon_status tryon_db_migrate(tryon_db *db, const char *dir, tryon_db_migrations *report,
                                        tryon_err *err);

/* Lists files and applied versions side by side without changing anything.
 * TRYON_E_MIGRATION when the database holds a version no file has (report still set). */
TRYON_API tryon_status tryon_db_migration_status(tryon_db *db, const char *dir,
                                                 tryon_db_migrations *report, tryon_err *err);

TRYON_API void tryon_db_migrations_release(tryon_db_migrations *m);

/* --------------------------------------------------------------------------- 5. Helpers */

/* Maps a five-character SQLSTATE to a status: 23505 → E_CONFLICT, other class 23 →
 * E_CONSTRAINT, 40001/40P01 → E_SERIALIZATION, class 08 and 57P01..57P03 →
 * E_DB_UNAVAILABLE, 57014 → E_TIMEOUT, class 22 → E_INVALID, NULL or other → E_DB. */
TRYON_API tryon_status tryon_db_status_from_sqlstate(const char *sqlstate);

/*
 * Rewrites a conninfo (URL or key=value) to name another database, as a key=value
 * string that the caller frees with free(). TRYON_E_INVALID if conninfo does not parse.
 */
TRYON_API tryon_status tryon_db_conninfo_with_dbname(const char *conninfo, const char *dbname,
                                                     char **out, tryon_err *err);

/* An int64 as the text of a $n parameter. */
typedef struct tryon_db_num {
  char s[24];
} tryon_db_num;
TRYON_API tryon_db_num tryon_db_num_i64(int64_t v);

/* A result cell as int64; 0 for SQL NULL. */
TRYON_API int64_t tryon_db_get_i64(const PGresult *res, int row, int col);

/* SQL fragments for times as milliseconds since the epoch, exactly (no floating point):
 * TRYON_DB_TS(3) is the timestamptz of bigint parameter $3; TRYON_DB_MS("col") the
 * bigint milliseconds of a timestamptz expression (NULL stays NULL). */
#define TRYON_DB_TS(n) "(timestamptz 'epoch' + $" #n "::bigint * interval '1 millisecond')"
#define TRYON_DB_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

/* ------------------------------------------------- 6. The listener: LISTEN for event loops */

/*
 * A connection of its own that LISTENs on a few channels, for a program's event loop
 * (the worker's runner; the server's live channel). It never blocks its caller once
 * started: it hands out its socket to poll, connects with PQconnectStart/PQconnectPoll,
 * issues its LISTENs without waiting, and hands out the notifications it has read.
 * When the connection is lost (a server restart, pg_terminate_backend, a network
 * failure noticed by TCP keepalives) it reconnects in the background after a backoff
 * with jitter — half of min(backoff_min × 2^(failures−1), backoff_max) plus a random
 * part up to the other half — and LISTENs on every channel again. Notifications sent
 * while it was down are lost: tryon_db_listener_process says when it came up (again),
 * so the caller re-reads whatever state it may have missed.
 *
 * One turn of the caller's loop:
 *
 *   short want;
 *   int fd = tryon_db_listener_fd(l, &want);        -1: no socket right now
 *   int64_t t = tryon_db_listener_timeout_ms(l);    -1: no deadline of its own
 *   ... poll fd for `want` (with the loop's other descriptors), at most t ms ...
 *   unsigned what = tryon_db_listener_process(l, revents);   0 when fd was not ready
 *   if (what & TRYON_DB_LISTENER_UP) ... re-read state ...
 *   tryon_db_notification n;
 *   while (tryon_db_listener_next(l, &n)) ... n.channel, n.payload ...
 *
 * The descriptor changes across reconnects: ask for it every turn (an epoll user
 * re-registers when it differs). libpq resolves a host name synchronously inside
 * PQconnectStart; a local socket directory or `hostaddr` avoids even that.
 */
typedef struct tryon_db_listener tryon_db_listener;

#define TRYON_DB_LISTENER_MAX_CHANNELS 16

typedef struct tryon_db_listener_options {
  const char *conninfo; /* libpq URL or key=value; copied */
  /* NULL-terminated, 1 to TRYON_DB_LISTENER_MAX_CHANNELS names of [a-z_][a-z0-9_]*, at
   * most 63 bytes each, no repeats; copied. */
  const char *const *channels;
  int connect_timeout_ms;       /* an attempt (connect and LISTENs) longer is given up; 0: 10 s */
  int64_t backoff_min_ms;       /* the first retry's ceiling; 0: 500 ms */
  int64_t backoff_max_ms;       /* the largest ceiling; 0: 30 s (>= backoff_min_ms) */
  const char *application_name; /* shown in pg_stat_activity; NULL: "tryon-listen"; copied */
} tryon_db_listener_options;

/* What tryon_db_listener_process saw happen (a bit set). */
enum {
  /* Listening on every channel from now on: the first time, or after a loss. Whatever
   * was sent before (or while it was down) was not seen: re-read state. */
  TRYON_DB_LISTENER_UP = 1u << 0,
  TRYON_DB_LISTENER_RECONNECTED = 1u << 1, /* with UP: it had been up before */
  TRYON_DB_LISTENER_LOST = 1u << 2,        /* the connection broke; a reconnect is due */
  TRYON_DB_LISTENER_FAILED = 1u << 3,      /* a connect attempt failed; another is due */
};

/* One notification. The strings are borrowed until the next call on the listener. */
typedef struct tryon_db_notification {
  const char *channel;
  const char *payload; /* "" when the NOTIFY had none */
  int sender_pid;      /* the notifying backend's process id */
} tryon_db_notification;

/*
 * Creates a listener; no connection is made yet (the first tryon_db_listener_process,
 * or tryon_db_listener_open, begins one). `*out` is caller-owned
 * (tryon_db_listener_free). TRYON_E_INVALID for bad options (a conninfo libpq cannot
 * parse, a bad channel name), TRYON_E_NOMEM.
 */
TRYON_API tryon_status tryon_db_listener_new(const tryon_db_listener_options *opt,
                                             tryon_db_listener **out, tryon_err *err);

/*
 * Connects and LISTENs now, BLOCKING up to connect_timeout_ms: for a program's start,
 * before its loop turns (the worker refuses to start without it). TRYON_OK when up (a
 * no-op when it already was; TRYON_DB_LISTENER_UP is not reported for this connect);
 * TRYON_E_DB_UNAVAILABLE with libpq's reason (never a password) otherwise, and a
 * retry is then due after the backoff, as after any failed attempt.
 */
TRYON_API tryon_status tryon_db_listener_open(tryon_db_listener *l, tryon_err *err);

/* The socket to poll and in `*events` what for (POLLIN and/or POLLOUT of <poll.h>);
 * -1 (events 0) while there is none (waiting to retry). Valid until the next
 * tryon_db_listener_process or _close. */
TRYON_API int tryon_db_listener_fd(const tryon_db_listener *l, short *events);

/* Milliseconds until tryon_db_listener_process wants calling even if its socket stays
 * quiet (a retry due, an attempt's deadline); 0: now; -1: not before its socket is
 * ready. */
TRYON_API int64_t tryon_db_listener_timeout_ms(const tryon_db_listener *l);

/*
 * Does what is due without blocking: reads the socket when `revents` (the poll result
 * for the descriptor of tryon_db_listener_fd, 0 when it was not ready or not polled)
 * says it is ready, moves a connect attempt on, starts one when its time has come.
 * Returns the TRYON_DB_LISTENER_* bits of what happened (0: nothing worth telling).
 * Cheap when nothing is due: call it every turn of the loop.
 */
TRYON_API unsigned tryon_db_listener_process(tryon_db_listener *l, short revents);

/* The next notification read so far, in arrival order: true and `*out` filled (borrowed
 * as said above), or false when there is none. Never reads the socket itself. */
TRYON_API bool tryon_db_listener_next(tryon_db_listener *l, tryon_db_notification *out);

/* Whether it is listening on every channel right now. */
TRYON_API bool tryon_db_listener_up(const tryon_db_listener *l);

/* Why the last attempt failed or the connection was lost (libpq's words, never a
 * password), or "" when nothing failed yet. Borrowed until the next call. */
TRYON_API const char *tryon_db_listener_error(const tryon_db_listener *l);

/* Closes the connection now (notifications not yet taken are dropped). The listener
 * stays usable: the next tryon_db_listener_process connects again at once. */
TRYON_API void tryon_db_listener_close(tryon_db_listener *l);

/* Closes and frees. NULL is a no-op. */
TRYON_API void tryon_db_listener_free(tryon_db_listener *l);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_DB_H */
