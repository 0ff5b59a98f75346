/*
 * The fake-server library (fake.h is the manual): serving on libmicrohttpd, routes,
 * canned answers, the request log, the control plane and delayed callbacks on libcurl.
 * The request a handler sees and the reply it leaves live in request.c.
 *
 * Layout of a request: libmicrohttpd hands over the body in pieces; once it is whole,
 * control paths go to the control plane; everything else is logged, matched to a route,
 * guarded, answered from the route's canned queue or by its handler; the reply the
 * handler left in the request is then queued (or the connection dropped).
 */
#include "fake_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <microhttpd.h>

typedef enum cb_state { CB_PENDING, CB_DELIVERED, CB_FAILED, CB_REFUSED } cb_state;
static const char *const cb_state_names[] = {"pending", "delivered", "failed", "refused"};

typedef struct cb {
  struct cb *next;
  uint64_t id;
  char *url, *body, *tag, *user_agent;
  int64_t due_ms; /* monotonic */
  int attempts, attempt;
  int64_t retry_ms;
  fake_sign_fn sign;
  fake_done_fn done;
  void *ud;
  cb_state state;
  long status; /* -1: none yet */
  char error[128];
} cb;

struct fake_headers {
  struct curl_slist *list;
};

struct fake {
  fake_config cfg;
  char *name;
  pthread_mutex_t mu;
  pthread_cond_t cond; /* CLOCK_MONOTONIC: callbacks due, delays, stopping */
  struct MHD_Daemon *d;
  int port;
  bool started, stopping;
  pthread_t thread;
  cJSON *queues; /* {"<script name>":[answers...]} */
  cJSON *log;    /* [entries...] */
  cb *cbs;       /* in posting order, pending and finished */
  cb *busy;      /* the one being delivered, out of the list */
  uint64_t cb_counter, generation;
};

/* ----------------------------------------------------------------------- utilities */

/* Waits on f->cond until `deadline` (monotonic ms) or stopping; lock held. */
static void wait_until(fake *f, int64_t deadline) {
  struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000L};
  pthread_cond_timedwait(&f->cond, &f->mu, &ts);
}

void fake_lock(fake *f) {
  pthread_mutex_lock(&f->mu);
}

void fake_unlock(fake *f) {
  pthread_mutex_unlock(&f->mu);
}

int fake_port(const fake *f) {
  return f->port;
}

static void reply_error(fake_request *r, unsigned int status, const char *msg) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "error", msg);
  fake_reply_json(r, status, e);
}

/* ----------------------------------------------------------------- canned answers */

static bool canned_valid(fake *f, const cJSON *a, char *why, size_t cap) {
  if (!cJSON_IsObject(a)) {
    snprintf(why, cap, "a canned answer must be an object");
    return false;
  }
  const cJSON *http = cJSON_GetObjectItemCaseSensitive(a, "http");
  const cJSON *ra = cJSON_GetObjectItemCaseSensitive(a, "retry_after");
  const cJSON *hs = cJSON_GetObjectItemCaseSensitive(a, "headers");
  const cJSON *delay = cJSON_GetObjectItemCaseSensitive(a, "delay_ms");
  const cJSON *drop = cJSON_GetObjectItemCaseSensitive(a, "drop");
  if (http != NULL && (!cJSON_IsNumber(http) || http->valueint < 100 || http->valueint > 599)) {
    snprintf(why, cap, "http must be a status in [100, 599]");
    return false;
  }
  if (ra != NULL && !cJSON_IsNumber(ra) && !cJSON_IsString(ra)) {
    snprintf(why, cap, "retry_after must be seconds or a string");
    return false;
  }
  if (hs != NULL) {
    const cJSON *h;
    bool ok = cJSON_IsObject(hs);
    cJSON_ArrayForEach(h, hs) {
      ok = ok && cJSON_IsString(h);
    }
    if (!ok) {
      snprintf(why, cap, "headers must be an object of strings");
      return false;
    }
  }
  if (delay != NULL && (!cJSON_IsNumber(delay) || delay->valuedouble < 0 ||
                        delay->valuedouble > FAKE_MAX_DELAY_MS)) {
    snprintf(why, cap, "delay_ms must be in [0, %d]", FAKE_MAX_DELAY_MS);
    return false;
  }
  if (drop != NULL && !cJSON_IsBool(drop)) {
    snprintf(why, cap, "drop must be true or false");
    return false;
  }
  return f->cfg.canned_check == NULL || f->cfg.canned_check(a, why, cap, f->cfg.ud);
}

/* The next canned answer for the request's route, detached (caller deletes), or NULL. */
static cJSON *canned_take(fake *f, const char *script) {
  pthread_mutex_lock(&f->mu);
  cJSON *a = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(f->queues, script), 0);
  pthread_mutex_unlock(&f->mu);
  return a;
}

static void canned_answer(fake_request *r, const cJSON *a) {
  fake *f = r->f;
  const cJSON *delay = cJSON_GetObjectItemCaseSensitive(a, "delay_ms");
  if (cJSON_IsNumber(delay) && delay->valuedouble > 0) {
    int64_t deadline = fake_mono_ms() + (int64_t)delay->valuedouble;
    pthread_mutex_lock(&f->mu);
    while (!f->stopping && fake_mono_ms() < deadline)
      wait_until(f, deadline);
    pthread_mutex_unlock(&f->mu);
  }
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "drop"))) {
    fake_reply_drop(r);
    return;
  }
  const cJSON *http = cJSON_GetObjectItemCaseSensitive(a, "http");
  const cJSON *body = cJSON_GetObjectItemCaseSensitive(a, "body");
  const cJSON *ra = cJSON_GetObjectItemCaseSensitive(a, "retry_after");
  unsigned int status = cJSON_IsNumber(http) ? (unsigned int)http->valueint : 200;
  if (cJSON_IsString(body)) {
    const char *b = body->valuestring;
    fake_reply(r, status, (b[0] == '{' || b[0] == '[') ? "application/json" : "text/plain", b,
               strlen(b));
  } else if (body != NULL) {
    fake_reply_json(r, status, cJSON_Duplicate(body, true));
  } else if (f->cfg.canned != NULL) {
    f->cfg.canned(r, status, a, f->cfg.ud);
  } else {
    fake_reply(r, status, "text/plain", "", 0);
  }
  char retry[64];
  if (cJSON_IsNumber(ra)) {
    snprintf(retry, sizeof retry, "%d", ra->valueint);
    fake_reply_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry);
  } else if (cJSON_IsString(ra)) {
    fake_reply_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra->valuestring);
  }
  const cJSON *h;
  cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(a, "headers")) {
    fake_reply_header(r, h->string, h->valuestring);
  }
}

/* ---------------------------------------------------------------------- the log */

/* A copy of `v` with huge strings (base64 payloads) replaced by a note. */
static cJSON *log_copy(const cJSON *v) {
  cJSON *d = cJSON_Duplicate(v, true);
  cJSON *stack[64];
  int n = 0;
  if (d != NULL)
    stack[n++] = d;
  while (n > 0) {
    cJSON *cur = stack[--n];
    for (cJSON *ch = cur->child; ch != NULL; ch = ch->next) {
      if (cJSON_IsString(ch) && strlen(ch->valuestring) > FAKE_LOG_STRING_MAX) {
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

/* Short printable ASCII text, worth showing in the log as is. */
static bool loggable_text(const unsigned char *p, size_t n) {
  if (n > FAKE_LOG_STRING_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] >= 0x7f)
      return false;
  return true;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value) {
  (void)kind;
  cJSON_AddStringToObject(cls, key, value != NULL ? value : "");
  return MHD_YES;
}

static void add_string_or_null(cJSON *o, const char *name, const char *v) {
  if (v != NULL)
    cJSON_AddStringToObject(o, name, v);
  else
    cJSON_AddNullToObject(o, name);
}

static void log_request(fake_request *r) {
  fake *f = r->f;
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "method", r->method);
  cJSON_AddStringToObject(e, "path", r->path);
  cJSON_AddStringToObject(e, "query", fake_request_query(r));
  MHD_get_connection_values(r->c, MHD_HEADER_KIND, add_header,
                            cJSON_AddObjectToObject(e, "headers"));
  add_string_or_null(e, "user_agent", fake_request_header(r, MHD_HTTP_HEADER_USER_AGENT));
  add_string_or_null(e, "content_type", fake_request_header(r, MHD_HTTP_HEADER_CONTENT_TYPE));
  const cJSON *json = fake_request_json(r);
  cJSON *j = json != NULL ? log_copy(json) : NULL;
  if (j != NULL)
    cJSON_AddItemToObject(e, "json", j);
  else
    cJSON_AddNullToObject(e, "json");
  if (json == NULL && fake_request_is_form(r)) {
    cJSON *names = cJSON_AddArrayToObject(e, "fields");
    cJSON *form = cJSON_AddObjectToObject(e, "form");
    const fake_part *p;
    for (size_t i = 0; (p = fake_request_part_at(r, i)) != NULL; i++) {
      cJSON_AddItemToArray(names, cJSON_CreateString(p->name));
      char note[64];
      snprintf(note, sizeof note, "<file of %zu bytes>", p->len);
      bool text = p->filename == NULL && loggable_text(p->data, p->len);
      cJSON_AddStringToObject(form, p->name, text ? (const char *)p->data : note);
    }
  } else if (json == NULL && r->len > 0 && loggable_text(r->body, r->len)) {
    cJSON_AddStringToObject(e, "body", (const char *)r->body);
  }
  cJSON_AddNumberToObject(e, "body_bytes", (double)r->len);
  cJSON_AddNumberToObject(e, "time_ms", (double)fake_wall_ms());
  if (f->cfg.log_extra != NULL)
    f->cfg.log_extra(r, e, f->cfg.ud);
  pthread_mutex_lock(&f->mu);
  if (cJSON_GetArraySize(f->log) >= FAKE_MAX_LOGGED)
    cJSON_Delete(cJSON_DetachItemFromArray(f->log, 0));
  cJSON_AddItemToArray(f->log, e);
  pthread_mutex_unlock(&f->mu);
}

/* ---------------------------------------------------------------------- callbacks */

void fake_headers_add(fake_headers *h, const char *name, const char *value) {
  char line[1024];
  snprintf(line, sizeof line, "%s: %s", name, value);
  struct curl_slist *n = curl_slist_append(h->list, line);
  if (n != NULL)
    h->list = n;
}

static void cb_free(cb *c) {
  if (c == NULL)
    return;
  free(c->url);
  free(c->body);
  free(c->tag);
  free(c->user_agent);
  free(c);
}

bool fake_callback_post(fake *f, const fake_callback *in) {
  cb *c = calloc(1, sizeof *c);
  if (c == NULL)
    return false;
  c->url = fake_strdup(in->url);
  c->body = fake_strdup(in->body);
  c->tag = fake_strdup(in->tag);
  c->user_agent = fake_strdup(in->user_agent != NULL ? in->user_agent : "fake-callback/1");
  c->due_ms = fake_mono_ms() + (in->delay_ms > 0 ? in->delay_ms : 0);
  c->attempts = in->attempts > 0 ? in->attempts : 1;
  c->retry_ms = in->retry_ms > 0 ? in->retry_ms : 0;
  c->sign = in->sign;
  c->done = in->done;
  c->ud = in->ud;
  c->state = CB_PENDING;
  c->status = -1;
  pthread_mutex_lock(&f->mu);
  c->id = ++f->cb_counter;
  cb **tail = &f->cbs;
  while (*tail != NULL)
    tail = &(*tail)->next;
  *tail = c;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
  return true;
}

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

/* One attempt, without the lock: the HTTP status, 0 with `err` on a transport failure. */
static long deliver(const cb *c, char *err, size_t cap) {
  CURL *h = curl_easy_init();
  fake_headers hs = {NULL};
  long status = 0;
  if (h == NULL) {
    snprintf(err, cap, "curl_easy_init failed");
    return 0;
  }
  fake_headers_add(&hs, "Content-Type", "application/json");
  hs.list = curl_slist_append(hs.list, "Expect:");
  if (c->sign != NULL)
    c->sign(&hs, c->tag, c->body, c->ud);
  curl_easy_setopt(h, CURLOPT_URL, c->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs.list);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
  curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)FAKE_CALLBACK_TIMEOUT_MS);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  else
    snprintf(err, cap, "%s", curl_easy_strerror(rc));
  curl_slist_free_all(hs.list);
  curl_easy_cleanup(h);
  return status;
}

/* Keeps at most FAKE_MAX_CALLBACKS_KEPT finished callbacks (lock held). */
static void cb_prune(fake *f) {
  size_t finished = 0;
  for (cb *c = f->cbs; c != NULL; c = c->next)
    finished += c->state != CB_PENDING;
  for (cb **p = &f->cbs; *p != NULL && finished > FAKE_MAX_CALLBACKS_KEPT;) {
    if ((*p)->state != CB_PENDING) {
      cb *gone = *p;
      *p = gone->next;
      cb_free(gone);
      finished--;
    } else {
      p = &(*p)->next;
    }
  }
}

/* Records the outcome of one attempt of f->busy and puts it back (lock held). */
static void cb_report(fake *f, cb *c, long status, const char *err) {
  c->attempt++;
  c->status = status;
  snprintf(c->error, sizeof c->error, "%s", err);
  bool ok = status >= 200 && status < 300;
  bool final = ok || status < 0 || c->attempt >= c->attempts;
  if (!final) {
    int shift = c->attempt - 1 < 20 ? c->attempt - 1 : 20;
    c->due_ms = fake_mono_ms() + (c->retry_ms << shift);
  } else {
    c->state = ok ? CB_DELIVERED : status < 0 ? CB_REFUSED : CB_FAILED;
  }
  if (c->done != NULL)
    c->done(c->tag, c->attempt, status, err, final, c->ud);
  /* Back in posting order. */
  cb **p = &f->cbs;
  while (*p != NULL && (*p)->id < c->id)
    p = &(*p)->next;
  c->next = *p;
  *p = c;
  cb_prune(f);
}

static void *callback_thread(void *arg) {
  fake *f = arg;
  pthread_mutex_lock(&f->mu);
  while (!f->stopping) {
    int64_t now = fake_mono_ms();
    cb **best = NULL;
    for (cb **p = &f->cbs; *p != NULL; p = &(*p)->next)
      if ((*p)->state == CB_PENDING && (best == NULL || (*p)->due_ms < (*best)->due_ms))
        best = p;
    if (best == NULL || (*best)->due_ms > now) {
      wait_until(f, best != NULL ? (*best)->due_ms : now + 1000);
      continue;
    }
    cb *c = *best;
    *best = c->next;
    c->next = NULL;
    f->busy = c;
    uint64_t generation = f->generation;
    pthread_mutex_unlock(&f->mu);
    char err[128] = "";
    long status = -1;
    if (loopback_url(c->url))
      status = deliver(c, err, sizeof err);
    else
      snprintf(err, sizeof err, "refused: the fake calls loopback http urls only");
    pthread_mutex_lock(&f->mu);
    f->busy = NULL;
    if (generation != f->generation) /* reset while it was out: forgotten */
      cb_free(c);
    else
      cb_report(f, c, status, err);
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

static cJSON *cb_json(const cb *c) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddNumberToObject(e, "id", (double)c->id);
  cJSON_AddStringToObject(e, "tag", c->tag);
  cJSON_AddStringToObject(e, "url", c->url);
  cJSON_AddStringToObject(e, "state", cb_state_names[c->state]);
  cJSON_AddNumberToObject(e, "attempts", c->attempt);
  if (c->status >= 0)
    cJSON_AddNumberToObject(e, "status", (double)c->status);
  else
    cJSON_AddNullToObject(e, "status");
  if (c->error[0] != '\0')
    cJSON_AddStringToObject(e, "error", c->error);
  return e;
}

/* ----------------------------------------------------------------- control plane */

/* Forgets everything a test may have left (lock held). */
static void state_reset(fake *f) {
  cJSON *q;
  cJSON_ArrayForEach(q, f->queues) {
    while (cJSON_GetArraySize(q) > 0)
      cJSON_DeleteItemFromArray(q, 0);
  }
  cJSON_Delete(f->log);
  f->log = cJSON_CreateArray();
  while (f->cbs != NULL) {
    cb *c = f->cbs;
    f->cbs = c->next;
    cb_free(c);
  }
  f->generation++;
  if (f->cfg.reset != NULL)
    f->cfg.reset(f->cfg.ud);
}

static cJSON *script_json(fake *f) {
  cJSON *o = cJSON_Duplicate(f->queues, true);
  if (f->cfg.script_dump != NULL)
    f->cfg.script_dump(o, f->cfg.ud);
  return o;
}

/* Checks a whole script, then merges it (lock held); false with `why`, nothing changed. */
static bool script_apply(fake *f, const cJSON *doc, char *why, size_t cap) {
  if (!cJSON_IsObject(doc)) {
    snprintf(why, cap, "the script must be a JSON object");
    return false;
  }
  const cJSON *q;
  cJSON_ArrayForEach(q, f->queues) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, q->string), *a;
    if (arr == NULL)
      continue;
    if (!cJSON_IsArray(arr)) {
      snprintf(why, cap, "%s must be an array", q->string);
      return false;
    }
    if (cJSON_GetArraySize(arr) + cJSON_GetArraySize(q) > FAKE_MAX_CANNED) {
      snprintf(why, cap, "too many canned answers for %s", q->string);
      return false;
    }
    cJSON_ArrayForEach(a, arr) {
      if (!canned_valid(f, a, why, cap))
        return false;
    }
  }
  if (f->cfg.script != NULL && !f->cfg.script(doc, false, why, cap, f->cfg.ud))
    return false;
  cJSON *qm;
  cJSON_ArrayForEach(qm, f->queues) {
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(doc, qm->string)) {
      cJSON_AddItemToArray(qm, cJSON_Duplicate(a, true));
    }
  }
  if (f->cfg.script != NULL)
    (void)f->cfg.script(doc, true, why, cap, f->cfg.ud);
  return true;
}

/* The built-in control endpoints; false when `r` is not one of them. */
static bool control(fake_request *r) {
  fake *f = r->f;
  const char *what = r->path + strlen(FAKE_CONTROL_PREFIX);
  bool post = strcmp(r->method, "POST") == 0, get = strcmp(r->method, "GET") == 0;
  cJSON *out = NULL;
  if (post && strcmp(what, "reset") == 0) {
    pthread_mutex_lock(&f->mu);
    state_reset(f);
    pthread_mutex_unlock(&f->mu);
    out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "ok", true);
  } else if (post && strcmp(what, "script") == 0) {
    char why[256] = "the script must be JSON";
    const cJSON *doc = fake_request_json(r);
    pthread_mutex_lock(&f->mu);
    if (doc != NULL && script_apply(f, doc, why, sizeof why))
      out = script_json(f);
    pthread_mutex_unlock(&f->mu);
    if (out == NULL) {
      reply_error(r, MHD_HTTP_BAD_REQUEST, why);
      return true;
    }
  } else if (get && strcmp(what, "script") == 0) {
    pthread_mutex_lock(&f->mu);
    out = script_json(f);
    pthread_mutex_unlock(&f->mu);
  } else if (get && strcmp(what, "requests") == 0) {
    out = cJSON_CreateObject();
    pthread_mutex_lock(&f->mu);
    cJSON_AddItemToObject(out, "requests", cJSON_Duplicate(f->log, true));
    pthread_mutex_unlock(&f->mu);
  } else if (get && strcmp(what, "callbacks") == 0) {
    out = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(out, "callbacks");
    pthread_mutex_lock(&f->mu);
    for (cb *c = f->cbs; c != NULL; c = c->next)
      cJSON_AddItemToArray(arr, cb_json(c));
    if (f->busy != NULL) /* being delivered: still pending */
      cJSON_AddItemToArray(arr, cb_json(f->busy));
    pthread_mutex_unlock(&f->mu);
  } else {
    return false;
  }
  fake_reply_json(r, MHD_HTTP_OK, out);
  return true;
}

/* ---------------------------------------------------------------------- dispatch */

static const fake_route *route_match(const fake *f, const char *method, const char *path,
                                     const char **tail) {
  for (size_t i = 0; i < f->cfg.nroutes; i++) {
    const fake_route *rt = &f->cfg.routes[i];
    if (rt->method != NULL && strcmp(rt->method, method) != 0)
      continue;
    size_t n = strlen(rt->path);
    bool prefix = n > 0 && rt->path[n - 1] == '*';
    if (prefix ? strncmp(path, rt->path, n - 1) == 0 : strcmp(path, rt->path) == 0) {
      *tail = prefix ? path + n - 1 : "";
      return rt;
    }
  }
  return NULL;
}

static void no_route(fake_request *r) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "error", "no route");
  cJSON_AddStringToObject(e, "method", r->method);
  cJSON_AddStringToObject(e, "path", r->path);
  fake_reply_json(r, MHD_HTTP_NOT_FOUND, e);
}

static void dispatch(fake_request *r) {
  fake *f = r->f;
  bool is_control = strncmp(r->path, FAKE_CONTROL_PREFIX, strlen(FAKE_CONTROL_PREFIX)) == 0;
  if (is_control && control(r))
    return;
  if (!is_control)
    log_request(r);
  r->route = route_match(f, r->method, r->path, &r->tail);
  if (r->route == NULL) {
    no_route(r);
    return;
  }
  if (!is_control && r->route->guarded && f->cfg.guard != NULL && f->cfg.guard(r, f->cfg.ud))
    return;
  cJSON *a = !is_control && r->route->script != NULL ? canned_take(f, r->route->script) : NULL;
  if (a != NULL)
    canned_answer(r, a);
  else
    r->route->handler(r, f->cfg.ud);
  cJSON_Delete(a);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  fake_request *r = calloc(1, sizeof *r);
  if (r != NULL) {
    r->f = cls;
    r->fake_name = r->f->name;
    r->c = c;
    r->uri = strdup(uri);
  }
  return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  fake__request_free(*req_cls);
  *req_cls = NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  (void)cls, (void)version;
  fake_request *r = *req_cls;
  if (r == NULL || r->uri == NULL)
    return MHD_NO;
  if (!r->started) {
    r->started = true;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    if (!r->too_big && !fake__grow(&r->body, &r->len, &r->cap, upload, *upload_size))
      r->too_big = true;
    *upload_size = 0;
    return MHD_YES;
  }
  r->path = url;
  r->method = method;
  if (r->too_big)
    fake_reply_text(r, 413, "request body too large");
  else
    dispatch(r);
  return fake__request_send(r);
}

/* libmicrohttpd's own error log, minus the line a scripted drop causes on purpose. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
  fake *f = cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  if (strstr(line, "Application reported internal error") != NULL)
    return;
  fprintf(stderr, "%s: mhd: %s", f->name, line);
}

/* ------------------------------------------------------------------ the fake itself */

fake *fake_new(const fake_config *cfg) {
  fake *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  f->cfg = *cfg;
  f->name = fake_strdup(cfg->name != NULL ? cfg->name : "fake");
  pthread_mutex_init(&f->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&f->cond, &ca);
  pthread_condattr_destroy(&ca);
  f->queues = cJSON_CreateObject();
  f->log = cJSON_CreateArray();
  for (size_t i = 0; i < cfg->nroutes; i++) {
    const char *s = cfg->routes[i].script;
    if (s != NULL && cJSON_GetObjectItemCaseSensitive(f->queues, s) == NULL)
      cJSON_AddArrayToObject(f->queues, s);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  return f;
}

bool fake_start(fake *f) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)f->cfg.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  f->stopping = false;
  f->d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
      (uint16_t)f->cfg.port, NULL, NULL, on_request, f, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, f,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_URI_LOG_CALLBACK, on_uri, f,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256, MHD_OPTION_END);
  if (f->d == NULL) {
    fprintf(stderr, "%s: cannot listen on 127.0.0.1:%d\n", f->name, f->cfg.port);
    return false;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
  f->port = info != NULL ? info->port : f->cfg.port;
  if (pthread_create(&f->thread, NULL, callback_thread, f) != 0) {
    fprintf(stderr, "%s: cannot start the callback thread\n", f->name);
    MHD_stop_daemon(f->d);
    f->d = NULL;
    return false;
  }
  f->started = true;
  return true;
}

void fake_stop(fake *f) {
  if (f == NULL || !f->started)
    return;
  /* Stopping first: delayed canned answers and the callback thread wake up and end. */
  pthread_mutex_lock(&f->mu);
  f->stopping = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
  MHD_stop_daemon(f->d);
  pthread_join(f->thread, NULL);
  f->d = NULL;
  f->started = false;
}

void fake_free(fake *f) {
  if (f == NULL)
    return;
  fake_stop(f);
  pthread_mutex_lock(&f->mu);
  state_reset(f);
  pthread_mutex_unlock(&f->mu);
  cJSON_Delete(f->queues);
  cJSON_Delete(f->log);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
  free(f->name);
  free(f);
  curl_global_cleanup();
}

int fake_run(fake *f) {
  /* Every thread started from here on inherits the blocked signals; this one waits. A
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
  if (!fake_start(f))
    return 1;
  printf("listening %d\n", f->port);
  fflush(stdout);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  int sig = 0;
  while (sigwait(&stop, &sig) != 0) {
  }
  fake_stop(f);
  return 0;
}
