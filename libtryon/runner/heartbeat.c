/*
 * Heartbeats: every lease/3 the leases of all held runs are renewed in one statement;
 * a run whose lease is gone is dropped at once when it waits, or at the end of its DB
 * step.
 */
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

typedef struct hb_task {
  tryon__task t; /* first */
  size_t n;
  char (*ids)[TRYON_UUID_STR_LEN];
  char (*leases)[TRYON__LEASE_MAX + 1];
  const char **id_ptrs, **lease_ptrs;
  bool *held;
} hb_task;

static void hb_free(hb_task *h) {
  if (h == NULL)
    return;
  free(h->ids);
  free(h->leases);
  free(h->id_ptrs);
  free(h->lease_ptrs);
  free(h->held);
  free(h);
}

static tryon_status hb_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  hb_task *h = (hb_task *)t;
  return tryon_jobs_heartbeat_many(c, h->id_ptrs, h->lease_ptrs, h->n, r->opt.lease_ms,
                                   tryon_clock_now_ms(r->opt.clock), h->held, err);
}

static void hb_done(tryon_runner *r, tryon__task *t) {
  hb_task *h = (hb_task *)t;
  r->hb_pending = false;
  if (t->st != TRYON_OK) {
    TRYON_LOG_WARN("heartbeat failed", TRYON_LF_STR("error", tryon_err_message(&t->err)));
    hb_free(h);
    return;
  }
  for (size_t i = 0; i < h->n; i++) {
    if (h->held[i])
      continue;
    /* That claim's lease is gone (or its job finished since the snapshot): a waiting
     * run is dropped now, transfer and all; one in a DB step learns it from the step. */
    for (tryon_run *run = r->runs; run != NULL; run = run->next) {
      if (strcmp(run->job.id, h->ids[i]) != 0 || strcmp(run->lease, h->leases[i]) != 0)
        continue;
      run->lost = true;
      if (run->state == TRYON__RUN_TIMER) {
        tryon__timer_cancel(r, &run->timer);
        TRYON__STATS_ADD(r, waiting, -1);
        tryon__run_drop(r, run, "lease lost");
      } else if (run->state == TRYON__RUN_XFER) {
        curl_multi_remove_handle(r->multi, run->easy);
        run->easy = NULL;
        TRYON__STATS_ADD(r, waiting, -1);
        tryon__run_drop(r, run, "lease lost");
      }
      break;
    }
  }
  hb_free(h);
}

void tryon__heartbeat_fired(tryon_runner *r, tryon__timer *t) {
  tryon__timer_arm(r, t, r->opt.lease_ms / 3, tryon__heartbeat_fired);
  if (r->hb_pending || r->nruns == 0)
    return;
  hb_task *h = calloc(1, sizeof *h);
  if (h != NULL) {
    h->ids = calloc(r->nruns, sizeof *h->ids);
    h->leases = calloc(r->nruns, sizeof *h->leases);
    h->id_ptrs = calloc(r->nruns, sizeof *h->id_ptrs);
    h->lease_ptrs = calloc(r->nruns, sizeof *h->lease_ptrs);
    h->held = calloc(r->nruns, sizeof *h->held);
  }
  if (h == NULL || h->ids == NULL || h->leases == NULL || h->id_ptrs == NULL ||
      h->lease_ptrs == NULL || h->held == NULL) {
    hb_free(h);
    return;
  }
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (run->lost)
      continue;
    memcpy(h->ids[h->n], run->job.id, TRYON_UUID_STR_LEN);
    memcpy(h->leases[h->n], run->lease, sizeof run->lease);
    h->id_ptrs[h->n] = h->ids[h->n];
    h->lease_ptrs[h->n] = h->leases[h->n];
    h->n++;
  }
  r->hb_pending = true;
  h->t.fn = hb_fn;
  h->t.done = hb_done;
  /* Ahead of the steps: a burst of job work must not starve the leases. */
  tryon__runner_submit_urgent(r, &h->t);
}
