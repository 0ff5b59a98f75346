/*
 * tryon/runner.h - the worker's engine: many jobs at once on one event loop.
 *
 * Sections:
 *   1. Job kinds
 *   2. The runner: create, register, run, stop
 *   3. Inside a handler: the job, and the one next step
 *   4. Test kinds shipped with the library
 *
 * One thread drives everything: a curl multi handle (HTTP transfers), the socket of a
 * LISTEN connection (NOTIFY tryon_jobs wakes a claim at once; a slow poll covers a lost
 * notification), timers (a job's wait, heartbeats, the reaper, schedules) and a wake
 * descriptor. Database work runs on a few DB threads, each leasing a pooled connection
 * for one task and handing the outcome back to the loop. So a job that waits — on a
 * timer, a backoff or a transfer — holds neither a thread nor a database connection: it
 * is a small struct in a heap.
 *
 * Handlers are written in continuation style. The runner calls kind->start(run) on the
 * loop thread; the handler (and every continuation after it) ends by calling exactly
 * one step function of section 3: wait, run database work, record progress, transfer,
 * succeed or fail. None of them blocks. A handler that returns without choosing a step
 * fails its job (a bug, reported as such). Handlers are idempotent: checkpoints saved
 * with tryon_run_progress are merged into the job's payload, so a rerun after a crash,
 * an expired lease or a shutdown resumes where the last one stopped.
 *
 * Wake-ups: NOTIFY tryon_wake, '<job id>' ends the current wait (tryon_run_sleep) of
 * that job at once, on whichever worker holds it, or its next wait when it is in the
 * middle of a step — how a provider's callback shortens polling. Harmless otherwise.
 *
 * Leases: the runner claims jobs under a lease and renews all of them in one statement
 * every lease/3. A job whose lease was lost (this worker stalled past the lease, another
 * worker took over) is dropped at its next step without writing anything.
 *
 * Shutdown (tryon_runner_stop, async-signal-safe): no more claims; waiting jobs are
 * released at once (queued again, attempt not counted); jobs in the middle of a step
 * finish it, and are released at their next wait; at the grace deadline transfers still
 * running are abandoned and their jobs released. tryon_runner_run returns when every job
 * has left.
 */
#ifndef TRYON_RUNNER_H
#define TRYON_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/http.h>
#include <tryon/jobs.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tryon_runner tryon_runner;
typedef struct tryon_run tryon_run; /* one claimed job, as its handler sees it */

/* ------------------------------------------------------------------ 1. Job kinds */

typedef struct tryon_job_kind {
  const char *name; /* as in tryon_job_spec.kind; copied */
  /* Begins a claimed job, on the loop thread; ends with one step (section 3). */
  void (*start)(tryon_run *run);
  /* Runs inside the transaction that makes a job of this kind final (its last attempt
   * failed, its lease expired on the last attempt): refunds, user messages. NULL: none.
   * Called on a DB thread; `ud` below is passed. */
  tryon_job_final_fn on_final;
  void *ud;
  int64_t backoff_ms; /* base of the retry backoff (0: the queue's default, 2 s) */
} tryon_job_kind;

/* ------------------------------------------- 2. The runner: create, register, run */

typedef struct tryon_runner_options {
  tryon_db *db;             /* DB threads lease from it: pool size >= db_threads */
  const char *conninfo;     /* for the LISTEN connection, which is the runner's own */
  const char *owner;        /* the worker's name (<= 40); NULL: "<host>:<pid>"; each
                             claim's lease is "<owner>#<claim number>" */
  int concurrency;          /* jobs held at once, 0: 100 */
  int db_threads;           /* 0: 4 */
  int per_user_running;     /* a user's running jobs at most, across workers; 0: 2 */
  int64_t lease_ms;         /* 0: 60 s; renewed every lease/3 */
  int64_t poll_ms;          /* claim even without a notification this often; 0: 5 s */
  int64_t grace_ms;         /* on stop, how long running steps may finish; 0: 20 s */
  const tryon_clock *clock; /* wall clock for the queue's timestamps; NULL: the system's */
} tryon_runner_options;

/* Creates a runner (no thread starts yet). TRYON_E_INVALID for bad options. */
TRYON_API tryon_status tryon_runner_new(const tryon_runner_options *opt, tryon_runner **out,
                                        tryon_err *err);

/* Registers a kind, before tryon_runner_run. TRYON_E_INVALID for a bad or repeated name. */
TRYON_API tryon_status tryon_runner_add_kind(tryon_runner *r, const tryon_job_kind *kind,
                                             tryon_err *err);

/* Housekeeping: enqueue a job of registered `kind` (no user, empty payload) once per
 * `interval_ms` slot of the wall clock, shared by all workers (idempotency key
 * "sched:<kind>:<slot>"), so one of them runs it. The first slot is enqueued at start. */
TRYON_API tryon_status tryon_runner_schedule(tryon_runner *r, const char *kind, int64_t interval_ms,
                                             tryon_err *err);

/* Runs the loop on the calling thread until tryon_runner_stop and the drain are done.
 * Starts and joins the DB threads. TRYON_E_DB_UNAVAILABLE when the LISTEN connection
 * cannot be made at start (later losses are retried in the background). */
TRYON_API tryon_status tryon_runner_run(tryon_runner *r, tryon_err *err);

/* Begins the graceful stop. Async-signal-safe: call it from a SIGTERM handler. */
TRYON_API void tryon_runner_stop(tryon_runner *r);

typedef struct tryon_runner_stats {
  int64_t claimed, succeeded, retried, failed, released, lost, abandoned;
  int64_t running;      /* jobs held now */
  int64_t waiting;      /* of them, waiting on a timer or a transfer */
  int64_t queue_queued; /* whole queue, as of the last reaper tick (every lease/2) */
  int64_t queue_running;
  int64_t duration_count; /* attempts ended (success, retry or failure), their time */
  int64_t duration_ms_sum;
  int64_t duration_le[6]; /* cumulative: <= 100 ms, 1 s, 5 s, 30 s, 120 s, 600 s */
  int64_t loop_tick_ms;   /* monotonic time of the loop's last turn (health) */
  bool listening;         /* the LISTEN connection is up */
  bool stopping;
} tryon_runner_stats;

/* A consistent snapshot; safe from any thread (metrics, health). */
TRYON_API void tryon_runner_stats_get(tryon_runner *r, tryon_runner_stats *out);

/* Frees a runner that is not running; NULL is a no-op. */
TRYON_API void tryon_runner_free(tryon_runner *r);

/* ----------------------------------------- 3. Inside a handler (loop thread only) */

/* The job as claimed: id, kind, attempts (this claim included), the payload with the
 * checkpoints of earlier runs (tryon_run_payload adds this run's). */
TRYON_API const tryon_job *tryon_run_job(const tryon_run *run);
/* The payload parsed (owned by the run; an object, maybe empty). */
TRYON_API const cJSON *tryon_run_payload(const tryon_run *run);
/* The worker's name (the lease adds the claim's number). */
TRYON_API const char *tryon_run_owner(const tryon_run *run);
TRYON_API int64_t tryon_run_now_ms(const tryon_run *run); /* the runner's wall clock */
/* The kind's `ud`. */
TRYON_API void *tryon_run_kind_ud(const tryon_run *run);
/* Handler state kept across steps; `free_fn` (may be NULL) runs when the run ends,
 * however it ends (also when it is released or dropped). Replaces the previous data,
 * freeing it. */
TRYON_API void tryon_run_set_data(tryon_run *run, void *data, void (*free_fn)(void *));
TRYON_API void *tryon_run_data(const tryon_run *run);
/* True once the runner is stopping: a long handler may choose to checkpoint now. */
TRYON_API bool tryon_run_stopping(const tryon_run *run);

typedef void (*tryon_run_fn)(tryon_run *run);
/* Database work on a DB thread, with a leased connection (no transaction is open: use
 * tryon_db_tx for one). It must not touch the run's handler data concurrently with the
 * loop — the loop does nothing with this run until `done`. */
typedef tryon_status (*tryon_run_db_fn)(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err);
typedef void (*tryon_run_db_done)(tryon_run *run, tryon_status st, const tryon_err *err, void *ud);
typedef void (*tryon_run_transfer_done)(tryon_run *run, CURLcode code, void *ud);

/* Waits `ms`, holding nothing, then calls `cont`. While stopping, the job is released
 * instead (it resumes from its checkpoints on the next worker). */
TRYON_API void tryon_run_sleep(tryon_run *run, int64_t ms, tryon_run_fn cont);

/* Runs `fn` on a DB thread, then `done` on the loop with its status (`err` is valid
 * during that call only). */
TRYON_API void tryon_run_db(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud);

/* Records progress (0..100), a stage word and an optional checkpoint (a JSON object
 * merged into the payload; tryon_run_payload shows it afterwards), then calls `cont`.
 * If the write fails the job is left to its lease (it runs again later) and `cont` is
 * not called. */
TRYON_API void tryon_run_progress(tryon_run *run, int progress, const char *stage,
                                  const char *checkpoint_json, tryon_run_fn cont);

/* Adds `easy` (the caller's, prepared, e.g. by tryon_http_call_easy; its CURLOPT_PRIVATE
 * is the runner's) to the loop's multi handle; `done` runs when the transfer ends, after
 * the handle has been removed from the multi. At the stop deadline the transfer is
 * abandoned: `done` is not called and the run's data free_fn releases what it owns. */
TRYON_API void tryon_run_transfer(tryon_run *run, CURL *easy, tryon_run_transfer_done done,
                                  void *ud);

/* Runs `fn` on a DB thread WITHOUT a database connection (`c` is NULL): blocking work
 * that needs none (decoding images, reading stored files), so it neither blocks the
 * loop nor holds a pooled connection. `done` as for tryon_run_db. */
TRYON_API void tryon_run_work(tryon_run *run, tryon_run_db_fn fn, tryon_run_db_done done, void *ud);

/* An HTTP request through the loop with the http module's retries: `req` is copied into
 * a call; its retryable failures wait (as tryon_run_sleep: a stop releases the job)
 * and go again; `done` gets the finished call (read tryon_http_call_status and
 * tryon_http_call_response, or take the response), which is freed when `done` returns.
 * A request that cannot even be built reaches `done` with call NULL and its status. */
typedef void (*tryon_run_http_done)(tryon_run *run, tryon_http_call *call, tryon_status st,
                                    const tryon_err *err, void *ud);
TRYON_API void tryon_run_http(tryon_run *run, const tryon_http_request *req,
                              tryon_run_http_done done, void *ud);

/* Finishes the job: in one transaction `effects` (may be NULL) then the job marked
 * succeeded with `result_json` (an object or NULL). The run ends. */
TRYON_API void tryon_run_succeed(tryon_run *run, const char *result_json, tryon_run_db_fn effects,
                                 void *ud);

/* Fails this attempt with `error_json` (an object {"code","message",...}). Retryable
 * with attempts left: queued again after the kind's backoff (or exactly retry_after_ms
 * when > 0). Otherwise final: the kind's on_final runs in the same transaction. The run
 * ends. */
TRYON_API void tryon_run_fail(tryon_run *run, const char *error_json, bool retryable,
                              int64_t retry_after_ms);

/* -------------------------------------------- 4. Test kinds shipped with the library */

/*
 * Test and benchmark kinds, registered only by programs that ask for them (the worker
 * with TRYON_WORKER_TEST_KINDS=true; in-process tests):
 *   "noop"  — succeeds at once with {"owner":..,"attempt":n}.
 *   "sleep" — payload {"ms":M,"steps":S,"fail_attempts":F,"retryable":true,
 *             "retry_after_ms":R}: attempts up to F fail ({"code":"test_failure"},
 *             retryable unless "retryable":false, after R ms, default 10); then waits M ms
 *             in S steps, checkpointing {"step":i} after each, and succeeds with
 *             {"owner","attempt","resumed_from"}. Its on_final counts its runs in the
 *             job's result ("final_hook_runs"), so tests can see it ran exactly once.
 * Housekeeping kinds are the program's own (the worker's: apps/worker/housekeeping.c),
 * registered with tryon_runner_add_kind and scheduled with tryon_runner_schedule.
 * TRYON_E_INVALID when a kind of that name is already registered.
 */
TRYON_API tryon_status tryon_runner_add_test_kinds(tryon_runner *r, tryon_err *err);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_RUNNER_H */
