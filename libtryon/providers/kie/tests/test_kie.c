/*
 * test_kie.c - the kie.ai protocol: requests checked field by field (the JSON built is
 * parsed back), verdicts on every body code and HTTP status (tables), recordInfo and
 * callback shapes from PROVIDERS.md, callback signatures, the polling schedule, and a
 * loopback server that shows what actually goes on the wire (headers, multipart
 * fields) and that the API key never reaches a log line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <microhttpd.h>
#include <pthread.h>

#include <tryon/http.h>
#include <tryon/kie.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define KEY "kieKEY-S3CRET-0123456789abcdef"

static tryon_kie_config cfg_default(void) {
  return (tryon_kie_config){.api_url = "https://api.kie.ai",
                            .upload_url = "https://kieai.redpandaai.co/",
                            .api_key = KEY};
}

/* A response as the http layer would leave it. */
static tryon_http_response resp_make(long status, const char *body, int64_t retry_after_ms) {
  tryon_http_response r;
  memset(&r, 0, sizeof r);
  tryon_buf_init(&r.body, 1 << 20);
  r.status = status;
  r.retry_after_ms = retry_after_ms;
  r.attempts = 1;
  if (body != NULL)
    assert_int_equal(tryon_buf_append_str(&r.body, body), TRYON_OK);
  return r;
}

static int header_count(const tryon_http_request *h) {
  int n = 0;
  while (h->headers != NULL && h->headers[n] != NULL)
    n++;
  return n;
}

static bool has_header(const tryon_http_request *h, const char *line) {
  for (int i = 0; h->headers != NULL && h->headers[i] != NULL; i++)
    if (strcmp(h->headers[i], line) == 0)
      return true;
  return false;
}

static void assert_common(const tryon_kie_request *r) {
  assert_true(has_header(&r->http, "Authorization: Bearer " KEY));
  assert_true(has_header(&r->http, "Accept: application/json"));
  assert_int_equal(header_count(&r->http), 2);
  assert_non_null(r->http.user_agent);
  assert_int_equal(strncmp(r->http.user_agent, "tryon/", 6), 0);
  assert_string_equal(r->http.log_label, "kie");
  assert_int_equal(r->http.max_response_bytes, TRYON_KIE_ANSWER_MAX);
  assert_true(r->http.timeout_ms > 0);
}

/* --------------------------------------------------------------------- createTask */

static cJSON *printed_json(const tryon_kie_request *r) {
  assert_non_null(r->http.json);
  char *text = cJSON_PrintUnformatted(r->http.json);
  assert_non_null(text);
  cJSON *j = cJSON_Parse(text);
  free(text);
  assert_non_null(j);
  return j;
}

static void test_kie__create_request_fields(void **state) {
  tryon_kie_config cfg = cfg_default();
  const char *urls[] = {"https://tempfile.redpandaai.co/a/tryon/person.png",
                        "https://tempfile.redpandaai.co/a/tryon/shirt.jpg"};
  tryon_kie_request r;
  tryon_err err;

  cfg.callback_url = "https://example.com/webhooks/kie";
  tryon_err_clear(&err);
  assert_int_equal(tryon_kie_create_request(&cfg, "Put the shirt on the person", urls, 2, "jpeg",
                                            "3:4", &r, &err),
                   TRYON_OK);
  assert_common(&r);
  assert_string_equal(r.http.url, "https://api.kie.ai/api/v1/jobs/createTask");
  assert_string_equal(r.http.method, "POST");
  assert_int_equal(r.http.max_attempts, 1); /* never a second task by accident */
  assert_null(r.http.body);
  assert_null(r.http.parts);

  cJSON *j = printed_json(&r);
  assert_int_equal(cJSON_GetArraySize(j), 3);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring,
                      "google/nano-banana-edit");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "callBackUrl")->valuestring,
                      "https://example.com/webhooks/kie");
  cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
  assert_true(cJSON_IsObject(in));
  assert_int_equal(cJSON_GetArraySize(in), 4);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "prompt")->valuestring,
                      "Put the shirt on the person");
  cJSON *iu = cJSON_GetObjectItemCaseSensitive(in, "image_urls");
  assert_true(cJSON_IsArray(iu));
  assert_int_equal(cJSON_GetArraySize(iu), 2);
  assert_string_equal(cJSON_GetArrayItem(iu, 0)->valuestring, urls[0]);
  assert_string_equal(cJSON_GetArrayItem(iu, 1)->valuestring, urls[1]);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "output_format")->valuestring, "jpeg");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "aspect_ratio")->valuestring, "3:4");
  cJSON_Delete(j);
  tryon_kie_request_release(&r);
  tryon_kie_request_release(&r); /* twice is fine */

  /* Defaults: png, auto, no callBackUrl, the configured model and User-Agent. */
  cfg = cfg_default();
  cfg.model = "google/nano-banana";
  cfg.user_agent = "tryon-test/1.0";
  cfg.api_url = "http://127.0.0.1:9/"; /* trailing slash joined cleanly */
  assert_int_equal(tryon_kie_create_request(&cfg, "x", urls, 1, NULL, NULL, &r, &err), TRYON_OK);
  assert_string_equal(r.http.url, "http://127.0.0.1:9/api/v1/jobs/createTask");
  assert_string_equal(r.http.user_agent, "tryon-test/1.0");
  j = printed_json(&r);
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "callBackUrl"));
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring,
                      "google/nano-banana");
  in = cJSON_GetObjectItemCaseSensitive(j, "input");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "output_format")->valuestring, "png");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "aspect_ratio")->valuestring, "auto");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(in, "image_urls")), 1);
  cJSON_Delete(j);
  tryon_kie_request_release(&r);
}

/* A prompt of `n` copies of `unit`. */
static char *repeat(const char *unit, size_t n) {
  size_t u = strlen(unit);
  char *s = malloc(u * n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++)
    memcpy(s + i * u, unit, u);
  s[u * n] = '\0';
  return s;
}

static void test_kie__create_request_validation(void **state) {
  const char *one[] = {"https://x.example/a.png"};
  const char *eleven[11];
  const char *bad_url[] = {"ftp://x.example/a.png"};
  const char *spaced[] = {"https://x.example/a b.png"};
  const char *data_url[] = {"data:image/png;base64,AAAA"};
  for (size_t i = 0; i < ARRAY_LEN(eleven); i++)
    eleven[i] = one[0];
  char *p5000 = repeat("a", 5000);
  char *p5001 = repeat("a", 5001);
  char *emoji2500 = repeat("\xF0\x9F\x98\x80", 2500); /* 5000 UTF-16 units */
  char *emoji2501 = repeat("\xF0\x9F\x98\x80", 2501);
  char *cyr5000 = repeat("\xD0\xB6", 5000); /* 2-byte, 1 unit each */
  tryon_kie_config ok = cfg_default();
  tryon_kie_config nokey = ok, spacekey = ok, nlkey = ok, badcb = ok, badapi = ok, badua = ok;
  nokey.api_key = "";
  spacekey.api_key = KEY " x";
  nlkey.api_key = KEY "\n";
  badcb.callback_url = "example.com/hook";
  badapi.api_url = "api.kie.ai";
  badua.user_agent = "ua\r\nX-Evil: 1";

  const struct {
    const tryon_kie_config *cfg;
    const char *prompt;
    const char *const *urls;
    size_t n;
    const char *fmt;
    const char *ratio;
    tryon_status want;
  } cases[] = {
      {&ok, p5000, one, 1, NULL, NULL, TRYON_OK},
      {&ok, p5001, one, 1, NULL, NULL, TRYON_E_TOO_LARGE},
      {&ok, emoji2500, one, 1, NULL, NULL, TRYON_OK},
      {&ok, emoji2501, one, 1, NULL, NULL, TRYON_E_TOO_LARGE},
      {&ok, cyr5000, one, 1, NULL, NULL, TRYON_OK},
      {&ok, "", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, NULL, one, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "bad \xC3\x28 utf8", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "overlong \xC0\xAF", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "surrogate \xED\xA0\x80", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", one, 0, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", NULL, 0, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", eleven, 10, NULL, NULL, TRYON_OK},
      {&ok, "x", eleven, 11, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", bad_url, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", spaced, 1, NULL, NULL, TRYON_E_INVALID},
      {&ok, "x", data_url, 1, NULL, NULL, TRYON_E_INVALID}, /* URLs, never base64 */
      {&ok, "x", one, 1, "png", "auto", TRYON_OK},
      {&ok, "x", one, 1, "jpg", NULL, TRYON_E_INVALID},
      {&ok, "x", one, 1, "webp", NULL, TRYON_E_INVALID},
      {&ok, "x", one, 1, NULL, "7:5", TRYON_E_INVALID},
      {&ok, "x", one, 1, NULL, "AUTO", TRYON_E_INVALID},
      {&ok, "x", one, 1, NULL, "", TRYON_E_INVALID},
      {&nokey, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&spacekey, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&nlkey, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&badcb, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&badapi, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {&badua, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
      {NULL, "x", one, 1, NULL, NULL, TRYON_E_INVALID},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_kie_request r;
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_kie_create_request(cases[i].cfg, cases[i].prompt, cases[i].urls,
                                               cases[i].n, cases[i].fmt, cases[i].ratio, &r, &err);
    if (st != cases[i].want)
      fail_msg("case %zu: %s, want %s (%s)", i, tryon_status_name(st),
               tryon_status_name(cases[i].want), err.message);
    if (st != TRYON_OK) {
      assert_null(r.http.url); /* zeroed on failure */
      assert_null(strstr(err.message, "S3CRET"));
    }
    tryon_kie_request_release(&r);
  }
  assert_int_equal(tryon_kie_create_request(&ok, "x", one, 1, NULL, NULL, NULL, NULL),
                   TRYON_E_INVALID);

  /* Every documented aspect ratio is accepted. */
  const char *ratios[] = {"1:1", "9:16", "16:9", "3:4",  "4:3", "3:2",
                          "2:3", "5:4",  "4:5",  "21:9", "auto"};
  for (size_t i = 0; i < ARRAY_LEN(ratios); i++)
    assert_true(tryon_kie_aspect_ratio_ok(ratios[i]));
  assert_false(tryon_kie_aspect_ratio_ok(NULL));
  assert_false(tryon_kie_aspect_ratio_ok("1:2"));
  free(p5000);
  free(p5001);
  free(emoji2500);
  free(emoji2501);
  free(cyr5000);
}

/* ------------------------------------------------------------------------- upload */

static void test_kie__upload_request(void **state) {
  static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 1, 2};
  tryon_kie_config cfg = cfg_default();
  tryon_kie_request r;
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(
      tryon_kie_upload_request(&cfg, png, sizeof png, "image/png", "person-1.png", &r, &err),
      TRYON_OK);
  assert_common(&r);
  assert_string_equal(r.http.url, "https://kieai.redpandaai.co/api/file-stream-upload");
  assert_string_equal(r.http.method, "POST");
  assert_int_equal(r.http.max_attempts, 0); /* the http layer's default: idempotent enough */
  assert_int_equal(r.http.timeout_ms, TRYON_KIE_UPLOAD_TIMEOUT_MS);
  assert_null(r.http.json);
  assert_int_equal(r.http.nparts, 3);
  const tryon_http_part *p = r.http.parts;
  assert_string_equal(p[0].name, "file");
  assert_ptr_equal(p[0].data, (const char *)png); /* borrowed, not copied */
  assert_int_equal(p[0].len, sizeof png);
  assert_string_equal(p[0].filename, "person-1.png");
  assert_string_equal(p[0].content_type, "image/png");
  assert_string_equal(p[1].name, "uploadPath");
  assert_string_equal(p[1].data, "tryon");
  assert_int_equal(p[1].len, TRYON_HTTP_ZERO_TERMINATED);
  assert_null(p[1].filename);
  assert_string_equal(p[2].name, "fileName");
  assert_string_equal(p[2].data, "person-1.png");
  tryon_kie_request_release(&r);

  const struct {
    size_t len;
    const char *mime;
    const char *name;
    tryon_status want;
  } cases[] = {
      {sizeof png, "image/jpeg", "a.jpg", TRYON_OK},
      {sizeof png, "image/webp", "a_b-c.webp", TRYON_OK},
      {sizeof png, "image/gif", "a.gif", TRYON_E_INVALID},
      {sizeof png, "image/png", "", TRYON_E_INVALID},
      {sizeof png, "image/png", ".hidden", TRYON_E_INVALID},
      {sizeof png, "image/png", "../a.png", TRYON_E_INVALID},
      {sizeof png, "image/png", "a b.png", TRYON_E_INVALID},
      {sizeof png, "image/png", "a\".png", TRYON_E_INVALID},
      {0, "image/png", "a.png", TRYON_E_INVALID},
      {TRYON_KIE_UPLOAD_MAX + 1, "image/png", "a.png", TRYON_E_TOO_LARGE},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_status st =
        tryon_kie_upload_request(&cfg, png, cases[i].len, cases[i].mime, cases[i].name, &r, &err);
    if (st != cases[i].want)
      fail_msg("case %zu: %s (%s)", i, tryon_status_name(st), err.message);
    tryon_kie_request_release(&r);
  }
  char longname[TRYON_KIE_FILE_NAME_MAX + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  assert_int_equal(tryon_kie_upload_request(&cfg, png, sizeof png, "image/png", longname, &r, &err),
                   TRYON_E_INVALID);
  longname[TRYON_KIE_FILE_NAME_MAX] = '\0';
  assert_int_equal(tryon_kie_upload_request(&cfg, png, sizeof png, "image/png", longname, &r, &err),
                   TRYON_OK);
  tryon_kie_request_release(&r);
  cfg.upload_url = NULL;
  assert_int_equal(tryon_kie_upload_request(&cfg, png, sizeof png, "image/png", "a.png", &r, &err),
                   TRYON_E_INVALID);
  assert_null(strstr(err.message, "S3CRET"));
}

/* --------------------------------------------------------------------- recordInfo */

static void test_kie__record_request(void **state) {
  tryon_kie_config cfg = cfg_default();
  tryon_kie_request r;
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(tryon_kie_record_request(&cfg, "task_google_1765178615729", &r, &err), TRYON_OK);
  assert_common(&r);
  assert_string_equal(r.http.method, "GET");
  assert_string_equal(r.http.url,
                      "https://api.kie.ai/api/v1/jobs/recordInfo?taskId=task_google_1765178615729");
  assert_null(r.http.json);
  assert_null(r.http.parts);
  tryon_kie_request_release(&r);

  /* Opaque ids are escaped, so an id can never add a parameter. */
  assert_int_equal(tryon_kie_record_request(&cfg, "a b&c=d/e?f#g%~\xC3\xA9", &r, &err), TRYON_OK);
  assert_string_equal(r.http.url, "https://api.kie.ai/api/v1/jobs/recordInfo?taskId="
                                  "a%20b%26c%3Dd%2Fe%3Ff%23g%25~%C3%A9");
  tryon_kie_request_release(&r);

  char id[TRYON_KIE_TASK_ID_MAX + 1];
  memset(id, 'x', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  assert_int_equal(tryon_kie_record_request(&cfg, id, &r, &err), TRYON_E_INVALID);
  id[TRYON_KIE_TASK_ID_MAX - 1] = '\0'; /* 200 bytes: the most */
  assert_int_equal(tryon_kie_record_request(&cfg, id, &r, &err), TRYON_OK);
  tryon_kie_request_release(&r);
  assert_int_equal(tryon_kie_record_request(&cfg, "", &r, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_kie_record_request(&cfg, "a\nb", &r, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_kie_record_request(&cfg, NULL, &r, &err), TRYON_E_INVALID);
}

/* ----------------------------------------------------------------------- verdicts */

typedef struct verdict_case {
  tryon_status http_st;
  long status;
  const char *body;
  int64_t retry_after;
  tryon_verdict_next next;
  const char *code;
  int provider_code;
  int64_t want_retry_after;
  const char *detail_has; /* NULL: not checked */
} verdict_case;

#define OK_CREATE "{\"code\":200,\"msg\":\"success\",\"data\":{\"taskId\":\"task_1\"}}"

/* The answers every call may get, judged through parse_create (the envelope, the
 * HTTP status and the transfer are judged the same way by every parser). */
static const verdict_case verdicts[] = {
    {TRYON_OK, 200, OK_CREATE, 0, TRYON_VERDICT_OK, "", 200, 0, "success"},
    /* HTTP 200 with the error inside: every documented body code. */
    {TRYON_OK, 200, "{\"code\":400,\"msg\":\"bad params\"}", 0, TRYON_VERDICT_FINAL, "bad_request",
     400, 0, "bad params"},
    {TRYON_OK, 200, "{\"code\":401,\"msg\":\"unauthorized\"}", 0, TRYON_VERDICT_FINAL,
     "unauthorized", 401, 0, NULL},
    {TRYON_OK, 200, "{\"code\":402,\"msg\":\"Credits insufficient\"}", 0, TRYON_VERDICT_FINAL,
     "provider_out_of_credits", 402, 0, "Credits insufficient"},
    {TRYON_OK, 200, "{\"code\":404,\"msg\":\"not found\"}", 0, TRYON_VERDICT_FINAL, "not_found",
     404, 0, NULL},
    {TRYON_OK, 200, "{\"code\":408,\"msg\":\"no result for over 10 minutes\"}", 0,
     TRYON_VERDICT_FINAL, "timeout", 408, 0, NULL},
    {TRYON_OK, 200, "{\"code\":422,\"msg\":\"image_urls is required\"}", 0, TRYON_VERDICT_FINAL,
     "validation", 422, 0, "image_urls"},
    {TRYON_OK, 200, "{\"code\":422,\"msg\":\"recordInfo is null\",\"data\":null}", 0,
     TRYON_VERDICT_FINAL, "not_found", 422, 0, NULL},
    {TRYON_OK, 200, "{\"code\":429,\"msg\":\"rate limited\"}", 7000, TRYON_VERDICT_RETRY,
     "rate_limited", 429, 7000, NULL},
    {TRYON_OK, 200, "{\"code\":433,\"msg\":\"sub-key limit\"}", 0, TRYON_VERDICT_RETRY,
     "rate_limited", 433, 0, NULL},
    {TRYON_OK, 200, "{\"code\":455,\"msg\":\"maintenance\"}", 0, TRYON_VERDICT_RETRY, "maintenance",
     455, 0, NULL},
    {TRYON_OK, 200, "{\"code\":500,\"msg\":\"server error\"}", 0, TRYON_VERDICT_RETRY,
     "server_error", 500, 0, NULL},
    {TRYON_OK, 200, "{\"code\":501,\"msg\":\"generation failed\"}", 0, TRYON_VERDICT_FINAL,
     "generation_failed", 501, 0, NULL},
    {TRYON_OK, 200, "{\"code\":505,\"msg\":\"feature disabled\"}", 0, TRYON_VERDICT_FINAL,
     "feature_disabled", 505, 0, NULL},
    {TRYON_OK, 200, "{\"code\":503,\"msg\":\"?\"}", 0, TRYON_VERDICT_RETRY, "server_error", 503, 0,
     NULL},
    {TRYON_OK, 200, "{\"code\":418,\"msg\":\"?\"}", 0, TRYON_VERDICT_FINAL, "bad_request", 418, 0,
     NULL},
    {TRYON_OK, 200, "{\"code\":201,\"msg\":\"?\"}", 0, TRYON_VERDICT_FINAL, "bad_answer", 201, 0,
     NULL},
    /* msg vs message; a code given as a string. */
    {TRYON_OK, 200, "{\"code\":402,\"message\":\"no credits left\"}", 0, TRYON_VERDICT_FINAL,
     "provider_out_of_credits", 402, 0, "no credits left"},
    {TRYON_OK, 200, "{\"code\":\"455\",\"msg\":\"\",\"message\":\"down for upkeep\"}", 0,
     TRYON_VERDICT_RETRY, "maintenance", 455, 0, "down for upkeep"},
    /* 2xx that is not the expected JSON. */
    {TRYON_OK, 200, "<html>Just a moment...</html>", 0, TRYON_VERDICT_RETRY, "bad_answer", 0, 0,
     "Just a moment"},
    {TRYON_OK, 200, "", 0, TRYON_VERDICT_RETRY, "bad_answer", 0, 0, NULL},
    {TRYON_OK, 200, "[1,2]", 0, TRYON_VERDICT_RETRY, "bad_answer", 0, 0, NULL},
    {TRYON_OK, 200, "{\"code\":200} trailing", 0, TRYON_VERDICT_RETRY, "bad_answer", 0, 0, NULL},
    {TRYON_OK, 200, "{\"msg\":\"no code\"}", 0, TRYON_VERDICT_FINAL, "bad_answer", 0, 0, NULL},
    {TRYON_OK, 200, "{\"code\":200,\"msg\":\"success\",\"data\":{}}", 0, TRYON_VERDICT_FINAL,
     "bad_answer", 200, 0, NULL},
    {TRYON_OK, 200, "{\"code\":200,\"msg\":\"success\",\"data\":null}", 0, TRYON_VERDICT_FINAL,
     "bad_answer", 200, 0, NULL},
    {TRYON_OK, 200, "{\"code\":200,\"data\":{\"taskId\":\"\"}}", 0, TRYON_VERDICT_FINAL,
     "bad_answer", 200, 0, NULL},
    {TRYON_OK, 200, "{\"code\":200,\"data\":{\"taskId\":123}}", 0, TRYON_VERDICT_FINAL,
     "bad_answer", 200, 0, NULL},
    /* HTTP-level errors. */
    {TRYON_E_UPSTREAM, 403, "error code: 1010", 0, TRYON_VERDICT_FINAL, "user_agent_refused", 0, 0,
     "User-Agent"},
    {TRYON_E_UPSTREAM, 403, "forbidden", 0, TRYON_VERDICT_FINAL, "forbidden", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 401, "{\"code\":401,\"msg\":\"You do not have access\"}", 0,
     TRYON_VERDICT_FINAL, "unauthorized", 401, 0, "access"},
    {TRYON_E_UPSTREAM, 401, "", 0, TRYON_VERDICT_FINAL, "unauthorized", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 402, "", 0, TRYON_VERDICT_FINAL, "provider_out_of_credits", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 404, "Not Found", 0, TRYON_VERDICT_FINAL, "not_found", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 400, "{\"code\":422,\"msg\":\"prompt too long\"}", 0, TRYON_VERDICT_FINAL,
     "validation", 422, 0, "prompt too long"},
    {TRYON_E_UPSTREAM, 429, "{\"code\":429,\"msg\":\"slow down\"}", 90000, TRYON_VERDICT_RETRY,
     "rate_limited", 429, 90000, NULL},
    {TRYON_E_UPSTREAM, 429, "Too Many Requests", 3000, TRYON_VERDICT_RETRY, "rate_limited", 0, 3000,
     NULL},
    {TRYON_E_UPSTREAM, 408, "", 0, TRYON_VERDICT_RETRY, "timeout", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 502, "<html>bad gateway</html>", 0, TRYON_VERDICT_RETRY, "server_error", 0,
     0, "bad gateway"},
    {TRYON_E_UPSTREAM, 503, "", 120000, TRYON_VERDICT_RETRY, "server_error", 0, 120000, NULL},
    {TRYON_E_UPSTREAM, 500, "{\"code\":500,\"msg\":\"internal\"}", 0, TRYON_VERDICT_RETRY,
     "server_error", 500, 0, NULL},
    {TRYON_E_UPSTREAM, 405, "", 0, TRYON_VERDICT_FINAL, "bad_request", 0, 0, NULL},
    {TRYON_E_UPSTREAM, 301, "", 0, TRYON_VERDICT_FINAL, "bad_answer", 0, 0, NULL},
    /* The transfer itself. */
    {TRYON_E_NETWORK, 0, "", 0, TRYON_VERDICT_RETRY, "network", 0, 0, NULL},
    {TRYON_E_TIMEOUT, 0, "", 0, TRYON_VERDICT_RETRY, "timeout", 0, 0, NULL},
    {TRYON_E_TOO_LARGE, 200, "", 0, TRYON_VERDICT_FINAL, "bad_answer", 0, 0, NULL},
    {TRYON_E_NOMEM, 0, "", 0, TRYON_VERDICT_RETRY, "internal", 0, 0, NULL},
    {TRYON_E_INVALID, 0, "", 0, TRYON_VERDICT_FINAL, "internal", 0, 0, NULL},
    {TRYON_OK, 0, "", 0, TRYON_VERDICT_RETRY, "network", 0, 0, NULL},
};

static void test_kie__verdicts(void **state) {
  for (size_t i = 0; i < ARRAY_LEN(verdicts); i++) {
    const verdict_case *c = &verdicts[i];
    tryon_http_response resp = resp_make(c->status, c->body, c->retry_after);
    char task_id[TRYON_KIE_TASK_ID_MAX];
    tryon_verdict v;
    memset(&v, 0xAB, sizeof v);
    bool ok = tryon_kie_parse_create(&resp, c->http_st, task_id, &v);
    if (v.next != c->next || strcmp(v.code, c->code) != 0 || v.provider_code != c->provider_code ||
        v.retry_after_ms != c->want_retry_after || v.http_status != c->status)
      fail_msg("case %zu (%ld %s): next %d code \"%s\" provider_code %d retry %lld http %ld", i,
               c->status, c->body, (int)v.next, v.code, v.provider_code,
               (long long)v.retry_after_ms, v.http_status);
    assert_int_equal(ok, c->next == TRYON_VERDICT_OK);
    if (c->detail_has != NULL && strstr(v.detail, c->detail_has) == NULL)
      fail_msg("case %zu: detail \"%s\" lacks \"%s\"", i, v.detail, c->detail_has);
    if (ok)
      assert_string_equal(task_id, "task_1");
    else
      assert_string_equal(task_id, "");
    tryon_http_response_release(&resp);
  }
  /* No response at all. */
  tryon_verdict v;
  char task_id[TRYON_KIE_TASK_ID_MAX];
  assert_false(tryon_kie_parse_create(NULL, TRYON_E_NETWORK, task_id, &v));
  assert_int_equal(v.next, TRYON_VERDICT_RETRY);
  assert_string_equal(v.code, "network");
}

static void test_kie__detail_is_clean_and_bounded(void **state) {
  tryon_buf body;
  tryon_buf_init(&body, 1 << 20);
  assert_int_equal(tryon_buf_append_str(&body, "{\"code\":400,\"msg\":\"line1\\nline2 "), TRYON_OK);
  for (int i = 0; i < 200; i++)
    assert_int_equal(tryon_buf_append_str(&body, "\xC3\xA9"), TRYON_OK); /* é */
  assert_int_equal(tryon_buf_append_str(&body, "\"}"), TRYON_OK);
  tryon_http_response resp = resp_make(200, body.data, 0);
  char id[TRYON_KIE_TASK_ID_MAX];
  tryon_verdict v;
  assert_false(tryon_kie_parse_create(&resp, TRYON_OK, id, &v));
  assert_string_equal(v.code, "bad_request");
  assert_null(strchr(v.detail, '\n'));
  assert_int_equal(strncmp(v.detail, "line1 line2 ", 12), 0);
  size_t n = strlen(v.detail);
  assert_true(n < sizeof v.detail);
  /* Cut at a character boundary: the text ends with a whole é. */
  assert_int_equal((unsigned char)v.detail[n - 1], 0xA9);
  assert_int_equal((unsigned char)v.detail[n - 2], 0xC3);
  tryon_http_response_release(&resp);
  tryon_buf_release(&body);
}

/* ------------------------------------------------------------------------- upload */

static void test_kie__parse_upload(void **state) {
  const struct {
    const char *body;
    size_t cap;
    tryon_verdict_next next;
    const char *code;
    const char *url;
  } cases[] = {
      {"{\"success\":true,\"code\":200,\"msg\":\"File uploaded successfully\",\"data\":{"
       "\"fileName\":\"x.png\",\"filePath\":\"tryon/x.png\",\"downloadUrl\":"
       "\"https://tempfile.redpandaai.co/xxx/tryon/x.png\",\"fileSize\":154832,\"mimeType\":"
       "\"image/png\",\"uploadedAt\":\"2025-01-01T12:00:00.000Z\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_OK, "", "https://tempfile.redpandaai.co/xxx/tryon/x.png"},
      /* fileUrl only as a fallback. */
      {"{\"success\":true,\"code\":200,\"data\":{\"fileUrl\":\"https://f.example/a.png\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_OK, "", "https://f.example/a.png"},
      {"{\"success\":true,\"code\":200,\"data\":{\"fileUrl\":\"https://f.example/old.png\","
       "\"downloadUrl\":\"https://d.example/new.png\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_OK, "", "https://d.example/new.png"},
      {"{\"success\":true,\"code\":200,\"data\":{\"downloadUrl\":\"\",\"fileUrl\":"
       "\"https://f.example/a.png\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_OK, "", "https://f.example/a.png"},
      /* `success` alone, without code. */
      {"{\"success\":true,\"data\":{\"downloadUrl\":\"https://d.example/a.png\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_OK, "", "https://d.example/a.png"},
      {"{\"success\":false,\"code\":200,\"msg\":\"upload failed\"}", TRYON_KIE_URL_MAX,
       TRYON_VERDICT_FINAL, "bad_answer", ""},
      {"{\"success\":false,\"code\":401,\"msg\":\"bad key\"}", TRYON_KIE_URL_MAX,
       TRYON_VERDICT_FINAL, "unauthorized", ""},
      {"{\"success\":true,\"code\":200,\"data\":{\"filePath\":\"tryon/x.png\"}}", TRYON_KIE_URL_MAX,
       TRYON_VERDICT_FINAL, "bad_answer", ""},
      {"{\"success\":true,\"code\":200,\"data\":{\"downloadUrl\":\"/relative/x.png\"}}",
       TRYON_KIE_URL_MAX, TRYON_VERDICT_FINAL, "bad_answer", ""},
      {"{\"success\":true,\"code\":200,\"data\":{\"downloadUrl\":\"https://d.example/a.png\"}}", 10,
       TRYON_VERDICT_FINAL, "bad_answer", ""},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_http_response resp = resp_make(200, cases[i].body, 0);
    char url[TRYON_KIE_URL_MAX];
    tryon_verdict v;
    memset(url, 'z', sizeof url);
    bool ok = tryon_kie_parse_upload(&resp, TRYON_OK, url, cases[i].cap, &v);
    if (v.next != cases[i].next || strcmp(v.code, cases[i].code) != 0 ||
        strcmp(url, cases[i].url) != 0)
      fail_msg("case %zu: next %d code \"%s\" url \"%.40s\" (%s)", i, (int)v.next, v.code, url,
               v.detail);
    assert_int_equal(ok, cases[i].next == TRYON_VERDICT_OK);
    tryon_http_response_release(&resp);
  }
}

/* --------------------------------------------------------------------- recordInfo */

#define REC(state_, rest)                                                                   \
  "{\"code\":200,\"message\":\"success\",\"data\":{\"taskId\":\"task_12345678\",\"model\":" \
  "\"google/nano-banana-edit\",\"state\":\"" state_ "\",\"param\":\"{}\"" rest              \
  ",\"costTime\":0,\"createTime\":1698765400000,\"updateTime\":1698765432000}}"

static void test_kie__parse_record(void **state) {
  const struct {
    long status;
    const char *body;
    tryon_verdict_next next;
    const char *code;
    tryon_kie_state st;
    const char *task_id;
    const char *url;
    const char *fail_code;
    const char *fail_msg;
    const char *detail_has;
  } cases[] = {
      /* The documented success: resultJson is a string to parse again. */
      {200,
       REC("success", ",\"resultJson\":\"{\\\"resultUrls\\\":[\\\"https://r.example/image.jpg\\\"]"
                      "}\",\"failCode\":\"\",\"failMsg\":\"\",\"completeTime\":1698765432000"),
       TRYON_VERDICT_OK, "", TRYON_KIE_SUCCESS, "task_12345678", "https://r.example/image.jpg", "",
       "", NULL},
      /* resultJson already an object. */
      {200,
       REC("success", ",\"resultJson\":{\"resultUrls\":[\"https://r.example/b.png\","
                      "\"https://r.example/c.png\"]}"),
       TRYON_VERDICT_OK, "", TRYON_KIE_SUCCESS, "task_12345678", "https://r.example/b.png", "", "",
       NULL},
      /* Not yet: every step on the way, resultJson "" or null, failCode null. */
      {200, REC("waiting", ",\"resultJson\":\"\",\"failCode\":null,\"failMsg\":null"),
       TRYON_VERDICT_OK, "", TRYON_KIE_WAITING, "task_12345678", "", "", "", NULL},
      {200, REC("queuing", ",\"resultJson\":null"), TRYON_VERDICT_OK, "", TRYON_KIE_QUEUING,
       "task_12345678", "", "", "", NULL},
      {200, REC("generating", ""), TRYON_VERDICT_OK, "", TRYON_KIE_GENERATING, "task_12345678", "",
       "", "", NULL},
      /* An unknown state polls on. */
      {200, REC("paused", ""), TRYON_VERDICT_OK, "", TRYON_KIE_UNKNOWN, "task_12345678", "", "", "",
       "paused"},
      /* Success before its result: ask again. */
      {200, REC("success", ",\"resultJson\":\"\""), TRYON_VERDICT_RETRY, "pending",
       TRYON_KIE_WAITING, "", "", "", "", NULL},
      {200, REC("success", ",\"resultJson\":null"), TRYON_VERDICT_RETRY, "pending",
       TRYON_KIE_WAITING, "", "", "", "", NULL},
      {200, REC("success", ",\"resultJson\":\"{\\\"resultUrls\\\":[]}\""), TRYON_VERDICT_RETRY,
       "pending", TRYON_KIE_WAITING, "", "", "", "", NULL},
      {200, REC("success", ",\"resultJson\":\"not json\""), TRYON_VERDICT_RETRY, "pending",
       TRYON_KIE_WAITING, "", "", "", "", NULL},
      /* Failures: failCode/failMsg "" or null; moderation becomes content_refused. */
      {200, REC("fail", ",\"resultJson\":\"\",\"failCode\":null,\"failMsg\":null"),
       TRYON_VERDICT_FINAL, "generation_failed", TRYON_KIE_FAIL, "task_12345678", "", "", "", NULL},
      {200, REC("fail", ",\"failCode\":\"500\",\"failMsg\":\"Internal error, please try again\""),
       TRYON_VERDICT_FINAL, "generation_failed", TRYON_KIE_FAIL, "task_12345678", "", "500",
       "Internal error, please try again", "Internal error"},
      {200,
       REC("fail", ",\"failCode\":\"\",\"failMsg\":\"Your content was flagged by our moderation "
                   "system\""),
       TRYON_VERDICT_FINAL, "content_refused", TRYON_KIE_FAIL, "task_12345678", "", "",
       "Your content was flagged by our moderation system", "moderation"},
      {200, REC("fail", ",\"failCode\":\"IMAGE_SAFETY\",\"failMsg\":\"\""), TRYON_VERDICT_FINAL,
       "content_refused", TRYON_KIE_FAIL, "task_12345678", "", "IMAGE_SAFETY", "", NULL},
      {200, REC("fail", ",\"failCode\":422,\"failMsg\":\"NSFW content detected\""),
       TRYON_VERDICT_FINAL, "content_refused", TRYON_KIE_FAIL, "task_12345678", "", "422",
       "NSFW content detected", NULL},
      {200, REC("fail", ",\"failMsg\":\"Violates our content policy\""), TRYON_VERDICT_FINAL,
       "content_refused", TRYON_KIE_FAIL, "task_12345678", "", "", "Violates our content policy",
       NULL},
      /* A failed task inside a 501 envelope; a 501 without state still ends it. */
      {200,
       "{\"code\":501,\"msg\":\"generation failed\",\"data\":{\"taskId\":\"t9\",\"state\":\"fail\","
       "\"failCode\":\"\",\"failMsg\":\"\"}}",
       TRYON_VERDICT_FINAL, "generation_failed", TRYON_KIE_FAIL, "t9", "", "", "", NULL},
      {200, "{\"code\":501,\"msg\":\"blocked by safety filter\",\"data\":{\"taskId\":\"t9\"}}",
       TRYON_VERDICT_FINAL, "content_refused", TRYON_KIE_FAIL, "t9", "", "", "", "safety"},
      /* An unknown taskId. */
      {200, "{\"code\":422,\"msg\":\"recordInfo is null\",\"data\":null}", TRYON_VERDICT_FINAL,
       "not_found", TRYON_KIE_WAITING, "", "", "", "", NULL},
      /* Errors wrapped the usual ways. */
      {200, "{\"code\":455,\"msg\":\"maintenance\"}", TRYON_VERDICT_RETRY, "maintenance",
       TRYON_KIE_WAITING, "", "", "", "", NULL},
      {200, "{\"code\":200,\"msg\":\"success\"}", TRYON_VERDICT_FINAL, "bad_answer",
       TRYON_KIE_WAITING, "", "", "", "", NULL},
      {200, "{\"code\":200,\"msg\":\"success\",\"data\":{\"taskId\":\"t1\"}}", TRYON_VERDICT_OK, "",
       TRYON_KIE_UNKNOWN, "t1", "", "", "", "(none)"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_http_response resp = resp_make(cases[i].status, cases[i].body, 0);
    tryon_kie_task t;
    tryon_verdict v;
    memset(&t, 0x5A, sizeof t);
    bool ok = tryon_kie_parse_record(&resp, TRYON_OK, &t, &v);
    if (v.next != cases[i].next || strcmp(v.code, cases[i].code) != 0 || t.state != cases[i].st ||
        strcmp(t.task_id, cases[i].task_id) != 0 || strcmp(t.result_url, cases[i].url) != 0 ||
        strcmp(t.fail_code, cases[i].fail_code) != 0 || strcmp(t.fail_msg, cases[i].fail_msg) != 0)
      fail_msg("case %zu: next %d code \"%s\" state %s id \"%s\" url \"%s\" fail \"%s\"/\"%s\" "
               "(%s)",
               i, (int)v.next, v.code, tryon_kie_state_name(t.state), t.task_id, t.result_url,
               t.fail_code, t.fail_msg, v.detail);
    assert_int_equal(ok, cases[i].next == TRYON_VERDICT_OK);
    if (cases[i].detail_has != NULL && strstr(v.detail, cases[i].detail_has) == NULL)
      fail_msg("case %zu: detail \"%s\" lacks \"%s\"", i, v.detail, cases[i].detail_has);
    tryon_http_response_release(&resp);
  }

  assert_true(tryon_kie_state_done(TRYON_KIE_SUCCESS));
  assert_true(tryon_kie_state_done(TRYON_KIE_FAIL));
  assert_false(tryon_kie_state_done(TRYON_KIE_WAITING));
  assert_false(tryon_kie_state_done(TRYON_KIE_QUEUING));
  assert_false(tryon_kie_state_done(TRYON_KIE_GENERATING));
  assert_false(tryon_kie_state_done(TRYON_KIE_UNKNOWN));
  assert_string_equal(tryon_kie_state_name(TRYON_KIE_QUEUING), "queuing");
  assert_string_equal(tryon_kie_state_name((tryon_kie_state)42), "unknown");
}

/* ---------------------------------------------------------------------- callbacks */

static void test_kie__parse_callback(void **state) {
  const struct {
    const char *body;
    tryon_status want;
    tryon_verdict_next next;
    const char *code;
    tryon_kie_state st;
    const char *task_id;
    const char *url;
    int provider_code;
  } cases[] = {
      {"{\"code\":200,\"msg\":\"Image generated successfully.\",\"data\":{\"taskId\":\"t_1\","
       "\"state\":\"success\",\"resultJson\":\"{\\\"resultUrls\\\":[\\\"https://r.example/"
       "a.png\\\"]}\",\"failCode\":null,\"failMsg\":null}}",
       TRYON_OK, TRYON_VERDICT_OK, "", TRYON_KIE_SUCCESS, "t_1", "https://r.example/a.png", 200},
      /* task_id instead of taskId; no state but a result. */
      {"{\"code\":200,\"msg\":\"ok\",\"data\":{\"task_id\":\"t_2\",\"resultJson\":{\"resultUrls\":"
       "[\"https://r.example/b.png\"]}}}",
       TRYON_OK, TRYON_VERDICT_OK, "", TRYON_KIE_SUCCESS, "t_2", "https://r.example/b.png", 200},
      {"{\"code\":501,\"msg\":\"Image generation failed\",\"data\":{\"task_id\":\"t_3\","
       "\"state\":\"fail\",\"failCode\":\"\",\"failMsg\":\"\"}}",
       TRYON_OK, TRYON_VERDICT_FINAL, "generation_failed", TRYON_KIE_FAIL, "t_3", "", 501},
      {"{\"code\":501,\"msg\":\"Rejected by content moderation\",\"data\":{\"taskId\":\"t_4\"}}",
       TRYON_OK, TRYON_VERDICT_FINAL, "content_refused", TRYON_KIE_FAIL, "t_4", "", 501},
      /* The id beside data. */
      {"{\"code\":200,\"taskId\":\"t_5\",\"data\":{\"state\":\"generating\"}}", TRYON_OK,
       TRYON_VERDICT_OK, "", TRYON_KIE_GENERATING, "t_5", "", 200},
      /* Another code: its own verdict, still a task to poll. */
      {"{\"code\":500,\"msg\":\"oops\",\"data\":{\"taskId\":\"t_6\"}}", TRYON_OK,
       TRYON_VERDICT_RETRY, "server_error", TRYON_KIE_WAITING, "t_6", "", 500},
      /* Not a kie callback. */
      {"{\"code\":200,\"data\":{\"state\":\"success\"}}", TRYON_E_INVALID, TRYON_VERDICT_FINAL,
       "bad_answer", TRYON_KIE_SUCCESS, "", "", 200},
      {"{\"code\":200,\"msg\":\"ok\"}", TRYON_E_INVALID, TRYON_VERDICT_FINAL, "bad_answer",
       TRYON_KIE_WAITING, "", "", 0},
      {"not json", TRYON_E_INVALID, TRYON_VERDICT_FINAL, "bad_answer", TRYON_KIE_WAITING, "", "",
       0},
      {"[]", TRYON_E_INVALID, TRYON_VERDICT_FINAL, "bad_answer", TRYON_KIE_WAITING, "", "", 0},
      {"", TRYON_E_INVALID, TRYON_VERDICT_FINAL, "bad_answer", TRYON_KIE_WAITING, "", "", 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_kie_task t;
    tryon_verdict v;
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_kie_parse_callback(cases[i].body, strlen(cases[i].body), &t, &v, &err);
    if (st != cases[i].want || v.next != cases[i].next || strcmp(v.code, cases[i].code) != 0 ||
        (st == TRYON_OK && (t.state != cases[i].st || strcmp(t.task_id, cases[i].task_id) != 0 ||
                            strcmp(t.result_url, cases[i].url) != 0)) ||
        v.provider_code != cases[i].provider_code)
      fail_msg("case %zu: %s next %d code \"%s\" state %s id \"%s\" url \"%s\" body %d (%s)", i,
               tryon_status_name(st), (int)v.next, v.code, tryon_kie_state_name(t.state), t.task_id,
               t.result_url, v.provider_code, err.message);
  }
  /* A body that is not NUL-terminated: only len bytes are read. */
  const char framed[] = "{\"code\":200,\"data\":{\"taskId\":\"t_7\",\"state\":\"queuing\"}}GARBAGE";
  tryon_kie_task t;
  tryon_verdict v;
  assert_int_equal(tryon_kie_parse_callback(framed, strlen(framed) - 7, &t, &v, NULL), TRYON_OK);
  assert_string_equal(t.task_id, "t_7");
  assert_int_equal(t.state, TRYON_KIE_QUEUING);
  assert_int_equal(tryon_kie_parse_callback(NULL, 3, &t, &v, NULL), TRYON_E_INVALID);
}

#define HOOK_KEY "kie-webhook-key-0123"
#define HOOK_TASK "task_google_1765178615729"
#define HOOK_TS "1765178700"
/* base64(HMAC-SHA256(HOOK_KEY, HOOK_TASK "." HOOK_TS)), computed with Python's hmac. */
#define HOOK_SIG "gWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3CU="

static void test_kie__callback_verify(void **state) {
  const int64_t now = 1765178700;
  const struct {
    const char *key;
    const char *ts;
    const char *sig;
    const char *task;
    int64_t now;
    int64_t skew;
    tryon_status want;
    const char *msg_has;
  } cases[] = {
      {HOOK_KEY, HOOK_TS, HOOK_SIG, HOOK_TASK, now, 300, TRYON_OK, NULL},
      {HOOK_KEY, HOOK_TS, " " HOOK_SIG " ", HOOK_TASK, now, 300, TRYON_OK, NULL},
      /* Unpadded, and the URL-safe alphabet. */
      {HOOK_KEY, HOOK_TS, "gWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3CU", HOOK_TASK, now, 300,
       TRYON_OK, NULL},
      {HOOK_KEY, HOOK_TS, "gWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3CU", HOOK_TASK, now + 300, 300,
       TRYON_OK, NULL},
      {HOOK_KEY, HOOK_TS, HOOK_SIG, HOOK_TASK, now - 300, 300, TRYON_OK, NULL},
      /* Bad. */
      {HOOK_KEY, HOOK_TS, "hWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3CU=", HOOK_TASK, now, 300,
       TRYON_E_FORBIDDEN, "does not match"},
      {HOOK_KEY, HOOK_TS, HOOK_SIG, "task_other", now, 300, TRYON_E_FORBIDDEN, "does not match"},
      {"another-key", HOOK_TS, HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "does not match"},
      {HOOK_KEY, "1765178701", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "does not match"},
      {HOOK_KEY, HOOK_TS, "gWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3C", HOOK_TASK, now, 300,
       TRYON_E_FORBIDDEN, "does not match"},
      {HOOK_KEY, HOOK_TS, "gWrDWZahrE33OkBmfPqPSXGJAt3bc6dQqiBsU7ox3CU=!", HOOK_TASK, now, 300,
       TRYON_E_FORBIDDEN, "malformed signature"},
      /* Stale and future. */
      {HOOK_KEY, HOOK_TS, HOOK_SIG, HOOK_TASK, now + 301, 300, TRYON_E_FORBIDDEN, "skew"},
      {HOOK_KEY, HOOK_TS, HOOK_SIG, HOOK_TASK, now - 301, 300, TRYON_E_FORBIDDEN, "skew"},
      {HOOK_KEY, "1765178700000", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "skew"},
      /* Missing or malformed headers. */
      {HOOK_KEY, NULL, HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "missing"},
      {HOOK_KEY, HOOK_TS, NULL, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "missing"},
      {HOOK_KEY, "", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "missing"},
      {HOOK_KEY, HOOK_TS, "", HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "missing"},
      {HOOK_KEY, "-1765178700", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "timestamp"},
      {HOOK_KEY, "1765178700.5", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN, "timestamp"},
      {HOOK_KEY, "99999999999999999999", HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_FORBIDDEN,
       "timestamp"},
      /* The caller's mistakes. */
      {"", HOOK_TS, HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_INVALID, NULL},
      {NULL, HOOK_TS, HOOK_SIG, HOOK_TASK, now, 300, TRYON_E_INVALID, NULL},
      {HOOK_KEY, HOOK_TS, HOOK_SIG, "", now, 300, TRYON_E_INVALID, NULL},
      {HOOK_KEY, HOOK_TS, HOOK_SIG, HOOK_TASK, now, -1, TRYON_E_INVALID, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_kie_callback_verify(cases[i].key, cases[i].ts, cases[i].sig,
                                                cases[i].task, cases[i].now, cases[i].skew, &err);
    if (st != cases[i].want)
      fail_msg("case %zu: %s, want %s (%s)", i, tryon_status_name(st),
               tryon_status_name(cases[i].want), err.message);
    if (cases[i].msg_has != NULL && strstr(err.message, cases[i].msg_has) == NULL)
      fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.message, cases[i].msg_has);
    /* Never the key nor the expected signature in a message. */
    assert_null(strstr(err.message, HOOK_KEY));
    assert_null(strstr(err.message, "gWrDWZ"));
  }
}

/* ------------------------------------------------------------------------ polling */

static void test_kie__poll_delays(void **state) {
  const int64_t want[] = {2500, 2500, 4000, 6000, 8000, 10000, 10000, 10000};
  int64_t total = 0;
  int polls = 0;

  for (size_t i = 0; i < ARRAY_LEN(want); i++)
    assert_int_equal(tryon_kie_poll_delay_ms((int)i), want[i]);
  assert_int_equal(tryon_kie_poll_delay_ms(-5), 2500);
  assert_int_equal(tryon_kie_poll_delay_ms(1 << 30), 10000);
  /* Start at 2-3 s, never past 10 s, and the limit is 15 minutes. */
  assert_int_equal(TRYON_KIE_POLL_LIMIT_MS, 15 * 60 * 1000);
  while (total + tryon_kie_poll_delay_ms(polls) <= TRYON_KIE_POLL_LIMIT_MS)
    total += tryon_kie_poll_delay_ms(polls++);
  assert_true(polls > 80 && polls < 100);
}

/* ----------------------------------------------------------------- on the wire */

static struct {
  struct MHD_Daemon *d;
  int port;
  pthread_mutex_t mu;
  /* What to answer. */
  int status;
  char answer[2048];
  /* What the last request was. */
  char method[16];
  char path[256];
  char task_id_arg[256];
  char auth[256];
  char user_agent[256];
  char content_type[256];
  tryon_buf body;
  int hits;
} wire = {.mu = PTHREAD_MUTEX_INITIALIZER};

static tryon_buf logs;

static void capture_sink(tryon_log_level level, const char *line, void *ud) {
  (void)tryon_buf_append_str(&logs, line);
  (void)tryon_buf_append_str(&logs, "\n");
}

static void copy_hdr(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *name, char *out,
                     size_t cap) {
  const char *v = MHD_lookup_connection_value(c, kind, name);
  snprintf(out, cap, "%s", v != NULL ? v : "");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  tryon_buf *body = *con_cls;
  if (body == NULL) {
    body = malloc(sizeof *body);
    if (body == NULL)
      return MHD_NO;
    tryon_buf_init(body, 32u << 20);
    *con_cls = body;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    if (tryon_buf_append(body, upload, *upload_size) != TRYON_OK)
      return MHD_NO;
    *upload_size = 0;
    return MHD_YES;
  }
  pthread_mutex_lock(&wire.mu);
  wire.hits++;
  snprintf(wire.method, sizeof wire.method, "%s", method);
  snprintf(wire.path, sizeof wire.path, "%s", url);
  copy_hdr(c, MHD_GET_ARGUMENT_KIND, "taskId", wire.task_id_arg, sizeof wire.task_id_arg);
  copy_hdr(c, MHD_HEADER_KIND, "Authorization", wire.auth, sizeof wire.auth);
  copy_hdr(c, MHD_HEADER_KIND, "User-Agent", wire.user_agent, sizeof wire.user_agent);
  copy_hdr(c, MHD_HEADER_KIND, "Content-Type", wire.content_type, sizeof wire.content_type);
  tryon_buf_reset(&wire.body);
  (void)tryon_buf_append(&wire.body, body->data, body->len);
  char *answer = strdup(wire.answer);
  int status = wire.status;
  pthread_mutex_unlock(&wire.mu);
  if (answer == NULL)
    return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(answer), answer, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  tryon_buf *body = *con_cls;
  if (body != NULL) {
    tryon_buf_release(body);
    free(body);
    *con_cls = NULL;
  }
}

static void wire_answer(int status, const char *answer) {
  pthread_mutex_lock(&wire.mu);
  wire.status = status;
  snprintf(wire.answer, sizeof wire.answer, "%s", answer);
  pthread_mutex_unlock(&wire.mu);
}

static int wire_setup(void **state) {
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_http_global_init(&err) != TRYON_OK)
    fail_msg("global init: %s", err.message);
  tryon_buf_init(&wire.body, 32u << 20);
  wire.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                            NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
  if (wire.d == NULL)
    fail_msg("the loopback server did not start");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(wire.d, MHD_DAEMON_INFO_BIND_PORT);
  if (info == NULL || info->port == 0)
    fail_msg("the loopback server has no port");
  wire.port = info->port;
  tryon_buf_init(&logs, 1 << 20);
  tryon_log_set_level(TRYON_LOG_DEBUG);
  tryon_log_set_sink(capture_sink, NULL);
  return 0;
}

static int wire_teardown(void **state) {
  tryon_log_set_sink(NULL, NULL);
  tryon_log_set_level(TRYON_LOG_INFO);
  MHD_stop_daemon(wire.d);
  tryon_buf_release(&wire.body);
  tryon_buf_release(&logs);
  tryon_http_global_cleanup();
  return 0;
}

static bool body_has(const char *needle, size_t n) {
  const char *b = wire.body.data;
  for (size_t i = 0; n <= wire.body.len && i + n <= wire.body.len; i++)
    if (memcmp(b + i, needle, n) == 0)
      return true;
  return false;
}

static void test_kie__on_the_wire(void **state) {
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", wire.port);
  tryon_kie_config cfg = {.api_url = base, .upload_url = base, .api_key = KEY};
  static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0xFF, 7};
  tryon_kie_request r;
  tryon_http_response resp;
  tryon_verdict v;
  tryon_err err;
  tryon_status st;
  tryon_err_clear(&err);

  /* Upload: multipart with file, uploadPath and fileName; the key as a Bearer. */
  wire_answer(200, "{\"success\":true,\"code\":200,\"msg\":\"File uploaded successfully\","
                   "\"data\":{\"downloadUrl\":\"https://tempfile.redpandaai.co/x/tryon/p.png\"}}");
  assert_int_equal(tryon_kie_upload_request(&cfg, png, sizeof png, "image/png", "p.png", &r, &err),
                   TRYON_OK);
  st = tryon_http_perform(&r.http, &resp, &err);
  tryon_kie_request_release(&r);
  char url[TRYON_KIE_URL_MAX];
  assert_true(tryon_kie_parse_upload(&resp, st, url, sizeof url, &v));
  assert_string_equal(url, "https://tempfile.redpandaai.co/x/tryon/p.png");
  tryon_http_response_release(&resp);
  assert_string_equal(wire.method, "POST");
  assert_string_equal(wire.path, "/api/file-stream-upload");
  assert_string_equal(wire.auth, "Bearer " KEY);
  assert_int_equal(strncmp(wire.user_agent, "tryon/", 6), 0);
  assert_int_equal(strncmp(wire.content_type, "multipart/form-data", 19), 0);
  assert_true(body_has("name=\"file\"; filename=\"p.png\"", 29));
  assert_true(body_has("Content-Type: image/png", 23));
  assert_true(body_has((const char *)png, sizeof png));
  assert_true(body_has("name=\"uploadPath\"\r\n\r\ntryon\r\n", 28));
  assert_true(body_has("name=\"fileName\"\r\n\r\np.png\r\n", 26));

  /* createTask: the JSON body as built. */
  const char *urls[] = {"https://tempfile.redpandaai.co/x/tryon/p.png"};
  cfg.user_agent = "tryon-wire/2";
  wire_answer(200, "{\"code\":200,\"msg\":\"success\",\"data\":{\"taskId\":\"task_w_1\"}}");
  assert_int_equal(tryon_kie_create_request(&cfg, "try it on", urls, 1, "png", "3:4", &r, &err),
                   TRYON_OK);
  st = tryon_http_perform(&r.http, &resp, &err);
  tryon_kie_request_release(&r);
  char task_id[TRYON_KIE_TASK_ID_MAX];
  assert_true(tryon_kie_parse_create(&resp, st, task_id, &v));
  assert_string_equal(task_id, "task_w_1");
  tryon_http_response_release(&resp);
  assert_string_equal(wire.path, "/api/v1/jobs/createTask");
  assert_string_equal(wire.user_agent, "tryon-wire/2");
  assert_int_equal(strncmp(wire.content_type, "application/json", 16), 0);
  cJSON *sent = cJSON_ParseWithLength(wire.body.data, wire.body.len);
  assert_non_null(sent);
  cJSON *in = cJSON_GetObjectItemCaseSensitive(sent, "input");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "prompt")->valuestring, "try it on");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(in, "aspect_ratio")->valuestring, "3:4");
  cJSON_Delete(sent);

  /* An error in a 200 answer, then Cloudflare's 403 1010, on recordInfo. */
  wire_answer(200, "{\"code\":455,\"msg\":\"Service maintenance\"}");
  assert_int_equal(tryon_kie_record_request(&cfg, "task w/1", &r, &err), TRYON_OK);
  st = tryon_http_perform(&r.http, &resp, &err);
  tryon_kie_task t;
  assert_false(tryon_kie_parse_record(&resp, st, &t, &v));
  assert_int_equal(v.next, TRYON_VERDICT_RETRY);
  assert_string_equal(v.code, "maintenance");
  tryon_http_response_release(&resp);
  assert_string_equal(wire.method, "GET");
  assert_string_equal(wire.path, "/api/v1/jobs/recordInfo");
  assert_string_equal(wire.task_id_arg, "task w/1");

  wire_answer(403, "error code: 1010");
  st = tryon_http_perform(&r.http, &resp, &err);
  assert_int_equal(st, TRYON_E_UPSTREAM);
  assert_false(tryon_kie_parse_record(&resp, st, &t, &v));
  assert_int_equal(v.next, TRYON_VERDICT_FINAL);
  assert_string_equal(v.code, "user_agent_refused");
  tryon_http_response_release(&resp);

  wire_answer(200, REC("success", ",\"resultJson\":\"{\\\"resultUrls\\\":[\\\"https://r.example/"
                                  "w.png\\\"]}\""));
  st = tryon_http_perform(&r.http, &resp, &err);
  assert_true(tryon_kie_parse_record(&resp, st, &t, &v));
  assert_int_equal(t.state, TRYON_KIE_SUCCESS);
  assert_string_equal(t.result_url, "https://r.example/w.png");
  tryon_http_response_release(&resp);
  tryon_kie_request_release(&r);

  /* Lines were written, and none holds the key. */
  assert_non_null(strstr(logs.data, "\"label\":\"kie\""));
  assert_null(strstr(logs.data, "S3CRET"));
  assert_null(strstr(logs.data, "Bearer"));
  assert_null(strstr(logs.data, "task w"));       /* nor the query string */
  assert_null(strstr(logs.data, "task%20w%2F1")); /* in either form */
}

int main(void) {
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_kie__create_request_fields),
      cmocka_unit_test(test_kie__create_request_validation),
      cmocka_unit_test(test_kie__upload_request),
      cmocka_unit_test(test_kie__record_request),
      cmocka_unit_test(test_kie__verdicts),
      cmocka_unit_test(test_kie__detail_is_clean_and_bounded),
      cmocka_unit_test(test_kie__parse_upload),
      cmocka_unit_test(test_kie__parse_record),
      cmocka_unit_test(test_kie__parse_callback),
      cmocka_unit_test(test_kie__callback_verify),
      cmocka_unit_test(test_kie__poll_delays),
  };
  const struct CMUnitTest wired[] = {
      cmocka_unit_test(test_kie__on_the_wire),
  };
  int failed = cmocka_run_group_tests_name("kie", pure, NULL, NULL);
  failed += cmocka_run_group_tests_name("kie_wire", wired, wire_setup, wire_teardown);
  return failed;
}
