/*
 * Shared between the runner's files: the run, the runner, DB tasks and timers.
 * Everything here is touched on the loop thread only, except where a field says
 * otherwise (DB threads see a task's fn/arguments while it is in their hands, and the
 * locked queues).
 */
#ifndef TRYON_RUNNER_INTERNAL_H
#define TRYON_RUNNER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <libpq-fe.h>
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

typedef enum run_state {
  RUN_CALLING, /* inside the handler: it must choose a step */
  RUN_TIMER,
  RUN_DB,
  RUN_XFER,
} run_state;

struct tryon_run {
  tryon_runner *r;
  tryon_run *prev, *next; /* the runner's list of held jobs */
  const tryon__kind *kind;
  tryon_job job;
  cJSON *payload;
  run_state state;
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
  PGconn *listen;
  bool listen_pending;
  int64_t listen_backoff_ms;
  tryon__timer poll_timer, hb_timer, reap_timer, drain_timer, listen_timer;

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

/* Submits a task to the DB threads (loop thread): at the back of the queue, or at its
 * front for the runner's own upkeep (claims, heartbeats, reaps). */
void tryon__runner_submit(tryon_runner *r, tryon__task *t);
void tryon__runner_submit_urgent(tryon_runner *r, tryon__task *t);

/* The registered kind called `name`, or NULL. Safe from DB threads once running. */
const tryon__kind *tryon__runner_kind(const tryon_runner *r, const char *name);

#endif /* TRYON_RUNNER_INTERNAL_H */
