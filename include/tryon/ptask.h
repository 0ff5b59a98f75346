/*
 * tryon/ptask.h - provider tasks on the runner: the engine that takes input images to
 * a provider's asynchronous task and brings the result bytes back, resumable at every
 * step. Engine layer: it knows the runner, http and the provider clients, never a
 * domain module; what only the caller can know (how to shrink a photo, where to record
 * the task id, what a valid result is, what to do with it) comes as callbacks.
 *
 * Sections:
 *   1. Configuration (inputs, limits, callbacks)
 *   2. Running a task
 *   3. Helpers for the caller (inputs still needed, failing an attempt)
 *
 * The flow, written on the runner's steps (tryon/runner.h), each step leaving a
 * checkpoint in the job's payload so that a rerun after a crash, a lost lease or a
 * shutdown resumes instead of repeating:
 *
 *   upload each input not uploaded yet   checkpoint "<name>_url" after each
 *     (shrunk by cfg.fit when over the provider's upload limit, off the loop)
 *   → createTask                         checkpoint "task_id" + "task_started_ms" at
 *                                        once, then cfg.record_task on a DB thread
 *   → poll (tryon_kie_poll_delay_ms: 2.5 s … 10 s) until the task ends or the poll
 *     budget passes; a NOTIFY tryon_wake (a provider's callback) ends a wait early
 *   → download the result (public addresses only, unless the provider's API URL is
 *     loopback: the fake in tests and development)
 *   → cfg.validate (optional, off the loop) → cfg.done(run, bytes, ud).
 *
 * createTask is never posted twice for one task: after an answer that may have made a
 * task (a timeout, a reset, a 5xx, a bad answer) the run fails for good rather than
 * risk a second, billed task. Only rate_limited, maintenance, or a request that never
 * left (tryon_http_response.sent false) go again, at most TRYON_PTASK_CREATE_TRIES
 * times in one attempt. Before each post the payload says so ("create_sent": true;
 * false again after an answer that made nothing): a run that ends with the post in
 * flight (a stop's deadline, a crash, a lost lease) leaves a rerun that fails with
 * create_unconfirmed (final, refunded) instead of posting again. A resumed run records
 * its task id again (cfg.record_task accepts the same id) before polling, and when the
 * poll budget runs out the engine looks once more before failing with timeout.
 *
 * Failures end the run with tryon_ptask_fail: {"code":<our word>,"message":<detail>},
 * retryable as the verdict says (tryon/http.h section 6, kie.ai's table in kie.h),
 * with the provider's Retry-After, and one warning log line. The engine's own words:
 * photo_too_large (an input that cannot be fitted), timeout (the poll budget passed
 * and the last look found no result), create_unconfirmed (see above),
 * download_failed (retryable on network, timeout, HTTP 5xx), bad_result (a result over
 * the ceiling, or refused by cfg.validate), internal (a request that could not be
 * built, a task id that could not be checkpointed; a record_task failure, retryable
 * unless TRYON_E_CONFLICT).
 *
 * The provider today is kie.ai (tryon_kie_config: the one provider with tasks). Any
 * image job with 1..TRYON_PTASK_INPUTS_MAX images and a prompt runs on it as it is:
 * the try-on (inputs "person", "item"; libtryon/generations/tryon_job.c) and the chat's
 * "edit" (one input and the user's prompt) alike.
 *
 * Thread-safety: loop thread only, like every step function; the callbacks marked
 * "off the loop" / "on a DB thread" run there, one at a time, never concurrently with
 * the run's other steps.
 */
#ifndef TRYON_PTASK_H
#define TRYON_PTASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/http.h>
#include <tryon/kie.h>
#include <tryon/runner.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------ 1. Configuration (inputs, limits, callbacks) */

#define TRYON_PTASK_INPUTS_MAX 4           /* input images per task */
#define TRYON_PTASK_NAME_MAX 16            /* bytes of an input's name, NUL included */
#define TRYON_PTASK_PREFIX_MAX 64          /* bytes of file_prefix, NUL included */
#define TRYON_PTASK_RESULT_MAX (16u << 20) /* default result ceiling (the storage's) */
#define TRYON_PTASK_CREATE_TRIES 3         /* createTask sends per attempt (see above) */
#define TRYON_PTASK_POLL_RETRIES 6         /* consecutive recordInfo RETRY verdicts */
#define TRYON_PTASK_DOWNLOAD_TIMEOUT_MS 120000

/* One input image. */
typedef struct tryon_ptask_input {
  /* [a-z0-9_]{1,15}, e.g. "person", "item", "image": its checkpoint key is
   * "<name>_url" and its upload's file name "<file_prefix>-<name>.<png|jpg>". Copied. */
  const char *name;
  /* The bytes (JPEG or PNG), TAKEN by tryon_ptask_run (the caller's buffer is left
   * empty); freed once the provider has them, so a polling job holds only its small
   * state. Leave it empty for an input tryon_ptask_input_needed says is uploaded. */
  tryon_buf data;
} tryon_ptask_input;

/* Off the loop (tryon_run_work): replace `*data` by a version of at most `max_bytes`
 * (e.g. a smaller JPEG); release the old bytes. Any status but TRYON_OK fails the run
 * with photo_too_large (final). */
typedef tryon_status (*tryon_ptask_fit_fn)(tryon_buf *data, size_t max_bytes, void *ud,
                                           tryon_err *err);

/* On a DB thread with a leased connection (tryon_run_db), right after the task id is
 * checkpointed: record `task_id` (borrowed for the call) in the caller's row.
 * TRYON_E_CONFLICT (the row names another task) fails the run for good; anything else
 * fails the attempt, retryable (the rerun resumes the same task). */
typedef tryon_status (*tryon_ptask_record_fn)(tryon_db_conn *c, const char *task_id, void *ud,
                                              tryon_err *err);

/* Off the loop (tryon_run_work): whether the downloaded bytes (borrowed) are a result
 * the caller accepts; it may keep what it derives in its own state (`ud`). Any status
 * but TRYON_OK fails the run with bad_result (final). */
typedef tryon_status (*tryon_ptask_validate_fn)(const tryon_buf *result, void *ud, tryon_err *err);

/* On the loop, at the end: `*result` holds the downloaded bytes, which now belong to
 * the callee (move the struct into its state, or tryon_buf_release it). Like every
 * continuation it ends with exactly one step (tryon/runner.h section 3). By then the
 * run's data is `ud` again (tryon_run_data(run) == ud). */
typedef void (*tryon_ptask_done_fn)(tryon_run *run, tryon_buf *result, void *ud);

/*
 * What a task is made of. Read by tryon_ptask_run, which copies the strings and takes
 * the inputs' bytes; `kie` is borrowed for the run (usually for the runner's life).
 */
typedef struct tryon_ptask_config {
  const tryon_kie_config *kie;       /* the provider; required */
  const char *prompt;                /* createTask's prompt (kie.h's limits); required */
  const char *output_format;         /* "png" or "jpeg"; NULL: "png" */
  const char *aspect_ratio;          /* tryon_kie_aspect_ratio_ok; NULL: "auto" */
  tryon_ptask_input *inputs;         /* 1..TRYON_PTASK_INPUTS_MAX, in createTask's order */
  size_t n_inputs;                   /* distinct names */
  size_t result_max;                 /* download ceiling; 0: TRYON_PTASK_RESULT_MAX */
  int64_t poll_limit_ms;             /* from createTask; 0: TRYON_KIE_POLL_LIMIT_MS */
  const char *file_prefix;           /* 1..TRYON_PTASK_PREFIX_MAX-1 bytes (the generation's
                                        id); the whole upload name must pass the provider's
                                        rules (kie.h: [A-Za-z0-9._-], no leading '.') or the
                                        upload fails as internal; required */
  int progress_from;                 /* the job's progress while the engine runs goes from */
  int progress_to;                   /* here to here (0..100); both 0: 5 and 85. Uploads
                                        take the first 3/16 of the range, createTask to 5/16,
                                        polls to 15/16, the download starts at `to` */
  tryon_ptask_fit_fn fit;            /* NULL: an input over the upload limit fails */
  tryon_ptask_record_fn record_task; /* NULL: the checkpoint alone */
  tryon_ptask_validate_fn validate;  /* NULL: the bytes as downloaded */
  tryon_ptask_done_fn done;          /* required */
  void *ud;                          /* the caller's state, passed to every callback */
  void (*ud_free)(void *ud);         /* frees `ud` if the run ends inside the engine */
} tryon_ptask_config;

/* ------------------------------------------------------------------ 2. Running a task */

/*
 * Runs the flow above as the run's next steps; call it as a step (it chooses one).
 * Resumes from the payload: inputs with a "<name>_url" checkpoint are not uploaded
 * again, and a "task_id" is polled (its budget counted from "task_started_ms") rather
 * than created. The progress stages are "uploading", "generating", "downloading".
 *
 * The run's data slot: while the engine runs it is the engine's. If it holds cfg->ud,
 * the engine takes it over without freeing it; any other data there is freed, as
 * tryon_run_set_data does. cfg->ud is freed with cfg->ud_free when the run ends inside
 * the engine (a failure, a release at shutdown), and handed back (tryon_run_set_data
 * (run, ud, ud_free)) just before cfg->done. A bad configuration (a NULL or missing
 * field, too many inputs, a bad name, an empty or long prefix) fails the run with
 * internal (final).
 */
TRYON_API void tryon_ptask_run(tryon_run *run, const tryon_ptask_config *cfg);

/* --------------------------------------------- 3. Helpers for the caller (loop thread) */

/* Whether input `name` still has to be given to tryon_ptask_run with its bytes: false
 * once an earlier run checkpointed its upload ("<name>_url" in the payload), so the
 * caller reads from storage only what the provider does not have yet. */
TRYON_API bool tryon_ptask_input_needed(const tryon_run *run, const char *name);

/*
 * Fails this attempt (tryon_run_fail) with {"code":code,"message":detail or code},
 * retryable as given, after retry_after_ms (> 0) or the kind's backoff, and writes one
 * warning line (msg "job attempt failed": job, kind, code, detail, retryable). The one
 * way the engine fails a run, for the caller's own failures too. code: required;
 * detail: NULL or the provider's or our words (logs and operators only). The run ends.
 */
TRYON_API void tryon_ptask_fail(tryon_run *run, const char *code, const char *detail,
                                bool retryable, int64_t retry_after_ms);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_PTASK_H */
