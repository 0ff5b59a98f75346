/*
 * The runner: one event loop (curl_multi_poll over transfers, the LISTEN socket and a
 * wake eventfd, plus a timer heap) and a few DB threads. See include/tryon/runner.h.
 *
 * Ownership: a run belongs to the loop from its claim until it ends; while one of its
 * DB tasks is on a DB thread the loop leaves it alone (its state is RUN_DB), and runs
 * are freed only on the loop, after their last task came back. Timers and tasks are
 * embedded in the structs that own them, so arming either never allocates.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "runner_internal.h"

#define DEFAULT_CONCURRENCY 100
#define DEFAULT_DB_THREADS 4
#define DEFAULT_LEASE_MS 60000
#define DEFAULT_POLL_MS 5000
#define DEFAULT_GRACE_MS 20000
#define CLAIM_BATCH 64
#define LOOP_TICK_MS 1000 /* the loop turns at least this often (health, stop flag) */
#define LISTEN_BACKOFF_MAX_MS 30000

/* ------------------------------------------------------------------------- timers */

static void heap_swap(tryon_runner *r, size_t a, size_t b) {
  tryon__timer *t = r->heap[a];
  r->heap[a] = r->heap[b];
  r->heap[b] = t;
  r->heap[a]->idx = a;
  r->heap[b]->idx = b;
}

static void heap_up(tryon_runner *r, size_t i) {
  while (i > 0 && r->heap[(i - 1) / 2]->due > r->heap[i]->due) {
    heap_swap(r, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(tryon_runner *r, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < r->nheap && r->heap[l]->due < r->heap[m]->due)
      m = l;
    if (l + 1 < r->nheap && r->heap[l + 1]->due < r->heap[m]->due)
      m = l + 1;
    if (m == i)
      return;
    heap_swap(r, i, m);
    i = m;
  }
}

static void timer_cancel(tryon_runner *r, tryon__timer *t) {
  if (t->idx == SIZE_MAX)
    return;
  size_t i = t->idx;
  r->nheap--;
  if (i != r->nheap) {
    r->heap[i] = r->heap[r->nheap];
    r->heap[i]->idx = i;
    heap_down(r, i);
    heap_up(r, i);
  }
  t->idx = SIZE_MAX;
}

/* Arms (or re-arms) `t` to fire `ms` from now. false when memory ran out. */
static bool timer_arm(tryon_runner *r, tryon__timer *t, int64_t ms, tryon__timer_fn fire) {
  timer_cancel(r, t);
  if (r->nheap == r->capheap) {
    size_t cap = r->capheap ? r->capheap * 2 : 64;
    tryon__timer **h = realloc(r->heap, cap * sizeof *h);
    if (h == NULL)
      return false;
    r->heap = h;
    r->capheap = cap;
  }
  t->due = tryon_time_monotonic_ms() + (ms > 0 ? ms : 0);
  t->fire = fire;
  t->idx = r->nheap;
  r->heap[r->nheap++] = t;
  heap_up(r, t->idx);
  return true;
}

static void timers_run_due(tryon_runner *r) {
  int64_t now = tryon_time_monotonic_ms();
  while (r->nheap > 0 && r->heap[0]->due <= now) {
    tryon__timer *t = r->heap[0];
    timer_cancel(r, t);
    t->fire(r, t);
  }
}

/* --------------------------------------------------------------------- DB threads */

static void wake(tryon_runner *r) {
  uint64_t one = 1;
  /* A full counter already means "wake up": nothing to do on EAGAIN. */
  ssize_t w = write(r->wake_fd, &one, sizeof one);
  (void)w;
}

void tryon__runner_submit(tryon_runner *r, tryon__task *t) {
  t->next = NULL;
  t->st = TRYON_OK;
  tryon_err_clear(&t->err);
  r->inflight++;
  pthread_mutex_lock(&r->mu);
  if (r->todo_tail != NULL)
    r->todo_tail->next = t;
  else
    r->todo_head = t;
  r->todo_tail = t;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void tryon__runner_submit_urgent(tryon_runner *r, tryon__task *t) {
  t->st = TRYON_OK;
  tryon_err_clear(&t->err);
  r->inflight++;
  pthread_mutex_lock(&r->mu);
  t->next = r->todo_head;
  r->todo_head = t;
  if (r->todo_tail == NULL)
    r->todo_tail = t;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void *db_thread(void *arg) {
  tryon_runner *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->todo_head == NULL && !r->quit)
      pthread_cond_wait(&r->cv, &r->mu);
    tryon__task *t = r->todo_head;
    if (t == NULL) { /* quitting with nothing left */
      pthread_mutex_unlock(&r->mu);
      return NULL;
    }
    r->todo_head = t->next;
    if (r->todo_head == NULL)
      r->todo_tail = NULL;
    pthread_mutex_unlock(&r->mu);

    tryon_db_conn *c = NULL;
    t->st = t->no_conn ? TRYON_OK : tryon_db_acquire(r->opt.db, &c, &t->err);
    if (t->st == TRYON_OK)
      t->st = t->fn(r, c, t, &t->err);
    tryon_db_release(c);

    pthread_mutex_lock(&r->mu);
    t->next = r->done_list;
    r->done_list = t;
    pthread_mutex_unlock(&r->mu);
    wake(r);
  }
}

static void tasks_drain_done(tryon_runner *r) {
  pthread_mutex_lock(&r->mu);
  tryon__task *list = r->done_list;
  r->done_list = NULL;
  pthread_mutex_unlock(&r->mu);
  tryon__task *fifo = NULL; /* the list is newest first: turn it around */
  while (list != NULL) {
    tryon__task *n = list->next;
    list->next = fifo;
    fifo = list;
    list = n;
  }
  while (fifo != NULL) {
    tryon__task *t = fifo;
    fifo = t->next;
    r->inflight--;
    t->done(r, t);
  }
}

/* ------------------------------------------------------------------------- stats */

#define STATS_ADD(r, field, n)            \
  do {                                    \
    pthread_mutex_lock(&(r)->stats_mu);   \
    (r)->stats.field += (n);              \
    pthread_mutex_unlock(&(r)->stats_mu); \
  } while (0)

static void stats_duration(tryon_runner *r, int64_t ms) {
  static const int64_t le[6] = {100, 1000, 5000, 30000, 120000, 600000};
  pthread_mutex_lock(&r->stats_mu);
  r->stats.duration_count++;
  r->stats.duration_ms_sum += ms;
  for (size_t i = 0; i < 6; i++) {
    if (ms <= le[i])
      r->stats.duration_le[i]++;
  }
  pthread_mutex_unlock(&r->stats_mu);
}

void tryon_runner_stats_get(tryon_runner *r, tryon_runner_stats *out) {
  pthread_mutex_lock(&r->stats_mu);
  *out = r->stats;
  pthread_mutex_unlock(&r->stats_mu);
}

/* -------------------------------------------------------------------------- runs */

const tryon__kind *tryon__runner_kind(const tryon_runner *r, const char *name) {
  for (size_t i = 0; i < r->nkinds; i++) {
    if (strcmp(r->kinds[i].name, name) == 0)
      return &r->kinds[i];
  }
  return NULL;
}

static void http_free_with_run(tryon_run *run);

static void run_free(tryon_runner *r, tryon_run *run) {
  if (run->prev != NULL)
    run->prev->next = run->next;
  else
    r->runs = run->next;
  if (run->next != NULL)
    run->next->prev = run->prev;
  r->nruns--;
  timer_cancel(r, &run->timer);
  http_free_with_run(run);
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
  /* 250 ms, 1 s, 4 s; the run stays RUN_DB, so nothing else touches it meanwhile. */
  return timer_arm(r, &run->timer, 250LL << (2 * (run->write_tries - 1)), write_again);
}

/* Ends a run without writing to its job: the lease will bring it back (abandoned) or
 * another worker already has it (lost). */
static void run_drop(tryon_runner *r, tryon_run *run, const char *why) {
  TRYON_LOG_WARN("job dropped", TRYON_LF_STR("job", run->job.id),
                 TRYON_LF_STR("kind", run->kind->name), TRYON_LF_STR("reason", why));
  if (run->lost)
    STATS_ADD(r, lost, 1);
  else
    STATS_ADD(r, abandoned, 1);
  run_free(r, run);
}

static void run_submit(tryon_run *run,
                       tryon_status (*fn)(tryon_runner *, tryon_db_conn *, tryon__task *,
                                          tryon_err *),
                       void (*done)(tryon_runner *, tryon__task *)) {
  run->stepped = true;
  run->state = RUN_DB;
  run->task.fn = fn;
  run->task.done = done;
  run->task.no_conn = run->work_next; /* tryon_run_work's steps need no connection */
  run->work_next = false;
  tryon__runner_submit(run->r, &run->task);
}

#define RUN_OF(t) ((tryon_run *)((char *)(t)-offsetof(tryon_run, task)))

/* Calls a handler function and checks that it chose a step. */
static void run_call(tryon_run *run, void (*call)(tryon_run *, void *), void *arg);

/* release: the job goes back to the queue without spending its attempt */
static tryon_status release_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  tryon_run *run = RUN_OF(t);
  return tryon_jobs_release(c, run->job.id, run->lease, tryon_clock_now_ms(r->opt.clock), err);
}

static void release_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = RUN_OF(t);
  if (retry_write(r, run, t->st))
    return;
  if (t->st == TRYON_OK) {
    TRYON_LOG_INFO("job released", TRYON_LF_STR("job", run->job.id),
                   TRYON_LF_STR("kind", run->kind->name));
    STATS_ADD(r, released, 1);
    run_free(r, run);
  } else {
    run_drop(r, run, tryon_err_message(&t->err));
  }
}

static void run_release(tryon_run *run) {
  timer_cancel(run->r, &run->timer);
  run_submit(run, release_fn, release_done);
}

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
  if (run->state == RUN_CALLING && !run->stepped)
    return true;
  TRYON_LOG_ERROR("handler chose a second step", TRYON_LF_STR("job", run->job.id),
                  TRYON_LF_STR("kind", run->kind->name), TRYON_LF_STR("step", step));
  return false;
}

static void call_cont(tryon_run *run, void *arg) {
  (void)arg;
  run->cont(run);
}

static void sleep_fired(tryon_runner *r, tryon__timer *t) {
  tryon_run *run = (tryon_run *)((char *)t - offsetof(tryon_run, timer));
  STATS_ADD(r, waiting, -1);
  run_call(run, call_cont, NULL);
}

void tryon_run_sleep(tryon_run *run, int64_t ms, tryon_run_fn cont) {
  if (!step_ok(run, "sleep"))
    return;
  if (run->r->draining) {
    run_release(run);
    return;
  }
  run->stepped = true;
  run->state = RUN_TIMER;
  run->cont = cont;
  if (run->wake_pending) { /* woken while it was busy: this wait is already over */
    run->wake_pending = false;
    ms = 0;
  }
  if (!timer_arm(run->r, &run->timer, ms, sleep_fired))
    run_release(run);
  else
    STATS_ADD(run->r, waiting, 1);
}

static tryon_status step_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  (void)r;
  tryon_run *run = RUN_OF(t);
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
  tryon_run *run = RUN_OF(t);
  if (run->lost) {
    run_drop(r, run, "lease lost");
    return;
  }
  step_result sr = {t->st, &t->err};
  run_call(run, call_db_done, &sr);
}

void tryon_run_db(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud) {
  if (!step_ok(run, "db"))
    return;
  run->db_fn = fn;
  run->db_done = done;
  run->db_ud = ud;
  run_submit(run, step_fn, step_done);
}

void tryon_run_work(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud) {
  if (!step_ok(run, "work"))
    return;
  run->db_fn = fn;
  run->db_done = done;
  run->db_ud = ud;
  run->work_next = true;
  run_submit(run, step_fn, step_done);
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
static void http_free_with_run(tryon_run *run) {
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
  tryon_run *run = RUN_OF(t);
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
  tryon_run *run = RUN_OF(t);
  if (retry_write(r, run, t->st))
    return;
  run->write_tries = 0;
  if (t->st != TRYON_OK) {
    run->lost = run->lost || t->st == TRYON_E_CONFLICT;
    run_drop(r, run, tryon_err_message(&t->err));
    return;
  }
  merge_checkpoint(run);
  run_call(run, call_cont, NULL);
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
  run_submit(run, progress_fn, progress_done);
}

static void call_xfer_done(tryon_run *run, void *arg) {
  run->xfer_done(run, *(const CURLcode *)arg, run->xfer_ud);
}

static void xfer_finished(tryon_runner *r, tryon_run *run, CURLcode code) {
  curl_multi_remove_handle(r->multi, run->easy);
  run->easy = NULL;
  STATS_ADD(r, waiting, -1);
  if (run->lost) {
    run_drop(r, run, "lease lost");
    return;
  }
  run_call(run, call_xfer_done, &code);
}

void tryon_run_transfer(tryon_run *run, CURL *easy, tryon_run_transfer_done done, void *ud) {
  if (!step_ok(run, "transfer"))
    return;
  if (run->r->deadline_passed) { /* stopping, and out of grace: no new transfers */
    run_release(run);
    return;
  }
  run->stepped = true;
  run->state = RUN_XFER;
  run->easy = easy;
  run->xfer_done = done;
  run->xfer_ud = ud;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)run);
  if (curl_multi_add_handle(run->r->multi, easy) != CURLM_OK) {
    run->easy = NULL;
    run->state = RUN_CALLING;
    run->stepped = false;
    tryon_run_fail(run, "{\"code\":\"transfer\",\"message\":\"could not start a transfer\"}", true,
                   0);
    return;
  }
  STATS_ADD(run->r, waiting, 1);
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
  succeed_tx s = {r, RUN_OF(t)};
  /* Without effects the single statement is its own transaction: one round trip. */
  if (s.run->db_fn == NULL)
    return succeed_body(c, &s, err);
  return tryon_db_tx(c, succeed_body, &s, err);
}

static void finish_log(tryon_run *run, const char *msg, tryon_log_level level) {
  int64_t ms = tryon_time_monotonic_ms() - run->started_mono;
  stats_duration(run->r, ms);
  if (tryon_log_enabled(level))
    tryon_log_write(
        level, msg,
        (tryon_log_field[]){TRYON_LF_STR("job", run->job.id), TRYON_LF_STR("kind", run->kind->name),
                            TRYON_LF_INT("attempt", run->job.attempts), TRYON_LF_INT("ms", ms)},
        4);
}

static void succeed_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = RUN_OF(t);
  if (retry_write(r, run, t->st))
    return;
  if (t->st != TRYON_OK) {
    run->lost = run->lost || t->st == TRYON_E_CONFLICT;
    run_drop(r, run, tryon_err_message(&t->err));
    return;
  }
  finish_log(run, "job succeeded", TRYON_LOG_DEBUG);
  STATS_ADD(r, succeeded, 1);
  run_free(r, run);
}

void tryon_run_succeed(tryon_run *run, const char *result_json, tryon_run_db_fn effects, void *ud) {
  if (!step_ok(run, "succeed"))
    return;
  free(run->result);
  run->result = result_json ? strdup(result_json) : NULL;
  run->db_fn = effects;
  run->db_ud = ud;
  run_submit(run, succeed_fn, succeed_done);
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
  fail_tx f = {r, RUN_OF(t), false};
  tryon_status st = tryon_db_tx(c, fail_body, &f, err);
  RUN_OF(t)->retryable = st == TRYON_OK && !f.final; /* reused as "was retried" */
  return st;
}

static void fail_done(tryon_runner *r, tryon__task *t) {
  tryon_run *run = RUN_OF(t);
  if (retry_write(r, run, t->st))
    return;
  if (t->st != TRYON_OK) {
    run->lost = run->lost || t->st == TRYON_E_CONFLICT;
    run_drop(r, run, tryon_err_message(&t->err));
    return;
  }
  if (run->retryable) {
    finish_log(run, "job will retry", TRYON_LOG_INFO);
    STATS_ADD(r, retried, 1);
  } else {
    finish_log(run, "job failed", TRYON_LOG_WARN);
    STATS_ADD(r, failed, 1);
  }
  run_free(r, run);
}

void tryon_run_fail(tryon_run *run, const char *error_json, bool retryable,
                    int64_t retry_after_ms) {
  if (!step_ok(run, "fail"))
    return;
  free(run->error);
  run->error = strdup(error_json ? error_json : "{\"code\":\"failed\"}");
  run->retryable = retryable;
  run->retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
  run_submit(run, fail_fn, fail_done);
}

static void run_call(tryon_run *run, void (*call)(tryon_run *, void *), void *arg) {
  run->state = RUN_CALLING;
  run->stepped = false;
  call(run, arg);
  if (!run->stepped) {
    TRYON_LOG_ERROR("handler returned without a next step", TRYON_LF_STR("job", run->job.id),
                    TRYON_LF_STR("kind", run->kind->name));
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"the job stopped without finishing\"}",
                   false, 0);
  }
}

/* ------------------------------------------------------------------------- claims */

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
    run->state = RUN_CALLING;
    run_release(run);
    return;
  }
  run_call(run, call_start, NULL);
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

static void maybe_claim(tryon_runner *r) {
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

static void poll_fired(tryon_runner *r, tryon__timer *t) {
  r->want_claim = true;
  timer_arm(r, t, r->opt.poll_ms, poll_fired);
}

/* --------------------------------------------------------------------- heartbeats */

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
      if (run->state == RUN_TIMER) {
        timer_cancel(r, &run->timer);
        STATS_ADD(r, waiting, -1);
        run_drop(r, run, "lease lost");
      } else if (run->state == RUN_XFER) {
        curl_multi_remove_handle(r->multi, run->easy);
        run->easy = NULL;
        STATS_ADD(r, waiting, -1);
        run_drop(r, run, "lease lost");
      }
      break;
    }
  }
  hb_free(h);
}

static void hb_fired(tryon_runner *r, tryon__timer *t) {
  timer_arm(r, t, r->opt.lease_ms / 3, hb_fired);
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

/* ------------------------------------------------------------------------ reaping */

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
  PGresult *res = NULL;
  tryon_reap_options o = {.kinds = r->kind_names, .on_final = reap_hook, .ud = r};
  tryon_status st =
      tryon_jobs_reap(c, &o, tryon_clock_now_ms(r->opt.clock), &rt->requeued, &rt->failed, err);
  if (st != TRYON_OK)
    return st;
  /* Queue depth for the metrics: both counts walk the partial state indexes. */
  st = tryon_db_exec(c,
                     "SELECT (SELECT count(*) FROM jobs WHERE state = 'queued'),"
                     " (SELECT count(*) FROM jobs WHERE state = 'running')",
                     0, NULL, &res, err);
  if (st == TRYON_OK) {
    rt->queued = tryon_db_get_i64(res, 0, 0);
    rt->running = tryon_db_get_i64(res, 0, 1);
  }
  PQclear(res);
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

static void reap_fired(tryon_runner *r, tryon__timer *t) {
  timer_arm(r, t, r->opt.lease_ms / 2, reap_fired);
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

/* -------------------------------------------------------------------- housekeeping */

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

static void sched_fired(tryon_runner *r, tryon__timer *t) {
  tryon__schedule *s = (tryon__schedule *)t;
  int64_t now = tryon_clock_now_ms(r->opt.clock);
  int64_t slot = now / s->interval_ms;
  timer_arm(r, t, (slot + 1) * s->interval_ms - now, sched_fired);
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

/* ------------------------------------------------------------ the LISTEN connection */

static tryon_status listen_connect(const char *conninfo, PGconn **out, tryon_err *err) {
  /* A bounded connect: a stop must not wait minutes on an unreachable server. */
  const char *const keys[] = {"dbname", "connect_timeout", NULL};
  const char *const vals[] = {conninfo, "10", NULL};
  PGconn *pg = PQconnectdbParams(keys, vals, 1);
  PGresult *res = NULL;
  tryon_status st = TRYON_OK;
  if (PQstatus(pg) != CONNECTION_OK) {
    st = tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "cannot open the listen connection");
    goto out;
  }
  res = PQexec(pg, "LISTEN tryon_jobs; LISTEN tryon_wake");
  if (PQresultStatus(res) != PGRES_COMMAND_OK || PQsetnonblocking(pg, 1) != 0) {
    st = tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "cannot listen for jobs");
    goto out;
  }
  *out = pg;
  pg = NULL;
out:
  PQclear(res);
  PQfinish(pg);
  return st;
}

typedef struct listen_task {
  tryon__task t; /* first */
  PGconn *pg;
} listen_task;

static tryon_status listen_fn(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err) {
  (void)c; /* the pooled connection is not used: LISTEN needs one of its own */
  return listen_connect(r->conninfo, &((listen_task *)t)->pg, err);
}

static void listen_retry(tryon_runner *r, tryon__timer *t);

static void set_listening(tryon_runner *r, bool on) {
  pthread_mutex_lock(&r->stats_mu);
  r->stats.listening = on;
  pthread_mutex_unlock(&r->stats_mu);
}

static void listen_done(tryon_runner *r, tryon__task *t) {
  listen_task *lt = (listen_task *)t;
  r->listen_pending = false;
  if (t->st == TRYON_OK && !r->draining) {
    r->listen = lt->pg;
    r->listen_backoff_ms = 0;
    r->want_claim = true; /* notifications may have been missed meanwhile */
    set_listening(r, true);
    TRYON_LOG_INFO("listening for jobs again");
  } else {
    PQfinish(lt->pg);
    if (!r->draining)
      timer_arm(r, &r->listen_timer, r->listen_backoff_ms, listen_retry);
  }
  free(lt);
}

static void listen_retry(tryon_runner *r, tryon__timer *t) {
  (void)t;
  listen_task *lt = calloc(1, sizeof *lt);
  if (lt == NULL || r->draining) {
    free(lt);
    return;
  }
  r->listen_pending = true;
  lt->t.fn = listen_fn;
  lt->t.done = listen_done;
  tryon__runner_submit(r, &lt->t);
}

static void listen_lost(tryon_runner *r) {
  TRYON_LOG_WARN("lost the listen connection; polling until it is back");
  PQfinish(r->listen);
  r->listen = NULL;
  set_listening(r, false);
  r->listen_backoff_ms =
      r->listen_backoff_ms ? r->listen_backoff_ms * 2 : 500; /* 0.5 s, 1 s … 30 s */
  if (r->listen_backoff_ms > LISTEN_BACKOFF_MAX_MS)
    r->listen_backoff_ms = LISTEN_BACKOFF_MAX_MS;
  timer_arm(r, &r->listen_timer, r->listen_backoff_ms, listen_retry);
}

/* NOTIFY tryon_wake, '<job id>': the job's wait is over early (a provider's callback
 * says its task has news). Only a run waiting on a timer is woken; anything else
 * carries on as it was, so a wake-up is always safe to send, and to send twice. */
static void wake_run(tryon_runner *r, const char *job_id) {
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (strcmp(run->job.id, job_id) != 0 || run->lost)
      continue;
    TRYON_LOG_INFO("job woken early", TRYON_LF_STR("job", job_id));
    if (run->state == RUN_TIMER)
      timer_arm(r, &run->timer, 0, sleep_fired);
    else
      run->wake_pending = true; /* mid-step: its next wait ends at once */
  }
}

static void listen_read(tryon_runner *r) {
  if (PQconsumeInput(r->listen) == 0 || PQstatus(r->listen) != CONNECTION_OK) {
    listen_lost(r);
    return;
  }
  PGnotify *note;
  while ((note = PQnotifies(r->listen)) != NULL) {
    if (strcmp(note->relname, "tryon_wake") == 0) {
      wake_run(r, note->extra);
    } else if (tryon__runner_kind(r, note->extra) != NULL) {
      r->want_claim = true;
      r->backlog = true; /* if there is no room now, claim when there is */
    }
    PQfreemem(note);
  }
}

/* ----------------------------------------------------------------------- the drain */

static void drain_deadline(tryon_runner *r, tryon__timer *t) {
  (void)t;
  r->deadline_passed = true;
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (run->state != RUN_XFER)
      continue;
    curl_multi_remove_handle(r->multi, run->easy);
    run->easy = NULL;
    STATS_ADD(r, waiting, -1);
    run->state = RUN_CALLING;
    run->stepped = false;
    run_release(run);
  }
}

static void begin_drain(tryon_runner *r) {
  r->draining = true;
  pthread_mutex_lock(&r->stats_mu);
  r->stats.stopping = true;
  pthread_mutex_unlock(&r->stats_mu);
  TRYON_LOG_INFO("stopping: releasing waiting jobs", TRYON_LF_INT("held", (int64_t)r->nruns),
                 TRYON_LF_INT("grace_ms", r->opt.grace_ms));
  timer_cancel(r, &r->poll_timer);
  timer_cancel(r, &r->reap_timer);
  timer_cancel(r, &r->listen_timer);
  for (size_t i = 0; i < r->nschedules; i++)
    timer_cancel(r, &r->schedules[i].timer);
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (run->state != RUN_TIMER)
      continue;
    STATS_ADD(r, waiting, -1);
    run->state = RUN_CALLING;
    run->stepped = false;
    run_release(run);
  }
  timer_arm(r, &r->drain_timer, r->opt.grace_ms, drain_deadline);
}

/* -------------------------------------------------------------------------- the loop */

static void transfers_progress(tryon_runner *r) {
  int still = 0;
  curl_multi_perform(r->multi, &still);
  CURLMsg *m;
  int left = 0;
  while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    tryon_run *run = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&run);
    CURLcode code = m->data.result;
    if (run != NULL && run->easy == m->easy_handle)
      xfer_finished(r, run, code);
    else
      curl_multi_remove_handle(r->multi, m->easy_handle);
  }
}

tryon_status tryon_runner_run(tryon_runner *r, tryon_err *err) {
  tryon_status st = listen_connect(r->conninfo, &r->listen, err);
  if (st != TRYON_OK)
    return st;
  set_listening(r, true);
  r->threads = calloc((size_t)r->opt.db_threads, sizeof *r->threads);
  if (r->threads == NULL) {
    PQfinish(r->listen);
    r->listen = NULL;
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  }
  for (r->nthreads = 0; r->nthreads < r->opt.db_threads; r->nthreads++) {
    if (pthread_create(&r->threads[r->nthreads], NULL, db_thread, r) != 0)
      break;
  }
  if (r->nthreads == 0) {
    free(r->threads);
    r->threads = NULL;
    PQfinish(r->listen);
    r->listen = NULL;
    return tryon_err_set(err, TRYON_E_INTERNAL, "cannot start database threads");
  }
  /* Room for every run's timer and the runner's own: arming never allocates later. */
  size_t want = (size_t)r->opt.concurrency + 8 + r->nschedules;
  tryon__timer **heap = realloc(r->heap, want * sizeof *heap);
  if (heap != NULL) {
    r->heap = heap;
    r->capheap = want;
  }
  TRYON_LOG_INFO(
      "runner started", TRYON_LF_STR("owner", r->owner), TRYON_LF_INT("kinds", (int64_t)r->nkinds),
      TRYON_LF_INT("concurrency", r->opt.concurrency), TRYON_LF_INT("db_threads", r->nthreads));
  r->want_claim = true;
  timer_arm(r, &r->poll_timer, r->opt.poll_ms, poll_fired);
  timer_arm(r, &r->hb_timer, r->opt.lease_ms / 3, hb_fired);
  timer_arm(r, &r->reap_timer, 0, reap_fired);
  for (size_t i = 0; i < r->nschedules; i++)
    timer_arm(r, &r->schedules[i].timer, 0, sched_fired);

  for (;;) {
    if (atomic_load(&r->stop_requested) && !r->draining)
      begin_drain(r);
    if (r->draining && r->nruns == 0 && r->inflight == 0)
      break;
    maybe_claim(r);
    int64_t timeout = LOOP_TICK_MS;
    if (r->nheap > 0) {
      int64_t until = r->heap[0]->due - tryon_time_monotonic_ms();
      timeout = until < 0 ? 0 : until < timeout ? until : timeout;
    }
    struct curl_waitfd fds[2] = {{.fd = r->wake_fd, .events = CURL_WAIT_POLLIN}};
    unsigned nfds = 1;
    if (r->listen != NULL) {
      fds[1].fd = PQsocket(r->listen);
      fds[1].events = CURL_WAIT_POLLIN;
      nfds = 2;
    }
    curl_multi_poll(r->multi, fds, nfds, (int)timeout, NULL);
    if (fds[0].revents != 0) {
      uint64_t n;
      ssize_t got = read(r->wake_fd, &n, sizeof n);
      (void)got;
    }
    tasks_drain_done(r);
    if (r->listen != NULL && nfds == 2 && fds[1].revents != 0)
      listen_read(r);
    transfers_progress(r);
    timers_run_due(r);
    pthread_mutex_lock(&r->stats_mu);
    r->stats.loop_tick_ms = tryon_time_monotonic_ms();
    pthread_mutex_unlock(&r->stats_mu);
  }

  pthread_mutex_lock(&r->mu);
  r->quit = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < r->nthreads; i++)
    pthread_join(r->threads[i], NULL);
  free(r->threads);
  r->threads = NULL;
  r->nthreads = 0;
  tasks_drain_done(r); /* nothing is left in flight, but be tidy */
  PQfinish(r->listen);
  r->listen = NULL;
  set_listening(r, false);
  TRYON_LOG_INFO("runner stopped");
  return TRYON_OK;
}

void tryon_runner_stop(tryon_runner *r) {
  atomic_store(&r->stop_requested, 1); /* lock-free, so async-signal-safe */
  uint64_t one = 1;
  ssize_t w = write(r->wake_fd, &one, sizeof one); /* async-signal-safe */
  (void)w;
}

/* ------------------------------------------------------------------ set-up, tear-down */

tryon_status tryon_runner_new(const tryon_runner_options *opt, tryon_runner **out, tryon_err *err) {
  tryon_runner *r = NULL;
  *out = NULL;
  if (opt == NULL || opt->db == NULL || opt->conninfo == NULL || opt->concurrency < 0 ||
      opt->db_threads < 0 || opt->db_threads > 64 || opt->lease_ms < 0 ||
      (opt->lease_ms > 0 && opt->lease_ms < 300) || opt->poll_ms < 0 || opt->grace_ms < 0 ||
      (opt->owner != NULL && (opt->owner[0] == '\0' || strlen(opt->owner) > TRYON__OWNER_MAX)))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid runner options");
  r = calloc(1, sizeof *r);
  if (r == NULL)
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  r->opt = *opt;
  if (r->opt.concurrency == 0)
    r->opt.concurrency = DEFAULT_CONCURRENCY;
  if (r->opt.db_threads == 0)
    r->opt.db_threads = DEFAULT_DB_THREADS;
  if (r->opt.lease_ms == 0)
    r->opt.lease_ms = DEFAULT_LEASE_MS;
  if (r->opt.poll_ms == 0)
    r->opt.poll_ms = DEFAULT_POLL_MS;
  if (r->opt.grace_ms == 0)
    r->opt.grace_ms = DEFAULT_GRACE_MS;
  if (opt->owner != NULL) {
    snprintf(r->owner, sizeof r->owner, "%s", opt->owner);
  } else {
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(r->owner, sizeof r->owner, "%.28s:%d", host[0] ? host : "worker", (int)getpid());
  }
  r->opt.owner = r->owner;
  r->conninfo = strdup(opt->conninfo);
  r->opt.conninfo = r->conninfo;
  r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  r->multi = curl_multi_init();
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  pthread_mutex_init(&r->stats_mu, NULL);
  r->poll_timer.idx = r->hb_timer.idx = r->reap_timer.idx = SIZE_MAX;
  r->drain_timer.idx = r->listen_timer.idx = SIZE_MAX;
  if (r->conninfo == NULL || r->wake_fd < 0 || r->multi == NULL) {
    tryon_runner_free(r);
    return tryon_err_set(err, TRYON_E_NOMEM, "cannot set up the runner");
  }
  *out = r;
  return TRYON_OK;
}

tryon_status tryon_runner_add_kind(tryon_runner *r, const tryon_job_kind *kind, tryon_err *err) {
  if (kind == NULL || !tryon_jobs_kind_valid(kind->name) || kind->start == NULL ||
      kind->backoff_ms < 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid job kind");
  if (tryon__runner_kind(r, kind->name) != NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "job kind %s is registered twice", kind->name);
  if (r->nkinds == TRYON__RUNNER_MAX_KINDS)
    return tryon_err_set(err, TRYON_E_INVALID, "too many job kinds");
  tryon__kind *k = &r->kinds[r->nkinds];
  k->k = *kind;
  snprintf(k->name, sizeof k->name, "%s", kind->name);
  k->k.name = k->name;
  r->kind_names[r->nkinds] = k->name;
  r->nkinds++;
  r->kind_names[r->nkinds] = NULL;
  return TRYON_OK;
}

tryon_status tryon_runner_schedule(tryon_runner *r, const char *kind, int64_t interval_ms,
                                   tryon_err *err) {
  const tryon__kind *k = kind ? tryon__runner_kind(r, kind) : NULL;
  if (k == NULL || interval_ms < 1000)
    return tryon_err_set(err, TRYON_E_INVALID, "schedule an registered kind, every 1 s or more");
  if (r->nschedules == TRYON__RUNNER_MAX_SCHEDULES)
    return tryon_err_set(err, TRYON_E_INVALID, "too many schedules");
  tryon__schedule *s = &r->schedules[r->nschedules++];
  s->kind = k;
  s->interval_ms = interval_ms;
  s->timer.idx = SIZE_MAX;
  return TRYON_OK;
}

void tryon_runner_free(tryon_runner *r) {
  if (r == NULL)
    return;
  while (r->runs != NULL)
    run_free(r, r->runs);
  if (r->multi != NULL)
    curl_multi_cleanup(r->multi);
  if (r->wake_fd >= 0)
    close(r->wake_fd);
  PQfinish(r->listen);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->stats_mu);
  free(r->heap);
  free(r->conninfo);
  free(r);
}
