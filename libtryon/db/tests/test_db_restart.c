/*
 * The pool survives a PostgreSQL restart: the next lease after the server came back
 * reconnects and the query succeeds. The test restarts the whole cluster with the
 * command in TRYON_TEST_PG_RESTART (scripts/test sets it), so ctest runs it alone
 * (RUN_SERIAL).
 */
#include <stdlib.h>
#include <string.h>

#include "testsupport.h"

static void test_db__query_succeeds_after_server_restart(void **state) {
  (void)state;
  const char *restart = getenv("TRYON_TEST_PG_RESTART");
  if (restart == NULL || restart[0] == '\0')
    fail_msg("TRYON_TEST_PG_RESTART is not set: run the tests through scripts/test");

  tryon_testdb t;
  tryon_testdb_create(&t);
  tryon_db *db = tryon_testdb_pool(&t, 2, 10000);
  tryon_db_conn *a = NULL, *b = NULL;
  tryon_err err;
  tryon_err_clear(&err);

  /* Open both slots so that both hold connections the restart will cut. */
  assert_int_equal(tryon_db_acquire(db, &a, &err), TRYON_OK);
  assert_int_equal(tryon_db_acquire(db, &b, &err), TRYON_OK);
  char *before = tryon_test_query_value(a, "SELECT pg_postmaster_start_time()::text", 0, NULL);
  tryon_db_release(a);
  tryon_db_release(b);

  if (system(restart) != 0)
    fail_msg("restart command failed: %s", restart);

  for (int i = 0; i < 2; i++) {
    tryon_db_conn *c = NULL;
    if (tryon_db_acquire(db, &c, &err) != TRYON_OK)
      fail_msg("acquire after restart: %s", tryon_err_message(&err));
    char *after = tryon_test_query_value(c, "SELECT pg_postmaster_start_time()::text", 0, NULL);
    assert_string_not_equal(before, after); /* it really was a new server */
    free(after);
    /* Keep the first lease so the second takes the other slot. */
    if (i == 0)
      a = c;
    else
      b = c;
  }
  tryon_db_release(a);
  tryon_db_release(b);
  tryon_db_stats s;
  tryon_db_stats_get(db, &s);
  assert_int_equal(s.reconnects, 2);
  free(before);
  tryon_db_free(db);
  tryon_testdb_drop(&t);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_db__query_succeeds_after_server_restart),
  };
  return cmocka_run_group_tests_name("db_restart", tests, NULL, NULL);
}
