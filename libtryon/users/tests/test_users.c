/*
 * The users module against a real PostgreSQL (migrated scratch database).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/users.h>

#include "testsupport.h"

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_testdb_create_migrated(&f->t);
  f->db = tryon_testdb_pool(&f->t, 4, 10000);
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

static tryon_tg_user tg_user(int64_t id, const char *first, const char *username) {
  tryon_tg_user u;
  memset(&u, 0, sizeof u);
  u.id = id;
  snprintf(u.first_name, sizeof u.first_name, "%s", first);
  snprintf(u.username, sizeof u.username, "%s", username);
  snprintf(u.language_code, sizeof u.language_code, "ru");
  return u;
}

static void test_users__sign_in_creates_once_and_refreshes(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u1, u2, got;
  bool created = false;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);

  tryon_tg_user tg = tg_user(5000000001LL, "Анна", "anna");
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u1, &created, &err), TRYON_OK);
  assert_true(created);
  assert_true(u1.id > 0);
  assert_int_equal(u1.telegram_id, 5000000001LL);
  assert_string_equal(u1.first_name, "Анна");
  assert_string_equal(u1.last_name, "");
  assert_false(u1.blocked);
  assert_true(u1.last_login_at_ms > 0);

  /* Second sign-in with a new name and language: same row, fields refreshed. */
  snprintf(tg.first_name, sizeof tg.first_name, "Anna 🌸");
  snprintf(tg.language_code, sizeof tg.language_code, "en");
  tg.is_premium = true;
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u2, &created, &err), TRYON_OK);
  assert_false(created);
  assert_int_equal(u2.id, u1.id);
  assert_string_equal(u2.first_name, "Anna 🌸");
  assert_string_equal(u2.language_code, "en");
  assert_true(u2.is_premium);
  assert_int_equal(u2.created_at_ms, u1.created_at_ms);

  assert_int_equal(tryon_users_get(c, u1.id, &got, &err), TRYON_OK);
  assert_string_equal(got.first_name, "Anna 🌸");
  char *n = tryon_test_query_value(c, "SELECT count(*) FROM users", 0, NULL);
  assert_string_equal(n, "1");
  free(n);
  tryon_db_release(c);
}

static void test_users__long_fields_are_cut_not_refused(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  tryon_tg_user tg = tg_user(42, "", "");
  /* 128 two-byte characters fill first_name's 256 bytes; a 128-byte username passes
   * the schema's 64-character limit. */
  for (int i = 0; i < 128; i++)
    memcpy(tg.first_name + 2 * i, "я", 2);
  memset(tg.username, 'u', sizeof tg.username - 1);
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u, NULL, &err), TRYON_OK);
  assert_int_equal(strlen(u.first_name), 256);
  assert_int_equal(strlen(u.username), 64);
  /* Another writer may store 256 three-byte characters: read back, the name is cut at a
   * character boundary (255 bytes), never inside one. */
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)u.id);
  const char *p[] = {id};
  free(tryon_test_query_value(c,
                              "UPDATE users SET first_name = repeat('中', 200)"
                              " WHERE id = $1::bigint RETURNING id",
                              1, p));
  assert_int_equal(tryon_users_get(c, u.id, &u, &err), TRYON_OK);
  assert_int_equal(strlen(u.first_name), 255);
  assert_int_equal(memcmp(u.first_name + 252, "中", 3), 0);
  tryon_db_release(c);
}

static void test_users__get_unknown_and_blocked(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, 987654, &u, &err), TRYON_E_NOT_FOUND);

  tryon_tg_user tg = tg_user(77, "Blocked", "");
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u, NULL, &err), TRYON_OK);
  char id[24];
  snprintf(id, sizeof id, "%lld", (long long)u.id);
  const char *p[] = {id};
  free(tryon_test_query_value(c,
                              "UPDATE users SET blocked = true, blocked_at = now() WHERE id = $1"
                              " RETURNING id",
                              1, p));
  /* Sign-in still returns the row, marked blocked: refusing is the caller's call. */
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u, NULL, &err), TRYON_OK);
  assert_true(u.blocked);
  assert_int_equal(tryon_users_get(c, u.id, &u, &err), TRYON_OK);
  assert_true(u.blocked);
  tryon_tg_user bad = tg_user(0, "x", "");
  assert_int_equal(tryon_users_upsert_telegram(c, &bad, &u, NULL, &err), TRYON_E_INVALID);
  tryon_db_release(c);
}

static void test_users__get_by_telegram_finds_and_misses(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u, got;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  tryon_tg_user tg = tg_user(6000000001LL, "Ivan", "ivan");
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &u, NULL, &err), TRYON_OK);

  assert_int_equal(tryon_users_get_by_telegram(c, 6000000001LL, &got, &err), TRYON_OK);
  assert_int_equal(got.id, u.id);
  assert_string_equal(got.username, "ivan");
  assert_int_equal(tryon_users_get_by_telegram(c, 6000000002LL, &got, &err), TRYON_E_NOT_FOUND);
  assert_non_null(strstr(err.message, "6000000002"));
  assert_int_equal(tryon_users_get_by_telegram(c, 0, &got, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_users_get_by_telegram(c, -5, &got, &err), TRYON_E_INVALID);
  tryon_db_release(c);
}

static void test_users__ensure_telegram_creates_once_and_keeps_profiles(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u1, u2, signed_in;
  bool created = false;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);

  /* Unknown: a bare row, never signed in. */
  assert_int_equal(tryon_users_ensure_telegram(c, 7000000001LL, &u1, &created, &err), TRYON_OK);
  assert_true(created);
  assert_true(u1.id > 0);
  assert_int_equal(u1.telegram_id, 7000000001LL);
  assert_string_equal(u1.first_name, "");
  assert_string_equal(u1.username, "");
  assert_int_equal(u1.last_login_at_ms, 0);
  assert_false(u1.blocked);
  assert_true(u1.created_at_ms > 0);

  /* Known: the same row, not created again. */
  assert_int_equal(tryon_users_ensure_telegram(c, 7000000001LL, &u2, &created, &err), TRYON_OK);
  assert_false(created);
  assert_int_equal(u2.id, u1.id);
  assert_int_equal(tryon_users_ensure_telegram(c, 7000000001LL, &u2, NULL, &err), TRYON_OK);

  /* The first sign-in fills the names into the operator-made row... */
  tryon_tg_user tg = tg_user(7000000001LL, "Olga", "olga");
  assert_int_equal(tryon_users_upsert_telegram(c, &tg, &signed_in, &created, &err), TRYON_OK);
  assert_false(created);
  assert_int_equal(signed_in.id, u1.id);
  assert_true(signed_in.last_login_at_ms > 0);
  /* ...and a later ensure leaves them as they are. */
  assert_int_equal(tryon_users_ensure_telegram(c, 7000000001LL, &u2, &created, &err), TRYON_OK);
  assert_false(created);
  assert_string_equal(u2.first_name, "Olga");
  assert_string_equal(u2.username, "olga");
  assert_string_equal(u2.language_code, "ru");
  assert_int_equal(u2.last_login_at_ms, signed_in.last_login_at_ms);

  assert_int_equal(tryon_users_ensure_telegram(c, 0, &u2, &created, &err), TRYON_E_INVALID);
  char *n = tryon_test_query_value(c, "SELECT count(*) FROM users", 0, NULL);
  assert_string_equal(n, "1");
  free(n);
  tryon_db_release(c);
}

static void test_users__set_blocked_keeps_the_schema_checks(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_user u, got;
  tryon_err_clear(&err);
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  assert_int_equal(tryon_users_ensure_telegram(c, 88, &u, NULL, &err), TRYON_OK);

  /* Block with a reason. */
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, "spam", &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_true(got.blocked);
  assert_string_equal(got.blocked_reason, "spam");
  assert_true(got.blocked_at_ms > 0);
  int64_t since = got.blocked_at_ms;

  /* Again, with another reason: still blocked since the first time, reason replaced. */
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, "chargeback", &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_true(got.blocked);
  assert_string_equal(got.blocked_reason, "chargeback");
  assert_int_equal(got.blocked_at_ms, since);

  /* Unblock: reason and time cleared (the reason argument is ignored); twice is fine. */
  assert_int_equal(tryon_users_set_blocked(c, u.id, false, "ignored", &err), TRYON_OK);
  assert_int_equal(tryon_users_set_blocked(c, u.id, false, NULL, &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_false(got.blocked);
  assert_string_equal(got.blocked_reason, "");
  assert_int_equal(got.blocked_at_ms, 0);
  char *nulls = tryon_test_query_value(
      c, "SELECT count(*) FROM users WHERE blocked_at IS NULL AND blocked_reason IS NULL", 0, NULL);
  assert_string_equal(nulls, "1");
  free(nulls);

  /* A fresh block without a reason stores none; blocking again with NULL keeps the
   * reason, with "" clears it. */
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, NULL, &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_true(got.blocked);
  assert_string_equal(got.blocked_reason, "");
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, "fraud", &err), TRYON_OK);
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, NULL, &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_string_equal(got.blocked_reason, "fraud");
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, "", &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_true(got.blocked);
  assert_string_equal(got.blocked_reason, "");
  char *nulls2 =
      tryon_test_query_value(c, "SELECT count(*) FROM users WHERE blocked_reason IS NULL", 0, NULL);
  assert_string_equal(nulls2, "1");
  free(nulls2);

  /* 1000 characters (3 bytes each) fit; 1001 are refused and change nothing. */
  char *reason = malloc(3 * 1001 + 1);
  assert_non_null(reason);
  for (int i = 0; i < 1001; i++)
    memcpy(reason + 3 * i, "中", 3);
  reason[3 * 1001] = '\0';
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, reason, &err), TRYON_E_INVALID);
  reason[3 * 1000] = '\0';
  assert_int_equal(tryon_users_set_blocked(c, u.id, true, reason, &err), TRYON_OK);
  assert_int_equal(tryon_users_get(c, u.id, &got, &err), TRYON_OK);
  assert_string_equal(got.blocked_reason, reason);
  free(reason);

  assert_int_equal(tryon_users_set_blocked(c, u.id + 1000, true, "x", &err), TRYON_E_NOT_FOUND);
  assert_int_equal(tryon_users_set_blocked(c, u.id + 1000, false, NULL, &err), TRYON_E_NOT_FOUND);
  tryon_db_release(c);
}

typedef struct racer {
  tryon_db *db;
  int64_t id;
  int created;
  int failures;
  int threads;
} racer;

static void *race(void *arg) {
  racer *r = arg;
  for (int i = 0; i < 25; i++) {
    tryon_db_conn *c = NULL;
    tryon_user u;
    bool created = false;
    tryon_err err;
    tryon_tg_user tg = tg_user(900 + i, "Racer", "");
    if (tryon_db_acquire(r->db, &c, &err) != TRYON_OK ||
        tryon_users_upsert_telegram(c, &tg, &u, &created, &err) != TRYON_OK)
      __atomic_add_fetch(&r->failures, 1, __ATOMIC_SEQ_CST);
    else if (created)
      __atomic_add_fetch(&r->created, 1, __ATOMIC_SEQ_CST);
    tryon_db_release(c);
  }
  return NULL;
}

static void test_users__concurrent_sign_ins_make_one_row_each(void **state) {
  fixture *f = *state;
  racer r = {.db = f->db};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, race, &r), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(r.failures, 0);
  assert_int_equal(r.created, 25); /* each of the 25 people created exactly once */
  tryon_db_conn *c = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  char *n =
      tryon_test_query_value(c, "SELECT count(*) FROM users WHERE first_name = 'Racer'", 0, NULL);
  assert_string_equal(n, "25");
  free(n);
  tryon_db_release(c);
}

/* Half the threads sign people in, half ensure them as an operator would. */
static void *race_mixed(void *arg) {
  racer *r = arg;
  bool ensure = __atomic_fetch_add(&r->threads, 1, __ATOMIC_SEQ_CST) % 2 == 0;
  for (int i = 0; i < 25; i++) {
    tryon_db_conn *c = NULL;
    tryon_user u;
    bool created = false;
    tryon_err err;
    tryon_tg_user tg = tg_user(2000 + i, "Mixed", "");
    tryon_status st = tryon_db_acquire(r->db, &c, &err);
    if (st == TRYON_OK)
      st = ensure ? tryon_users_ensure_telegram(c, tg.id, &u, &created, &err)
                  : tryon_users_upsert_telegram(c, &tg, &u, &created, &err);
    if (st != TRYON_OK || u.telegram_id != tg.id)
      __atomic_add_fetch(&r->failures, 1, __ATOMIC_SEQ_CST);
    else if (created)
      __atomic_add_fetch(&r->created, 1, __ATOMIC_SEQ_CST);
    tryon_db_release(c);
  }
  return NULL;
}

static void test_users__concurrent_ensure_and_sign_in_make_one_row_each(void **state) {
  fixture *f = *state;
  racer r = {.db = f->db};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, race_mixed, &r), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(r.failures, 0);
  assert_int_equal(r.created, 25);
  tryon_db_conn *c = NULL;
  tryon_err err;
  assert_int_equal(tryon_db_acquire(f->db, &c, &err), TRYON_OK);
  char *n = tryon_test_query_value(
      c, "SELECT count(*) FROM users WHERE telegram_id BETWEEN 2000 AND 2024", 0, NULL);
  assert_string_equal(n, "25");
  free(n);
  tryon_db_release(c);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_users__sign_in_creates_once_and_refreshes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_users__long_fields_are_cut_not_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users__get_unknown_and_blocked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users__concurrent_sign_ins_make_one_row_each, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_users__get_by_telegram_finds_and_misses, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_users__ensure_telegram_creates_once_and_keeps_profiles,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_users__set_blocked_keeps_the_schema_checks, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_users__concurrent_ensure_and_sign_in_make_one_row_each,
                                      setup, teardown),
  };
  return cmocka_run_group_tests_name("users", tests, NULL, NULL);
}
