/*
 * A run's life on the loop: submitting its one DB task, writes tried again after
 * transient database failures, release (back to the queue, attempt given back), drop
 * (left to its lease), calling a handler and checking it chose a step, and freeing.
 */
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

void tryon__run_free(tryon_runner *r, tryon_run *run) {
  if (run->prev != NULL)
    run->prev->next = run->next;
  else
    r->runs = run->next;
  if (run->next != NULL)
    run->next->prev = run->prev;
  r->nruns--;
  tryon__timer_cancel(r, &run->timer);
  tryon__run_http_free(run);
  if (run->data_free != NULL)
    run->data_free(run->data);
  tryon_job_release(&run->job);
  cJSON_Delete(run->payload);
  free(run->checkpoint);
  free(run->result);
  free(run->error);
  free(run);
  pthread_mutex_lock(&r->stats_mu);
  r->stats.running = (int64_t)r->nruns;
  pthread_mutex_unlock(&r->stats_mu);
  /* A freed slot may let a waiting job in. */
  if (r->backlog)
    r->want_claim = true;
}

/* A write that failed for want of the database (a pool timeout, a dropped connection)
 * is tried again a few times before the run is given up to its lease. */
#define WRITE_TRIES 4

static void write_again(tryon_runner *r, tryon__timer *t) {
  tryon_run *run = (tryon_run *)((char *)t - offsetof(tryon_run, timer));
  tryon__runner_submit(r, &run->task);
}

static bool retry_write(tryon_runner *r, tryon_run *run, tryon_status st) {
  if ((st != TRYON_E_DB_UNAVAILABLE && st != TRYON_E_POOL_TIMEOUT) ||
      ++run->write_tries >= WRITE_TRIES)
    return false;
  TRYON_LOG_WARN("job write failed; trying again", TRYON_LF_STR("job", run->job.id),
                 TRYON_LF_STR("error", tryon_err_message(&run->task.err)));
  /* 250 ms, 1 s, 4 s; the run stays TRYON__RUN_DB, so nothing else touches it meanwhile. */
  return tryon__timer_arm(r, &run->timer, 250LL << (2 * (run->write_tries - 1)), write_again);
}

/* Ends a run without writing to its job: the lease will bring it back (abandoned) or
 * another worker already has it (lost). */
void tryon__run_drop(tryon_runner *r, tryon_run *run, const char *why) {
  TRYON_LOG_WARN("job dropped", TRYON_LF_STR("job", run->job.id),
                 TRYON_LF_STR("kind", run->kind->name), TRYON_LF_STR("reason", why));
  if (run->lost)
    TRYON__STATS_ADD(r, lost, 1);
  else
    TRYON__STATS_ADD(r, abandoned, 1);
  tryon__run_free(r, run);
}

void tryon__run_submit(tryon_run *run,
                       tryon_status (*fn)(tryon_runner *, tryon_db_conn *, tryon__task *,
                                          tryon_err *),
                       void (*done)(tryon_runner *, tryon__task *)) {
  run->stepped = true;
  run->state = TRYON__RUN_DB;
  run->task.fn = fn;
  run->task.done = done;
  run->task.no_conn = run->work_next; /* tryon_run_work's steps need no connection */
  run->work_next = false;
  tryon__runner_submit(run->r, &run->task);
}

bool tryon__run_written(tryon_runner *r, tryon_run *run) {
  const tryon__task *t = &run->task;
  bool ok = false;
  if (retry_write(r, run, t->st))
    goto out;
  run->write_tries = 0;
  if (t->st != TRYON_OK) {
    run->lost = run->lost || t->st == TRYON_E_CONFLICT;
    tryon__run_drop(r, run, tryon_err_message(&t->err));
    goto out;
  }
  ok = true;
out:
  return ok;
}

/* release: the job goes back to the queue without spending its attempt */
static tryon_status release_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  tryon_run *run = TRYON__RUN_OF(t);
  return tryon_jobs_release(c, run->job.id, run->lease, tryon_clock_now_ms(r->opt.clock), err);
}

static void release_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = TRYON__RUN_OF(t);
  if (retry_write(r, run, t->st))
    return;
  if (t->st == TRYON_OK) {
    TRYON_LOG_INFO("job released", TRYON_LF_STR("job", run->job.id),
                   TRYON_LF_STR("kind", run->kind->name));
    TRYON__STATS_ADD(r, released, 1);
    tryon__run_free(r, run);
  } else {
    tryon__run_drop(r, run, tryon_err_message(&t->err));
  }
}

void tryon__run_release(tryon_run *run) {
  tryon__timer_cancel(run->r, &run->timer);
  tryon__run_submit(run, release_fn, release_done);
}

void tryon__run_call(tryon_run *run, void (*call)(tryon_run *, void *), void *arg) {
  run->state = TRYON__RUN_CALLING;
  run->stepped = false;
  call(run, arg);
  if (!run->stepped) {
    TRYON_LOG_ERROR("handler returned without a next step", TRYON_LF_STR("job", run->job.id),
                    TRYON_LF_STR("kind", run->kind->name));
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"the job stopped without finishing\"}",
                   false, 0);
  }
}
