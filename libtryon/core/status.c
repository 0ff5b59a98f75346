/*
 * status.c - status names, codes and messages, and the caller-owned error detail.
 */
#include <stdio.h>
#include <string.h>

#include <tryon/core.h>

#include "internal.h"

static const char *const status_names[] = {
#define TRYON__X(suffix, code, msg) "TRYON_" #suffix,
    TRYON_STATUS_MAP(TRYON__X)
#undef TRYON__X
};

static const char *const status_codes[] = {
#define TRYON__X(suffix, code, msg) code,
    TRYON_STATUS_MAP(TRYON__X)
#undef TRYON__X
};

static const char *const status_messages[] = {
#define TRYON__X(suffix, code, msg) msg,
    TRYON_STATUS_MAP(TRYON__X)
#undef TRYON__X
};

_Static_assert(sizeof status_names / sizeof status_names[0] == TRYON__STATUS_COUNT,
               "one name per status");

/* The enum's underlying type is implementation-defined, so compare as unsigned: a
 * negative value cast in from an int becomes huge and falls out of range too. */
static int status_known(tryon_status s) {
  return (unsigned)s < (unsigned)TRYON__STATUS_COUNT;
}

const char *tryon_status_name(tryon_status s) {
  return status_known(s) ? status_names[s] : "TRYON_UNKNOWN";
}

const char *tryon_status_code(tryon_status s) {
  return status_known(s) ? status_codes[s] : "unknown";
}

const char *tryon_status_message(tryon_status s) {
  return status_known(s) ? status_messages[s] : "unknown status";
}

void tryon_err_clear(tryon_err *err) {
  if (err != NULL) {
    memset(err, 0, sizeof *err);
  }
}

tryon_status tryon_err_set(tryon_err *err, tryon_status status, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  tryon_err_setv(err, status, fmt, ap);
  va_end(ap);
  return status;
}

tryon_status tryon_err_setv(tryon_err *err, tryon_status status, const char *fmt, va_list ap) {
  /* Formatting goes through a local copy so that a caller may wrap the previous message,
   * tryon_err_set(err, st, "migration failed: %s", err->message), without the source and
   * destination of vsnprintf overlapping. */
  char tmp[TRYON_ERR_MESSAGE_MAX];
  int n;
  size_t len = 0;

  if (err == NULL) {
    return status;
  }
  if (fmt != NULL) {
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n > 0) {
      len = (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1;
      /* A message cut to fit must not end in half a character: it ends up in JSON. */
      if ((size_t)n >= sizeof tmp) {
        len = tryon__utf8_trim_partial(tmp, len);
      }
    }
  }
  memcpy(err->message, tmp, len);
  err->message[len] = '\0';
  err->status = status;
  return status;
}

const char *tryon_err_message(const tryon_err *err) {
  if (err == NULL) {
    return "no error detail";
  }
  return err->message[0] != '\0' ? err->message : tryon_status_message(err->status);
}
