/*
 * Shared between the runner's files: the run, the runner, DB tasks and timers, and the
 * functions one part of the runner calls in another. Everything here is touched on the
 * loop thread only, except where a field says otherwise (DB threads see a task's
 * fn/arguments while it is in their hands, and the locked queues).
 *
 * Files: runner.c (set-up, the loop, the drain, tear-down), timers.c, tasks.c (DB
 * threads), listen.c (the listener's notifications), claims.c, run.c (a run's life),
 * steps.c (section 3 of runner.h), heartbeat.c, reaper.c, schedule.c, stats.c, kinds.c
 * (section 4).
 */
#ifndef TRYON_RUNNER_INTERNAL_H
#define TRYON_RUNNER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <tryon/runner.h>

#define TRYON__RUNNER_MAX_KINDS 32
#define TRYON__OWNER_MAX 40 /* a worker's name; its leases add "#<claim number>" */
#define TRYON__LEASE_MAX 64
#define TRYON__RUNNER_MAX_SCHEDULES 8

typedef struct tryon__timer tryon__timer;
typedef void (*tryon__timer_fn)(tryon_runner *r, tryon__timer *t);
struct tryon__timer {
  int64_t due; /* monotonic ms */
  size_t idx;  /* place in the heap; SIZE_MAX while not armed */
  tryon__timer_fn fire;
};

/* Database work handed to a DB thread; `fn` runs there, `done` back on the loop. */
typedef struct tryon__task tryon__task;
struct tryon__task {
  tryon__task *next;
  tryon_status (*fn)(tryon_runner *r, tryon_db_conn *c, tryon__task *t, tryon_err *err);
  void (*done)(tryon_runner *r, tryon__task *t);
  tryon_status st;
  tryon_err err;
  bool no_conn; /* run fn without leasing a connection (c is NULL) */
};

typedef struct tryon__kind {
  tryon_job_kind k;
  char name[65];
} tryon__kind;

typedef enum tryon__run_state {
  TRYON__RUN_CALLING, /* inside the handler: it must choose a step */
  TRYON__RUN_TIMER,
  TRYON__RUN_DB,
  TRYON__RUN_XFER,
} tryon__run_state;

struct tryon_run {
  tryon_runner *r;
  tryon_run *prev, *next; /* the runner's list of held jobs */
  const tryon__kind *kind;
  tryon_job job;
  cJSON *payload;
  tryon__run_state state;
  bool stepped;      /* a step was chosen in the current handler call */
  bool lost;         /* the heartbeat found the lease gone */
  bool work_next;    /* the next DB task runs without a connection (tryon_run_work) */
  bool wake_pending; /* a wake-up came mid-step: the next sleep ends at once */
  int write_tries;   /* of the current job write, after transient database failures */
  char lease[TRYON__LEASE_MAX + 1]; /* the claim's lease owner: every write names it */
  int64_t started_mono;
  tryon__timer timer;
  tryon_run_fn cont;
  /* the one DB task a run has at a time, and its arguments */
  tryon__task task;
  tryon_run_db_fn db_fn;
  tryon_run_db_done db_done;
  void *db_ud;
  int progress;
  char stage[65];
  char *checkpoint;
  char *result;
  char *error;
  bool retryable;
  int64_t retry_after_ms;
  /* an HTTP call in flight (tryon_run_http) */
  tryon_http_call *call;
  tryon_run_http_done http_done;
  void *http_ud;
  /* the transfer in flight */
  CURL *easy;
  tryon_run_transfer_done xfer_done;
  void *xfer_ud;
  void *data;
  void (*data_free)(void *);
};

typedef struct tryon__schedule {
  tryon__timer timer; /* first: the timer's address is the schedule's */
  const tryon__kind *kind;
  int64_t interval_ms;
} tryon__schedule;

struct tryon_runner {
  tryon_runner_options opt;
  char owner[TRYON__OWNER_MAX + 1];
  char *conninfo;
  tryon__kind kinds[TRYON__RUNNER_MAX_KINDS];
  size_t nkinds;
  const char *kind_names[TRYON__RUNNER_MAX_KINDS + 1]; /* NULL-terminated, for claims */
  tryon__schedule schedules[TRYON__RUNNER_MAX_SCHEDULES];
  size_t nschedules;

  /* loop state */
  CURLM *multi;
  int wake_fd; /* eventfd: DB threads and tryon_runner_stop write, the loop reads */
  atomic_int stop_requested;
  uint64_t claims; /* claim batches so far: each has its own lease name */
  bool draining;
  bool deadline_passed;
  tryon__timer **heap;
  size_t nheap, capheap;
  tryon_run *runs; /* held jobs, a doubly linked list */
  size_t nruns;
  size_t inflight; /* tasks submitted and not yet done */
  bool want_claim, claim_pending, backlog;
  bool hb_pending, reap_pending;
  tryon_db_listener *listener;  /* tryon_jobs (claim now) and tryon_wake (end a wait) */
  int64_t listen_failed_log_ms; /* when a failed reconnect was last logged */
  tryon__timer poll_timer, hb_timer, reap_timer, drain_timer;

  /* DB threads */
  pthread_t *threads;
  int nthreads;
  pthread_mutex_t mu; /* guards todo, done, quit */
  pthread_cond_t cv;
  tryon__task *todo_head, *todo_tail;
  tryon__task *done_list; /* LIFO; reversed when drained */
  bool quit;

  pthread_mutex_t stats_mu;
  tryon_runner_stats stats;
};

/* ------------------------------------------------------------ timers (timers.c) */

/* Arms (or re-arms) `t` to fire `ms` from now. false when memory ran out. */
bool tryon__timer_arm(tryon_runner *r, tryon__timer *t, int64_t ms, tryon__timer_fn fire);
/* Disarms `t`; a timer not armed is left alone. */
void tryon__timer_cancel(tryon_runner *r, tryon__timer *t);
/* Fires every timer that is due, earliest first. */
void tryon__timers_run_due(tryon_runner *r);

/* ------------------------------------------------------------ DB threads (tasks.c) */

/* Submits a task to the DB threads (loop thread): at the back of the queue, or at its
 * front for the runner's own upkeep (claims, heartbeats, reaps). */
void tryon__runner_submit(tryon_runner *r, tryon__task *t);
void tryon__runner_submit_urgent(tryon_runner *r, tryon__task *t);
/* Wakes the loop (any thread; a write to the eventfd). */
void tryon__runner_wake(tryon_runner *r);
/* Calls the done functions of the tasks the DB threads finished, oldest first. */
void tryon__tasks_drain_done(tryon_runner *r);
/* Starts opt.db_threads threads (at least one, or TRYON_E_INTERNAL); joins them once
 * the queue is empty. */
tryon_status tryon__threads_start(tryon_runner *r, tryon_err *err);
void tryon__threads_stop(tryon_runner *r);

/* ------------------------------------------------------------------ stats (stats.c) */

#define TRYON__STATS_ADD(r, field, n)     \
  do {                                    \
    pthread_mutex_lock(&(r)->stats_mu);   \
    (r)->stats.field += (n);              \
    pthread_mutex_unlock(&(r)->stats_mu); \
  } while (0)

/* Counts an ended attempt of `ms` in the duration histogram. */
void tryon__stats_duration(tryon_runner *r, int64_t ms);
void tryon__stats_set_listening(tryon_runner *r, bool on);

/* ------------------------------------------------------------ the listener (listen.c) */

/* Connects the listener before the loop turns (blocking, up to its connect timeout). */
tryon_status tryon__listen_open(tryon_runner *r, tryon_err *err);
/* One turn's worth: the listener's socket events (0: not ready), its notifications. */
void tryon__listen_process(tryon_runner *r, short revents);
void tryon__listen_close(tryon_runner *r);

/* ------------------------------------------------------------- runs (run.c, steps.c) */

#define TRYON__RUN_OF(t) ((tryon_run *)((char *)(t)-offsetof(tryon_run, task)))

/* Hands the run's one task to the DB threads (state TRYON__RUN_DB until `done`). */
void tryon__run_submit(tryon_run *run,
                       tryon_status (*fn)(tryon_runner *, tryon_db_conn *, tryon__task *,
                                          tryon_err *),
                       void (*done)(tryon_runner *, tryon__task *));
/* At the end of a job write (the run's task is back): true when it went through and
 * the caller carries on. false when it is tried again later (a transient database
 * failure, tries left: leave the run alone) or the run was dropped (its lease is gone,
 * TRYON_E_CONFLICT, or the write failed for good). */
bool tryon__run_written(tryon_runner *r, tryon_run *run);
/* Calls a handler function and checks that it chose a step. */
void tryon__run_call(tryon_run *run, void (*call)(tryon_run *, void *), void *arg);
/* Gives the job back to the queue (attempt not counted), then frees the run. */
void tryon__run_release(tryon_run *run);
/* Ends the run without writing to its job (counted lost or abandoned). */
void tryon__run_drop(tryon_runner *r, tryon_run *run, const char *why);
/* Unlinks and frees a run (its transfer must have left the multi). */
void tryon__run_free(tryon_runner *r, tryon_run *run);
/* The HTTP call of tryon_run_http dies with its run. */
void tryon__run_http_free(tryon_run *run);
/* A run's wait is over (its timer, or a wake-up). */
void tryon__run_sleep_fired(tryon_runner *r, tryon__timer *t);
/* The loop saw the run's transfer end. */
void tryon__run_xfer_finished(tryon_runner *r, tryon_run *run, CURLcode code);

/* -------------------------------------- claims, leases, schedules (their own files) */

/* Claims a batch when asked to and there is room (loop thread, every turn). */
void tryon__claims_maybe(tryon_runner *r);
void tryon__claims_poll_fired(tryon_runner *r, tryon__timer *t);
void tryon__heartbeat_fired(tryon_runner *r, tryon__timer *t);
void tryon__reap_fired(tryon_runner *r, tryon__timer *t);
void tryon__schedule_fired(tryon_runner *r, tryon__timer *t);

/* The registered kind called `name`, or NULL. Safe from DB threads once running. */
const tryon__kind *tryon__runner_kind(const tryon_runner *r, const char *name);

#endif /* TRYON_RUNNER_INTERNAL_H */
