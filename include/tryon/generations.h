/*
 * tryon/generations.h - try-ons as the user sees them: the prompt templates, the one
 * transaction that charges and enqueues a try-on, the history, and the worker's updates
 * of a generation as its job advances.
 *
 * Sections:
 *   1. Try-on prompts (versioned templates per category)
 *   2. Creating a try-on (charge + generation + job, one transaction)
 *   3. Reading and deleting (the user's history)
 *   4. The worker's side (start, task id, success, failure with refund)
 *
 * A generation is a row of `generations`; its job (kind "tryon") does the work. Money
 * moves only through billing: the charge is the ledger row "job:<job id>:charge", a
 * final failure's refund "job:<job id>:refund", each exactly once. Functions take a
 * leased connection; those marked "caller's transaction" must run inside one.
 */
#ifndef TRYON_GENERATIONS_H
#define TRYON_GENERATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tryon/billing.h>
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>
#include <tryon/jobs.h>
#include <tryon/kie.h>
#include <tryon/runner.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ 1. Prompts */

#define TRYON_GENERATIONS_TRYON_COST 2             /* credits a try-on costs */
#define TRYON_GENERATIONS_PROMPT_VERSION "tryon-1" /* bump when any template's text changes */
#define TRYON_GENERATIONS_JOB_KIND "tryon"

/* Whether `category` is one of: top, bottom, dress, outerwear, shoes, headwear, glasses,
 * bag, jewelry, other. */
TRYON_API bool tryon_generations_category_ok(const char *category);

/* The fixed English prompt for `category` (NULL for an unknown one), of version
 * TRYON_GENERATIONS_PROMPT_VERSION. Image 1 is the person, image 2 the item. */
TRYON_API const char *tryon_generations_prompt(const char *category);

/* Aspect ratios have one owner, the provider's vocabulary: tryon_kie_aspect_ratio_ok
 * (tryon/kie.h), which tryon_generations_create_tryon validates through. */

/* ------------------------------------------------------------------ 2. Creating */

typedef struct tryon_generations_tryon_params {
  int64_t user_id;
  const char *person_upload_id;
  const char *item_upload_id;
  const char *category;
  const char *aspect_ratio;    /* NULL: "auto" */
  const char *output_format;   /* NULL: "png"; or "jpeg" */
  const char *idempotency_key; /* the client's Idempotency-Key (1..128 printable ASCII) */
} tryon_generations_tryon_params;

typedef struct tryon_generations_created {
  char generation_id[TRYON_UUID_STR_LEN];
  char job_id[TRYON_UUID_STR_LEN];
  int64_t cost;
  int64_t balance; /* the user's credits after the charge */
  bool created;    /* false: the key named an earlier request, which is the answer */
  bool watermark;  /* the charge came from the free allowance */
} tryon_generations_created;

/*
 * In one transaction of its own: checks both uploads are the user's (and live), enqueues
 * the job (idempotency key "tryon:<user>:<key>"), charges TRYON_GENERATIONS_TRYON_COST credits
 * under "job:<job id>:charge" and records the generation. A repeated key returns the first
 * request's answer (created false) and charges nothing; the same key with other
 * parameters is TRYON_E_CONFLICT. Statuses: TRYON_OK; TRYON_E_INVALID (a bad category,
 * ratio, format, key or id); TRYON_E_NOT_FOUND (an upload that is not the user's — one
 * answer for missing and foreign); TRYON_E_INSUFFICIENT_CREDITS (`refusal` says the
 * balance); TRYON_E_FORBIDDEN (a blocked user); TRYON_E_CONFLICT.
 */
TRYON_API tryon_status tryon_generations_create_tryon(
    tryon_db_conn *c, const tryon_generations_tryon_params *p, int64_t now_ms,
    tryon_generations_created *out, tryon_billing_refusal *refusal, tryon_err *err);

/* ------------------------------------------------------------------ 3. Reading */

typedef struct tryon_generation {
  char id[TRYON_UUID_STR_LEN];
  int64_t user_id;
  char kind[8];    /* "tryon" or "edit" */
  char status[12]; /* queued, running, succeeded, failed, cancelled */
  char category[16];
  char prompt_version[65];
  char person_upload_id[TRYON_UUID_STR_LEN];
  char item_upload_id[TRYON_UUID_STR_LEN];
  char result_upload_id[TRYON_UUID_STR_LEN]; /* "" until it succeeded */
  bool result_has_thumb;
  char aspect_ratio[8];
  char output_format[8];
  int64_t cost;
  bool watermarked;
  char provider[16];
  char model[128];
  char provider_task_id[201];
  char error_code[65];     /* "" unless failed; picks the user's message */
  char error_message[512]; /* the provider's or our detail, for operators only */
  char job_id[TRYON_UUID_STR_LEN];
  int64_t created_us; /* microseconds since the epoch (the list's cursor) */
  int64_t started_ms;
  int64_t finished_ms;
  int64_t credits_expired; /* of the refunded cost, what expired with an ended period */
} tryon_generation;

/* Generation `id` of `user_id` (0: anyone's, for the worker). TRYON_E_NOT_FOUND when it
 * does not exist or is not theirs (one answer), or `id` is not a UUID. */
TRYON_API tryon_status tryon_generations_get(tryon_db_conn *c, int64_t user_id, const char *id,
                                             tryon_generation *out, tryon_err *err);

#define TRYON_GENERATIONS_CURSOR_MAX 64

/* The user's generations, newest first, at most `limit` (1..100) into `out`; `cursor` and
 * `next` as for tryon_uploads_list. */
TRYON_API tryon_status tryon_generations_list(tryon_db_conn *c, int64_t user_id, int limit,
                                              const char *cursor, tryon_generation *out, size_t *n,
                                              char *next, tryon_err *err);

/* Deletes a finished generation of the user (its result image's row is marked deleted;
 * `result_upload_id` (37 bytes) receives its id, "" when none, for the caller to remove
 * the files). TRYON_E_NOT_FOUND as for get; TRYON_E_CONFLICT while it is queued or
 * running. */
TRYON_API tryon_status tryon_generations_delete(tryon_db_conn *c, int64_t user_id, const char *id,
                                                char *result_upload_id, tryon_err *err);

/* ------------------------------------------------------------ 4. The worker's side */

/* Marks the generation running with the provider ("kie" or "offline") and model the
 * worker uses. Idempotent (a rerun keeps the first start time). */
TRYON_API tryon_status tryon_generations_start(tryon_db_conn *c, const char *id,
                                               const char *provider, const char *model,
                                               int64_t now_ms, tryon_err *err);

/* Records the provider's task id (once: a different id for the same generation is
 * TRYON_E_CONFLICT). */
TRYON_API tryon_status tryon_generations_set_task(tryon_db_conn *c, const char *id,
                                                  const char *task_id, tryon_err *err);

/* A provider's callback about `task_id`: wakes the job of the generation running it
 * (NOTIFY tryon_wake) so that it polls at once. `*found` false when no live
 * generation has that task (a late or foreign callback: nothing to do). */
TRYON_API tryon_status tryon_generations_wake_task(tryon_db_conn *c, const char *provider,
                                                   const char *task_id, bool *found,
                                                   tryon_err *err);

/* The storage name of generation `id`'s result: derived from the id (a UUID), so every
 * run of its job writes the same name and the failure hook knows what to remove. */
TRYON_API void tryon_generations_result_id(const char *id, char out[TRYON_UUID_STR_LEN]);

/*
 * Cancels queued job `job_id` (with user_id > 0, only that user's) in one transaction;
 * for a try-on also refunds its charge, removes a result an earlier attempt may have
 * left in `storage` (may be NULL) and marks the generation cancelled. Statuses as
 * tryon_jobs_cancel: TRYON_E_CONFLICT once it runs or ended, TRYON_E_NOT_FOUND; and
 * TRYON_E_FORBIDDEN when the user (user_id > 0) cancels a try-on whose provider task was
 * created already (queued again for a retry: the provider bills it, so the job follows
 * it to its end) — nothing changes. An operator (user_id 0) may still cancel it.
 */
TRYON_API tryon_status tryon_generations_cancel_job(tryon_db_conn *c, tryon_storage *storage,
                                                    const char *job_id, int64_t user_id,
                                                    int64_t now_ms, tryon_err *err);

/* Caller's transaction: records the result image `result_id` (already stored, with its
 * thumbnail when img->thumb is set) as an upload of origin "result" and marks the
 * generation succeeded. */
TRYON_API tryon_status tryon_generations_succeed(tryon_db_conn *c, const char *id,
                                                 const char *result_id, const tryon_image *img,
                                                 bool watermarked, int64_t now_ms, tryon_err *err);

/* What the "tryon" job kind needs; borrowed for the runner's life. */
typedef struct tryon_generations_kind_config {
  tryon_storage *storage;      /* the inputs are read from it, the result stored in it */
  const tryon_kie_config *kie; /* NULL: the offline provider (a local composite) */
  int64_t poll_limit_ms;       /* give up on a provider task after; 0: 15 minutes */
  const char *watermark_text;  /* NULL: TRYON_IMAGE_WATERMARK_TEXT */
  const tryon_clock *clock;    /* for the failure hook's times; NULL: the system's */
} tryon_generations_kind_config;

/*
 * Registers the "tryon" job kind: load the generation and its photos; with kie.ai,
 * upload both, create the task (its id checkpointed at once: a rerun polls the same
 * task), poll with tryon_kie_poll_delay_ms until it ends or the limit passes, download
 * the result; offline, compose it locally; then validate it like an upload, watermark
 * it when the charge came from the free allowance, store it with a thumbnail, and mark
 * the generation succeeded in the job's succeeding transaction. Progress events at
 * each stage ("uploading", "generating", "downloading", "finishing"). A final failure
 * runs tryon_generations_fail_hook. The provider's part runs on the provider task
 * engine (tryon/ptask.h): its checkpoints, retries and codes are that module's.
 */
TRYON_API tryon_status tryon_generations_add_kind(tryon_runner *r,
                                                  const tryon_generations_kind_config *cfg,
                                                  tryon_err *err);

/*
 * The try-on kind's failure hook, in the transaction that fails `job` for good: refunds
 * the charge (once; a refund already made is fine) and marks the generation failed with
 * the job's error code and, for operators, its detail. Users see
 * tryon_generations_user_message for the code, never the provider's words.
 * `ud`: the kind's tryon_generations_kind_config (for its clock) or NULL.
 */
TRYON_API tryon_status tryon_generations_fail_hook(tryon_db_conn *c, const tryon_job *job, void *ud,
                                                   tryon_err *err);

/* The user-facing message for a try-on that failed with `code`, in `lang` (Russian for
 * "ru…", English otherwise), saying what happened and that the `cost` credits are back
 * — or, for the `expired` of them (generation.credits_expired) whose period had ended,
 * that they expired with it — into `out`. */
TRYON_API void tryon_generations_user_message(const char *code, const char *lang, int64_t cost,
                                              int64_t expired, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_GENERATIONS_H */
