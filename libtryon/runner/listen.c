/*
 * The runner's side of its listener (tryon_db_listener, db.h section 6): NOTIFY
 * tryon_jobs '<kind>' asks for a claim, NOTIFY tryon_wake '<job id>' ends that job's
 * wait. The listener reconnects by itself; each time it is up again the runner claims
 * at once, since notifications sent meanwhile were lost (the poll timer covers the rest).
 */
#include <string.h>

#include "runner_internal.h"

tryon_status tryon__listen_open(tryon_runner *r, tryon_err *err) {
  tryon_status st = tryon_db_listener_open(r->listener, err);
  if (st == TRYON_OK)
    tryon__stats_set_listening(r, true);
  return st;
}

void tryon__listen_close(tryon_runner *r) {
  tryon_db_listener_close(r->listener);
  tryon__stats_set_listening(r, false);
}

/* NOTIFY tryon_wake, '<job id>': the job's wait is over early (a provider's callback
 * says its task has news). Only a run waiting on a timer is woken; anything else
 * carries on as it was, so a wake-up is always safe to send, and to send twice. */
static void wake_run(tryon_runner *r, const char *job_id) {
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (strcmp(run->job.id, job_id) != 0 || run->lost)
      continue;
    TRYON_LOG_INFO("job woken early", TRYON_LF_STR("job", job_id));
    if (run->state == TRYON__RUN_TIMER)
      tryon__timer_arm(r, &run->timer, 0, tryon__run_sleep_fired);
    else
      run->wake_pending = true; /* mid-step: its next wait ends at once */
  }
}

void tryon__listen_process(tryon_runner *r, short revents) {
  unsigned what = tryon_db_listener_process(r->listener, revents);
  if (what & TRYON_DB_LISTENER_LOST) {
    TRYON_LOG_WARN("lost the listen connection; polling until it is back",
                   TRYON_LF_STR("error", tryon_db_listener_error(r->listener)));
    tryon__stats_set_listening(r, false);
  }
  /* A reconnect that keeps failing is logged, once a minute at most, with its reason
   * (the only other sign is the listening flag in the stats). */
  if ((what & TRYON_DB_LISTENER_FAILED) &&
      tryon_time_monotonic_ms() - r->listen_failed_log_ms >= 60000) {
    r->listen_failed_log_ms = tryon_time_monotonic_ms();
    TRYON_LOG_WARN("the listen connection cannot be made again yet",
                   TRYON_LF_STR("error", tryon_db_listener_error(r->listener)));
  }
  if (what & TRYON_DB_LISTENER_UP) {
    r->want_claim = true; /* notifications may have been missed meanwhile */
    tryon__stats_set_listening(r, true);
    TRYON_LOG_INFO("listening for jobs again");
  }
  tryon_db_notification n;
  while (tryon_db_listener_next(r->listener, &n)) {
    if (strcmp(n.channel, "tryon_wake") == 0) {
      wake_run(r, n.payload);
    } else if (tryon__runner_kind(r, n.payload) != NULL) {
      r->want_claim = true;
      r->backlog = true; /* if there is no room now, claim when there is */
    }
  }
}
