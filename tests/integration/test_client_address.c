/*
 * The client address behind a proxy, end to end (issue 12, item 1): tryon-server with
 * TRYON_CLIENT_IP_HEADER=X-Forwarded-For and a small per-address rate limit. Which
 * bucket a request lands in shows which address the server took for it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "testserver.h"

#define BURST 4

/* GET /api/me (401 without a token, but counted by the per-address limit first) with
 * the given X-Forwarded-For lines. */
static long get_as(const char *line1, const char *line2) {
  static char h1[3300], h2[3300];
  const char *h[3] = {NULL, NULL, NULL};
  size_t n = 0;
  if (line1 != NULL) {
    snprintf(h1, sizeof h1, "X-Forwarded-For: %s", line1);
    h[n++] = h1;
  }
  if (line2 != NULL) {
    snprintf(h2, sizeof h2, "X-Forwarded-For: %s", line2);
    h[n++] = h2;
  }
  tryon_reply r = tryon_test_http("GET", "/api/me", h, NULL, 0);
  long st = r.status;
  tryon_reply_free(&r);
  return st;
}

/* Sends until the limit answers (at most 3 bursts); returns how many were let through
 * before the first 429, or -1 when none came. */
static int exhaust(const char *prefix, bool vary, const char *suffix, const char *line2) {
  for (int i = 0; i < 3 * BURST; i++) {
    char line1[64];
    if (vary)
      snprintf(line1, sizeof line1, "%s%d%s", prefix, i + 100, suffix);
    else
      snprintf(line1, sizeof line1, "%s%s", prefix, suffix);
    long st = get_as(line1, line2);
    if (st == 429)
      return i;
    assert_int_equal(st, 401);
  }
  return -1;
}

/* The client cannot choose its bucket with a line of its own: our proxy's line is the
 * last one, and that is the one read. */
static void test_client_address__second_header_line_decides(void **state) {
  (void)state;
  int through = exhaust("198.51.", true, ".7", "203.0.113.10");
  assert_true(through >= 1 && through <= 2 * BURST);
}

/* The same client from any source port is one client. */
static void test_client_address__port_is_ignored(void **state) {
  (void)state;
  int through = exhaust("203.0.113.20:", true, "", NULL);
  assert_true(through >= 1 && through <= 2 * BURST);
}

/* Ten IPv4 clients behind a dual-stack proxy (::ffff:a.b.c.d) are ten buckets: one of
 * them at its limit leaves the other nine alone. */
static void test_client_address__mapped_ipv4_clients_are_apart(void **state) {
  (void)state;
  int through = exhaust("::ffff:192.0.2.1", false, "", NULL);
  assert_true(through >= 1);
  for (int i = 2; i <= 10; i++) {
    char a[40];
    snprintf(a, sizeof a, "::ffff:192.0.2.%d", i);
    assert_int_equal(get_as(a, NULL), 401);
  }
}

/* An entry that is no address falls back to the socket's (loopback here), which then
 * has its own bucket apart from the clients above. */
static void test_client_address__garbage_is_the_socket_address(void **state) {
  (void)state;
  int through = exhaust("not-an-address-", true, "", NULL);
  assert_true(through >= 1 && through <= 2 * BURST);
  /* ... and that bucket is the one of requests that send no header at all (three tries:
   * the bucket refills one token a second, so one may just have come back). */
  bool limited = false;
  for (int i = 0; i < 3 && !limited; i++)
    limited = get_as(NULL, NULL) == 429;
  assert_true(limited);
}

/* A client padding its part of the header cannot push our proxy's entry out: the
 * right end of an over-long line is what is read. */
static void test_client_address__padding_does_not_hide_the_proxy_entry(void **state) {
  (void)state;
  static char line[3200];
  bool limited = false;
  for (int i = 0; i < 3 * BURST && !limited; i++) {
    memset(line, 'a' + i % 26, 3000);
    snprintf(line + 3000, sizeof line - 3000, ", 203.0.113.30");
    limited = get_as(line, NULL) == 429;
  }
  assert_true(limited);
}

/* Without TRYON_METRICS_TOKEN, /metrics does not exist on the API port. */
static void test_client_address__metrics_hidden_without_token(void **state) {
  (void)state;
  const char *fresh[] = {"X-Forwarded-For: 192.0.2.200", NULL}; /* a bucket of its own */
  tryon_expect_error(tryon_test_http("GET", "/metrics", fresh, NULL, 0), 404, "not_found");
}

/* Without TRYON_KIE_CALLBACK_URL, kie.ai was never given the callback route: it does
 * not exist (issue 12, item 4), signed or not. */
static void test_client_address__kie_callback_route_needs_a_callback_url(void **state) {
  (void)state;
  const char *h[] = {"X-Forwarded-For: 192.0.2.201", "Content-Type: application/json", NULL};
  const char *body = "{\"code\":200,\"data\":{\"taskId\":\"t1\",\"state\":\"success\"}}";
  tryon_expect_error(tryon_test_http("POST", "/webhooks/kie", h, body, strlen(body)), 404,
                     "not_found");
}

int main(void) {
  static const char *const env[] = {"TRYON_CLIENT_IP_HEADER=X-Forwarded-For",
                                    "TRYON_RATE_LIMIT_IP_RPS=1", "TRYON_RATE_LIMIT_IP_BURST=4",
                                    NULL};
  tryon_testserver_extra_env = env;
  tryon_test_log_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_client_address__second_header_line_decides),
      cmocka_unit_test(test_client_address__port_is_ignored),
      cmocka_unit_test(test_client_address__mapped_ipv4_clients_are_apart),
      cmocka_unit_test(test_client_address__garbage_is_the_socket_address),
      cmocka_unit_test(test_client_address__padding_does_not_hide_the_proxy_entry),
      cmocka_unit_test(test_client_address__metrics_hidden_without_token),
      cmocka_unit_test(test_client_address__kie_callback_route_needs_a_callback_url),
  };
  return cmocka_run_group_tests_name("client_address", tests, tryon_testserver_start,
                                     tryon_testserver_stop);
}
