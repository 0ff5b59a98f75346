/*
 * Test support: what every test program needs and no product code does.
 *
 * Integration tests get a scratch database of their own, created from the admin
 * connection in TRYON_TEST_DATABASE_URL (scripts/test points it at the private
 * cluster) and dropped at the end, so tests run in parallel without seeing each other.
 * A missing environment fails the test with a message saying how to run it; it never
 * skips silently.
 */
#ifndef TRYON_TESTSUPPORT_H
#define TRYON_TESTSUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <tryon/db.h>

typedef struct tryon_testdb {
  char name[64];  /* "tryon_t_<pid>_<hex>" */
  char *admin;    /* the admin conninfo (from the environment), owned */
  char *conninfo; /* conninfo of the scratch database, owned */
} tryon_testdb;

/* The repo root (TRYON_SOURCE_DIR, set by ctest). Fails the test when unset. */
const char *tryon_test_source_dir(void);

/* "<repo root>/<rel>", caller frees with free(). */
char *tryon_test_path(const char *rel);

/* Creates an empty scratch database; fails the test on any problem. */
void tryon_testdb_create(tryon_testdb *t);

/* Creates a scratch database and applies the repo's migrations to it. */
void tryon_testdb_create_migrated(tryon_testdb *t);

/* Drops the database (forcing out leftover connections) and frees the strings. */
void tryon_testdb_drop(tryon_testdb *t);

/* A pool on the scratch database; fails the test on error. Free with tryon_db_free. */
tryon_db *tryon_testdb_pool(const tryon_testdb *t, int size, int acquire_timeout_ms);

/* The usual fixture of a test touching data: a migrated scratch database `t`, a pool of
 * `pool_size` on it and one connection leased from it. Fails the test on error. */
void tryon_testdb_open(tryon_testdb *t, int pool_size, int acquire_timeout_ms, tryon_db **db,
                       tryon_db_conn **c);
/* Gives `c` back, frees `db` and drops `t`. */
void tryon_testdb_close(tryon_testdb *t, tryon_db *db, tryon_db_conn *c);

/* Runs one statement on the admin connection (e.g. pg_terminate_backend); fails the
 * test on error. Returns the first column of the first row as a malloc'd string, or
 * NULL when there is none. */
char *tryon_testdb_admin_query(const tryon_testdb *t, const char *sql, int nparams,
                               const char *const *params);

/* Runs sql on a connection and returns the first value as a malloc'd string (NULL for
 * no row or SQL NULL); fails the test on error. */
char *tryon_test_query_value(tryon_db_conn *c, const char *sql, int nparams,
                             const char *const *params);

/* Fails the test with the line, `ctx`, both statuses' names and err's message unless
 * `got` is `want`. */
void tryon_test_expect_status(tryon_status got, tryon_status want, const tryon_err *err,
                              const char *ctx, int line);
#define EXPECT_STATUS(got, want, err, ctx) \
  tryon_test_expect_status((got), (want), (err), (ctx), __LINE__)

/* Fails the test, naming the expression, unless two int64 values are equal. */
#define EXPECT_I64(got, want, ctx)                                                        \
  do {                                                                                    \
    int64_t g_ = (got), w_ = (want);                                                      \
    if (g_ != w_)                                                                         \
      fail_msg("line %d: %s: %s = %lld, want %lld", __LINE__, (ctx), #got, (long long)g_, \
               (long long)w_);                                                            \
  } while (0)

/* A loopback TCP socket that listens and never answers (the kernel accepts, nobody
 * replies): a server that hangs. Its port into `*port`; the caller closes the fd. */
int tryon_test_silent_socket(int *port);

/* Installs a log sink that prints lines to stderr when TRYON_TEST_LOG is set. */
void tryon_test_log_init(void);

#endif
