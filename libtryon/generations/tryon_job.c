/*
 * The "tryon" job kind: from two stored photos to a stored result, on the worker's
 * event loop.
 *
 *   load (DB + storage) ─┬─ offline: compose ──────────────────────────┐
 *                        └─ kie: upload person, upload item → create task │
 *                               → poll (2.5 s … 10 s) → download result ───┤
 *                                                      finish: validate, watermark,
 *                                                      store, succeed (one transaction)
 *
 * Each step that costs money or time leaves a checkpoint in the job's payload
 * (person_url, item_url, task_id, task_started_ms), so a rerun after a crash, a lost
 * lease or a shutdown resumes: it never creates a second provider task for a task it
 * knows. Failures map to the kie verdict's code; a final one makes the runner call
 * tryon_generations_fail_hook (refund + the user's message) in the failing transaction.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/generations.h>

#define CREATE_TRIES 3 /* createTask answers asking to retry, within one attempt */
#define POLL_RETRIES 6 /* consecutive recordInfo answers asking to retry */
#define RESULT_MAX (16u << 20)
#define INPUT_MAX (TRYON_FILES_MAX_OUTPUT_BYTES + 1u)

typedef struct gen_job {
  tryon_generation gen;
  tryon_buf person, item; /* the stored inputs */
  tryon_buf raw;          /* the provider's (or the offline composer's) result */
  tryon_image img;        /* the result as stored */
  char result_id[TRYON_UUID_STR_LEN];
  char person_url[TRYON_KIE_URL_MAX], item_url[TRYON_KIE_URL_MAX];
  char task_id[TRYON_KIE_TASK_ID_MAX];
  char result_url[TRYON_KIE_URL_MAX];
  int64_t task_started_ms;
  int polls, retries;
  bool watermark;
  char fail_code[40];
} gen_job;

static void ctx_free(void *p) {
  gen_job *x = p;
  if (x == NULL)
    return;
  tryon_buf_release(&x->person);
  tryon_buf_release(&x->item);
  tryon_buf_release(&x->raw);
  tryon_image_release(&x->img);
  free(x);
}

static const tryon_generations_kind_config *config(tryon_run *run) {
  return tryon_run_kind_ud(run);
}

/* Fails the attempt with our code and, for the logs, the provider's words. */
static void fail(tryon_run *run, const char *code, const char *detail, bool retryable,
                 int64_t retry_after_ms) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", detail && detail[0] ? detail : code);
  char *text = cJSON_PrintUnformatted(e);
  cJSON_Delete(e);
  TRYON_LOG_WARN("try-on attempt failed", TRYON_LF_STR("job", tryon_run_job(run)->id),
                 TRYON_LF_STR("code", code), TRYON_LF_STR("detail", detail ? detail : ""),
                 TRYON_LF_BOOL("retryable", retryable));
  tryon_run_fail(run, text ? text : "{\"code\":\"internal\"}", retryable, retry_after_ms);
  free(text);
}

static const char *payload_str(tryon_run *run, const char *key) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), key));
}

/* ------------------------------------------------------------------- finishing */

static tryon_status succeed_effects(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  gen_job *x = ud;
  return tryon_generations_succeed(c, x->gen.id, x->result_id, &x->img, x->watermark,
                                   tryon_run_now_ms(run), err);
}

/* Off the loop and without a connection: validate the result like an upload and
 * watermark it for the free tier (then once more through the validator, so the
 * thumbnail carries the mark too). */
static tryon_status process_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)c;
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  tryon_buf marked;
  tryon_buf_init(&marked, RESULT_MAX);
  tryon_status st = tryon_image_normalise_result(x->raw.data, x->raw.len, &x->img, err);
  if (st == TRYON_OK && x->watermark) {
    st = tryon_image_watermark(x->img.data, x->img.len, cfg->watermark_text, &marked, err);
    if (st == TRYON_OK) {
      tryon_image_release(&x->img);
      st = tryon_image_normalise_result(marked.data, marked.len, &x->img, err);
    }
  }
  tryon_buf_release(&marked);
  tryon_buf_release(&x->raw);
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
    fail(run, x->fail_code[0] ? x->fail_code : "internal", tryon_err_message(err), again, 0);
    return;
  }
  char result[160];
  snprintf(result, sizeof result, "{\"generation_id\":\"%s\",\"result_upload_id\":\"%s\"}",
           x->gen.id, x->result_id);
  tryon_run_succeed(run, result, succeed_effects, x);
}

static void processed(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  if (st != TRYON_OK) {
    finish_done(run, st, err, ud);
    return;
  }
  /* With a connection: it checks the generation before touching the result's name. */
  tryon_run_db(run, store_fn, finish_done, ud);
}

static void finish_now(tryon_run *run) {
  tryon_run_work(run, process_work, processed, tryon_run_data(run));
}

/* ------------------------------------------------------------------- offline */

static void offline_done(tryon_run *run, tryon_status st, const tryon_err *err, void *ud);

static tryon_status offline_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)c;
  (void)run;
  gen_job *x = ud;
  /* JPEG: a composite of a large photo stays well under the validator's size limit. */
  return tryon_image_offline_tryon(x->person.data, x->person.len, x->item.data, x->item.len,
                                   x->gen.category, "jpeg", &x->raw, err);
}

static void offline_start(tryon_run *run) {
  tryon_run_work(run, offline_work, offline_done, tryon_run_data(run));
}

static void offline_done(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  tryon_buf_release(&x->person);
  tryon_buf_release(&x->item);
  if (st != TRYON_OK) {
    fail(run, "generation_failed", tryon_err_message(err), false, 0);
    return;
  }
  tryon_run_progress(run, 90, "finishing", NULL, finish_now);
}

/* ------------------------------------------------------------------- kie.ai */

static void poll_later(tryon_run *run);
static void poll_now(tryon_run *run);

/* What is left of the time a task may take (TRYON_KIE_POLL_LIMIT_S from createTask). */
static int64_t poll_budget_left(tryon_run *run, const gen_job *x) {
  const tryon_generations_kind_config *cfg = config(run);
  int64_t limit = cfg->poll_limit_ms > 0 ? cfg->poll_limit_ms : TRYON_KIE_POLL_LIMIT_MS;
  return limit - (tryon_run_now_ms(run) - x->task_started_ms);
}
static void create_task(tryon_run *run);

/* A kie verdict that is not OK ends this step: a retry within the job, or a failure. */
static void verdict_fail(tryon_run *run, const tryon_verdict *v) {
  fail(run, v->code[0] ? v->code : "bad_answer", v->detail, v->next == TRYON_VERDICT_RETRY,
       v->retry_after_ms);
}

static void result_downloaded(tryon_run *run, tryon_http_call *call, tryon_status st,
                              const tryon_err *err, void *ud) {
  gen_job *x = ud;
  if (st != TRYON_OK) {
    bool again = st == TRYON_E_NETWORK || st == TRYON_E_TIMEOUT ||
                 (st == TRYON_E_UPSTREAM && err->http_status >= 500);
    fail(run, st == TRYON_E_TOO_LARGE ? "bad_result" : "download_failed", tryon_err_message(err),
         again, 0);
    return;
  }
  tryon_http_response resp;
  tryon_http_call_take_response(call, &resp);
  tryon_buf_release(&x->raw);
  x->raw = resp.body;
  memset(&resp.body, 0, sizeof resp.body);
  tryon_http_response_release(&resp);
  tryon_run_progress(run, 90, "finishing", NULL, finish_now);
}

static void download(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  const tryon_generations_kind_config *cfg = config(run);
  /* The URL comes from the provider's answer: only public addresses, unless kie.ai
   * itself is on this machine (a local fake in tests and development). */
  const char *api = cfg->kie->api_url ? cfg->kie->api_url : "";
  bool local = strstr(api, "://127.0.0.1") != NULL || strstr(api, "://localhost") != NULL ||
               strstr(api, "://[::1]") != NULL;
  tryon_http_request req = {.url = x->result_url,
                            .max_response_bytes = RESULT_MAX,
                            .timeout_ms = 120000,
                            .log_label = "kie-result",
                            .user_agent = cfg->kie->user_agent,
                            .public_only = !local};
  tryon_run_http(run, &req, result_downloaded, x);
}

static void polled(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                   void *ud) {
  (void)err;
  gen_job *x = ud;
  tryon_kie_task t;
  tryon_verdict v;
  tryon_kie_parse_record(call ? tryon_http_call_response(call) : NULL, st, &t, &v);
  x->polls++;
  if (v.next == TRYON_VERDICT_FINAL) {
    verdict_fail(run, &v);
    return;
  }
  if (v.next == TRYON_VERDICT_RETRY) {
    if (++x->retries > POLL_RETRIES) {
      verdict_fail(run, &v);
      return;
    }
    if (v.retry_after_ms > tryon_kie_poll_delay_ms(x->polls)) {
      /* Never past the poll budget, whatever the provider asks. */
      int64_t left = poll_budget_left(run, x);
      tryon_run_sleep(run, v.retry_after_ms < left ? v.retry_after_ms : left, poll_now);
      return;
    }
    poll_later(run);
    return;
  }
  x->retries = 0;
  if (t.state == TRYON_KIE_SUCCESS) {
    snprintf(x->result_url, sizeof x->result_url, "%s", t.result_url);
    tryon_run_progress(run, 85, "downloading", NULL, download);
    return;
  }
  /* Still on its way: the bar creeps from 30 towards 80 as polls go by. */
  int progress = 30 + (x->polls * 5 > 50 ? 50 : x->polls * 5);
  tryon_run_progress(run, progress, "generating", NULL, poll_later);
}

static void poll_now(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  const tryon_generations_kind_config *cfg = config(run);
  tryon_kie_request req;
  tryon_err err;
  if (poll_budget_left(run, x) <= 0) {
    fail(run, "timeout", "the task did not finish within the poll limit", false, 0);
    return;
  }
  if (tryon_kie_record_request(cfg->kie, x->task_id, &req, &err) != TRYON_OK) {
    fail(run, "internal", tryon_err_message(&err), false, 0);
    return;
  }
  tryon_run_http(run, &req.http, polled, x);
  tryon_kie_request_release(&req);
}

static void poll_later(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  int64_t left = poll_budget_left(run, x), delay = tryon_kie_poll_delay_ms(x->polls);
  if (left <= 0) {
    fail(run, "timeout", "the task did not finish within the poll limit", false, 0);
    return;
  }
  tryon_run_sleep(run, delay < left ? delay : left, poll_now);
}

static void task_recorded(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  (void)ud;
  if (st != TRYON_OK) {
    /* The generation already names another task: a rerun should have resumed it. */
    fail(run, "internal", tryon_err_message(err), st != TRYON_E_CONFLICT, 0);
    return;
  }
  tryon_run_progress(run, 30, "generating", NULL, poll_later);
}

static tryon_status set_task_fn(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)run;
  gen_job *x = ud;
  return tryon_generations_set_task(c, x->gen.id, x->task_id, err);
}

static void task_checkpointed(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  tryon_run_db(run, set_task_fn, task_recorded, x);
}

static void created(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                    void *ud) {
  (void)err;
  gen_job *x = ud;
  tryon_verdict v;
  tryon_kie_parse_create(call ? tryon_http_call_response(call) : NULL, st, x->task_id, &v);
  /* Only an answer that says no task was made (rate limits, maintenance), or a request
   * that never left (DNS, connect refused), may be sent again. After a timeout, a reset
   * or a server error kie.ai may have created and billed a task whose id we never saw:
   * posting again could make a second one, so the try-on ends here (the user's credits
   * come back). */
  bool never_sent = call != NULL && !tryon_http_call_response(call)->sent;
  bool made_nothing =
      strcmp(v.code, "rate_limited") == 0 || strcmp(v.code, "maintenance") == 0 || never_sent;
  if (v.next == TRYON_VERDICT_RETRY && made_nothing && ++x->retries < CREATE_TRIES) {
    int64_t wait = v.retry_after_ms > 0 ? v.retry_after_ms : 2000LL << x->retries;
    tryon_run_sleep(run, wait, create_task);
    return;
  }
  if (v.next == TRYON_VERDICT_RETRY && !made_nothing) {
    fail(run, v.code, v.detail, false, 0);
    return;
  }
  if (v.next != TRYON_VERDICT_OK) {
    verdict_fail(run, &v);
    return;
  }
  x->retries = 0;
  x->task_started_ms = tryon_run_now_ms(run);
  /* The task id is saved before anything else can happen: a rerun polls this task. */
  cJSON *cp = cJSON_CreateObject();
  cJSON_AddStringToObject(cp, "task_id", x->task_id);
  cJSON_AddNumberToObject(cp, "task_started_ms", (double)x->task_started_ms);
  char *text = cJSON_PrintUnformatted(cp);
  cJSON_Delete(cp);
  if (text == NULL) { /* unsaved, a rerun would make a second task: stop here */
    fail(run, "internal", "out of memory saving the task id", false, 0);
    return;
  }
  tryon_run_progress(run, 25, "generating", text, task_checkpointed);
  free(text);
}

static void create_task(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  const tryon_generations_kind_config *cfg = config(run);
  const char *urls[] = {x->person_url, x->item_url};
  tryon_kie_request req;
  tryon_err err;
  tryon_status st =
      tryon_kie_create_request(cfg->kie, tryon_generations_prompt(x->gen.category), urls, 2,
                               x->gen.output_format, x->gen.aspect_ratio, &req, &err);
  if (st != TRYON_OK) {
    fail(run, "internal", tryon_err_message(&err), false, 0);
    return;
  }
  tryon_run_http(run, &req.http, created, x);
  tryon_kie_request_release(&req);
}

static void upload_next(tryon_run *run);

static void uploaded(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                     void *ud) {
  (void)err;
  gen_job *x = ud;
  bool person = x->person_url[0] == '\0';
  char url[TRYON_KIE_URL_MAX];
  tryon_verdict v;
  tryon_kie_parse_upload(call ? tryon_http_call_response(call) : NULL, st, url, sizeof url, &v);
  if (v.next != TRYON_VERDICT_OK) {
    verdict_fail(run, &v);
    return;
  }
  snprintf(person ? x->person_url : x->item_url, TRYON_KIE_URL_MAX, "%s", url);
  tryon_buf_release(person ? &x->person : &x->item); /* the provider has it now */
  cJSON *cp = cJSON_CreateObject();
  cJSON_AddStringToObject(cp, person ? "person_url" : "item_url", url);
  char *text = cJSON_PrintUnformatted(cp);
  cJSON_Delete(cp);
  tryon_run_progress(run, person ? 12 : 20, "uploading", text, upload_next);
  free(text);
}

/* Off the loop: the photo about to be uploaded, as a JPEG under kie.ai's limit. */
static tryon_status shrink_fn(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)c;
  (void)run;
  gen_job *x = ud;
  tryon_buf *b = x->person_url[0] == '\0' ? &x->person : &x->item;
  tryon_buf small;
  tryon_buf_init(&small, TRYON_KIE_UPLOAD_MAX);
  tryon_status st =
      tryon_image_shrink_to(b->data, b->len, TRYON_KIE_UPLOAD_MAX - 65536, &small, err);
  if (st == TRYON_OK) {
    tryon_buf_release(b);
    *b = small;
  } else {
    tryon_buf_release(&small);
  }
  return st;
}

static void shrunk(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  (void)ud;
  if (st != TRYON_OK) {
    fail(run, "photo_too_large", tryon_err_message(err), false, 0);
    return;
  }
  upload_next(run);
}

/* Uploads what is not uploaded yet, then creates the task (or resumes polling it). */
static void upload_next(tryon_run *run) {
  gen_job *x = tryon_run_data(run);
  const tryon_generations_kind_config *cfg = config(run);
  if (x->task_id[0] != '\0') {
    tryon_run_progress(run, 30, "generating", NULL, poll_later);
    return;
  }
  if (x->person_url[0] != '\0' && x->item_url[0] != '\0') {
    create_task(run);
    return;
  }
  bool person = x->person_url[0] == '\0';
  const tryon_buf *b = person ? &x->person : &x->item;
  char name[64];
  if (b->len > TRYON_KIE_UPLOAD_MAX) { /* our ceiling is above kie.ai's: a smaller copy */
    tryon_run_work(run, shrink_fn, shrunk, x);
    return;
  }
  bool png = b->len > 4 && memcmp(b->data, "\x89PNG", 4) == 0;
  snprintf(name, sizeof name, "%.36s-%s.%s", x->gen.id, person ? "person" : "item",
           png ? "png" : "jpg");
  tryon_kie_request req;
  tryon_err err;
  if (tryon_kie_upload_request(cfg->kie, b->data, b->len, png ? "image/png" : "image/jpeg", name,
                               &req, &err) != TRYON_OK) {
    fail(run, "internal", tryon_err_message(&err), false, 0);
    return;
  }
  tryon_run_http(run, &req.http, uploaded, x);
  tryon_kie_request_release(&req);
}

/* ------------------------------------------------------------------- loading */

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

/* The inputs, unless a checkpoint says the provider has them already: disk reads, so
 * off the loop and without a database connection. */
static tryon_status read_inputs(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  (void)c;
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  tryon_status st = TRYON_OK;
  if (cfg->kie == NULL || payload_str(run, "person_url") == NULL)
    st = tryon_storage_get(cfg->storage, x->gen.person_upload_id, &x->person, err);
  if (st == TRYON_OK && (cfg->kie == NULL || payload_str(run, "item_url") == NULL))
    st = tryon_storage_get(cfg->storage, x->gen.item_upload_id, &x->item, err);
  if (st == TRYON_E_NOT_FOUND)
    snprintf(x->fail_code, sizeof x->fail_code, "photo_missing");
  return st;
}

static void inputs_read(tryon_run *run, tryon_status st, const tryon_err *err, void *ud);

static void loaded(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  if (st != TRYON_OK) {
    fail(run, "internal", tryon_err_message(err), true, 0);
    return;
  }
  if (strcmp(x->gen.status, "succeeded") == 0 || strcmp(x->gen.status, "failed") == 0 ||
      strcmp(x->gen.status, "cancelled") == 0) {
    tryon_run_succeed(run, "{\"note\":\"the generation was already decided\"}", NULL, NULL);
    return;
  }
  tryon_run_work(run, read_inputs, inputs_read, x);
}

static void inputs_read(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  gen_job *x = ud;
  const tryon_generations_kind_config *cfg = config(run);
  if (st != TRYON_OK) {
    bool missing = x->fail_code[0] != '\0' || st == TRYON_E_NOT_FOUND;
    fail(run, missing ? "photo_missing" : "internal", tryon_err_message(err), !missing, 0);
    return;
  }
  x->watermark = x->gen.watermarked;
  if (cfg->kie == NULL) {
    tryon_run_progress(run, 10, "generating", NULL, offline_start);
    return;
  }
  const char *pu = payload_str(run, "person_url"), *iu = payload_str(run, "item_url"),
             *task = payload_str(run, "task_id");
  snprintf(x->person_url, sizeof x->person_url, "%s", pu ? pu : "");
  snprintf(x->item_url, sizeof x->item_url, "%s", iu ? iu : "");
  snprintf(x->task_id, sizeof x->task_id, "%s", task ? task : "");
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), "task_started_ms");
  x->task_started_ms = cJSON_IsNumber(ts) ? (int64_t)ts->valuedouble : tryon_run_now_ms(run);
  if (task != NULL)
    TRYON_LOG_INFO("try-on resumes its provider task", TRYON_LF_STR("job", tryon_run_job(run)->id),
                   TRYON_LF_STR("task", task));
  tryon_run_progress(run, 5, "uploading", NULL, upload_next);
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
  tryon_run_set_data(run, x, ctx_free);
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
