/*
 * bench_billing - credit spends per second: on one hot user (every spend waits for the
 * same wallet lock) and on many users (spends spread over 1000 wallets), with 1, 2 and
 * 4 threads, each on its own connection. Needs a migrated database (argv[1]);
 * bench/bench_billing.sh makes one. Prints figures; asserts nothing.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tryon/billing.h>

enum { USERS = 1000, SPENDS = 4000 };

typedef struct ctx {
  tryon_db *db;
  int64_t first_user;
  int users; /* 1: the hot user */
  int n;
  int thread;
  int failures;
} ctx;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *spender(void *arg) {
  ctx *x = arg;
  tryon_db_conn *c = NULL;
  tryon_err err;
  if (tryon_db_acquire(x->db, &c, &err) != TRYON_OK) {
    x->failures = x->n;
    return NULL;
  }
  for (int i = 0; i < x->n; i++) {
    tryon_uuid u;
    char job[TRYON_UUID_STR_LEN], key[64];
    tryon_billing_result r;
    tryon_uuid_v4(&u);
    tryon_uuid_format(&u, job);
    snprintf(key, sizeof key, "job:%s:charge", job);
    int64_t user = x->first_user + (x->thread * 7919 + i) % x->users;
    if (tryon_billing_spend(c, user, 1, key, job, tryon_clock_now_ms(NULL), false, &r, NULL,
                            &err) != TRYON_OK)
      x->failures++;
  }
  tryon_db_release(c);
  return NULL;
}

static void run(tryon_db *db, int64_t first_user, int users, int threads) {
  pthread_t th[4];
  ctx x[4];
  int64_t t0 = now_ns();
  for (int i = 0; i < threads; i++) {
    x[i] = (ctx){
        .db = db, .first_user = first_user, .users = users, .n = SPENDS / threads, .thread = i};
    pthread_create(&th[i], NULL, spender, &x[i]);
  }
  int failures = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    failures += x[i].failures;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("spends, %-9s %d thread(s): %7.0f /s (%d failures)\n",
         users == 1 ? "hot user," : "1000 users,", threads, SPENDS / secs, failures);
}

int main(int argc, char **argv) {
  tryon_db *db = NULL;
  tryon_db_conn *c = NULL;
  PGresult *res = NULL;
  tryon_err err;
  int rc = 1;

  if (argc != 2) {
    fprintf(stderr, "usage: bench_billing CONNINFO (a migrated database)\n");
    return 2;
  }
  tryon_db_options opt = {.conninfo = argv[1], .pool_size = 4, .acquire_timeout_ms = 10000};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK || tryon_db_acquire(db, &c, &err) != TRYON_OK)
    goto fail;
  if (tryon_db_exec(c,
                    "INSERT INTO users (telegram_id, first_name) SELECT 900000000 + g, 'Bench'"
                    " FROM generate_series(1, 1000) g RETURNING id",
                    0, NULL, &res, &err) != TRYON_OK)
    goto fail;
  int64_t first = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  for (int i = 0; i < USERS; i++) {
    char key[64];
    snprintf(key, sizeof key, "grant:bench-%d", i);
    /* Enough for every run below to succeed on any user. */
    if (tryon_billing_grant(c, first + i, i == 0 ? 1000000 : 100000, key, "bench", NULL,
                            tryon_clock_now_ms(NULL), NULL, &err) != TRYON_OK)
      goto fail;
  }
  tryon_db_release(c);
  c = NULL;
  for (int t = 1; t <= 4; t *= 2)
    run(db, first, 1, t);
  for (int t = 1; t <= 4; t *= 2)
    run(db, first, USERS, t);
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "bench_billing: %s\n", tryon_err_message(&err));
out:
  PQclear(res);
  tryon_db_release(c);
  tryon_db_free(db);
  return rc;
}
