/*
 * verdict.c - the verdict vocabulary every provider client shares: the transport's
 * judgement of an answer (transfer, then HTTP status) and the setters the clients'
 * tables use. Pure; see include/tryon/http.h section 6.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <tryon/http.h>

/* How much of a body goes into a status verdict's detail. */
#define SNIPPET_MAX 160

void tryon_verdict_copy_text(char *dst, size_t cap, const char *src, size_t len) {
  size_t n = len < cap - 1 ? len : cap - 1;

  if (src == NULL) {
    n = 0;
  } else {
    memcpy(dst, src, n);
  }
  dst[n] = '\0';
  /* Cut back to a character boundary: drop a trailing partial UTF-8 sequence. */
  if (n < len) {
    size_t k = n;
    while (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0x80) {
      k--;
    }
    if (k > 0 && (unsigned char)dst[k - 1] >= 0xc0) {
      size_t want = (unsigned char)dst[k - 1] >= 0xf0   ? 4
                    : (unsigned char)dst[k - 1] >= 0xe0 ? 3
                                                        : 2;
      if (n - (k - 1) < want) {
        dst[k - 1] = '\0';
        n = k - 1;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)dst[i];
    if (c < 0x20 || c == 0x7f) {
      dst[i] = ' ';
    }
  }
}

static void detail_v(tryon_verdict *v, const char *fmt, va_list ap) {
  char tmp[TRYON_VERDICT_DETAIL_MAX * 2];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);

  if (n < 0) {
    tmp[0] = '\0';
    n = 0;
  }
  tryon_verdict_copy_text(v->detail, sizeof v->detail, tmp,
                          (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

bool tryon_verdict_set(tryon_verdict *v, tryon_verdict_next next, const char *code, const char *fmt,
                       ...) {
  va_list ap;

  v->next = next;
  tryon_verdict_copy_text(v->code, sizeof v->code, code, code != NULL ? strlen(code) : 0);
  if (fmt != NULL) {
    va_start(ap, fmt);
    detail_v(v, fmt, ap);
    va_end(ap);
  }
  return next == TRYON_VERDICT_OK;
}

void tryon_verdict_detail(tryon_verdict *v, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  detail_v(v, fmt, ap);
  va_end(ap);
}

const char *tryon_verdict_next_name(tryon_verdict_next next) {
  switch (next) {
    case TRYON_VERDICT_OK:
      return "ok";
    case TRYON_VERDICT_RETRY:
      return "retry";
    case TRYON_VERDICT_FINAL:
      break;
  }
  return "final";
}

/* The verdict of a non-2xx HTTP status; `snippet` is the start of the body. */
static void status_verdict(long hs, const char *snippet, int64_t retry_after_ms, tryon_verdict *v) {
  if (hs == 401) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "unauthorized", "HTTP 401: %s", snippet);
  } else if (hs == 402) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "provider_out_of_credits", "HTTP 402: %s", snippet);
  } else if (hs == 403) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "forbidden", "HTTP 403: %s", snippet);
  } else if (hs == 404) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "not_found", "HTTP 404: %s", snippet);
  } else if (hs == 408) {
    tryon_verdict_set(v, TRYON_VERDICT_RETRY, "timeout", "HTTP 408: %s", snippet);
  } else if (hs == 429) {
    tryon_verdict_set(v, TRYON_VERDICT_RETRY, "rate_limited", "HTTP 429: %s", snippet);
  } else if (hs >= 500 && hs <= 599) {
    tryon_verdict_set(v, TRYON_VERDICT_RETRY, "server_error", "HTTP %ld: %s", hs, snippet);
  } else if (hs >= 400 && hs <= 499) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_request", "HTTP %ld: %s", hs, snippet);
  } else {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "unexpected HTTP %ld", hs);
  }
  if (v->next == TRYON_VERDICT_RETRY) {
    v->retry_after_ms = retry_after_ms;
  }
}

tryon_verdict_by tryon_verdict_from_transport(const tryon_http_response *resp, tryon_status http_st,
                                              tryon_verdict *v) {
  char snippet[SNIPPET_MAX + 1];
  tryon_verdict_by by = TRYON_VERDICT_BY_TRANSFER;
  long hs = resp != NULL ? resp->status : 0;

  memset(v, 0, sizeof *v);
  v->http_status = hs;
  switch (http_st) {
    case TRYON_OK:
    case TRYON_E_UPSTREAM:
      break;
    case TRYON_E_TIMEOUT:
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "timeout", "the transfer timed out");
      goto out;
    case TRYON_E_NETWORK:
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "network", "the transfer failed");
      goto out;
    case TRYON_E_TOO_LARGE:
      /* The same answer will not be smaller next time. */
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer",
                        "the answer is over the size ceiling (%zu bytes)",
                        resp != NULL ? resp->body.max : 0);
      goto out;
    case TRYON_E_NOMEM:
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "internal", "out of memory");
      goto out;
    default:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "internal", "the request was not sent (%s)",
                        tryon_status_code(http_st));
      goto out;
  }
  if (resp == NULL || hs == 0) {
    tryon_verdict_set(v, TRYON_VERDICT_RETRY, "network", "no HTTP answer");
    goto out;
  }
  if (http_st != TRYON_OK || hs < 200 || hs > 299) {
    size_t n = resp->body.data != NULL ? resp->body.len : 0;
    tryon_verdict_copy_text(snippet, sizeof snippet, resp->body.data,
                            n < SNIPPET_MAX ? n : SNIPPET_MAX);
    status_verdict(hs, snippet, resp->retry_after_ms, v);
    by = TRYON_VERDICT_BY_STATUS;
    goto out;
  }
  by = TRYON_VERDICT_BY_BODY;

out:
  return by;
}
