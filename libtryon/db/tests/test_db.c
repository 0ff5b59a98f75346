/*
 * The db module against a real PostgreSQL: each test gets a scratch database.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testsupport.h"

/* ------------------------------------------------------------------------- fixtures */

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
} fixture;

static int setup_empty(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_testdb_create(&f->t);
  f->db = tryon_testdb_pool(&f->t, 3, 5000);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_db_free(f->db);
  tryon_testdb_drop(&f->t);
  free(f);
  return 0;
}

static tryon_db_conn *lease(fixture *f) {
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_db_acquire(f->db, &c, &err) != TRYON_OK)
    fail_msg("acquire failed: %s", tryon_err_message(&err));
  return c;
}

static void exec_ok(tryon_db_conn *c, const char *sql) {
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_db_exec(c, sql, 0, NULL, NULL, &err) != TRYON_OK)
    fail_msg("%s: %s", sql, tryon_err_message(&err));
}

/* -------------------------------------------------------------------- sqlstate map */

static void test_db__sqlstate_maps_to_status(void **state) {
  (void)state;
  static const struct {
    const char *sqlstate;
    tryon_status want;
  } cases[] = {
      {"23505", TRYON_E_CONFLICT},
      {"23514", TRYON_E_CONSTRAINT},
      {"23503", TRYON_E_CONSTRAINT},
      {"23502", TRYON_E_CONSTRAINT},
      {"40001", TRYON_E_SERIALIZATION},
      {"40P01", TRYON_E_SERIALIZATION},
      {"08006", TRYON_E_DB_UNAVAILABLE},
      {"57P01", TRYON_E_DB_UNAVAILABLE},
      {"57P03", TRYON_E_DB_UNAVAILABLE},
      {"57014", TRYON_E_TIMEOUT},
      {"22012", TRYON_E_INVALID},
      {"22P02", TRYON_E_INVALID},
      {"42601", TRYON_E_DB},
      {"XX000", TRYON_E_DB},
      {"", TRYON_E_DB},
      {"2350", TRYON_E_DB},
      {NULL, TRYON_E_DB},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(tryon_db_status_from_sqlstate(cases[i].sqlstate), cases[i].want);
}

/* ------------------------------------------------------------------------- queries */

static void test_db__exec_binds_parameters_and_nulls(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = lease(f);
  const char *params[] = {"40", "2", NULL, "it's; DROP TABLE x --"};
  PGresult *res = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_exec(c, "SELECT $1::int + $2::int, $3::text IS NULL, $4::text", 4,
                                 params, &res, &err),
                   TRYON_OK);
  assert_string_equal(PQgetvalue(res, 0, 0), "42");
  assert_string_equal(PQgetvalue(res, 0, 1), "t");
  /* A parameter is data, never SQL. */
  assert_string_equal(PQgetvalue(res, 0, 2), "it's; DROP TABLE x --");
  PQclear(res);
  tryon_db_release(c);
}

static void test_db__exec_errors_carry_sqlstate(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = lease(f);
  exec_ok(c, "CREATE TABLE t (id int PRIMARY KEY, n int CHECK (n >= 0))");
  exec_ok(c, "INSERT INTO t VALUES (1, 1)");
  static const struct {
    const char *sql;
    tryon_status want;
    const char *sqlstate;
  } cases[] = {
      {"INSERT INTO t VALUES (1, 5)", TRYON_E_CONFLICT, "23505"},
      {"INSERT INTO t VALUES (2, -1)", TRYON_E_CONSTRAINT, "23514"},
      {"SELECT 1/0", TRYON_E_INVALID, "22012"},
      {"SELEC 1", TRYON_E_DB, "42601"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    PGresult *res = (PGresult *)1;
    tryon_err err;
    tryon_err_clear(&err);
    assert_int_equal(tryon_db_exec(c, cases[i].sql, 0, NULL, &res, &err), cases[i].want);
    assert_null(res);
    assert_string_equal(err.sqlstate, cases[i].sqlstate);
    assert_true(strlen(err.message) > 0);
  }
  /* The failed statements changed nothing, and the connection is still usable. */
  char *n = tryon_test_query_value(c, "SELECT count(*) FROM t", 0, NULL);
  assert_string_equal(n, "1");
  free(n);
  tryon_db_release(c);
}

static void test_db__prepared_statements_follow_the_schema(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = lease(f);
  const char *params[] = {"1"};
  PGresult *res = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  exec_ok(c, "CREATE TABLE p (a int)");
  exec_ok(c, "INSERT INTO p VALUES (1)");
  for (int round = 0; round < 2; round++) {
    /* The second round runs the statement prepared by the first. */
    assert_int_equal(tryon_db_exec(c, "SELECT * FROM p WHERE a = $1::int", 1, params, &res, &err),
                     TRYON_OK);
    assert_int_equal(PQnfields(res), 1);
    PQclear(res);
  }
  /* The table changes shape under the prepared statement: still answered, new shape. */
  exec_ok(c, "ALTER TABLE p ADD COLUMN b text DEFAULT 'x'");
  assert_int_equal(tryon_db_exec(c, "SELECT * FROM p WHERE a = $1::int", 1, params, &res, &err),
                   TRYON_OK);
  assert_int_equal(PQnfields(res), 2);
  PQclear(res);
  /* Changed shape seen first inside a transaction: that transaction fails (as any
   * statement error would), the next one works. */
  exec_ok(c, "ALTER TABLE p ADD COLUMN c int DEFAULT 3");
  exec_ok(c, "BEGIN");
  tryon_status in_tx = tryon_db_exec(c, "SELECT * FROM p WHERE a = $1::int", 1, params, &res, &err);
  PQclear(res);
  exec_ok(c, "ROLLBACK");
  if (in_tx != TRYON_OK)
    assert_string_equal(err.sqlstate, "0A000");
  exec_ok(c, "BEGIN");
  assert_int_equal(tryon_db_exec(c, "SELECT * FROM p WHERE a = $1::int", 1, params, &res, &err),
                   TRYON_OK);
  assert_int_equal(PQnfields(res), 3);
  PQclear(res);
  exec_ok(c, "COMMIT");
  /* Hundreds of distinct statements: the per-connection cache starts over, still right. */
  for (int i = 0; i < 300; i++) {
    char sql[64], want[16];
    snprintf(sql, sizeof sql, "SELECT $1::int + %d", i);
    snprintf(want, sizeof want, "%d", 1 + i);
    char *v = tryon_test_query_value(c, sql, 1, params);
    assert_string_equal(v, want);
    free(v);
  }
  /* A full cache met inside a failed transaction: the new statement runs unnamed (and
   * fails with the transaction), nothing is forgotten wrongly, and afterwards every
   * statement still works. */
  for (int i = 0; i < 200; i++) {
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT $1::int - %d", i);
    free(tryon_test_query_value(c, sql, 1, params));
  }
  exec_ok(c, "BEGIN");
  assert_int_not_equal(tryon_db_exec(c, "SELECT 1/0", 0, NULL, NULL, &err), TRYON_OK);
  assert_int_not_equal(tryon_db_exec(c, "SELECT $1::int * 7", 1, params, NULL, &err), TRYON_OK);
  exec_ok(c, "ROLLBACK");
  for (int i = 199; i >= 150; i--) {
    char sql[64], want[16];
    snprintf(sql, sizeof sql, "SELECT $1::int - %d", i);
    snprintf(want, sizeof want, "%d", 1 - i);
    char *v = tryon_test_query_value(c, sql, 1, params);
    assert_string_equal(v, want);
    free(v);
  }
  char *seven = tryon_test_query_value(c, "SELECT $1::int * 7", 1, params);
  assert_string_equal(seven, "7");
  free(seven);
  tryon_db_release(c);
}

static void test_db__sessions_run_in_utc(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = lease(f);
  char *tz = tryon_test_query_value(c, "SHOW TimeZone", 0, NULL);
  assert_string_equal(tz, "UTC");
  free(tz);
  tryon_db_release(c);
}

/* -------------------------------------------------------------------------- the pool */

static void test_db__pool_exhaustion_times_out(void **state) {
  fixture *f = *state;
  tryon_db *db = tryon_testdb_pool(&f->t, 2, 200);
  tryon_db_conn *a = NULL, *b = NULL, *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(db, &a, &err), TRYON_OK);
  assert_int_equal(tryon_db_acquire(db, &b, &err), TRYON_OK);
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_E_POOL_TIMEOUT);
  assert_null(c);
  assert_int_equal(err.status, TRYON_E_POOL_TIMEOUT);
  assert_non_null(strstr(err.message, "200 ms"));

  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.size, 2);
  assert_int_equal(s.in_use, 2);
  assert_int_equal(s.open, 2);
  assert_int_equal(s.timeouts, 1);

  /* Once a connection comes back the next lease succeeds, on the same connection. */
  tryon_db_release(a);
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.open, 2);
  tryon_db_release(b);
  tryon_db_release(c);
  tryon_db_free(db);
}

typedef struct release_later {
  tryon_db_conn *c;
} release_later;

static void *release_after_pause(void *arg) {
  release_later *r = arg;
  usleep(100 * 1000);
  tryon_db_release(r->c);
  return NULL;
}

static void test_db__pool_waiter_gets_released_connection(void **state) {
  fixture *f = *state;
  tryon_db *db = tryon_testdb_pool(&f->t, 1, 30000);
  release_later r = {0};
  tryon_db_conn *c = NULL;
  pthread_t th;
  tryon_err err;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(db, &r.c, &err), TRYON_OK);
  assert_int_equal(pthread_create(&th, NULL, release_after_pause, &r), 0);
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  pthread_join(th, NULL);
  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.timeouts, 0);
  assert_int_equal(s.acquired, 2);
  tryon_db_release(c);
  tryon_db_free(db);
}

typedef struct hammer {
  tryon_db *db;
  int rounds;
  int failures;
  int over_bound;
} hammer;

static tryon_status bump(tryon_db_conn *c, void *ud, tryon_err *err) {
  (void)ud;
  return tryon_db_exec(c, "UPDATE counter SET n = n + 1", 0, NULL, NULL, err);
}

static void *hammer_thread(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < h->rounds; i++) {
    tryon_db_conn *c = NULL;
    tryon_err err;
    tryon_err_clear(&err);
    if (tryon_db_acquire(h->db, &c, &err) != TRYON_OK) {
      __atomic_add_fetch(&h->failures, 1, __ATOMIC_SEQ_CST);
      continue;
    }
    tryon_db_stats s;
    tryon_db_stats_get(h->db, &s);
    if (s.in_use > s.size)
      __atomic_add_fetch(&h->over_bound, 1, __ATOMIC_SEQ_CST);
    if (tryon_db_tx(c, bump, NULL, &err) != TRYON_OK)
      __atomic_add_fetch(&h->failures, 1, __ATOMIC_SEQ_CST);
    tryon_db_release(c);
  }
  return NULL;
}

static void test_db__pool_is_bounded_under_contention(void **state) {
  fixture *f = *state;
  enum { THREADS = 8, ROUNDS = 40 };
  tryon_db_conn *c = lease(f);
  exec_ok(c, "CREATE TABLE counter (n int NOT NULL)");
  exec_ok(c, "INSERT INTO counter VALUES (0)");
  tryon_db_release(c);

  tryon_db *db = tryon_testdb_pool(&f->t, 3, 30000);
  hammer h = {.db = db, .rounds = ROUNDS};
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, hammer_thread, &h), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(h.failures, 0);
  assert_int_equal(h.over_bound, 0);

  /* Every increment landed exactly once, and the server never saw more than 3 of ours. */
  c = lease(f);
  char *n = tryon_test_query_value(c, "SELECT n FROM counter", 0, NULL);
  assert_int_equal(strtol(n, NULL, 10), THREADS * ROUNDS);
  free(n);
  tryon_db_release(c);
  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.in_use, 0);
  assert_true(s.open <= 3);
  assert_int_equal(s.acquired, THREADS * ROUNDS);
  tryon_db_free(db);
}

/* Makes the server drop `c`'s backend (as a restart or an idle timeout would) and waits
 * until it is gone. Returns the old backend pid (caller frees). */
static char *kill_backend(fixture *f, tryon_db_conn *c) {
  char *pid = tryon_test_query_value(c, "SELECT pg_backend_pid()", 0, NULL);
  const char *p[] = {pid};
  free(tryon_testdb_admin_query(&f->t, "SELECT pg_terminate_backend($1::int, 5000)", 1, p));
  return pid;
}

static void test_db__reconnects_after_backend_killed(void **state) {
  fixture *f = *state;
  tryon_db *db = tryon_testdb_pool(&f->t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);

  /* The server drops the connection while it is idle in the pool. */
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  const char *seven[] = {"7"};
  free(tryon_test_query_value(c, "SELECT $1::int", 1, seven)); /* prepared on this session */
  char *pid1 = kill_backend(f, c);
  tryon_db_release(c);

  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *pid2 = tryon_test_query_value(c, "SELECT pg_backend_pid()", 0, NULL);
  assert_string_not_equal(pid1, pid2);
  /* The new session knows no prepared statements: the pool prepares afresh. */
  char *v = tryon_test_query_value(c, "SELECT $1::int", 1, seven);
  assert_string_equal(v, "7");
  free(v);
  tryon_db_release(c);
  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.reconnects, 1);
  free(pid1);
  free(pid2);
  tryon_db_free(db);
}

static void test_db__connection_lost_mid_lease_is_replaced(void **state) {
  fixture *f = *state;
  tryon_db *db = tryon_testdb_pool(&f->t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);

  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *pid = kill_backend(f, c);
  /* The holder's next statement fails with a clear status, not a crash. */
  assert_int_equal(tryon_db_exec(c, "SELECT 1", 0, NULL, NULL, &err), TRYON_E_DB_UNAVAILABLE);
  tryon_db_release(c);

  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *one = tryon_test_query_value(c, "SELECT 1", 0, NULL);
  assert_string_equal(one, "1");
  tryon_db_release(c);
  free(one);
  free(pid);
  tryon_db_free(db);
}

static void test_db__unreachable_server_is_reported(void **state) {
  (void)state;
  tryon_db *db = NULL;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_db_options opt = {
      .conninfo = "host=/nonexistent/socket/dir dbname=x user=u password=hunter2-secret",
      .pool_size = 1,
      .acquire_timeout_ms = 1000,
      .connect_timeout_s = 2};
  assert_int_equal(tryon_db_new(&opt, &db, &err), TRYON_OK);
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_E_DB_UNAVAILABLE);
  assert_null(c);
  assert_null(strstr(err.message, "hunter2"));
  /* The failed slot is free again: the next try fails the same way, not by timeout. */
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_E_DB_UNAVAILABLE);
  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.in_use, 0);
  assert_int_equal(s.open, 0);
  tryon_db_free(db);
}

static void test_db__bad_options_are_refused(void **state) {
  (void)state;
  tryon_db *db = (tryon_db *)1;
  tryon_err err;
  tryon_db_options opt = {.conninfo = "dbname=x", .pool_size = 0, .acquire_timeout_ms = 10};
  assert_int_equal(tryon_db_new(&opt, &db, &err), TRYON_E_INVALID);
  opt.pool_size = 1;
  opt.conninfo = NULL;
  assert_int_equal(tryon_db_new(&opt, &db, &err), TRYON_E_INVALID);
  tryon_db_free(NULL);
  tryon_db_release(NULL);
}

static void test_db__release_rolls_back_open_transaction(void **state) {
  fixture *f = *state;
  tryon_db *db = tryon_testdb_pool(&f->t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  exec_ok(c, "CREATE TABLE r (x int)");
  exec_ok(c, "BEGIN");
  exec_ok(c, "INSERT INTO r VALUES (1)");
  tryon_db_release(c); /* forgot to commit */
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  char *n = tryon_test_query_value(c, "SELECT count(*) FROM r", 0, NULL);
  assert_string_equal(n, "0");
  free(n);
  tryon_db_release(c);
  tryon_db_free(db);
}

/* ---------------------------------------------------------------------- transactions */

typedef struct tx_case {
  int calls;
  int fail_first; /* how many calls raise a serialization failure */
  bool swallow;   /* run a failing statement but report success */
} tx_case;

static tryon_status tx_body(tryon_db_conn *c, void *ud, tryon_err *err) {
  tx_case *tc = ud;
  tc->calls++;
  tryon_status st = tryon_db_exec(c, "INSERT INTO tx VALUES (1)", 0, NULL, NULL, err);
  if (st != TRYON_OK)
    return st;
  if (tc->calls <= tc->fail_first)
    return tryon_db_exec(c,
                         "DO $$ BEGIN RAISE EXCEPTION 'conflict'"
                         " USING ERRCODE = 'serialization_failure'; END $$",
                         0, NULL, NULL, err);
  if (tc->swallow) {
    tryon_err ignored;
    tryon_db_exec(c, "SELECT 1/0", 0, NULL, NULL, &ignored);
  }
  return TRYON_OK;
}

static void test_db__tx_commits_rolls_back_and_retries(void **state) {
  fixture *f = *state;
  static const struct {
    const char *name;
    tx_case tc;
    tryon_status want;
    int want_calls;
    const char *want_rows;
  } cases[] = {
      {"commits", {0}, TRYON_OK, 1, "1"},
      {"retries one conflict", {.fail_first = 1}, TRYON_OK, 2, "1"},
      {"gives up after three", {.fail_first = 5}, TRYON_E_SERIALIZATION, 3, "0"},
      {"detects a swallowed error", {.swallow = true}, TRYON_E_DB, 1, "0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tryon_db_conn *c = lease(f);
    exec_ok(c, "DROP TABLE IF EXISTS tx");
    exec_ok(c, "CREATE TABLE tx (x int)");
    tx_case tc = cases[i].tc;
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_db_tx(c, tx_body, &tc, &err);
    if (st != cases[i].want)
      fail_msg("%s: got %s (%s)", cases[i].name, tryon_status_name(st), err.message);
    assert_int_equal(tc.calls, cases[i].want_calls);
    char *n = tryon_test_query_value(c, "SELECT count(*) FROM tx", 0, NULL);
    assert_string_equal(n, cases[i].want_rows);
    free(n);
    assert_int_equal(PQtransactionStatus(tryon_db_conn_pg(c)), PQTRANS_IDLE);
    tryon_db_release(c);
  }
}

/* ------------------------------------------------------------------------ migrations */

/* A private copy of a migrations folder, to edit freely. */
typedef struct migdir {
  char path[256];
} migdir;

static void migdir_make(migdir *d) {
  snprintf(d->path, sizeof d->path, "/tmp/tryon-mig-XXXXXX");
  assert_non_null(mkdtemp(d->path));
}

static void migdir_write(const migdir *d, const char *name, const char *sql) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", d->path, name);
  FILE *fp = fopen(p, "w");
  assert_non_null(fp);
  fputs(sql, fp);
  fclose(fp);
}

static void migdir_remove(migdir *d) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
  assert_int_equal(system(cmd), 0);
}

static void test_db__repo_migrations_apply_once(void **state) {
  fixture *f = *state;
  char *dir = tryon_test_path("migrations");
  tryon_db_migrations rep = {0};
  tryon_err err;
  tryon_err_clear(&err);

  assert_int_equal(tryon_db_migration_status(f->db, dir, &rep, &err), TRYON_OK);
  assert_true(rep.count >= 1);
  size_t total = rep.count;
  for (size_t i = 0; i < rep.count; i++)
    assert_false(rep.items[i].applied);
  tryon_db_migrations_release(&rep);

  if (tryon_db_migrate(f->db, dir, &rep, &err) != TRYON_OK)
    fail_msg("migrate: %s", err.message);
  assert_int_equal(rep.newly_applied, total);
  tryon_db_migrations_release(&rep);

  /* Again: nothing to do, nothing changes. */
  assert_int_equal(tryon_db_migrate(f->db, dir, &rep, &err), TRYON_OK);
  assert_int_equal(rep.newly_applied, 0);
  assert_int_equal(rep.count, total);
  for (size_t i = 0; i < rep.count; i++) {
    assert_true(rep.items[i].applied);
    assert_true(rep.items[i].has_file);
    assert_int_equal(strlen(rep.items[i].checksum), 64);
  }
  tryon_db_migrations_release(&rep);

  /* The data model is there. */
  tryon_db_conn *c = lease(f);
  static const char *tables[] = {"users",         "uploads",  "generations",   "chats",
                                 "chat_history",  "payments", "credit_ledger", "wallets",
                                 "subscriptions", "jobs"};
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    const char *p[] = {tables[i]};
    char *v = tryon_test_query_value(c, "SELECT to_regclass($1) IS NOT NULL", 1, p);
    if (strcmp(v, "t") != 0)
      fail_msg("table %s is missing", tables[i]);
    free(v);
  }
  tryon_db_release(c);
  free(dir);
}

static void test_db__migrate_refuses_unknown_version(void **state) {
  fixture *f = *state;
  migdir d;
  tryon_db_migrations rep = {0};
  tryon_err err;
  tryon_err_clear(&err);
  migdir_make(&d);
  migdir_write(&d, "0001_a.sql", "CREATE TABLE a (x int);");
  assert_int_equal(tryon_db_migrate(f->db, d.path, NULL, &err), TRYON_OK);

  /* A newer program applied 0002 that this one does not know. */
  tryon_db_conn *c = lease(f);
  exec_ok(c, "INSERT INTO schema_migrations (version, name, checksum)"
             " VALUES (2, '0002_future', 'x')");
  tryon_db_release(c);
  migdir_write(&d, "0003_b.sql", "CREATE TABLE b (x int);");

  assert_int_equal(tryon_db_migrate(f->db, d.path, &rep, &err), TRYON_E_MIGRATION);
  assert_non_null(strstr(err.message, "0002_future"));
  assert_int_equal(rep.newly_applied, 0);
  tryon_db_migrations_release(&rep);
  assert_int_equal(tryon_db_migration_status(f->db, d.path, &rep, &err), TRYON_E_MIGRATION);
  assert_int_equal(rep.count, 3);
  assert_false(rep.items[1].has_file);
  tryon_db_migrations_release(&rep);

  c = lease(f);
  char *b = tryon_test_query_value(c, "SELECT to_regclass('b') IS NULL", 0, NULL);
  assert_string_equal(b, "t"); /* 0003 was not applied */
  free(b);
  tryon_db_release(c);
  migdir_remove(&d);
}

static void test_db__migrate_refuses_changed_file(void **state) {
  fixture *f = *state;
  migdir d;
  tryon_err err;
  tryon_err_clear(&err);
  migdir_make(&d);
  migdir_write(&d, "0001_a.sql", "CREATE TABLE a (x int);");
  assert_int_equal(tryon_db_migrate(f->db, d.path, NULL, &err), TRYON_OK);
  migdir_write(&d, "0001_a.sql", "CREATE TABLE a (x bigint);");
  assert_int_equal(tryon_db_migrate(f->db, d.path, NULL, &err), TRYON_E_MIGRATION);
  assert_non_null(strstr(err.message, "0001_a"));
  assert_non_null(strstr(err.message, "changed"));
  migdir_remove(&d);
}

static void test_db__migrate_refuses_bad_folders(void **state) {
  fixture *f = *state;
  static const struct {
    const char *name;
    const char *files[2];
    tryon_status want;
  } cases[] = {
      {"duplicate version", {"0001_a.sql", "0001_b.sql"}, TRYON_E_MIGRATION},
      {"malformed name", {"0001-a.sql", NULL}, TRYON_E_MIGRATION},
      {"too few digits", {"01_a.sql", NULL}, TRYON_E_MIGRATION},
      {"digits without .sql", {"0001_a.txt", NULL}, TRYON_E_MIGRATION},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    migdir d;
    tryon_err err;
    tryon_err_clear(&err);
    migdir_make(&d);
    for (int k = 0; k < 2; k++) {
      if (cases[i].files[k] != NULL)
        migdir_write(&d, cases[i].files[k], "SELECT 1;");
    }
    migdir_write(&d, "README.md", "not a migration, ignored");
    tryon_status st = tryon_db_migrate(f->db, d.path, NULL, &err);
    if (st != cases[i].want)
      fail_msg("%s: got %s", cases[i].name, tryon_status_name(st));
    migdir_remove(&d);
  }
  tryon_err err;
  assert_int_equal(tryon_db_migrate(f->db, "/nonexistent/migrations", NULL, &err), TRYON_E_IO);
}

static void test_db__failing_migration_leaves_no_trace(void **state) {
  fixture *f = *state;
  migdir d;
  tryon_db_migrations rep = {0};
  tryon_err err;
  tryon_err_clear(&err);
  migdir_make(&d);
  migdir_write(&d, "0001_ok.sql", "CREATE TABLE ok (x int);");
  migdir_write(&d, "0002_bad.sql", "CREATE TABLE half (x int);\nSELECT no_such_function();\n");
  assert_int_equal(tryon_db_migrate(f->db, d.path, &rep, &err), TRYON_E_DB);
  assert_non_null(strstr(err.message, "0002_bad"));
  assert_int_equal(rep.newly_applied, 1);
  tryon_db_migrations_release(&rep);

  tryon_db_conn *c = lease(f);
  char *half = tryon_test_query_value(c, "SELECT to_regclass('half') IS NULL", 0, NULL);
  assert_string_equal(half, "t");
  char *n = tryon_test_query_value(c,
                                   "SELECT string_agg(name, ',' ORDER BY version)"
                                   " FROM schema_migrations",
                                   0, NULL);
  assert_string_equal(n, "0001_ok");
  free(half);
  free(n);
  tryon_db_release(c);

  /* Fixed file: the run picks up where it stopped. */
  migdir_write(&d, "0002_bad.sql", "CREATE TABLE half (x int);\n");
  assert_int_equal(tryon_db_migrate(f->db, d.path, &rep, &err), TRYON_OK);
  assert_int_equal(rep.newly_applied, 1);
  tryon_db_migrations_release(&rep);
  migdir_remove(&d);
}

typedef struct mig_thread {
  tryon_db *db;
  const char *dir;
  tryon_status st;
  size_t applied;
} mig_thread;

static void *migrate_thread(void *arg) {
  mig_thread *m = arg;
  tryon_db_migrations rep = {0};
  tryon_err err;
  m->st = tryon_db_migrate(m->db, m->dir, &rep, &err);
  m->applied = rep.newly_applied;
  tryon_db_migrations_release(&rep);
  return NULL;
}

static void test_db__concurrent_migrations_apply_once(void **state) {
  fixture *f = *state;
  migdir d;
  migdir_make(&d);
  migdir_write(&d, "0001_a.sql", "CREATE TABLE a (x int); SELECT pg_sleep(0.2);");
  migdir_write(&d, "0002_b.sql", "CREATE TABLE b (x int);");
  mig_thread m[2] = {{.db = f->db, .dir = d.path}, {.db = f->db, .dir = d.path}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, migrate_thread, &m[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(m[0].st, TRYON_OK);
  assert_int_equal(m[1].st, TRYON_OK);
  assert_int_equal(m[0].applied + m[1].applied, 2);
  migdir_remove(&d);
}

static void test_db__conninfo_with_dbname(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *must_have[3];
  } cases[] = {
      {"postgresql://u:p@localhost:5433/old?sslmode=disable",
       {"dbname='new'", "port='5433'", "sslmode='disable'"}},
      {"host=/tmp dbname=old user=o'brien", {"dbname='new'", "host='/tmp'", "user='o\\'brien'"}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *out = NULL;
    tryon_err err;
    assert_int_equal(tryon_db_conninfo_with_dbname(cases[i].in, "new", &out, &err), TRYON_OK);
    for (int k = 0; k < 3; k++) {
      if (strstr(out, cases[i].must_have[k]) == NULL)
        fail_msg("%s lacks %s", out, cases[i].must_have[k]);
    }
    assert_null(strstr(out, "old"));
    free(out);
  }
  char *out = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_conninfo_with_dbname("host='unterminated", "x", &out, &err),
                   TRYON_E_INVALID);
  assert_null(out);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_db__sqlstate_maps_to_status),
      cmocka_unit_test(test_db__bad_options_are_refused),
      cmocka_unit_test(test_db__conninfo_with_dbname),
      cmocka_unit_test(test_db__unreachable_server_is_reported),
      cmocka_unit_test_setup_teardown(test_db__exec_binds_parameters_and_nulls, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__exec_errors_carry_sqlstate, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__sessions_run_in_utc, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__prepared_statements_follow_the_schema, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__pool_exhaustion_times_out, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__pool_waiter_gets_released_connection, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__pool_is_bounded_under_contention, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__reconnects_after_backend_killed, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__connection_lost_mid_lease_is_replaced, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__release_rolls_back_open_transaction, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__tx_commits_rolls_back_and_retries, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__repo_migrations_apply_once, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__migrate_refuses_unknown_version, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__migrate_refuses_changed_file, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__migrate_refuses_bad_folders, setup_empty, teardown),
      cmocka_unit_test_setup_teardown(test_db__failing_migration_leaves_no_trace, setup_empty,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_db__concurrent_migrations_apply_once, setup_empty,
                                      teardown),
  };
  return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
