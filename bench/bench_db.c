/*
 * bench_db - figures for the db module: pool lease/release cost with and without
 * contention, and round-trip latency of a parameterised statement and of a small
 * transaction, on the database named by argv[1] (a libpq conninfo).
 *
 *   build/bench/bench_db "$(scripts/pg url)"
 *
 * Prints one line per figure; asserts nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tryon/core.h>
#include <tryon/db.h>

enum { LEASES = 200000, QUERIES = 5000, THREADS = 4 };

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct lease_arg {
  tryon_db *db;
  int n;
  int failures;
} lease_arg;

static void *lease_loop(void *p) {
  lease_arg *a = p;
  for (int i = 0; i < a->n; i++) {
    tryon_db_conn *c = NULL;
    if (tryon_db_acquire(a->db, &c, NULL) != TRYON_OK) {
      a->failures++;
      continue;
    }
    tryon_db_release(c);
  }
  return NULL;
}

static void bench_leases(tryon_db *db, int threads) {
  pthread_t th[THREADS];
  lease_arg args[THREADS];
  int per = LEASES / threads;
  int64_t t0 = now_ns();
  for (int i = 0; i < threads; i++) {
    args[i] = (lease_arg){.db = db, .n = per};
    pthread_create(&th[i], NULL, lease_loop, &args[i]);
  }
  int failures = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    failures += args[i].failures;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  printf("pool lease+release, %d thread(s) on 2 connections: %.0f ops/s (%d failures)\n", threads,
         (double)(per * threads) / secs, failures);
}

static tryon_status tx_body(tryon_db_conn *c, void *ud, tryon_err *err) {
  (void)ud;
  return tryon_db_exec(c, "INSERT INTO bench_tx (n) VALUES (1)", 0, NULL, NULL, err);
}

static void report(const char *what, int64_t *ns, int n) {
  qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
  printf("%s: p50 %.1f us, p99 %.1f us, max %.1f us (%d runs)\n", what, (double)ns[n / 2] / 1e3,
         (double)ns[n * 99 / 100] / 1e3, (double)ns[n - 1] / 1e3, n);
}

int main(int argc, char **argv) {
  tryon_db *db = NULL;
  tryon_db_conn *c = NULL;
  tryon_err err;
  int64_t *ns = calloc(QUERIES, sizeof *ns);
  int rc = 1;

  tryon_err_clear(&err);
  if (argc != 2 || ns == NULL) {
    fprintf(stderr, "usage: bench_db CONNINFO\n");
    goto out;
  }
  tryon_db_options opt = {.conninfo = argv[1], .pool_size = 2, .acquire_timeout_ms = 10000};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK || tryon_db_acquire(db, &c, &err) != TRYON_OK)
    goto fail;
  if (tryon_db_exec(c, "CREATE TEMP TABLE bench_tx (n int)", 0, NULL, NULL, &err) != TRYON_OK)
    goto fail;

  const char *params[] = {"41"};
  for (int i = 0; i < QUERIES; i++) {
    int64_t t0 = now_ns();
    if (tryon_db_exec(c, "SELECT $1::int + 1", 1, params, NULL, &err) != TRYON_OK)
      goto fail;
    ns[i] = now_ns() - t0;
  }
  report("parameterised SELECT round trip", ns, QUERIES);
  for (int i = 0; i < QUERIES; i++) {
    int64_t t0 = now_ns();
    if (tryon_db_tx(c, tx_body, NULL, &err) != TRYON_OK)
      goto fail;
    ns[i] = now_ns() - t0;
  }
  report("BEGIN + INSERT + COMMIT", ns, QUERIES);
  tryon_db_release(c);
  c = NULL;

  bench_leases(db, 1);
  bench_leases(db, THREADS);
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "bench_db: %s\n", tryon_err_message(&err));
out:
  tryon_db_release(c);
  tryon_db_free(db);
  free(ns);
  return rc;
}
