/*
 * log.c - JSON-lines logging through a sink the program installs, and redaction of
 * PostgreSQL connection strings.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include <tryon/core.h>

#include "internal.h"

/* The sink and its user data change together, so they sit behind one lock; the level
 * and "is there a sink" flag are read on every call and are atomics, so a line that will
 * be dropped costs no lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static tryon_log_sink_fn log_sink;
static void *log_sink_ud;
static atomic_int log_have_sink;
static atomic_int log_level = TRYON_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static int level_known(tryon_log_level level) {
  return (unsigned)level <= (unsigned)TRYON_LOG_ERROR;
}

const char *tryon_log_level_name(tryon_log_level level) {
  return level_known(level) ? level_names[level] : "unknown";
}

tryon_status tryon_log_level_parse(const char *name, tryon_log_level *out) {
  if (name == NULL || out == NULL) {
    return TRYON_E_INVALID;
  }
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
    if (strcasecmp(name, level_names[i]) == 0) {
      *out = (tryon_log_level)i;
      return TRYON_OK;
    }
  }
  return TRYON_E_INVALID;
}

void tryon_log_set_sink(tryon_log_sink_fn fn, void *ud) {
  pthread_mutex_lock(&log_lock);
  log_sink = fn;
  log_sink_ud = ud;
  atomic_store(&log_have_sink, fn != NULL);
  pthread_mutex_unlock(&log_lock);
}

void tryon_log_set_level(tryon_log_level level) {
  /* An unknown level would silence everything or nothing by accident; ignore it. */
  if (level_known(level)) {
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
  }
}

tryon_log_level tryon_log_get_level(void) {
  return (tryon_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int tryon_log_enabled(tryon_log_level level) {
  /* An out-of-range level is written as an error (see tryon_log_write), never lost. */
  if (!level_known(level)) {
    level = TRYON_LOG_ERROR;
  }
  return atomic_load_explicit(&log_have_sink, memory_order_relaxed) &&
         (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static int key_reserved(const char *key) {
  return strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "msg") == 0;
}

/* Adds `s` as a JSON string. cJSON passes bytes through unchecked, so text that is not
 * valid UTF-8 (a file name, a provider's reply) has each bad byte replaced by U+FFFD to
 * keep the line parseable by every JSON reader. */
static int add_text(cJSON *obj, const char *key, const char *s) {
  static const char replacement[] = "\xef\xbf\xbd";
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  char *clean = NULL;
  size_t o = 0;
  int ok = 0;

  if (tryon__utf8_valid(s, n)) {
    ok = cJSON_AddStringToObject(obj, key, s) != NULL;
    goto out;
  }
  if (n > (SIZE_MAX - 1) / 3) {
    goto out;
  }
  clean = malloc(n * 3 + 1);
  if (clean == NULL) {
    goto out;
  }
  for (size_t i = 0; i < n;) {
    size_t len = tryon__utf8_seq_len(p + i, n - i);
    if (len == 0) {
      memcpy(clean + o, replacement, 3);
      o += 3;
      i++;
    } else {
      memcpy(clean + o, p + i, len);
      o += len;
      i += len;
    }
  }
  clean[o] = '\0';
  ok = cJSON_AddStringToObject(obj, key, clean) != NULL;

out:
  free(clean);
  return ok;
}

static int add_field(cJSON *obj, const tryon_log_field *f) {
  char num[24];

  switch (f->type) {
    case TRYON_LOG_FIELD_STR:
      if (f->s == NULL) {
        return cJSON_AddNullToObject(obj, f->key) != NULL;
      }
      return add_text(obj, f->key, f->s);
    case TRYON_LOG_FIELD_INT:
      /* As raw text: a cJSON number is a double and would round integers past 2^53. */
      snprintf(num, sizeof num, "%" PRId64, f->i);
      return cJSON_AddRawToObject(obj, f->key, num) != NULL;
    case TRYON_LOG_FIELD_BOOL:
      return cJSON_AddBoolToObject(obj, f->key, f->i != 0) != NULL;
  }
  /* An unknown type is a caller bug; leave the field out rather than guess. */
  return 1;
}

void tryon_log_write(tryon_log_level level, const char *msg, const tryon_log_field *fields,
                     size_t nfields) {
  char ts[TRYON_TIME_ISO8601_LEN];
  tryon_log_sink_fn fn;
  void *ud;
  cJSON *obj = NULL;
  char *line = NULL;

  if (!level_known(level)) {
    level = TRYON_LOG_ERROR;
  }
  if (!tryon_log_enabled(level)) {
    goto out;
  }
  pthread_mutex_lock(&log_lock);
  fn = log_sink;
  ud = log_sink_ud;
  pthread_mutex_unlock(&log_lock);
  if (fn == NULL) {
    goto out;
  }

  obj = cJSON_CreateObject();
  if (obj == NULL) {
    goto out;
  }
  tryon_time_format_iso8601(tryon_clock_now_ms(NULL), ts);
  if (cJSON_AddStringToObject(obj, "ts", ts) == NULL ||
      cJSON_AddStringToObject(obj, "level", level_names[level]) == NULL ||
      !add_text(obj, "msg", msg != NULL ? msg : "")) {
    goto out;
  }
  for (size_t i = 0; i < nfields && fields != NULL; i++) {
    const tryon_log_field *f = &fields[i];
    /* Reserved keys would let a field forge the frame; a repeated key would make the
     * line ambiguous (readers differ on which copy wins). Both are dropped. */
    if (f->key == NULL || key_reserved(f->key) ||
        cJSON_GetObjectItemCaseSensitive(obj, f->key) != NULL) {
      continue;
    }
    if (!add_field(obj, f)) {
      goto out;
    }
  }
  line = cJSON_PrintUnformatted(obj);
  if (line == NULL) {
    goto out;
  }
  fn(level, line, ud);

out:
  cJSON_free(line);
  cJSON_Delete(obj);
}

/* ------------------------------------------------------------------ redaction */

/* A bounded writer: keeps what fits and always leaves `out` terminated. */
typedef struct redact_out {
  char *p;
  size_t cap;
  size_t len;
} redact_out;

static void put(redact_out *o, const char *s, size_t n) {
  size_t room = o->cap - 1 - o->len;

  if (n > room) {
    n = room;
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static void put_str(redact_out *o, const char *s) {
  put(o, s, strlen(s));
}

/* sslpassword unlocks a client key, so it is as secret as password. Compared without
 * case: libpq would reject PASSWORD=, but a log line must not show it either way. */
static int key_is_password(const char *key, size_t n) {
  return (n == 8 && strncasecmp(key, "password", 8) == 0) ||
         (n == 11 && strncasecmp(key, "sslpassword", 11) == 0);
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* postgresql://user:secret@host:5432/db?password=secret&sslmode=require */
static void redact_url(const char *s, size_t scheme_len, redact_out *o) {
  const char *auth = s + scheme_len;
  const char *query = strchr(auth, '?');
  const char *end_auth = query != NULL ? query : auth + strlen(auth);
  const char *at = NULL;

  put(o, s, scheme_len);
  /* The last '@' before the query ends the user info. libpq itself stops at the first
   * '/' or '@', but a password pasted with a raw '/' or '@' in it must still be masked,
   * so this errs towards hiding too much. */
  for (const char *p = auth; p < end_auth; p++) {
    if (*p == '@') {
      at = p;
    }
  }
  if (at != NULL) {
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon != NULL) {
      put(o, auth, (size_t)(colon - auth) + 1);
      put_str(o, "***");
    } else {
      put(o, auth, (size_t)(at - auth));
    }
    put(o, at, (size_t)(end_auth - at));
  } else {
    put(o, auth, (size_t)(end_auth - auth));
  }
  if (query == NULL) {
    return;
  }
  /* Query parameters: key=value pairs split by '&', up to an optional '#'. */
  for (const char *p = query; *p != '\0';) {
    const char *param = p + 1;
    const char *next = param + strcspn(param, "&#");
    const char *eq = memchr(param, '=', (size_t)(next - param));

    put(o, p, 1);
    if (eq != NULL && key_is_password(param, (size_t)(eq - param))) {
      put(o, param, (size_t)(eq - param) + 1);
      put_str(o, "***");
    } else {
      put(o, param, (size_t)(next - param));
    }
    if (*next == '#') {
      put_str(o, next);
      break;
    }
    p = next;
  }
}

/* host=db port=5432 password='it''s' user=app: libpq's key = value form, where a value
 * is either single-quoted (with \' and \\ escapes) or runs to the next space (with
 * backslash escapes). */
static void redact_keyvalue(const char *s, redact_out *o) {
  const char *p = s;

  while (*p != '\0') {
    const char *key;
    const char *key_end;
    const char *val;
    int secret;

    while (is_space(*p)) {
      put(o, p++, 1);
    }
    if (*p == '\0') {
      break;
    }
    key = p;
    while (*p != '\0' && *p != '=' && !is_space(*p)) {
      p++;
    }
    key_end = p;
    while (is_space(*p)) {
      p++;
    }
    if (*p != '=') {
      /* Not key=value: the rest cannot be parsed, and could be anything, so it is
       * hidden rather than copied. */
      put_str(o, "***");
      break;
    }
    p++;
    while (is_space(*p)) {
      p++;
    }
    secret = key_is_password(key, (size_t)(key_end - key));
    val = p;
    if (*p == '\'') {
      p++;
      while (*p != '\0' && *p != '\'') {
        if (*p == '\\' && p[1] != '\0') {
          p++;
        }
        p++;
      }
      if (*p == '\'') {
        p++;
      }
    } else {
      while (*p != '\0' && !is_space(*p)) {
        if (*p == '\\' && p[1] != '\0') {
          p++;
        }
        p++;
      }
    }
    put(o, key, (size_t)(key_end - key));
    put_str(o, "=");
    if (secret) {
      put_str(o, "***");
    } else {
      put(o, val, (size_t)(p - val));
    }
  }
}

void tryon_log_redact_conninfo(const char *conninfo, char *out, size_t cap) {
  redact_out o = {.p = out, .cap = cap, .len = 0};
  static const char *const schemes[] = {"postgresql://", "postgres://"};

  if (out == NULL || cap == 0) {
    return;
  }
  out[0] = '\0';
  if (conninfo == NULL) {
    return;
  }
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen(schemes[i]);
    if (strncasecmp(conninfo, schemes[i], n) == 0) {
      redact_url(conninfo, n, &o);
      return;
    }
  }
  redact_keyvalue(conninfo, &o);
}
