/*
 * The data model's guarantees, checked against the migrated schema in a real
 * PostgreSQL: what the database itself refuses, whatever the application does.
 * Each case runs in a transaction that is rolled back, over one set of seed rows.
 */
#include <stdlib.h>
#include <string.h>

#include "testsupport.h"

static const char seed_sql[] =
    "INSERT INTO users (telegram_id, first_name) VALUES (1001, 'Ann'), (1002, 'Bob');"
    "INSERT INTO wallets (user_id) SELECT id FROM users;"
    "INSERT INTO uploads (id, user_id, origin, mime, width, height, bytes, sha256) VALUES"
    " ('00000000-0000-4000-8000-0000000000a1', (SELECT id FROM users WHERE telegram_id = 1001),"
    "  'upload', 'image/jpeg', 800, 1200, 1000, sha256('a1')),"
    " ('00000000-0000-4000-8000-0000000000a2', (SELECT id FROM users WHERE telegram_id = 1001),"
    "  'upload', 'image/png', 600, 600, 2000, sha256('a2')),"
    " ('00000000-0000-4000-8000-0000000000b1', (SELECT id FROM users WHERE telegram_id = 1002),"
    "  'upload', 'image/jpeg', 640, 480, 3000, sha256('b1'));"
    "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
    " pack_after, actor) VALUES ((SELECT id FROM users WHERE telegram_id = 1001),"
    " 'grant:seed', 'grant', 5, 0, 5, 'test');"
    "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
    " pack_after, job_id) VALUES ((SELECT id FROM users WHERE telegram_id = 1001),"
    " 'job:00000000-0000-4000-8000-00000000000j:charge', 'charge', -2, 0, 3,"
    " '00000000-0000-4000-8000-00000000000f');"
    "UPDATE wallets SET pack_credits = 3 WHERE user_id = (SELECT id FROM users WHERE"
    " telegram_id = 1001);"
    "INSERT INTO chats (id, user_id, current_upload_id) VALUES"
    " ('00000000-0000-4000-8000-0000000000c1', (SELECT id FROM users WHERE telegram_id = 1001),"
    "  '00000000-0000-4000-8000-0000000000a1');";

#define ANN "(SELECT id FROM users WHERE telegram_id = 1001)"
#define CHARGE_ID "(SELECT id FROM credit_ledger WHERE reason = 'charge')"
#define REFUND(key, n)                                                                     \
  "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after," \
  " pack_after, refund_of) VALUES (" ANN ", '" key "', 'refund', " #n ", 0, 5, " CHARGE_ID ")"

typedef struct schema_case {
  const char *name;
  const char *setup; /* must succeed first (NULL: none) */
  const char *sql;   /* must fail */
  const char *sqlstate;
} schema_case;

static const schema_case cases[] = {
    {"wallet balance never negative", NULL,
     "UPDATE wallets SET pack_credits = pack_credits - 4 WHERE user_id = " ANN, "23514"},
    {"period credits never negative", NULL,
     "UPDATE wallets SET period_credits = -1 WHERE user_id = " ANN, "23514"},
    {"ledger idempotency key is unique", NULL,
     "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
     " pack_after) VALUES (" ANN ", 'grant:seed', 'grant', 1, 0, 6)",
     "23505"},
    {"ledger balance after never negative", NULL,
     "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
     " pack_after) VALUES (" ANN ", 'revoke:x', 'revoke', -9, 0, -6)",
     "23514"},
    {"ledger refuses UPDATE", NULL, "UPDATE credit_ledger SET note = 'edited'", "23000"},
    {"ledger refuses DELETE", NULL, "DELETE FROM credit_ledger", "23000"},
    {"ledger refuses TRUNCATE", NULL, "TRUNCATE credit_ledger", "23000"},
    {"a charge cannot add credits", NULL,
     "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
     " pack_after, job_id) VALUES (" ANN ", 'job:k:charge', 'charge', 2, 0, 5,"
     " '00000000-0000-4000-8000-0000000000ff')",
     "23514"},
    {"one charge per job", NULL,
     "INSERT INTO credit_ledger (user_id, idempotency_key, reason, delta_pack, period_after,"
     " pack_after, job_id) VALUES (" ANN ", 'job:other:charge', 'charge', -1, 0, 2,"
     " '00000000-0000-4000-8000-00000000000f')",
     "23505"},
    {"a charge is refunded once", REFUND("job:j:refund", 2), REFUND("job:j:refund2", 2), "23505"},
    {"a refund returns no more than the charge", NULL, REFUND("job:j:refund", 3), "23514"},
    {"one active subscription per user",
     "INSERT INTO subscriptions (user_id, plan, status, starts_at, ends_at, credits)"
     " VALUES (" ANN ", 'start', 'active', now(), now() + interval '30 days', 50)",
     "INSERT INTO subscriptions (user_id, plan, status, starts_at, ends_at, credits)"
     " VALUES (" ANN ", 'pro', 'active', now(), now() + interval '30 days', 150)",
     "23505"},
    {"chat history keeps at most 10 messages", NULL,
     "INSERT INTO chat_history (chat_id, messages) SELECT"
     " '00000000-0000-4000-8000-0000000000c1', jsonb_agg(jsonb_build_object('role', 'user',"
     " 'text', i)) FROM generate_series(1, 11) i",
     "23514"},
    {"a try-on needs its category", NULL,
     "INSERT INTO generations (user_id, kind, prompt, prompt_version, person_upload_id,"
     " item_upload_id, cost) VALUES (" ANN ", 'tryon', 'p', 'v1',"
     " '00000000-0000-4000-8000-0000000000a1', '00000000-0000-4000-8000-0000000000a2', 2)",
     "23514"},
    {"a generation cannot use another user's photo", NULL,
     "INSERT INTO generations (user_id, kind, category, prompt, prompt_version,"
     " person_upload_id, item_upload_id, cost) VALUES (" ANN ", 'tryon', 'top', 'p', 'v1',"
     " '00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000a2', 2)",
     "23503"},
    {"payment figures add up", NULL,
     "INSERT INTO payments (user_id, idempotence_key, product, status, amount_kopecks,"
     " fee_kopecks, tax_kopecks, net_kopecks, succeeded_at) VALUES (" ANN ", 'k1', 'start',"
     " 'succeeded', 29900, 837, 1196, 27868, now())",
     "23514"},
    {"payment amounts are positive", NULL,
     "INSERT INTO payments (user_id, idempotence_key, product, amount_kopecks)"
     " VALUES (" ANN ", 'k2', 'pack', 0)",
     "23514"},
    {"only JPEG and PNG are stored", NULL,
     "INSERT INTO uploads (user_id, origin, mime, width, height, bytes, sha256)"
     " VALUES (" ANN ", 'upload', 'image/gif', 1, 1, 1, sha256('g'))",
     "23514"},
    {"telegram id is unique", NULL,
     "INSERT INTO users (telegram_id, first_name) VALUES (1001, 'Ann again')", "23505"},
    {"a user with money records cannot be deleted", NULL,
     "DELETE FROM users WHERE telegram_id = 1001", "23503"},
    {"a running job holds a lease", NULL,
     "INSERT INTO jobs (kind, state, attempts) VALUES ('noop', 'running', 1)", "23514"},
    {"job idempotency key is unique",
     "INSERT INTO jobs (kind, idempotency_key) VALUES ('noop', 'once')",
     "INSERT INTO jobs (kind, idempotency_key) VALUES ('noop', 'once')", "23505"},
};

static void exec_or_fail(tryon_db_conn *c, const char *sql, const char *what) {
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_db_exec_script(c, sql, &err) != TRYON_OK)
    fail_msg("%s: %s", what, tryon_err_message(&err));
}

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
} fixture;

/* Setup and teardown run even when a case fails, so nothing leaks past a failure. */
static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_testdb_open(&f->t, 1, 5000, &f->db, &f->c);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

static void test_schema__refuses_what_breaks_the_invariants(void **state) {
  fixture *f = *state;
  tryon_db_conn *c = f->c;
  tryon_err err;
  tryon_err_clear(&err);
  exec_or_fail(c, seed_sql, "seed");

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const schema_case *k = &cases[i];
    exec_or_fail(c, "BEGIN", k->name);
    if (k->setup != NULL)
      exec_or_fail(c, k->setup, k->name);
    tryon_err_clear(&err);
    tryon_status st = tryon_db_exec(c, k->sql, 0, NULL, NULL, &err);
    if (st == TRYON_OK)
      fail_msg("%s: the database accepted it", k->name);
    if (strcmp(err.sqlstate, k->sqlstate) != 0)
      fail_msg("%s: SQLSTATE %s (%s), want %s", k->name, err.sqlstate, err.message, k->sqlstate);
    exec_or_fail(c, "ROLLBACK", k->name);
  }

  /* And what is right goes through: an exact refund, a valid try-on, a full history. */
  exec_or_fail(
      c,
      "BEGIN;" REFUND("job:j:refund",
                      2) ";"
                         "INSERT INTO generations (user_id, kind, category, prompt, prompt_version,"
                         " person_upload_id, item_upload_id, cost) VALUES (" ANN ", 'tryon', 'top',"
                         " 'p', 'v1', '00000000-0000-4000-8000-0000000000a1',"
                         " '00000000-0000-4000-8000-0000000000a2', 2);"
                         "INSERT INTO chat_history (chat_id, messages) SELECT"
                         " '00000000-0000-4000-8000-0000000000c1', jsonb_agg(jsonb_build_object("
                         "'role', 'user', 'text', i)) FROM generate_series(1, 10) i;"
                         "COMMIT",
      "valid rows");
  char *n = tryon_test_query_value(c, "SELECT count(*) FROM credit_ledger", 0, NULL);
  assert_string_equal(n, "3");
  free(n);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_schema__refuses_what_breaks_the_invariants, setup,
                                      teardown),
  };
  return cmocka_run_group_tests_name("schema", tests, NULL, NULL);
}
