/*
 * Claims: one batch at a time, at most min(room, CLAIM_BATCH) jobs of the registered
 * kinds, each claim under a lease name of its own; a claimed job becomes a run and its
 * kind's start is called.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

#define CLAIM_BATCH 64

typedef struct claim_task {
  tryon__task t; /* first */
  tryon_job jobs[CLAIM_BATCH];
  size_t n;
  int max;
  char lease[TRYON__LEASE_MAX + 1]; /* "<owner>#<claim number>" */
} claim_task;

static tryon_status claim_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  claim_task *ct = (claim_task *)t;
  tryon_claim_options o = {.owner = ct->lease,
                           .max = ct->max,
                           .per_user_running = r->opt.per_user_running,
                           .lease_ms = r->opt.lease_ms,
                           .kinds = r->kind_names};
  return tryon_jobs_claim(c, &o, tryon_clock_now_ms(r->opt.clock), ct->jobs, &ct->n, err);
}

static void call_start(tryon_run *run, void *arg) {
  (void)arg;
  run->kind->k.start(run);
}

static void start_run(tryon_runner *r, tryon_job *job, const char *lease) {
  tryon_run *run = calloc(1, sizeof *run);
  const tryon__kind *k = tryon__runner_kind(r, job->kind);
  cJSON *payload = cJSON_Parse(job->payload ? job->payload : "{}");
  if (run == NULL || k == NULL || !cJSON_IsObject(payload)) {
    /* Cannot happen short of memory running out (claims name our kinds, payloads are
     * objects by schema): leave the job to its lease. */
    TRYON_LOG_ERROR("cannot start a claimed job", TRYON_LF_STR("job", job->id));
    cJSON_Delete(payload);
    free(run);
    tryon_job_release(job);
    return;
  }
  run->r = r;
  run->kind = k;
  run->job = *job;
  memset(job, 0, sizeof *job); /* its strings are the run's now */
  run->payload = payload;
  snprintf(run->lease, sizeof run->lease, "%s", lease);
  run->timer.idx = SIZE_MAX;
  run->started_mono = tryon_time_monotonic_ms();
  run->next = r->runs;
  if (r->runs != NULL)
    r->runs->prev = run;
  r->runs = run;
  r->nruns++;
  pthread_mutex_lock(&r->stats_mu);
  r->stats.claimed++;
  r->stats.running = (int64_t)r->nruns;
  pthread_mutex_unlock(&r->stats_mu);
  if (tryon_log_enabled(TRYON_LOG_DEBUG))
    TRYON_LOG_DEBUG("job started", TRYON_LF_STR("job", run->job.id), TRYON_LF_STR("kind", k->name),
                    TRYON_LF_INT("attempt", run->job.attempts), TRYON_LF_STR("owner", run->lease));
  if (r->draining) { /* the stop arrived while claiming: give it straight back */
    run->state = TRYON__RUN_CALLING;
    tryon__run_release(run);
    return;
  }
  tryon__run_call(run, call_start, NULL);
}

static void claim_done(tryon_runner *r, tryon__task *t) {
  claim_task *ct = (claim_task *)t;
  r->claim_pending = false;
  if (t->st != TRYON_OK) {
    TRYON_LOG_WARN("claim failed", TRYON_LF_STR("error", tryon_err_message(&t->err)));
  } else {
    /* A full batch suggests more is waiting: claim again as soon as there is room. */
    r->backlog = (int)ct->n == ct->max;
    r->want_claim = r->want_claim || r->backlog;
    for (size_t i = 0; i < ct->n; i++)
      start_run(r, &ct->jobs[i], ct->lease);
  }
  free(ct);
}

void tryon__claims_maybe(tryon_runner *r) {
  if (!r->want_claim || r->claim_pending || r->draining || r->nkinds == 0)
    return;
  size_t room = (size_t)r->opt.concurrency > r->nruns ? (size_t)r->opt.concurrency - r->nruns : 0;
  if (room == 0)
    return;
  claim_task *ct = calloc(1, sizeof *ct);
  if (ct == NULL)
    return; /* the poll timer tries again */
  r->want_claim = false;
  r->claim_pending = true;
  ct->max = (int)(room < CLAIM_BATCH ? room : CLAIM_BATCH);
  snprintf(ct->lease, sizeof ct->lease, "%s#%" PRIu64, r->owner, ++r->claims);
  ct->t.fn = claim_fn;
  ct->t.done = claim_done;
  tryon__runner_submit_urgent(r, &ct->t);
}

void tryon__claims_poll_fired(tryon_runner *r, tryon__timer *t) {
  r->want_claim = true;
  tryon__timer_arm(r, t, r->opt.poll_ms, tryon__claims_poll_fired);
}
