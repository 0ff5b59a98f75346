/*
 * clock.c - wall and monotonic clocks, a fixed clock for tests, ISO-8601 formatting.
 */
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include <tryon/core.h>

/* Bounds of what "YYYY-MM-DDTHH:MM:SS.mmmZ" can show: 0000-01-01T00:00:00.000Z and
 * 9999-12-31T23:59:59.999Z. Instants outside are clamped so the text always fits. */
#define ISO_MIN_MS INT64_C(-62167219200000)
#define ISO_MAX_MS INT64_C(253402300799999)

static int64_t timespec_ms(const struct timespec *ts) {
  return (int64_t)ts->tv_sec * 1000 + (int64_t)(ts->tv_nsec / 1000000);
}

int64_t tryon_clock_now_ms(const tryon_clock *clock) {
  struct timespec ts;

  if (clock != NULL && clock->now_ms != NULL) {
    return clock->now_ms(clock->ud);
  }
  /* CLOCK_REALTIME cannot fail with a valid clock id and pointer; the zeroed fallback
   * only keeps the value defined. */
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
    return 0;
  }
  return timespec_ms(&ts);
}

int64_t tryon_time_monotonic_ms(void) {
  struct timespec ts;

  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
    return 0;
  }
  return timespec_ms(&ts);
}

static int64_t fixed_clock_now(void *ud) {
  const tryon_fixed_clock *fc = ud;
  return fc->ms;
}

void tryon_fixed_clock_init(tryon_fixed_clock *fc, int64_t ms) {
  fc->clock.now_ms = fixed_clock_now;
  fc->clock.ud = fc;
  fc->ms = ms;
}

/* Writes `v` as exactly `width` decimal digits; the callers' ranges guarantee it fits. */
static char *put_digits(char *p, unsigned v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

void tryon_time_format_iso8601(int64_t ms, char out[TRYON_TIME_ISO8601_LEN]) {
  struct tm tm;
  time_t secs;
  int64_t rem;
  char *p = out;

  if (ms < ISO_MIN_MS) {
    ms = ISO_MIN_MS;
  } else if (ms > ISO_MAX_MS) {
    ms = ISO_MAX_MS;
  }
  /* Floor division: -1 ms is 1969-12-31T23:59:59.999Z, not 1970-01-01T00:00:00.-01. */
  secs = (time_t)(ms / 1000);
  rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    secs -= 1;
  }
  if (gmtime_r(&secs, &tm) == NULL) {
    /* Unreachable with the clamped range and a 64-bit time_t; keep the output defined. */
    memset(&tm, 0, sizeof tm);
    tm.tm_year = 70;
    tm.tm_mday = 1;
    rem = 0;
  }
  p = put_digits(p, (unsigned)(tm.tm_year + 1900), 4);
  *p++ = '-';
  p = put_digits(p, (unsigned)(tm.tm_mon + 1), 2);
  *p++ = '-';
  p = put_digits(p, (unsigned)tm.tm_mday, 2);
  *p++ = 'T';
  p = put_digits(p, (unsigned)tm.tm_hour, 2);
  *p++ = ':';
  p = put_digits(p, (unsigned)tm.tm_min, 2);
  *p++ = ':';
  /* tm_sec can be 60 only for a leap second, which gmtime never produces. */
  p = put_digits(p, (unsigned)tm.tm_sec, 2);
  *p++ = '.';
  p = put_digits(p, (unsigned)rem, 3);
  *p++ = 'Z';
  *p = '\0';
}

void tryon_json_add_time(cJSON *obj, const char *name, int64_t ms) {
  char ts[TRYON_TIME_ISO8601_LEN];

  if (ms <= 0) {
    cJSON_AddNullToObject(obj, name);
  } else {
    tryon_time_format_iso8601(ms, ts);
    cJSON_AddStringToObject(obj, name, ts);
  }
}
