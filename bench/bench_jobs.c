/*
 * bench_jobs - the job queue's own cost, without a worker process: enqueues/s (100 per
 * transaction), and claim + succeed throughput of noop jobs with 1 and 2 claimer
 * threads (batches of 10, each job succeeded in its own transaction), on a migrated
 * database (argv[1]; bench/bench_jobs.sh makes one). Prints figures; asserts nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tryon/jobs.h>

enum { JOBS = 6000, BATCH = 10 };

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct runner {
  tryon_db *db;
  char owner[32];
  int done;
  int failures;
} runner;

static tryon_status succeed_one(tryon_db_conn *c, void *ud, tryon_err *err) {
  const char **a = ud;
  return tryon_jobs_succeed(c, a[0], a[1], "{}", tryon_clock_now_ms(NULL), err);
}

static void *run(void *arg) {
  runner *r = arg;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_job jobs[BATCH];
  if (tryon_db_acquire(r->db, &c, &err) != TRYON_OK) {
    r->failures++;
    return NULL;
  }
  tryon_claim_options o = {.owner = r->owner, .max = BATCH, .per_user_running = 1000};
  for (;;) {
    size_t n = 0;
    if (tryon_jobs_claim(c, &o, tryon_clock_now_ms(NULL), jobs, &n, &err) != TRYON_OK) {
      r->failures++;
      break;
    }
    if (n == 0)
      break;
    for (size_t i = 0; i < n; i++) {
      const char *a[] = {jobs[i].id, r->owner};
      if (tryon_db_tx(c, succeed_one, a, &err) == TRYON_OK)
        r->done++;
      else
        r->failures++;
      tryon_job_release(&jobs[i]);
    }
  }
  tryon_db_release(c);
  return NULL;
}

static tryon_status enqueue_batch(tryon_db_conn *c, void *ud, tryon_err *err) {
  (void)ud;
  for (int i = 0; i < 100; i++) {
    char id[TRYON_UUID_STR_LEN];
    tryon_job_spec s = {.kind = "noop"};
    tryon_status st = tryon_jobs_enqueue(c, &s, tryon_clock_now_ms(NULL), id, NULL, err);
    if (st != TRYON_OK)
      return st;
  }
  return TRYON_OK;
}

int main(int argc, char **argv) {
  tryon_db *db = NULL;
  tryon_db_conn *c = NULL;
  tryon_err err;
  int rc = 1;
  if (argc != 2) {
    fprintf(stderr, "usage: bench_jobs CONNINFO (a migrated database)\n");
    return 2;
  }
  tryon_db_options opt = {.conninfo = argv[1], .pool_size = 3, .acquire_timeout_ms = 10000};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK)
    goto fail;
  for (int threads = 1; threads <= 2; threads++) {
    if (tryon_db_acquire(db, &c, &err) != TRYON_OK)
      goto fail;
    int64_t t0 = now_ns();
    for (int b = 0; b < JOBS / 100; b++) {
      if (tryon_db_tx(c, enqueue_batch, NULL, &err) != TRYON_OK)
        goto fail;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("enqueue (100 per transaction): %.0f jobs/s\n", JOBS / secs);
    tryon_db_release(c);
    c = NULL;

    pthread_t th[2];
    runner r[2];
    t0 = now_ns();
    for (int i = 0; i < threads; i++) {
      r[i] = (runner){.db = db};
      snprintf(r[i].owner, sizeof r[i].owner, "bench:%d", i);
      pthread_create(&th[i], NULL, run, &r[i]);
    }
    int done = 0, failures = 0;
    for (int i = 0; i < threads; i++) {
      pthread_join(th[i], NULL);
      done += r[i].done;
      failures += r[i].failures;
    }
    secs = (double)(now_ns() - t0) / 1e9;
    printf("claim (batches of %d) + succeed, %d thread(s): %.0f jobs/s (%d done, %d failures)\n",
           BATCH, threads, done / secs, done, failures);
  }
  rc = 0;
  goto out;
fail:
  fprintf(stderr, "bench_jobs: %s\n", tryon_err_message(&err));
out:
  tryon_db_release(c);
  tryon_db_free(db);
  return rc;
}
