#include "testsupport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *tryon_test_source_dir(void) {
  const char *d = getenv("TRYON_SOURCE_DIR");
  if (d == NULL || d[0] == '\0')
    fail_msg("TRYON_SOURCE_DIR is not set: run the tests through ctest (scripts/test)");
  return d;
}

char *tryon_test_path(const char *rel) {
  const char *root = tryon_test_source_dir();
  size_t n = strlen(root) + strlen(rel) + 2;
  char *p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/%s", root, rel);
  return p;
}

static PGconn *admin_connect(const tryon_testdb *t) {
  PGconn *pg = PQconnectdb(t->admin);
  if (PQstatus(pg) != CONNECTION_OK)
    fail_msg("cannot connect to the test cluster: %s", PQerrorMessage(pg));
  return pg;
}

char *tryon_testdb_admin_query(const tryon_testdb *t, const char *sql, int nparams,
                               const char *const *params) {
  PGconn *pg = admin_connect(t);
  PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
  ExecStatusType es = PQresultStatus(res);
  if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
    fail_msg("admin query failed: %s: %s", sql, PQerrorMessage(pg));
  char *v = NULL;
  if (es == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
    v = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  PQfinish(pg);
  return v;
}

/* Runs `fmt` with the scratch database's quoted name in place of its one %s. The name
 * is ours (digits and hex), but it is quoted properly all the same. */
static void admin_exec_on_db(const tryon_testdb *t, const char *fmt) {
  PGconn *pg = admin_connect(t);
  char *ident = PQescapeIdentifier(pg, t->name, strlen(t->name));
  const char *pct = strstr(fmt, "%s");
  char sql[256];
  snprintf(sql, sizeof sql, "%.*s%s%s", (int)(pct - fmt), fmt, ident, pct + 2);
  PQfreemem(ident);
  /* A background process of the server's own (an autovacuum worker) may hold the
   * database for a moment, and a non-superuser cannot make it go: try again briefly. */
  for (int attempt = 0;; attempt++) {
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (ok)
      break;
    if (attempt == 50)
      fail_msg("%s: %s", sql, PQerrorMessage(pg));
    usleep(100 * 1000);
  }
  PQfinish(pg);
}

void tryon_testdb_create(tryon_testdb *t) {
  const char *admin = getenv("TRYON_TEST_DATABASE_URL");
  tryon_uuid u;
  char ustr[TRYON_UUID_STR_LEN];
  tryon_err err;

  memset(t, 0, sizeof *t);
  if (admin == NULL || admin[0] == '\0')
    fail_msg("TRYON_TEST_DATABASE_URL is not set: run the tests through scripts/test, which "
             "starts the private PostgreSQL cluster and sets it");
  t->admin = strdup(admin);
  assert_int_equal(tryon_uuid_v4(&u), TRYON_OK);
  tryon_uuid_format(&u, ustr);
  snprintf(t->name, sizeof t->name, "tryon_t_%ld_%.8s", (long)getpid(), ustr);

  admin_exec_on_db(t, "CREATE DATABASE %s");

  tryon_err_clear(&err);
  if (tryon_db_conninfo_with_dbname(admin, t->name, &t->conninfo, &err) != TRYON_OK)
    fail_msg("bad TRYON_TEST_DATABASE_URL: %s", tryon_err_message(&err));
}

tryon_db *tryon_testdb_pool(const tryon_testdb *t, int size, int acquire_timeout_ms) {
  tryon_db *db = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_db_options opt = {.conninfo = t->conninfo,
                          .pool_size = size,
                          .acquire_timeout_ms = acquire_timeout_ms,
                          .application_name = "tryon-test"};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK)
    fail_msg("cannot create a pool: %s", tryon_err_message(&err));
  return db;
}

void tryon_testdb_open(tryon_testdb *t, int pool_size, int acquire_timeout_ms, tryon_db **db,
                       tryon_db_conn **c) {
  tryon_err err;
  tryon_err_clear(&err);
  tryon_testdb_create_migrated(t);
  *db = tryon_testdb_pool(t, pool_size, acquire_timeout_ms);
  if (tryon_db_acquire(*db, c, &err) != TRYON_OK)
    fail_msg("acquire: %s", tryon_err_message(&err));
}

void tryon_testdb_close(tryon_testdb *t, tryon_db *db, tryon_db_conn *c) {
  tryon_db_release(c);
  tryon_db_free(db);
  tryon_testdb_drop(t);
}

void tryon_testdb_create_migrated(tryon_testdb *t) {
  tryon_err err;
  tryon_testdb_create(t);
  tryon_db *db = tryon_testdb_pool(t, 1, 10000);
  char *dir = tryon_test_path("migrations");
  tryon_err_clear(&err);
  if (tryon_db_migrate(db, dir, NULL, &err) != TRYON_OK)
    fail_msg("cannot migrate the scratch database: %s", tryon_err_message(&err));
  free(dir);
  tryon_db_free(db);
}

void tryon_testdb_drop(tryon_testdb *t) {
  if (t->admin != NULL && t->name[0] != '\0')
    admin_exec_on_db(t, "DROP DATABASE IF EXISTS %s WITH (FORCE)");
  free(t->admin);
  free(t->conninfo);
  memset(t, 0, sizeof *t);
}

char *tryon_test_query_value(tryon_db_conn *c, const char *sql, int nparams,
                             const char *const *params) {
  PGresult *res = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_db_exec(c, sql, nparams, params, &res, &err) != TRYON_OK)
    fail_msg("query failed: %s: %s", sql, tryon_err_message(&err));
  char *v = NULL;
  if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
    v = strdup(PQgetvalue(res, 0, 0));
  PQclear(res);
  return v;
}

static void stderr_sink(tryon_log_level level, const char *line, void *ud) {
  (void)level;
  (void)ud;
  fprintf(stderr, "%s\n", line);
}

void tryon_test_log_init(void) {
  const char *v = getenv("TRYON_TEST_LOG");
  if (v != NULL && v[0] != '\0') {
    tryon_log_set_level(TRYON_LOG_DEBUG);
    tryon_log_set_sink(stderr_sink, NULL);
  }
}

void tryon_test_expect_status(tryon_status got, tryon_status want, const tryon_err *err,
                              const char *ctx, int line) {
  if (got != want)
    fail_msg("line %d: %s: got %s, want %s (%s)", line, ctx, tryon_status_name(got),
             tryon_status_name(want), err != NULL ? err->message : "");
}

int tryon_test_silent_socket(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 8), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}
