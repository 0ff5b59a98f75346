/*
 * test_core.c - unit tests of libtryon/core: status, log, clock, uuid, buf, arena,
 * config. Run: ctest --test-dir build-sanitize -R test_core
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include <tryon/core.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ======================================================================== status */

static void test_core__status_names_codes_messages_distinct(void **state) {
  for (int i = 0; i < TRYON__STATUS_COUNT; i++) {
    const char *name = tryon_status_name((tryon_status)i);
    const char *code = tryon_status_code((tryon_status)i);
    const char *msg = tryon_status_message((tryon_status)i);

    assert_non_null(name);
    assert_non_null(code);
    assert_non_null(msg);
    assert_int_equal(strncmp(name, "TRYON_", 6), 0);
    assert_true(code[0] != '\0' && msg[0] != '\0');
    /* House style: lower-case, no trailing period. */
    assert_true(msg[strlen(msg) - 1] != '.');
    for (int j = 0; j < i; j++) {
      assert_string_not_equal(name, tryon_status_name((tryon_status)j));
      assert_string_not_equal(code, tryon_status_code((tryon_status)j));
      assert_string_not_equal(msg, tryon_status_message((tryon_status)j));
    }
  }
  assert_string_equal(tryon_status_name(TRYON_OK), "TRYON_OK");
  assert_string_equal(tryon_status_name(TRYON_E_NOMEM), "TRYON_E_NOMEM");
  assert_string_equal(tryon_status_code(TRYON_E_NOMEM), "out_of_memory");
  assert_string_equal(tryon_status_message(TRYON_E_NOMEM), "out of memory");
  assert_int_equal(TRYON_OK, 0);
}

static void test_core__status_unknown_fallbacks(void **state) {
  const int bad[] = {TRYON__STATUS_COUNT, TRYON__STATUS_COUNT + 1, 9999, -1, INT32_MIN};

  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_string_equal(tryon_status_name((tryon_status)bad[i]), "TRYON_UNKNOWN");
    assert_string_equal(tryon_status_code((tryon_status)bad[i]), "unknown");
    assert_string_equal(tryon_status_message((tryon_status)bad[i]), "unknown status");
  }
}

static void test_core__err_set_formats_and_returns_status(void **state) {
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(err.status, TRYON_OK);
  assert_string_equal(err.message, "");
  assert_int_equal(tryon_err_set(&err, TRYON_E_IO, "cannot open %s: %d", "x.sql", 2), TRYON_E_IO);
  assert_int_equal(err.status, TRYON_E_IO);
  assert_string_equal(err.message, "cannot open x.sql: 2");
  assert_string_equal(tryon_err_message(&err), "cannot open x.sql: 2");
  /* Wrapping the previous message in a new one is a common pattern and must work. */
  tryon_err_set(&err, TRYON_E_MIGRATION, "migration failed: %s", err.message);
  assert_string_equal(err.message, "migration failed: cannot open x.sql: 2");
}

static void test_core__err_set_truncates(void **state) {
  tryon_err err;
  char big[3 * TRYON_ERR_MESSAGE_MAX];

  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  tryon_err_clear(&err);
  tryon_err_set(&err, TRYON_E_INVALID, "%s", big);
  assert_int_equal(strlen(err.message), TRYON_ERR_MESSAGE_MAX - 1);
  assert_int_equal(err.status, TRYON_E_INVALID);

  big[0] = '\0';
  for (size_t i = 0; i + 2 < sizeof big; i += 2) {
    memcpy(big + i, "\xd0\xb6", 2); /* U+0436 */
    big[i + 2] = '\0';
  }
  tryon_err_set(&err, TRYON_E_INVALID, "%s", big);
  /* Two-byte characters: 1023 bytes would end in half of one, so the message stops one
   * byte short. */
  assert_int_equal(strlen(err.message), TRYON_ERR_MESSAGE_MAX - 2);
  assert_int_equal((unsigned char)err.message[strlen(err.message) - 1], 0xb6);
}

static void test_core__err_null_is_accepted(void **state) {
  tryon_err_clear(NULL);
  assert_int_equal(tryon_err_set(NULL, TRYON_E_CONFLICT, "x %d", 1), TRYON_E_CONFLICT);
  assert_non_null(tryon_err_message(NULL));
}

static void test_core__err_message_falls_back_to_status(void **state) {
  tryon_err err;

  tryon_err_clear(&err);
  err.status = TRYON_E_TIMEOUT;
  assert_string_equal(tryon_err_message(&err), "operation timed out");
}

/* =========================================================================== log */

static struct {
  int calls;
  tryon_log_level level;
  char line[8192];
} sink_seen;

static void capture_sink(tryon_log_level level, const char *line, void *ud) {
  int *marker = ud;

  assert_non_null(marker);
  assert_int_equal(*marker, 42);
  sink_seen.calls++;
  sink_seen.level = level;
  snprintf(sink_seen.line, sizeof sink_seen.line, "%s", line);
}

static int sink_marker = 42;

static void log_capture_start(tryon_log_level level) {
  memset(&sink_seen, 0, sizeof sink_seen);
  tryon_log_set_level(level);
  tryon_log_set_sink(capture_sink, &sink_marker);
}

static void log_capture_stop(void) {
  tryon_log_set_sink(NULL, NULL);
  tryon_log_set_level(TRYON_LOG_INFO);
}

/* Parses the captured line strictly: one JSON object and nothing after it. */
static cJSON *parse_line(void) {
  const char *end = NULL;
  cJSON *obj = cJSON_ParseWithLengthOpts(sink_seen.line, strlen(sink_seen.line) + 1, &end, 1);

  assert_non_null(obj);
  assert_true(cJSON_IsObject(obj));
  return obj;
}

static void test_core__log_line_is_json_with_fields(void **state) {
  cJSON *obj;
  const cJSON *ts;
  const cJSON *it;

  log_capture_start(TRYON_LOG_INFO);
  TRYON_LOG_INFO("user \"signed\" in", TRYON_LF_STR("user", "ana\n"), TRYON_LF_INT("n", 42),
                 TRYON_LF_BOOL("ok", 1), TRYON_LF_STR("none", NULL),
                 TRYON_LF_INT("big", INT64_MAX));
  assert_int_equal(sink_seen.calls, 1);
  assert_int_equal(sink_seen.level, TRYON_LOG_INFO);
  assert_null(strchr(sink_seen.line, '\n'));
  obj = parse_line();

  /* The frame comes first, in this order. */
  assert_string_equal(obj->child->string, "ts");
  assert_string_equal(obj->child->next->string, "level");
  assert_string_equal(obj->child->next->next->string, "msg");
  ts = cJSON_GetObjectItemCaseSensitive(obj, "ts");
  assert_true(cJSON_IsString(ts));
  assert_int_equal(strlen(ts->valuestring), TRYON_TIME_ISO8601_LEN - 1);
  assert_int_equal(ts->valuestring[10], 'T');
  assert_int_equal(ts->valuestring[23], 'Z');
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring, "info");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "msg")->valuestring,
                      "user \"signed\" in");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "user")->valuestring, "ana\n");
  it = cJSON_GetObjectItemCaseSensitive(obj, "n");
  assert_true(cJSON_IsNumber(it));
  assert_int_equal(it->valueint, 42);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "ok")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "none")));
  /* 64-bit integers are written exactly, not through a double. */
  assert_non_null(strstr(sink_seen.line, "\"big\":9223372036854775807"));
  cJSON_Delete(obj);

  TRYON_LOG_ERROR("no fields");
  assert_int_equal(sink_seen.calls, 2);
  assert_int_equal(sink_seen.level, TRYON_LOG_ERROR);
  obj = parse_line();
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring, "error");
  assert_int_equal(cJSON_GetArraySize(obj), 3);
  cJSON_Delete(obj);
  log_capture_stop();
}

static void test_core__log_level_filtering(void **state) {
  static const tryon_log_level levels[] = {TRYON_LOG_DEBUG, TRYON_LOG_INFO, TRYON_LOG_WARN,
                                           TRYON_LOG_ERROR};

  for (size_t min = 0; min < ARRAY_LEN(levels); min++) {
    for (size_t w = 0; w < ARRAY_LEN(levels); w++) {
      int expect = levels[w] >= levels[min];

      log_capture_start(levels[min]);
      assert_int_equal(tryon_log_get_level(), levels[min]);
      assert_int_equal(tryon_log_enabled(levels[w]), expect);
      tryon_log_write(levels[w], "m", NULL, 0);
      assert_int_equal(sink_seen.calls, expect);
      if (expect) {
        cJSON *obj = parse_line();
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring,
                            tryon_log_level_name(levels[w]));
        cJSON_Delete(obj);
      }
    }
  }
  log_capture_stop();
  assert_int_equal(tryon_log_get_level(), TRYON_LOG_INFO);
}

static void test_core__log_reserved_and_duplicate_keys_dropped(void **state) {
  cJSON *obj;

  log_capture_start(TRYON_LOG_DEBUG);
  TRYON_LOG_WARN("real", TRYON_LF_STR("ts", "forged"), TRYON_LF_STR("level", "debug"),
                 TRYON_LF_STR("msg", "forged"), TRYON_LF_STR("k", "first"),
                 TRYON_LF_STR("k", "second"), TRYON_LF_INT("kept", 7));
  assert_int_equal(sink_seen.calls, 1);
  obj = parse_line();
  assert_int_equal(cJSON_GetArraySize(obj), 5);
  assert_string_not_equal(cJSON_GetObjectItemCaseSensitive(obj, "ts")->valuestring, "forged");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "level")->valuestring, "warn");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "msg")->valuestring, "real");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "k")->valuestring, "first");
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(obj, "kept")->valueint, 7);
  assert_null(strstr(sink_seen.line, "forged"));
  cJSON_Delete(obj);
  log_capture_stop();
}

static void test_core__log_no_sink_writes_nothing(void **state) {
  log_capture_start(TRYON_LOG_DEBUG);
  tryon_log_set_sink(NULL, NULL);
  assert_false(tryon_log_enabled(TRYON_LOG_ERROR));
  TRYON_LOG_ERROR("dropped", TRYON_LF_INT("x", 1));
  assert_int_equal(sink_seen.calls, 0);
  log_capture_stop();
}

static void test_core__log_invalid_utf8_replaced(void **state) {
  cJSON *obj;

  log_capture_start(TRYON_LOG_INFO);
  TRYON_LOG_INFO("bad \xff byte", TRYON_LF_STR("name", "\xd0\xb6\xc3"));
  obj = parse_line();
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "msg")->valuestring,
                      "bad \xef\xbf\xbd byte");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(obj, "name")->valuestring,
                      "\xd0\xb6\xef\xbf\xbd");
  cJSON_Delete(obj);
  log_capture_stop();
}

static void test_core__log_level_names_and_parse(void **state) {
  static const struct {
    const char *text;
    tryon_status st;
    tryon_log_level level;
  } cases[] = {
      {"debug", TRYON_OK, TRYON_LOG_DEBUG}, {"info", TRYON_OK, TRYON_LOG_INFO},
      {"WARN", TRYON_OK, TRYON_LOG_WARN},   {"Error", TRYON_OK, TRYON_LOG_ERROR},
      {"warning", TRYON_E_INVALID, 0},      {"", TRYON_E_INVALID, 0},
      {"info ", TRYON_E_INVALID, 0},        {"trace", TRYON_E_INVALID, 0},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_log_level out = TRYON_LOG_ERROR;
    assert_int_equal(tryon_log_level_parse(cases[i].text, &out), cases[i].st);
    if (cases[i].st == TRYON_OK) {
      assert_int_equal(out, cases[i].level);
    }
  }
  assert_int_equal(tryon_log_level_parse(NULL, &(tryon_log_level){0}), TRYON_E_INVALID);
  assert_string_equal(tryon_log_level_name(TRYON_LOG_DEBUG), "debug");
  assert_string_equal(tryon_log_level_name(TRYON_LOG_INFO), "info");
  assert_string_equal(tryon_log_level_name(TRYON_LOG_WARN), "warn");
  assert_string_equal(tryon_log_level_name(TRYON_LOG_ERROR), "error");
  assert_string_equal(tryon_log_level_name((tryon_log_level)17), "unknown");
}

static void test_core__redact_conninfo(void **state) {
  static const struct {
    const char *in;
    const char *out;
  } cases[] = {
      {"postgresql://app:S3cret@db.example:5432/tryon",
       "postgresql://app:***@db.example:5432/tryon"},
      {"postgres://app:S3cret@h1,h2/db?sslmode=require",
       "postgres://app:***@h1,h2/db?sslmode=require"},
      {"postgresql://app@host/db", "postgresql://app@host/db"},
      {"postgresql://host/db", "postgresql://host/db"},
      {"postgresql://app:p@ss/w0rd@host/db", "postgresql://app:***@host/db"},
      {"postgresql://host/db?sslmode=require&password=S3cret&application_name=x",
       "postgresql://host/db?sslmode=require&password=***&application_name=x"},
      {"postgresql://u:S3cret@host/db?password=S3cret#frag",
       "postgresql://u:***@host/db?password=***#frag"},
      {"host=db user=app password=S3cret dbname=tryon",
       "host=db user=app password=*** dbname=tryon"},
      {"host=db password='se cret' port=5432", "host=db password=*** port=5432"},
      {"password = 'it\\'s S3cret' host=x", "password=*** host=x"},
      {"host=db PASSWORD=S3cret", "host=db PASSWORD=***"},
      {"host=db sslpassword=S3cret", "host=db sslpassword=***"},
      {"host=db password=", "host=db password=***"},
      {"host=db garbage S3cret", "host=db ***"},
      {"", ""},
  };
  char out[256];

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_log_redact_conninfo(cases[i].in, out, sizeof out);
    assert_string_equal(out, cases[i].out);
    assert_null(strstr(out, "S3cret"));
  }
  tryon_log_redact_conninfo(NULL, out, sizeof out);
  assert_string_equal(out, "");
}

static void test_core__redact_truncates(void **state) {
  char out[12];

  memset(out, 'z', sizeof out);
  tryon_log_redact_conninfo("postgresql://app:S3cret@db/tryon", out, sizeof out);
  assert_string_equal(out, "postgresql:");
  tryon_log_redact_conninfo("host=db password=S3cret", out, 1);
  assert_string_equal(out, "");
  tryon_log_redact_conninfo("host=db", NULL, 0); /* nothing to write into: no crash */
}

/* ========================================================================= clock */

static void test_core__iso8601_known_instants(void **state) {
  static const struct {
    int64_t ms;
    const char *text;
  } cases[] = {
      {0, "1970-01-01T00:00:00.000Z"},
      {1, "1970-01-01T00:00:00.001Z"},
      {-1, "1969-12-31T23:59:59.999Z"},
      {-86400000, "1969-12-31T00:00:00.000Z"},
      {INT64_C(1764353473123), "2025-11-28T18:11:13.123Z"},
      {INT64_C(951782400000), "2000-02-29T00:00:00.000Z"},
      {INT64_C(951868799999), "2000-02-29T23:59:59.999Z"},
      {INT64_C(4102444800000), "2100-01-01T00:00:00.000Z"},
      {INT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
      {INT64_C(-62167219200000), "0000-01-01T00:00:00.000Z"},
      /* Out of the four-digit range: clamped, never an overflowing buffer. */
      {INT64_MAX, "9999-12-31T23:59:59.999Z"},
      {INT64_MIN, "0000-01-01T00:00:00.000Z"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[TRYON_TIME_ISO8601_LEN];
    memset(out, 'x', sizeof out);
    tryon_time_format_iso8601(cases[i].ms, out);
    assert_string_equal(out, cases[i].text);
  }
}

static void test_core__clocks(void **state) {
  tryon_fixed_clock fc;
  int64_t a;
  int64_t b;

  tryon_fixed_clock_init(&fc, INT64_C(1764353473123));
  assert_int_equal(tryon_clock_now_ms(&fc.clock), INT64_C(1764353473123));
  fc.ms += 5;
  assert_int_equal(tryon_clock_now_ms(&fc.clock), INT64_C(1764353473128));
  /* The system clock is after this code was written. */
  assert_true(tryon_clock_now_ms(NULL) > INT64_C(1764353473123));
  a = tryon_time_monotonic_ms();
  b = tryon_time_monotonic_ms();
  assert_true(b >= a);
}

/* ========================================================================== uuid */

static void test_core__uuid_v4_version_and_variant(void **state) {
  tryon_uuid prev = {{0}};

  for (int i = 0; i < 200; i++) {
    tryon_uuid u;
    char s[TRYON_UUID_STR_LEN];

    assert_int_equal(tryon_uuid_v4(&u), TRYON_OK);
    assert_int_equal(u.b[6] >> 4, 4);
    assert_int_equal(u.b[8] >> 6, 2);
    assert_memory_not_equal(u.b, prev.b, 16);
    tryon_uuid_format(&u, s);
    assert_int_equal(strlen(s), 36);
    assert_int_equal(s[14], '4');
    assert_non_null(strchr("89ab", s[19]));
    prev = u;
  }
}

static uint64_t v7_ms(const tryon_uuid *u) {
  uint64_t ms = 0;
  for (int i = 0; i < 6; i++) {
    ms = (ms << 8) | u->b[i];
  }
  return ms;
}

static void test_core__uuid_v7_layout_and_order(void **state) {
  tryon_fixed_clock fc;
  tryon_uuid prev;
  tryon_uuid u;

  tryon_fixed_clock_init(&fc, INT64_C(1764353473123));
  assert_int_equal(tryon_uuid_v7(&fc.clock, &prev), TRYON_OK);
  /* Many in one millisecond still sort in creation order. */
  for (int i = 0; i < 2000; i++) {
    assert_int_equal(tryon_uuid_v7(&fc.clock, &u), TRYON_OK);
    assert_int_equal(u.b[6] >> 4, 7);
    assert_int_equal(u.b[8] >> 6, 2);
    assert_int_equal(v7_ms(&u), UINT64_C(1764353473123));
    assert_true(memcmp(prev.b, u.b, 16) < 0);
    prev = u;
  }
  for (int i = 0; i < 50; i++) {
    fc.ms += 1;
    assert_int_equal(tryon_uuid_v7(&fc.clock, &u), TRYON_OK);
    assert_int_equal(v7_ms(&u), (uint64_t)fc.ms);
    assert_true(memcmp(prev.b, u.b, 16) < 0);
    prev = u;
  }
  /* A clock that goes back is still reported faithfully. */
  fc.ms = 1000;
  assert_int_equal(tryon_uuid_v7(&fc.clock, &u), TRYON_OK);
  assert_int_equal(v7_ms(&u), 1000);
  fc.ms = -5;
  assert_int_equal(tryon_uuid_v7(&fc.clock, &u), TRYON_OK);
  assert_int_equal(v7_ms(&u), 0);
  /* The system clock: a timestamp close to now. */
  assert_int_equal(tryon_uuid_v7(NULL, &u), TRYON_OK);
  assert_true(v7_ms(&u) + 60000 > (uint64_t)tryon_clock_now_ms(NULL));
}

static void test_core__uuid_parse_round_trip(void **state) {
  tryon_uuid u;
  tryon_uuid back;
  char s[TRYON_UUID_STR_LEN];

  for (int i = 0; i < 50; i++) {
    assert_int_equal(i % 2 ? tryon_uuid_v4(&u) : tryon_uuid_v7(NULL, &u), TRYON_OK);
    tryon_uuid_format(&u, s);
    assert_int_equal(tryon_uuid_parse(s, &back), TRYON_OK);
    assert_memory_equal(u.b, back.b, 16);
  }
  assert_int_equal(tryon_uuid_parse("0189ABCD-ef01-7abc-8def-0123456789AB", &back), TRYON_OK);
  tryon_uuid_format(&back, s);
  assert_string_equal(s, "0189abcd-ef01-7abc-8def-0123456789ab");
  assert_int_equal(back.b[0], 0x01);
  assert_int_equal(back.b[15], 0xab);
}

static void test_core__uuid_parse_rejects_bad(void **state) {
  static const char *const bad[] = {
      "",
      "0189abcd-ef01-7abc-8def-0123456789a",   /* short */
      "0189abcd-ef01-7abc-8def-0123456789abc", /* long */
      "0189abcd-ef01-7abc-8def-0123456789ag",  /* not hex */
      "0189abcdef01-7abc-8def-0123456789ab-",  /* dash moved */
      "0189abcd_ef01_7abc_8def_0123456789ab",
      "{0189abcd-ef01-7abc-8def-0123456789ab}",
      "urn:uuid:0189abcd-ef01-7abc-8def-0123456789ab",
      "0189abcdef017abc8def0123456789ab",
      " 0189abcd-ef01-7abc-8def-0123456789ab",
      "0189abcd-ef01-7abc-8def-0123456789ab ",
      "0189abcd-ef01-7abc-8def-0123456789a\xc3\xa9",
      "0x89abcd-ef01-7abc-8def-0123456789ab",
  };
  tryon_uuid u;
  tryon_uuid keep;

  memset(&keep, 0x5a, sizeof keep);
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    u = keep;
    assert_int_equal(tryon_uuid_parse(bad[i], &u), TRYON_E_INVALID);
    assert_memory_equal(u.b, keep.b, 16);
  }
  assert_int_equal(tryon_uuid_parse(NULL, &u), TRYON_E_INVALID);
}

/* =========================================================================== buf */

static void test_core__buf_init_is_empty_string(void **state) {
  tryon_buf b;

  tryon_buf_init(&b, 16);
  assert_non_null(b.data);
  assert_string_equal(b.data, "");
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 16);
  assert_int_equal(tryon_buf_append(&b, NULL, 0), TRYON_OK);
  assert_int_equal(b.cap, 0);
  tryon_buf_reset(&b);
  tryon_buf_release(&b);
  assert_int_equal(b.max, 16);
}

static void test_core__buf_append_limits(void **state) {
  static const struct {
    size_t max;
    const char *first;
    const char *second;
    tryon_status st;
    const char *result;
  } cases[] = {
      {16, "hello", " world", TRYON_OK, "hello world"},
      {11, "hello", " world", TRYON_OK, "hello world"}, /* exactly max */
      {10, "hello", " world", TRYON_E_TOO_LARGE, "hello"},
      {5, "hello", "!", TRYON_E_TOO_LARGE, "hello"},
      {0, "", "x", TRYON_E_TOO_LARGE, ""},
      {1000, "a", "b", TRYON_OK, "ab"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_buf b;

    tryon_buf_init(&b, cases[i].max);
    assert_int_equal(tryon_buf_append_str(&b, cases[i].first), TRYON_OK);
    assert_int_equal(tryon_buf_append_str(&b, cases[i].second), cases[i].st);
    assert_string_equal(b.data, cases[i].result);
    assert_int_equal(b.len, strlen(cases[i].result));
    assert_true(b.len <= b.max);
    tryon_buf_release(&b);
  }
}

static void test_core__buf_appendf(void **state) {
  tryon_buf b;
  char expect[2048];

  tryon_buf_init(&b, 2000);
  assert_int_equal(tryon_buf_appendf(&b, "%s=%d", "n", 5), TRYON_OK);
  assert_string_equal(b.data, "n=5");
  /* Forces growth past the first allocation. */
  assert_int_equal(tryon_buf_appendf(&b, ";%0900d", 7), TRYON_OK);
  snprintf(expect, sizeof expect, "n=5;%0900d", 7);
  assert_string_equal(b.data, expect);
  assert_int_equal(b.len, strlen(expect));
  /* Too large: refused, contents unchanged even though formatting wrote into spare room. */
  assert_int_equal(tryon_buf_appendf(&b, "%01200d", 1), TRYON_E_TOO_LARGE);
  assert_string_equal(b.data, expect);
  assert_int_equal(b.len, strlen(expect));
  /* Up to the ceiling exactly. */
  assert_int_equal(tryon_buf_appendf(&b, "%0*d", (int)(2000 - b.len), 0), TRYON_OK);
  assert_int_equal(b.len, 2000);
  assert_int_equal(tryon_buf_appendf(&b, "%s", ""), TRYON_OK);
  assert_int_equal(tryon_buf_appendf(&b, "x"), TRYON_E_TOO_LARGE);
  assert_int_equal(b.len, 2000);
  tryon_buf_release(&b);
}

static void test_core__buf_steal_reset_release(void **state) {
  tryon_buf b;
  size_t len = 99;
  char *s;

  tryon_buf_init(&b, 64);
  s = tryon_buf_steal(&b, &len);
  assert_non_null(s);
  assert_string_equal(s, "");
  assert_int_equal(len, 0);
  free(s);

  assert_int_equal(tryon_buf_append_str(&b, "abc"), TRYON_OK);
  s = tryon_buf_steal(&b, &len);
  assert_string_equal(s, "abc");
  assert_int_equal(len, 3);
  assert_string_equal(b.data, "");
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 64);
  free(s);

  assert_int_equal(tryon_buf_append_str(&b, "abcdef"), TRYON_OK);
  tryon_buf_reset(&b);
  assert_string_equal(b.data, "");
  assert_int_equal(b.len, 0);
  assert_true(b.cap > 0);
  assert_int_equal(tryon_buf_append_str(&b, "xy"), TRYON_OK);
  assert_string_equal(b.data, "xy");
  tryon_buf_release(&b);
  assert_string_equal(b.data, "");
  assert_int_equal(b.cap, 0);
  assert_int_equal(tryon_buf_append_str(&b, "again"), TRYON_OK);
  assert_string_equal(b.data, "again");
  tryon_buf_release(&b);
}

static void test_core__buf_size_max_overflow(void **state) {
  tryon_buf b;

  tryon_buf_init(&b, 32);
  assert_int_equal(tryon_buf_append_str(&b, "abc"), TRYON_OK);
  assert_int_equal(tryon_buf_append(&b, "x", SIZE_MAX), TRYON_E_TOO_LARGE);
  assert_int_equal(tryon_buf_append(&b, "x", SIZE_MAX - 2), TRYON_E_TOO_LARGE);
  assert_string_equal(b.data, "abc");
  tryon_buf_release(&b);

  /* No ceiling to speak of: the sizes must still not wrap around. */
  tryon_buf_init(&b, SIZE_MAX);
  assert_int_equal(tryon_buf_append_str(&b, "abc"), TRYON_OK);
  assert_int_equal(tryon_buf_append(&b, "x", SIZE_MAX), TRYON_E_TOO_LARGE);
  assert_int_equal(tryon_buf_append(&b, "x", SIZE_MAX - 3), TRYON_E_NOMEM);
  assert_string_equal(b.data, "abc");
  assert_int_equal(b.len, 3);
  tryon_buf_release(&b);
}

static void test_core__buf_append_from_itself(void **state) {
  tryon_buf b;

  tryon_buf_init(&b, 1 << 20);
  assert_int_equal(tryon_buf_append_str(&b, "0123456789"), TRYON_OK);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(tryon_buf_append(&b, b.data, b.len), TRYON_OK);
  }
  assert_int_equal(b.len, 10 << 10);
  for (size_t i = 0; i < b.len; i++) {
    assert_int_equal(b.data[i], '0' + (int)(i % 10));
  }
  tryon_buf_release(&b);
}

/* ========================================================================= arena */

static void test_core__arena_alignment_and_zeroing(void **state) {
  static const size_t sizes[] = {1, 3, 7, 16, 17, 33, 100, 2047, 2049, 5000, 1, 9000, 8, 0};
  tryon_arena *a = tryon_arena_new(0);
  size_t total = 0;

  assert_non_null(a);
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
      unsigned char *p = tryon_arena_alloc(a, sizes[i]);
      assert_non_null(p);
      assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
      for (size_t k = 0; k < sizes[i]; k++) {
        assert_int_equal(p[k], 0);
      }
      memset(p, 0xab, sizes[i]);
      total += sizes[i];
    }
  }
  assert_int_equal(tryon_arena_used(a), total);
  tryon_arena_free(a);
}

static void test_core__arena_strings(void **state) {
  tryon_arena *a = tryon_arena_new(0);
  char *s;

  assert_non_null(a);
  s = tryon_arena_strdup(a, "hello");
  assert_string_equal(s, "hello");
  assert_null(tryon_arena_strdup(a, NULL));
  s = tryon_arena_strndup(a, "hello world", 5);
  assert_string_equal(s, "hello");
  s = tryon_arena_strndup(a, "hi", 100); /* a bound past the end stops at the NUL */
  assert_string_equal(s, "hi");
  s = tryon_arena_strndup(a, "abc", 0);
  assert_string_equal(s, "");
  s = tryon_arena_sprintf(a, "%s-%d-%05.1f", "x", 42, 2.5);
  assert_string_equal(s, "x-42-002.5");
  s = tryon_arena_sprintf(a, "%03000d", 1);
  assert_int_equal(strlen(s), 3000);
  tryon_arena_free(a);
}

static void test_core__arena_limit(void **state) {
  tryon_arena *a = tryon_arena_new(100);

  assert_non_null(a);
  assert_non_null(tryon_arena_alloc(a, 60));
  assert_null(tryon_arena_alloc(a, 41));
  assert_int_equal(tryon_arena_used(a), 60);
  assert_non_null(tryon_arena_alloc(a, 40));
  assert_int_equal(tryon_arena_used(a), 100);
  assert_null(tryon_arena_alloc(a, 1));
  assert_null(tryon_arena_strdup(a, "x"));
  assert_null(tryon_arena_sprintf(a, "%d", 1));
  assert_null(tryon_arena_alloc(a, SIZE_MAX));
  assert_int_equal(tryon_arena_used(a), 100);
  tryon_arena_free(a);

  a = tryon_arena_new(0);
  assert_null(tryon_arena_alloc(a, SIZE_MAX));
  assert_null(tryon_arena_alloc(a, SIZE_MAX - 8));
  tryon_arena_free(a);
}

static int cleanup_order[16];
static int cleanup_calls;

static void record_cleanup(void *ptr) {
  assert_true(cleanup_calls < (int)ARRAY_LEN(cleanup_order));
  cleanup_order[cleanup_calls++] = (int)(intptr_t)ptr;
}

static void test_core__arena_cleanups_lifo_once(void **state) {
  tryon_arena *a = tryon_arena_new(16);

  cleanup_calls = 0;
  assert_non_null(a);
  /* Cleanups are not counted against the limit: an arena at its ceiling can still
   * take ownership of a PGresult. */
  assert_non_null(tryon_arena_alloc(a, 16));
  for (int i = 1; i <= 5; i++) {
    assert_int_equal(tryon_arena_cleanup_add(a, record_cleanup, (void *)(intptr_t)i), TRYON_OK);
  }
  assert_int_equal(cleanup_calls, 0);
  tryon_arena_free(a);
  assert_int_equal(cleanup_calls, 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(cleanup_order[i], 5 - i);
  }

  /* No arena to hold it: the resource is released at once. */
  cleanup_calls = 0;
  assert_int_equal(tryon_arena_cleanup_add(NULL, record_cleanup, (void *)(intptr_t)9),
                   TRYON_E_INVALID);
  assert_int_equal(cleanup_calls, 1);
  assert_int_equal(cleanup_order[0], 9);
  tryon_arena_free(NULL);
}

/* Cleanups take void *; calling cJSON_Delete through another function type would be
 * undefined, hence the wrapper. */
static void delete_json(void *p) {
  cJSON_Delete(p);
}

static void test_core__arena_cleanup_frees_heap(void **state) {
  tryon_arena *a = tryon_arena_new(0);
  cJSON *j = cJSON_CreateObject();

  /* Under ASan a leak here would fail the run: the arena must free what it owns. */
  assert_non_null(a);
  assert_int_equal(tryon_arena_cleanup_add(a, delete_json, j), TRYON_OK);
  assert_int_equal(tryon_arena_cleanup_add(a, free, malloc(10)), TRYON_OK);
  tryon_arena_free(a);
}

/* ======================================================================== config */

#define T_DB "postgresql://app:Pg-S3CRET-pw@localhost:5432/tryon"
#define T_TOKEN "123456789:AAE-S3CRET-token-value_xyz"
#define T_JWT "S3CRET-jwt-0123456789abcdefghijklmnop"

/* Writes `len` bytes to a fresh file under /tmp; `path` receives its name. */
static void write_temp(const char *content, size_t len, char path[64]) {
  int fd;

  snprintf(path, 64, "/tmp/tryon_test_core_XXXXXX");
  fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
}

/* Loads with `dotenv` as the .env file's text (NULL: no file) and `envp`. */
static tryon_status load(const char *dotenv, const char *const *envp, unsigned needs,
                         tryon_config *cfg, tryon_err *err) {
  char path[64];
  tryon_status st;

  tryon_err_clear(err);
  if (dotenv == NULL) {
    return tryon_config_load(cfg, envp, NULL, needs, err);
  }
  write_temp(dotenv, strlen(dotenv), path);
  st = tryon_config_load(cfg, envp, path, needs, err);
  unlink(path);
  return st;
}

static void assert_zeroed(const tryon_config *cfg) {
  tryon_config zero;

  memset(&zero, 0, sizeof zero);
  assert_memory_equal(cfg, &zero, sizeof zero);
}

static void test_core__config_defaults(void **state) {
  tryon_config cfg;
  tryon_err err;

  assert_int_equal(load(NULL, NULL, 0, &cfg, &err), TRYON_OK);
  assert_null(cfg.database_url);
  assert_int_equal(cfg.db_pool_size, 8);
  assert_int_equal(cfg.db_pool_timeout_ms, 5000);
  assert_null(cfg.migrations_dir);
  assert_int_equal(cfg.http_port, 8080);
  assert_string_equal(cfg.public_url, "http://localhost:8080");
  assert_int_equal(cfg.log_level, TRYON_LOG_INFO);
  assert_string_equal(cfg.storage_dir, "var/storage");
  assert_null(cfg.bot_token);
  assert_null(cfg.jwt_secret);
  assert_string_equal(cfg.kie_api_url, "https://api.kie.ai");
  assert_string_equal(cfg.kie_upload_url, "https://kieai.redpandaai.co");
  assert_string_equal(cfg.openrouter_api_url, "https://openrouter.ai/api/v1");
  assert_string_equal(cfg.yookassa_api_url, "https://api.yookassa.ru/v3");
  assert_string_equal(cfg.telegram_api_url, "https://api.telegram.org");
  assert_int_equal(cfg.initdata_max_age_s, 86400);
  assert_false(cfg.initdata_ed25519);
  assert_false(cfg.telegram_test_env);
  assert_int_equal(cfg.jwt_ttl_s, 3600);
  assert_null(cfg.webapp_origin);
  assert_int_equal(cfg.http_threads, 2);
  assert_int_equal(cfg.rate_ip_rps, 20);
  assert_int_equal(cfg.rate_user_burst, 30);
  tryon_config_release(&cfg);
  assert_zeroed(&cfg);
  tryon_config_release(&cfg); /* a zeroed config is accepted */
  tryon_config_release(NULL);
}

static void test_core__config_all_set(void **state) {
  const char *env[] = {"TRYON_DATABASE_URL=" T_DB,
                       "TRYON_BOT_TOKEN=" T_TOKEN,
                       "TRYON_JWT_SECRET=" T_JWT,
                       "TRYON_MIGRATIONS_DIR=/srv/migrations",
                       "TRYON_DB_POOL_SIZE=200",
                       "TRYON_DB_POOL_TIMEOUT_MS=3600000",
                       "TRYON_HTTP_PORT=65535",
                       "TRYON_LOG_LEVEL=DEBUG",
                       "TRYON_PUBLIC_URL=https://[::1]:8443/app",
                       "TRYON_TELEGRAM_API_URL=HTTP://user@example.com",
                       "PATH=/usr/bin",
                       "NOT_A_PAIR",
                       NULL};
  tryon_config cfg;
  tryon_err err;

  assert_int_equal(load(NULL, env, TRYON_CONFIG_NEED_DB | TRYON_CONFIG_NEED_AUTH, &cfg, &err),
                   TRYON_OK);
  assert_string_equal(cfg.database_url, T_DB);
  assert_string_equal(cfg.bot_token, T_TOKEN);
  assert_string_equal(cfg.jwt_secret, T_JWT);
  assert_string_equal(cfg.migrations_dir, "/srv/migrations");
  assert_int_equal(cfg.db_pool_size, 200);
  assert_int_equal(cfg.db_pool_timeout_ms, 3600000);
  assert_int_equal(cfg.http_port, 65535);
  assert_int_equal(cfg.log_level, TRYON_LOG_DEBUG);
  assert_string_equal(cfg.public_url, "https://[::1]:8443/app");
  assert_string_equal(cfg.telegram_api_url, "HTTP://user@example.com");
  tryon_config_release(&cfg);
}

static void test_core__config_env_over_dotenv_over_defaults(void **state) {
  const char *dotenv = "TRYON_HTTP_PORT=9000\n"
                       "TRYON_STORAGE_DIR=/from/dotenv\n"
                       "TRYON_LOG_LEVEL=debug\n";
  /* The first entry of a name wins, as with getenv. */
  const char *env[] = {"TRYON_HTTP_PORT=9100", "TRYON_HTTP_PORT=9200", NULL};
  tryon_config cfg;
  tryon_err err;

  assert_int_equal(load(dotenv, env, 0, &cfg, &err), TRYON_OK);
  assert_int_equal(cfg.http_port, 9100);
  assert_string_equal(cfg.storage_dir, "/from/dotenv");
  assert_int_equal(cfg.log_level, TRYON_LOG_DEBUG);
  assert_int_equal(cfg.db_pool_size, 8);
  tryon_config_release(&cfg);
}

static void test_core__config_missing_dotenv_skipped(void **state) {
  tryon_config cfg;
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(tryon_config_load(&cfg, NULL, "/tmp/tryon-test-core-no-such-dir/.env", 0, &err),
                   TRYON_OK);
  assert_int_equal(cfg.http_port, 8080);
  tryon_config_release(&cfg);
}

static void test_core__config_unreadable_dotenv(void **state) {
  tryon_config cfg;
  tryon_err err;

  tryon_err_clear(&err);
  /* A directory opens but cannot be read. */
  assert_int_equal(tryon_config_load(&cfg, NULL, "/tmp", 0, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message, "/tmp cannot be read");
  assert_zeroed(&cfg);
}

static void test_core__config_oversized_dotenv(void **state) {
  const size_t size = (1u << 20) + 100;
  char *text = malloc(size);
  char path[64];
  char expect[128];
  tryon_config cfg;
  tryon_err err;

  assert_non_null(text);
  /* Comment lines, with a line cut by the size limit: only the size is reported. */
  for (size_t i = 0; i < size; i++) {
    text[i] = i % 50 == 49 ? '\n' : i % 50 == 0 ? '#' : 'x';
  }
  memcpy(text + (1u << 20) - 10, "\nBAD LINE", 9);
  write_temp(text, size, path);
  free(text);
  tryon_err_clear(&err);
  assert_int_equal(tryon_config_load(&cfg, NULL, path, 0, &err), TRYON_E_CONFIG);
  unlink(path);
  snprintf(expect, sizeof expect, "%s is larger than 1048576 bytes", path);
  assert_string_equal(err.message, expect);
  assert_zeroed(&cfg);
}

static void test_core__config_empty_counts_as_unset(void **state) {
  const char *dotenv = "TRYON_HTTP_PORT=9000\n"
                       "TRYON_STORAGE_DIR=\n"
                       "TRYON_MIGRATIONS_DIR=''\n"
                       "TRYON_LOG_LEVEL=\"\"\n";
  const char *env[] = {"TRYON_HTTP_PORT=", "TRYON_DATABASE_URL=", "TRYON_PUBLIC_URL=", NULL};
  tryon_config cfg;
  tryon_err err;

  assert_int_equal(load(dotenv, env, TRYON_CONFIG_NEED_DB, &cfg, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message, "TRYON_DATABASE_URL is missing");
  assert_zeroed(&cfg);

  assert_int_equal(load(dotenv, env, 0, &cfg, &err), TRYON_OK);
  assert_int_equal(cfg.http_port, 9000); /* the empty environment entry is no value */
  assert_string_equal(cfg.storage_dir, "var/storage");
  assert_null(cfg.migrations_dir);
  assert_int_equal(cfg.log_level, TRYON_LOG_INFO);
  assert_string_equal(cfg.public_url, "http://localhost:8080");
  assert_null(cfg.database_url);
  tryon_config_release(&cfg);
}

static void test_core__config_missing_required_listed_together(void **state) {
  tryon_config cfg;
  tryon_err err;
  const char *env[] = {"TRYON_HTTP_PORT=abc", "TRYON_JWT_SECRET=S3CRET-short", NULL};

  assert_int_equal(load(NULL, NULL, TRYON_CONFIG_NEED_DB | TRYON_CONFIG_NEED_AUTH, &cfg, &err),
                   TRYON_E_CONFIG);
  assert_int_equal(err.status, TRYON_E_CONFIG);
  assert_string_equal(err.message, "TRYON_DATABASE_URL is missing; TRYON_BOT_TOKEN is missing; "
                                   "TRYON_JWT_SECRET is missing");

  assert_int_equal(load(NULL, env, TRYON_CONFIG_NEED_DB, &cfg, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message, "TRYON_DATABASE_URL is missing; TRYON_HTTP_PORT must be an "
                                   "integer from 1 to 65535 (got \"abc\"); TRYON_JWT_SECRET "
                                   "must be at least 32 bytes");
  assert_null(strstr(err.message, "S3CRET"));
  assert_zeroed(&cfg);
}

/* A kie.ai callback URL without the key that proves a callback came from kie.ai is
 * refused at start (issue 12, item 4); with both it loads. */
static void test_core__config_callback_url_needs_the_hmac_key(void **state) {
  (void)state;
  tryon_config cfg;
  tryon_err err;
  const char *alone[] = {"TRYON_KIE_CALLBACK_URL=https://app.example.com/webhooks/kie", NULL};
  assert_int_equal(load(NULL, alone, 0, &cfg, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message,
                      "TRYON_KIE_WEBHOOK_HMAC_KEY is required when TRYON_KIE_CALLBACK_URL is set");
  assert_zeroed(&cfg);
  const char *both[] = {"TRYON_KIE_CALLBACK_URL=https://app.example.com/webhooks/kie",
                        "TRYON_KIE_WEBHOOK_HMAC_KEY=kie-key", NULL};
  assert_int_equal(load(NULL, both, 0, &cfg, &err), TRYON_OK);
  assert_string_equal(cfg.kie_callback_url, "https://app.example.com/webhooks/kie");
  tryon_config_release(&cfg);
  const char *key_only[] = {"TRYON_KIE_WEBHOOK_HMAC_KEY=kie-key", NULL};
  assert_int_equal(load(NULL, key_only, 0, &cfg, &err), TRYON_OK);
  tryon_config_release(&cfg);
}

static void test_core__config_needs_select_required(void **state) {
  const char *db_only[] = {"TRYON_DATABASE_URL=" T_DB, NULL};
  tryon_config cfg;
  tryon_err err;

  /* Not needed and no default: NULL, no error. */
  assert_int_equal(load(NULL, db_only, 0, &cfg, &err), TRYON_OK);
  assert_null(cfg.bot_token);
  assert_null(cfg.jwt_secret);
  tryon_config_release(&cfg);

  assert_int_equal(load(NULL, db_only, TRYON_CONFIG_NEED_DB, &cfg, &err), TRYON_OK);
  assert_string_equal(cfg.database_url, T_DB);
  assert_null(cfg.bot_token);
  tryon_config_release(&cfg);

  assert_int_equal(load(NULL, db_only, TRYON_CONFIG_NEED_AUTH, &cfg, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message, "TRYON_BOT_TOKEN is missing; TRYON_JWT_SECRET is missing");
}

static void test_core__config_bad_values(void **state) {
  static const struct {
    const char *entry;  /* NAME=value */
    const char *expect; /* the whole message */
  } cases[] = {
      {"TRYON_HTTP_PORT=abc", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"abc\")"},
      {"TRYON_HTTP_PORT=0", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"0\")"},
      {"TRYON_HTTP_PORT=65536",
       "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"65536\")"},
      {"TRYON_HTTP_PORT=-1", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"-1\")"},
      {"TRYON_HTTP_PORT= 80", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \" 80\")"},
      {"TRYON_HTTP_PORT=80 ", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"80 \")"},
      {"TRYON_HTTP_PORT=+80", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"+80\")"},
      {"TRYON_HTTP_PORT=0x50", "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"0x50\")"},
      {"TRYON_HTTP_PORT=99999999999999999999999",
       "TRYON_HTTP_PORT must be an integer from 1 to 65535 (got \"99999999999999999999999\")"},
      {"TRYON_DB_POOL_SIZE=0", "TRYON_DB_POOL_SIZE must be an integer from 1 to 200 (got \"0\")"},
      {"TRYON_DB_POOL_SIZE=201",
       "TRYON_DB_POOL_SIZE must be an integer from 1 to 200 (got \"201\")"},
      {"TRYON_DB_POOL_SIZE=8.5",
       "TRYON_DB_POOL_SIZE must be an integer from 1 to 200 (got \"8.5\")"},
      {"TRYON_DB_POOL_TIMEOUT_MS=3600001",
       "TRYON_DB_POOL_TIMEOUT_MS must be an integer from 1 to 3600000 (got \"3600001\")"},
      {"TRYON_PUBLIC_URL=ftp://example.com",
       "TRYON_PUBLIC_URL must be an http:// or https:// URL with a host (got "
       "\"ftp://example.com\")"},
      {"TRYON_PUBLIC_URL=localhost:8080",
       "TRYON_PUBLIC_URL must be an http:// or https:// URL with a host (got "
       "\"localhost:8080\")"},
      {"TRYON_PUBLIC_URL=http://",
       "TRYON_PUBLIC_URL must be an http:// or https:// URL with a host (got \"http://\")"},
      {"TRYON_PUBLIC_URL=http:///path",
       "TRYON_PUBLIC_URL must be an http:// or https:// URL with a host (got \"http:///path\")"},
      {"TRYON_PUBLIC_URL=http://:8080",
       "TRYON_PUBLIC_URL must be an http:// or https:// URL with a host (got \"http://:8080\")"},
      {"TRYON_KIE_API_URL=https://host:99999",
       "TRYON_KIE_API_URL must be an http:// or https:// URL with a host (got "
       "\"https://host:99999\")"},
      {"TRYON_KIE_API_URL=https://ho st",
       "TRYON_KIE_API_URL must be an http:// or https:// URL with a host (got \"https://ho st\")"},
      {"TRYON_KIE_API_URL=https://a\"b\n", "TRYON_KIE_API_URL must be an http:// or https:// URL "
                                           "with a host (got \"https://a\\\"b?\")"},
      {"TRYON_LOG_LEVEL=loud",
       "TRYON_LOG_LEVEL must be one of debug, info, warn, error (got \"loud\")"},
      {"TRYON_LOG_LEVEL=warning",
       "TRYON_LOG_LEVEL must be one of debug, info, warn, error (got \"warning\")"},
      {"TRYON_INITDATA_ED25519=maybe",
       "TRYON_INITDATA_ED25519 must be true or false (got \"maybe\")"},
      {"TRYON_INITDATA_MAX_AGE_S=0",
       "TRYON_INITDATA_MAX_AGE_S must be an integer from 1 to 31536000 (got \"0\")"},
      {"TRYON_RATE_LIMIT_IP_RPS=1000001",
       "TRYON_RATE_LIMIT_IP_RPS must be an integer from 1 to 1000000 (got \"1000001\")"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *env[] = {cases[i].entry, NULL};
    tryon_config cfg;
    tryon_err err;

    assert_int_equal(load(NULL, env, 0, &cfg, &err), TRYON_E_CONFIG);
    assert_string_equal(err.message, cases[i].expect);
    assert_zeroed(&cfg);
  }
}

static void test_core__config_booleans(void **state) {
  static const struct {
    const char *entry;
    bool want;
  } cases[] = {
      {"TRYON_INITDATA_ED25519=true", true},   {"TRYON_INITDATA_ED25519=YES", true},
      {"TRYON_INITDATA_ED25519=on", true},     {"TRYON_INITDATA_ED25519=1", true},
      {"TRYON_INITDATA_ED25519=False", false}, {"TRYON_INITDATA_ED25519=no", false},
      {"TRYON_INITDATA_ED25519=off", false},   {"TRYON_INITDATA_ED25519=0", false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *env[] = {cases[i].entry, NULL};
    tryon_config cfg;
    tryon_err err;
    assert_int_equal(load(NULL, env, 0, &cfg, &err), TRYON_OK);
    assert_int_equal(cfg.initdata_ed25519, cases[i].want);
    tryon_config_release(&cfg);
  }
}

static void test_core__config_long_value_quoted_briefly(void **state) {
  char entry[512];
  tryon_config cfg;
  tryon_err err;
  const char *env[] = {entry, NULL};

  snprintf(entry, sizeof entry, "TRYON_PUBLIC_URL=ftp://%0300d", 0);
  assert_int_equal(load(NULL, env, 0, &cfg, &err), TRYON_E_CONFIG);
  assert_true(strlen(err.message) < 200);
  assert_non_null(strstr(err.message, "...\")"));
}

static void test_core__config_secrets_never_quoted(void **state) {
  static const struct {
    const char *entry;
    const char *expect;
  } cases[] = {
      {"TRYON_DATABASE_URL=postgresql://app:S3CRET@host/db?bogus=S3CRET",
       "TRYON_DATABASE_URL is not a valid PostgreSQL connection string"},
      {"TRYON_DATABASE_URL=host=db password=S3CRET nosuchkey=S3CRET",
       "TRYON_DATABASE_URL is not a valid PostgreSQL connection string"},
      {"TRYON_DATABASE_URL=host=db password='S3CRET",
       "TRYON_DATABASE_URL is not a valid PostgreSQL connection string"},
      {"TRYON_JWT_SECRET=S3CRET-but-31-bytes-long-xxxxxx",
       "TRYON_JWT_SECRET must be at least 32 bytes"},
      {"TRYON_BOT_TOKEN=123:S3CRET with-space",
       "TRYON_BOT_TOKEN must not contain spaces or control characters"},
      {"TRYON_BOT_TOKEN=123:S3CRET\n",
       "TRYON_BOT_TOKEN must not contain spaces or control characters"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *env[] = {cases[i].entry, NULL};
    tryon_config cfg;
    tryon_err err;

    assert_int_equal(load(NULL, env, TRYON_CONFIG_NEED_DB | TRYON_CONFIG_NEED_AUTH, &cfg, &err),
                     TRYON_E_CONFIG);
    if (strstr(err.message, cases[i].expect) == NULL) {
      fail_msg("case %zu: %s", i, err.message);
    }
    assert_null(strstr(err.message, "S3CRET"));
  }
}

static void test_core__config_jwt_secret_length(void **state) {
  const char *exact[] = {"TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef", NULL};
  const char *shorter[] = {"TRYON_JWT_SECRET=0123456789abcdef0123456789abcde", NULL};
  tryon_config cfg;
  tryon_err err;

  assert_int_equal(load(NULL, exact, 0, &cfg, &err), TRYON_OK);
  assert_int_equal(strlen(cfg.jwt_secret), 32);
  tryon_config_release(&cfg);
  assert_int_equal(load(NULL, shorter, 0, &cfg, &err), TRYON_E_CONFIG);
  assert_string_equal(err.message, "TRYON_JWT_SECRET must be at least 32 bytes");
}

static void test_core__config_dotenv_syntax(void **state) {
  static const struct {
    const char *text;
    const char *storage_dir;
  } cases[] = {
      {"TRYON_STORAGE_DIR=/srv/data\n", "/srv/data"},
      {"export TRYON_STORAGE_DIR=/srv/x\n", "/srv/x"},
      {"  export\tTRYON_STORAGE_DIR\t= spaced value   \n", "spaced value"},
      {"TRYON_STORAGE_DIR=/a # comment\n", "/a"},
      {"TRYON_STORAGE_DIR=/a\t# comment\n", "/a"},
      {"TRYON_STORAGE_DIR=/a#b\n", "/a#b"},
      {"TRYON_STORAGE_DIR='/lit $HOME \\n # x \"q\"'\n", "/lit $HOME \\n # x \"q\""},
      {"TRYON_STORAGE_DIR=\"a\\nb \\\"q\\\" c\\\\d \\t e'f # g\"\n", "a\nb \"q\" c\\d \\t e'f # g"},
      {"TRYON_STORAGE_DIR='x' # trailing comment\n", "x"},
      {"TRYON_STORAGE_DIR=\"x\"   \n", "x"},
      {"# only a comment\n\n   \n\t# indented comment\nTRYON_STORAGE_DIR=y\r\n", "y"},
      {"TRYON_STORAGE_DIR=first\nTRYON_STORAGE_DIR=second\n", "second"},
      {"\xef\xbb\xbfTRYON_STORAGE_DIR=bom", "bom"},
      {"OTHER_TOOL_VAR=1\nexport=2\nTRYON_STORAGE_DIR=z\n", "z"},
      {"TRYON_STORAGE_DIR=\"\"\n", "var/storage"},
      {"TRYON_STORAGE_DIR=x\nTRYON_STORAGE_DIR=\n", "var/storage"},
      {"TRYON_STORAGE_DIR= # nothing but a comment\n", "var/storage"},
      {"", "var/storage"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_config cfg;
    tryon_err err;
    tryon_status st = load(cases[i].text, NULL, 0, &cfg, &err);

    if (st != TRYON_OK) {
      fail_msg("case %zu: %s", i, err.message);
    }
    assert_string_equal(cfg.storage_dir, cases[i].storage_dir);
    tryon_config_release(&cfg);
  }
}

static void test_core__config_dotenv_malformed_lines(void **state) {
  static const struct {
    const char *text;
    const char *expect; /* after "<path> " */
  } cases[] = {
      {"TRYON_HTTP_PORT=8080\n# fine\nSUPERSECRET_WITHOUT_EQUALS\n", "line 3: expected NAME=value"},
      {"1SUPERSECRET=x\n", "line 1: invalid variable name"},
      {"MY-VAR=SUPERSECRET\n", "line 1: expected NAME=value"},
      {"=SUPERSECRET\n", "line 1: expected NAME=value"},
      {"\n\nTRYON_JWT_SECRET='SUPERSECRET\n", "line 3: unterminated quoted value"},
      {"TRYON_JWT_SECRET=\"SUPERSECRET\\\"\n", "line 1: unterminated quoted value"},
      {"TRYON_JWT_SECRET='a' SUPERSECRET\n", "line 1: unexpected text after the closing quote"},
      {"TRYON_JWT_SECRET=\"a\"SUPERSECRET\n", "line 1: unexpected text after the closing quote"},
      {"export SUPERSECRET\n", "line 1: expected NAME=value"},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char path[64];
    char expect[256];
    tryon_config cfg;
    tryon_err err;

    tryon_err_clear(&err);
    write_temp(cases[i].text, strlen(cases[i].text), path);
    assert_int_equal(tryon_config_load(&cfg, NULL, path, 0, &err), TRYON_E_CONFIG);
    unlink(path);
    snprintf(expect, sizeof expect, "%s %s", path, cases[i].expect);
    assert_string_equal(err.message, expect);
    assert_null(strstr(err.message, "SUPERSECRET"));
    assert_zeroed(&cfg);
  }
}

static void test_core__config_dotenv_nul_and_several_bad_lines(void **state) {
  static const char text[] = "BAD1\nTRYON_HTTP_PORT=1\nTRYON_JWT_SECRET=\0SUPERSECRET\nBAD4";
  char path[64];
  char expect[512];
  tryon_config cfg;
  tryon_err err;

  tryon_err_clear(&err);
  write_temp(text, sizeof text - 1, path);
  assert_int_equal(tryon_config_load(&cfg, NULL, path, 0, &err), TRYON_E_CONFIG);
  unlink(path);
  snprintf(expect, sizeof expect,
           "%s line 1: expected NAME=value; %s line 3: contains a NUL byte; "
           "%s line 4: expected NAME=value",
           path, path, path);
  assert_string_equal(err.message, expect);
}

static void test_core__config_message_truncated(void **state) {
  tryon_buf text;
  tryon_config cfg;
  tryon_err err;
  size_t len;

  tryon_buf_init(&text, 1 << 16);
  for (int i = 0; i < 300; i++) {
    assert_int_equal(tryon_buf_appendf(&text, "bad line %d\n", i), TRYON_OK);
  }
  assert_int_equal(load(text.data, NULL, TRYON_CONFIG_NEED_DB, &cfg, &err), TRYON_E_CONFIG);
  len = strlen(err.message);
  assert_true(len < TRYON_ERR_MESSAGE_MAX);
  assert_non_null(strstr(err.message, " line 1: expected NAME=value; "));
  /* 300 bad lines and the missing URL: whatever did not fit is counted. */
  assert_int_equal(strncmp(err.message + len - 5, " more", 5), 0);
  assert_non_null(strstr(err.message, "; and "));
  assert_null(strstr(err.message, "TRYON_DATABASE_URL"));
  tryon_buf_release(&text);
}

static void test_core__config_var_names(void **state) {
  size_t n = tryon_config_var_count();

  /* The map only grows; every name is a TRYON_ one, and the list ends at n. */
  assert_true(n >= 15);
  assert_string_equal(tryon_config_var_name(0), "TRYON_DATABASE_URL");
  for (size_t i = 0; i < n; i++)
    assert_int_equal(strncmp(tryon_config_var_name(i), "TRYON_", 6), 0);
  assert_null(tryon_config_var_name(n));
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < i; j++) {
      assert_string_not_equal(tryon_config_var_name(i), tryon_config_var_name(j));
    }
  }
}

static void test_core__config_vars_in_env_example(void **state) {
  const char *root = getenv("TRYON_SOURCE_DIR");
  char path[4096];
  FILE *f;
  tryon_buf text;
  char chunk[4096];
  size_t got;

  if (root == NULL || root[0] == '\0') {
    fail_msg("TRYON_SOURCE_DIR is not set: run this test through ctest, or set it to the "
             "repository root");
  }
  snprintf(path, sizeof path, "%s/.env.example", root);
  f = fopen(path, "r");
  if (f == NULL) {
    fail_msg("cannot open %s", path);
  }
  tryon_buf_init(&text, 1 << 20);
  assert_int_equal(tryon_buf_append_str(&text, "\n"), TRYON_OK);
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    assert_int_equal(tryon_buf_append(&text, chunk, got), TRYON_OK);
  }
  fclose(f);
  for (size_t i = 0; i < tryon_config_var_count(); i++) {
    char needle[128];
    snprintf(needle, sizeof needle, "\n%s=", tryon_config_var_name(i));
    if (strstr(text.data, needle) == NULL) {
      tryon_buf_release(&text);
      fail_msg("%s is not in %s", tryon_config_var_name(i), path);
    }
  }
  tryon_buf_release(&text);

  /* And the example itself loads. */
  {
    tryon_config cfg;
    tryon_err err;
    tryon_err_clear(&err);
    assert_int_equal(tryon_config_load(&cfg, NULL, path, 0, &err), TRYON_OK);
    tryon_config_release(&cfg);
  }
}

/* The one-owner helpers: characters, UUID ids, JSON times. */
/* The public faces of the validator and the cut-point finder initData copies use. */
static void test_core__utf8_valid_and_prefix(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t n;
    bool valid;
    size_t prefix;
  } cases[] = {
      {"abc", 3, true, 3},
      {"\xd0\x9f\xd1\x80", 4, true, 4},  /* "Пр" */
      {"\xd0\x9f\xd1", 3, false, 2},     /* cut inside the second letter */
      {"\xf0\x9f\x98\x80", 4, true, 4},  /* an emoji */
      {"\xf0\x9f\x98", 3, false, 0},     /* cut inside it */
      {"\xc0\xaf", 2, false, 2},         /* overlong '/' */
      {"\xed\xa0\x80", 3, false, 3},     /* a surrogate */
      {"\xf4\x90\x80\x80", 4, false, 4}, /* past U+10FFFF */
      {"a\0b", 3, true, 3},              /* NUL is a character here */
      {"", 0, true, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (tryon_utf8_valid(cases[i].s, cases[i].n) != cases[i].valid)
      fail_msg("case %zu: valid should be %d", i, cases[i].valid);
    if (cases[i].valid || i == 2 || i == 4)
      assert_int_equal(tryon_utf8_prefix(cases[i].s, cases[i].n), cases[i].prefix);
  }
}

static void test_core__utf8_chars_uuid_valid_json_time(void **state) {
  static const struct {
    const char *s;
    size_t chars;
  } text[] = {
      {"", 0}, {"abc", 3}, {"\xd0\x90\xd0\xbd\xd0\xbd\xd0\xb0", 4}, {"\xf0\x9f\x98\x80!", 2}};
  static const struct {
    const char *s;
    bool valid;
  } ids[] = {{"2f6e1c2a-8d3b-4c1e-9a7f-0123456789ab", true},
             {"2F6E1C2A-8D3B-4C1E-9A7F-0123456789AB", true},
             {"2f6e1c2a-8d3b-4c1e-9a7f-0123456789a", false},
             {"2f6e1c2a-8d3b-4c1e-9a7f-0123456789abc", false},
             {"nope", false},
             {"", false},
             {NULL, false}};
  (void)state;
  for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
    assert_int_equal(tryon_utf8_chars(text[i].s), text[i].chars);
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    assert_int_equal(tryon_uuid_valid(ids[i].s), ids[i].valid);
  cJSON *o = cJSON_CreateObject();
  tryon_json_add_time(o, "never", 0);
  tryon_json_add_time(o, "at", 1733584787123);
  char *printed = cJSON_PrintUnformatted(o);
  assert_string_equal(printed, "{\"never\":null,\"at\":\"2024-12-07T15:19:47.123Z\"}");
  cJSON_free(printed);
  cJSON_Delete(o);
}

static void test_core__hex_and_hash(void **state) {
  unsigned char bytes[4];
  char text[9];
  (void)state;
  assert_true(tryon_hex_decode("00fFa5", 6, bytes, 3));
  assert_int_equal(bytes[0], 0x00);
  assert_int_equal(bytes[1], 0xff);
  assert_int_equal(bytes[2], 0xa5);
  assert_false(tryon_hex_decode("0g", 2, bytes, 1));  /* not a digit */
  assert_false(tryon_hex_decode("abc", 3, bytes, 1)); /* wrong length */
  assert_int_equal(tryon_hex_digit('F'), 15);
  assert_int_equal(tryon_hex_digit('/'), -1);
  const unsigned char in[4] = {0xde, 0xad, 0x00, 0x01};
  tryon_hex_encode(in, 4, text);
  assert_string_equal(text, "dead0001");
  /* UTF-8 copies are cut between characters, never inside one. */
  char small[6];
  assert_int_equal(tryon_utf8_copy(small, sizeof small, "abc"), 3);
  assert_string_equal(small, "abc");
  assert_int_equal(tryon_utf8_copy(small, sizeof small, "\xd1\x8f\xd1\x8f\xd1\x8f"), 4);
  assert_string_equal(small, "\xd1\x8f\xd1\x8f");
  assert_int_equal(tryon_utf8_copy(small, sizeof small, "ab\xe4\xb8\xad\xe4\xb8\xad"), 5);
  assert_int_equal(tryon_utf8_copy(small, 1, "x"), 0);
  /* FNV-1a's published values: stable across runs and machines. */
  assert_true(tryon_hash64("") == 0xcbf29ce484222325ULL);
  assert_true(tryon_hash64("a") == 0xaf63dc4c8601ec8cULL);
  assert_true(tryon_hash64("foobar") == 0x85944171f73967e8ULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_core__hex_and_hash),
      cmocka_unit_test(test_core__utf8_chars_uuid_valid_json_time),
      cmocka_unit_test(test_core__utf8_valid_and_prefix),
      cmocka_unit_test(test_core__status_names_codes_messages_distinct),
      cmocka_unit_test(test_core__status_unknown_fallbacks),
      cmocka_unit_test(test_core__err_set_formats_and_returns_status),
      cmocka_unit_test(test_core__err_set_truncates),
      cmocka_unit_test(test_core__err_null_is_accepted),
      cmocka_unit_test(test_core__err_message_falls_back_to_status),
      cmocka_unit_test(test_core__log_line_is_json_with_fields),
      cmocka_unit_test(test_core__log_level_filtering),
      cmocka_unit_test(test_core__log_reserved_and_duplicate_keys_dropped),
      cmocka_unit_test(test_core__log_no_sink_writes_nothing),
      cmocka_unit_test(test_core__log_invalid_utf8_replaced),
      cmocka_unit_test(test_core__log_level_names_and_parse),
      cmocka_unit_test(test_core__redact_conninfo),
      cmocka_unit_test(test_core__redact_truncates),
      cmocka_unit_test(test_core__iso8601_known_instants),
      cmocka_unit_test(test_core__clocks),
      cmocka_unit_test(test_core__uuid_v4_version_and_variant),
      cmocka_unit_test(test_core__uuid_v7_layout_and_order),
      cmocka_unit_test(test_core__uuid_parse_round_trip),
      cmocka_unit_test(test_core__uuid_parse_rejects_bad),
      cmocka_unit_test(test_core__buf_init_is_empty_string),
      cmocka_unit_test(test_core__buf_append_limits),
      cmocka_unit_test(test_core__buf_appendf),
      cmocka_unit_test(test_core__buf_steal_reset_release),
      cmocka_unit_test(test_core__buf_size_max_overflow),
      cmocka_unit_test(test_core__buf_append_from_itself),
      cmocka_unit_test(test_core__arena_alignment_and_zeroing),
      cmocka_unit_test(test_core__arena_strings),
      cmocka_unit_test(test_core__arena_limit),
      cmocka_unit_test(test_core__arena_cleanups_lifo_once),
      cmocka_unit_test(test_core__arena_cleanup_frees_heap),
      cmocka_unit_test(test_core__config_defaults),
      cmocka_unit_test(test_core__config_all_set),
      cmocka_unit_test(test_core__config_env_over_dotenv_over_defaults),
      cmocka_unit_test(test_core__config_missing_dotenv_skipped),
      cmocka_unit_test(test_core__config_unreadable_dotenv),
      cmocka_unit_test(test_core__config_oversized_dotenv),
      cmocka_unit_test(test_core__config_empty_counts_as_unset),
      cmocka_unit_test(test_core__config_missing_required_listed_together),
      cmocka_unit_test(test_core__config_needs_select_required),
      cmocka_unit_test(test_core__config_callback_url_needs_the_hmac_key),
      cmocka_unit_test(test_core__config_bad_values),
      cmocka_unit_test(test_core__config_booleans),
      cmocka_unit_test(test_core__config_long_value_quoted_briefly),
      cmocka_unit_test(test_core__config_secrets_never_quoted),
      cmocka_unit_test(test_core__config_jwt_secret_length),
      cmocka_unit_test(test_core__config_dotenv_syntax),
      cmocka_unit_test(test_core__config_dotenv_malformed_lines),
      cmocka_unit_test(test_core__config_dotenv_nul_and_several_bad_lines),
      cmocka_unit_test(test_core__config_message_truncated),
      cmocka_unit_test(test_core__config_var_names),
      cmocka_unit_test(test_core__config_vars_in_env_example),
  };

  return cmocka_run_group_tests_name("test_core", tests, NULL, NULL);
}
