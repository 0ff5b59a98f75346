/*
 * fake-kie as a process (tests/fakes/CLAUDE.md): spawned on a free loopback port,
 * driven with libcurl, its callbacks received by a small libmicrohttpd listener here,
 * its result images decoded with libvips. Each test starts with POST /_fake/reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <vips/vips.h>

#include "testsupport.h"

extern char **environ;

#define API_KEY "test-kie-key-0123456789"
#define WEBHOOK_KEY "test-webhook-key-abcdef"
#define UA "tryon-test/1"
#define AUTH "Authorization: Bearer " API_KEY
#define WAIT_LIMIT_MS 30000 /* a generous ceiling for anything awaited, never asserted */

static pid_t fake_pid;
static char base[64]; /* http://127.0.0.1:<port> */

/* ------------------------------------------------------------------- HTTP client */

typedef struct reply {
  long status;
  CURLcode rc;
  char *body;
  size_t len;
  char *headers;
  size_t hlen;
  cJSON *json;
} reply;

static size_t grow(char **b, size_t *n, const char *p, size_t k) {
  char *nb = realloc(*b, *n + k + 1);
  if (nb == NULL)
    return 0;
  memcpy(nb + *n, p, k);
  *n += k;
  nb[*n] = '\0';
  *b = nb;
  return k;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  reply *r = ud;
  return grow(&r->body, &r->len, p, size * n);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  reply *r = ud;
  return grow(&r->headers, &r->hlen, p, size * n);
}

static void reply_free(reply *r) {
  free(r->body);
  free(r->headers);
  cJSON_Delete(r->json);
  memset(r, 0, sizeof *r);
}

/* One file part for multipart requests. */
typedef struct part {
  const char *name;
  const void *data;
  size_t len;
  const char *filename;
} part;

/* `path` is relative to the fake or an absolute URL. `ua` NULL: no User-Agent at all. */
static reply request(const char *method, const char *path, const char *ua, const char *const *hdrs,
                     const char *body, const part *parts, size_t nparts) {
  reply r;
  memset(&r, 0, sizeof r);
  char url[2048];
  if (strncmp(path, "http", 4) == 0)
    snprintf(url, sizeof url, "%s", path);
  else
    snprintf(url, sizeof url, "%s%s", base, path);
  CURL *c = curl_easy_init();
  struct curl_slist *hl = NULL;
  curl_mime *mime = NULL;
  for (size_t i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
    hl = curl_slist_append(hl, hdrs[i]);
  hl = curl_slist_append(hl, "Expect:");
  if (body != NULL)
    hl = curl_slist_append(hl, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (ua != NULL)
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
  if (parts != NULL) {
    mime = curl_mime_init(c);
    for (size_t i = 0; i < nparts; i++) {
      curl_mimepart *mp = curl_mime_addpart(mime);
      curl_mime_name(mp, parts[i].name);
      curl_mime_data(mp, parts[i].data, parts[i].len);
      if (parts[i].filename != NULL)
        curl_mime_filename(mp, parts[i].filename);
    }
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
  } else if (body != NULL) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  r.rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  if (r.body != NULL)
    r.json = cJSON_ParseWithLength(r.body, r.len);
  curl_mime_free(mime);
  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  if (r.rc != CURLE_OK && r.rc != CURLE_GOT_NOTHING)
    fail_msg("%s %s: %s", method, path, curl_easy_strerror(r.rc));
  return r;
}

/* An API call as the real client makes it: User-Agent and the right key. */
static reply api(const char *method, const char *path, const char *body) {
  const char *h[] = {AUTH, NULL};
  return request(method, path, UA, h, body, NULL, 0);
}

static reply control(const char *method, const char *path, const char *body) {
  return request(method, path, UA, NULL, body, NULL, 0);
}

static const cJSON *jget(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

static int jcode(const reply *r) {
  const cJSON *c = jget(r->json, "code");
  if (!cJSON_IsNumber(c))
    fail_msg("no body code in %s", r->body ? r->body : "(empty)");
  return c->valueint;
}

static const char *jstr(const cJSON *o, const char *name) {
  const cJSON *v = jget(o, name);
  if (!cJSON_IsString(v))
    fail_msg("no string %s", name);
  return v->valuestring;
}

static bool has_header(const reply *r, const char *line) {
  size_t n = strlen(line);
  for (const char *p = r->headers; p != NULL && *p; p = strchr(p, '\n')) {
    if (*p == '\n')
      p++;
    if (strncasecmp(p, line, n) == 0)
      return true;
  }
  return false;
}

static void reset_fake(void) {
  reply r = control("POST", "/_fake/reset", "{}");
  assert_int_equal(r.status, 200);
  reply_free(&r);
}

static void script(const char *json) {
  reply r = control("POST", "/_fake/script", json);
  if (r.status != 200)
    fail_msg("script %s: %ld %s", json, r.status, r.body ? r.body : "");
  reply_free(&r);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* -------------------------------------------------------------------- images */

/* A grey 300x400 PNG (caller g_free's *out). */
static void make_png(void **out, size_t *len) {
  VipsImage *black = NULL, *grey = NULL, *u8 = NULL;
  assert_int_equal(vips_black(&black, 300, 400, "bands", 3, NULL), 0);
  assert_int_equal(vips_linear1(black, &grey, 1.0, 100.0, NULL), 0);
  assert_int_equal(vips_cast_uchar(grey, &u8, NULL), 0);
  assert_int_equal(vips_pngsave_buffer(u8, out, len, NULL), 0);
  g_object_unref(u8);
  g_object_unref(grey);
  g_object_unref(black);
}

/* Decodes `data` and returns the image (caller unrefs); fails the test if it cannot. */
static VipsImage *decode(const void *data, size_t len) {
  VipsImage *img = vips_image_new_from_buffer(data, len, "", NULL);
  if (img == NULL)
    fail_msg("not a decodable image: %s", vips_error_buffer());
  return img;
}

static void expect_pixel(VipsImage *img, int x, int y, double r, double g, double b) {
  double *v = NULL;
  int n = 0;
  assert_int_equal(vips_getpoint(img, &v, &n, x, y, NULL), 0);
  assert_true(n >= 3);
  if (v[0] != r || v[1] != g || v[2] != b)
    fail_msg("pixel (%d,%d) = %g,%g,%g, want %g,%g,%g", x, y, v[0], v[1], v[2], r, g, b);
  g_free(v);
}

/* ------------------------------------------------------------- callback listener */

#define MAX_HOOKS 16

typedef struct hook {
  char timestamp[64];
  char signature[128];
  char user_agent[128];
  char *body;
} hook;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  hook hooks[MAX_HOOKS];
  int n;
  struct MHD_Daemon *d;
  int port;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

typedef struct hook_req {
  char *body;
  size_t len;
} hook_req;

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t cap) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  snprintf(out, cap, "%s", v != NULL ? v : "");
}

static enum MHD_Result on_hook(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls) {
  (void)cls, (void)url, (void)version;
  hook_req *hr = *req_cls;
  if (hr == NULL) {
    hr = calloc(1, sizeof *hr);
    if (hr == NULL)
      return MHD_NO;
    *req_cls = hr;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    if (grow(&hr->body, &hr->len, upload, *upload_size) != *upload_size)
      return MHD_NO;
    *upload_size = 0;
    return MHD_YES;
  }
  if (strcmp(method, "POST") == 0) {
    pthread_mutex_lock(&L.mu);
    if (L.n < MAX_HOOKS) {
      hook *h = &L.hooks[L.n++];
      copy_header(c, "X-Webhook-Timestamp", h->timestamp, sizeof h->timestamp);
      copy_header(c, "X-Webhook-Signature", h->signature, sizeof h->signature);
      copy_header(c, MHD_HTTP_HEADER_USER_AGENT, h->user_agent, sizeof h->user_agent);
      h->body = hr->body != NULL ? hr->body : strdup("");
      hr->body = NULL;
    }
    pthread_cond_broadcast(&L.cond);
    pthread_mutex_unlock(&L.mu);
  }
  static const char ok[] = "{\"ok\":true}";
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(ok), (void *)ok, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void on_hook_done(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  hook_req *hr = *req_cls;
  if (hr != NULL) {
    free(hr->body);
    free(hr);
  }
  *req_cls = NULL;
}

static void listener_start(void) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  L.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, on_hook, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_hook_done, NULL, MHD_OPTION_END);
  assert_non_null(L.d);
  L.port = MHD_get_daemon_info(L.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void listener_clear(void) {
  pthread_mutex_lock(&L.mu);
  for (int i = 0; i < L.n; i++)
    free(L.hooks[i].body);
  memset(L.hooks, 0, sizeof L.hooks);
  L.n = 0;
  pthread_mutex_unlock(&L.mu);
}

/* Waits until `n` callbacks arrived; fails after WAIT_LIMIT_MS. */
static void listener_wait(int n) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += WAIT_LIMIT_MS / 1000;
  pthread_mutex_lock(&L.mu);
  while (L.n < n)
    if (pthread_cond_timedwait(&L.cond, &L.mu, &dl) == ETIMEDOUT)
      break;
  int got = L.n;
  pthread_mutex_unlock(&L.mu);
  if (got < n)
    fail_msg("%d callbacks arrived, want %d", got, n);
}

/* --------------------------------------------------------------- fake lifecycle */

static int fake_start(void **state) {
  (void)state;
  const char *bin = getenv("TRYON_FAKE_KIE_BIN");
  if (bin == NULL)
    fail_msg("TRYON_FAKE_KIE_BIN is not set: run through ctest");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (VIPS_INIT("test_fake_kie"))
    fail_msg("cannot start libvips");
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char *argv[] = {(char *)bin, "--port",        "0",         "--api-key",
                  API_KEY,     "--webhook-key", WEBHOOK_KEY, NULL};
  if (posix_spawn(&fake_pid, bin, &fa, NULL, argv, environ) != 0)
    fail_msg("cannot start %s", bin);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  /* "listening <port>\n", once ready; a sanitizer build takes a moment. */
  char line[64] = "";
  size_t n = 0;
  while (n + 1 < sizeof line && strchr(line, '\n') == NULL) {
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    if (poll(&p, 1, WAIT_LIMIT_MS) <= 0)
      fail_msg("fake-kie did not say it was listening");
    ssize_t k = read(fds[0], line + n, sizeof line - 1 - n);
    if (k <= 0)
      fail_msg("fake-kie exited before listening");
    n += (size_t)k;
    line[n] = '\0';
  }
  close(fds[0]);
  int port = 0;
  char tail = 0;
  if (sscanf(line, "listening %d%c", &port, &tail) != 2 || tail != '\n' || port <= 0)
    fail_msg("unexpected first line from fake-kie: %s", line);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  listener_start();
  return 0;
}

static int fake_stop(void **state) {
  (void)state;
  int status = 0;
  if (fake_pid > 0) {
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, &status, 0);
  }
  MHD_stop_daemon(L.d);
  listener_clear();
  vips_shutdown();
  curl_global_cleanup();
  /* A clean stop: exit status 0, so no sanitizer report either. */
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("fake-kie did not stop cleanly (status %d)", status);
  return 0;
}

static int per_test(void **state) {
  (void)state;
  reset_fake();
  listener_clear();
  return 0;
}

/* ------------------------------------------------------------------- helpers */

/* Uploads `data` with the stream upload and returns data.downloadUrl (malloc'd). */
static char *upload_stream(const void *data, size_t len, const char *filename) {
  const char *h[] = {AUTH, NULL};
  part parts[] = {{"file", data, len, filename}, {"uploadPath", "images", 6, NULL}};
  reply r = request("POST", "/api/file-stream-upload", UA, h, NULL, parts, 2);
  assert_int_equal(r.status, 200);
  assert_int_equal(jcode(&r), 200);
  assert_true(cJSON_IsTrue(jget(r.json, "success")));
  const cJSON *d = jget(r.json, "data");
  assert_string_equal(jstr(d, "fileName"), filename);
  assert_string_equal(jstr(d, "filePath"), "images/x.png");
  assert_string_equal(jstr(d, "mimeType"), "image/png");
  assert_int_equal(jget(d, "fileSize")->valueint, (int)len);
  char *url = strdup(jstr(d, "downloadUrl"));
  reply_free(&r);
  return url;
}

/* createTask; returns the taskId (malloc'd); fails unless code 200. */
static char *create_task(const char *model, const char *image_url, const char *callback,
                         const char *format) {
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "model", model);
  if (callback != NULL)
    cJSON_AddStringToObject(doc, "callBackUrl", callback);
  cJSON *in = cJSON_AddObjectToObject(doc, "input");
  cJSON_AddStringToObject(in, "prompt", "put the jacket on the person");
  if (image_url != NULL) {
    cJSON *urls = cJSON_AddArrayToObject(in, "image_urls");
    cJSON_AddItemToArray(urls, cJSON_CreateString(image_url));
  }
  cJSON_AddStringToObject(in, "output_format", format);
  cJSON_AddStringToObject(in, "aspect_ratio", "3:4");
  char *body = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  reply r = api("POST", "/api/v1/jobs/createTask", body);
  cJSON_free(body);
  assert_int_equal(r.status, 200);
  if (jcode(&r) != 200)
    fail_msg("createTask: %s", r.body);
  assert_string_equal(jstr(r.json, "msg"), "success");
  char *id = strdup(jstr(jget(r.json, "data"), "taskId"));
  assert_true(strncmp(id, "task_", 5) == 0);
  reply_free(&r);
  return id;
}

/* recordInfo's data object (caller deletes). */
static cJSON *record(const char *id) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/jobs/recordInfo?taskId=%s", id);
  reply r = api("GET", path, NULL);
  assert_int_equal(r.status, 200);
  if (jcode(&r) != 200)
    fail_msg("recordInfo: %s", r.body);
  assert_string_equal(jstr(r.json, "message"), "success");
  cJSON *d = cJSON_DetachItemFromObject(r.json, "data");
  reply_free(&r);
  return d;
}

/* Polls until the state is success or fail; returns that data object. */
static cJSON *record_until_done(const char *id) {
  for (int waited = 0; waited < WAIT_LIMIT_MS; waited += 25) {
    cJSON *d = record(id);
    const char *st = jstr(d, "state");
    if (strcmp(st, "success") == 0 || strcmp(st, "fail") == 0)
      return d;
    cJSON_Delete(d);
    sleep_ms(25);
  }
  fail_msg("task %s never finished", id);
  return NULL;
}

/* The first resultUrls entry of a finished task's data (malloc'd). */
static char *result_url(const cJSON *d) {
  cJSON *rj = cJSON_Parse(jstr(d, "resultJson"));
  assert_non_null(rj);
  const cJSON *u = cJSON_GetArrayItem(jget(rj, "resultUrls"), 0);
  assert_true(cJSON_IsString(u));
  char *url = strdup(u->valuestring);
  cJSON_Delete(rj);
  return url;
}

/* /_fake/tasks entry for `id` (caller deletes). */
static cJSON *fake_task(const char *id) {
  reply r = control("GET", "/_fake/tasks", NULL);
  cJSON *found = NULL;
  const cJSON *t;
  cJSON_ArrayForEach(t, jget(r.json, "tasks")) {
    if (strcmp(jstr(t, "taskId"), id) == 0)
      found = cJSON_Duplicate(t, true);
  }
  reply_free(&r);
  if (found == NULL)
    fail_msg("no task %s in /_fake/tasks", id);
  return found;
}

/* --------------------------------------------------------------------- tests */

static void test_fake_kie__no_user_agent_is_403(void **state) {
  (void)state;
  const char *h[] = {AUTH, NULL};
  reply r = request("POST", "/api/v1/jobs/createTask", NULL, h, "{}", NULL, 0);
  assert_int_equal(r.status, 403);
  assert_string_equal(r.body, "error code: 1010");
  reply_free(&r);
  r = request("POST", "/api/file-base64-upload", NULL, h, "{}", NULL, 0);
  assert_int_equal(r.status, 403);
  reply_free(&r);
}

static void test_fake_kie__auth_and_validation(void **state) {
  (void)state;
  static const struct {
    const char *auth;
    const char *body;
    long http;
    int code;
  } cases[] = {
      {"Authorization: Bearer wrong", "{}", 401, 401},
      {NULL, "{}", 401, 401},
      {AUTH, "not json", 200, 400},
      {AUTH,
       "{\"model\":\"google/nano-banana-edit\",\"input\":{\"image_urls\":[\"http://x/a.png\"]}}",
       200, 422},
      {AUTH,
       "{\"model\":\"google/nano-banana-edit\",\"input\":{\"prompt\":\"\",\"image_urls\":[\"http://"
       "x/a.png\"]}}",
       200, 422},
      {AUTH,
       "{\"model\":\"google/nano-banana-edit\",\"input\":{\"prompt\":\"p\",\"image_urls\":[]}}",
       200, 422},
      {AUTH, "{\"model\":\"google/nano-banana-edit\",\"input\":{\"prompt\":\"p\"}}", 200, 422},
      {AUTH,
       "{\"model\":\"dall-e\",\"input\":{\"prompt\":\"p\",\"image_urls\":[\"http://x/a.png\"]}}",
       200, 422},
      {AUTH,
       "{\"model\":\"google/nano-banana-edit\",\"input\":{\"prompt\":\"p\",\"image_urls\":[\"http:/"
       "/x/"
       "a.png\"],\"output_format\":\"gif\"}}",
       200, 422},
      {AUTH, "{\"model\":\"google/nano-banana\",\"input\":{\"prompt\":\"a cat\"}}", 200, 200},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *h[] = {cases[i].auth, NULL};
    reply r = request("POST", "/api/v1/jobs/createTask", UA, h, cases[i].body, NULL, 0);
    if (r.status != cases[i].http || jcode(&r) != cases[i].code)
      fail_msg("case %zu: got %ld %s, want %ld code %d", i, r.status, r.body, cases[i].http,
               cases[i].code);
    assert_true(cJSON_IsString(jget(r.json, "msg")));
    reply_free(&r);
  }
  /* An unknown task: HTTP 200, code 422, "recordInfo is null" under "message". */
  reply r = api("GET", "/api/v1/jobs/recordInfo?taskId=task_nope_1", NULL);
  assert_int_equal(r.status, 200);
  assert_int_equal(jcode(&r), 422);
  assert_string_equal(jstr(r.json, "message"), "recordInfo is null");
  reply_free(&r);
}

static void test_fake_kie__task_lifecycle_png(void **state) {
  (void)state;
  void *png = NULL;
  size_t png_len = 0;
  make_png(&png, &png_len);
  char *src = upload_stream(png, png_len, "x.png");
  script("{\"task\":{\"waiting_ms\":2000,\"queuing_ms\":300,\"generating_ms\":1500}}");
  char *id = create_task("google/nano-banana-edit", src, NULL, "png");

  static const char *const order[] = {"waiting", "queuing", "generating", "success"};
  int last = -1;
  bool seen[4] = {false};
  cJSON *d = NULL;
  for (int waited = 0; waited < WAIT_LIMIT_MS && last < 3; waited += 25) {
    cJSON_Delete(d);
    d = record(id);
    const char *st = jstr(d, "state");
    int k = -1;
    for (int i = 0; i < 4; i++)
      if (strcmp(st, order[i]) == 0)
        k = i;
    if (k < 0 || k < last)
      fail_msg("state %s after %s", st, last >= 0 ? order[last] : "(start)");
    if (last < 0 && k != 0)
      fail_msg("the first state seen is %s, want waiting", st);
    seen[k] = true;
    last = k;
    if (k < 3) {
      assert_string_equal(jstr(d, "resultJson"), "");
      assert_true(cJSON_IsNull(jget(d, "completeTime")));
      sleep_ms(25);
    }
  }
  assert_int_equal(last, 3);
  assert_true(seen[0] && seen[2]);
  /* The documented shape: param and resultJson are JSON strings. */
  assert_string_equal(jstr(d, "taskId"), id);
  assert_string_equal(jstr(d, "model"), "google/nano-banana-edit");
  assert_string_equal(jstr(d, "failCode"), "");
  assert_string_equal(jstr(d, "failMsg"), "");
  assert_true(cJSON_IsNumber(jget(d, "completeTime")));
  assert_true(cJSON_IsNumber(jget(d, "createTime")));
  assert_true(cJSON_IsNumber(jget(d, "updateTime")));
  assert_true(cJSON_IsNumber(jget(d, "costTime")));
  cJSON *param = cJSON_Parse(jstr(d, "param"));
  assert_non_null(param);
  assert_string_equal(jstr(param, "model"), "google/nano-banana-edit");
  cJSON_Delete(param);
  char *url = result_url(d);
  assert_non_null(strstr(url, ".png"));

  /* A real PNG: the uploaded image with a magenta band across its top. */
  reply r = request("GET", url, NULL, NULL, NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_true(has_header(&r, "Content-Type: image/png"));
  assert_memory_equal(r.body, "\x89PNG", 4);
  VipsImage *img = decode(r.body, r.len);
  assert_int_equal(vips_image_get_width(img), 300);
  assert_int_equal(vips_image_get_height(img), 400);
  expect_pixel(img, 150, 2, 255, 0, 255);
  expect_pixel(img, 150, 398, 100, 100, 100);
  g_object_unref(img);
  reply_free(&r);

  /* download-url gives a working (signed) link on the fake. */
  char body[512];
  snprintf(body, sizeof body, "{\"url\":\"%s\"}", url);
  r = api("POST", "/api/v1/common/download-url", body);
  assert_int_equal(jcode(&r), 200);
  char *dl = strdup(jstr(r.json, "data"));
  reply_free(&r);
  assert_true(strncmp(dl, url, strlen(url)) == 0);
  r = request("GET", dl, NULL, NULL, NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  reply_free(&r);
  free(dl);

  cJSON *t = fake_task(id);
  assert_string_equal(jstr(t, "state"), "success");
  assert_string_equal(jstr(t, "prompt"), "put the jacket on the person");
  assert_string_equal(cJSON_GetArrayItem(jget(t, "image_urls"), 0)->valuestring, src);
  assert_true(cJSON_IsNull(jget(t, "callback_status")));
  cJSON_Delete(t);
  cJSON_Delete(d);
  free(url);
  free(id);
  free(src);
  g_free(png);
}

static void test_fake_kie__generated_jpeg(void **state) {
  (void)state;
  char *id = create_task("google/nano-banana", NULL, NULL, "jpeg");
  cJSON *d = record_until_done(id);
  assert_string_equal(jstr(d, "state"), "success");
  char *url = result_url(d);
  assert_non_null(strstr(url, ".jpg"));
  reply r = request("GET", url, NULL, NULL, NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_true(has_header(&r, "Content-Type: image/jpeg"));
  VipsImage *img = decode(r.body, r.len);
  assert_int_equal(vips_image_get_width(img), 512);
  assert_int_equal(vips_image_get_height(img), 768);
  g_object_unref(img);
  reply_free(&r);
  free(url);
  cJSON_Delete(d);
  free(id);
}

static void test_fake_kie__scripted_429_then_success(void **state) {
  (void)state;
  script("{\"create\":[{\"http\":429,\"retry_after\":1}]}");
  const char *body = "{\"model\":\"google/nano-banana\",\"input\":{\"prompt\":\"a cat\"}}";
  reply r = api("POST", "/api/v1/jobs/createTask", body);
  assert_int_equal(r.status, 429);
  assert_true(has_header(&r, "Retry-After: 1"));
  assert_int_equal(jcode(&r), 429);
  reply_free(&r);
  r = api("POST", "/api/v1/jobs/createTask", body);
  assert_int_equal(r.status, 200);
  assert_int_equal(jcode(&r), 200);
  reply_free(&r);
}

static void test_fake_kie__error_in_http_200_and_drop(void **state) {
  (void)state;
  script("{\"create\":[{\"http\":200,\"code\":455,\"msg\":\"maintenance\"},{\"drop\":true},"
         "{\"http\":500}],\"record\":[{\"http\":200,\"code\":500,\"msg\":\"server error\"}]}");
  const char *body = "{\"model\":\"google/nano-banana\",\"input\":{\"prompt\":\"a cat\"}}";
  reply r = api("POST", "/api/v1/jobs/createTask", body);
  assert_int_equal(r.status, 200);
  assert_int_equal(jcode(&r), 455);
  assert_string_equal(jstr(r.json, "msg"), "maintenance");
  reply_free(&r);
  r = api("POST", "/api/v1/jobs/createTask", body);
  assert_int_equal(r.rc, CURLE_GOT_NOTHING);
  reply_free(&r);
  r = api("POST", "/api/v1/jobs/createTask", body);
  assert_int_equal(r.status, 500);
  reply_free(&r);
  char *id = create_task("google/nano-banana", NULL, NULL, "png");
  char path[256];
  snprintf(path, sizeof path, "/api/v1/jobs/recordInfo?taskId=%s", id);
  r = api("GET", path, NULL);
  assert_int_equal(r.status, 200);
  assert_int_equal(jcode(&r), 500);
  assert_string_equal(jstr(r.json, "message"), "server error");
  reply_free(&r);
  cJSON_Delete(record(id)); /* the queue is used up: normal again */
  free(id);
}

static void test_fake_kie__fail_state(void **state) {
  (void)state;
  script("{\"task\":{\"fail_code\":\"501\",\"fail_msg\":\"content policy violation\"}}");
  char *id = create_task("google/nano-banana", NULL, NULL, "png");
  cJSON *d = record_until_done(id);
  assert_string_equal(jstr(d, "state"), "fail");
  assert_string_equal(jstr(d, "failCode"), "501");
  assert_string_equal(jstr(d, "failMsg"), "content policy violation");
  assert_string_equal(jstr(d, "resultJson"), "");
  char path[256];
  snprintf(path, sizeof path, "/results/%s.png", id);
  reply r = request("GET", path, NULL, NULL, NULL, NULL, 0);
  assert_int_equal(r.status, 404);
  reply_free(&r);
  cJSON_Delete(d);
  free(id);
  /* The tolerated variant: null where the docs also show "". */
  script("{\"task\":{\"null_fields\":true}}");
  id = create_task("google/nano-banana", NULL, NULL, "png");
  d = record_until_done(id);
  assert_string_equal(jstr(d, "state"), "fail");
  assert_true(cJSON_IsNull(jget(d, "resultJson")));
  assert_string_equal(jstr(d, "failCode"), "501");
  cJSON_Delete(d);
  free(id);
}

/* base64(HMAC-SHA256(key, taskId "." ts)) as kie documents it. */
static bool signature_ok(const char *id, const char *ts, const char *sig) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  char msg[256];
  unsigned char want[128];
  int n = snprintf(msg, sizeof msg, "%s.%s", id, ts);
  HMAC(EVP_sha256(), WEBHOOK_KEY, (int)strlen(WEBHOOK_KEY), (unsigned char *)msg, (size_t)n, mac,
       &mlen);
  int wl = EVP_EncodeBlock(want, mac, (int)mlen);
  return (size_t)wl == strlen(sig) && CRYPTO_memcmp(want, sig, (size_t)wl) == 0;
}

static void test_fake_kie__callbacks(void **state) {
  (void)state;
  char hook_url[96];
  snprintf(hook_url, sizeof hook_url, "http://127.0.0.1:%d/hooks/kie", L.port);
  script("{\"task_queue\":[{\"callback\":\"signed\"},"
         "{\"callback\":\"bad_signature\",\"fail_code\":\"501\",\"fail_msg\":\"nope\"},"
         "{\"callback\":\"unsigned\"}]}");
  char *ids[3];
  for (int i = 0; i < 3; i++) {
    ids[i] = create_task("google/nano-banana", NULL, hook_url, "png");
    listener_wait(i + 1); /* one at a time, so the order is known */
  }
  static const struct {
    int code;
    const char *state;
    int sig; /* 1 valid, 0 wrong, -1 absent */
  } want[] = {{200, "success", 1}, {501, "fail", 0}, {200, "success", -1}};
  for (int i = 0; i < 3; i++) {
    hook *h = &L.hooks[i];
    cJSON *doc = cJSON_Parse(h->body);
    assert_non_null(doc);
    assert_int_equal(jcode(&(reply){.json = doc, .body = h->body}), want[i].code);
    const cJSON *d = jget(doc, "data");
    assert_string_equal(jstr(d, "taskId"), ids[i]);
    assert_string_equal(jstr(d, "state"), want[i].state);
    assert_true(cJSON_IsString(jget(d, "resultJson")));
    assert_true(cJSON_IsString(jget(d, "param")));
    if (want[i].sig < 0) {
      assert_string_equal(h->timestamp, "");
      assert_string_equal(h->signature, "");
    } else {
      char *end = NULL;
      long long ts = strtoll(h->timestamp, &end, 10);
      assert_true(end != h->timestamp && *end == '\0' && ts > 1600000000LL);
      assert_int_equal(signature_ok(ids[i], h->timestamp, h->signature), want[i].sig == 1);
    }
    cJSON_Delete(doc);
  }
  /* The fake records what its callback got back. */
  for (int i = 0; i < 3; i++) {
    cJSON *t = NULL;
    for (int waited = 0; waited < WAIT_LIMIT_MS; waited += 25) {
      cJSON_Delete(t);
      t = fake_task(ids[i]);
      if (cJSON_IsNumber(jget(t, "callback_status")))
        break;
      sleep_ms(25);
    }
    assert_int_equal(jget(t, "callback_status")->valueint, 200);
    cJSON_Delete(t);
    free(ids[i]);
  }
  /* A callback URL off loopback is refused, never called. */
  script("{\"task\":{\"callback\":\"signed\"}}");
  char *id = create_task("google/nano-banana", NULL, "http://192.0.2.1/hook", "png");
  cJSON_Delete(record_until_done(id));
  cJSON *t = NULL;
  for (int waited = 0; waited < WAIT_LIMIT_MS; waited += 25) {
    cJSON_Delete(t);
    t = fake_task(id);
    if (cJSON_IsString(jget(t, "callback_error")))
      break;
    sleep_ms(25);
  }
  assert_true(cJSON_IsNull(jget(t, "callback_status")));
  assert_non_null(strstr(jstr(t, "callback_error"), "loopback"));
  cJSON_Delete(t);
  free(id);
}

static void test_fake_kie__uploads(void **state) {
  (void)state;
  void *png = NULL;
  size_t png_len = 0;
  make_png(&png, &png_len);
  /* base64 as a data: URL */
  size_t cap = 4 * ((png_len + 2) / 3) + 64;
  char *b64 = malloc(cap);
  EVP_EncodeBlock((unsigned char *)b64, png, (int)png_len);
  size_t body_cap = cap + 256;
  char *body = malloc(body_cap);
  snprintf(body, body_cap,
           "{\"base64Data\":\"data:image/png;base64,%s\",\"uploadPath\":\"images\","
           "\"fileName\":\"b.png\"}",
           b64);
  reply r = api("POST", "/api/file-base64-upload", body);
  assert_int_equal(jcode(&r), 200);
  const cJSON *d = jget(r.json, "data");
  assert_string_equal(jstr(d, "filePath"), "images/b.png");
  assert_int_equal(jget(d, "fileSize")->valueint, (int)png_len);
  char *url = strdup(jstr(d, "downloadUrl"));
  reply_free(&r);
  r = request("GET", url, NULL, NULL, NULL, NULL, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.len, png_len);
  assert_memory_equal(r.body, png, png_len);
  reply_free(&r);

  /* a URL upload of the fake's own file works; anything else is refused */
  snprintf(body, body_cap, "{\"fileUrl\":\"%s\",\"uploadPath\":\"copies\"}", url);
  r = api("POST", "/api/file-url-upload", body);
  assert_int_equal(jcode(&r), 200);
  assert_string_equal(jstr(jget(r.json, "data"), "filePath"), "copies/b.png");
  reply_free(&r);
  r = api("POST", "/api/file-url-upload",
          "{\"fileUrl\":\"https://example.com/a.png\",\"uploadPath\":\"images\"}");
  assert_int_equal(r.status, 200);
  assert_true(jcode(&r) != 200);
  assert_true(cJSON_IsFalse(jget(r.json, "success")));
  reply_free(&r);
  /* a leading slash in uploadPath is an error */
  r = api("POST", "/api/file-url-upload", "{\"fileUrl\":\"x\",\"uploadPath\":\"/images\"}");
  assert_true(jcode(&r) != 200);
  reply_free(&r);
  /* scripted upload failure */
  script("{\"upload\":[{\"http\":200,\"code\":500,\"msg\":\"upload failed\"}]}");
  snprintf(body, body_cap, "{\"fileUrl\":\"%s\",\"uploadPath\":\"copies\"}", url);
  r = api("POST", "/api/file-url-upload", body);
  assert_int_equal(jcode(&r), 500);
  assert_true(cJSON_IsFalse(jget(r.json, "success")));
  reply_free(&r);
  free(url);
  free(body);
  free(b64);
  g_free(png);
}

static void test_fake_kie__requests_recorded(void **state) {
  (void)state;
  static const char png[] = "\x89PNG\r\n\x1a\nnot-really";
  char *url = upload_stream(png, sizeof png - 1, "x.png");
  free(url);
  reply r = api("POST", "/api/v1/jobs/createTask",
                "{\"model\":\"google/nano-banana\",\"input\":{\"prompt\":\"a dog\"}}");
  reply_free(&r);
  r = request("GET", "/api/v1/jobs/recordInfo?taskId=abc", "other-agent/2", NULL, NULL, NULL, 0);
  reply_free(&r);

  r = control("GET", "/_fake/requests", NULL);
  const cJSON *reqs = jget(r.json, "requests");
  assert_int_equal(cJSON_GetArraySize(reqs), 3);
  const cJSON *up = cJSON_GetArrayItem(reqs, 0);
  assert_string_equal(jstr(up, "method"), "POST");
  assert_string_equal(jstr(up, "path"), "/api/file-stream-upload");
  assert_true(cJSON_IsTrue(jget(up, "auth_ok")));
  assert_true(cJSON_IsNull(jget(up, "json")));
  assert_string_equal(cJSON_GetArrayItem(jget(up, "fields"), 0)->valuestring, "file");
  assert_string_equal(cJSON_GetArrayItem(jget(up, "fields"), 1)->valuestring, "uploadPath");
  const cJSON *cr = cJSON_GetArrayItem(reqs, 1);
  assert_string_equal(jstr(cr, "user_agent"), UA);
  assert_non_null(strstr(jstr(cr, "content_type"), "application/json"));
  assert_string_equal(jstr(jget(cr, "json"), "model"), "google/nano-banana");
  const cJSON *rec = cJSON_GetArrayItem(reqs, 2);
  assert_string_equal(jstr(rec, "path"), "/api/v1/jobs/recordInfo");
  assert_string_equal(jstr(rec, "query"), "taskId=abc");
  assert_false(cJSON_IsTrue(jget(rec, "auth_ok")));
  assert_string_equal(jstr(rec, "user_agent"), "other-agent/2");
  reply_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_fake_kie__no_user_agent_is_403, per_test),
      cmocka_unit_test_setup(test_fake_kie__auth_and_validation, per_test),
      cmocka_unit_test_setup(test_fake_kie__task_lifecycle_png, per_test),
      cmocka_unit_test_setup(test_fake_kie__generated_jpeg, per_test),
      cmocka_unit_test_setup(test_fake_kie__scripted_429_then_success, per_test),
      cmocka_unit_test_setup(test_fake_kie__error_in_http_200_and_drop, per_test),
      cmocka_unit_test_setup(test_fake_kie__fail_state, per_test),
      cmocka_unit_test_setup(test_fake_kie__callbacks, per_test),
      cmocka_unit_test_setup(test_fake_kie__uploads, per_test),
      cmocka_unit_test_setup(test_fake_kie__requests_recorded, per_test),
  };
  return cmocka_run_group_tests_name("fake_kie", tests, fake_start, fake_stop);
}
