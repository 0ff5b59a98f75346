/*
 * ptask.c - provider tasks on the runner's steps: upload the inputs, create the task,
 * poll it, download and validate the result, hand the bytes to the caller. Every
 * step's outcome is a checkpoint in the job's payload; see include/tryon/ptask.h.
 *
 *   run ─ upload_next ─┬─ fit_work (off the loop) ─┐
 *                      ├─ upload ─ uploaded ───────┴─ upload_next ...
 *                      └─ create_task ─ created ─ (checkpoint) ─ record_work ─ recorded
 *   poll_later ─ poll_now ─ polled ─┬─ poll_later ...
 *                                   └─ download ─ downloaded ─ validate_work ─ finish
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/ptask.h>

#include "ptask_internal.h"

/* How far under the provider's upload limit a fitted input aims. */
#define FIT_MARGIN 65536

typedef struct input {
  char name[TRYON_PTASK_NAME_MAX];
  char url[TRYON_KIE_URL_MAX]; /* "" until uploaded (or resumed) */
  tryon_buf data;              /* emptied once the provider has it */
} input;

typedef struct ptask {
  const tryon_kie_config *kie;
  char *prompt;
  char output_format[8], aspect_ratio[8];
  input in[TRYON_PTASK_INPUTS_MAX];
  size_t n, cur; /* inputs; the one being fitted or uploaded */
  size_t result_max;
  int64_t poll_limit_ms;
  char prefix[TRYON_PTASK_PREFIX_MAX];
  int from, to;
  tryon_ptask_fit_fn fit;
  tryon_ptask_record_fn record_task;
  tryon_ptask_validate_fn validate;
  tryon_ptask_done_fn done;
  void *ud;
  void (*ud_free)(void *);
  char task_id[TRYON_KIE_TASK_ID_MAX];
  char result_url[TRYON_KIE_URL_MAX];
  int64_t task_started_ms;
  int polls, retries;
  bool create_sent;   /* the payload says a createTask left and its answer is unknown */
  tryon_verdict last; /* the "made nothing" answer create_again acts on */
  tryon_buf result;
} ptask;

static void ptask_free(void *data) {
  ptask *p = data;

  if (p != NULL) {
    for (size_t i = 0; i < TRYON_PTASK_INPUTS_MAX; i++) {
      tryon_buf_release(&p->in[i].data);
    }
    tryon_buf_release(&p->result);
    if (p->ud_free != NULL) {
      p->ud_free(p->ud);
    }
    free(p->prompt);
    free(p);
  }
}

/* ------------------------------------------------------------ pure decisions */

int tryon__ptask_progress(int from, int to, int sixteenths) {
  return from + (to - from) * sixteenths / 16;
}

int tryon__ptask_poll_progress(int from, int to, int polls) {
  int lo = tryon__ptask_progress(from, to, 5);
  int room = tryon__ptask_progress(from, to, 15) - lo;
  int step = polls * (to - from) / 16;

  return lo + (step < room ? step : room);
}

bool tryon__ptask_create_may_repeat(const tryon_verdict *v, bool sent) {
  return strcmp(v->code, "rate_limited") == 0 || strcmp(v->code, "maintenance") == 0 || !sent;
}

bool tryon__ptask_url_local(const char *api_url) {
  const char *api = api_url != NULL ? api_url : "";

  return strstr(api, "://127.0.0.1") != NULL || strstr(api, "://localhost") != NULL ||
         strstr(api, "://[::1]") != NULL;
}

bool tryon__ptask_name_ok(const char *name) {
  size_t n = name != NULL ? strlen(name) : 0;

  if (n == 0 || n >= TRYON_PTASK_NAME_MAX) {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

bool tryon__ptask_file_name(const char *prefix, const char *name, const tryon_buf *data, char *out,
                            size_t cap, const char **mime) {
  bool png = data->len > 4 && memcmp(data->data, "\x89PNG", 4) == 0;
  int n = snprintf(out, cap, "%s-%s.%s", prefix, name, png ? "png" : "jpg");

  *mime = png ? "image/png" : "image/jpeg";
  return n > 0 && (size_t)n < cap;
}

tryon_status tryon__ptask_config_check(const tryon_ptask_config *cfg, tryon_err *err) {
  tryon_status st = TRYON_OK;
  const char *bad = NULL;

  if (cfg == NULL) {
    bad = "no configuration";
  } else if (cfg->kie == NULL) {
    bad = "no provider";
  } else if (cfg->prompt == NULL || cfg->prompt[0] == '\0') {
    bad = "no prompt";
  } else if (cfg->done == NULL) {
    bad = "no done continuation";
  } else if (cfg->inputs == NULL || cfg->n_inputs == 0 || cfg->n_inputs > TRYON_PTASK_INPUTS_MAX) {
    bad = "1 to 4 inputs";
  } else if (cfg->file_prefix == NULL || cfg->file_prefix[0] == '\0' ||
             strlen(cfg->file_prefix) >= TRYON_PTASK_PREFIX_MAX) {
    /* Its characters are kie's business: tryon_kie_upload_request checks the name. */
    bad = "a bad file prefix";
  } else if (cfg->output_format != NULL && strlen(cfg->output_format) >= 8) {
    bad = "a bad output format";
  } else if (cfg->aspect_ratio != NULL && strlen(cfg->aspect_ratio) >= 8) {
    bad = "a bad aspect ratio";
  } else if (cfg->progress_from < 0 || cfg->progress_to > 100 ||
             cfg->progress_from > cfg->progress_to) {
    bad = "a bad progress range";
  }
  for (size_t i = 0; bad == NULL && i < cfg->n_inputs; i++) {
    if (!tryon__ptask_name_ok(cfg->inputs[i].name)) {
      bad = "a bad input name";
    }
    for (size_t k = 0; bad == NULL && k < i; k++) {
      if (strcmp(cfg->inputs[i].name, cfg->inputs[k].name) == 0) {
        bad = "two inputs of one name";
      }
    }
  }
  if (bad != NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "provider task: %s", bad);
  }
  return st;
}

/* ------------------------------------------------------------------ helpers */

static const char *payload_str(const tryon_run *run, const char *key) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), key));
}

bool tryon_ptask_input_needed(const tryon_run *run, const char *name) {
  char key[TRYON_PTASK_NAME_MAX + 8];

  snprintf(key, sizeof key, "%s_url", name != NULL ? name : "");
  return payload_str(run, key) == NULL;
}

void tryon_ptask_fail(tryon_run *run, const char *code, const char *detail, bool retryable,
                      int64_t retry_after_ms) {
  cJSON *e = cJSON_CreateObject();
  char *text = NULL;

  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", detail != NULL && detail[0] != '\0' ? detail : code);
  text = cJSON_PrintUnformatted(e);
  cJSON_Delete(e);
  TRYON_LOG_WARN("job attempt failed", TRYON_LF_STR("job", tryon_run_job(run)->id),
                 TRYON_LF_STR("kind", tryon_run_job(run)->kind), TRYON_LF_STR("code", code),
                 TRYON_LF_STR("detail", detail != NULL ? detail : ""),
                 TRYON_LF_BOOL("retryable", retryable));
  tryon_run_fail(run, text != NULL ? text : "{\"code\":\"internal\"}", retryable, retry_after_ms);
  free(text);
}

/* A verdict that is not OK ends this step: a retry within the job, or a failure. */
static void verdict_fail(tryon_run *run, const tryon_verdict *v) {
  tryon_ptask_fail(run, v->code[0] != '\0' ? v->code : "bad_answer", v->detail,
                   v->next == TRYON_VERDICT_RETRY, v->retry_after_ms);
}

/* Records progress with a one-key checkpoint {key: value} (value NULL: a number). */
static void checkpoint(tryon_run *run, int progress, const char *stage, cJSON *cp,
                       tryon_run_fn cont) {
  char *text = cJSON_PrintUnformatted(cp);

  cJSON_Delete(cp);
  if (text == NULL) { /* unsaved, a rerun would repeat the step: stop here */
    tryon_ptask_fail(run, "internal", "out of memory saving a checkpoint", false, 0);
  } else {
    tryon_run_progress(run, progress, stage, text, cont);
  }
  free(text);
}

/* ------------------------------------------------------------ the result */

/* The caller's again: its data back in the run's slot (which frees the engine's
 * state), then its continuation with the bytes. */
static void finish(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  tryon_buf result = p->result;
  tryon_ptask_done_fn done = p->done;
  void *ud = p->ud;
  void (*ud_free)(void *) = p->ud_free;

  tryon_buf_init(&p->result, 0);
  p->ud = NULL;
  p->ud_free = NULL;
  tryon_run_set_data(run, ud, ud_free);
  done(run, &result, ud);
}

static tryon_status validate_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  ptask *p = ud;

  (void)c;
  (void)run;
  return p->validate(&p->result, p->ud, err);
}

static void validated(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  (void)ud;
  if (st != TRYON_OK) {
    tryon_ptask_fail(run, "bad_result", tryon_err_message(err), false, 0);
  } else {
    finish(run);
  }
}

static void downloaded(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                       void *ud) {
  ptask *p = ud;
  tryon_http_response resp;

  if (st != TRYON_OK) {
    bool again = st == TRYON_E_NETWORK || st == TRYON_E_TIMEOUT ||
                 (st == TRYON_E_UPSTREAM && err->http_status >= 500);
    tryon_ptask_fail(run, st == TRYON_E_TOO_LARGE ? "bad_result" : "download_failed",
                     tryon_err_message(err), again, 0);
    goto out;
  }
  tryon_http_call_take_response(call, &resp);
  tryon_buf_release(&p->result);
  p->result = resp.body;
  memset(&resp.body, 0, sizeof resp.body);
  tryon_http_response_release(&resp);
  if (p->validate != NULL) {
    tryon_run_work(run, validate_work, validated, p);
  } else {
    finish(run);
  }

out:
  return;
}

static void download(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  /* The URL comes from the provider's answer: only public addresses, unless the
   * provider itself is on this machine (a local fake in tests and development). */
  tryon_http_request req = {.url = p->result_url,
                            .max_response_bytes = p->result_max,
                            .timeout_ms = TRYON_PTASK_DOWNLOAD_TIMEOUT_MS,
                            .log_label = "kie-result",
                            .user_agent = p->kie->user_agent,
                            .public_only = !tryon__ptask_url_local(p->kie->api_url)};

  tryon_run_http(run, &req, downloaded, p);
}

/* ---------------------------------------------------------------- polling */

static void poll_later(tryon_run *run);
static void poll_now(tryon_run *run);

/* What is left of the time a task may take (poll_limit_ms from createTask). */
static int64_t poll_budget_left(const tryon_run *run, const ptask *p) {
  return p->poll_limit_ms - (tryon_run_now_ms(run) - p->task_started_ms);
}

static void polled(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                   void *ud) {
  ptask *p = ud;
  tryon_kie_task t;
  tryon_verdict v;

  (void)err;
  tryon_kie_parse_record(call != NULL ? tryon_http_call_response(call) : NULL, st, &t, &v);
  p->polls++;
  if (v.next == TRYON_VERDICT_FINAL) {
    verdict_fail(run, &v);
  } else if (v.next == TRYON_VERDICT_OK && t.state == TRYON_KIE_SUCCESS) {
    p->retries = 0;
    snprintf(p->result_url, sizeof p->result_url, "%s", t.result_url);
    tryon_run_progress(run, p->to, "downloading", NULL, download);
  } else if (poll_budget_left(run, p) <= 0) {
    /* This was the last look (poll_later makes one when the budget runs out). */
    tryon_ptask_fail(run, "timeout", "the task did not finish within the poll limit", false, 0);
  } else if (v.next == TRYON_VERDICT_RETRY && ++p->retries > TRYON_PTASK_POLL_RETRIES) {
    verdict_fail(run, &v);
  } else if (v.next == TRYON_VERDICT_RETRY &&
             v.retry_after_ms > tryon_kie_poll_delay_ms(p->polls)) {
    /* Never past the poll budget, whatever the provider asks. */
    int64_t left = poll_budget_left(run, p);
    tryon_run_sleep(run, v.retry_after_ms < left ? v.retry_after_ms : left, poll_now);
  } else if (v.next == TRYON_VERDICT_RETRY) {
    poll_later(run);
  } else {
    /* Still on its way: the bar creeps on as polls go by. */
    p->retries = 0;
    tryon_run_progress(run, tryon__ptask_poll_progress(p->from, p->to, p->polls), "generating",
                       NULL, poll_later);
  }
}

static void poll_now(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  tryon_kie_request req;
  tryon_err err;

  if (tryon_kie_record_request(p->kie, p->task_id, &req, &err) != TRYON_OK) {
    tryon_ptask_fail(run, "internal", tryon_err_message(&err), false, 0);
  } else {
    tryon_run_http(run, &req.http, polled, p);
    tryon_kie_request_release(&req);
  }
}

static void poll_later(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  int64_t left = poll_budget_left(run, p);
  int64_t delay = tryon_kie_poll_delay_ms(p->polls);

  if (left <= 0) {
    /* One last look before giving up: a task that finished in the last interval (or
     * while a rerun waited for its turn) is paid for, and is delivered. */
    poll_now(run);
  } else {
    tryon_run_sleep(run, delay < left ? delay : left, poll_now);
  }
}

/* ---------------------------------------------------------- creating the task */

static void create_task(tryon_run *run);
static void create_again(tryon_run *run);

static void recorded(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  ptask *p = ud;

  if (st != TRYON_OK) {
    /* The caller's row already names another task: a rerun should have resumed it. */
    tryon_ptask_fail(run, "internal", tryon_err_message(err), st != TRYON_E_CONFLICT, 0);
  } else {
    tryon_run_progress(run, tryon__ptask_progress(p->from, p->to, 5), "generating", NULL,
                       poll_later);
  }
}

static tryon_status record_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  ptask *p = ud;

  (void)run;
  return p->record_task(c, p->task_id, p->ud, err);
}

static void task_checkpointed(tryon_run *run) {
  ptask *p = tryon_run_data(run);

  if (p->record_task != NULL) {
    tryon_run_db(run, record_work, recorded, p);
  } else {
    recorded(run, TRYON_OK, NULL, p);
  }
}

static void created(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                    void *ud) {
  ptask *p = ud;
  tryon_verdict v;
  cJSON *cp;
  bool sent, again;

  (void)err;
  tryon_kie_parse_create(call != NULL ? tryon_http_call_response(call) : NULL, st, p->task_id, &v);
  /* Only an answer that says no task was made (rate limits, maintenance), or a request
   * that never left (DNS, connect refused), may be sent again. After a timeout, a reset
   * or a server error the provider may have created and billed a task whose id we
   * never saw: posting again could make a second one, so the run ends here (the
   * caller's failure hook refunds). */
  sent = call == NULL || tryon_http_call_response(call)->sent;
  again = v.next == TRYON_VERDICT_RETRY && tryon__ptask_create_may_repeat(&v, sent);
  if (again) {
    /* The answer says nothing was made: the marker goes before anything else, so a
     * stop or a rerun from here may post again. */
    p->last = v;
    cp = cJSON_CreateObject();
    if (cp == NULL || cJSON_AddFalseToObject(cp, "create_sent") == NULL) {
      cJSON_Delete(cp);
      tryon_ptask_fail(run, "internal", "out of memory clearing a checkpoint", false, 0);
      goto out;
    }
    checkpoint(run, tryon__ptask_progress(p->from, p->to, 3), "generating", cp, create_again);
    goto out;
  }
  if (v.next == TRYON_VERDICT_RETRY) {
    tryon_ptask_fail(run, v.code, v.detail, false, 0);
    goto out;
  }
  if (v.next != TRYON_VERDICT_OK) {
    verdict_fail(run, &v);
    goto out;
  }
  p->retries = 0;
  p->task_started_ms = tryon_run_now_ms(run);
  /* The task id is saved before anything else can happen: a rerun polls this task. */
  cp = cJSON_CreateObject();
  if (cp == NULL || cJSON_AddStringToObject(cp, "task_id", p->task_id) == NULL ||
      cJSON_AddNumberToObject(cp, "task_started_ms", (double)p->task_started_ms) == NULL) {
    /* Unsaved, a rerun would not know this task and could make a second one. */
    cJSON_Delete(cp);
    tryon_ptask_fail(run, "internal", "out of memory saving the task id", false, 0);
    goto out;
  }
  checkpoint(run, tryon__ptask_progress(p->from, p->to, 4), "generating", cp, task_checkpointed);

out:
  return;
}

/* After a "made nothing" answer, its marker cleared: again within this attempt, a few
 * times, or the attempt fails as the verdict says (a rerun may then post again). */
static void create_again(tryon_run *run) {
  ptask *p = tryon_run_data(run);

  p->create_sent = false;
  if (++p->retries < TRYON_PTASK_CREATE_TRIES) {
    tryon_run_sleep(run, p->last.retry_after_ms > 0 ? p->last.retry_after_ms : 2000LL << p->retries,
                    create_task);
  } else {
    verdict_fail(run, &p->last);
  }
}

static void post_create(tryon_run *run);

/* Before createTask leaves, the payload says so ("create_sent"): a run that ends before
 * the answer (a stop's deadline, a crash, a lost lease) leaves a rerun that knows a task
 * may exist, and that rerun does not post again (see ptask_resume_checks). */
static void create_task(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  cJSON *cp = cJSON_CreateObject();

  if (cp == NULL || cJSON_AddTrueToObject(cp, "create_sent") == NULL) {
    cJSON_Delete(cp);
    tryon_ptask_fail(run, "internal", "out of memory saving a checkpoint", true, 0);
  } else {
    checkpoint(run, tryon__ptask_progress(p->from, p->to, 3), "generating", cp, post_create);
  }
}

static void post_create(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  const char *urls[TRYON_PTASK_INPUTS_MAX];
  tryon_kie_request req;
  tryon_err err;

  p->create_sent = true;
  for (size_t i = 0; i < p->n; i++) {
    urls[i] = p->in[i].url;
  }
  if (tryon_kie_create_request(p->kie, p->prompt, urls, p->n, p->output_format, p->aspect_ratio,
                               &req, &err) != TRYON_OK) {
    tryon_ptask_fail(run, "internal", tryon_err_message(&err), false, 0);
  } else {
    tryon_run_http(run, &req.http, created, p);
    tryon_kie_request_release(&req);
  }
}

/* -------------------------------------------------------------- the inputs */

static void upload_next(tryon_run *run);

static void uploaded(tryon_run *run, tryon_http_call *call, tryon_status st, const tryon_err *err,
                     void *ud) {
  ptask *p = ud;
  input *in = &p->in[p->cur];
  char key[TRYON_PTASK_NAME_MAX + 8];
  tryon_verdict v;
  cJSON *cp;

  (void)err;
  tryon_kie_parse_upload(call != NULL ? tryon_http_call_response(call) : NULL, st, in->url,
                         sizeof in->url, &v);
  if (v.next != TRYON_VERDICT_OK) {
    verdict_fail(run, &v);
  } else {
    tryon_buf_release(&in->data); /* the provider has it now */
    snprintf(key, sizeof key, "%s_url", in->name);
    cp = cJSON_CreateObject();
    cJSON_AddStringToObject(cp, key, in->url);
    /* Input i of n done: i/n of the uploads' 3/16. */
    checkpoint(run, p->from + (p->to - p->from) * 3 * (int)(p->cur + 1) / (16 * (int)p->n),
               "uploading", cp, upload_next);
  }
}

static tryon_status fit_work(tryon_db_conn *c, tryon_run *run, void *ud, tryon_err *err) {
  ptask *p = ud;

  (void)c;
  (void)run;
  return p->fit(&p->in[p->cur].data, TRYON_KIE_UPLOAD_MAX - FIT_MARGIN, p->ud, err);
}

static void fitted(tryon_run *run, tryon_status st, const tryon_err *err, void *ud) {
  ptask *p = ud;

  if (st == TRYON_OK && p->in[p->cur].data.len > TRYON_KIE_UPLOAD_MAX) {
    st = TRYON_E_TOO_LARGE;
    err = NULL;
  }
  if (st != TRYON_OK) {
    tryon_ptask_fail(run, "photo_too_large",
                     err != NULL ? tryon_err_message(err) : "still over the upload limit", false,
                     0);
  } else {
    upload_next(run);
  }
}

/* Uploads what is not uploaded yet, then creates the task (or resumes polling it). */
static void upload_next(tryon_run *run) {
  ptask *p = tryon_run_data(run);
  char name[TRYON_PTASK_PREFIX_MAX + TRYON_PTASK_NAME_MAX + 8];
  const char *mime = NULL;
  tryon_kie_request req;
  tryon_err err;
  input *in;

  if (p->task_id[0] != '\0') {
    /* Resumed: record the task again (the same id is accepted; an earlier run may have
     * stopped before it did), so callbacks find it, then poll. */
    task_checkpointed(run);
    goto out;
  }
  if (p->create_sent) {
    /* An earlier run posted createTask and ended before its answer: kie.ai may have
     * made (and billed) a task we cannot name. Posting again could make a second. */
    tryon_ptask_fail(run, "create_unconfirmed",
                     "an earlier run sent createTask and ended before the answer; not sent again",
                     false, 0);
    goto out;
  }
  for (p->cur = 0; p->cur < p->n && p->in[p->cur].url[0] != '\0'; p->cur++) {
  }
  if (p->cur == p->n) {
    create_task(run);
    goto out;
  }
  in = &p->in[p->cur];
  if (in->data.len > TRYON_KIE_UPLOAD_MAX && p->fit != NULL) {
    /* Our ceiling may be above the provider's: the caller makes a smaller copy. */
    tryon_run_work(run, fit_work, fitted, p);
  } else if (in->data.len > TRYON_KIE_UPLOAD_MAX) {
    tryon_ptask_fail(run, "photo_too_large", "over the provider's upload limit", false, 0);
  } else if (!tryon__ptask_file_name(p->prefix, in->name, &in->data, name, sizeof name, &mime)) {
    tryon_ptask_fail(run, "internal", "the upload's file name does not fit", false, 0);
  } else if (tryon_kie_upload_request(p->kie, in->data.data, in->data.len, mime, name, &req,
                                      &err) != TRYON_OK) {
    tryon_ptask_fail(run, "internal", tryon_err_message(&err), false, 0);
  } else {
    tryon_run_http(run, &req.http, uploaded, p);
    tryon_kie_request_release(&req);
  }

out:
  return;
}

/* ------------------------------------------------------------------- start */

/* The state from the configuration and the payload's checkpoints; the inputs' bytes
 * move in. */
static void ptask_load(ptask *p, const tryon_run *run, const tryon_ptask_config *cfg) {
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), "task_started_ms");
  const char *task = payload_str(run, "task_id");

  p->kie = cfg->kie;
  snprintf(p->output_format, sizeof p->output_format, "%s",
           cfg->output_format != NULL ? cfg->output_format : "png");
  snprintf(p->aspect_ratio, sizeof p->aspect_ratio, "%s",
           cfg->aspect_ratio != NULL ? cfg->aspect_ratio : "auto");
  p->n = cfg->n_inputs;
  for (size_t i = 0; i < p->n; i++) {
    char key[TRYON_PTASK_NAME_MAX + 8];
    const char *url;
    snprintf(p->in[i].name, sizeof p->in[i].name, "%s", cfg->inputs[i].name);
    snprintf(key, sizeof key, "%s_url", p->in[i].name);
    url = payload_str(run, key);
    snprintf(p->in[i].url, sizeof p->in[i].url, "%s", url != NULL ? url : "");
  }
  p->result_max = cfg->result_max > 0 ? cfg->result_max : TRYON_PTASK_RESULT_MAX;
  p->poll_limit_ms = cfg->poll_limit_ms > 0 ? cfg->poll_limit_ms : TRYON_KIE_POLL_LIMIT_MS;
  snprintf(p->prefix, sizeof p->prefix, "%s", cfg->file_prefix);
  p->from = cfg->progress_from;
  p->to = cfg->progress_to;
  if (p->from == 0 && p->to == 0) {
    p->from = 5;
    p->to = 85;
  }
  p->fit = cfg->fit;
  p->record_task = cfg->record_task;
  p->validate = cfg->validate;
  p->done = cfg->done;
  snprintf(p->task_id, sizeof p->task_id, "%s", task != NULL ? task : "");
  p->task_started_ms = cJSON_IsNumber(ts) ? (int64_t)ts->valuedouble : tryon_run_now_ms(run);
  p->create_sent =
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tryon_run_payload(run), "create_sent"));
}

void tryon_ptask_run(tryon_run *run, const tryon_ptask_config *cfg) {
  ptask *p = calloc(1, sizeof *p);
  size_t n = cfg != NULL && cfg->inputs != NULL ? cfg->n_inputs : 0;
  tryon_err err;

  tryon_err_clear(&err);
  /* The bytes and the caller's state are the engine's from here, whatever happens. */
  if (p == NULL) {
    for (size_t i = 0; i < n; i++) {
      tryon_buf_release(&cfg->inputs[i].data);
    }
    if (cfg != NULL && cfg->ud_free != NULL && tryon_run_data(run) != cfg->ud) {
      cfg->ud_free(cfg->ud);
    }
    tryon_run_fail(run, "{\"code\":\"internal\",\"message\":\"out of memory\"}", true, 0);
    goto out;
  }
  for (size_t i = 0; i < TRYON_PTASK_INPUTS_MAX; i++) {
    tryon_buf_init(&p->in[i].data, 0);
  }
  for (size_t i = 0; i < n; i++) {
    if (i < TRYON_PTASK_INPUTS_MAX) {
      p->in[i].data = cfg->inputs[i].data;
      tryon_buf_init(&cfg->inputs[i].data, cfg->inputs[i].data.max);
    } else {
      tryon_buf_release(&cfg->inputs[i].data);
    }
  }
  tryon_buf_init(&p->result, 0);
  if (cfg != NULL) {
    p->ud = cfg->ud;
    p->ud_free = cfg->ud_free;
    if (tryon_run_data(run) == cfg->ud) {
      tryon_run_set_data(run, cfg->ud, NULL); /* taken over, not freed */
    }
  }
  tryon_run_set_data(run, p, ptask_free);
  if (tryon__ptask_config_check(cfg, &err) != TRYON_OK) {
    tryon_ptask_fail(run, "internal", tryon_err_message(&err), false, 0);
  } else if ((p->prompt = strdup(cfg->prompt)) == NULL) {
    tryon_ptask_fail(run, "internal", "out of memory", true, 0);
  } else {
    ptask_load(p, run, cfg);
    if (p->task_id[0] != '\0') {
      TRYON_LOG_INFO("provider task resumed", TRYON_LF_STR("job", tryon_run_job(run)->id),
                     TRYON_LF_STR("task", p->task_id));
    }
    tryon_run_progress(run, p->from, "uploading", NULL, upload_next);
  }

out:
  return;
}
