/*
 * tryon/jobs.h - durable background work on PostgreSQL (the brief's Celery role).
 *
 * Sections:
 *   1. Enqueueing (inside the caller's transaction)
 *   2. Claiming and leases (workers)
 *   3. Finishing: success, retry, final failure
 *   4. Users and operators: read, cancel, retry, list
 *
 * A job is a row of `jobs`. The server enqueues it in the same transaction as whatever
 * pays for it (no charge without a job, no job without its charge); workers claim due
 * jobs (one claim at a time, under an advisory lock; the claiming UPDATE re-checks that
 * each row is still queued, so a cancel that commits meanwhile wins) and hold them
 * under a lease. Delivery is at least
 * once: a worker that dies loses its lease when it expires and the job is claimed
 * again (its `attempts` counts every claim). Every state or progress change sends
 * NOTIFY tryon_events, '{"user":U,"job":"<id>","state":"...","progress":N}' (a small
 * payload; details are read from the row), and a newly due job sends NOTIFY tryon_jobs.
 *
 * Every function takes a leased connection. Functions that change a running job take
 * the lease owner and refuse (TRYON_E_CONFLICT) when the lease is no longer theirs, so
 * a worker whose lease expired can never overwrite the next worker's work. `now_ms` is
 * explicit for tests. Thread-safety: as the connection's.
 */
#ifndef TRYON_JOBS_H
#define TRYON_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/core.h>
#include <tryon/db.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------- 1. Enqueueing (caller's tx) */

typedef struct tryon_job_spec {
  const char *kind;            /* "[a-z][a-z0-9_.]*", at most 64 characters */
  const char *payload_json;    /* a JSON object as text; NULL: {} */
  int64_t user_id;             /* 0: no user (housekeeping) */
  const char *idempotency_key; /* NULL: none; a used key returns the existing job */
  int max_attempts;            /* 0: 3 */
  int64_t run_after_ms;        /* 0: now */
} tryon_job_spec;

/*
 * Inserts the job, inside the caller's open transaction on `c`, and queues a NOTIFY
 * tryon_jobs (sent when the caller commits). `id_out` (37 bytes) receives the job's
 * id; `created` (optional) is false when `idempotency_key` named an existing job, whose
 * id is returned (TRYON_OK either way). TRYON_E_INVALID for a bad kind, payload (not a
 * JSON object) or max_attempts.
 */
TRYON_API tryon_status tryon_jobs_enqueue(tryon_db_conn *c, const tryon_job_spec *spec,
                                          int64_t now_ms, char id_out[TRYON_UUID_STR_LEN],
                                          bool *created, tryon_err *err);

/* ------------------------------------------------------ 2. Claiming and leases */

typedef enum tryon_job_state {
  TRYON_JOB_QUEUED = 0,
  TRYON_JOB_RUNNING = 1,
  TRYON_JOB_SUCCEEDED = 2,
  TRYON_JOB_FAILED = 3,
  TRYON_JOB_CANCELLED = 4,
} tryon_job_state;

/* Whether `kind` is a valid job kind: "[a-z][a-z0-9_.]*", at most 64 characters. */
TRYON_API bool tryon_jobs_kind_valid(const char *kind);

/* "queued", "running", ... */
TRYON_API const char *tryon_job_state_name(tryon_job_state s);

typedef struct tryon_job {
  char id[TRYON_UUID_STR_LEN];
  char kind[65];
  char *payload;   /* JSON text, owned (tryon_job_release) */
  char *result;    /* JSON text or NULL, owned */
  char *error;     /* JSON text or NULL, owned */
  int64_t user_id; /* 0: none */
  tryon_job_state state;
  int attempts; /* claims so far, this one included */
  int max_attempts;
  int progress; /* 0..100 */
  char stage[65];
  char lease_owner[65];
  int64_t lease_expires_ms;
  int64_t run_after_ms;
  int64_t created_ms;
  int64_t started_ms;
  int64_t finished_ms;
} tryon_job;

/* Frees the owned strings; a zeroed job is accepted. */
TRYON_API void tryon_job_release(tryon_job *job);

/* What tryon_job_to_json shows beyond what a job's owner sees. */
#define TRYON_JOB_JSON_OPERATOR 1u /* user, attempts allowed, lease, times, texts */

/*
 * The job `j` (borrowed for the call) as JSON, the one shape the API and tryonctl
 * print: a new object {"id","kind","state","progress","stage" (null when none),
 * "attempts","created_at","finished_at"}; with TRYON_JOB_JSON_OPERATOR in `flags` also
 * "user_id","max_attempts","lease_owner","lease_expires_at","run_after","started_at"
 * and "payload","result","error" (the stored JSON, or null), for operators only: a
 * payload may name things its user should not see. Times as tryon_json_add_time. The
 * caller owns the object (cJSON_Delete, or add it to a parent). NULL when out of
 * memory. Pure; thread-safe.
 */
TRYON_API cJSON *tryon_job_to_json(const tryon_job *j, unsigned flags);

typedef struct tryon_claim_options {
  const char *owner;        /* the worker's name (host:pid:n), at most 64 characters */
  int max;                  /* jobs to claim at most, >= 1 */
  int per_user_running;     /* a user's running jobs at most (0: 2) */
  int64_t lease_ms;         /* how long the lease lasts unless renewed (0: 60 s) */
  const char *const *kinds; /* NULL-terminated kinds this worker runs; NULL: any */
} tryon_claim_options;

/*
 * Claims up to opt->max due jobs (queued, run_after <= now), oldest due first, skipping
 * jobs whose user already has per_user_running jobs running and any job that stops
 * being queued while the claim waits for its row (a cancel committing meanwhile: the
 * cancel wins); marks them running under a lease and counts the
 * attempt. `out` (caller-owned, opt->max entries) receives them; `*n` how many. Runs its
 * own transaction.
 */
TRYON_API tryon_status tryon_jobs_claim(tryon_db_conn *c, const tryon_claim_options *opt,
                                        int64_t now_ms, tryon_job *out, size_t *n, tryon_err *err);

/* Renews the lease of a running job to now + lease_ms. TRYON_E_CONFLICT when the job is
 * no longer running under `owner`. */
TRYON_API tryon_status tryon_jobs_heartbeat(tryon_db_conn *c, const char *id, const char *owner,
                                            int64_t lease_ms, int64_t now_ms, tryon_err *err);

/* Records progress (0..100) and a stage word ("uploading", "generating" ...) of a running
 * job, and a checkpoint (optional JSON object merged into the payload: provider task
 * ids, so a rerun resumes instead of repeating). TRYON_E_CONFLICT as for heartbeat. */
TRYON_API tryon_status tryon_jobs_progress(tryon_db_conn *c, const char *id, const char *owner,
                                           int progress, const char *stage,
                                           const char *checkpoint_json, int64_t now_ms,
                                           tryon_err *err);

/* Renews, in one statement, the leases of the running jobs `ids[i]` held under
 * `owners[i]` (i < n) to now + lease_ms: a worker's periodic heartbeat for everything it
 * runs. A worker names each claim's lease differently ("<worker>#<claim>"), so a run
 * that lost its job can never renew the lease of a later claim of the same job.
 * `held` (caller-owned, n entries) says which are still held: a false one was reaped
 * and perhaps claimed again, so its work must stop without writing. */
TRYON_API tryon_status tryon_jobs_heartbeat_many(tryon_db_conn *c, const char *const *ids,
                                                 const char *const *owners, size_t n,
                                                 int64_t lease_ms, int64_t now_ms, bool *held,
                                                 tryon_err *err);

/* Gives a running job back to the queue at once without counting the attempt (a worker
 * shutting down): queued, due now, lease cleared, `attempts` one less, its checkpoints
 * kept so the next worker resumes. Sends NOTIFY tryon_jobs. Runs its own statement.
 * TRYON_E_CONFLICT when the lease is not `owner`'s. */
TRYON_API tryon_status tryon_jobs_release(tryon_db_conn *c, const char *id, const char *owner,
                                          int64_t now_ms, tryon_err *err);

/* A kind's failure hook (a refund, a message to the user): runs inside the transaction
 * that makes `job` final, so it runs exactly once. A non-OK status rolls that
 * transaction back. */
typedef tryon_status (*tryon_job_final_fn)(tryon_db_conn *c, const tryon_job *job, void *ud,
                                           tryon_err *err);

typedef struct tryon_reap_options {
  const char *const *kinds;    /* NULL-terminated kinds to reap; NULL: any */
  tryon_job_final_fn on_final; /* for each job failed by the reap; NULL: none */
  void *ud;
} tryon_reap_options;

/* Puts back the running jobs whose lease expired before now (their worker died or hung):
 * those with attempts left are queued again at once (one statement); each one on its
 * last attempt is failed (error {"code":"lease_expired"}) in a transaction of its own in
 * which opt->on_final runs. A failing hook rolls back only its job's transaction (the
 * job stays expired and is tried again at the next reap) and its status is returned
 * after the other jobs were handled, so one broken hook never stops the reaping.
 * `*requeued` and `*nfailed` (jobs failed with their hook) are optional counts; `opt`
 * may be NULL. */
TRYON_API tryon_status tryon_jobs_reap(tryon_db_conn *c, const tryon_reap_options *opt,
                                       int64_t now_ms, size_t *requeued, size_t *nfailed,
                                       tryon_err *err);

/* ------------------------------------------- 3. Finishing: success, retry, failure */

/* Marks a running job succeeded with `result_json` (a JSON object or NULL), inside the
 * caller's open transaction (so the job's own effects commit with it). TRYON_E_CONFLICT
 * when the lease is not `owner`'s. */
TRYON_API tryon_status tryon_jobs_succeed(tryon_db_conn *c, const char *id, const char *owner,
                                          const char *result_json, int64_t now_ms, tryon_err *err);

/*
 * A running job's attempt failed with `error_json` (a JSON object). Inside the caller's
 * open transaction. With `retryable` and attempts left, the job is queued again after an
 * exponential backoff with full jitter (base `backoff_ms` (0: 2 s) doubled per attempt,
 * at most 5 minutes, or exactly `retry_after_ms` when > 0 (a provider's Retry-After),
 * also capped at 5 minutes) and
 * *final is false. Otherwise it is failed and *final is true: the caller runs the kind's
 * failure hook in the same transaction, so the hook runs exactly once.
 * TRYON_E_CONFLICT when the lease is not `owner`'s (nothing changed, *final false).
 */
TRYON_API tryon_status tryon_jobs_fail(tryon_db_conn *c, const char *id, const char *owner,
                                       const char *error_json, bool retryable, int64_t backoff_ms,
                                       int64_t retry_after_ms, int64_t now_ms, bool *final,
                                       tryon_err *err);

/* -------------------------------------------------- 4. Users and operators */

/* Loads job `id` (any state). TRYON_E_NOT_FOUND when absent or, with user_id > 0, not that
 * user's (one answer for both). */
TRYON_API tryon_status tryon_jobs_get(tryon_db_conn *c, const char *id, int64_t user_id,
                                      tryon_job *out, tryon_err *err);

/* The job's place in the queue: 1 when it is the next due job, 0 when it is not
 * queued. */
TRYON_API tryon_status tryon_jobs_position(tryon_db_conn *c, const char *id, int64_t now_ms,
                                           int64_t *position, tryon_err *err);

/* The whole queue's depth: jobs queued (due or not) and running, for metrics. Both
 * counts walk the partial state indexes. */
TRYON_API tryon_status tryon_jobs_depth(tryon_db_conn *c, int64_t *queued, int64_t *running,
                                        tryon_err *err);

/* Cancels a queued job (with user_id > 0, only that user's). TRYON_E_CONFLICT when it
 * is no longer queued (running or finished: too late), TRYON_E_NOT_FOUND as for get. A
 * cancelled job's failure hook is the caller's to run, in the same transaction: this
 * function runs inside the caller's open transaction. */
TRYON_API tryon_status tryon_jobs_cancel(tryon_db_conn *c, const char *id, int64_t user_id,
                                         int64_t now_ms, tryon_err *err);

/* Operator: queues a failed or cancelled job again with a fresh set of attempts.
 * TRYON_E_CONFLICT for a job in another state. */
TRYON_API tryon_status tryon_jobs_retry(tryon_db_conn *c, const char *id, int64_t now_ms,
                                        tryon_err *err);

/* Housekeeping: deletes finished scheduled housekeeping jobs (no user, idempotency key
 * "sched:...") that ended before `before_ms`; `*n` (optional) how many. Every other job
 * is history and stays. */
TRYON_API tryon_status tryon_jobs_purge(tryon_db_conn *c, int64_t before_ms, size_t *n,
                                        tryon_err *err);

/* Newest first, optionally one state (NULL: all) and one user (0: all); at most `max`
 * into `out` (caller-owned; release each); `*n` how many. */
TRYON_API tryon_status tryon_jobs_list(tryon_db_conn *c, const char *state, int64_t user_id,
                                       size_t max, tryon_job *out, size_t *n, tryon_err *err);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_JOBS_H */
