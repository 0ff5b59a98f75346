/*
 * The worker's housekeeping: scheduled kinds that call one function of the module that
 * owns the data. The runner only schedules and runs them; it knows no domain.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/billing.h>
#include <tryon/jobs.h>

#include "housekeeping.h"

#define MINUTE_MS (60 * 1000LL)
#define HOUR_MS (60 * MINUTE_MS)
#define PURGE_AFTER_MS (24 * HOUR_MS)
#define SWEEP_AGE_MS HOUR_MS
#define SWEEP_BATCH 500     /* candidates checked against the database at once */
#define SWEEP_BATCHES 20000 /* a bound (10 M old files a run), not an expected size */

/* One chore: a database function given the run's wall clock, counting what it did. */
typedef tryon_status (*chore_fn)(tryon_db_conn *c, tryon_storage *storage, int64_t now_ms,
                                 size_t *n, tryon_err *err);

typedef struct chore {
  const char *kind;
  int64_t every_ms;
  chore_fn fn;
} chore;

static tryon_status expire_due(tryon_db_conn *c, tryon_storage *storage, int64_t now_ms, size_t *n,
                               tryon_err *err) {
  (void)storage;
  return tryon_billing_expire_due(c, now_ms, n, err);
}

static tryon_status purge(tryon_db_conn *c, tryon_storage *storage, int64_t now_ms, size_t *n,
                          tryon_err *err) {
  (void)storage;
  return tryon_jobs_purge(c, now_ms - PURGE_AFTER_MS, n, err);
}

/* A file being recorded right now is never an hour old: it is not touched. The whole
 * store is walked in key order, a batch at a time, each batch resuming where the last
 * stopped, so no number of files hides an orphan. */
static tryon_status sweep(tryon_db_conn *c, tryon_storage *storage, int64_t now_ms, size_t *n,
                          tryon_err *err) {
  char cursor[TRYON_FILES_SWEEP_CURSOR_MAX] = "", next[TRYON_FILES_SWEEP_CURSOR_MAX];
  tryon_status st = TRYON_OK;
  *n = 0;
  for (int batch = 0; batch < SWEEP_BATCHES; batch++) {
    size_t removed = 0;
    st = tryon_files_sweep_orphans(c, storage, now_ms - SWEEP_AGE_MS, SWEEP_BATCH, cursor, next,
                                   &removed, err);
    *n += removed;
    if (st != TRYON_OK || next[0] == '\0')
      break;
    memcpy(cursor, next, sizeof cursor);
  }
  return st;
}

static const chore chores[] = {
    {"billing.expire_due", MINUTE_MS, expire_due},
    {"jobs.purge", HOUR_MS, purge},
    {"files.sweep", HOUR_MS, sweep},
};

/* A run's state: its chore and the count it reports. */
typedef struct chore_run {
  const chore *chore;
  size_t n;
} chore_run;

static tryon_status chore_db(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  chore_run *cr = ud;
  return cr->chore->fn(c, tryon_run_kind_ud(run), tryon_run_now_ms(run), &cr->n, err);
}

static void chore_done(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  chore_run *cr = ud;
  char body[96];
  if (st != TRYON_OK) {
    char e[300];
    snprintf(e, sizeof e, "{\"code\":\"%s\",\"message\":\"housekeeping failed\"}",
             tryon_status_name(st));
    TRYON_LOG_WARN("housekeeping failed", TRYON_LF_STR("kind", tryon_run_job(run)->kind),
                   TRYON_LF_STR("error", tryon_err_message(err)));
    tryon_run_fail(run, e, false, 0); /* the next slot runs it again */
    return;
  }
  if (cr->n > 0)
    TRYON_LOG_INFO("housekeeping done", TRYON_LF_STR("kind", tryon_run_job(run)->kind),
                   TRYON_LF_INT("count", (int64_t)cr->n));
  snprintf(body, sizeof body, "{\"count\":%zu}", cr->n);
  tryon_run_succeed(run, body, NULL, NULL);
}

static void chore_start(tryon_run *run) {
  const char *kind = tryon_run_job(run)->kind;
  const chore *ch = NULL;
  for (size_t i = 0; i < sizeof chores / sizeof chores[0] && ch == NULL; i++)
    ch = strcmp(chores[i].kind, kind) == 0 ? &chores[i] : NULL;
  chore_run *cr = ch != NULL ? calloc(1, sizeof *cr) : NULL;
  if (cr == NULL) { /* out of memory (every registered kind is in the table) */
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"out of memory\"}", false, 0);
    return;
  }
  cr->chore = ch;
  tryon_run_set_data(run, cr, free);
  tryon_run_db(run, chore_db, chore_done, cr);
}

tryon_status tryon_worker_housekeeping_add(tryon_runner *r, tryon_storage *storage,
                                           tryon_err *err) {
  tryon_status st = TRYON_OK;
  for (size_t i = 0; st == TRYON_OK && i < sizeof chores / sizeof chores[0]; i++) {
    const tryon_job_kind k = {.name = chores[i].kind, .start = chore_start, .ud = storage};
    st = tryon_runner_add_kind(r, &k, err);
    if (st == TRYON_OK)
      st = tryon_runner_schedule(r, chores[i].kind, chores[i].every_ms, err);
  }
  return st;
}
