/*
 * The reaper: every lease/2, expired leases of the registered kinds are put back (or,
 * on their last attempt, failed with the kind's hook), and the queue's depth is read
 * for the metrics.
 */
#include <stdlib.h>

#include "runner_internal.h"

typedef struct reap_task {
  tryon__task t; /* first */
  size_t requeued, failed;
  int64_t queued, running;
} reap_task;

/* The failure hook of a job the reaper failed: its kind's, in the reap's transaction. */
static tryon_status reap_hook(tryon_db_conn *c, const tryon_job *job, void *ud, tryon_err *err) {
  const tryon__kind *k = tryon__runner_kind(ud, job->kind);
  if (k == NULL || k->k.on_final == NULL)
    return TRYON_OK;
  return k->k.on_final(c, job, k->k.ud, err);
}

static tryon_status reap_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  reap_task *rt = (reap_task *)t;
  tryon_reap_options o = {.kinds = r->kind_names, .on_final = reap_hook, .ud = r};
  tryon_status st =
      tryon_jobs_reap(c, &o, tryon_clock_now_ms(r->opt.clock), &rt->requeued, &rt->failed, err);
  if (st == TRYON_OK) /* the queue's depth, for the metrics */
    st = tryon_jobs_depth(c, &rt->queued, &rt->running, err);
  return st;
}

static void reap_done(tryon_runner *r, tryon__task *t) {
  reap_task *rt = (reap_task *)t;
  r->reap_pending = false;
  if (t->st != TRYON_OK) {
    TRYON_LOG_WARN("reaper failed", TRYON_LF_STR("error", tryon_err_message(&t->err)));
  } else {
    if (rt->requeued + rt->failed > 0) {
      TRYON_LOG_INFO("expired leases reaped", TRYON_LF_INT("requeued", (int64_t)rt->requeued),
                     TRYON_LF_INT("failed", (int64_t)rt->failed));
      r->want_claim = true;
    }
    pthread_mutex_lock(&r->stats_mu);
    r->stats.queue_queued = rt->queued;
    r->stats.queue_running = rt->running;
    pthread_mutex_unlock(&r->stats_mu);
  }
  free(rt);
}

void tryon__reap_fired(tryon_runner *r, tryon__timer *t) {
  tryon__timer_arm(r, t, r->opt.lease_ms / 2, tryon__reap_fired);
  if (r->reap_pending || r->draining)
    return;
  reap_task *rt = calloc(1, sizeof *rt);
  if (rt == NULL)
    return;
  r->reap_pending = true;
  rt->t.fn = reap_fn;
  rt->t.done = reap_done;
  tryon__runner_submit_urgent(r, &rt->t);
}
