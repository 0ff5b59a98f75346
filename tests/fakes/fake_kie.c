/*
 * fake-kie: a loopback imitation of kie.ai (the Nano Banana API host and the file
 * upload host on one port), built from ../shared/PROVIDERS.md section 1, for testing
 * the real client without the network. See tests/fakes/CLAUDE.md for the protocol as
 * imitated and its /_fake control fields.
 *
 *   fake-kie [--port N] [--api-key KEY] [--webhook-key KEY] [--max-memory-mb N]
 *
 * Protocol code only: serving, canned answers, the request log, reset, the callback
 * thread and the control plane come from the fake library (lib/fake.h). Here, the API
 * host: the task model and its states, createTask/recordInfo/download-url, kie's
 * envelopes and the order of its checks, and the callback body and signature. The
 * upload host, the files and the result images are fake_kie_files.c.
 *
 * State (tasks, the task script) sits behind the fake's lock (fake_lock).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <vips/vips.h>

#include "fake.h"
#include "fake_kie.h"

#define DEFAULT_WEBHOOK_KEY "fake-kie-webhook-key"

/* ------------------------------------------------------------------------ the state */

typedef enum cb_mode { CB_NONE = 0, CB_SIGNED, CB_UNSIGNED, CB_BAD_SIGNATURE } cb_mode;

/* How the next tasks behave (the script's "task" object, or one "task_queue" entry). */
typedef struct task_script {
  int64_t waiting_ms, queuing_ms, generating_ms;
  char fail_code[64];
  char fail_msg[512];
  cb_mode callback;
  int callback_times;
  bool null_fields;      /* null instead of "" for resultJson, failCode, failMsg */
  bool callback_task_id; /* the callback's data says "task_id" instead of "taskId" */
} task_script;

typedef struct task {
  struct task *next;
  char id[96];
  char model[64];
  char *prompt;
  cJSON *image_urls; /* an array of strings, owned */
  char *param;       /* the create body, as a JSON string */
  char *callback_url;
  char output_format[8];
  task_script s;
  int64_t created_mono_ms, created_wall_ms;
  /* what the callbacks got (fake library reports, see callback_done) */
  int callback_attempts; /* deliveries made or refused */
  long callback_status;  /* -1: none yet; 0: transport failure; else the HTTP status */
  char callback_error[128];
} task;

static struct {
  fake *f;
  char *api_key; /* NULL: any non-empty Bearer key passes */
  char *webhook_key;
  task_script task_default;
  cJSON *task_queue; /* an array of task script objects, owned */
  int auth_http;     /* HTTP status of a bad-auth answer: 401 (default) or 200 */
  task *tasks;       /* newest first */
  uint64_t task_counter;
} g;

static void task_free(task *t) {
  if (t == NULL)
    return;
  free(t->prompt);
  cJSON_Delete(t->image_urls);
  free(t->param);
  free(t->callback_url);
  free(t);
}

static task *task_find(const char *id) {
  for (task *t = g.tasks; t != NULL; t = t->next)
    if (strcmp(t->id, id) == 0)
      return t;
  return NULL;
}

/* ---------------------------------------------------------------------- task states */

static int64_t task_end_offset(const task *t) {
  return t->s.waiting_ms + t->s.queuing_ms + t->s.generating_ms;
}

static bool task_failed(const task *t) {
  return t->s.fail_code[0] != '\0' || t->s.fail_msg[0] != '\0';
}

/* The state now, and the wall-clock time (ms) it began. */
static const char *task_state(const task *t, int64_t now_mono, int64_t *since_wall) {
  int64_t el = now_mono - t->created_mono_ms;
  int64_t a = t->s.waiting_ms, b = a + t->s.queuing_ms, c = task_end_offset(t);
  const char *st;
  int64_t since;
  if (el < a) {
    st = "waiting", since = 0;
  } else if (el < b) {
    st = "queuing", since = a;
  } else if (el < c) {
    st = "generating", since = b;
  } else {
    st = task_failed(t) ? "fail" : "success", since = c;
  }
  if (since_wall != NULL)
    *since_wall = t->created_wall_ms + since;
  return st;
}

static bool task_done(const task *t, int64_t now_mono) {
  return now_mono - t->created_mono_ms >= task_end_offset(t);
}

static const char *task_ext(const task *t) {
  return strcmp(t->output_format, "jpeg") == 0 ? "jpg" : "png";
}

/* The recordInfo `data` object (and the callback's), with g.mu held. */
static cJSON *task_data(const task *t, int64_t now_mono) {
  int64_t since = 0;
  const char *st = task_state(t, now_mono, &since);
  bool done = task_done(t, now_mono);
  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "taskId", t->id);
  cJSON_AddStringToObject(d, "model", t->model);
  cJSON_AddStringToObject(d, "state", st);
  cJSON_AddStringToObject(d, "param", t->param);
  if (done && !task_failed(t)) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/results/%s.%s", fake_port(g.f), t->id,
             task_ext(t));
    cJSON *rj = cJSON_CreateObject();
    cJSON *urls = cJSON_AddArrayToObject(rj, "resultUrls");
    cJSON_AddItemToArray(urls, cJSON_CreateString(url));
    char *text = cJSON_PrintUnformatted(rj);
    cJSON_AddStringToObject(d, "resultJson", text);
    cJSON_free(text);
    cJSON_Delete(rj);
  } else {
    cJSON_AddStringToObject(d, "resultJson", "");
  }
  cJSON_AddStringToObject(d, "failCode", done ? t->s.fail_code : "");
  cJSON_AddStringToObject(d, "failMsg", done ? t->s.fail_msg : "");
  cJSON_AddNumberToObject(d, "costTime", done ? (double)t->s.generating_ms : 0);
  if (done)
    cJSON_AddNumberToObject(d, "completeTime", (double)since);
  else
    cJSON_AddNullToObject(d, "completeTime");
  cJSON_AddNumberToObject(d, "createTime", (double)t->created_wall_ms);
  cJSON_AddNumberToObject(d, "updateTime", (double)since);
  /* PROVIDERS.md: resultJson, failCode and failMsg may be "" or null. */
  static const char *const nullable[] = {"resultJson", "failCode", "failMsg"};
  for (size_t i = 0; t->s.null_fields && i < 3; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, nullable[i]);
    if (cJSON_IsString(v) && v->valuestring[0] == '\0')
      cJSON_ReplaceItemInObjectCaseSensitive(d, nullable[i], cJSON_CreateNull());
  }
  return d;
}

/* ------------------------------------------------------------------------ script I/O */

static bool parse_cb_mode(const char *s, cb_mode *out) {
  static const char *const names[] = {"none", "signed", "unsigned", "bad_signature"};
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (cb_mode)i;
      return true;
    }
  return false;
}

static const char *cb_mode_name(cb_mode m) {
  static const char *const names[] = {"none", "signed", "unsigned", "bad_signature"};
  return names[m];
}

static bool get_ms(const cJSON *o, const char *name, int64_t *out, char *why, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (v == NULL)
    return true;
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 86400000.0) {
    snprintf(why, cap, "task.%s must be a number of ms in [0, 86400000]", name);
    return false;
  }
  *out = (int64_t)v->valuedouble;
  return true;
}

/* Merges the fields present in `o` into `s`; false with `why` on a bad field. */
static bool task_script_merge(task_script *s, const cJSON *o, char *why, size_t cap) {
  if (!cJSON_IsObject(o)) {
    snprintf(why, cap, "task must be an object");
    return false;
  }
  if (!get_ms(o, "waiting_ms", &s->waiting_ms, why, cap) ||
      !get_ms(o, "queuing_ms", &s->queuing_ms, why, cap) ||
      !get_ms(o, "generating_ms", &s->generating_ms, why, cap))
    return false;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "fail_code");
  if (v != NULL) {
    if (cJSON_IsNumber(v))
      snprintf(s->fail_code, sizeof s->fail_code, "%d", v->valueint);
    else if (cJSON_IsString(v))
      snprintf(s->fail_code, sizeof s->fail_code, "%s", v->valuestring);
    else if (cJSON_IsNull(v))
      s->fail_code[0] = '\0';
    else {
      snprintf(why, cap, "task.fail_code must be a string");
      return false;
    }
  }
  v = cJSON_GetObjectItemCaseSensitive(o, "fail_msg");
  if (v != NULL) {
    if (cJSON_IsString(v))
      snprintf(s->fail_msg, sizeof s->fail_msg, "%s", v->valuestring);
    else if (cJSON_IsNull(v))
      s->fail_msg[0] = '\0';
    else {
      snprintf(why, cap, "task.fail_msg must be a string");
      return false;
    }
  }
  v = cJSON_GetObjectItemCaseSensitive(o, "callback");
  if (v != NULL && (!cJSON_IsString(v) || !parse_cb_mode(v->valuestring, &s->callback))) {
    snprintf(why, cap, "task.callback must be none, signed, unsigned or bad_signature");
    return false;
  }
  v = cJSON_GetObjectItemCaseSensitive(o, "callback_times");
  if (v != NULL) {
    if (!cJSON_IsNumber(v) || v->valueint < 0 || v->valueint > 10) {
      snprintf(why, cap, "task.callback_times must be in [0, 10]");
      return false;
    }
    s->callback_times = v->valueint;
  }
  v = cJSON_GetObjectItemCaseSensitive(o, "null_fields");
  if (v != NULL) {
    if (!cJSON_IsBool(v)) {
      snprintf(why, cap, "task.null_fields must be true or false");
      return false;
    }
    s->null_fields = cJSON_IsTrue(v);
  }
  v = cJSON_GetObjectItemCaseSensitive(o, "callback_task_id_key");
  if (v != NULL) {
    if (!cJSON_IsString(v) ||
        (strcmp(v->valuestring, "taskId") != 0 && strcmp(v->valuestring, "task_id") != 0)) {
      snprintf(why, cap, "task.callback_task_id_key must be taskId or task_id");
      return false;
    }
    s->callback_task_id = strcmp(v->valuestring, "task_id") == 0;
  }
  return true;
}

static cJSON *task_script_json(const task_script *s) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "waiting_ms", (double)s->waiting_ms);
  cJSON_AddNumberToObject(o, "queuing_ms", (double)s->queuing_ms);
  cJSON_AddNumberToObject(o, "generating_ms", (double)s->generating_ms);
  cJSON_AddStringToObject(o, "fail_code", s->fail_code);
  cJSON_AddStringToObject(o, "fail_msg", s->fail_msg);
  cJSON_AddStringToObject(o, "callback", cb_mode_name(s->callback));
  cJSON_AddNumberToObject(o, "callback_times", s->callback_times);
  cJSON_AddBoolToObject(o, "null_fields", s->null_fields);
  cJSON_AddStringToObject(o, "callback_task_id_key", s->callback_task_id ? "task_id" : "taskId");
  return o;
}

/* The usual message of a kie code, for envelopes that do not script one. */
static const char *default_msg(int code) {
  switch (code) {
    case 400:
      return "Bad request";
    case 401:
      return "You do not have access permissions";
    case 402:
      return "Credits insufficient";
    case 404:
      return "Not found";
    case 408:
      return "Upstream timeout";
    case 422:
      return "Validation error";
    case 429:
      return "Rate limited: too many requests";
    case 433:
      return "Sub-key usage limit exceeded";
    case 455:
      return "Service unavailable: maintenance";
    case 500:
      return "Server error";
    case 501:
      return "Generation failed";
    case 502:
      return "Bad gateway";
    case 503:
      return "Service unavailable";
    case 505:
      return "Feature disabled";
    default:
      return "error";
  }
}

/* --------------------------------------------------------- hooks of the fake library */

/* POST /_fake/script: "task", "task_queue", "auth_http" (the canned-answer queues
 * "create", "record", "upload", "download" are the library's). Lock held. */
static bool kie_script(const cJSON *doc, bool apply, char *why, size_t cap, void *ud) {
  (void)ud;
  task_script s = g.task_default;
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "task");
  if (t != NULL && !task_script_merge(&s, t, why, cap))
    return false;
  const cJSON *tq = cJSON_GetObjectItemCaseSensitive(doc, "task_queue"), *e;
  if (tq != NULL && !cJSON_IsArray(tq)) {
    snprintf(why, cap, "task_queue must be an array");
    return false;
  }
  cJSON_ArrayForEach(e, tq) {
    task_script probe = s;
    if (!task_script_merge(&probe, e, why, cap))
      return false;
  }
  const cJSON *ah = cJSON_GetObjectItemCaseSensitive(doc, "auth_http");
  if (ah != NULL && (!cJSON_IsNumber(ah) || (ah->valueint != 200 && ah->valueint != 401))) {
    snprintf(why, cap, "auth_http must be 200 or 401");
    return false;
  }
  if (!apply)
    return true;
  g.task_default = s;
  cJSON_ArrayForEach(e, tq) {
    cJSON_AddItemToArray(g.task_queue, cJSON_Duplicate(e, true));
  }
  if (ah != NULL)
    g.auth_http = ah->valueint;
  return true;
}

static void kie_script_dump(cJSON *out, void *ud) {
  (void)ud;
  cJSON_AddItemToObject(out, "task", task_script_json(&g.task_default));
  cJSON_AddItemToObject(out, "task_queue", cJSON_Duplicate(g.task_queue, true));
  cJSON_AddNumberToObject(out, "auth_http", g.auth_http);
}

/* kie's canned answers: {"http","retry_after","code","msg","body","drop"}. */
static bool kie_canned_check(const cJSON *a, char *why, size_t cap, void *ud) {
  (void)ud;
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(a, "code");
  const cJSON *body = cJSON_GetObjectItemCaseSensitive(a, "body");
  if (code != NULL && !cJSON_IsNumber(code)) {
    snprintf(why, cap, "code must be a number");
    return false;
  }
  if (body != NULL && !cJSON_IsString(body)) {
    snprintf(why, cap, "body must be a string");
    return false;
  }
  if (cJSON_GetObjectItemCaseSensitive(a, "http") == NULL && code == NULL && body == NULL &&
      !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "drop"))) {
    snprintf(why, cap, "a canned answer needs http, code, body or drop");
    return false;
  }
  return true;
}

/* Everything a test may have left, and at exit (lock held). */
static void kie_reset(void *ud) {
  (void)ud;
  memset(&g.task_default, 0, sizeof g.task_default);
  g.task_default.callback_times = 1;
  cJSON_Delete(g.task_queue);
  g.task_queue = cJSON_CreateArray();
  g.auth_http = 401;
  while (g.tasks != NULL) {
    task *t = g.tasks;
    g.tasks = t->next;
    task_free(t);
  }
  kie_files_reset();
}

/* --------------------------------------------------------------------- envelopes */

/* The kie envelope: {"code","msg" (or "message"),"data"}; `data` is taken (NULL: null). */
static void send_envelope(fake_request *r, unsigned int http, int code, const char *msg_key,
                          const char *msg, cJSON *data) {
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "code", code);
  cJSON_AddStringToObject(doc, msg_key, msg);
  if (data != NULL)
    cJSON_AddItemToObject(doc, "data", data);
  else
    cJSON_AddNullToObject(doc, "data");
  fake_reply_json(r, http, doc);
}

/* The upload host's envelope adds "success". */
static void send_upload_envelope(fake_request *r, unsigned int http, int code, const char *msg) {
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddBoolToObject(doc, "success", false);
  cJSON_AddNumberToObject(doc, "code", code);
  cJSON_AddStringToObject(doc, "msg", msg);
  cJSON_AddNullToObject(doc, "data");
  fake_reply_json(r, http, doc);
}

void kie_upload_error(fake_request *r, int code, const char *msg) {
  send_upload_envelope(r, 200, code, msg);
}

/* The three kinds of endpoint, by their envelopes. */
typedef enum kie_kind {
  KIE_API,    /* {"code","msg","data"} */
  KIE_RECORD, /* {"code","message","data"}: recordInfo says "message" */
  KIE_UPLOAD  /* {"success","code","msg","data"} */
} kie_kind;

static kie_kind kind_of(const fake_request *r) {
  const char *script = fake_request_route(r)->script;
  if (script != NULL && strcmp(script, "upload") == 0)
    return KIE_UPLOAD;
  return script != NULL && strcmp(script, "record") == 0 ? KIE_RECORD : KIE_API;
}

static void send_error(fake_request *r, unsigned int http, int code, const char *msg) {
  kie_kind k = kind_of(r);
  if (k == KIE_UPLOAD)
    send_upload_envelope(r, http, code, msg);
  else
    send_envelope(r, http, code, k == KIE_RECORD ? "message" : "msg", msg, NULL);
}

/* A canned answer without "body": the endpoint's envelope with "code" (default: the
 * status) and "msg" (default: the code's usual message). */
static void kie_canned(fake_request *r, unsigned int status, const cJSON *a, void *ud) {
  (void)ud;
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(a, "code");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(a, "msg");
  int bcode = cJSON_IsNumber(code) ? code->valueint : (int)status;
  send_error(r, status, bcode, cJSON_IsString(msg) ? msg->valuestring : default_msg(bcode));
}

/* ---------------------------------------------------------------- the checks, in order */

/* (1) Cloudflare in front of both hosts: no User-Agent, no entry. */
static bool kie_guard(fake_request *r, void *ud) {
  (void)ud;
  const char *ua = fake_request_header(r, "User-Agent");
  if (ua != NULL && ua[0] != '\0')
    return false;
  fake_reply_text(r, 403, "error code: 1010");
  return true;
}

/* (2) canned answers: the library. (3) Whether the request carries the right Bearer key
 * (any non-empty one without --api-key). */
static bool auth_ok(const fake_request *r) {
  const char *a = fake_request_header(r, "Authorization");
  if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0)
    return false;
  const char *tok = a + 7;
  while (*tok == ' ')
    tok++;
  if (*tok == '\0')
    return false;
  if (g.api_key == NULL)
    return true;
  size_t n = strlen(tok), m = strlen(g.api_key);
  return n == m && CRYPTO_memcmp(tok, g.api_key, n) == 0;
}

static void kie_log_extra(fake_request *r, cJSON *entry, void *ud) {
  (void)ud;
  cJSON_AddBoolToObject(entry, "auth_ok", auth_ok(r));
}

/* The auth check of every API and upload endpoint; false when it answered. */
bool kie_admit(fake_request *r) {
  if (auth_ok(r))
    return true;
  fake_lock(g.f);
  unsigned int http = (unsigned int)g.auth_http;
  fake_unlock(g.f);
  send_error(r, http, 401, default_msg(401));
  return false;
}

/* kie_admit, then the JSON body (400 when it is not JSON); NULL when it answered. */
const cJSON *kie_admit_json(fake_request *r) {
  if (!kie_admit(r))
    return NULL;
  const cJSON *body = fake_request_json(r);
  if (body == NULL) {
    if (kind_of(r) == KIE_UPLOAD)
      kie_upload_error(r, 400, "Invalid JSON body");
    else
      send_envelope(r, 200, 400, "msg", "Invalid JSON body", NULL);
  }
  return body;
}

/* Any other path behind the hosts. */
static void handle_not_found(fake_request *r, void *ud) {
  (void)ud;
  send_envelope(r, 404, 404, "msg", "Not found", NULL);
}

/* ------------------------------------------------------------------------ callbacks */

/* The callback body: {"code":200|501,"msg","data":<recordInfo data at the end>} (lock
 * held); cJSON_free it. */
static char *callback_body(const task *t) {
  bool failed = task_failed(t);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "code", failed ? 501 : 200);
  cJSON_AddStringToObject(doc, "msg",
                          failed ? (t->s.fail_msg[0] ? t->s.fail_msg : "Generation failed")
                                 : "Image generated successfully.");
  cJSON *data = task_data(t, t->created_mono_ms + task_end_offset(t));
  if (t->s.callback_task_id) {
    cJSON_DeleteItemFromObjectCaseSensitive(data, "taskId");
    cJSON_AddStringToObject(data, "task_id", t->id);
  }
  cJSON_AddItemToObject(doc, "data", data);
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  return text;
}

/* X-Webhook-Timestamp (Unix s) and X-Webhook-Signature = base64(HMAC-SHA256(key,
 * taskId + "." + timestamp)), as PROVIDERS.md documents. */
static void sign_with(fake_headers *h, const char *key, const char *task_id) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  char ts[32], msg[256], sig[128];
  snprintf(ts, sizeof ts, "%lld", (long long)(fake_wall_ms() / 1000));
  int n = snprintf(msg, sizeof msg, "%s.%s", task_id, ts);
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, mac, &mlen);
  EVP_EncodeBlock((unsigned char *)sig, mac, (int)mlen);
  fake_headers_add(h, "X-Webhook-Timestamp", ts);
  fake_headers_add(h, "X-Webhook-Signature", sig);
}

static void sign_good(fake_headers *h, const char *tag, const char *body, void *ud) {
  (void)body, (void)ud;
  sign_with(h, g.webhook_key, tag);
}

/* Well-formed, but made with another key. */
static void sign_bad(fake_headers *h, const char *tag, const char *body, void *ud) {
  (void)body, (void)ud;
  char wrong[512];
  snprintf(wrong, sizeof wrong, "%s-wrong", g.webhook_key);
  sign_with(h, wrong, tag);
}

/* What a delivery got, kept on its task for /_fake/tasks (lock held). */
static void callback_done(const char *tag, int attempt, long status, const char *error, bool final,
                          void *ud) {
  (void)attempt, (void) final, (void)ud;
  task *t = task_find(tag); /* gone after a reset */
  if (t == NULL)
    return;
  t->callback_attempts++;
  t->callback_status = status;
  snprintf(t->callback_error, sizeof t->callback_error, "%s", error);
}

/* ----------------------------------------------------------------------- createTask */

bool kie_task_result_source(const char *id, char *src_url, size_t cap) {
  bool ready = false;
  src_url[0] = '\0';
  fake_lock(g.f);
  task *t = task_find(id);
  if (t != NULL && task_done(t, fake_mono_ms()) && !task_failed(t)) {
    ready = true;
    const cJSON *first = cJSON_GetArrayItem(t->image_urls, 0);
    if (cJSON_IsString(first))
      snprintf(src_url, cap, "%s", first->valuestring);
  }
  fake_unlock(g.f);
  return ready;
}

typedef struct model_info {
  const char *name;
  const char *images_field;
  bool images_required;
  int max_images;
  int prompt_max;
} model_info;

static const model_info models[] = {
    {"google/nano-banana-edit", "image_urls", true, 10, 5000},
    {"google/nano-banana", NULL, false, 0, 5000},
    {"nano-banana-pro", "image_input", false, 8, 10000},
    {"nano-banana-2", "image_input", false, 14, 20000},
};

static const char *const aspect_ratios[] = {"1:1", "9:16", "16:9", "3:4",  "4:3", "3:2",
                                            "2:3", "5:4",  "4:5",  "21:9", "auto"};

bool kie_is_http_url(const char *s) {
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* NULL when the createTask body is valid (then *mi is its model), else why not (a
 * literal or `why`). */
static const char *create_invalid(const cJSON *body, const model_info **mi, char *why, size_t cap) {
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
  const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
  const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
  if (!cJSON_IsString(model) || model->valuestring[0] == '\0')
    return "model is required";
  *mi = NULL;
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
    if (strcmp(models[i].name, model->valuestring) == 0)
      *mi = &models[i];
  if (*mi == NULL)
    return "The model is not supported";
  if (cb != NULL && !cJSON_IsNull(cb) &&
      (!cJSON_IsString(cb) || (cb->valuestring[0] != '\0' && !kie_is_http_url(cb->valuestring))))
    return "callBackUrl must be an http(s) url";
  if (!cJSON_IsObject(input))
    return "input is required";
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(input, "prompt");
  if (!cJSON_IsString(prompt) || prompt->valuestring[0] == '\0')
    return "input.prompt is required";
  const char *field = (*mi)->images_field;
  const cJSON *imgs = field != NULL ? cJSON_GetObjectItemCaseSensitive(input, field) : NULL, *u;
  int nimg = cJSON_GetArraySize(imgs);
  if ((int)strlen(prompt->valuestring) > (*mi)->prompt_max)
    snprintf(why, cap, "input.prompt is longer than %d characters", (*mi)->prompt_max);
  else if (imgs != NULL && !cJSON_IsArray(imgs))
    snprintf(why, cap, "input.%s must be an array of urls", field);
  else if ((*mi)->images_required && nimg == 0)
    snprintf(why, cap, "input.%s is required", field);
  else if (nimg > (*mi)->max_images)
    snprintf(why, cap, "input.%s accepts at most %d images", field, (*mi)->max_images);
  else
    why[0] = '\0';
  cJSON_ArrayForEach(u, imgs) {
    if (why[0] == '\0' && (!cJSON_IsString(u) || !kie_is_http_url(u->valuestring)))
      snprintf(why, cap, "input.%s must hold http(s) urls (no base64)", field);
  }
  if (why[0] != '\0')
    return why;
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(input, "output_format");
  if (of != NULL && (!cJSON_IsString(of) ||
                     (strcmp(of->valuestring, "png") != 0 && strcmp(of->valuestring, "jpeg") != 0)))
    return "input.output_format must be png or jpeg";
  const cJSON *ar = cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio");
  bool ar_ok = ar == NULL;
  for (size_t i = 0; cJSON_IsString(ar) && i < sizeof aspect_ratios / sizeof aspect_ratios[0]; i++)
    ar_ok = ar_ok || strcmp(ar->valuestring, aspect_ratios[i]) == 0;
  return ar_ok ? NULL : "input.aspect_ratio is not supported";
}

/* A task for a valid body, with its script (lock held); its id is in t->id. */
static task *task_new(const cJSON *body, const model_info *mi) {
  const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
  const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(input, "output_format");
  const cJSON *imgs =
      mi->images_field != NULL ? cJSON_GetObjectItemCaseSensitive(input, mi->images_field) : NULL;
  task *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  snprintf(t->model, sizeof t->model, "%s", mi->name);
  t->prompt = fake_strdup(cJSON_GetObjectItemCaseSensitive(input, "prompt")->valuestring);
  t->image_urls = imgs != NULL ? cJSON_Duplicate(imgs, true) : cJSON_CreateArray();
  char *param = cJSON_PrintUnformatted(body);
  t->param = fake_strdup(param);
  cJSON_free(param);
  if (cJSON_IsString(cb) && cb->valuestring[0] != '\0')
    t->callback_url = fake_strdup(cb->valuestring);
  snprintf(t->output_format, sizeof t->output_format, "%s",
           cJSON_IsString(of) ? of->valuestring : "png");
  t->callback_status = -1;
  t->created_mono_ms = fake_mono_ms();
  t->created_wall_ms = fake_wall_ms();
  /* "task_google_1765178615729" in the docs: vendor (or model) and a number. */
  char vendor[48];
  size_t vn = strcspn(mi->name, "/");
  if (vn >= sizeof vendor)
    vn = sizeof vendor - 1;
  for (size_t i = 0; i < vn; i++)
    vendor[i] = isalnum((unsigned char)mi->name[i]) ? mi->name[i] : '_';
  vendor[vn] = '\0';
  snprintf(t->id, sizeof t->id, "task_%s_%" PRIu64, vendor, ++g.task_counter);
  t->s = g.task_default;
  cJSON *one = cJSON_DetachItemFromArray(g.task_queue, 0);
  char why[256];
  if (one != NULL)
    (void)task_script_merge(&t->s, one, why, sizeof why); /* validated when scripted */
  cJSON_Delete(one);
  t->next = g.tasks;
  g.tasks = t;
  return t;
}

static void handle_create(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = kie_admit_json(r);
  if (body == NULL)
    return;
  const model_info *mi = NULL;
  char why[256];
  const char *invalid = create_invalid(body, &mi, why, sizeof why);
  if (invalid != NULL) {
    send_envelope(r, 200, 422, "msg", invalid, NULL);
    return;
  }
  fake_lock(g.f);
  task *t = task_new(body, mi);
  if (t == NULL) {
    fake_unlock(g.f);
    send_envelope(r, 500, 500, "msg", "out of memory", NULL);
    return;
  }
  /* The callbacks are due when the task ends; their body is the task as it will be. */
  char id[sizeof t->id];
  snprintf(id, sizeof id, "%s", t->id);
  bool calls = t->callback_url != NULL && t->s.callback != CB_NONE;
  cb_mode mode = t->s.callback;
  char *cb_url = calls ? fake_strdup(t->callback_url) : NULL;
  char *cb_body = calls ? callback_body(t) : NULL;
  /* PROVIDERS.md: kie's retry policy is undocumented, so one attempt per delivery;
   * callback_times repeats the delivery to test idempotent handlers. */
  fake_callback call = {.url = cb_url,
                        .body = cb_body,
                        .tag = id,
                        .user_agent = "kie-callback/fake",
                        .delay_ms = task_end_offset(t),
                        .attempts = 1,
                        .sign = mode == CB_SIGNED          ? sign_good
                                : mode == CB_BAD_SIGNATURE ? sign_bad
                                                           : NULL,
                        .done = callback_done};
  int times = calls ? t->s.callback_times : 0;
  fake_unlock(g.f);
  for (int i = 0; i < times; i++)
    (void)fake_callback_post(g.f, &call);
  free(cb_url);
  cJSON_free(cb_body);
  cJSON *data = cJSON_CreateObject();
  cJSON_AddStringToObject(data, "taskId", id);
  send_envelope(r, 200, 200, "msg", "success", data);
}

static void handle_record(fake_request *r, void *ud) {
  (void)ud;
  if (!kie_admit(r))
    return;
  const char *id = fake_request_arg(r, "taskId");
  if (id == NULL || id[0] == '\0') {
    send_envelope(r, 200, 422, "message", "taskId is required", NULL);
    return;
  }
  fake_lock(g.f);
  task *t = task_find(id);
  cJSON *data = t != NULL ? task_data(t, fake_mono_ms()) : NULL;
  fake_unlock(g.f);
  if (data != NULL)
    send_envelope(r, 200, 200, "message", "success", data);
  else
    send_envelope(r, 200, 422, "message", "recordInfo is null", NULL);
}

static void handle_download_url(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = kie_admit_json(r);
  if (body == NULL)
    return;
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "url");
  if (!cJSON_IsString(u) || !kie_is_http_url(u->valuestring)) {
    send_envelope(r, 200, 422, "msg", "url is required", NULL);
    return;
  }
  char id[96], signed_url[2048];
  bool is_result;
  /* Others' URLs are echoed. For the fake's own, a "signed" variant: the same path with
   * an expiry 20 minutes on; the fake ignores the query when it serves the file. */
  snprintf(signed_url, sizeof signed_url, "%s", u->valuestring);
  if (kie_own_url(u->valuestring, id, sizeof id, &is_result))
    snprintf(signed_url, sizeof signed_url, "%.*s%cexpires=%" PRId64 "&sig=fake",
             (int)strcspn(u->valuestring, "?#"), u->valuestring,
             strchr(u->valuestring, '?') ? '&' : '?', fake_wall_ms() / 1000 + 1200);
  send_envelope(r, 200, 200, "msg", "success", cJSON_CreateString(signed_url));
}

/* ------------------------------------------------------------------------- control */

/* GET /_fake/tasks: every task, oldest first. */
static void handle_tasks(fake_request *r, void *ud) {
  (void)ud;
  cJSON *o = cJSON_CreateObject();
  cJSON *arr = cJSON_AddArrayToObject(o, "tasks");
  fake_lock(g.f);
  int64_t now = fake_mono_ms();
  for (task *t = g.tasks; t != NULL; t = t->next) { /* kept newest first */
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "taskId", t->id);
    cJSON_AddStringToObject(e, "model", t->model);
    cJSON_AddStringToObject(e, "state", task_state(t, now, NULL));
    cJSON_AddItemToObject(e, "image_urls", cJSON_Duplicate(t->image_urls, true));
    cJSON_AddStringToObject(e, "prompt", t->prompt);
    if (t->callback_url != NULL)
      cJSON_AddStringToObject(e, "callback_url", t->callback_url);
    else
      cJSON_AddNullToObject(e, "callback_url");
    cJSON_AddStringToObject(e, "callback", cb_mode_name(t->s.callback));
    if (t->callback_status >= 0)
      cJSON_AddNumberToObject(e, "callback_status", (double)t->callback_status);
    else
      cJSON_AddNullToObject(e, "callback_status");
    cJSON_AddNumberToObject(e, "callback_attempts", t->callback_attempts);
    if (t->callback_error[0])
      cJSON_AddStringToObject(e, "callback_error", t->callback_error);
    cJSON_InsertItemInArray(arr, 0, e);
  }
  fake_unlock(g.f);
  fake_reply_json(r, 200, o);
}

/* ----------------------------------------------------------------------------- main */

/* Table order is match order: the catch-all comes last. */
static const fake_route routes[] = {
    {"POST", "/api/v1/jobs/createTask", "create", true, handle_create},
    {"GET", "/api/v1/jobs/recordInfo", "record", true, handle_record},
    {"POST", "/api/v1/common/download-url", "download", true, handle_download_url},
    {"POST", "/api/file-stream-upload", "upload", true, kie_handle_stream_upload},
    {"POST", "/api/file-base64-upload", "upload", true, kie_handle_base64_upload},
    {"POST", "/api/file-url-upload", "upload", true, kie_handle_url_upload},
    /* The file host and the result CDN: no User-Agent or key checks. */
    {"GET", "/files/*", NULL, false, kie_handle_get_file},
    {"GET", "/results/*", NULL, false, kie_handle_get_result},
    {"GET", FAKE_CONTROL_PREFIX "tasks", NULL, false, handle_tasks},
    {NULL, "/*", NULL, true, handle_not_found},
};

static void usage(void) {
  fputs("usage: fake-kie [--port N] [--api-key KEY] [--webhook-key KEY] [--max-memory-mb N]\n",
        stderr);
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  long port = 0, mem_mb = 256;
  const char *api_key = NULL, *webhook_key = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage();
      return 0;
    }
    if (v == NULL) {
      usage();
      return 2;
    }
    if (strcmp(a, "--port") == 0) {
      if (!parse_long(v, 0, 65535, &port)) {
        fputs("fake-kie: --port wants 0..65535\n", stderr);
        return 2;
      }
    } else if (strcmp(a, "--api-key") == 0) {
      api_key = v;
    } else if (strcmp(a, "--webhook-key") == 0) {
      webhook_key = v;
    } else if (strcmp(a, "--max-memory-mb") == 0) {
      if (!parse_long(v, 1, 65536, &mem_mb)) {
        fputs("fake-kie: --max-memory-mb wants 1..65536\n", stderr);
        return 2;
      }
    } else {
      usage();
      return 2;
    }
    i++;
  }

  if (VIPS_INIT(argv[0])) {
    fputs("fake-kie: cannot start libvips\n", stderr);
    return 1;
  }
  vips_cache_set_max(0);
  vips_concurrency_set(1);

  g.api_key = api_key != NULL && api_key[0] ? fake_strdup(api_key) : NULL;
  g.webhook_key = fake_strdup(webhook_key != NULL ? webhook_key : DEFAULT_WEBHOOK_KEY);
  g.task_counter = (uint64_t)fake_wall_ms();
  fake_config cfg = {.name = "fake-kie",
                     .port = (int)port,
                     .routes = routes,
                     .nroutes = sizeof routes / sizeof routes[0],
                     .guard = kie_guard,
                     .canned = kie_canned,
                     .canned_check = kie_canned_check,
                     .script = kie_script,
                     .script_dump = kie_script_dump,
                     .log_extra = kie_log_extra,
                     .reset = kie_reset};
  g.f = fake_new(&cfg);
  if (g.f == NULL) {
    fputs("fake-kie: out of memory\n", stderr);
    return 1;
  }
  kie_files_init(g.f, (size_t)mem_mb << 20);
  fake_lock(g.f);
  kie_reset(NULL);
  fake_unlock(g.f);
  int rc = fake_run(g.f);
  fake_free(g.f); /* runs kie_reset: tasks and files freed */
  cJSON_Delete(g.task_queue);
  free(g.api_key);
  free(g.webhook_key);
  vips_shutdown();
  return rc;
}
