/*
 * The http module against a loopback server of its own (libmicrohttpd, a thread per
 * connection), written from the contract in include/tryon/http.h.
 *
 * The server answers by route: each test gives a path a script of actions (200, a
 * status with or without Retry-After, a slow answer, an oversize chunked body, a
 * Content-Length over the ceiling, a closed connection, an echo of the request, a
 * redirect); the n-th request on a path gets the n-th action (the last one repeats).
 * Every retry table runs twice: through the blocking tryon_http_perform and through a
 * CURLM driven the way the worker's event loop drives it.
 *
 * Delays are tiny (backoff_base_ms of a few ms); the one Retry-After a test waits out
 * is 1 s. No assertion reads the wall clock; a delay is checked only where the contract
 * fixes it (a Retry-After of N seconds is N * 1000 ms).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <tryon/http.h>

#include "http/http_internal.h"
#include "testsupport.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define BASE_MS 4 /* backoff base in tests */

/* ------------------------------------------------------------------ loopback server */

typedef enum act_kind {
  A_END = 0, /* end of a script */
  A_STATUS,  /* `status` with `body` and, when set, Retry-After: `retry_after` */
  A_SLOW,    /* sleep `ms`, then 200 */
  A_CHUNKED, /* 200 with `size` bytes, chunked (no Content-Length) */
  A_LENGTH,  /* 200 announcing Content-Length `size` */
  A_CLOSE,   /* close the connection without an answer */
  A_ECHO,    /* 200, a JSON object describing the request */
  A_REDIRECT /* 302 to `location` */
} act_kind;

typedef struct act {
  act_kind kind;
  int status;
  const char *body;
  const char *retry_after;
  int ms;
  size_t size;
  const char *location;
} act;

#define MAX_ACTS 6
typedef struct route {
  char path[64];
  act acts[MAX_ACTS];
  int hits;
} route;

static struct {
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  route routes[64];
  size_t nroutes;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct conn_ctx {
  tryon_buf body;
} conn_ctx;

static void routes_reset(void) {
  pthread_mutex_lock(&srv.mu);
  srv.nroutes = 0;
  pthread_mutex_unlock(&srv.mu);
}

/* Gives `path` a script (ended by A_END or MAX_ACTS actions). */
static void route_set(const char *path, const act *acts) {
  pthread_mutex_lock(&srv.mu);
  assert_true(srv.nroutes < ARRAY_LEN(srv.routes));
  route *r = &srv.routes[srv.nroutes++];
  memset(r, 0, sizeof *r);
  snprintf(r->path, sizeof r->path, "%s", path);
  for (int i = 0; i < MAX_ACTS && acts[i].kind != A_END; i++)
    r->acts[i] = acts[i];
  pthread_mutex_unlock(&srv.mu);
}

static int route_hits(const char *path) {
  int hits = -1;
  pthread_mutex_lock(&srv.mu);
  for (size_t i = 0; i < srv.nroutes; i++)
    if (strcmp(srv.routes[i].path, path) == 0)
      hits = srv.routes[i].hits;
  pthread_mutex_unlock(&srv.mu);
  return hits;
}

/* The next action for `path`, counting the request; A_END for an unknown path. */
static act route_next(const char *path) {
  act a = {.kind = A_END};
  pthread_mutex_lock(&srv.mu);
  for (size_t i = 0; i < srv.nroutes; i++) {
    route *r = &srv.routes[i];
    if (strcmp(r->path, path) != 0)
      continue;
    int n = 0;
    while (n < MAX_ACTS && r->acts[n].kind != A_END)
      n++;
    a = r->acts[r->hits < n ? r->hits : n - 1];
    r->hits++;
  }
  pthread_mutex_unlock(&srv.mu);
  return a;
}

static ssize_t fill_x(void *cls, uint64_t pos, char *buf, size_t max) {
  size_t total = (size_t)(uintptr_t)cls;
  if (pos >= total)
    return MHD_CONTENT_READER_END_OF_STREAM;
  size_t n = total - (size_t)pos < max ? total - (size_t)pos : max;
  memset(buf, 'x', n);
  return (ssize_t)n;
}

static void add_header_to(cJSON *o, struct MHD_Connection *c, const char *key, const char *name) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  cJSON_AddStringToObject(o, key, v != NULL ? v : "");
}

static enum MHD_Result queue(struct MHD_Connection *c, int status, struct MHD_Response *r) {
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  conn_ctx *ctx = *con_cls;
  if (ctx == NULL) {
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
      return MHD_NO;
    tryon_buf_init(&ctx->body, 1 << 20);
    *con_cls = ctx;
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    if (tryon_buf_append(&ctx->body, upload_data, *upload_data_size) != TRYON_OK)
      return MHD_NO;
    *upload_data_size = 0;
    return MHD_YES;
  }
  act a = route_next(url);
  struct MHD_Response *r = NULL;
  switch (a.kind) {
    case A_END:
      r = MHD_create_response_from_buffer(9, (void *)"no route\n", MHD_RESPMEM_PERSISTENT);
      return queue(c, 404, r);
    case A_STATUS: {
      const char *b = a.body != NULL ? a.body : "";
      r = MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_PERSISTENT);
      if (a.retry_after != NULL)
        MHD_add_response_header(r, "Retry-After", a.retry_after);
      if (b[0] == '{')
        MHD_add_response_header(r, "Content-Type", "application/json");
      return queue(c, a.status, r);
    }
    case A_SLOW:
      usleep((useconds_t)a.ms * 1000);
      r = MHD_create_response_from_buffer(4, (void *)"late", MHD_RESPMEM_PERSISTENT);
      return queue(c, 200, r);
    case A_CHUNKED:
      r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, fill_x,
                                            (void *)(uintptr_t)a.size, NULL);
      return queue(c, 200, r);
    case A_LENGTH:
      r = MHD_create_response_from_callback(a.size, 4096, fill_x, (void *)(uintptr_t)a.size, NULL);
      return queue(c, 200, r);
    case A_CLOSE:
      return MHD_NO;
    case A_REDIRECT:
      r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
      MHD_add_response_header(r, "Location", a.location);
      return queue(c, 302, r);
    case A_ECHO: {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "method", method);
      cJSON_AddStringToObject(o, "body", ctx->body.data);
      add_header_to(o, c, "ua", "User-Agent");
      add_header_to(o, c, "ct", "Content-Type");
      add_header_to(o, c, "accept", "Accept");
      add_header_to(o, c, "x_test", "X-Test");
      add_header_to(o, c, "expect", "Expect");
      const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
      cJSON_AddStringToObject(o, "q", q != NULL ? q : "");
      char *text = cJSON_PrintUnformatted(o);
      cJSON_Delete(o);
      if (text == NULL)
        return MHD_NO;
      r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
      MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
      return queue(c, 200, r);
    }
  }
  return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  conn_ctx *ctx = *con_cls;
  if (ctx != NULL) {
    tryon_buf_release(&ctx->body);
    free(ctx);
    *con_cls = NULL;
  }
}

/* ------------------------------------------------------------------ log capture */

static tryon_buf logs;

static void capture_sink(tryon_log_level level, const char *line, void *ud) {
  (void)tryon_buf_append_str(&logs, line);
  (void)tryon_buf_append_str(&logs, "\n");
}

static int count_substr(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* ------------------------------------------------------------------ fixtures */

static int group_setup(void **state) {
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_http_global_init(&err) != TRYON_OK)
    fail_msg("global init: %s", err.message);
  srv.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                           NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                           MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
  if (srv.d == NULL)
    fail_msg("the loopback server did not start");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
  if (info == NULL || info->port == 0)
    fail_msg("the loopback server has no port");
  srv.port = info->port;
  tryon_buf_init(&logs, 1 << 20);
  tryon_log_set_level(TRYON_LOG_INFO);
  tryon_log_set_sink(capture_sink, NULL);
  return 0;
}

static int group_teardown(void **state) {
  tryon_log_set_sink(NULL, NULL);
  MHD_stop_daemon(srv.d);
  tryon_buf_release(&logs);
  tryon_http_global_cleanup();
  return 0;
}

static int setup(void **state) {
  routes_reset();
  tryon_buf_reset(&logs);
  return 0;
}

static void url_for(char *out, size_t cap, const char *path) {
  snprintf(out, cap, "http://127.0.0.1:%d%s", srv.port, path);
}

/* ------------------------------------------------------------------ the event loop */

typedef struct slot {
  tryon_http_call *call;
  int64_t due_ms; /* when to add it again; -1: in the multi or done */
  bool done;
  int64_t delays[TRYON_HTTP_ATTEMPTS_LIMIT]; /* every RETRY delay, in order */
  int ndelays;
} slot;

static int64_t mono_ms(void) {
  return tryon_time_monotonic_ms();
}

/*
 * Drives the calls in `s` the way the worker does: one CURLM, curl_multi_poll,
 * curl_multi_info_read, tryon_http_call_finished, and a handle added again once its
 * delay has passed. `wait` false re-adds at once (the delay is only recorded).
 */
static void run_loop(slot *s, size_t n, bool wait) {
  CURLM *m = curl_multi_init();
  size_t left = n;
  assert_non_null(m);
  for (size_t i = 0; i < n; i++) {
    CURL *e = tryon_http_call_easy(s[i].call);
    assert_non_null(e);
    /* CURLOPT_PRIVATE is the loop's: here, the slot. */
    assert_int_equal(curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)&s[i]), CURLE_OK);
    assert_int_equal(curl_multi_add_handle(m, e), CURLM_OK);
    s[i].due_ms = -1;
  }
  while (left > 0) {
    int running = 0, queued = 0;
    CURLMsg *msg;
    assert_int_equal(curl_multi_perform(m, &running), CURLM_OK);
    while ((msg = curl_multi_info_read(m, &queued)) != NULL) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      CURL *e = msg->easy_handle;
      CURLcode code = msg->data.result; /* read before the handle leaves the multi */
      char *p = NULL;
      assert_int_equal(curl_easy_getinfo(e, CURLINFO_PRIVATE, &p), CURLE_OK);
      slot *sl = (slot *)(void *)p;
      assert_non_null(sl);
      tryon_http_call *call = sl->call;
      assert_int_equal(curl_multi_remove_handle(m, e), CURLM_OK);
      int64_t delay = -1;
      if (tryon_http_call_finished(call, code, &delay) == TRYON_HTTP_RETRY) {
        assert_true(delay >= 0);
        assert_true(sl->ndelays < TRYON_HTTP_ATTEMPTS_LIMIT);
        sl->delays[sl->ndelays++] = delay;
        sl->due_ms = mono_ms() + (wait ? delay : 0);
      } else {
        assert_int_equal(delay, 0);
        sl->done = true;
        left--;
      }
    }
    int64_t now = mono_ms(), next = -1;
    for (size_t i = 0; i < n; i++) {
      if (s[i].due_ms < 0)
        continue;
      if (s[i].due_ms <= now) {
        s[i].due_ms = -1;
        CURL *e = tryon_http_call_easy(s[i].call);
        assert_non_null(e);
        assert_int_equal(curl_multi_add_handle(m, e), CURLM_OK);
      } else if (next < 0 || s[i].due_ms < next) {
        next = s[i].due_ms;
      }
    }
    int timeout = 100;
    if (next >= 0 && next - now < timeout)
      timeout = (int)(next - now);
    if (left > 0)
      assert_int_equal(curl_multi_poll(m, NULL, 0, timeout, NULL), CURLM_OK);
  }
  curl_multi_cleanup(m);
}

/* One request through the loop: the verdict, the response moved to `out`. */
static tryon_status run_async(const tryon_http_request *req, tryon_http_response *out,
                              tryon_err *err, slot *sl_out) {
  slot sl = {0};
  tryon_status st = tryon_http_call_new(req, &sl.call, err);
  memset(out, 0, sizeof *out);
  if (st != TRYON_OK)
    return st;
  run_loop(&sl, 1, true);
  assert_null(tryon_http_call_easy(sl.call)); /* done: no further attempt */
  st = tryon_http_call_status(sl.call, err);
  tryon_http_call_take_response(sl.call, out);
  tryon_http_call_free(sl.call);
  sl.call = NULL;
  if (sl_out != NULL)
    *sl_out = sl;
  return st;
}

/* ------------------------------------------------------------------ retry table */

typedef struct retry_case {
  const char *name;
  act acts[MAX_ACTS];
  int max_attempts;      /* 0: default (3) */
  long timeout_ms;       /* 0: default */
  size_t max_response;   /* 0: default */
  bool follow;           /* follow redirects */
  tryon_status want;     /* verdict */
  long want_http;        /* response status */
  int want_attempts;     /* attempts made */
  const char *want_body; /* NULL: not checked */
  int64_t want_retry_after_ms;
} retry_case;

#define S(code) \
  { .kind = A_STATUS, .status = (code), .body = #code }
#define OK_HELLO \
  { .kind = A_STATUS, .status = 200, .body = "hello" }

static const retry_case retry_cases[] = {
    {"200 at once", {OK_HELLO}, 0, 0, 0, false, TRYON_OK, 200, 1, "hello", 0},
    {"204 at once", {S(204)}, 0, 0, 0, false, TRYON_OK, 204, 1, NULL, 0},
    {"503 then 200", {S(503), OK_HELLO}, 0, 0, 0, false, TRYON_OK, 200, 2, "hello", 0},
    {"500 three times", {S(500)}, 0, 0, 0, false, TRYON_E_UPSTREAM, 500, 3, "500", 0},
    {"502 504 200", {S(502), S(504), OK_HELLO}, 0, 0, 0, false, TRYON_OK, 200, 3, "hello", 0},
    {"503 with one attempt",
     {S(503), OK_HELLO},
     1,
     0,
     0,
     false,
     TRYON_E_UPSTREAM,
     503,
     1,
     "503",
     0},
    {"400 never retried", {S(400), OK_HELLO}, 0, 0, 0, false, TRYON_E_UPSTREAM, 400, 1, "400", 0},
    {"401 never retried", {S(401), OK_HELLO}, 0, 0, 0, false, TRYON_E_UPSTREAM, 401, 1, NULL, 0},
    {"404 never retried", {S(404), OK_HELLO}, 0, 0, 0, false, TRYON_E_UPSTREAM, 404, 1, NULL, 0},
    {"422 never retried", {S(422), OK_HELLO}, 0, 0, 0, false, TRYON_E_UPSTREAM, 422, 1, NULL, 0},
    {"408 retried", {S(408), OK_HELLO}, 0, 0, 0, false, TRYON_OK, 200, 2, "hello", 0},
    {"429 retried", {S(429), OK_HELLO}, 0, 0, 0, false, TRYON_OK, 200, 2, "hello", 0},
    {"429 asking 120 s ends the call",
     {{.kind = A_STATUS, .status = 429, .body = "slow down", .retry_after = "120"}, OK_HELLO},
     0,
     0,
     0,
     false,
     TRYON_E_UPSTREAM,
     429,
     1,
     "slow down",
     120000},
    {"503 asking 61 s ends the call",
     {{.kind = A_STATUS, .status = 503, .retry_after = "61"}, OK_HELLO},
     0,
     0,
     0,
     false,
     TRYON_E_UPSTREAM,
     503,
     1,
     NULL,
     61000},
    {"slow answers time out",
     {{.kind = A_SLOW, .ms = 400}},
     2,
     100,
     0,
     false,
     TRYON_E_TIMEOUT,
     0,
     2,
     NULL,
     0},
    {"a timeout then 200",
     {{.kind = A_SLOW, .ms = 400}, OK_HELLO},
     0,
     100,
     0,
     false,
     TRYON_OK,
     200,
     2,
     "hello",
     0},
    {"chunked body over the ceiling",
     {{.kind = A_CHUNKED, .size = 50000}, OK_HELLO},
     0,
     0,
     1000,
     false,
     TRYON_E_TOO_LARGE,
     200,
     1,
     NULL,
     0},
    {"chunked body at the ceiling",
     {{.kind = A_CHUNKED, .size = 1000}},
     0,
     0,
     1000,
     false,
     TRYON_OK,
     200,
     1,
     NULL,
     0},
    /* Refused on the header: without CURLOPT_MAXFILESIZE_LARGE some 4 KiB blocks would
     * fit under the 20000-byte ceiling before the write callback stopped the rest. */
    {"Content-Length over the ceiling",
     {{.kind = A_LENGTH, .size = 65536}, OK_HELLO},
     0,
     0,
     20000,
     false,
     TRYON_E_TOO_LARGE,
     200,
     1,
     "",
     0},
    {"closed connection three times",
     {{.kind = A_CLOSE}},
     0,
     0,
     0,
     false,
     TRYON_E_NETWORK,
     0,
     3,
     NULL,
     0},
    {"closed connection then 200",
     {{.kind = A_CLOSE}, OK_HELLO},
     0,
     0,
     0,
     false,
     TRYON_OK,
     200,
     2,
     "hello",
     0},
    {"302 is the answer without follow",
     {{.kind = A_REDIRECT, .location = "/elsewhere"}},
     0,
     0,
     0,
     false,
     TRYON_E_UPSTREAM,
     302,
     1,
     NULL,
     0},
    {"redirect to ftp refused",
     {{.kind = A_REDIRECT, .location = "ftp://127.0.0.1/x"}},
     0,
     0,
     0,
     true,
     TRYON_E_NETWORK,
     302,
     1,
     NULL,
     0},
};

static void check_case(const retry_case *c, const char *mode, const char *path, tryon_status st,
                       const tryon_http_response *r, const tryon_err *err) {
  if (st != c->want)
    fail_msg("%s (%s): got %s, want %s (%s)", c->name, mode, tryon_status_name(st),
             tryon_status_name(c->want), err->message);
  if (r->status != c->want_http)
    fail_msg("%s (%s): status %ld, want %ld", c->name, mode, r->status, c->want_http);
  if (r->attempts != c->want_attempts)
    fail_msg("%s (%s): %d attempts, want %d", c->name, mode, r->attempts, c->want_attempts);
  if (route_hits(path) != c->want_attempts)
    fail_msg("%s (%s): the server saw %d requests, want %d", c->name, mode, route_hits(path),
             c->want_attempts);
  if (c->want_body != NULL && strcmp(r->body.data, c->want_body) != 0)
    fail_msg("%s (%s): body '%.40s', want '%s'", c->name, mode, r->body.data, c->want_body);
  if (r->retry_after_ms != c->want_retry_after_ms)
    fail_msg("%s (%s): retry_after_ms %lld, want %lld", c->name, mode, (long long)r->retry_after_ms,
             (long long)c->want_retry_after_ms);
  if (st != TRYON_OK && err->status != st)
    fail_msg("%s (%s): err->status %s", c->name, mode, tryon_status_name(err->status));
  if (st != TRYON_OK && err->http_status != (int)c->want_http)
    fail_msg("%s (%s): err->http_status %d", c->name, mode, err->http_status);
  if (c->max_response > 0 && r->body.len > c->max_response)
    fail_msg("%s (%s): %zu bytes kept over a ceiling of %zu", c->name, mode, r->body.len,
             c->max_response);
}

static void run_retry_table(bool async) {
  for (size_t i = 0; i < ARRAY_LEN(retry_cases); i++) {
    const retry_case *c = &retry_cases[i];
    char path[32], url[96];
    tryon_http_response r;
    tryon_err err;
    snprintf(path, sizeof path, "/case%zu", i);
    url_for(url, sizeof url, path);
    route_set(path, c->acts);
    tryon_http_request req = {
        .url = url,
        .max_attempts = c->max_attempts,
        .timeout_ms = c->timeout_ms,
        .connect_timeout_ms = 2000,
        .max_response_bytes = c->max_response,
        .follow_redirects = c->follow,
        .backoff_base_ms = BASE_MS,
        .log_label = "test",
    };
    tryon_err_clear(&err);
    tryon_status st = async ? run_async(&req, &r, &err, NULL) : tryon_http_perform(&req, &r, &err);
    check_case(c, async ? "async" : "blocking", path, st, &r, &err);
    tryon_http_response_release(&r);
  }
}

static void test_http__retry_table_blocking(void **state) {
  run_retry_table(false);
}

static void test_http__retry_table_async(void **state) {
  run_retry_table(true);
}

/* A Retry-After in seconds is the delay, exactly, when longer than the backoff. */
static void test_http__retry_after_is_the_delay(void **state) {
  static const struct {
    const char *value;
    int64_t want_ms; /* -1: the backoff (at most BASE_MS) */
  } cases[] = {{"1", 1000}, {"2", 2000}, {"60", 60000}, {"0", -1}, {"soon", -1}};
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char path[32], url[96];
    snprintf(path, sizeof path, "/ra%zu", i);
    url_for(url, sizeof url, path);
    act acts[] = {{.kind = A_STATUS, .status = 429, .retry_after = cases[i].value}, OK_HELLO, {0}};
    route_set(path, acts);
    tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS};
    slot sl = {0};
    tryon_err err;
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_http_call_new(&req, &sl.call, &err), TRYON_OK, &err, cases[i].value);
    run_loop(&sl, 1, false); /* the loop records the delay and re-adds at once */
    EXPECT_STATUS(tryon_http_call_status(sl.call, &err), TRYON_OK, &err, cases[i].value);
    EXPECT_I64(sl.ndelays, 1, cases[i].value);
    if (cases[i].want_ms >= 0)
      EXPECT_I64(sl.delays[0], cases[i].want_ms, cases[i].value);
    else if (sl.delays[0] < 0 || sl.delays[0] > BASE_MS)
      fail_msg("%s: delay %lld outside [0, %d]", cases[i].value, (long long)sl.delays[0], BASE_MS);
    EXPECT_I64(tryon_http_call_response(sl.call)->attempts, 2, cases[i].value);
    tryon_http_call_free(sl.call);
  }
}

/* The blocking path waits out a Retry-After: 1 and then succeeds. */
static void test_http__perform_waits_retry_after(void **state) {
  char url[96];
  url_for(url, sizeof url, "/wait");
  act acts[] = {{.kind = A_STATUS, .status = 503, .retry_after = "1"}, OK_HELLO, {0}};
  route_set("/wait", acts);
  tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS};
  tryon_http_response r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_perform(&req, &r, &err), TRYON_OK, &err, "perform");
  EXPECT_I64(r.attempts, 2, "attempts");
  EXPECT_I64(route_hits("/wait"), 2, "hits");
  assert_string_equal(r.body.data, "hello");
  tryon_http_response_release(&r);
}

/* Several calls share one multi, each with its own script and its own delays. */
static void test_http__async_calls_share_a_multi(void **state) {
  static const struct {
    const char *path;
    act acts[MAX_ACTS];
    tryon_status want;
    int attempts;
  } cases[] = {
      {"/m0", {S(503), OK_HELLO}, TRYON_OK, 2},
      {"/m1", {{.kind = A_STATUS, .status = 429, .retry_after = "1"}, OK_HELLO}, TRYON_OK, 2},
      {"/m2", {S(400)}, TRYON_E_UPSTREAM, 1},
      {"/m3", {{.kind = A_CLOSE}, S(500), OK_HELLO}, TRYON_OK, 3},
      {"/m4", {OK_HELLO}, TRYON_OK, 1},
  };
  slot s[ARRAY_LEN(cases)];
  memset(s, 0, sizeof s);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char url[96];
    tryon_err err;
    tryon_err_clear(&err);
    url_for(url, sizeof url, cases[i].path);
    route_set(cases[i].path, cases[i].acts);
    tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS, .user = &s[i]};
    EXPECT_STATUS(tryon_http_call_new(&req, &s[i].call, &err), TRYON_OK, &err, cases[i].path);
    assert_ptr_equal(tryon_http_call_user(s[i].call), &s[i]);
  }
  run_loop(s, ARRAY_LEN(cases), true);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err;
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_http_call_status(s[i].call, &err), cases[i].want, &err, cases[i].path);
    EXPECT_I64(tryon_http_call_response(s[i].call)->attempts, cases[i].attempts, cases[i].path);
    EXPECT_I64(route_hits(cases[i].path), cases[i].attempts, cases[i].path);
    tryon_http_call_free(s[i].call);
  }
  EXPECT_I64(s[1].ndelays, 1, "m1 delays");
  EXPECT_I64(s[1].delays[0], 1000, "m1 Retry-After");
}

/* Nothing listens on the port: three attempts, a network error, no HTTP status. */
static void test_http__connect_refused(void **state) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd); /* the port is now (almost certainly) closed */
  char url[96];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
  for (int async = 0; async < 2; async++) {
    tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS};
    tryon_http_response r;
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = async ? run_async(&req, &r, &err, NULL) : tryon_http_perform(&req, &r, &err);
    EXPECT_STATUS(st, TRYON_E_NETWORK, &err, async ? "async" : "blocking");
    EXPECT_I64(r.attempts, 3, "attempts");
    EXPECT_I64(r.status, 0, "status");
    EXPECT_I64(err.http_status, 0, "err http status");
    assert_false(r.sent); /* nothing left: a POST could safely go again */
    tryon_http_response_release(&r);
  }
}

/* --------------------------------------------------------------- request shape */

static cJSON *echo(const tryon_http_request *req_in, const char *path) {
  char url[128];
  tryon_http_request req = *req_in;
  tryon_http_response r;
  tryon_err err;
  cJSON *doc = NULL;
  act acts[] = {{.kind = A_ECHO}, {0}};
  route_set(path, acts);
  url_for(url, sizeof url, path);
  if (req.url != NULL) {
    /* the case gives a query string */
    size_t n = strlen(url);
    snprintf(url + n, sizeof url - n, "%s", req.url);
  }
  req.url = url;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_json(&req, &r, &doc, &err), TRYON_OK, &err, path);
  assert_non_null(doc);
  assert_string_equal(r.content_type, "application/json; charset=utf-8");
  assert_true(r.sent); /* an answered request did leave */
  tryon_http_response_release(&r);
  return doc;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "(missing)";
}

static void test_http__request_shape(void **state) {
  static const char *const hdrs[] = {"X-Test: yes", NULL};
  static const struct {
    const char *name;
    tryon_http_request req; /* .url: a query string to append, or NULL */
    const char *method, *body, *ct, *ua, *x_test, *q;
  } cases[] = {
      {"plain GET", {0}, "GET", "", "", "tryon/", "", ""},
      {"GET with query", {.url = "?q=abc"}, "GET", "", "", "tryon/", "", "abc"},
      {"POST body",
       {.method = "POST", .body = "a=1", .body_len = 3, .content_type = "text/plain"},
       "POST",
       "a=1",
       "text/plain",
       "tryon/",
       "",
       ""},
      {"POST without body",
       {.method = "POST"},
       "POST",
       "",
       "application/x-www-form-urlencoded",
       "tryon/",
       "",
       ""},
      {"PUT body",
       {.method = "PUT", .body = "xyz", .body_len = 3, .content_type = "application/octet-stream"},
       "PUT",
       "xyz",
       "application/octet-stream",
       "tryon/",
       "",
       ""},
      {"DELETE", {.method = "DELETE"}, "DELETE", "", "", "tryon/", "", ""},
      {"headers and user agent",
       {.headers = hdrs, .user_agent = "probe/1"},
       "GET",
       "",
       "",
       "probe/1",
       "yes",
       ""},
      {"binary body keeps its length",
       {.method = "POST", .body = "abcd", .body_len = 2},
       "POST",
       "ab",
       "application/x-www-form-urlencoded",
       "tryon/",
       "",
       ""},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char path[32];
    snprintf(path, sizeof path, "/echo%zu", i);
    cJSON *doc = echo(&cases[i].req, path);
    const char *n = cases[i].name;
    if (strcmp(jstr(doc, "method"), cases[i].method) != 0 ||
        strcmp(jstr(doc, "body"), cases[i].body) != 0 ||
        strcmp(jstr(doc, "ct"), cases[i].ct) != 0 ||
        strncmp(jstr(doc, "ua"), cases[i].ua, strlen(cases[i].ua)) != 0 ||
        strcmp(jstr(doc, "x_test"), cases[i].x_test) != 0 ||
        strcmp(jstr(doc, "q"), cases[i].q) != 0 || strcmp(jstr(doc, "expect"), "") != 0) {
      char seen[512];
      char *text = cJSON_PrintUnformatted(doc);
      snprintf(seen, sizeof seen, "%s", text != NULL ? text : "?");
      free(text);
      cJSON_Delete(doc);
      fail_msg("%s: the server saw %s", n, seen);
    }
    cJSON_Delete(doc);
  }
}

static void test_http__json_in_and_out(void **state) {
  cJSON *in = cJSON_CreateObject();
  cJSON_AddStringToObject(in, "prompt", "a red coat");
  cJSON_AddNumberToObject(in, "n", 2);
  tryon_http_request req = {.method = "POST", .json = in};
  cJSON *doc = echo(&req, "/json");
  assert_string_equal(jstr(doc, "ct"), "application/json");
  assert_string_equal(jstr(doc, "accept"), "application/json");
  cJSON *sent = cJSON_Parse(jstr(doc, "body"));
  assert_non_null(sent);
  assert_true(cJSON_Compare(sent, in, 1));
  cJSON_Delete(sent);
  cJSON_Delete(doc);
  cJSON_Delete(in);
}

/* Answers that are not JSON, and error answers whose JSON is still handed over. */
static void test_http__json_answers(void **state) {
  static const struct {
    const char *name;
    act a;
    tryon_status want;
    int want_http;
    bool want_doc;
  } cases[] = {
      {"200 text",
       {.kind = A_STATUS, .status = 200, .body = "hello"},
       TRYON_E_UPSTREAM,
       200,
       false},
      {"200 empty", {.kind = A_STATUS, .status = 200, .body = ""}, TRYON_E_UPSTREAM, 200, false},
      {"200 trailing bytes",
       {.kind = A_STATUS, .status = 200, .body = "{} x"},
       TRYON_E_UPSTREAM,
       200,
       false},
      {"200 JSON",
       {.kind = A_STATUS, .status = 200, .body = "{\"ok\":true}\n"},
       TRYON_OK,
       200,
       true},
      {"400 JSON",
       {.kind = A_STATUS, .status = 400, .body = "{\"code\":\"bad\"}"},
       TRYON_E_UPSTREAM,
       400,
       true},
      {"403 text",
       {.kind = A_STATUS, .status = 403, .body = "error code: 1010"},
       TRYON_E_UPSTREAM,
       403,
       false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char path[32], url[96];
    snprintf(path, sizeof path, "/ja%zu", i);
    url_for(url, sizeof url, path);
    act acts[] = {cases[i].a, {0}};
    route_set(path, acts);
    tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS};
    tryon_http_response r;
    tryon_err err;
    cJSON *doc = (cJSON *)&err; /* must be overwritten */
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_http_json(&req, &r, &doc, &err), cases[i].want, &err, cases[i].name);
    EXPECT_I64(err.http_status, cases[i].want_http, cases[i].name);
    if ((doc != NULL) != cases[i].want_doc)
      fail_msg("%s: document %s", cases[i].name, doc != NULL ? "present" : "missing");
    cJSON_Delete(doc);
    tryon_http_response_release(&r);
  }
}

/* kie.ai's file-stream upload: fields file, uploadPath, fileName. */
static void test_http__multipart_form(void **state) {
  static const char photo[] = "\xff\xd8\xff photo bytes";
  const tryon_http_part parts[] = {
      {.name = "file",
       .data = photo,
       .len = sizeof photo - 1,
       .filename = "a.jpg",
       .content_type = "image/jpeg"},
      {.name = "uploadPath", .data = "tryon/in", .len = TRYON_HTTP_ZERO_TERMINATED},
      {.name = "fileName", .data = "a.jpg", .len = TRYON_HTTP_ZERO_TERMINATED},
  };
  char url[96];
  url_for(url, sizeof url, "/upload");
  act acts[] = {{.kind = A_ECHO}, {0}};
  route_set("/upload", acts);
  tryon_http_request req = {.method = "POST", .url = url, .parts = parts, .nparts = 3};
  tryon_http_response r;
  tryon_err err;
  cJSON *doc = NULL;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_json(&req, &r, &doc, &err), TRYON_OK, &err, "upload");
  assert_non_null(doc);
  assert_string_equal(jstr(doc, "method"), "POST");
  assert_true(strncmp(jstr(doc, "ct"), "multipart/form-data; boundary=", 30) == 0);
  const char *body = jstr(doc, "body");
  static const char *const want[] = {
      "name=\"file\"; filename=\"a.jpg\"",
      "Content-Type: image/jpeg",
      "photo bytes",
      "name=\"uploadPath\"",
      "tryon/in",
      "name=\"fileName\"",
  };
  /* The JPEG's first bytes are not UTF-8, so cJSON may or may not keep them; the rest
   * of the form is text. */
  for (size_t i = 0; i < ARRAY_LEN(want); i++)
    if (strstr(body, want[i]) == NULL)
      fail_msg("form lacks %s: %s", want[i], body);
  cJSON_Delete(doc);
  tryon_http_response_release(&r);
}

/* ------------------------------------------------------------------ validation */

static void test_http__bad_requests_refused(void **state) {
  static const char *const no_colon[] = {"X-Test yes", NULL};
  static const char *const crlf[] = {"X-Test: a\r\nX-Evil: b", NULL};
  static const char *const empty_name[] = {": v", NULL};
  static const tryon_http_part nameless[] = {{.data = "x", .len = 1}};
  static const tryon_http_part one[] = {{.name = "a", .data = "x", .len = 1}};
  static const struct {
    const char *name;
    tryon_http_request req;
  } cases[] = {
      {"no URL", {0}},
      {"ftp URL", {.url = "ftp://127.0.0.1/x"}},
      {"file URL", {.url = "file:///etc/passwd"}},
      {"not a URL", {.url = "not a url"}},
      {"no host", {.url = "http://"}},
      {"CRLF in URL", {.url = "http://127.0.0.1/\r\nX: y"}},
      {"lower-case method", {.url = "http://127.0.0.1/", .method = "get"}},
      {"empty method", {.url = "http://127.0.0.1/", .method = ""}},
      {"method with space", {.url = "http://127.0.0.1/", .method = "GET X"}},
      {"header without colon", {.url = "http://127.0.0.1/", .headers = no_colon}},
      {"header with CRLF", {.url = "http://127.0.0.1/", .headers = crlf}},
      {"header without name", {.url = "http://127.0.0.1/", .headers = empty_name}},
      {"body and parts", {.url = "http://127.0.0.1/", .body = "x", .parts = one, .nparts = 1}},
      {"parts missing", {.url = "http://127.0.0.1/", .nparts = 1}},
      {"part without name", {.url = "http://127.0.0.1/", .parts = nameless, .nparts = 1}},
      {"too many attempts", {.url = "http://127.0.0.1/", .max_attempts = 11}},
      {"negative attempts", {.url = "http://127.0.0.1/", .max_attempts = -1}},
      {"negative timeout", {.url = "http://127.0.0.1/", .timeout_ms = -1}},
      {"negative backoff", {.url = "http://127.0.0.1/", .backoff_base_ms = -5}},
      {"CRLF in content type",
       {.url = "http://127.0.0.1/", .body = "x", .body_len = 1, .content_type = "a\r\nb: c"}},
      {"CRLF in user agent", {.url = "http://127.0.0.1/", .user_agent = "a\nb"}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    static char junk;
    tryon_http_call *call = (tryon_http_call *)(void *)&junk; /* must be set to NULL */
    tryon_err err;
    tryon_err_clear(&err);
    EXPECT_STATUS(tryon_http_call_new(&cases[i].req, &call, &err), TRYON_E_INVALID, &err,
                  cases[i].name);
    assert_null(call);
    tryon_http_response r;
    EXPECT_STATUS(tryon_http_perform(&cases[i].req, &r, &err), TRYON_E_INVALID, &err,
                  cases[i].name);
    EXPECT_I64(r.attempts, 0, cases[i].name);
    tryon_http_response_release(&r);
  }
  tryon_err err;
  tryon_http_call *call = NULL;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_call_new(NULL, &call, &err), TRYON_E_INVALID, &err, "NULL request");
  tryon_http_request ok = {.url = "http://127.0.0.1/"};
  EXPECT_STATUS(tryon_http_call_new(&ok, NULL, &err), TRYON_E_INVALID, &err, "NULL out");
  /* A call that has not run has no verdict. */
  EXPECT_STATUS(tryon_http_call_new(&ok, &call, &err), TRYON_OK, &err, "ok");
  EXPECT_STATUS(tryon_http_call_status(call, &err), TRYON_E_INVALID, &err, "no attempt yet");
  tryon_http_call_free(call);
  tryon_http_call_free(NULL);
  assert_null(tryon_http_call_easy(NULL));
}

/* ------------------------------------------------------------------ logging */

/* One line per attempt; the query string and the headers never reach it. */
static void test_http__one_log_line_per_attempt(void **state) {
  static const char *const hdrs[] = {"Authorization: Bearer TOPSECRET", NULL};
  char url[128];
  url_for(url, sizeof url, "/logme?key=s3cr3t");
  act acts[] = {S(503), S(502), OK_HELLO, {0}};
  route_set("/logme", acts);
  tryon_http_request req = {.method = "POST",
                            .url = url,
                            .headers = hdrs,
                            .body = "BODYSECRET",
                            .body_len = 10,
                            .backoff_base_ms = BASE_MS,
                            .log_label = "kie"};
  tryon_http_response r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_perform(&req, &r, &err), TRYON_OK, &err, "perform");
  tryon_http_response_release(&r);
  const char *l = logs.data;
  EXPECT_I64(count_substr(l, "\n"), 3, l);
  EXPECT_I64(count_substr(l, "\"msg\":\"http request\""), 3, l);
  EXPECT_I64(count_substr(l, "\"label\":\"kie\""), 3, l);
  EXPECT_I64(count_substr(l, "\"method\":\"POST\""), 3, l);
  EXPECT_I64(count_substr(l, "\"host\":\"127.0.0.1\""), 3, l);
  EXPECT_I64(count_substr(l, "\"path\":\"/logme\""), 3, l);
  EXPECT_I64(count_substr(l, "\"attempts\":3"), 3, l);
  EXPECT_I64(count_substr(l, "\"ms\":"), 3, l);
  static const char *const once[] = {"\"attempt\":1,",    "\"attempt\":2,", "\"attempt\":3,",
                                     "\"status\":503",    "\"status\":502", "\"status\":200",
                                     "\"level\":\"info\""};
  for (size_t i = 0; i < ARRAY_LEN(once); i++)
    EXPECT_I64(count_substr(l, once[i]), 1, once[i]);
  EXPECT_I64(count_substr(l, "\"retry_in_ms\":"), 2, l);
  EXPECT_I64(count_substr(l, "\"error\":\"upstream_error\""), 2, l);
  static const char *const never[] = {"s3cr3t", "TOPSECRET", "BODYSECRET", "key=", "?"};
  for (size_t i = 0; i < ARRAY_LEN(never); i++)
    if (strstr(l, never[i]) != NULL)
      fail_msg("the log shows %s: %s", never[i], l);
}

/* An error message names the place, never the query string. */
static void test_http__error_message_has_no_query(void **state) {
  char url[128];
  url_for(url, sizeof url, "/bot123:SECRETTOKEN/sendMessage?chat=42");
  act acts[] = {S(400), {0}};
  route_set("/bot123:SECRETTOKEN/sendMessage", acts);
  tryon_http_request req = {.url = url, .log_label = "telegram"};
  tryon_http_response r;
  tryon_err err;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_perform(&req, &r, &err), TRYON_E_UPSTREAM, &err, "perform");
  tryon_http_response_release(&r);
  EXPECT_I64(err.http_status, 400, "http status");
  assert_non_null(strstr(err.message, "telegram GET 127.0.0.1/***/sendMessage: HTTP 400"));
  assert_null(strstr(err.message, "SECRETTOKEN"));
  assert_null(strstr(err.message, "chat"));
  assert_null(strstr(logs.data, "SECRETTOKEN"));
  assert_non_null(strstr(logs.data, "\"path\":\"/***/sendMessage\""));
}

/* ------------------------------------------------------------------ retry hints */

/* A provider's "retry this one" in a 200 answer, within the attempts left. */
static void test_http__retry_hint(void **state) {
  char url[96];
  url_for(url, sizeof url, "/hint");
  act acts[] = {{.kind = A_STATUS, .status = 200, .body = "{\"code\":455}"}, OK_HELLO, {0}};
  route_set("/hint", acts);
  tryon_http_request req = {.url = url, .backoff_base_ms = BASE_MS, .max_attempts = 2};
  slot sl = {0};
  tryon_err err;
  int64_t delay = -1;
  tryon_err_clear(&err);
  EXPECT_STATUS(tryon_http_call_new(&req, &sl.call, &err), TRYON_OK, &err, "new");
  /* Before any attempt there is nothing to retry. */
  EXPECT_I64(tryon_http_call_retry_hint(sl.call, 7, &delay), TRYON_HTTP_DONE, "before");
  run_loop(&sl, 1, false);
  EXPECT_STATUS(tryon_http_call_status(sl.call, &err), TRYON_OK, &err, "first");
  assert_string_equal(tryon_http_call_response(sl.call)->body.data, "{\"code\":455}");
  /* Longer than a call waits: the job's backoff takes over. */
  EXPECT_I64(tryon_http_call_retry_hint(sl.call, TRYON_HTTP_RETRY_AFTER_CAP_MS + 1, &delay),
             TRYON_HTTP_DONE, "too long");
  EXPECT_I64(delay, 0, "too long delay");
  assert_null(tryon_http_call_easy(sl.call));
  /* The hint, longer than the backoff (at most BASE_MS), is the delay. */
  EXPECT_I64(tryon_http_call_retry_hint(sl.call, 7, &delay), TRYON_HTTP_RETRY, "hint");
  EXPECT_I64(delay, 7, "hint delay");
  run_loop(&sl, 1, false);
  EXPECT_STATUS(tryon_http_call_status(sl.call, &err), TRYON_OK, &err, "second");
  assert_string_equal(tryon_http_call_response(sl.call)->body.data, "hello");
  EXPECT_I64(tryon_http_call_response(sl.call)->attempts, 2, "attempts");
  /* No attempt left. */
  EXPECT_I64(tryon_http_call_retry_hint(sl.call, 0, &delay), TRYON_HTTP_DONE, "exhausted");
  EXPECT_I64(route_hits("/hint"), 2, "hits");
  tryon_http_call_free(sl.call);
}

/* ------------------------------------------------------------------ pure decisions */

static void test_http__retry_after_parse(void **state) {
  const int64_t date_ms = 1445412480LL * 1000; /* Wed, 21 Oct 2015 07:28:00 GMT */
  static const struct {
    const char *v;
    int64_t now_offset_ms; /* now = date_ms + this */
    int64_t want;
  } cases[] = {
      {"120", 0, 120000},
      {" 3 \r\n", 0, 3000},
      {"0", 0, 0},
      {"86400", 0, 86400000},
      {"99999999999999999999", 0, 86400000},
      {"", 0, -1},
      {"  ", 0, -1},
      {"abc", 0, -1},
      {"-5", 0, -1},
      {"1.5", 0, -1},
      {"Wed, 21 Oct 2015 07:28:00 GMT", -5000, 5000},
      {"Wed, 21 Oct 2015 07:28:00 GMT", -120000, 120000},
      {"Wed, 21 Oct 2015 07:28:00 GMT", 0, 0},
      {"Wed, 21 Oct 2015 07:28:00 GMT", 3600000, 0},
      {" Wed, 21 Oct 2015 07:28:00 GMT\r\n", -2000, 2000},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++)
    EXPECT_I64(tryon__http_parse_retry_after(cases[i].v, strlen(cases[i].v),
                                             date_ms + cases[i].now_offset_ms),
               cases[i].want, cases[i].v);
}

static void test_http__failure_classification(void **state) {
  static const struct {
    CURLcode code;
    int retry;
    tryon_status st;
  } codes[] = {
      {CURLE_COULDNT_RESOLVE_HOST, 1, TRYON_E_NETWORK},
      {CURLE_COULDNT_CONNECT, 1, TRYON_E_NETWORK},
      {CURLE_OPERATION_TIMEDOUT, 1, TRYON_E_TIMEOUT},
      {CURLE_SEND_ERROR, 1, TRYON_E_NETWORK},
      {CURLE_RECV_ERROR, 1, TRYON_E_NETWORK},
      {CURLE_GOT_NOTHING, 1, TRYON_E_NETWORK},
      {CURLE_PARTIAL_FILE, 1, TRYON_E_NETWORK},
      {CURLE_SSL_CONNECT_ERROR, 1, TRYON_E_NETWORK},
      {CURLE_PEER_FAILED_VERIFICATION, 0, TRYON_E_NETWORK},
      {CURLE_SSL_CACERT_BADFILE, 0, TRYON_E_NETWORK},
      {CURLE_URL_MALFORMAT, 0, TRYON_E_INVALID},
      {CURLE_UNSUPPORTED_PROTOCOL, 0, TRYON_E_NETWORK},
      {CURLE_TOO_MANY_REDIRECTS, 0, TRYON_E_NETWORK},
      {CURLE_FILESIZE_EXCEEDED, 0, TRYON_E_TOO_LARGE},
      {CURLE_WRITE_ERROR, 0, TRYON_E_NETWORK},
      {CURLE_OUT_OF_MEMORY, 0, TRYON_E_NOMEM},
      {CURLE_OK, 0, TRYON_OK},
  };
  for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
    const char *name = curl_easy_strerror(codes[i].code);
    EXPECT_I64(tryon__http_code_retryable(codes[i].code), codes[i].retry, name);
    EXPECT_I64(tryon__http_code_status(codes[i].code), codes[i].st, name);
  }
  static const struct {
    long status;
    int retry;
  } statuses[] = {{200, 0}, {204, 0}, {301, 0}, {400, 0}, {401, 0}, {402, 0}, {403, 0}, {404, 0},
                  {407, 0}, {408, 1}, {409, 0}, {422, 0}, {429, 1}, {433, 0}, {455, 0}, {499, 0},
                  {500, 1}, {502, 1}, {503, 1}, {504, 1}, {599, 1}, {600, 0}, {0, 0}};
  for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
    char name[16];
    snprintf(name, sizeof name, "%ld", statuses[i].status);
    EXPECT_I64(tryon__http_status_retryable(statuses[i].status), statuses[i].retry, name);
  }
}

static void test_http__backoff_full_jitter(void **state) {
  static const struct {
    int64_t base;
    int attempt;
    int64_t ceiling;
  } cases[] = {
      {500, 1, 500},    {500, 2, 1000},     {500, 3, 2000}, {500, 6, 16000},   {500, 7, 30000},
      {500, 30, 30000}, {500, 1000, 30000}, {4, 1, 4},      {40000, 1, 30000}, {0, 1, 0},
  };
  uint64_t rng = tryon__http_seed();
  assert_true(rng != 0);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char name[64];
    int64_t lo = INT64_MAX, hi = -1;
    snprintf(name, sizeof name, "base %lld attempt %d", (long long)cases[i].base, cases[i].attempt);
    for (int k = 0; k < 2000; k++) {
      int64_t d = tryon__http_backoff_ms(&rng, cases[i].base, cases[i].attempt);
      if (d < 0 || d > cases[i].ceiling)
        fail_msg("%s: %lld outside [0, %lld]", name, (long long)d, (long long)cases[i].ceiling);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
    }
    /* Full jitter spreads over the whole range (2000 draws: the odds of missing either
     * quarter are nil). */
    if (lo > cases[i].ceiling / 4 || hi < cases[i].ceiling - cases[i].ceiling / 4)
      fail_msg("%s: draws span only [%lld, %lld]", name, (long long)lo, (long long)hi);
  }
}

static void test_http__log_path_masks(void **state) {
  static const struct {
    const char *path;
    size_t cap;
    const char *want;
  } cases[] = {
      {"/api/v1/jobs/createTask", 64, "/api/v1/jobs/createTask"},
      {"/bot123456:AAE-secret/sendMessage", 64, "/***/sendMessage"},
      {"/file/bot1%3Aabc/photos/x.jpg", 64, "/file/***/photos/x.jpg"},
      {"/file/bot1%3aabc/x", 64, "/file/***/x"},
      {"/v3/payments?id=1", 64, "/v3/payments"},
      {"/a#frag", 64, "/a"},
      {"/", 64, "/"},
      {"", 64, ""},
      {"/abcdefghij", 6, "/abcd"},
      {"/x:y", 3, "/*"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[64];
    tryon__http_log_path(cases[i].path, out, cases[i].cap);
    if (strcmp(out, cases[i].want) != 0)
      fail_msg("%s: '%s', want '%s'", cases[i].path, out, cases[i].want);
  }
}

static void test_http__response_release_twice(void **state) {
  tryon_http_response r;
  memset(&r, 0, sizeof r);
  tryon_http_response_release(&r);
  tryon_buf_init(&r.body, 10);
  assert_int_equal(tryon_buf_append_str(&r.body, "abc"), TRYON_OK);
  tryon_http_response_release(&r);
  tryon_http_response_release(&r);
  tryon_http_response_release(NULL);
  assert_int_equal(r.attempts, 0);
}

static void test_http__public_only_refuses_inward_addresses(void **state) {
  (void)state;
  static const struct {
    const char *addr;
    bool pub;
  } v4[] = {{"8.8.8.8", true},
            {"93.184.216.34", true},
            {"127.0.0.1", false},
            {"10.1.2.3", false},
            {"172.16.0.1", false},
            {"172.31.255.255", false},
            {"172.32.0.1", true},
            {"192.168.1.1", false},
            {"169.254.169.254", false},
            {"100.64.0.1", false},
            {"100.128.0.1", true},
            {"0.0.0.0", false},
            {"224.0.0.1", false},
            {"255.255.255.255", false},
            /* IANA special-purpose ranges (issue 12, item 7) */
            {"198.18.0.1", false},
            {"198.19.255.255", false},
            {"198.20.0.1", true},
            {"192.0.0.8", false},
            {"192.0.1.1", true},
            {"192.0.2.1", false},
            {"198.51.100.7", false},
            {"203.0.113.9", false},
            {"240.0.0.1", false},
            {"11.0.0.1", true},
            {"9.255.255.255", true}};
  for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, v4[i].addr, &a.sin_addr), 1);
    if (tryon__http_address_public((struct sockaddr *)&a) != v4[i].pub)
      fail_msg("%s judged %s", v4[i].addr, v4[i].pub ? "inward" : "public");
  }
  static const struct {
    const char *addr;
    bool pub;
  } v6[] = {{"2001:4860:4860::8888", true},
            {"::1", false},
            {"::", false},
            {"fd00::1", false},
            {"fe80::1", false},
            {"ff02::1", false},
            {"::ffff:127.0.0.1", false},
            {"::ffff:8.8.8.8", true},
            /* IPv4 behind an IPv6 spelling, and special-purpose ranges (item 7) */
            {"64:ff9b::7f00:1", false},
            {"64:ff9b::808:808", false},
            {"64:ff9b:1::1", false},
            {"2002:7f00:1::1", false},
            {"2002:c0a8:101::1", false},
            {"::127.0.0.1", false},
            {"::8.8.8.8", false},
            {"fec0::1", false},
            {"feff::1", false},
            {"2001::1", false},
            {"2001:db8::1", false},
            {"100::1", false},
            {"2001:4860::1", true},
            {"2a00:1450:4001::200e", true},
            {"64:ff9c::1", true},
            {"::ffff:0:7f00:1", false},
            {"2001:20::1", false},
            {"3fff::1", false},
            {"5f00::1", false}};
  for (size_t i = 0; i < sizeof v6 / sizeof v6[0]; i++) {
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, v6[i].addr, &a.sin6_addr), 1);
    if (tryon__http_address_public((struct sockaddr *)&a) != v6[i].pub)
      fail_msg("%s judged %s", v6[i].addr, v6[i].pub ? "inward" : "public");
  }
  /* A request to our own loopback server is refused before anything is sent. */
  char url[96];
  static const act hello[] = {OK_HELLO, OK_HELLO, {0}};
  url_for(url, sizeof url, "/public-only");
  route_set("/public-only", hello);
  tryon_http_request req = {.url = url, .public_only = true, .max_attempts = 1};
  tryon_http_response r;
  tryon_err err;
  EXPECT_STATUS(tryon_http_perform(&req, &r, &err), TRYON_E_NETWORK, &err, "loopback refused");
  assert_false(r.sent);
  tryon_http_response_release(&r);
  req.public_only = false;
  EXPECT_STATUS(tryon_http_perform(&req, &r, &err), TRYON_OK, &err, "allowed without the flag");
  tryon_http_response_release(&r);
}

/* ------------------------------------------------------------ verdicts (section 6) */

typedef struct transport_case {
  tryon_status http_st;
  bool have_resp;
  long status;
  const char *body;
  int64_t retry_after;
  tryon_verdict_by by;
  tryon_verdict_next next;
  const char *code;
  int64_t want_retry_after;
  const char *detail_has; /* NULL: not checked */
} transport_case;

static const transport_case transport_cases[] = {
    /* The transfer decides: its own words, no Retry-After. */
    {TRYON_E_TIMEOUT, true, 0, "", 5000, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_RETRY, "timeout",
     0, "timed out"},
    {TRYON_E_NETWORK, false, 0, NULL, 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_RETRY, "network",
     0, NULL},
    {TRYON_E_NOMEM, true, 0, "", 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_RETRY, "internal", 0,
     "memory"},
    {TRYON_E_TOO_LARGE, true, 200, "", 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_FINAL,
     "bad_answer", 0, "ceiling"},
    {TRYON_E_INVALID, false, 0, NULL, 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_FINAL, "internal",
     0, "not sent"},
    {TRYON_OK, false, 0, NULL, 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_RETRY, "network", 0,
     "no HTTP answer"},
    {TRYON_E_UPSTREAM, true, 0, "", 0, TRYON_VERDICT_BY_TRANSFER, TRYON_VERDICT_RETRY, "network", 0,
     NULL},
    /* The HTTP status decides (a default the provider may refine). */
    {TRYON_E_UPSTREAM, true, 401, "nope", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL,
     "unauthorized", 0, "HTTP 401: nope"},
    {TRYON_E_UPSTREAM, true, 402, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL,
     "provider_out_of_credits", 0, NULL},
    {TRYON_E_UPSTREAM, true, 403, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL, "forbidden",
     0, NULL},
    {TRYON_E_UPSTREAM, true, 404, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL, "not_found",
     0, NULL},
    {TRYON_E_UPSTREAM, true, 408, "", 2000, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_RETRY, "timeout",
     2000, NULL},
    {TRYON_E_UPSTREAM, true, 429, "slow down", 90000, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_RETRY,
     "rate_limited", 90000, "slow down"},
    {TRYON_E_UPSTREAM, true, 500, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_RETRY,
     "server_error", 0, NULL},
    {TRYON_E_UPSTREAM, true, 503, "<html>\nbusy</html>", 120000, TRYON_VERDICT_BY_STATUS,
     TRYON_VERDICT_RETRY, "server_error", 120000, "<html> busy"},
    {TRYON_E_UPSTREAM, true, 400, "", 7000, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL,
     "bad_request", 0, NULL},
    {TRYON_E_UPSTREAM, true, 418, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL,
     "bad_request", 0, "HTTP 418"},
    {TRYON_E_UPSTREAM, true, 301, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL, "bad_answer",
     0, "unexpected HTTP 301"},
    {TRYON_OK, true, 302, "", 0, TRYON_VERDICT_BY_STATUS, TRYON_VERDICT_FINAL, "bad_answer", 0,
     NULL},
    /* A 2xx: the body is the provider's to read. */
    {TRYON_OK, true, 200, "{}", 3000, TRYON_VERDICT_BY_BODY, TRYON_VERDICT_OK, "", 0, NULL},
    {TRYON_OK, true, 204, "", 0, TRYON_VERDICT_BY_BODY, TRYON_VERDICT_OK, "", 0, NULL},
};

static void test_http__verdict_from_transport(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(transport_cases); i++) {
    const transport_case *c = &transport_cases[i];
    tryon_http_response resp;
    tryon_verdict v;
    memset(&resp, 0, sizeof resp);
    tryon_buf_init(&resp.body, 1024);
    if (c->body != NULL)
      assert_int_equal(tryon_buf_append_str(&resp.body, c->body), TRYON_OK);
    resp.status = c->status;
    resp.retry_after_ms = c->retry_after;
    memset(&v, 0xAB, sizeof v);
    tryon_verdict_by by = tryon_verdict_from_transport(c->have_resp ? &resp : NULL, c->http_st, &v);
    if (by != c->by || v.next != c->next || strcmp(v.code, c->code) != 0 ||
        v.retry_after_ms != c->want_retry_after ||
        v.http_status != (c->have_resp ? c->status : 0) || v.provider_code != 0)
      fail_msg("case %zu (%s %ld): by %d next %d code \"%s\" retry %lld http %ld", i,
               tryon_status_code(c->http_st), c->status, (int)by, (int)v.next, v.code,
               (long long)v.retry_after_ms, v.http_status);
    if (c->detail_has != NULL && strstr(v.detail, c->detail_has) == NULL)
      fail_msg("case %zu: detail \"%s\" lacks \"%s\"", i, v.detail, c->detail_has);
    tryon_http_response_release(&resp);
  }
}

static void test_http__verdict_setters(void **state) {
  (void)state;
  tryon_verdict v;
  char cut[6];
  memset(&v, 0, sizeof v);
  v.retry_after_ms = 42;
  v.provider_code = 455;
  /* set: next, code and detail; the rest stays. */
  assert_false(tryon_verdict_set(&v, TRYON_VERDICT_RETRY, "maintenance", "down %d\tmin", 5));
  assert_int_equal(v.next, TRYON_VERDICT_RETRY);
  assert_string_equal(v.code, "maintenance");
  assert_string_equal(v.detail, "down 5 min");
  assert_int_equal(v.retry_after_ms, 42);
  assert_int_equal(v.provider_code, 455);
  /* NULL fmt keeps the detail; detail alone replaces it. */
  assert_true(tryon_verdict_set(&v, TRYON_VERDICT_OK, "", NULL));
  assert_string_equal(v.detail, "down 5 min");
  tryon_verdict_detail(&v, "HTTP %d: %s", 403, "no");
  assert_string_equal(v.detail, "HTTP 403: no");
  /* A code longer than the field is cut, never overflows. */
  tryon_verdict_set(&v, TRYON_VERDICT_FINAL,
                    "a_very_long_reason_code_that_does_not_fit_in_forty_bytes", NULL);
  assert_int_equal(strlen(v.code), TRYON_VERDICT_CODE_MAX - 1);
  /* Text copies: control characters blanked, never a split character. */
  tryon_verdict_copy_text(cut, sizeof cut, "ab\ncd\xC3\xA9", 7);
  assert_string_equal(cut, "ab cd");
  tryon_verdict_copy_text(cut, sizeof cut, "abc\xC3\xA9xyz", 8);
  assert_string_equal(cut, "abc\xC3\xA9");
  tryon_verdict_copy_text(cut, sizeof cut, NULL, 0);
  assert_string_equal(cut, "");
  assert_string_equal(tryon_verdict_next_name(TRYON_VERDICT_OK), "ok");
  assert_string_equal(tryon_verdict_next_name(TRYON_VERDICT_RETRY), "retry");
  assert_string_equal(tryon_verdict_next_name(TRYON_VERDICT_FINAL), "final");
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_http__retry_table_blocking, setup),
      cmocka_unit_test_setup(test_http__retry_table_async, setup),
      cmocka_unit_test_setup(test_http__retry_after_is_the_delay, setup),
      cmocka_unit_test_setup(test_http__perform_waits_retry_after, setup),
      cmocka_unit_test_setup(test_http__async_calls_share_a_multi, setup),
      cmocka_unit_test_setup(test_http__connect_refused, setup),
      cmocka_unit_test_setup(test_http__public_only_refuses_inward_addresses, setup),
      cmocka_unit_test_setup(test_http__request_shape, setup),
      cmocka_unit_test_setup(test_http__json_in_and_out, setup),
      cmocka_unit_test_setup(test_http__json_answers, setup),
      cmocka_unit_test_setup(test_http__multipart_form, setup),
      cmocka_unit_test_setup(test_http__bad_requests_refused, setup),
      cmocka_unit_test_setup(test_http__one_log_line_per_attempt, setup),
      cmocka_unit_test_setup(test_http__error_message_has_no_query, setup),
      cmocka_unit_test_setup(test_http__retry_hint, setup),
      cmocka_unit_test(test_http__retry_after_parse),
      cmocka_unit_test(test_http__failure_classification),
      cmocka_unit_test(test_http__backoff_full_jitter),
      cmocka_unit_test(test_http__log_path_masks),
      cmocka_unit_test(test_http__response_release_twice),
      cmocka_unit_test(test_http__verdict_from_transport),
      cmocka_unit_test(test_http__verdict_setters),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
