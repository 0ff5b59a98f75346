/*
 * fake-kie: a loopback imitation of kie.ai (the Nano Banana API host and the file
 * upload host on one port), built from ../shared/PROVIDERS.md section 1, for testing
 * the real client without the network. See tests/fakes/CLAUDE.md for the protocol as
 * imitated and the /_fake control API.
 *
 *   fake-kie [--port N] [--api-key KEY] [--webhook-key KEY] [--max-memory-mb N]
 *
 * Binds 127.0.0.1 only, prints "listening <port>\n" once ready, stops on SIGTERM/SIGINT
 * with exit status 0. Fetches nothing from outside: URL uploads read the fake's own
 * files, callbacks go to loopback addresses only.
 *
 * Threads: libmicrohttpd runs a thread per connection; a callback thread delivers task
 * callbacks. All state sits behind one mutex (g.mu); libvips work and outbound
 * callbacks run outside it on copies.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <vips/vips.h>

#define MAX_BODY (64u << 20)      /* one request body */
#define MAX_REQUESTS_LOGGED 10000 /* older entries are dropped first */
#define MAX_SCRIPT_ITEMS 1000     /* canned answers per endpoint */
#define BIG_STRING_LOGGED 4096    /* longer JSON strings are omitted from the log */
#define CALLBACK_TICK_MS 20       /* how often the callback thread looks */
#define GENERATED_W 512           /* the generated result when there is no source */
#define GENERATED_H 768
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
  /* callback bookkeeping */
  int callback_sent;    /* deliveries started */
  bool callback_busy;   /* a delivery is in flight */
  long callback_status; /* -1: none yet; 0: transport failure; else the HTTP status */
  char callback_error[128];
} task;

typedef struct file {
  struct file *next;
  char id[40];
  char *name;
  char *path;
  char mime[64];
  unsigned char *data;
  size_t len;
  char uploaded_at[32];
} file;

/* The canned answers of one endpoint, consumed from the front. */
typedef struct canned_queue {
  cJSON *items; /* an array, owned */
} canned_queue;

enum { Q_CREATE, Q_RECORD, Q_UPLOAD, Q_DOWNLOAD, Q_COUNT };
static const char *const queue_names[Q_COUNT] = {"create", "record", "upload", "download"};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool stopping;
  int port;
  char *api_key;
  char *webhook_key;
  size_t max_memory;
  size_t memory; /* bytes held by uploaded files */
  canned_queue queues[Q_COUNT];
  task_script task_default;
  cJSON *task_queue; /* an array of task script objects, owned */
  int auth_http;     /* HTTP status of a bad-auth answer: 401 (default) or 200 */
  cJSON *requests;   /* the request log, an array, owned */
  task *tasks;       /* newest first */
  file *files;       /* newest first */
  uint64_t task_counter;
  uint64_t file_counter;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrdup(const char *s) {
  char *d = strdup(s != NULL ? s : "");
  if (d == NULL) {
    fputs("fake-kie: out of memory\n", stderr);
    abort();
  }
  return d;
}

static void task_free(task *t) {
  if (t == NULL)
    return;
  free(t->prompt);
  cJSON_Delete(t->image_urls);
  free(t->param);
  free(t->callback_url);
  free(t);
}

static void file_free(file *f) {
  if (f == NULL)
    return;
  free(f->name);
  free(f->path);
  free(f->data);
  free(f);
}

static void script_defaults(void) {
  memset(&g.task_default, 0, sizeof g.task_default);
  g.task_default.callback_times = 1;
  for (int i = 0; i < Q_COUNT; i++) {
    cJSON_Delete(g.queues[i].items);
    g.queues[i].items = cJSON_CreateArray();
  }
  cJSON_Delete(g.task_queue);
  g.task_queue = cJSON_CreateArray();
  g.auth_http = 401;
}

/* Clears everything a test may have left (with g.mu held). */
static void state_reset(void) {
  script_defaults();
  cJSON_Delete(g.requests);
  g.requests = cJSON_CreateArray();
  while (g.tasks != NULL) {
    task *t = g.tasks;
    g.tasks = t->next;
    task_free(t);
  }
  while (g.files != NULL) {
    file *f = g.files;
    g.files = f->next;
    file_free(f);
  }
  g.memory = 0;
}

static task *task_find(const char *id) {
  for (task *t = g.tasks; t != NULL; t = t->next)
    if (strcmp(t->id, id) == 0)
      return t;
  return NULL;
}

static file *file_find(const char *id) {
  for (file *f = g.files; f != NULL; f = f->next)
    if (strcmp(f->id, id) == 0)
      return f;
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
    snprintf(url, sizeof url, "http://127.0.0.1:%d/results/%s.%s", g.port, t->id, task_ext(t));
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

/* Checks one canned answer: {"http":N,"retry_after":S,"code":C,"msg":M,"body":B} or
 * {"drop":true}. */
static bool canned_valid(const cJSON *r, char *why, size_t cap) {
  if (!cJSON_IsObject(r)) {
    snprintf(why, cap, "a canned answer must be an object");
    return false;
  }
  const cJSON *http = cJSON_GetObjectItemCaseSensitive(r, "http");
  const cJSON *drop = cJSON_GetObjectItemCaseSensitive(r, "drop");
  if (cJSON_IsTrue(drop))
    return true;
  if (http != NULL && (!cJSON_IsNumber(http) || http->valueint < 100 || http->valueint > 599)) {
    snprintf(why, cap, "http must be a status in [100, 599]");
    return false;
  }
  const cJSON *ra = cJSON_GetObjectItemCaseSensitive(r, "retry_after");
  if (ra != NULL && !cJSON_IsNumber(ra) && !cJSON_IsString(ra)) {
    snprintf(why, cap, "retry_after must be seconds or a string");
    return false;
  }
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(r, "code");
  if (code != NULL && !cJSON_IsNumber(code)) {
    snprintf(why, cap, "code must be a number");
    return false;
  }
  const cJSON *body = cJSON_GetObjectItemCaseSensitive(r, "body");
  if (body != NULL && !cJSON_IsString(body)) {
    snprintf(why, cap, "body must be a string");
    return false;
  }
  if (http == NULL && code == NULL && body == NULL) {
    snprintf(why, cap, "a canned answer needs http, code, body or drop");
    return false;
  }
  return true;
}

/* Applies a /_fake/script body (with g.mu held): validates everything first, then
 * merges, so a bad script changes nothing. */
static bool script_apply(const cJSON *doc, char *why, size_t cap) {
  if (!cJSON_IsObject(doc)) {
    snprintf(why, cap, "the script must be a JSON object");
    return false;
  }
  for (int i = 0; i < Q_COUNT; i++) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, queue_names[i]);
    if (arr == NULL)
      continue;
    if (!cJSON_IsArray(arr)) {
      snprintf(why, cap, "%s must be an array", queue_names[i]);
      return false;
    }
    if (cJSON_GetArraySize(arr) + cJSON_GetArraySize(g.queues[i].items) > MAX_SCRIPT_ITEMS) {
      snprintf(why, cap, "too many canned answers for %s", queue_names[i]);
      return false;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, arr) {
      if (!canned_valid(r, why, cap))
        return false;
    }
  }
  task_script s = g.task_default;
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "task");
  if (t != NULL && !task_script_merge(&s, t, why, cap))
    return false;
  const cJSON *tq = cJSON_GetObjectItemCaseSensitive(doc, "task_queue");
  if (tq != NULL) {
    if (!cJSON_IsArray(tq)) {
      snprintf(why, cap, "task_queue must be an array");
      return false;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, tq) {
      task_script probe = s;
      if (!task_script_merge(&probe, e, why, cap))
        return false;
    }
  }
  const cJSON *ah = cJSON_GetObjectItemCaseSensitive(doc, "auth_http");
  if (ah != NULL && (!cJSON_IsNumber(ah) || (ah->valueint != 200 && ah->valueint != 401))) {
    snprintf(why, cap, "auth_http must be 200 or 401");
    return false;
  }
  /* Valid: merge. */
  for (int i = 0; i < Q_COUNT; i++) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, queue_names[i]);
    const cJSON *r;
    cJSON_ArrayForEach(r, arr) {
      cJSON_AddItemToArray(g.queues[i].items, cJSON_Duplicate(r, true));
    }
  }
  g.task_default = s;
  const cJSON *e;
  cJSON_ArrayForEach(e, tq) {
    cJSON_AddItemToArray(g.task_queue, cJSON_Duplicate(e, true));
  }
  if (ah != NULL)
    g.auth_http = ah->valueint;
  return true;
}

static cJSON *script_json(void) {
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < Q_COUNT; i++)
    cJSON_AddItemToObject(o, queue_names[i], cJSON_Duplicate(g.queues[i].items, true));
  cJSON_AddItemToObject(o, "task", task_script_json(&g.task_default));
  cJSON_AddItemToObject(o, "task_queue", cJSON_Duplicate(g.task_queue, true));
  cJSON_AddNumberToObject(o, "auth_http", g.auth_http);
  return o;
}

/* ------------------------------------------------------------------ per request data */

typedef struct req {
  char *uri; /* raw, with the query */
  unsigned char *body;
  size_t len, cap;
  bool too_big;
  bool started;
  /* multipart fields, filled by the post processor */
  cJSON *fields; /* names in order */
  unsigned char *file_data;
  size_t file_len, file_cap;
  bool have_file;
  char file_name[256];
  char file_type[128];
  char *upload_path;
  char *form_file_name;
  bool mp_parsed, mp_ok; /* the multipart body went through the post processor */
} req;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  (void)cls, (void)c;
  req *r = calloc(1, sizeof *r);
  if (r != NULL)
    r->uri = strdup(uri);
  return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  req *r = *req_cls;
  if (r == NULL)
    return;
  free(r->uri);
  free(r->body);
  cJSON_Delete(r->fields);
  free(r->file_data);
  free(r->upload_path);
  free(r->form_file_name);
  free(r);
  *req_cls = NULL;
}

static bool grow_append(unsigned char **buf, size_t *len, size_t *cap, const void *p, size_t n,
                        size_t max) {
  if (n > max - *len)
    return false;
  if (*len + n + 1 > *cap) {
    size_t nc = *cap ? *cap : 4096;
    while (nc < *len + n + 1)
      nc *= 2;
    unsigned char *nb = realloc(*buf, nc);
    if (nb == NULL)
      return false;
    *buf = nb, *cap = nc;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  (*buf)[*len] = '\0';
  return true;
}

/* ------------------------------------------------------------------------ responses */

static enum MHD_Result send_bytes(struct MHD_Connection *c, unsigned int status, const void *data,
                                  size_t len, const char *type, const char *retry_after) {
  void *copy = malloc(len ? len : 1);
  if (copy == NULL)
    return MHD_NO;
  if (len)
    memcpy(copy, data, len);
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(copy);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (retry_after != NULL)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* Sends `doc` (taken: deleted here). */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned int status, cJSON *doc) {
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  if (text == NULL)
    return MHD_NO;
  enum MHD_Result ret =
      send_bytes(c, status, text, strlen(text), "application/json; charset=utf-8", NULL);
  cJSON_free(text);
  return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned int status, const char *text) {
  return send_bytes(c, status, text, strlen(text), "text/plain; charset=utf-8", NULL);
}

/* The kie envelope: {"code","msg" (or "message"),"data"}; `data` is taken (NULL: null). */
static enum MHD_Result send_envelope(struct MHD_Connection *c, unsigned int http, int code,
                                     const char *msg_key, const char *msg, cJSON *data) {
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddNumberToObject(doc, "code", code);
  cJSON_AddStringToObject(doc, msg_key, msg);
  if (data != NULL)
    cJSON_AddItemToObject(doc, "data", data);
  else
    cJSON_AddNullToObject(doc, "data");
  return send_json(c, http, doc);
}

/* The upload host's envelope adds "success". */
static enum MHD_Result send_upload_error(struct MHD_Connection *c, int code, const char *msg) {
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddBoolToObject(doc, "success", false);
  cJSON_AddNumberToObject(doc, "code", code);
  cJSON_AddStringToObject(doc, "msg", msg);
  cJSON_AddNullToObject(doc, "data");
  return send_json(c, MHD_HTTP_OK, doc);
}

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

/* Answers with a canned reply `r` (a duplicate, owned here). MHD_NO for a drop, which
 * makes libmicrohttpd close the connection without an answer. */
static enum MHD_Result send_canned(struct MHD_Connection *c, cJSON *r, const char *msg_key,
                                   bool upload) {
  enum MHD_Result ret;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "drop"))) {
    cJSON_Delete(r);
    return MHD_NO;
  }
  const cJSON *http = cJSON_GetObjectItemCaseSensitive(r, "http");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(r, "code");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(r, "msg");
  const cJSON *body = cJSON_GetObjectItemCaseSensitive(r, "body");
  const cJSON *ra = cJSON_GetObjectItemCaseSensitive(r, "retry_after");
  unsigned int status = cJSON_IsNumber(http) ? (unsigned int)http->valueint : 200;
  int bcode = cJSON_IsNumber(code) ? code->valueint : (int)status;
  char retry[64] = "";
  if (cJSON_IsNumber(ra))
    snprintf(retry, sizeof retry, "%d", ra->valueint);
  else if (cJSON_IsString(ra))
    snprintf(retry, sizeof retry, "%s", ra->valuestring);
  if (cJSON_IsString(body)) {
    const char *b = body->valuestring;
    const char *type = (b[0] == '{' || b[0] == '[') ? "application/json" : "text/plain";
    ret = send_bytes(c, status, b, strlen(b), type, retry[0] ? retry : NULL);
  } else {
    cJSON *doc = cJSON_CreateObject();
    if (upload)
      cJSON_AddBoolToObject(doc, "success", false);
    cJSON_AddNumberToObject(doc, "code", bcode);
    cJSON_AddStringToObject(doc, msg_key,
                            cJSON_IsString(msg) ? msg->valuestring : default_msg(bcode));
    cJSON_AddNullToObject(doc, "data");
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    ret = send_bytes(c, status, text, strlen(text), "application/json; charset=utf-8",
                     retry[0] ? retry : NULL);
    cJSON_free(text);
  }
  cJSON_Delete(r);
  return ret;
}

/* The next canned answer of queue `q`, detached (caller deletes), or NULL. */
static cJSON *canned_take(int q) {
  pthread_mutex_lock(&g.mu);
  cJSON *r = cJSON_DetachItemFromArray(g.queues[q].items, 0);
  pthread_mutex_unlock(&g.mu);
  return r;
}

/* ------------------------------------------------------------------- request log */

/* A copy of `v` with huge strings (base64 payloads) replaced by a note. */
static cJSON *log_copy(const cJSON *v) {
  cJSON *d = cJSON_Duplicate(v, true);
  if (d == NULL)
    return NULL;
  /* Walk iteratively over the copy. */
  cJSON *stack[64];
  int n = 0;
  stack[n++] = d;
  while (n > 0) {
    cJSON *cur = stack[--n];
    for (cJSON *ch = cur->child; ch != NULL; ch = ch->next) {
      if (cJSON_IsString(ch) && strlen(ch->valuestring) > BIG_STRING_LOGGED) {
        char note[96];
        snprintf(note, sizeof note, "<omitted %zu chars>", strlen(ch->valuestring));
        cJSON_SetValuestring(ch, note);
      } else if ((cJSON_IsObject(ch) || cJSON_IsArray(ch)) && n < 64) {
        stack[n++] = ch;
      }
    }
  }
  return d;
}

static const char *header(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Whether the request carries the right Bearer key (any non-empty one without
 * --api-key). */
static bool auth_ok(struct MHD_Connection *c) {
  const char *a = header(c, MHD_HTTP_HEADER_AUTHORIZATION);
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

static void log_request(struct MHD_Connection *c, const char *method, const char *url, const req *r,
                        const cJSON *json) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "method", method);
  cJSON_AddStringToObject(e, "path", url);
  const char *q = r != NULL && r->uri != NULL ? strchr(r->uri, '?') : NULL;
  cJSON_AddStringToObject(e, "query", q != NULL ? q + 1 : "");
  cJSON_AddBoolToObject(e, "auth_ok", auth_ok(c));
  const char *ua = header(c, MHD_HTTP_HEADER_USER_AGENT);
  const char *ct = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ua != NULL)
    cJSON_AddStringToObject(e, "user_agent", ua);
  else
    cJSON_AddNullToObject(e, "user_agent");
  if (ct != NULL)
    cJSON_AddStringToObject(e, "content_type", ct);
  else
    cJSON_AddNullToObject(e, "content_type");
  cJSON *j = json != NULL ? log_copy(json) : NULL;
  if (j != NULL)
    cJSON_AddItemToObject(e, "json", j);
  else
    cJSON_AddNullToObject(e, "json");
  if (r != NULL && r->fields != NULL)
    cJSON_AddItemToObject(e, "fields", cJSON_Duplicate(r->fields, true));
  cJSON_AddNumberToObject(e, "body_bytes", r != NULL ? (double)r->len : 0);
  pthread_mutex_lock(&g.mu);
  if (cJSON_GetArraySize(g.requests) >= MAX_REQUESTS_LOGGED)
    cJSON_Delete(cJSON_DetachItemFromArray(g.requests, 0));
  cJSON_AddItemToArray(g.requests, e);
  pthread_mutex_unlock(&g.mu);
}

/* ---------------------------------------------------------------- images (libvips) */

/* A real image: `src` decoded (when given and decodable) with a magenta band across its
 * top eighth, else a generated 512x768 gradient with the same band; encoded as JPEG or
 * PNG. *out is malloc'd. */
static bool make_result(const unsigned char *src, size_t src_len, bool jpeg, unsigned char **out,
                        size_t *out_len) {
  VipsImage *t[12] = {0};
  VipsImage *img = NULL;
  void *buf = NULL;
  size_t len = 0;
  bool ok = false;
  if (src != NULL && src_len > 0)
    t[0] = vips_image_new_from_buffer(src, src_len, "", "access", VIPS_ACCESS_RANDOM, NULL);
  if (t[0] != NULL) {
    img = t[0];
    if (vips_image_hasalpha(img)) {
      if (vips_flatten(img, &t[1], NULL))
        goto out;
      img = t[1];
    }
    if (vips_colourspace(img, &t[2], VIPS_INTERPRETATION_sRGB, NULL))
      goto out;
    img = t[2];
    if (vips_cast_uchar(img, &t[3], NULL))
      goto out;
    img = t[3];
  } else {
    vips_error_clear();
    if (vips_xyz(&t[4], GENERATED_W, GENERATED_H, NULL) ||
        vips_extract_band(t[4], &t[5], 0, NULL) || vips_extract_band(t[4], &t[6], 1, NULL) ||
        vips_linear1(t[5], &t[7], 255.0 / (GENERATED_W - 1), 0, NULL) ||
        vips_linear1(t[6], &t[8], 255.0 / (GENERATED_H - 1), 0, NULL) ||
        vips_linear1(t[5], &t[9], 0, 96, NULL))
      goto out;
    VipsImage *bands[3] = {t[7], t[8], t[9]};
    if (vips_bandjoin(bands, &t[10], 3, NULL) || vips_cast_uchar(t[10], &t[11], NULL))
      goto out;
    img = t[11];
  }
  VipsImage *mem = vips_image_copy_memory(img);
  if (mem == NULL)
    goto out;
  int w = vips_image_get_width(mem), h = vips_image_get_height(mem);
  int nb = vips_image_get_bands(mem);
  double ink[4] = {255, 0, 255, 255};
  int band_h = h / 8 > 0 ? h / 8 : 1;
  if (vips_draw_rect(mem, ink, nb < 4 ? nb : 4, 0, 0, w, band_h, "fill", TRUE, NULL)) {
    g_object_unref(mem);
    goto out;
  }
  int rc = jpeg ? vips_jpegsave_buffer(mem, &buf, &len, "Q", 90, NULL)
                : vips_pngsave_buffer(mem, &buf, &len, NULL);
  g_object_unref(mem);
  if (rc)
    goto out;
  *out = malloc(len);
  if (*out == NULL)
    goto out;
  memcpy(*out, buf, len);
  *out_len = len;
  ok = true;
out:
  if (!ok)
    vips_error_clear();
  g_free(buf);
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (t[i] != NULL)
      g_object_unref(t[i]);
  return ok;
}

/* The mime type from the first bytes, or NULL. */
static const char *sniff(const unsigned char *p, size_t n) {
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
    return "image/png";
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return "image/jpeg";
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return "image/webp";
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return "image/gif";
  return NULL;
}

/* "<own base>/files/<id>/..." → the file id in `id` (cap 40); else false. Accepts the
 * fake's own host as 127.0.0.1 or localhost. Sets *is_result for "/results/<taskId>.x". */
static bool own_url(const char *url, char *what, size_t cap, bool *is_result) {
  char b1[64], b2[64];
  snprintf(b1, sizeof b1, "http://127.0.0.1:%d/", g.port);
  snprintf(b2, sizeof b2, "http://localhost:%d/", g.port);
  const char *rest = NULL;
  if (strncmp(url, b1, strlen(b1)) == 0)
    rest = url + strlen(b1);
  else if (strncmp(url, b2, strlen(b2)) == 0)
    rest = url + strlen(b2);
  if (rest == NULL)
    return false;
  const char *p;
  if (strncmp(rest, "files/", 6) == 0) {
    p = rest + 6;
    *is_result = false;
  } else if (strncmp(rest, "results/", 8) == 0) {
    p = rest + 8;
    *is_result = true;
  } else {
    return false;
  }
  size_t n = *is_result ? strcspn(p, ".?#") : strcspn(p, "/?#");
  if (n == 0 || n >= cap)
    return false;
  memcpy(what, p, n);
  what[n] = '\0';
  return true;
}

/* A copy of the bytes of the fake's file at `url` (malloc'd), or NULL. */
static unsigned char *own_file_bytes(const char *url, size_t *len, char *mime, size_t mime_cap) {
  char id[96];
  bool is_result = false;
  unsigned char *copy = NULL;
  if (!own_url(url, id, sizeof id, &is_result) || is_result)
    return NULL;
  pthread_mutex_lock(&g.mu);
  file *f = file_find(id);
  if (f != NULL && (copy = malloc(f->len ? f->len : 1)) != NULL) {
    memcpy(copy, f->data, f->len);
    *len = f->len;
    if (mime != NULL)
      snprintf(mime, mime_cap, "%s", f->mime);
  }
  pthread_mutex_unlock(&g.mu);
  return copy;
}

/* ----------------------------------------------------------------------- createTask */

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

static bool is_http_url(const char *s) {
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static enum MHD_Result handle_create(struct MHD_Connection *c, const cJSON *body) {
  const model_info *mi = NULL;
  char why[256];
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
  const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
  const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
  if (body == NULL)
    return send_envelope(c, MHD_HTTP_OK, 400, "msg", "Invalid JSON body", NULL);
  if (!cJSON_IsString(model) || model->valuestring[0] == '\0')
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "model is required", NULL);
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
    if (strcmp(models[i].name, model->valuestring) == 0)
      mi = &models[i];
  if (mi == NULL)
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "The model is not supported", NULL);
  if (cb != NULL && !cJSON_IsNull(cb) &&
      (!cJSON_IsString(cb) || (cb->valuestring[0] != '\0' && !is_http_url(cb->valuestring))))
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "callBackUrl must be an http(s) url", NULL);
  if (!cJSON_IsObject(input))
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "input is required", NULL);
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(input, "prompt");
  if (!cJSON_IsString(prompt) || prompt->valuestring[0] == '\0')
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "input.prompt is required", NULL);
  if ((int)strlen(prompt->valuestring) > mi->prompt_max) {
    snprintf(why, sizeof why, "input.prompt is longer than %d characters", mi->prompt_max);
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", why, NULL);
  }
  const cJSON *imgs =
      mi->images_field ? cJSON_GetObjectItemCaseSensitive(input, mi->images_field) : NULL;
  if (mi->images_field != NULL && imgs != NULL && !cJSON_IsArray(imgs)) {
    snprintf(why, sizeof why, "input.%s must be an array of urls", mi->images_field);
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", why, NULL);
  }
  int nimg = imgs != NULL ? cJSON_GetArraySize(imgs) : 0;
  if (mi->images_required && nimg == 0) {
    snprintf(why, sizeof why, "input.%s is required", mi->images_field);
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", why, NULL);
  }
  if (nimg > mi->max_images) {
    snprintf(why, sizeof why, "input.%s accepts at most %d images", mi->images_field,
             mi->max_images);
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", why, NULL);
  }
  const cJSON *u;
  cJSON_ArrayForEach(u, imgs) {
    if (!cJSON_IsString(u) || !is_http_url(u->valuestring)) {
      snprintf(why, sizeof why, "input.%s must hold http(s) urls (no base64)", mi->images_field);
      return send_envelope(c, MHD_HTTP_OK, 422, "msg", why, NULL);
    }
  }
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(input, "output_format");
  if (of != NULL && (!cJSON_IsString(of) ||
                     (strcmp(of->valuestring, "png") != 0 && strcmp(of->valuestring, "jpeg") != 0)))
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "input.output_format must be png or jpeg",
                         NULL);
  const cJSON *ar = cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio");
  if (ar != NULL) {
    bool okar = false;
    for (size_t i = 0; cJSON_IsString(ar) && i < sizeof aspect_ratios / sizeof aspect_ratios[0];
         i++)
      okar = okar || strcmp(ar->valuestring, aspect_ratios[i]) == 0;
    if (!okar)
      return send_envelope(c, MHD_HTTP_OK, 422, "msg", "input.aspect_ratio is not supported", NULL);
  }

  task *t = calloc(1, sizeof *t);
  if (t == NULL)
    return send_envelope(c, MHD_HTTP_INTERNAL_SERVER_ERROR, 500, "msg", "out of memory", NULL);
  snprintf(t->model, sizeof t->model, "%s", mi->name);
  t->prompt = xstrdup(prompt->valuestring);
  t->image_urls = imgs != NULL ? cJSON_Duplicate(imgs, true) : cJSON_CreateArray();
  char *param = cJSON_PrintUnformatted(body);
  t->param = xstrdup(param);
  cJSON_free(param);
  if (cJSON_IsString(cb) && cb->valuestring[0] != '\0')
    t->callback_url = xstrdup(cb->valuestring);
  snprintf(t->output_format, sizeof t->output_format, "%s",
           cJSON_IsString(of) ? of->valuestring : "png");
  t->callback_status = -1;
  t->created_mono_ms = mono_ms();
  t->created_wall_ms = wall_ms();

  /* "task_google_1765178615729" in the docs: vendor (or model) and a number. */
  char vendor[48];
  size_t vn = strcspn(mi->name, "/");
  if (mi->name[vn] == '\0')
    vn = strlen(mi->name);
  if (vn >= sizeof vendor)
    vn = sizeof vendor - 1;
  for (size_t i = 0; i < vn; i++)
    vendor[i] = isalnum((unsigned char)mi->name[i]) ? mi->name[i] : '_';
  vendor[vn] = '\0';

  pthread_mutex_lock(&g.mu);
  t->s = g.task_default;
  cJSON *one = cJSON_DetachItemFromArray(g.task_queue, 0);
  if (one != NULL)
    (void)task_script_merge(&t->s, one, why, sizeof why); /* validated when scripted */
  cJSON_Delete(one);
  snprintf(t->id, sizeof t->id, "task_%s_%" PRIu64, vendor, ++g.task_counter);
  t->next = g.tasks;
  g.tasks = t;
  cJSON *data = cJSON_CreateObject();
  cJSON_AddStringToObject(data, "taskId", t->id);
  pthread_mutex_unlock(&g.mu);
  pthread_cond_broadcast(&g.cond);
  return send_envelope(c, MHD_HTTP_OK, 200, "msg", "success", data);
}

static enum MHD_Result handle_record(struct MHD_Connection *c) {
  const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "taskId");
  if (id == NULL || id[0] == '\0')
    return send_envelope(c, MHD_HTTP_OK, 422, "message", "taskId is required", NULL);
  pthread_mutex_lock(&g.mu);
  task *t = task_find(id);
  cJSON *data = t != NULL ? task_data(t, mono_ms()) : NULL;
  pthread_mutex_unlock(&g.mu);
  if (data == NULL)
    return send_envelope(c, MHD_HTTP_OK, 422, "message", "recordInfo is null", NULL);
  return send_envelope(c, MHD_HTTP_OK, 200, "message", "success", data);
}

static enum MHD_Result handle_download_url(struct MHD_Connection *c, const cJSON *body) {
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "url");
  if (!cJSON_IsString(u) || !is_http_url(u->valuestring))
    return send_envelope(c, MHD_HTTP_OK, 422, "msg", "url is required", NULL);
  char id[96];
  bool is_result;
  if (!own_url(u->valuestring, id, sizeof id, &is_result))
    return send_envelope(c, MHD_HTTP_OK, 200, "msg", "success", cJSON_CreateString(u->valuestring));
  /* A "signed" variant: the same path with an expiry 20 minutes on; the fake ignores the
   * query when it serves the file. */
  char signed_url[2048];
  snprintf(signed_url, sizeof signed_url, "%.*s%cexpires=%" PRId64 "&sig=fake",
           (int)strcspn(u->valuestring, "?#"), u->valuestring,
           strchr(u->valuestring, '?') ? '&' : '?', wall_ms() / 1000 + 1200);
  return send_envelope(c, MHD_HTTP_OK, 200, "msg", "success", cJSON_CreateString(signed_url));
}

/* --------------------------------------------------------------------------- uploads */

static bool b64_decode(const char *in, size_t n, unsigned char **out, size_t *out_len) {
  /* Strip whitespace first: EVP_DecodeBlock wants a clean multiple of four. */
  char *clean = malloc(n + 4);
  if (clean == NULL)
    return false;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)in[i]))
      clean[m++] = in[i];
  while (m % 4 != 0)
    clean[m++] = '=';
  unsigned char *buf = malloc(m / 4 * 3 + 1);
  if (buf == NULL) {
    free(clean);
    return false;
  }
  int k = m ? EVP_DecodeBlock(buf, (const unsigned char *)clean, (int)m) : 0;
  if (k < 0) {
    free(clean);
    free(buf);
    return false;
  }
  size_t pad = 0;
  for (size_t i = m; i > 0 && clean[i - 1] == '=' && pad < 2; i--)
    pad++;
  free(clean);
  *out = buf;
  *out_len = (size_t)k - pad;
  return true;
}

static void iso_now(char *out, size_t cap) {
  int64_t ms = wall_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[24];
  size_t n = strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  base[n] = '\0';
  snprintf(out, cap, "%.19s.%03uZ", base, (unsigned)(ms % 1000) % 1000u);
}

static const char *ext_for(const char *mime) {
  if (strcmp(mime, "image/png") == 0)
    return "png";
  if (strcmp(mime, "image/jpeg") == 0)
    return "jpg";
  if (strcmp(mime, "image/webp") == 0)
    return "webp";
  if (strcmp(mime, "image/gif") == 0)
    return "gif";
  return "bin";
}

/* Stores `data` (taken) and answers like the upload host. `name` may be NULL (a random
 * one is made), `mime_hint` too. */
static enum MHD_Result store_upload(struct MHD_Connection *c, unsigned char *data, size_t len,
                                    const char *upload_path, const char *name,
                                    const char *mime_hint) {
  char why[256];
  if (upload_path == NULL || upload_path[0] == '\0') {
    free(data);
    return send_upload_error(c, 400, "uploadPath is required");
  }
  size_t pl = strlen(upload_path);
  if (upload_path[0] == '/' || upload_path[pl - 1] == '/') {
    free(data);
    return send_upload_error(c, 400, "uploadPath must not start or end with /");
  }
  if (name != NULL && (strchr(name, '/') != NULL || strcmp(name, "..") == 0 ||
                       strcmp(name, ".") == 0 || strlen(name) > 200)) {
    free(data);
    return send_upload_error(c, 400, "fileName is not a plain file name");
  }
  const char *mime = sniff(data, len);
  if (mime == NULL)
    mime = mime_hint != NULL && mime_hint[0] ? mime_hint : "application/octet-stream";
  file *f = calloc(1, sizeof *f);
  if (f == NULL) {
    free(data);
    return send_upload_error(c, 500, "out of memory");
  }
  unsigned char rnd[8];
  if (RAND_bytes(rnd, sizeof rnd) != 1)
    memset(rnd, 0x5a, sizeof rnd);
  char hex[17];
  for (int i = 0; i < 8; i++)
    snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  char gen_name[64];
  snprintf(gen_name, sizeof gen_name, "%s.%s", hex, ext_for(mime));
  f->name = xstrdup(name != NULL && name[0] ? name : gen_name);
  size_t path_len = pl + 1 + strlen(f->name) + 1;
  f->path = malloc(path_len);
  if (f->path == NULL) {
    free(data);
    file_free(f);
    return send_upload_error(c, 500, "out of memory");
  }
  snprintf(f->path, path_len, "%s/%s", upload_path, f->name);
  snprintf(f->mime, sizeof f->mime, "%s", mime);
  f->data = data;
  f->len = len;
  iso_now(f->uploaded_at, sizeof f->uploaded_at);

  pthread_mutex_lock(&g.mu);
  if (len > g.max_memory - g.memory) {
    pthread_mutex_unlock(&g.mu);
    file_free(f);
    snprintf(why, sizeof why, "the fake's memory limit (%zu bytes) is reached", g.max_memory);
    return send_upload_error(c, 413, why);
  }
  g.memory += len;
  snprintf(f->id, sizeof f->id, "%" PRIu64 "%s", ++g.file_counter, hex);
  f->next = g.files;
  g.files = f;
  char *esc = curl_easy_escape(NULL, f->name, 0);
  char url[512];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/files/%s/%s", g.port, f->id, esc ? esc : "x");
  curl_free(esc);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddBoolToObject(doc, "success", true);
  cJSON_AddNumberToObject(doc, "code", 200);
  cJSON_AddStringToObject(doc, "msg", "File uploaded successfully");
  cJSON *d = cJSON_AddObjectToObject(doc, "data");
  cJSON_AddStringToObject(d, "fileName", f->name);
  cJSON_AddStringToObject(d, "filePath", f->path);
  cJSON_AddStringToObject(d, "downloadUrl", url);
  cJSON_AddNumberToObject(d, "fileSize", (double)f->len);
  cJSON_AddStringToObject(d, "mimeType", f->mime);
  cJSON_AddStringToObject(d, "uploadedAt", f->uploaded_at);
  pthread_mutex_unlock(&g.mu);
  return send_json(c, MHD_HTTP_OK, doc);
}

static enum MHD_Result on_post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data, uint64_t off,
                                     size_t size) {
  (void)kind, (void)transfer_encoding;
  req *r = cls;
  if (key == NULL)
    return MHD_YES;
  if (off == 0) {
    if (r->fields == NULL)
      r->fields = cJSON_CreateArray();
    cJSON_AddItemToArray(r->fields, cJSON_CreateString(key));
  }
  if (strcmp(key, "file") == 0) {
    if (off == 0) {
      r->have_file = true;
      r->file_len = 0;
      snprintf(r->file_name, sizeof r->file_name, "%s", filename ? filename : "");
      snprintf(r->file_type, sizeof r->file_type, "%s", content_type ? content_type : "");
    }
    if (size > 0 && !grow_append(&r->file_data, &r->file_len, &r->file_cap, data, size, MAX_BODY))
      return MHD_NO;
    return MHD_YES;
  }
  char **slot = strcmp(key, "uploadPath") == 0 ? &r->upload_path
                : strcmp(key, "fileName") == 0 ? &r->form_file_name
                                               : NULL;
  if (slot == NULL)
    return MHD_YES;
  size_t have = *slot ? strlen(*slot) : 0;
  if (have + size > 4096)
    return MHD_NO;
  char *n = realloc(*slot, have + size + 1);
  if (n == NULL)
    return MHD_NO;
  memcpy(n + have, data, size);
  n[have + size] = '\0';
  *slot = n;
  return MHD_YES;
}

/* Runs the multipart body through libmicrohttpd's post processor (once). */
static void parse_multipart(struct MHD_Connection *c, req *r) {
  if (r->mp_parsed)
    return;
  r->mp_parsed = true;
  const char *ct = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0)
    return;
  struct MHD_PostProcessor *pp = MHD_create_post_processor(c, 64 * 1024, on_post_field, r);
  if (pp == NULL)
    return;
  r->mp_ok = r->len == 0 || MHD_post_process(pp, (const char *)r->body, r->len) == MHD_YES;
  MHD_destroy_post_processor(pp);
}

static enum MHD_Result handle_stream_upload(struct MHD_Connection *c, req *r) {
  const char *ct = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0)
    return send_upload_error(c, 400, "multipart/form-data expected");
  parse_multipart(c, r);
  if (!r->mp_ok)
    return send_upload_error(c, 400, "bad multipart body");
  if (!r->have_file)
    return send_upload_error(c, 400, "file is required");
  unsigned char *data = r->file_data;
  size_t len = r->file_len;
  r->file_data = NULL;
  r->file_len = r->file_cap = 0;
  if (data == NULL)
    data = calloc(1, 1);
  const char *name = r->form_file_name && r->form_file_name[0] ? r->form_file_name
                     : r->file_name[0]                         ? r->file_name
                                                               : NULL;
  return store_upload(c, data, len, r->upload_path, name, r->file_type);
}

static enum MHD_Result handle_base64_upload(struct MHD_Connection *c, const cJSON *body) {
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(body, "base64Data");
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "uploadPath");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "fileName");
  if (!cJSON_IsString(b) || b->valuestring[0] == '\0')
    return send_upload_error(c, 400, "base64Data is required");
  const char *s = b->valuestring;
  char mime[64] = "";
  if (strncmp(s, "data:", 5) == 0) {
    const char *comma = strchr(s, ',');
    const char *semi = strstr(s, ";base64");
    if (comma == NULL || semi == NULL || semi > comma)
      return send_upload_error(c, 400, "base64Data is not a base64 data url");
    snprintf(mime, sizeof mime, "%.*s", (int)(semi - s - 5), s + 5);
    s = comma + 1;
  }
  unsigned char *data = NULL;
  size_t len = 0;
  if (!b64_decode(s, strlen(s), &data, &len))
    return send_upload_error(c, 400, "base64Data is not valid base64");
  return store_upload(c, data, len, cJSON_IsString(p) ? p->valuestring : NULL,
                      cJSON_IsString(n) ? n->valuestring : NULL, mime);
}

static enum MHD_Result handle_url_upload(struct MHD_Connection *c, const cJSON *body) {
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "fileUrl");
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "uploadPath");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "fileName");
  if (!cJSON_IsString(u) || !is_http_url(u->valuestring))
    return send_upload_error(c, 400, "fileUrl is required");
  char what[96], mime[64] = "";
  bool is_result = false;
  unsigned char *data = NULL;
  size_t len = 0;
  /* The fake never goes out: only its own files and results can be "downloaded". */
  if (!own_url(u->valuestring, what, sizeof what, &is_result))
    return send_upload_error(c, 500, "Failed to download the file from fileUrl");
  if (is_result) {
    bool found = false, done = false;
    char src_url[2048] = "";
    pthread_mutex_lock(&g.mu);
    task *t = task_find(what);
    if (t != NULL) {
      found = true;
      done = task_done(t, mono_ms()) && !task_failed(t);
      const cJSON *first = cJSON_GetArrayItem(t->image_urls, 0);
      if (cJSON_IsString(first))
        snprintf(src_url, sizeof src_url, "%s", first->valuestring);
    }
    pthread_mutex_unlock(&g.mu);
    if (!found || !done)
      return send_upload_error(c, 500, "Failed to download the file from fileUrl");
    size_t slen = 0;
    unsigned char *src = src_url[0] ? own_file_bytes(src_url, &slen, NULL, 0) : NULL;
    bool jpeg = strstr(u->valuestring, ".jpg") != NULL;
    bool ok = make_result(src, slen, jpeg, &data, &len);
    free(src);
    if (!ok)
      return send_upload_error(c, 500, "Failed to download the file from fileUrl");
  } else {
    data = own_file_bytes(u->valuestring, &len, mime, sizeof mime);
    if (data == NULL)
      return send_upload_error(c, 500, "Failed to download the file from fileUrl");
  }
  const char *name = cJSON_IsString(n) ? n->valuestring : NULL;
  char last[256] = "";
  if (name == NULL) {
    const char *q = u->valuestring + strcspn(u->valuestring, "?#");
    const char *sl = q;
    while (sl > u->valuestring && sl[-1] != '/')
      sl--;
    snprintf(last, sizeof last, "%.*s", (int)(q - sl), sl);
    name = last[0] ? last : NULL;
  }
  return store_upload(c, data, len, cJSON_IsString(p) ? p->valuestring : NULL, name, mime);
}

/* ------------------------------------------------------------------ downloads */

static enum MHD_Result handle_get_file(struct MHD_Connection *c, const char *rest) {
  char id[40];
  size_t n = strcspn(rest, "/");
  if (n == 0 || n >= sizeof id || rest[n] != '/')
    return send_text(c, MHD_HTTP_NOT_FOUND, "not found");
  memcpy(id, rest, n);
  id[n] = '\0';
  enum MHD_Result ret;
  pthread_mutex_lock(&g.mu);
  file *f = file_find(id);
  if (f == NULL || strcmp(f->name, rest + n + 1) != 0)
    ret = send_text(c, MHD_HTTP_NOT_FOUND, "not found");
  else
    ret = send_bytes(c, MHD_HTTP_OK, f->data, f->len, f->mime, NULL);
  pthread_mutex_unlock(&g.mu);
  return ret;
}

static enum MHD_Result handle_get_result(struct MHD_Connection *c, const char *rest) {
  char id[96];
  const char *dot = strrchr(rest, '.');
  if (dot == NULL || (size_t)(dot - rest) >= sizeof id || dot == rest)
    return send_text(c, MHD_HTTP_NOT_FOUND, "not found");
  bool jpeg;
  if (strcmp(dot, ".png") == 0)
    jpeg = false;
  else if (strcmp(dot, ".jpg") == 0 || strcmp(dot, ".jpeg") == 0)
    jpeg = true;
  else
    return send_text(c, MHD_HTTP_NOT_FOUND, "not found");
  snprintf(id, sizeof id, "%.*s", (int)(dot - rest), rest);
  char src_url[2048] = "";
  bool ready = false;
  pthread_mutex_lock(&g.mu);
  task *t = task_find(id);
  if (t != NULL && task_done(t, mono_ms()) && !task_failed(t)) {
    ready = true;
    const cJSON *first = cJSON_GetArrayItem(t->image_urls, 0);
    if (cJSON_IsString(first))
      snprintf(src_url, sizeof src_url, "%s", first->valuestring);
  }
  pthread_mutex_unlock(&g.mu);
  if (!ready)
    return send_text(c, MHD_HTTP_NOT_FOUND, "not found");
  size_t slen = 0, olen = 0;
  unsigned char *src = src_url[0] ? own_file_bytes(src_url, &slen, NULL, 0) : NULL;
  unsigned char *outb = NULL;
  bool ok = make_result(src, slen, jpeg, &outb, &olen);
  free(src);
  if (!ok)
    return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot make the image");
  enum MHD_Result ret =
      send_bytes(c, MHD_HTTP_OK, outb, olen, jpeg ? "image/jpeg" : "image/png", NULL);
  free(outb);
  return ret;
}

/* ------------------------------------------------------------------------- control */

static enum MHD_Result handle_fake(struct MHD_Connection *c, const char *method, const char *url,
                                   const req *r) {
  bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
  if (post && strcmp(url, "/_fake/reset") == 0) {
    pthread_mutex_lock(&g.mu);
    state_reset();
    pthread_mutex_unlock(&g.mu);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    return send_json(c, MHD_HTTP_OK, o);
  }
  if (post && strcmp(url, "/_fake/script") == 0) {
    char why[256] = "";
    cJSON *doc = cJSON_ParseWithLength((const char *)r->body, r->len);
    pthread_mutex_lock(&g.mu);
    bool ok = doc != NULL && script_apply(doc, why, sizeof why);
    cJSON *out = ok ? script_json() : NULL;
    pthread_mutex_unlock(&g.mu);
    cJSON_Delete(doc);
    if (!ok) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "error", why[0] ? why : "the script must be JSON");
      return send_json(c, MHD_HTTP_BAD_REQUEST, e);
    }
    return send_json(c, MHD_HTTP_OK, out);
  }
  if (get && strcmp(url, "/_fake/script") == 0) {
    pthread_mutex_lock(&g.mu);
    cJSON *out = script_json();
    pthread_mutex_unlock(&g.mu);
    return send_json(c, MHD_HTTP_OK, out);
  }
  if (get && strcmp(url, "/_fake/requests") == 0) {
    cJSON *o = cJSON_CreateObject();
    pthread_mutex_lock(&g.mu);
    cJSON_AddItemToObject(o, "requests", cJSON_Duplicate(g.requests, true));
    pthread_mutex_unlock(&g.mu);
    return send_json(c, MHD_HTTP_OK, o);
  }
  if (get && strcmp(url, "/_fake/tasks") == 0) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "tasks");
    pthread_mutex_lock(&g.mu);
    int64_t now = mono_ms();
    /* Oldest first: the list is kept newest first. */
    for (task *t = g.tasks; t != NULL; t = t->next) {
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
      cJSON_AddNumberToObject(e, "callback_attempts", t->callback_sent);
      if (t->callback_error[0])
        cJSON_AddStringToObject(e, "callback_error", t->callback_error);
      cJSON_InsertItemInArray(arr, 0, e);
    }
    pthread_mutex_unlock(&g.mu);
    return send_json(c, MHD_HTTP_OK, o);
  }
  return send_text(c, MHD_HTTP_NOT_FOUND, "no such control endpoint");
}

/* --------------------------------------------------------------------- dispatch */

typedef enum route {
  R_NONE,
  R_CREATE,
  R_RECORD,
  R_DOWNLOAD_URL,
  R_UP_STREAM,
  R_UP_BASE64,
  R_UP_URL
} route;

static route route_of(const char *method, const char *url) {
  bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
  if (post && strcmp(url, "/api/v1/jobs/createTask") == 0)
    return R_CREATE;
  if (get && strcmp(url, "/api/v1/jobs/recordInfo") == 0)
    return R_RECORD;
  if (post && strcmp(url, "/api/v1/common/download-url") == 0)
    return R_DOWNLOAD_URL;
  if (post && strcmp(url, "/api/file-stream-upload") == 0)
    return R_UP_STREAM;
  if (post && strcmp(url, "/api/file-base64-upload") == 0)
    return R_UP_BASE64;
  if (post && strcmp(url, "/api/file-url-upload") == 0)
    return R_UP_URL;
  return R_NONE;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  (void)cls, (void)version;
  req *r = *req_cls;
  if (r == NULL)
    return MHD_NO;
  if (!r->started) {
    r->started = true;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    if (!r->too_big && !grow_append(&r->body, &r->len, &r->cap, upload, *upload_size, MAX_BODY))
      r->too_big = true;
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->too_big)
    return send_text(c, 413, "request body too large");

  if (strncmp(url, "/_fake/", 7) == 0)
    return handle_fake(c, method, url, r);

  route rt = route_of(method, url);
  bool is_json_route =
      rt == R_CREATE || rt == R_DOWNLOAD_URL || rt == R_UP_BASE64 || rt == R_UP_URL;
  cJSON *json =
      is_json_route && r->len ? cJSON_ParseWithLength((const char *)r->body, r->len) : NULL;
  enum MHD_Result ret;

  /* Parse a multipart body first so the log can list its field names. */
  if (rt == R_UP_STREAM)
    parse_multipart(c, r);
  log_request(c, method, url, r, json);

  if (strncmp(url, "/files/", 7) == 0 && strcmp(method, "GET") == 0) {
    ret = handle_get_file(c, url + 7);
    goto out;
  }
  if (strncmp(url, "/results/", 9) == 0 && strcmp(method, "GET") == 0) {
    ret = handle_get_result(c, url + 9);
    goto out;
  }
  /* Cloudflare in front of both hosts: no User-Agent, no entry. */
  const char *ua = header(c, MHD_HTTP_HEADER_USER_AGENT);
  if (ua == NULL || ua[0] == '\0') {
    ret = send_text(c, MHD_HTTP_FORBIDDEN, "error code: 1010");
    goto out;
  }
  if (rt == R_NONE) {
    ret = send_envelope(c, MHD_HTTP_NOT_FOUND, 404, "msg", "Not found", NULL);
    goto out;
  }
  bool upload_route = rt == R_UP_STREAM || rt == R_UP_BASE64 || rt == R_UP_URL;
  int q = rt == R_CREATE         ? Q_CREATE
          : rt == R_RECORD       ? Q_RECORD
          : rt == R_DOWNLOAD_URL ? Q_DOWNLOAD
                                 : Q_UPLOAD;
  cJSON *canned = canned_take(q);
  if (canned != NULL) {
    ret = send_canned(c, canned, rt == R_RECORD ? "message" : "msg", upload_route);
    goto out;
  }
  if (!auth_ok(c)) {
    pthread_mutex_lock(&g.mu);
    unsigned int http = (unsigned int)g.auth_http;
    pthread_mutex_unlock(&g.mu);
    if (upload_route) {
      cJSON *doc = cJSON_CreateObject();
      cJSON_AddBoolToObject(doc, "success", false);
      cJSON_AddNumberToObject(doc, "code", 401);
      cJSON_AddStringToObject(doc, "msg", default_msg(401));
      cJSON_AddNullToObject(doc, "data");
      ret = send_json(c, http, doc);
    } else {
      ret = send_envelope(c, http, 401, rt == R_RECORD ? "message" : "msg", default_msg(401), NULL);
    }
    goto out;
  }
  if (is_json_route && json == NULL) {
    ret = upload_route ? send_upload_error(c, 400, "Invalid JSON body")
                       : send_envelope(c, MHD_HTTP_OK, 400, "msg", "Invalid JSON body", NULL);
    goto out;
  }
  switch (rt) {
    case R_CREATE:
      ret = handle_create(c, json);
      break;
    case R_RECORD:
      ret = handle_record(c);
      break;
    case R_DOWNLOAD_URL:
      ret = handle_download_url(c, json);
      break;
    case R_UP_STREAM:
      ret = handle_stream_upload(c, r);
      break;
    case R_UP_BASE64:
      ret = handle_base64_upload(c, json);
      break;
    case R_UP_URL:
      ret = handle_url_upload(c, json);
      break;
    default:
      ret = send_text(c, MHD_HTTP_NOT_FOUND, "not found");
      break;
  }
out:
  cJSON_Delete(json);
  return ret;
}

/* ------------------------------------------------------------------------ callbacks */

static bool loopback_url(const char *url) {
  CURLU *u = curl_url();
  char *host = NULL, *scheme = NULL;
  bool ok = false;
  if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    ok = strcmp(scheme, "http") == 0 &&
         (strcmp(host, "127.0.0.1") == 0 || strcasecmp(host, "localhost") == 0 ||
          strcmp(host, "[::1]") == 0);
  curl_free(host);
  curl_free(scheme);
  curl_url_cleanup(u);
  return ok;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p, (void)ud;
  return size * n;
}

/* base64(HMAC-SHA256(key, taskId + "." + ts)) into `out` (cap >= 64). */
static void sign(const char *key, const char *task_id, const char *ts, char *out) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s.%s", task_id, ts);
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, mac, &mlen);
  EVP_EncodeBlock((unsigned char *)out, mac, (int)mlen);
}

typedef struct delivery {
  char id[96];
  char *url;
  char *body;
  cb_mode mode;
} delivery;

static long deliver(const delivery *d, char *err, size_t cap) {
  CURL *h = curl_easy_init();
  struct curl_slist *hl = NULL;
  long status = 0;
  char ts[32], sig[128], line[192];
  if (h == NULL) {
    snprintf(err, cap, "curl_easy_init failed");
    return 0;
  }
  hl = curl_slist_append(hl, "Content-Type: application/json");
  hl = curl_slist_append(hl, "Expect:");
  if (d->mode == CB_SIGNED || d->mode == CB_BAD_SIGNATURE) {
    snprintf(ts, sizeof ts, "%lld", (long long)(wall_ms() / 1000));
    if (d->mode == CB_SIGNED) {
      sign(g.webhook_key, d->id, ts, sig);
    } else {
      /* Well-formed but made with another key. */
      size_t kl = strlen(g.webhook_key);
      char *wrong = malloc(kl + 7);
      if (wrong != NULL) {
        snprintf(wrong, kl + 7, "%s-wrong", g.webhook_key);
        sign(wrong, d->id, ts, sig);
        free(wrong);
      } else {
        snprintf(sig, sizeof sig, "AAAA");
      }
    }
    snprintf(line, sizeof line, "X-Webhook-Timestamp: %s", ts);
    hl = curl_slist_append(hl, line);
    snprintf(line, sizeof line, "X-Webhook-Signature: %s", sig);
    hl = curl_slist_append(hl, line);
  }
  curl_easy_setopt(h, CURLOPT_URL, d->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, d->body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(d->body));
  curl_easy_setopt(h, CURLOPT_USERAGENT, "kie-callback/fake");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else
    snprintf(err, cap, "%s", curl_easy_strerror(rc));
  curl_slist_free_all(hl);
  curl_easy_cleanup(h);
  return status;
}

/* Picks one due delivery (with g.mu held); false when none is due. */
static bool next_delivery(delivery *d, int64_t now) {
  for (task *t = g.tasks; t != NULL; t = t->next) {
    if (t->s.callback == CB_NONE || t->callback_url == NULL || t->callback_busy ||
        t->callback_sent >= t->s.callback_times || !task_done(t, now))
      continue;
    t->callback_sent++;
    if (!loopback_url(t->callback_url)) {
      /* Refused without a call; later attempts would be refused too. */
      t->callback_sent = t->s.callback_times;
      snprintf(t->callback_error, sizeof t->callback_error,
               "refused: the fake calls loopback http urls only");
      continue;
    }
    t->callback_busy = true;
    bool failed = task_failed(t);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "code", failed ? 501 : 200);
    cJSON_AddStringToObject(doc, "msg",
                            failed ? (t->s.fail_msg[0] ? t->s.fail_msg : "Generation failed")
                                   : "Image generated successfully.");
    cJSON *data = task_data(t, now);
    if (t->s.callback_task_id) {
      cJSON_DeleteItemFromObjectCaseSensitive(data, "taskId");
      cJSON_AddStringToObject(data, "task_id", t->id);
    }
    cJSON_AddItemToObject(doc, "data", data);
    d->body = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    d->url = xstrdup(t->callback_url);
    snprintf(d->id, sizeof d->id, "%s", t->id);
    d->mode = t->s.callback;
    return true;
  }
  return false;
}

static void *callback_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g.mu);
  while (!g.stopping) {
    delivery d = {0};
    if (next_delivery(&d, mono_ms())) {
      pthread_mutex_unlock(&g.mu);
      char err[128] = "";
      long status = deliver(&d, err, sizeof err);
      pthread_mutex_lock(&g.mu);
      task *t = task_find(d.id); /* may be gone after a reset */
      if (t != NULL) {
        t->callback_busy = false;
        t->callback_status = status;
        snprintf(t->callback_error, sizeof t->callback_error, "%s", err);
      }
      free(d.url);
      cJSON_free(d.body);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += CALLBACK_TICK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g.cond, &g.mu, &ts);
  }
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

/* ----------------------------------------------------------------------------- main */

/* libmicrohttpd's own error log, minus the line a scripted drop causes on purpose. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  if (strstr(line, "Application reported internal error") != NULL)
    return;
  fprintf(stderr, "fake-kie: mhd: %s", line);
}

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
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("fake-kie: cannot start libcurl\n", stderr);
    return 1;
  }

  g.api_key = api_key != NULL && api_key[0] ? xstrdup(api_key) : NULL;
  g.webhook_key = xstrdup(webhook_key != NULL ? webhook_key : DEFAULT_WEBHOOK_KEY);
  g.max_memory = (size_t)mem_mb << 20;
  g.task_counter = (uint64_t)wall_ms();
  pthread_mutex_lock(&g.mu);
  state_reset();
  pthread_mutex_unlock(&g.mu);

  /* Every thread started from here on inherits the blocked signals; main waits. A
   * background job of a non-interactive shell starts with SIGINT ignored, and an ignored
   * signal never reaches sigwait: restore the default first. */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
      (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256, MHD_OPTION_END);
  if (d == NULL) {
    fprintf(stderr, "fake-kie: cannot listen on 127.0.0.1:%ld\n", port);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  g.port = info != NULL ? info->port : (int)port;

  pthread_t cb;
  if (pthread_create(&cb, NULL, callback_thread, NULL) != 0) {
    fputs("fake-kie: cannot start the callback thread\n", stderr);
    MHD_stop_daemon(d);
    return 1;
  }

  printf("listening %d\n", g.port);
  fflush(stdout);

  int sig = 0;
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  while (sigwait(&stop, &sig) != 0) {
  }

  MHD_stop_daemon(d);
  pthread_mutex_lock(&g.mu);
  g.stopping = true;
  pthread_mutex_unlock(&g.mu);
  pthread_cond_broadcast(&g.cond);
  pthread_join(cb, NULL);

  pthread_mutex_lock(&g.mu);
  state_reset();
  for (int i = 0; i < Q_COUNT; i++)
    cJSON_Delete(g.queues[i].items);
  cJSON_Delete(g.task_queue);
  cJSON_Delete(g.requests);
  pthread_mutex_unlock(&g.mu);
  free(g.api_key);
  free(g.webhook_key);
  curl_global_cleanup();
  vips_shutdown();
  return 0;
}
