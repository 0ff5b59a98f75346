/*
 * The listener (db.h section 6) against a real PostgreSQL, driven the way an event loop
 * drives it: poll its socket, process, take notifications. Each test gets a scratch
 * database; the listener is found in pg_stat_activity by its application_name.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testsupport.h"

static const char *const channels[] = {"tryon_jobs", "tryon_wake", "tryon_events", NULL};

typedef struct fixture {
  tryon_testdb t;
  tryon_db *db;
  tryon_db_conn *c;
  tryon_db_listener *l;
  char app[80]; /* the listener's application_name */
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  tryon_testdb_create(&f->t);
  f->db = tryon_testdb_pool(&f->t, 2, 5000);
  tryon_err err;
  EXPECT_STATUS(tryon_db_acquire(f->db, &f->c, &err), TRYON_OK, &err, "acquire");
  snprintf(f->app, sizeof f->app, "listen-%s", f->t.name);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tryon_db_listener_free(f->l);
  tryon_db_release(f->c);
  tryon_db_free(f->db);
  tryon_testdb_drop(&f->t);
  free(f);
  return 0;
}

static void new_listener(fixture *f, const char *conninfo, int connect_timeout_ms,
                         int64_t backoff_min_ms, int64_t backoff_max_ms) {
  tryon_err err;
  tryon_db_listener_options o = {.conninfo = conninfo,
                                 .channels = channels,
                                 .connect_timeout_ms = connect_timeout_ms,
                                 .backoff_min_ms = backoff_min_ms,
                                 .backoff_max_ms = backoff_max_ms,
                                 .application_name = f->app};
  EXPECT_STATUS(tryon_db_listener_new(&o, &f->l, &err), TRYON_OK, &err, "listener");
}

static void notify(fixture *f, const char *channel, const char *payload) {
  tryon_err err;
  const char *p[] = {channel, payload};
  EXPECT_STATUS(tryon_db_exec(f->c, "SELECT pg_notify($1, $2)", 2, p, NULL, &err), TRYON_OK, &err,
                "notify");
}

/* What a loop saw: the process bits, and the notifications as "channel=payload". */
typedef struct seen {
  unsigned what;
  size_t n;
  char notes[8][128];
} seen;

/* One turn of an event loop: poll the listener's socket (at most its timeout, and
 * never more than 50 ms), process, take what arrived. */
static unsigned turn(tryon_db_listener *l, seen *s) {
  short want = 0;
  int fd = tryon_db_listener_fd(l, &want);
  int64_t t = tryon_db_listener_timeout_ms(l);
  int wait = t < 0 || t > 50 ? 50 : (int)t;
  struct pollfd p = {.fd = fd, .events = want};
  if (fd >= 0)
    poll(&p, 1, wait);
  else
    usleep((useconds_t)wait * 1000);
  unsigned what = tryon_db_listener_process(l, fd >= 0 ? p.revents : 0);
  s->what |= what;
  tryon_db_notification n;
  while (tryon_db_listener_next(l, &n)) {
    assert_true(n.sender_pid > 0);
    if (s->n < 8)
      snprintf(s->notes[s->n++], sizeof s->notes[0], "%s=%s", n.channel, n.payload);
  }
  return what;
}

/* Turns until a turn reports one of `bits` (or, with bits 0, until `n` notifications
 * arrived); fails after 10 s. */
static void turn_until(tryon_db_listener *l, seen *s, unsigned bits, size_t n, const char *ctx) {
  int64_t end = tryon_time_monotonic_ms() + 10000;
  while (tryon_time_monotonic_ms() < end) {
    unsigned what = turn(l, s);
    if (bits != 0 ? (what & bits) != 0 : s->n >= n)
      return;
  }
  fail_msg("%s: not seen in 10 s (bits 0x%x, %zu notifications)", ctx, s->what, s->n);
}

static char *listener_pid(fixture *f) {
  const char *p[] = {f->app};
  return tryon_testdb_admin_query(&f->t,
                                  "SELECT string_agg(pid::text, ',') FROM pg_stat_activity"
                                  " WHERE application_name = $1",
                                  1, p);
}

/* ------------------------------------------------------------------------- tests */

static void test_db_listener__notifications_arrive_on_every_channel(void **state) {
  fixture *f = *state;
  tryon_err err;
  seen s = {0};
  new_listener(f, f->t.conninfo, 0, 0, 0);
  EXPECT_STATUS(tryon_db_listener_open(f->l, &err), TRYON_OK, &err, "open");
  assert_true(tryon_db_listener_up(f->l));
  notify(f, "tryon_jobs", "noop");
  notify(f, "not_listened", "never seen");
  notify(f, "tryon_wake", "");
  notify(f, "tryon_events", "{\"user\":1,\"state\":\"queued\",\"note\":\"привет\"}");
  turn_until(f->l, &s, 0, 3, "three notifications");
  assert_int_equal(s.n, 3);
  assert_string_equal(s.notes[0], "tryon_jobs=noop");
  assert_string_equal(s.notes[1], "tryon_wake=");
  assert_string_equal(s.notes[2],
                      "tryon_events={\"user\":1,\"state\":\"queued\",\"note\":\"привет\"}");
  /* A connect made by open is not reported again by process. */
  assert_int_equal(s.what & TRYON_DB_LISTENER_UP, 0);
  assert_string_equal(tryon_db_listener_error(f->l), "");
}

static void test_db_listener__connects_from_the_loop_without_blocking(void **state) {
  fixture *f = *state;
  seen s = {0};
  new_listener(f, f->t.conninfo, 0, 0, 0);
  assert_false(tryon_db_listener_up(f->l));
  assert_int_equal(tryon_db_listener_timeout_ms(f->l), 0); /* the first attempt is due */
  /* The first process call only starts connecting: it returns before the server
   * answered, with a socket to poll. */
  assert_int_equal(tryon_db_listener_process(f->l, 0), 0);
  short want = 0;
  assert_true(tryon_db_listener_fd(f->l, &want) >= 0);
  assert_true(want != 0);
  assert_false(tryon_db_listener_up(f->l));
  turn_until(f->l, &s, TRYON_DB_LISTENER_UP, 0, "up");
  assert_int_equal(s.what & TRYON_DB_LISTENER_RECONNECTED, 0); /* the first time */
  assert_int_equal(tryon_db_listener_timeout_ms(f->l), -1);
  notify(f, "tryon_wake", "job-1");
  turn_until(f->l, &s, 0, 1, "a notification");
  assert_string_equal(s.notes[0], "tryon_wake=job-1");
}

static void test_db_listener__reconnects_after_its_backend_is_terminated(void **state) {
  fixture *f = *state;
  tryon_err err;
  seen s = {0};
  new_listener(f, f->t.conninfo, 0, 20, 200);
  EXPECT_STATUS(tryon_db_listener_open(f->l, &err), TRYON_OK, &err, "open");
  char *before = listener_pid(f);
  assert_non_null(before);
  const char *p[] = {f->app};
  free(tryon_testdb_admin_query(
      &f->t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
      1, p));
  turn_until(f->l, &s, TRYON_DB_LISTENER_LOST, 0, "the loss");
  assert_false(tryon_db_listener_up(f->l));
  assert_true(strlen(tryon_db_listener_error(f->l)) > 0);
  s.what = 0;
  turn_until(f->l, &s, TRYON_DB_LISTENER_UP, 0, "back up");
  assert_true(s.what & TRYON_DB_LISTENER_RECONNECTED);
  char *after = listener_pid(f);
  assert_non_null(after);
  assert_string_not_equal(before, after); /* a new backend */
  /* Every channel is listened to again. */
  notify(f, "tryon_events", "e");
  notify(f, "tryon_jobs", "j");
  notify(f, "tryon_wake", "w");
  turn_until(f->l, &s, 0, 3, "after the reconnect");
  assert_string_equal(s.notes[0], "tryon_events=e");
  assert_string_equal(s.notes[1], "tryon_jobs=j");
  assert_string_equal(s.notes[2], "tryon_wake=w");
  /* Closing by hand: the next turn connects again, and says so. */
  tryon_db_listener_close(f->l);
  assert_false(tryon_db_listener_up(f->l));
  s.what = 0;
  turn_until(f->l, &s, TRYON_DB_LISTENER_UP, 0, "after close");
  assert_true(s.what & TRYON_DB_LISTENER_RECONNECTED);
  free(before);
  free(after);
}

static void test_db_listener__a_missing_database_backs_off(void **state) {
  fixture *f = *state;
  tryon_err err;
  char *bad = NULL;
  EXPECT_STATUS(tryon_db_conninfo_with_dbname(f->t.conninfo, "tryon_no_such_database", &bad, &err),
                TRYON_OK, &err, "conninfo");
  new_listener(f, bad, 0, 40, 160);
  EXPECT_STATUS(tryon_db_listener_open(f->l, &err), TRYON_E_DB_UNAVAILABLE, &err, "open");
  assert_non_null(strstr(err.message, "tryon_no_such_database"));
  for (int i = 1; i <= 3; i++) {
    /* Waiting for the retry: no socket, a timeout within the backoff's ceiling. */
    short want = 1;
    assert_int_equal(tryon_db_listener_fd(f->l, &want), -1);
    assert_int_equal(want, 0);
    int64_t t = tryon_db_listener_timeout_ms(f->l);
    int64_t ceiling = i == 1 ? 40 : i == 2 ? 80 : 160;
    if (t < 0 || t > ceiling)
      fail_msg("failure %d: retry in %lld ms, want at most %lld", i, (long long)t,
               (long long)ceiling);
    seen s = {0};
    turn_until(f->l, &s, TRYON_DB_LISTENER_FAILED, 0, "another failed attempt");
    assert_false(tryon_db_listener_up(f->l));
    assert_non_null(strstr(tryon_db_listener_error(f->l), "tryon_no_such_database"));
  }
  /* Past the ceiling the delays stop growing: 160 ms at most. */
  assert_true(tryon_db_listener_timeout_ms(f->l) <= 160);
  free(bad);
}

static void test_db_listener__a_silent_server_never_blocks_the_loop(void **state) {
  fixture *f = *state;
  tryon_err err;
  int port = 0;
  int fd = tryon_test_silent_socket(&port);
  char conninfo[128];
  snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
           port);
  new_listener(f, conninfo, 1500, 20, 40);
  seen s = {0};
  /* Turn after turn returns while the attempt waits on the server's answer. */
  for (int i = 0; i < 3; i++)
    assert_int_equal(turn(f->l, &s), 0);
  assert_true(tryon_db_listener_fd(f->l, NULL) >= 0);
  assert_false(tryon_db_listener_up(f->l));
  /* At its deadline the attempt is given up, and a retry is due. */
  turn_until(f->l, &s, TRYON_DB_LISTENER_FAILED, 0, "the deadline");
  assert_string_equal(tryon_db_listener_error(f->l), "connecting timed out");
  /* The start-up open waits, but only up to the connect timeout. */
  EXPECT_STATUS(tryon_db_listener_open(f->l, &err), TRYON_E_DB_UNAVAILABLE, &err, "open");
  close(fd);
}

static void test_db_listener__options_are_checked(void **state) {
  fixture *f = *state;
  static const char *const none[] = {NULL};
  static const char *const upper[] = {"Tryon", NULL};
  static const char *const dash[] = {"a-b", NULL};
  static const char *const empty[] = {"", NULL};
  static const char *const twice[] = {"a", "b", "a", NULL};
  static const char *const digit[] = {"1a", NULL};
  static const char *const quote[] = {"a\"; DROP TABLE x; --", NULL};
  static const char *const too_long[] = {
      "a123456789012345678901234567890123456789012345678901234567890123", NULL};
  static const char *const many[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8",
                                     "c9", "ca", "cb", "cc", "cd", "ce", "cf", "cg", NULL};
  const struct {
    const char *conninfo;
    const char *const *channels;
    int64_t min, max;
  } bad[] = {
      {NULL, channels, 0, 0},
      {f->t.conninfo, NULL, 0, 0},
      {f->t.conninfo, none, 0, 0},
      {f->t.conninfo, upper, 0, 0},
      {f->t.conninfo, dash, 0, 0},
      {f->t.conninfo, empty, 0, 0},
      {f->t.conninfo, twice, 0, 0},
      {f->t.conninfo, digit, 0, 0},
      {f->t.conninfo, quote, 0, 0},
      {f->t.conninfo, too_long, 0, 0},
      {f->t.conninfo, many, 0, 0},
      {"host='unterminated", channels, 0, 0},
      {"postgresql://[::1", channels, 0, 0},
      {f->t.conninfo, channels, 500, 100},
      {f->t.conninfo, channels, -1, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tryon_err err;
    tryon_db_listener *l = (tryon_db_listener *)1;
    tryon_db_listener_options o = {.conninfo = bad[i].conninfo,
                                   .channels = bad[i].channels,
                                   .backoff_min_ms = bad[i].min,
                                   .backoff_max_ms = bad[i].max};
    if (tryon_db_listener_new(&o, &l, &err) != TRYON_E_INVALID)
      fail_msg("case %zu was accepted", i);
    assert_null(l);
  }
  /* 63 bytes and 16 channels are fine. */
  static const char *const longest[] = {
      "a12345678901234567890123456789012345678901234567890123456789012", NULL};
  tryon_err err;
  tryon_db_listener_options o = {.conninfo = f->t.conninfo, .channels = longest};
  EXPECT_STATUS(tryon_db_listener_new(&o, &f->l, &err), TRYON_OK, &err, "63 bytes");
  tryon_db_listener_free(f->l);
  o.channels = many + 1;
  EXPECT_STATUS(tryon_db_listener_new(&o, &f->l, &err), TRYON_OK, &err, "16 channels");
  tryon_db_listener_free(f->l);
  f->l = NULL;
  tryon_db_listener_free(NULL);
}

int main(void) {
  tryon_test_log_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_db_listener__notifications_arrive_on_every_channel),
      T(test_db_listener__connects_from_the_loop_without_blocking),
      T(test_db_listener__reconnects_after_its_backend_is_terminated),
      T(test_db_listener__a_missing_database_backs_off),
      T(test_db_listener__a_silent_server_never_blocks_the_loop),
      T(test_db_listener__options_are_checked),
  };
  return cmocka_run_group_tests_name("db_listener", tests, NULL, NULL);
}
