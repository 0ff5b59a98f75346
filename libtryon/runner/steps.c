/*
 * Section 3 of tryon/runner.h: what a handler sees of its job, and the step functions
 * (sleep, database work, HTTP and raw transfers through the loop, progress, succeed,
 * fail). Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "runner_internal.h"

/* ----------------------------------------------------------- steps: the handler API */

const tryon_job *tryon_run_job(const tryon_run *run) {
  return &run->job;
}
const cJSON *tryon_run_payload(const tryon_run *run) {
  return run->payload;
}
const char *tryon_run_owner(const tryon_run *run) {
  return run->r->owner;
}
int64_t tryon_run_now_ms(const tryon_run *run) {
  return tryon_clock_now_ms(run->r->opt.clock);
}
void *tryon_run_kind_ud(const tryon_run *run) {
  return run->kind->k.ud;
}
void *tryon_run_data(const tryon_run *run) {
  return run->data;
}
bool tryon_run_stopping(const tryon_run *run) {
  return run->r->draining;
}

void tryon_run_set_data(tryon_run *run, void *data, void (*free_fn)(void *)) {
  if (run->data_free != NULL && run->data != data)
    run->data_free(run->data);
  run->data = data;
  run->data_free = free_fn;
}

/* A step chosen twice in one call is a handler bug: the second one is ignored. */
static bool step_ok(tryon_run *run, const char *step) {
  if (run->state == TRYON__RUN_CALLING && !run->stepped)
    return true;
  TRYON_LOG_ERROR("handler chose a second step", TRYON_LF_STR("job", run->job.id),
                  TRYON_LF_STR("kind", run->kind->name), TRYON_LF_STR("step", step));
  return false;
}

static void call_cont(tryon_run *run, void *arg) {
  (void)arg;
  run->cont(run);
}

void tryon__run_sleep_fired(tryon_runner *r, tryon__timer *t) {
  tryon_run *run = (tryon_run *)((char *)t - offsetof(tryon_run, timer));
  TRYON__STATS_ADD(r, waiting, -1);
  tryon__run_call(run, call_cont, NULL);
}

void tryon_run_sleep(tryon_run *run, int64_t ms, tryon_run_fn cont) {
  if (!step_ok(run, "sleep"))
    return;
  if (run->r->draining) {
    tryon__run_release(run);
    return;
  }
  run->stepped = true;
  run->state = TRYON__RUN_TIMER;
  run->cont = cont;
  if (run->wake_pending) { /* woken while it was busy: this wait is already over */
    run->wake_pending = false;
    ms = 0;
  }
  if (!tryon__timer_arm(run->r, &run->timer, ms, tryon__run_sleep_fired))
    tryon__run_release(run);
  else
    TRYON__STATS_ADD(run->r, waiting, 1);
}

static tryon_status step_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  (void)r;
  tryon_run *run = TRYON__RUN_OF(t);
  return run->db_fn(c, run, run->db_ud, err);
}

typedef struct step_result {
  tryon_status st;
  const tryon_err *err;
} step_result;

static void call_db_done(tryon_run *run, void *arg) {
  const step_result *sr = arg;
  run->db_done(run, sr->st, sr->err, run->db_ud);
}

static void step_done(tryon_runner *r, tryon__task *t) {
  (void)r;
  tryon_run *run = TRYON__RUN_OF(t);
  if (run->lost) {
    tryon__run_drop(r, run, "lease lost");
    return;
  }
  step_result sr = {t->st, &t->err};
  tryon__run_call(run, call_db_done, &sr);
}

void tryon_run_db(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud) {
  if (!step_ok(run, "db"))
    return;
  run->db_fn = fn;
  run->db_done = done;
  run->db_ud = ud;
  tryon__run_submit(run, step_fn, step_done);
}

void tryon_run_work(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud) {
  if (!step_ok(run, "work"))
    return;
  run->db_fn = fn;
  run->db_done = done;
  run->db_ud = ud;
  run->work_next = true;
  tryon__run_submit(run, step_fn, step_done);
}

/* ----------------------------------------------------------- HTTP through the loop */

static void http_finish(tryon_run *run, tryon_status st, const tryon_err *err) {
  tryon_http_call *call = run->call;
  tryon_run_http_done done = run->http_done;
  run->call = NULL;
  done(run, call, st, err, run->http_ud);
  tryon_http_call_free(call);
}

static void http_go(tryon_run *run);

static void http_transferred(tryon_run *run, CURLcode code, void *ud) {
  (void)ud;
  int64_t delay = 0;
  if (tryon_http_call_finished(run->call, code, &delay) == TRYON_HTTP_RETRY) {
    tryon_run_sleep(run, delay, http_go);
    return;
  }
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_http_call_status(run->call, &err);
  http_finish(run, st, &err);
}

static void http_go(tryon_run *run) {
  tryon_run_transfer(run, tryon_http_call_easy(run->call), http_transferred, NULL);
}

/* The call dies with the run if the run ends while it waits (a stop, a lost lease). */
void tryon__run_http_free(tryon_run *run) {
  tryon_http_call_free(run->call);
  run->call = NULL;
}

void tryon_run_http(tryon_run *run, const tryon_http_request *req, tryon_run_http_done done,
                    void *ud) {
  tryon_err err;
  tryon_err_clear(&err);
  if (run->call != NULL) { /* a handler bug: one call at a time */
    step_ok(run, "http (a call is in flight)");
    return;
  }
  run->http_done = done;
  run->http_ud = ud;
  tryon_status st = tryon_http_call_new(req, &run->call, &err);
  if (st != TRYON_OK) {
    run->call = NULL;
    done(run, NULL, st, &err, ud);
    return;
  }
  http_go(run);
}

static tryon_status progress_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  tryon_run *run = TRYON__RUN_OF(t);
  return tryon_jobs_progress(c, run->job.id, run->lease, run->progress,
                             run->stage[0] ? run->stage : NULL, run->checkpoint,
                             tryon_clock_now_ms(r->opt.clock), err);
}

/* The checkpoint is in the row now: show it in the payload the handler reads. */
static void merge_checkpoint(tryon_run *run) {
  cJSON *cp = run->checkpoint ? cJSON_Parse(run->checkpoint) : NULL;
  for (cJSON *it = cp ? cp->child : NULL; it != NULL; it = it->next) {
    cJSON *copy = cJSON_Duplicate(it, 1);
    if (copy == NULL)
      break;
    cJSON_DeleteItemFromObjectCaseSensitive(run->payload, it->string);
    cJSON_AddItemToObject(run->payload, it->string, copy);
  }
  cJSON_Delete(cp);
  free(run->checkpoint);
  run->checkpoint = NULL;
}

static void progress_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = TRYON__RUN_OF(t);
  if (!tryon__run_written(r, run))
    return;
  merge_checkpoint(run);
  tryon__run_call(run, call_cont, NULL);
}

void tryon_run_progress(tryon_run *run, int progress, const char *stage,
                        const char *checkpoint_json, tryon_run_fn cont) {
  if (!step_ok(run, "progress"))
    return;
  run->progress = progress < 0 ? 0 : progress > 100 ? 100 : progress;
  tryon_utf8_copy(run->stage, sizeof run->stage, stage ? stage : "");
  free(run->checkpoint);
  run->checkpoint = checkpoint_json ? strdup(checkpoint_json) : NULL;
  run->cont = cont;
  tryon__run_submit(run, progress_fn, progress_done);
}

static void call_xfer_done(tryon_run *run, void *arg) {
  run->xfer_done(run, *(const CURLcode *)arg, run->xfer_ud);
}

void tryon__run_xfer_finished(tryon_runner *r, tryon_run *run, CURLcode code) {
  curl_multi_remove_handle(r->multi, run->easy);
  run->easy = NULL;
  TRYON__STATS_ADD(r, waiting, -1);
  if (run->lost) {
    tryon__run_drop(r, run, "lease lost");
    return;
  }
  tryon__run_call(run, call_xfer_done, &code);
}

void tryon_run_transfer(tryon_run *run, CURL *easy, tryon_run_transfer_done done, void *ud) {
  if (!step_ok(run, "transfer"))
    return;
  if (run->r->deadline_passed) { /* stopping, and out of grace: no new transfers */
    tryon__run_release(run);
    return;
  }
  run->stepped = true;
  run->state = TRYON__RUN_XFER;
  run->easy = easy;
  run->xfer_done = done;
  run->xfer_ud = ud;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)run);
  if (curl_multi_add_handle(run->r->multi, easy) != CURLM_OK) {
    run->easy = NULL;
    run->state = TRYON__RUN_CALLING;
    run->stepped = false;
    tryon_run_fail(run, "{\"code\":\"transfer\",\"message\":\"could not start a transfer\"}", true,
                   0);
    return;
  }
  TRYON__STATS_ADD(run->r, waiting, 1);
}

typedef struct succeed_tx {
  tryon_runner *r;
  tryon_run *run;
} succeed_tx;

static tryon_status succeed_body(tryon_db_conn *c, void *ud, tryon_err *err) {
  succeed_tx *s = ud;
  tryon_run *run = s->run;
  tryon_status st = run->db_fn ? run->db_fn(c, run, run->db_ud, err) : TRYON_OK;
  if (st == TRYON_OK)
    st = tryon_jobs_succeed(c, run->job.id, run->lease, run->result,
                            tryon_clock_now_ms(s->r->opt.clock), err);
  return st;
}

static tryon_status succeed_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  succeed_tx s = {r, TRYON__RUN_OF(t)};
  /* Without effects the single statement is its own transaction: one round trip. */
  if (s.run->db_fn == NULL)
    return succeed_body(c, &s, err);
  return tryon_db_tx(c, succeed_body, &s, err);
}

static void finish_log(tryon_run *run, const char *msg, tryon_log_level level) {
  int64_t ms = tryon_time_monotonic_ms() - run->started_mono;
  tryon__stats_duration(run->r, ms);
  if (tryon_log_enabled(level))
    tryon_log_write(
        level, msg,
        (tryon_log_field[]){TRYON_LF_STR("job", run->job.id), TRYON_LF_STR("kind", run->kind->name),
                            TRYON_LF_INT("attempt", run->job.attempts), TRYON_LF_INT("ms", ms)},
        4);
}

static void succeed_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = TRYON__RUN_OF(t);
  if (!tryon__run_written(r, run))
    return;
  finish_log(run, "job succeeded", TRYON_LOG_DEBUG);
  TRYON__STATS_ADD(r, succeeded, 1);
  tryon__run_free(r, run);
}

void tryon_run_succeed(tryon_run *run, const char *result_json, tryon_run_db_fn effects, void *ud) {
  if (!step_ok(run, "succeed"))
    return;
  free(run->result);
  run->result = result_json ? strdup(result_json) : NULL;
  run->db_fn = effects;
  run->db_ud = ud;
  tryon__run_submit(run, succeed_fn, succeed_done);
}

typedef struct fail_tx {
  tryon_runner *r;
  tryon_run *run;
  bool final;
} fail_tx;

static tryon_status fail_body(tryon_db_conn *c, void *ud, tryon_err *err) {
  fail_tx *f = ud;
  tryon_run *run = f->run;
  f->final = false;
  tryon_status st = tryon_jobs_fail(c, run->job.id, run->lease, run->error, run->retryable,
                                    run->kind->k.backoff_ms, run->retry_after_ms,
                                    tryon_clock_now_ms(f->r->opt.clock), &f->final, err);
  if (st == TRYON_OK && f->final && run->kind->k.on_final != NULL) {
    /* The hook sees the row as it is now: failed, with every checkpoint. */
    tryon_job j;
    memset(&j, 0, sizeof j);
    st = tryon_jobs_get(c, run->job.id, 0, &j, err);
    if (st == TRYON_OK)
      st = run->kind->k.on_final(c, &j, run->kind->k.ud, err);
    tryon_job_release(&j);
  }
  return st;
}

static tryon_status fail_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  fail_tx f = {r, TRYON__RUN_OF(t), false};
  tryon_status st = tryon_db_tx(c, fail_body, &f, err);
  TRYON__RUN_OF(t)->retryable = st == TRYON_OK && !f.final; /* reused as "was retried" */
  return st;
}

static void fail_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = TRYON__RUN_OF(t);
  if (!tryon__run_written(r, run))
    return;
  if (run->retryable) {
    finish_log(run, "job will retry", TRYON_LOG_INFO);
    TRYON__STATS_ADD(r, retried, 1);
  } else {
    finish_log(run, "job failed", TRYON_LOG_WARN);
    TRYON__STATS_ADD(r, failed, 1);
  }
  tryon__run_free(r, run);
}

void tryon_run_fail(tryon_run *run, const char *error_json, bool retryable,
                    int64_t retry_after_ms) {
  if (!step_ok(run, "fail"))
    return;
  free(run->error);
  run->error = strdup(error_json ? error_json : "{\"code\":\"failed\"}");
  run->retryable = retryable;
  run->retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
  tryon__run_submit(run, fail_fn, fail_done);
}
