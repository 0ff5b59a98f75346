/*
 * tryon-worker as a process: it refuses a database whose schema is behind, sweeps
 * wallets whose period ended (without anyone reading them), and stops cleanly on
 * SIGTERM.
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsupport.h"

static pid_t spawn_worker(const tryon_testdb *t) {
  const char *bin = getenv("TRYON_WORKER_BIN");
  if (bin == NULL)
    fail_msg("TRYON_WORKER_BIN is not set: run through ctest");
  char db[1024];
  snprintf(db, sizeof db, "TRYON_DATABASE_URL=%s", t->conninfo);
  char *env[] = {db, "TRYON_ENV_FILE=/dev/null", "TRYON_LOG_LEVEL=warn",
                 "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1", NULL};
  char *argv[] = {(char *)bin, NULL};
  pid_t pid = 0;
  if (posix_spawn(&pid, bin, NULL, NULL, argv, env) != 0)
    fail_msg("cannot start %s", bin);
  return pid;
}

static int stop(pid_t pid) {
  int status = 0;
  kill(pid, SIGTERM);
  waitpid(pid, &status, 0);
  return status;
}

static void test_worker__sweeps_ended_periods_and_stops_cleanly(void **state) {
  (void)state;
  tryon_testdb t;
  tryon_testdb_create_migrated(&t);
  tryon_db *db = tryon_testdb_pool(&t, 1, 5000);
  tryon_db_conn *c = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_acquire(db, &c, &err), TRYON_OK);
  /* A wallet whose free month ended long ago, never read since. */
  assert_int_equal(tryon_db_exec_script(c,
                                        "INSERT INTO users (telegram_id) VALUES (7070);"
                                        "INSERT INTO wallets (user_id, period_source, period_key,"
                                        " period_ends_at) SELECT id, 'free', '2020-01',"
                                        " '2020-01-31 21:00Z' FROM users",
                                        &err),
                   TRYON_OK);
  pid_t pid = spawn_worker(&t);
  char *key = NULL;
  for (int i = 0; i < 200; i++) { /* the sweep runs at start-up, then every minute */
    free(key);
    key = tryon_test_query_value(c, "SELECT period_key FROM wallets", 0, NULL);
    if (key != NULL && strcmp(key, "2020-01") != 0)
      break;
    usleep(50 * 1000);
  }
  if (key == NULL || strcmp(key, "2020-01") == 0)
    fail_msg("the worker did not bring the wallet up to date (period_key %s)", key);
  free(key);
  char *grants = tryon_test_query_value(
      c, "SELECT count(*) FROM credit_ledger WHERE reason = 'free_grant'", 0, NULL);
  assert_string_equal(grants, "1");
  free(grants);
  int status = stop(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the worker did not stop cleanly (status %d)", status);
  tryon_db_release(c);
  tryon_db_free(db);
  tryon_testdb_drop(&t);
}

static void test_worker__refuses_a_schema_behind(void **state) {
  (void)state;
  tryon_testdb t;
  tryon_testdb_create(&t); /* no migrations applied */
  pid_t pid = spawn_worker(&t);
  int status = 0;
  for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
    usleep(50 * 1000);
  if (waitpid(pid, &status, WNOHANG) == 0 && kill(pid, 0) == 0) {
    stop(pid);
    fail_msg("the worker ran on a database without the schema");
  }
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  tryon_testdb_drop(&t);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_worker__sweeps_ended_periods_and_stops_cleanly),
      cmocka_unit_test(test_worker__refuses_a_schema_behind),
  };
  return cmocka_run_group_tests_name("worker", tests, NULL, NULL);
}
