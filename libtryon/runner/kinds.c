/*
 * Section 4 of tryon/runner.h: the kinds shipped with the library, "noop" and "sleep",
 * for tests and benchmarks. They know nothing beyond the engine (the jobs table).
 * Housekeeping kinds belong to the programs that run them (apps/worker).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

static int64_t payload_int(const tryon_run *run, const char *key, int64_t dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), key);
  return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e12 ? (int64_t)v->valuedouble
                                                                           : dflt;
}

static void noop_start(tryon_run *run) {
  char result[160];
  snprintf(result, sizeof result, "{\"owner\":\"%s\",\"attempt\":%d}", tryon_run_owner(run),
           tryon_run_job(run)->attempts);
  tryon_run_succeed(run, result, NULL, NULL);
}

/* "sleep": the state a rerun resumes from is the checkpointed step. */
typedef struct sleep_state {
  int64_t step, steps, step_ms, resumed_from;
} sleep_state;

static void sleep_next(tryon_run *run);

static void sleep_woke(tryon_run *run) {
  sleep_state *s = tryon_run_data(run);
  char cp[64];
  s->step++;
  snprintf(cp, sizeof cp, "{\"step\":%" PRId64 "}", s->step);
  tryon_run_progress(run, (int)(s->step * 100 / s->steps), "sleeping", cp, sleep_next);
}

static void sleep_next(tryon_run *run) {
  sleep_state *s = tryon_run_data(run);
  if (s->step < s->steps) {
    tryon_run_sleep(run, s->step_ms, sleep_woke);
    return;
  }
  char result[200];
  snprintf(result, sizeof result, "{\"owner\":\"%s\",\"attempt\":%d,\"resumed_from\":%" PRId64 "}",
           tryon_run_owner(run), tryon_run_job(run)->attempts, s->resumed_from);
  tryon_run_succeed(run, result, NULL, NULL);
}

static void sleep_start(tryon_run *run) {
  const tryon_job *job = tryon_run_job(run);
  if (job->attempts <= payload_int(run, "fail_attempts", 0)) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), "retryable");
    tryon_run_fail(run, "{\"code\":\"test_failure\",\"message\":\"failing as asked\"}",
                   !cJSON_IsFalse(r), payload_int(run, "retry_after_ms", 10));
    return;
  }
  sleep_state *s = calloc(1, sizeof *s);
  if (s == NULL) {
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"out of memory\"}", true, 0);
    return;
  }
  tryon_run_set_data(run, s, free);
  s->steps = payload_int(run, "steps", 1);
  if (s->steps < 1)
    s->steps = 1;
  s->step_ms = payload_int(run, "ms", 0) / s->steps;
  s->step = s->resumed_from = payload_int(run, "step", 0);
  sleep_next(run);
}

/* Counts its runs in the job's result, inside the transaction that failed the job. */
static tryon_status sleep_final(tryon_db_conn *c, const tryon_job *job, void *ud, tryon_err *err) {
  (void)ud;
  const char *p[] = {job->id};
  return tryon_db_exec(c,
                       "UPDATE jobs SET result = coalesce(result, '{}') || jsonb_build_object("
                       "'final_hook_runs', coalesce((result->>'final_hook_runs')::int, 0) + 1)"
                       " WHERE id = $1::uuid",
                       1, p, NULL, err);
}

tryon_status tryon_runner_add_test_kinds(tryon_runner *r, tryon_err *err) {
  const tryon_job_kind noop = {.name = "noop", .start = noop_start};
  const tryon_job_kind sleep = {.name = "sleep", .start = sleep_start, .on_final = sleep_final};
  tryon_status st = tryon_runner_add_kind(r, &noop, err);
  return st == TRYON_OK ? tryon_runner_add_kind(r, &sleep, err) : st;
}
