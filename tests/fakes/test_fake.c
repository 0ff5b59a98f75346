/*
 * The fake-server library (lib/fake.h) in-process: a demo fake of three routes is
 * started on a free loopback port and driven with libcurl; a small libmicrohttpd
 * listener here receives its callbacks. Each test starts with POST /_fake/reset.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <setjmp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <tryon/http.h>

#include "fake.h"

#define WAIT_LIMIT_MS 30000 /* a generous ceiling for anything awaited, never asserted */

/* ----------------------------------------------------------------- the demo fake */

static struct {
  int echoes; /* requests the echo handler answered */
  int done_calls, done_attempt;
  long done_status;
  bool done_final;
} demo;

/* POST /demo/echo: {"echo":<the JSON body>,"n":<answers so far>}. */
static void demo_echo(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = fake_request_json(r);
  cJSON *out = cJSON_CreateObject();
  cJSON_AddItemToObject(out, "echo",
                        body != NULL ? cJSON_Duplicate(body, true) : cJSON_CreateNull());
  fake_lock(fake_request_fake(r));
  cJSON_AddNumberToObject(out, "n", ++demo.echoes);
  fake_unlock(fake_request_fake(r));
  fake_reply_json(r, 200, out);
}

static void demo_sign(fake_headers *h, const char *tag, const char *body, void *ud) {
  (void)body, (void)ud;
  char sig[128];
  snprintf(sig, sizeof sig, "sig-%s", tag);
  fake_headers_add(h, "X-Demo-Signature", sig);
}

static void demo_done(const char *tag, int attempt, long status, const char *error, bool final,
                      void *ud) {
  (void)tag, (void)error, (void)ud;
  demo.done_calls++;
  demo.done_attempt = attempt;
  demo.done_status = status;
  demo.done_final = final;
}

/* POST /demo/notify {"url","attempts"}: a signed callback 50 ms later, retried every
 * 50 ms (doubling) — the way a protocol posts its webhooks. */
static void demo_notify(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = fake_request_json(r);
  const cJSON *url = cJSON_GetObjectItemCaseSensitive(body, "url");
  const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(body, "attempts");
  if (!cJSON_IsString(url) || !cJSON_IsNumber(attempts)) {
    fake_reply_text(r, 400, "url and attempts wanted");
    return;
  }
  fake_callback cb = {.url = url->valuestring,
                      .body = "{\"event\":\"done\"}",
                      .tag = "t1",
                      .delay_ms = 50,
                      .attempts = attempts->valueint,
                      .retry_ms = 50,
                      .sign = demo_sign,
                      .done = demo_done};
  if (fake_callback_post(fake_request_fake(r), &cb))
    fake_reply_text(r, 202, "queued");
  else
    fake_reply_text(r, 500, "out of memory");
}

static void demo_reset(void *ud) {
  (void)ud;
  memset(&demo, 0, sizeof demo);
}

static const fake_route demo_routes[] = {
    {"POST", "/demo/echo", "echo", false, demo_echo},
    {"POST", "/demo/form", "echo", false, demo_echo},
    {"POST", "/demo/notify", NULL, false, demo_notify},
};

static fake *F;
static char base[64];

/* ------------------------------------------------------------------- HTTP client */

/* One answer, through the product's own client (one attempt, no retries). */
typedef struct reply {
  tryon_status st; /* TRYON_E_NETWORK for a dropped connection */
  long status;     /* 0 when none came */
  char *body;
  char content_type[128];
  int64_t retry_after_ms;
  cJSON *json;
} reply;

static void reply_free(reply *r) {
  free(r->body);
  cJSON_Delete(r->json);
  memset(r, 0, sizeof *r);
}

/* `type` NULL: a JSON body (when `body` is given). */
static reply request(const char *method, const char *path, const char *type, const char *body) {
  reply r = {0};
  char url[256];
  snprintf(url, sizeof url, "%s%s", base, path);
  static const char *const headers[] = {"X-Test: yes", NULL};
  tryon_http_request req = {.method = method,
                            .url = url,
                            .headers = headers,
                            .body = body,
                            .body_len = body != NULL ? strlen(body) : 0,
                            .content_type = type != NULL ? type : "application/json",
                            .max_attempts = 1,
                            .user_agent = "test-fake/1"};
  tryon_http_response resp;
  tryon_err err;
  r.st = tryon_http_perform(&req, &resp, &err);
  r.status = resp.status;
  r.body = strdup(resp.body.len > 0 ? resp.body.data : "");
  snprintf(r.content_type, sizeof r.content_type, "%s", resp.content_type);
  r.retry_after_ms = resp.retry_after_ms;
  r.json = cJSON_Parse(r.body);
  tryon_http_response_release(&resp);
  return r;
}

static const cJSON *jget(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

static const char *jstr(const cJSON *o, const char *name) {
  const cJSON *v = jget(o, name);
  if (!cJSON_IsString(v))
    fail_msg("no string %s", name);
  return v->valuestring;
}

/* A control call that must answer 200; its JSON (caller deletes). */
static cJSON *control(const char *method, const char *path, const char *body) {
  reply r = request(method, path, NULL, body);
  if (r.status != 200 || r.json == NULL)
    fail_msg("%s %s: %ld %s", method, path, r.status, r.body ? r.body : "");
  cJSON *doc = r.json;
  r.json = NULL;
  reply_free(&r);
  return doc;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------- callback listener */

/* Answers 500 to the first `fail_first` callbacks, 200 after; keeps what came. */
static struct {
  pthread_mutex_t mu;
  int fail_first, n;
  char signature[8][64];
  char body[8][128];
  struct MHD_Daemon *d;
  int port;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

static enum MHD_Result on_hook(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls) {
  (void)cls, (void)url, (void)method, (void)version;
  char *body = *req_cls;
  if (body == NULL) {
    *req_cls = calloc(1, 128);
    return *req_cls != NULL ? MHD_YES : MHD_NO;
  }
  if (*upload_size > 0) {
    size_t have = strlen(body), k = *upload_size < 127 - have ? *upload_size : 127 - have;
    memcpy(body + have, upload, k);
    *upload_size = 0;
    return MHD_YES;
  }
  pthread_mutex_lock(&L.mu);
  int i = L.n++;
  if (i < 8) {
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Demo-Signature");
    snprintf(L.signature[i], sizeof L.signature[i], "%s", sig != NULL ? sig : "");
    snprintf(L.body[i], sizeof L.body[i], "%s", body);
  }
  unsigned int status = i < L.fail_first ? 500 : 200;
  pthread_mutex_unlock(&L.mu);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void on_hook_done(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  free(*req_cls);
  *req_cls = NULL;
}

/* ---------------------------------------------------------------------- set-up */

static int group_setup(void **state) {
  (void)state;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  fake_config cfg = {.name = "demo-fake",
                     .routes = demo_routes,
                     .nroutes = sizeof demo_routes / sizeof demo_routes[0],
                     .reset = demo_reset};
  F = fake_new(&cfg);
  assert_non_null(F);
  assert_true(fake_start(F));
  snprintf(base, sizeof base, "http://127.0.0.1:%d", fake_port(F));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  L.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, on_hook, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_hook_done, NULL, MHD_OPTION_END);
  assert_non_null(L.d);
  L.port = MHD_get_daemon_info(L.d, MHD_DAEMON_INFO_BIND_PORT)->port;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  fake_free(F);
  MHD_stop_daemon(L.d);
  curl_global_cleanup();
  return 0;
}

static int per_test(void **state) {
  (void)state;
  cJSON_Delete(control("POST", "/_fake/reset", "{}"));
  pthread_mutex_lock(&L.mu);
  L.n = L.fail_first = 0;
  pthread_mutex_unlock(&L.mu);
  return 0;
}

/* ----------------------------------------------------------------------- tests */

static void test_fake__scripted_answers_in_order(void **state) {
  (void)state;
  cJSON_Delete(control("POST", "/_fake/script",
                       "{\"echo\":[{\"http\":429,\"retry_after\":2},"
                       "{\"body\":{\"canned\":true}},{\"drop\":true},"
                       "{\"http\":503,\"body\":\"down\",\"headers\":{\"Retry-After\":\"7\"},"
                       "\"delay_ms\":10}]}"));
  /* A bad script is refused whole: the queue keeps its four. */
  reply r = request("POST", "/_fake/script", NULL, "{\"echo\":[{\"http\":200},{\"http\":9}]}");
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(jstr(r.json, "error"), "http"));
  reply_free(&r);
  cJSON *s = control("GET", "/_fake/script", NULL);
  assert_int_equal(cJSON_GetArraySize(jget(s, "echo")), 4);
  cJSON_Delete(s);

  r = request("POST", "/demo/echo", NULL, "{}");
  assert_int_equal(r.status, 429);
  assert_int_equal(r.retry_after_ms, 2000);
  reply_free(&r);
  r = request("POST", "/demo/form", NULL, "{}"); /* the same queue, another route */
  assert_int_equal(r.status, 200);
  assert_true(cJSON_IsTrue(jget(r.json, "canned")));
  reply_free(&r);
  r = request("POST", "/demo/echo", NULL, "{}");
  assert_int_equal(r.status, 0); /* dropped: no answer at all */
  assert_int_equal(r.st, TRYON_E_NETWORK);
  reply_free(&r);
  r = request("POST", "/demo/echo", NULL, "{}");
  assert_int_equal(r.status, 503);
  assert_string_equal(r.body, "down");
  assert_int_equal(r.retry_after_ms, 7000); /* from "headers" */
  reply_free(&r);
  /* Used up: the handler answers, and it saw none of the four. */
  r = request("POST", "/demo/echo", NULL, "{\"a\":1}");
  assert_int_equal(r.status, 200);
  assert_int_equal(jget(jget(r.json, "echo"), "a")->valueint, 1);
  assert_int_equal(jget(r.json, "n")->valueint, 1);
  reply_free(&r);
}

static void test_fake__request_log(void **state) {
  (void)state;
  reply r = request("POST", "/demo/echo?x=1", NULL, "{\"big\":\"v\"}");
  reply_free(&r);
  r = request("POST", "/demo/form", "application/x-www-form-urlencoded", "chat_id=7&text=hi");
  reply_free(&r);
  r = request("GET", "/nowhere", NULL, NULL);
  reply_free(&r);
  cJSON *doc = control("GET", "/_fake/requests", NULL);
  const cJSON *reqs = jget(doc, "requests");
  assert_int_equal(cJSON_GetArraySize(reqs), 3); /* control calls are not logged */
  const cJSON *e = cJSON_GetArrayItem(reqs, 0);
  assert_string_equal(jstr(e, "method"), "POST");
  assert_string_equal(jstr(e, "path"), "/demo/echo");
  assert_string_equal(jstr(e, "query"), "x=1");
  assert_string_equal(jstr(e, "user_agent"), "test-fake/1");
  assert_string_equal(jstr(jget(e, "headers"), "X-Test"), "yes");
  assert_string_equal(jstr(jget(e, "json"), "big"), "v");
  assert_int_equal(jget(e, "body_bytes")->valueint, 11);
  assert_true(cJSON_IsNumber(jget(e, "time_ms")));
  e = cJSON_GetArrayItem(reqs, 1);
  assert_true(cJSON_IsNull(jget(e, "json")));
  assert_string_equal(cJSON_GetArrayItem(jget(e, "fields"), 0)->valuestring, "chat_id");
  assert_string_equal(jstr(jget(e, "form"), "text"), "hi");
  e = cJSON_GetArrayItem(reqs, 2);
  assert_string_equal(jstr(e, "path"), "/nowhere");
  cJSON_Delete(doc);
}

static void test_fake__reset_forgets(void **state) {
  (void)state;
  cJSON_Delete(control("POST", "/_fake/script", "{\"echo\":[{\"http\":500}]}"));
  reply r = request("POST", "/demo/form", NULL, "{}");
  assert_int_equal(r.status, 500);
  reply_free(&r);
  cJSON_Delete(control("POST", "/_fake/script", "{\"echo\":[{\"http\":500}]}"));
  r = request("POST", "/demo/echo", NULL, "{}");
  reply_free(&r);
  cJSON_Delete(control("POST", "/_fake/script", "{\"echo\":[{\"http\":500}]}"));
  cJSON_Delete(control("POST", "/_fake/reset", NULL));
  cJSON *doc = control("GET", "/_fake/requests", NULL);
  assert_int_equal(cJSON_GetArraySize(jget(doc, "requests")), 0);
  cJSON_Delete(doc);
  doc = control("GET", "/_fake/script", NULL);
  assert_int_equal(cJSON_GetArraySize(jget(doc, "echo")), 0);
  cJSON_Delete(doc);
  /* The protocol's state went too (its reset hook): the echo count starts again. */
  r = request("POST", "/demo/echo", NULL, "{}");
  assert_int_equal(r.status, 200);
  assert_int_equal(jget(r.json, "n")->valueint, 1);
  reply_free(&r);
}

/* The fake's view of callback `tag` once it is no longer pending (caller deletes). */
static cJSON *callback_when_finished(const char *tag) {
  for (int waited = 0; waited < WAIT_LIMIT_MS; waited += 20) {
    cJSON *doc = control("GET", "/_fake/callbacks", NULL);
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(doc, "callbacks")) {
      if (strcmp(jstr(c, "tag"), tag) == 0 && strcmp(jstr(c, "state"), "pending") != 0) {
        cJSON *found = cJSON_Duplicate(c, true);
        cJSON_Delete(doc);
        return found;
      }
    }
    cJSON_Delete(doc);
    sleep_ms(20);
  }
  fail_msg("callback %s never finished", tag);
  return NULL;
}

static void test_fake__callback_delivered_and_retried(void **state) {
  (void)state;
  pthread_mutex_lock(&L.mu);
  L.fail_first = 1;
  pthread_mutex_unlock(&L.mu);
  char body[160];
  snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/hook\",\"attempts\":3}", L.port);
  reply r = request("POST", "/demo/notify", NULL, body);
  assert_int_equal(r.status, 202); /* answered at once: delivery is the thread's */
  reply_free(&r);
  cJSON *c = callback_when_finished("t1");
  assert_string_equal(jstr(c, "state"), "delivered");
  assert_int_equal(jget(c, "attempts")->valueint, 2);
  assert_int_equal(jget(c, "status")->valueint, 200);
  cJSON_Delete(c);
  pthread_mutex_lock(&L.mu);
  assert_int_equal(L.n, 2); /* 500, then 200: no third */
  for (int i = 0; i < 2; i++) {
    assert_string_equal(L.signature[i], "sig-t1"); /* signed before every attempt */
    assert_string_equal(L.body[i], "{\"event\":\"done\"}");
  }
  pthread_mutex_unlock(&L.mu);
  fake_lock(F);
  assert_int_equal(demo.done_calls, 2);
  assert_int_equal(demo.done_attempt, 2);
  assert_int_equal(demo.done_status, 200);
  assert_true(demo.done_final);
  fake_unlock(F);

  /* Failing every time: given up after the attempts allowed. */
  cJSON_Delete(control("POST", "/_fake/reset", NULL));
  pthread_mutex_lock(&L.mu);
  L.n = 0;
  L.fail_first = 100;
  pthread_mutex_unlock(&L.mu);
  snprintf(body, sizeof body, "{\"url\":\"http://127.0.0.1:%d/hook\",\"attempts\":2}", L.port);
  r = request("POST", "/demo/notify", NULL, body);
  reply_free(&r);
  c = callback_when_finished("t1");
  assert_string_equal(jstr(c, "state"), "failed");
  assert_int_equal(jget(c, "attempts")->valueint, 2);
  assert_int_equal(jget(c, "status")->valueint, 500);
  cJSON_Delete(c);

  /* Off loopback: refused without a connection. */
  cJSON_Delete(control("POST", "/_fake/reset", NULL));
  r = request("POST", "/demo/notify", NULL, "{\"url\":\"http://192.0.2.1/hook\",\"attempts\":3}");
  reply_free(&r);
  c = callback_when_finished("t1");
  assert_string_equal(jstr(c, "state"), "refused");
  assert_true(cJSON_IsNull(jget(c, "status")));
  assert_non_null(strstr(jstr(c, "error"), "loopback"));
  cJSON_Delete(c);
}

static void test_fake__unknown_route_is_404_json(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"GET", "/demo/echo"}, /* a known path, another method */
      {"POST", "/nowhere"},
      {"GET", "/_fake/nothing"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    reply r = request(cases[i][0], cases[i][1], NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.content_type, "application/json"));
    assert_true(cJSON_IsString(jget(r.json, "error")));
    reply_free(&r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_fake__scripted_answers_in_order, per_test),
      cmocka_unit_test_setup(test_fake__request_log, per_test),
      cmocka_unit_test_setup(test_fake__reset_forgets, per_test),
      cmocka_unit_test_setup(test_fake__callback_delivered_and_retried, per_test),
      cmocka_unit_test_setup(test_fake__unknown_route_is_404_json, per_test),
  };
  return cmocka_run_group_tests_name("fake", tests, group_setup, group_teardown);
}
