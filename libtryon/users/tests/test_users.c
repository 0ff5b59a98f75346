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

typedef struct racer {
  tryon_db *db;
  int64_t id;
  int created;
  int failures;
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

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_users__sign_in_creates_once_and_refreshes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_users__long_fields_are_cut_not_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users__get_unknown_and_blocked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users__concurrent_sign_ins_make_one_row_each, setup,
                                      teardown),
  };
  return cmocka_run_group_tests_name("users", tests, NULL, NULL);
}
