/*
 * Schedules: a registered kind enqueued once per slot of the wall clock, with the
 * idempotency key "sched:<kind>:<slot>", so that one job per slot exists across all
 * workers. What the kinds do is the program's business.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "runner_internal.h"

typedef struct sched_task {
  tryon__task t; /* first */
  const tryon__kind *kind;
  int64_t slot;
  bool created;
} sched_task;

static tryon_status sched_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  sched_task *s = (sched_task *)t;
  char key[128], id[TRYON_UUID_STR_LEN];
  snprintf(key, sizeof key, "sched:%s:%" PRId64, s->kind->name, s->slot);
  tryon_job_spec spec = {.kind = s->kind->name, .idempotency_key = key, .max_attempts = 1};
  return tryon_jobs_enqueue(c, &spec, tryon_clock_now_ms(r->opt.clock), id, &s->created, err);
}

static void sched_done(tryon_runner *r, tryon__task *t) {
  sched_task *s = (sched_task *)t;
  if (t->st != TRYON_OK)
    TRYON_LOG_WARN("cannot schedule housekeeping", TRYON_LF_STR("kind", s->kind->name),
                   TRYON_LF_STR("error", tryon_err_message(&t->err)));
  else if (s->created)
    r->want_claim = true;
  free(s);
}

void tryon__schedule_fired(tryon_runner *r, tryon__timer *t) {
  tryon__schedule *s = (tryon__schedule *)t;
  int64_t now = tryon_clock_now_ms(r->opt.clock);
  int64_t slot = now / s->interval_ms;
  tryon__timer_arm(r, t, (slot + 1) * s->interval_ms - now, tryon__schedule_fired);
  if (r->draining)
    return;
  sched_task *st = calloc(1, sizeof *st);
  if (st == NULL)
    return;
  st->kind = s->kind;
  st->slot = slot;
  st->t.fn = sched_fn;
  st->t.done = sched_done;
  tryon__runner_submit(r, &st->t);
}

tryon_status tryon_runner_schedule(tryon_runner *r, const char *kind, int64_t interval_ms,
                                   tryon_err *err) {
  tryon_status st = TRYON_OK;
  const tryon__kind *k = kind ? tryon__runner_kind(r, kind) : NULL;
  if (k == NULL || interval_ms < 1000)
    st = tryon_err_set(err, TRYON_E_INVALID, "schedule a registered kind, every 1 s or more");
  else if (r->nschedules == TRYON__RUNNER_MAX_SCHEDULES)
    st = tryon_err_set(err, TRYON_E_INVALID, "too many schedules");
  if (st != TRYON_OK)
    goto out;
  tryon__schedule *s = &r->schedules[r->nschedules++];
  s->kind = k;
  s->interval_ms = interval_ms;
  s->timer.idx = SIZE_MAX;
out:
  return st;
}
