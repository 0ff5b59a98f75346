/*
 * The api module without a network: rate limiting, routing, the error shape, security
 * and CORS headers, metrics, the client address; and, on a scratch PostgreSQL, blocked
 * users at sign-in and on authenticated routes. (The same against the running server:
 * tests/integration/test_server.c.)
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <tryon/api.h>
#include <tryon/auth.h>
#include <tryon/users.h>

#include "api/api_internal.h"

#include "api_test.h"
#include "testsupport.h"

/* ------------------------------------------------------------------- rate limiting */

static void test_api__ratelimit_burst_then_refill(void **state) {
  (void)state;
  tryon_ratelimit *rl = tryon_ratelimit_new(2, 3); /* 2/s, burst 3 */
  int retry = 0;
  int64_t t = 1000000;
  for (int i = 0; i < 3; i++)
    assert_true(tryon_ratelimit_take(rl, "ip:a", t, &retry));
  assert_false(tryon_ratelimit_take(rl, "ip:a", t, &retry));
  assert_int_equal(retry, 1);
  /* Another key has its own bucket. */
  assert_true(tryon_ratelimit_take(rl, "ip:b", t, &retry));
  /* 499 ms later: 0.998 of a token, still refused; at 500 ms one token is back. */
  assert_false(tryon_ratelimit_take(rl, "ip:a", t + 499, &retry));
  assert_true(tryon_ratelimit_take(rl, "ip:a", t + 500, &retry));
  assert_false(tryon_ratelimit_take(rl, "ip:a", t + 500, &retry));
  /* A long pause refills to the burst, never beyond. */
  t += 3600 * 1000;
  for (int i = 0; i < 3; i++)
    assert_true(tryon_ratelimit_take(rl, "ip:a", t, &retry));
  assert_false(tryon_ratelimit_take(rl, "ip:a", t, &retry));
  /* A clock that steps back gives nothing and breaks nothing. */
  assert_false(tryon_ratelimit_take(rl, "ip:a", t - 5000, &retry));
  tryon_ratelimit_free(rl);
}

static void test_api__ratelimit_retry_after_rounds_up(void **state) {
  (void)state;
  static const struct {
    int rate;
    int want_retry;
  } cases[] = {{1, 1}, {2, 1}, {1000, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tryon_ratelimit *rl = tryon_ratelimit_new(cases[i].rate, 1);
    int retry = 0;
    assert_true(tryon_ratelimit_take(rl, "k", 0, &retry));
    assert_false(tryon_ratelimit_take(rl, "k", 0, &retry));
    assert_int_equal(retry, cases[i].want_retry);
    tryon_ratelimit_free(rl);
  }
  assert_null(tryon_ratelimit_new(0, 1));
  assert_null(tryon_ratelimit_new(1, 0));
  tryon_ratelimit_free(NULL);
}

static void test_api__ratelimit_memory_is_bounded(void **state) {
  (void)state;
  /* Far more distinct keys than the table holds: every new key is admitted (fresh
   * bucket) and the table neither grows nor fails. */
  tryon_ratelimit *rl = tryon_ratelimit_new(1, 1);
  char key[32];
  for (int i = 0; i < 200000; i++) {
    snprintf(key, sizeof key, "ip:10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    assert_true(tryon_ratelimit_take(rl, key, i, NULL));
  }
  tryon_ratelimit_free(rl);
}

/* ------------------------------------------------------------------ routing and shape */

typedef struct fixture {
  tryon_config cfg;
  tryon_db *db;
  tryon_api *api;
  tryon_fixed_clock clock;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_err err;
  const char *env[] = {"TRYON_DATABASE_URL=host=/nonexistent dbname=x",
                       "TRYON_BOT_TOKEN=12345:test-token",
                       "TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef",
                       "TRYON_PUBLIC_URL=https://app.example.com/base",
                       "TRYON_RATE_LIMIT_IP_RPS=1",
                       "TRYON_RATE_LIMIT_IP_BURST=2",
                       "TRYON_METRICS_TOKEN=unit-metrics-token-0123456789abcdef",
                       NULL};
  assert_int_equal(tryon_config_load(&f->cfg, env, NULL, TRYON_CONFIG_NEED_AUTH, &err), TRYON_OK);
  tryon_db_options dbo = {.conninfo = f->cfg.database_url,
                          .pool_size = 1,
                          .acquire_timeout_ms = 100,
                          .connect_timeout_s = 1};
  assert_int_equal(tryon_db_new(&dbo, &f->db, &err), TRYON_OK);
  tryon_fixed_clock_init(&f->clock, 1800000000000LL);
  tryon_api_options apo = {.cfg = &f->cfg, .db = f->db, .clock = &f->clock.clock};
  assert_int_equal(tryon_api_new(&apo, &f->api, &err), TRYON_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_api_free(f->api);
  tryon_db_free(f->db);
  tryon_config_release(&f->cfg);
  free(f);
  return 0;
}

/* Plans (and, unless done, handles) a body-less request. */
static void serve(fixture *f, const char *method, const char *path, hdrs *h,
                  tryon_api_response *resp, tryon_api_plan *plan) {
  api_serve(f->api, method, path, h, resp, plan);
}

static void assert_error_code(const tryon_api_response *r, const char *code) {
  cJSON *doc = cJSON_Parse(r->body.data);
  assert_non_null(doc);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring, code);
  assert_true(strlen(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring) > 0);
  cJSON_Delete(doc);
}

static void test_api__routing_answers_404_405_and_health(void **state) {
  fixture *f = *state;
  static const struct {
    const char *method;
    const char *path;
    int status;
    const char *code;  /* error code, or NULL for success */
    const char *allow; /* expected Allow header, or NULL */
    bool blocking;
  } cases[] = {
      {"GET", "/healthz", 200, NULL, NULL, false},
      {"GET", "/nope", 404, "not_found", NULL, false},
      {"GET", "/api/me/", 404, "not_found", NULL, false},
      {"DELETE", "/healthz", 405, "method_not_allowed", "GET", false},
      {"GET", "/api/auth/telegram", 405, "method_not_allowed", "POST", false},
      {"POST", "/api/auth/telegram", 0, NULL, NULL, true},
      {"GET", "/api/me", 0, NULL, NULL, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hdrs h = {{NULL}};
    tryon_api_response r;
    tryon_api_plan plan;
    tryon_api_request req = {.method = cases[i].method,
                             .path = cases[i].path,
                             .client_ip = "192.0.2.1",
                             .header = lookup,
                             .header_ud = &h};
    tryon_api_response_init(&r);
    tryon_api_plan_request(f->api, &req, &plan, &r);
    assert_int_equal(plan.blocking, cases[i].blocking);
    if (cases[i].status == 0) { /* handled later, off the event thread */
      assert_false(plan.done);
      tryon_api_response_release(&r);
      continue;
    }
    if (!plan.done)
      tryon_api_handle(f->api, &plan, &req, &r);
    assert_int_equal(r.status, cases[i].status);
    if (cases[i].code != NULL)
      assert_error_code(&r, cases[i].code);
    if (cases[i].allow != NULL)
      assert_string_equal(resp_header(&r, "Allow"), cases[i].allow);
    tryon_api_response_release(&r);
  }
}

static void test_api__every_response_has_security_headers(void **state) {
  fixture *f = *state;
  const char *paths[] = {"/healthz", "/nope"};
  for (size_t i = 0; i < 2; i++) {
    hdrs h = {{NULL}};
    tryon_api_response r;
    tryon_api_plan plan;
    serve(f, "GET", paths[i], &h, &r, &plan);
    assert_string_equal(resp_header(&r, "X-Content-Type-Options"), "nosniff");
    assert_string_equal(resp_header(&r, "X-Frame-Options"), "DENY");
    assert_string_equal(resp_header(&r, "Cache-Control"), "no-store");
    assert_non_null(resp_header(&r, "Content-Security-Policy"));
    assert_non_null(resp_header(&r, "Strict-Transport-Security")); /* https public URL */
    assert_null(resp_header(&r, "Access-Control-Allow-Origin"));   /* no Origin sent */
    tryon_api_response_release(&r);
  }
}

static void test_api__cors_only_for_the_web_app_origin(void **state) {
  fixture *f = *state;
  tryon_api_response r;
  tryon_api_plan plan;

  /* The web app's origin is the public URL's scheme://host. */
  hdrs ok = {{"Origin", "Access-Control-Request-Method"}, {"https://app.example.com", "GET"}};
  serve(f, "OPTIONS", "/api/me", &ok, &r, &plan);
  assert_true(plan.done);
  assert_int_equal(r.status, 204);
  assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin"), "https://app.example.com");
  assert_string_equal(resp_header(&r, "Access-Control-Allow-Methods"), "GET");
  assert_non_null(strstr(resp_header(&r, "Access-Control-Allow-Headers"), "Authorization"));
  tryon_api_response_release(&r);

  hdrs evil = {{"Origin"}, {"https://evil.example.net"}};
  serve(f, "OPTIONS", "/api/me", &evil, &r, &plan);
  assert_int_equal(r.status, 403);
  assert_error_code(&r, "origin_not_allowed");
  assert_null(resp_header(&r, "Access-Control-Allow-Origin"));
  tryon_api_response_release(&r);

  serve(f, "GET", "/healthz", &evil, &r, &plan);
  assert_int_equal(r.status, 200);
  assert_null(resp_header(&r, "Access-Control-Allow-Origin"));
  tryon_api_response_release(&r);

  serve(f, "GET", "/healthz", &ok, &r, &plan);
  assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin"), "https://app.example.com");
  tryon_api_response_release(&r);
}

static void test_api__per_address_limit_answers_429(void **state) {
  fixture *f = *state;
  hdrs h = {{NULL}};
  tryon_api_response r;
  tryon_api_plan plan;
  /* Burst 2: two requests pass the limiter (and fail later, in their handler), the
   * third is refused in the plan with Retry-After. Health checks are never limited. */
  for (int i = 0; i < 2; i++) {
    tryon_api_request req = {.method = "GET",
                             .path = "/api/me",
                             .client_ip = "198.51.100.1",
                             .header = lookup,
                             .header_ud = &h};
    tryon_api_response_init(&r);
    tryon_api_plan_request(f->api, &req, &plan, &r);
    assert_false(plan.done);
    tryon_api_response_release(&r);
  }
  tryon_api_request req = {.method = "GET",
                           .path = "/api/me",
                           .client_ip = "198.51.100.1",
                           .header = lookup,
                           .header_ud = &h};
  tryon_api_response_init(&r);
  tryon_api_plan_request(f->api, &req, &plan, &r);
  assert_true(plan.done);
  assert_int_equal(r.status, 429);
  assert_error_code(&r, "rate_limited");
  assert_string_equal(resp_header(&r, "Retry-After"), "1");
  tryon_api_response_release(&r);
  for (int i = 0; i < 5; i++) {
    serve(f, "GET", "/healthz", &h, &r, &plan);
    assert_int_equal(r.status, 200);
    tryon_api_response_release(&r);
  }
  /* A second later the address may call again. */
  f->clock.ms += 1000;
  tryon_api_response_init(&r);
  tryon_api_plan_request(f->api, &req, &plan, &r);
  assert_false(plan.done);
  tryon_api_response_release(&r);
}

static void test_api__ipv6_addresses_share_their_64(void **state) {
  fixture *f = *state;
  hdrs h = {{NULL}};
  tryon_api_response r;
  tryon_api_plan plan;
  /* Burst 2 per key: two addresses of one /64 use the same bucket, another /64 not. */
  const char *ips[] = {"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::77",
                       "2001:db8:1:3::1"};
  const bool refused[] = {false, false, true, false};
  for (size_t i = 0; i < 4; i++) {
    tryon_api_request req = {
        .method = "GET", .path = "/api/me", .client_ip = ips[i], .header = lookup, .header_ud = &h};
    tryon_api_response_init(&r);
    tryon_api_plan_request(f->api, &req, &plan, &r);
    assert_int_equal(plan.done, refused[i]);
    tryon_api_response_release(&r);
  }
  /* HEAD is served as GET. */
  serve(f, "HEAD", "/healthz", &h, &r, &plan);
  assert_int_equal(r.status, 200);
  tryon_api_response_release(&r);
}

static void test_api__token_problems_are_401_with_their_code(void **state) {
  fixture *f = *state;
  static const struct {
    const char *authorization;
    const char *code;
  } cases[] = {
      {NULL, "token_missing"},
      {"Basic dXNlcjpwYXNz", "token_missing"},
      {"Bearer ", "token_missing"},
      {"Bearer not.a.jwt", "token_malformed"},
      {"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.", "token_bad_alg"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hdrs h = {{"Authorization"}, {cases[i].authorization}};
    if (cases[i].authorization == NULL)
      h.names[0] = NULL;
    tryon_api_response r;
    tryon_api_plan plan;
    /* A fresh address each time, so the per-address limit stays out of the way. */
    char ip[32];
    snprintf(ip, sizeof ip, "203.0.113.%zu", i + 1);
    tryon_api_request req = {
        .method = "GET", .path = "/api/me", .client_ip = ip, .header = lookup, .header_ud = &h};
    tryon_api_response_init(&r);
    tryon_api_plan_request(f->api, &req, &plan, &r);
    assert_false(plan.done);
    tryon_api_handle(f->api, &plan, &req, &r);
    assert_int_equal(r.status, 401);
    assert_error_code(&r, cases[i].code);
    tryon_api_response_release(&r);
  }
}

static void test_api__metrics_count_requests(void **state) {
  fixture *f = *state;
  hdrs h = {{NULL}};
  tryon_api_response r;
  tryon_api_plan plan;
  serve(f, "GET", "/healthz", &h, &r, &plan);
  tryon_api_observe(f->api, &plan, &r, 700);
  tryon_api_response_release(&r);
  serve(f, "GET", "/nope", &h, &r, &plan);
  tryon_api_observe(f->api, &plan, &r, 50);
  tryon_api_response_release(&r);

  /* The metrics token is required on the API port (issue 12, item 5). */
  serve(f, "GET", "/metrics", &h, &r, &plan);
  assert_int_equal(r.status, 401);
  assert_error_code(&r, "metrics_token_invalid");
  tryon_api_response_release(&r);
  hdrs bearer = {{"Authorization"}, {"Bearer unit-metrics-token-0123456789abcdef"}};
  serve(f, "GET", "/metrics", &bearer, &r, &plan);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.content_type, "text/plain"));
  const char *t = r.body.data;
  assert_non_null(
      strstr(t, "tryon_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"));
  assert_non_null(
      strstr(t, "tryon_http_requests_total{method=\"-\",route=\"unmatched\",status=\"404\"} 1"));
  assert_non_null(strstr(t, "tryon_http_request_duration_seconds_bucket{method=\"GET\","
                            "route=\"/healthz\",le=\"0.0005\"} 0"));
  assert_non_null(strstr(t, "tryon_http_request_duration_seconds_bucket{method=\"GET\","
                            "route=\"/healthz\",le=\"0.001\"} 1"));
  assert_non_null(strstr(t, "tryon_db_pool_connections{state=\"max\"} 1"));
  tryon_api_response_release(&r);
}

static void test_api__new_refuses_unusable_settings(void **state) {
  (void)state;
  static const struct {
    const char *env[4];
  } cases[] = {
      {{"TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef", "TRYON_INITDATA_ED25519=true",
        "TRYON_BOT_TOKEN=not-a-number:x", NULL}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tryon_config cfg;
    tryon_err err;
    tryon_db *db = NULL;
    tryon_api *api = NULL;
    assert_int_equal(tryon_config_load(&cfg, cases[i].env, NULL, 0, &err), TRYON_OK);
    tryon_db_options dbo = {.conninfo = "dbname=x", .pool_size = 1, .acquire_timeout_ms = 1};
    assert_int_equal(tryon_db_new(&dbo, &db, &err), TRYON_OK);
    tryon_api_options apo = {.cfg = &cfg, .db = db};
    assert_int_equal(tryon_api_new(&apo, &api, &err), TRYON_E_CONFIG);
    assert_null(api);
    tryon_db_free(db);
    tryon_config_release(&cfg);
  }
}

static void test_api__insufficient_credits_is_402_with_numbers(void **state) {
  (void)state;
  tryon_api_response r;
  tryon_api_response_init(&r);
  tryon__api_fail_insufficient(&r, 1, 2);
  assert_int_equal(r.status, 402);
  cJSON *doc = cJSON_Parse(r.body.data);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring,
                      "insufficient_credits");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(e, "balance")->valuedouble, 1);
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(e, "cost")->valuedouble, 2);
  assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring,
                         "you have 1, this costs 2"));
  cJSON_Delete(doc);
  tryon_api_response_release(&r);
}

/* ------------------------------------------------------------- the client's address */

static void test_api__client_address_table(void **state) {
  (void)state;
  struct sockaddr_in peer4 = {.sin_family = AF_INET};
  struct sockaddr_in6 peer6 = {.sin6_family = AF_INET6};
  assert_int_equal(inet_pton(AF_INET, "10.9.8.7", &peer4.sin_addr), 1);
  assert_int_equal(inet_pton(AF_INET6, "::ffff:10.1.1.1", &peer6.sin6_addr), 1);
  static const struct {
    const char *forwarded;
    int hops;
    int peer; /* 4: peer4, 6: peer6 (IPv4-mapped), 0: none */
    const char *want;
    bool from_header;
  } cases[] = {
      {NULL, 1, 4, "10.9.8.7", false},
      {NULL, 1, 6, "10.1.1.1", false}, /* a dual-stack socket's mapped peer */
      {NULL, 1, 0, "", false},
      {"1.2.3.4", 1, 4, "1.2.3.4", true},
      {"6.6.6.6, 1.2.3.4", 1, 4, "1.2.3.4", true},
      {"6.6.6.6,1.2.3.4", 1, 4, "1.2.3.4", true}, /* two header lines, joined */
      {"1.2.3.4:5555", 1, 4, "1.2.3.4", true},
      {"[2001:db8::1]:443", 1, 4, "2001:db8::1", true},
      {"2001:DB8:0::1", 1, 4, "2001:db8::1", true},
      {"::ffff:192.0.2.9", 1, 4, "192.0.2.9", true},
      {"[::ffff:192.0.2.9]:80", 1, 4, "192.0.2.9", true},
      {" \t203.0.113.5 ", 1, 4, "203.0.113.5", true},
      {"a, b, 5.6.7.8, 1.2.3.4", 2, 4, "5.6.7.8", true}, /* a CDN in front of our proxy */
      {"1.2.3.4", 2, 4, "10.9.8.7", false},              /* fewer entries than hops */
      {"garbage", 1, 4, "10.9.8.7", false},
      {"1.2.3.4, unknown", 1, 4, "10.9.8.7", false},
      {"", 1, 4, "10.9.8.7", false},
      {"1.2.3.4,", 1, 4, "10.9.8.7", false},
      {"1.2.3", 1, 4, "10.9.8.7", false},
      {"1.2.3.4:80:90", 1, 4, "10.9.8.7", false},
      {"[2001:db8::1]x", 1, 4, "10.9.8.7", false},
      {"[2001:db8::1", 1, 4, "10.9.8.7", false},
      {"1.2.3.4", 0, 4, "10.9.8.7", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[TRYON_API_ADDR_MAX];
    const struct sockaddr *peer = cases[i].peer == 4   ? (const struct sockaddr *)&peer4
                                  : cases[i].peer == 6 ? (const struct sockaddr *)&peer6
                                                       : NULL;
    bool from = tryon_api_client_address(cases[i].forwarded, cases[i].hops, peer, out, sizeof out);
    if (strcmp(out, cases[i].want) != 0 || from != cases[i].from_header)
      fail_msg("case %zu (%s): got \"%s\" (%s), want \"%s\"", i,
               cases[i].forwarded ? cases[i].forwarded : "NULL", out, from ? "header" : "peer",
               cases[i].want);
  }
}

/* Ten IPv4 clients of a dual-stack proxy keep ten buckets: the mapped spelling is the
 * IPv4 address, not one shared IPv6 /64 (burst 2 per key in this fixture). */
static void test_api__mapped_ipv4_clients_have_own_buckets(void **state) {
  fixture *f = *state;
  hdrs h = {{NULL}};
  for (int i = 1; i <= 10; i++) {
    char fwd[40], ip[TRYON_API_ADDR_MAX];
    snprintf(fwd, sizeof fwd, "::ffff:198.51.100.%d", i);
    tryon_api_client_address(fwd, 1, NULL, ip, sizeof ip);
    for (int n = 0; n < 2; n++) {
      tryon_api_request req = {
          .method = "GET", .path = "/api/me", .client_ip = ip, .header = lookup, .header_ud = &h};
      tryon_api_response r;
      tryon_api_plan plan;
      tryon_api_response_init(&r);
      tryon_api_plan_request(f->api, &req, &plan, &r);
      if (plan.done)
        fail_msg("client %d request %d refused: it shares a bucket (%s)", i, n + 1, ip);
      tryon_api_response_release(&r);
    }
  }
}

/* ------------------------------------------------- blocked users (real PostgreSQL) */

typedef struct dbfixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
  tryon_config cfg;
  tryon_api *api;
} dbfixture;

#define BLOCK_BOT_TOKEN "12345:test-token-for-blocked-users"

static int setup_db(void **state) {
  dbfixture *f = calloc(1, sizeof *f);
  tryon_err err;
  assert_non_null(f);
  tryon_testdb_open(&f->t, 2, 5000, &f->db, &f->c);
  const char *env[] = {"TRYON_DATABASE_URL=host=/nonexistent dbname=x",
                       "TRYON_BOT_TOKEN=" BLOCK_BOT_TOKEN,
                       "TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef", NULL};
  assert_int_equal(tryon_config_load(&f->cfg, env, NULL, TRYON_CONFIG_NEED_AUTH, &err), TRYON_OK);
  tryon_api_options apo = {.cfg = &f->cfg, .db = f->db};
  assert_int_equal(tryon_api_new(&apo, &f->api, &err), TRYON_OK);
  *state = f;
  return 0;
}

static int teardown_db(void **state) {
  dbfixture *f = *state;
  tryon_api_free(f->api);
  tryon_config_release(&f->cfg);
  tryon_testdb_close(&f->t, f->db, f->c);
  free(f);
  return 0;
}

/* Plans and handles one request with an optional body; the caller releases `resp`. */
static void serve_db(dbfixture *f, const char *method, const char *path, hdrs *h, const char *body,
                     tryon_api_response *resp) {
  tryon_api_request req = {.method = method,
                           .path = path,
                           .client_ip = "192.0.2.50",
                           .header = lookup,
                           .header_ud = h,
                           .body = body,
                           .body_len = body ? strlen(body) : 0};
  tryon_api_plan plan;
  tryon_api_response_init(resp);
  tryon_api_plan_request(f->api, &req, &plan, resp);
  if (!plan.done)
    tryon_api_handle(f->api, &plan, &req, resp);
}

/* A signed sign-in body for Telegram user `tg`. */
static void sign_in_body(int64_t tg, char *out, size_t cap) {
  char fields[512], init[1024];
  tryon_err err;
  snprintf(fields, sizeof fields,
           "user=%%7B%%22id%%22%%3A%lld%%2C%%22first_name%%22%%3A%%22Anna%%22%%7D&auth_date=%lld",
           (long long)tg, (long long)time(NULL));
  assert_int_equal(tryon_initdata_sign(fields, BLOCK_BOT_TOKEN, init, sizeof init, &err), TRYON_OK);
  snprintf(out, cap, "{\"init_data\":\"%s\"}", init);
}

/* A blocked user is refused at sign-in and on an authenticated route with a token
 * issued before the block (issue 12, item 9: only test_server checked it), here at the
 * API library's own level; unblocked, both work again. */
static void test_api__blocked_user_is_refused_at_sign_in_and_after(void **state) {
  dbfixture *f = *state;
  tryon_err err;
  tryon_api_response r;
  char body[1200], bearer[TRYON_JWT_MAX + 16];
  hdrs none = {{"Content-Type"}, {"application/json"}};
  sign_in_body(770001, body, sizeof body);
  serve_db(f, "POST", "/api/auth/telegram", &none, body, &r);
  assert_int_equal(r.status, 200);
  cJSON *doc = cJSON_Parse(r.body.data);
  const char *token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "token"));
  assert_non_null(token);
  snprintf(bearer, sizeof bearer, "Bearer %s", token);
  cJSON_Delete(doc);
  char *uid =
      tryon_test_query_value(f->c, "SELECT id FROM users WHERE telegram_id = 770001", 0, NULL);
  assert_non_null(uid);
  int64_t id = strtoll(uid, NULL, 10);
  free(uid);
  tryon_api_response_release(&r);
  hdrs auth = {{"Authorization"}, {bearer}};
  serve_db(f, "GET", "/api/me", &auth, NULL, &r);
  assert_int_equal(r.status, 200);
  tryon_api_response_release(&r);

  EXPECT_STATUS(tryon_users_set_blocked(f->c, id, true, "abuse", &err), TRYON_OK, &err, "block");
  serve_db(f, "POST", "/api/auth/telegram", &none, body, &r);
  assert_int_equal(r.status, 403);
  assert_error_code(&r, "user_blocked");
  tryon_api_response_release(&r);
  static const char *const routes[][2] = {{"GET", "/api/me"},
                                          {"GET", "/api/billing"},
                                          {"GET", "/api/uploads"},
                                          {"GET", "/api/generations"}};
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    serve_db(f, routes[i][0], routes[i][1], &auth, NULL, &r);
    if (r.status != 403)
      fail_msg("%s %s answers %d to a blocked user", routes[i][0], routes[i][1], r.status);
    assert_error_code(&r, "user_blocked");
    tryon_api_response_release(&r);
  }

  EXPECT_STATUS(tryon_users_set_blocked(f->c, id, false, NULL, &err), TRYON_OK, &err, "unblock");
  serve_db(f, "GET", "/api/me", &auth, NULL, &r);
  assert_int_equal(r.status, 200);
  tryon_api_response_release(&r);
}

int main(void) {
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api__client_address_table),
      cmocka_unit_test(test_api__ratelimit_burst_then_refill),
      cmocka_unit_test(test_api__ratelimit_retry_after_rounds_up),
      cmocka_unit_test(test_api__ratelimit_memory_is_bounded),
      cmocka_unit_test(test_api__new_refuses_unusable_settings),
      cmocka_unit_test(test_api__insufficient_credits_is_402_with_numbers),
      cmocka_unit_test_setup_teardown(test_api__routing_answers_404_405_and_health, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_api__every_response_has_security_headers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_api__cors_only_for_the_web_app_origin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_api__per_address_limit_answers_429, setup, teardown),
      cmocka_unit_test_setup_teardown(test_api__ipv6_addresses_share_their_64, setup, teardown),
      cmocka_unit_test_setup_teardown(test_api__mapped_ipv4_clients_have_own_buckets, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_api__blocked_user_is_refused_at_sign_in_and_after,
                                      setup_db, teardown_db),
      cmocka_unit_test_setup_teardown(test_api__token_problems_are_401_with_their_code, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_api__metrics_count_requests, setup, teardown),
  };
  return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
