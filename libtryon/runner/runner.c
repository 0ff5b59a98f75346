/*
 * The runner: set-up, the loop (curl_multi_poll over transfers, the listener's socket
 * and a wake eventfd, plus the timer heap), the drain, tear-down. The other parts are
 * in files of their own (CLAUDE.md lists them). See include/tryon/runner.h.
 *
 * Ownership: a run belongs to the loop from its claim until it ends; while one of its
 * DB tasks is on a DB thread the loop leaves it alone (its state is TRYON__RUN_DB), and runs
 * are freed only on the loop, after their last task came back. Timers and tasks are
 * embedded in the structs that own them, so arming either never allocates.
 */
#include <poll.h>
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
#define LOOP_TICK_MS 1000 /* the loop turns at least this often (health, stop flag) */
#define LISTEN_CONNECT_TIMEOUT_MS 10000

/* ----------------------------------------------------------------------- the drain */

static void drain_deadline(tryon_runner *r, tryon__timer *t) {
  (void)t;
  r->deadline_passed = true;
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (run->state != TRYON__RUN_XFER)
      continue;
    curl_multi_remove_handle(r->multi, run->easy);
    run->easy = NULL;
    TRYON__STATS_ADD(r, waiting, -1);
    run->state = TRYON__RUN_CALLING;
    run->stepped = false;
    tryon__run_release(run);
  }
}

static void begin_drain(tryon_runner *r) {
  r->draining = true;
  pthread_mutex_lock(&r->stats_mu);
  r->stats.stopping = true;
  pthread_mutex_unlock(&r->stats_mu);
  TRYON_LOG_INFO("stopping: releasing waiting jobs", TRYON_LF_INT("held", (int64_t)r->nruns),
                 TRYON_LF_INT("grace_ms", r->opt.grace_ms));
  tryon__timer_cancel(r, &r->poll_timer);
  tryon__timer_cancel(r, &r->reap_timer);
  for (size_t i = 0; i < r->nschedules; i++)
    tryon__timer_cancel(r, &r->schedules[i].timer);
  for (tryon_run *run = r->runs; run != NULL; run = run->next) {
    if (run->state != TRYON__RUN_TIMER)
      continue;
    TRYON__STATS_ADD(r, waiting, -1);
    run->state = TRYON__RUN_CALLING;
    run->stepped = false;
    tryon__run_release(run);
  }
  tryon__timer_arm(r, &r->drain_timer, r->opt.grace_ms, drain_deadline);
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
      tryon__run_xfer_finished(r, run, code);
    else
      curl_multi_remove_handle(r->multi, m->easy_handle);
  }
}

/* The loop proper: until a stop has drained every run and task. */
static void loop(tryon_runner *r) {
  for (;;) {
    if (atomic_load(&r->stop_requested) && !r->draining)
      begin_drain(r);
    if (r->draining && r->nruns == 0 && r->inflight == 0)
      break;
    tryon__claims_maybe(r);
    int64_t timeout = LOOP_TICK_MS;
    if (r->nheap > 0) {
      int64_t until = r->heap[0]->due - tryon_time_monotonic_ms();
      timeout = until < 0 ? 0 : until < timeout ? until : timeout;
    }
    bool up = tryon_db_listener_up(r->listener);
    if (!up) { /* connecting, or waiting to: the listener has deadlines of its own */
      int64_t lt = tryon_db_listener_timeout_ms(r->listener);
      timeout = lt >= 0 && lt < timeout ? lt : timeout;
    }
    struct curl_waitfd fds[2] = {{.fd = r->wake_fd, .events = CURL_WAIT_POLLIN}};
    unsigned nfds = 1;
    short want = 0;
    int lfd = tryon_db_listener_fd(r->listener, &want);
    if (lfd >= 0) {
      fds[1].fd = lfd;
      fds[1].events = (short)(((want & POLLIN) ? CURL_WAIT_POLLIN : 0) |
                              ((want & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
      nfds = 2;
    }
    curl_multi_poll(r->multi, fds, nfds, (int)timeout, NULL);
    if (fds[0].revents != 0) {
      uint64_t n;
      ssize_t got = read(r->wake_fd, &n, sizeof n);
      (void)got;
    }
    tryon__tasks_drain_done(r);
    short lrev = 0;
    if (nfds == 2)
      lrev = (short)(((fds[1].revents & CURL_WAIT_POLLIN) ? POLLIN : 0) |
                     ((fds[1].revents & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
    /* Up and quiet, the listener has nothing to do: no call on the busy path. */
    if (lrev != 0 || !up)
      tryon__listen_process(r, lrev);
    transfers_progress(r);
    tryon__timers_run_due(r);
    pthread_mutex_lock(&r->stats_mu);
    r->stats.loop_tick_ms = tryon_time_monotonic_ms();
    pthread_mutex_unlock(&r->stats_mu);
  }
}

tryon_status tryon_runner_run(tryon_runner *r, tryon_err *err) {
  tryon_status st = tryon__listen_open(r, err);
  if (st != TRYON_OK)
    goto out;
  st = tryon__threads_start(r, err);
  if (st != TRYON_OK) {
    tryon__listen_close(r);
    goto out;
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
  tryon__timer_arm(r, &r->poll_timer, r->opt.poll_ms, tryon__claims_poll_fired);
  tryon__timer_arm(r, &r->hb_timer, r->opt.lease_ms / 3, tryon__heartbeat_fired);
  tryon__timer_arm(r, &r->reap_timer, 0, tryon__reap_fired);
  for (size_t i = 0; i < r->nschedules; i++)
    tryon__timer_arm(r, &r->schedules[i].timer, 0, tryon__schedule_fired);

  loop(r);

  tryon__threads_stop(r);
  tryon__tasks_drain_done(r); /* nothing is left in flight, but be tidy */
  tryon__listen_close(r);
  TRYON_LOG_INFO("runner stopped");
out:
  return st;
}

void tryon_runner_stop(tryon_runner *r) {
  atomic_store(&r->stop_requested, 1); /* lock-free, so async-signal-safe */
  uint64_t one = 1;
  ssize_t w = write(r->wake_fd, &one, sizeof one); /* async-signal-safe */
  (void)w;
}

/* ------------------------------------------------------------------ set-up, tear-down */

static bool options_ok(const tryon_runner_options *opt) {
  return opt != NULL && opt->db != NULL && opt->conninfo != NULL && opt->concurrency >= 0 &&
         opt->db_threads >= 0 && opt->db_threads <= 64 && opt->lease_ms >= 0 &&
         (opt->lease_ms == 0 || opt->lease_ms >= 300) && opt->poll_ms >= 0 && opt->grace_ms >= 0 &&
         (opt->owner == NULL || (opt->owner[0] != '\0' && strlen(opt->owner) <= TRYON__OWNER_MAX));
}

tryon_status tryon_runner_new(const tryon_runner_options *opt, tryon_runner **out, tryon_err *err) {
  static const char *const channels[] = {"tryon_jobs", "tryon_wake", NULL};
  tryon_status st = TRYON_OK;
  tryon_runner *r = NULL;
  *out = NULL;
  if (!options_ok(opt)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid runner options");
    goto out;
  }
  r = calloc(1, sizeof *r);
  if (r == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
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
  r->poll_timer.idx = r->hb_timer.idx = r->reap_timer.idx = r->drain_timer.idx = SIZE_MAX;
  if (r->conninfo == NULL || r->wake_fd < 0 || r->multi == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "cannot set up the runner");
    goto out;
  }
  /* A bounded connect (10 s): a stop must not wait minutes on an unreachable server. */
  tryon_db_listener_options lo = {.conninfo = r->conninfo,
                                  .channels = channels,
                                  .connect_timeout_ms = LISTEN_CONNECT_TIMEOUT_MS,
                                  .application_name = "tryon-worker-listen"};
  st = tryon_db_listener_new(&lo, &r->listener, err);
  if (st != TRYON_OK)
    goto out;
  *out = r;
  r = NULL;
out:
  tryon_runner_free(r);
  return st;
}

tryon_status tryon_runner_add_kind(tryon_runner *r, const tryon_job_kind *kind, tryon_err *err) {
  tryon_status st = TRYON_OK;
  if (kind == NULL || !tryon_jobs_kind_valid(kind->name) || kind->start == NULL ||
      kind->backoff_ms < 0)
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid job kind");
  else if (tryon__runner_kind(r, kind->name) != NULL)
    st = tryon_err_set(err, TRYON_E_INVALID, "job kind %s is registered twice", kind->name);
  else if (r->nkinds == TRYON__RUNNER_MAX_KINDS)
    st = tryon_err_set(err, TRYON_E_INVALID, "too many job kinds");
  if (st != TRYON_OK)
    goto out;
  tryon__kind *k = &r->kinds[r->nkinds];
  k->k = *kind;
  snprintf(k->name, sizeof k->name, "%s", kind->name);
  k->k.name = k->name;
  r->kind_names[r->nkinds] = k->name;
  r->nkinds++;
  r->kind_names[r->nkinds] = NULL;
out:
  return st;
}

void tryon_runner_free(tryon_runner *r) {
  if (r == NULL)
    return;
  while (r->runs != NULL)
    tryon__run_free(r, r->runs);
  if (r->multi != NULL)
    curl_multi_cleanup(r->multi);
  if (r->wake_fd >= 0)
    close(r->wake_fd);
  tryon_db_listener_free(r->listener);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->stats_mu);
  free(r->heap);
  free(r->conninfo);
  free(r);
}

const tryon__kind *tryon__runner_kind(const tryon_runner *r, const char *name) {
  for (size_t i = 0; i < r->nkinds; i++) {
    if (strcmp(r->kinds[i].name, name) == 0)
      return &r->kinds[i];
  }
  return NULL;
}
