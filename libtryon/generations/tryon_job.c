/*
 * The "tryon" job kind: from two stored photos to a stored result, on the worker's
 * event loop. Only what is a try-on lives here; the provider's task is the engine's
 * (tryon/ptask.h).
 *
 *   load (DB) → read the photos the provider lacks (storage) ─┬─ offline: compose ─┐
 *                  └─ kie: tryon_ptask_run (upload, create, poll, download), the     │
 *                     result validated like an upload ─────────────────────────────┤
 *                                    finish: watermark, store, succeed (one transaction)
 *
 * The engine checkpoints person_url, item_url, task_id and task_started_ms in the
 * payload, so a rerun resumes and never creates a second provider task. Failures end
 * the attempt through tryon_ptask_fail with the verdict's code; a final one makes the
 * runner call tryon_generations_fail_hook (refund + the user's message) in the failing
 * transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/generations.h>
#include <tryon/ptask.h>

#define RESULT_MAX TRYON_FILES_MAX_OUTPUT_BYTES
#define INPUT_MAX (TRYON_FILES_MAX_OUTPUT_BYTES + 1u)

/* A try-on's state across its steps (the run's data). */
typedef struct gen_job {
  tryon_generation gen;
  bool need_person, need_item; /* the provider does not have it yet: read it */
  tryon_buf person, item;      /* the stored inputs */
  tryon_buf raw;               /* the offline composer's result */
  tryon_image img;             /* the result as stored */
  char result_id[TRYON_UUID_STR_LEN];
  char fail_code[40];
} gen_job;

static void job_free(void *p) {
  gen_job *x = p;

  if (x != NULL) {
    tryon_buf_release(&x->person);
    tryon_buf_release(&x->item);
    tryon_buf_release(&x->raw);
    tryon_image_release(&x->img);
    free(x);
  }
}

static const tryon_generations_kind_config *config(tryon_run *run) {
  return tryon_run_kind_ud(run);
}

/* ------------------------------------------------------------------- finishing */

static tryon_status succeed_effects(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  return tryon_generations_succeed(c, x->gen.id, x->result_id, &x->img, x->gen.watermarked,
                                   tryon_run_now_ms(run), err);
}

/* Off the loop: the result checked and normalised like an upload, into x->img. */
static tryon_status validate_result(const tryon_buf *result, void *ud, tryon_err *err) {
  gen_job *x = ud;
  tryon_image_release(&x->img);
  return tryon_image_normalise_result(result->data, result->len, &x->img, err);
}

/* Off the loop and without a connection: the watermark for the free tier, then once
 * more through the validator, so the thumbnail carries the mark too. */
static tryon_status mark_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  tryon_status st = TRYON_OK;
  tryon_buf marked;
  tryon_buf_init(&marked, RESULT_MAX);
  (void)c;
  if (x->gen.watermarked) {
    st = tryon_image_watermark(x->img.data, x->img.len, config(run)->watermark_text, &marked, err);
    if (st == TRYON_OK) {
      tryon_image_release(&x->img);
      st = tryon_image_normalise_result(marked.data, marked.len, &x->img, err);
    }
  }
  tryon_buf_release(&marked);
  if (st != TRYON_OK)
    snprintf(x->fail_code, sizeof x->fail_code, "bad_result");
  return st;
}

/* With a connection, briefly: store the result and its thumbnail. One name per
 * generation: a rerun replaces what an earlier run left, so files never pile up and
 * the failure hook knows what to remove — unless the generation has been decided
 * meanwhile (another worker took over this job and finished it): then its result
 * stays, and this run's succeed finds the lease gone. */
static tryon_status store_fn(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  tryon_status st;
  char thumb[48];
  tryon_generations_result_id(x->gen.id, x->result_id);
  snprintf(thumb, sizeof thumb, "%s.thumb", x->result_id);
  tryon_generation now;
  st = tryon_generations_get(c, 0, x->gen.id, &now, err);
  if (st != TRYON_OK || strcmp(now.status, "running") != 0) {
    snprintf(x->fail_code, sizeof x->fail_code, "storage");
    return st != TRYON_OK ? st : tryon_err_set(err, TRYON_E_CONFLICT, "decided meanwhile");
  }
  tryon_storage_remove(cfg->storage, x->result_id, NULL);
  tryon_storage_remove(cfg->storage, thumb, NULL);
  st = tryon_storage_put(cfg->storage, x->result_id, x->img.data, x->img.len, err);
  if (st == TRYON_OK && x->img.thumb != NULL)
    st = tryon_storage_put(cfg->storage, thumb, x->img.thumb, x->img.thumb_len, err);
  if (st != TRYON_OK)
    snprintf(x->fail_code, sizeof x->fail_code, "storage");
  return st;
}

static void finish_done(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  if (st != TRYON_OK) {
    /* A broken picture will not mend; a full disk may. */
    bool again = strcmp(x->fail_code, "storage") == 0;
    tryon_ptask_fail(run, x->fail_code[0] ? x->fail_code : "internal", tryon_err_message(err),
                     again, 0);
    return;
  }
  char result[160];
  snprintf(result, sizeof result, "{\"generation_id\":\"%s\",\"result_upload_id\":\"%s\"}",
           x->gen.id, x->result_id);
  tryon_run_succeed(run, result, succeed_effects, x);
}

static void marked(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  if (st != TRYON_OK) {
    finish_done(run, st, err, ud);
    return;
  }
  /* With a connection: it checks the generation before touching the result's name. */
  tryon_run_db(run, store_fn, finish_done, ud);
}

static void finish_now(tryon_run *run) {
  tryon_run_work(run, mark_work, marked, tryon_run_data(run));
}

/* ------------------------------------------------------------------- offline */

static tryon_status offline_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  (void)c;
  (void)run;
  /* JPEG: a composite of a large photo stays well under the validator's size limit. */
  tryon_status st = tryon_image_offline_tryon(x->person.data, x->person.len, x->item.data,
                                              x->item.len, x->gen.category, "jpeg", &x->raw, err);
  tryon_buf_release(&x->person);
  tryon_buf_release(&x->item);
  snprintf(x->fail_code, sizeof x->fail_code, "generation_failed");
  if (st == TRYON_OK) {
    snprintf(x->fail_code, sizeof x->fail_code, "bad_result");
    st = validate_result(&x->raw, x, err);
  }
  tryon_buf_release(&x->raw);
  return st;
}

static void offline_done(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  if (st != TRYON_OK) {
    tryon_ptask_fail(run, x->fail_code, tryon_err_message(err), false, 0);
    return;
  }
  x->fail_code[0] = '\0';
  tryon_run_progress(run, 90, "finishing", NULL, finish_now);
}

static void offline_start(tryon_run *run) {
  tryon_run_work(run, offline_work, offline_done, tryon_run_data(run));
}

/* ------------------------------------------------------------------- kie.ai */

/* Off the loop: a photo over kie.ai's upload limit, as a smaller JPEG. */
static tryon_status fit_photo(tryon_buf *data, size_t max_bytes, void *ud, tryon_err *err) {
  (void)ud;
  tryon_buf small;
  /* Room for a first attempt that overshoots: shrink_to steps down from there. */
  tryon_buf_init(&small, TRYON_FILES_MAX_OUTPUT_BYTES);
  tryon_status st = tryon_image_shrink_to(data->data, data->len, max_bytes, &small, err);
  if (st == TRYON_OK) {
    tryon_buf_release(data);
    *data = small;
  } else {
    tryon_buf_release(&small);
  }
  return st;
}

static tryon_status record_task(tryon_db_conn *c, const char *task_id, void *ud, tryon_err *err) {
  gen_job *x = ud;
  return tryon_generations_set_task(c, x->gen.id, task_id, err);
}

/* The result is in x->img (validate_result): the raw bytes are not needed. */
static void provider_done(tryon_run *run, tryon_buf *result, void *ud) {
  (void)ud;
  tryon_buf_release(result);
  tryon_run_progress(run, 90, "finishing", NULL, finish_now);
}

static void provider_start(tryon_run *run, gen_job *x) {
  const tryon_generations_kind_config *cfg = config(run);
  tryon_ptask_input inputs[] = {{.name = "person", .data = x->person},
                                {.name = "item", .data = x->item}};
  /* The engine takes the bytes; these are left empty. */
  tryon_buf_init(&x->person, INPUT_MAX);
  tryon_buf_init(&x->item, INPUT_MAX);
  tryon_ptask_config pc = {.kie = cfg->kie,
                           .prompt = tryon_generations_prompt(x->gen.category),
                           .output_format = x->gen.output_format,
                           .aspect_ratio = x->gen.aspect_ratio,
                           .inputs = inputs,
                           .n_inputs = 2,
                           .result_max = RESULT_MAX,
                           .poll_limit_ms = cfg->poll_limit_ms,
                           .file_prefix = x->gen.id,
                           .progress_from = 5,
                           .progress_to = 85,
                           .fit = fit_photo,
                           .record_task = record_task,
                           .validate = validate_result,
                           .done = provider_done,
                           .ud = x,
                           .ud_free = job_free};
  tryon_ptask_run(run, &pc);
}

/* ------------------------------------------------------------------- loading */

static const char *payload_str(tryon_run *run, const char *key) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), key));
}

static tryon_status load_fn(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  const char *gid = payload_str(run, "generation_id");
  tryon_status st = tryon_generations_get(c, 0, gid, &x->gen, err);
  if (st != TRYON_OK)
    return st;
  if (strcmp(x->gen.status, "queued") != 0 && strcmp(x->gen.status, "running") != 0)
    return TRYON_OK; /* already decided (a replayed job): nothing to do */
  st = tryon_generations_start(
      c, x->gen.id, cfg->kie ? "kie" : "offline",
      cfg->kie ? (cfg->kie->model ? cfg->kie->model : TRYON_KIE_DEFAULT_MODEL) : "offline-compose",
      tryon_run_now_ms(run), err);
  return st;
}

/* The inputs the provider does not have yet: disk reads, so off the loop and without a
 * database connection. */
static tryon_status read_inputs(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)c;
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  tryon_status st = TRYON_OK;
  if (x->need_person)
    st = tryon_storage_get(cfg->storage, x->gen.person_upload_id, &x->person, err);
  if (st == TRYON_OK && x->need_item)
    st = tryon_storage_get(cfg->storage, x->gen.item_upload_id, &x->item, err);
  if (st == TRYON_E_NOT_FOUND)
    snprintf(x->fail_code, sizeof x->fail_code, "photo_missing");
  return st;
}

static void inputs_read(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  if (st != TRYON_OK) {
    bool missing = x->fail_code[0] != '\0' || st == TRYON_E_NOT_FOUND;
    tryon_ptask_fail(run, missing ? "photo_missing" : "internal", tryon_err_message(err), !missing,
                     0);
    return;
  }
  if (config(run)->kie == NULL) {
    tryon_run_progress(run, 10, "generating", NULL, offline_start);
    return;
  }
  provider_start(run, x);
}

static void loaded(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  bool offline = config(run)->kie == NULL;
  if (st != TRYON_OK) {
    tryon_ptask_fail(run, "internal", tryon_err_message(err), true, 0);
    return;
  }
  if (strcmp(x->gen.status, "succeeded") == 0 || strcmp(x->gen.status, "failed") == 0 ||
      strcmp(x->gen.status, "cancelled") == 0) {
    tryon_run_succeed(run, "{\"note\":\"the generation was already decided\"}", NULL, NULL);
    return;
  }
  x->need_person = offline || tryon_ptask_input_needed(run, "person");
  x->need_item = offline || tryon_ptask_input_needed(run, "item");
  tryon_run_work(run, read_inputs, inputs_read, x);
}

static void start(tryon_run *run) {
  gen_job *x = calloc(1, sizeof *x);
  if (x == NULL) {
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"out of memory\"}", true, 0);
    return;
  }
  tryon_buf_init(&x->person, INPUT_MAX);
  tryon_buf_init(&x->item, INPUT_MAX);
  tryon_buf_init(&x->raw, RESULT_MAX);
  tryon_run_set_data(run, x, job_free);
  if (payload_str(run, "generation_id") == NULL) {
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"no generation in the payload\"}",
                   false, 0);
    return;
  }
  tryon_run_db(run, load_fn, loaded, x);
}

tryon_status tryon_generations_add_kind(tryon_runner *r, const tryon_generations_kind_config *cfg,
                                        tryon_err *err) {
  if (r == NULL || cfg == NULL || cfg->storage == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid try-on kind configuration");
  tryon_job_kind k = {.name = TRYON_GENERATIONS_JOB_KIND,
                      .start = start,
                      .on_final = tryon_generations_fail_hook,
                      .ud = (void *)cfg,
                      .backoff_ms = 5000};
  return tryon_runner_add_kind(r, &k, err);
}
