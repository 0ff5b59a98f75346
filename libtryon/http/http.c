/*
 * http.c - calls: one request, its attempts, one easy handle each; the blocking
 * perform on top of them.
 *
 * A call's easy handle is configured once in tryon_http_call_new and reused for every
 * attempt (libcurl keeps options across transfers, re-sends a copied body and rewinds
 * a mime body). The call never owns a multi handle and never sleeps: the event loop
 * does both, asking tryon_http_call_finished what to do after each attempt.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <tryon/http.h>

#include "http/http_internal.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "libcurl 7.85 or later is needed (CURLOPT_PROTOCOLS_STR)"
#endif

#ifndef TRYON_VERSION
#define TRYON_VERSION "0"
#endif

#define MAX_REDIRECTS 5L

typedef enum call_state {
  CALL_READY,     /* new, or waiting out a retry delay: tryon_http_call_easy arms it */
  CALL_IN_FLIGHT, /* armed: the handle is (or is about to be) in the loop's multi */
  CALL_DONE,      /* a verdict */
} call_state;

struct tryon_http_call {
  CURL *easy;
  curl_mime *mime;
  struct curl_slist *headers;
  char method[16];
  char label[32];
  char host[128];
  char path[160]; /* for log lines and messages: no query, secrets masked */
  int max_attempts;
  int64_t backoff_base_ms;
  size_t max_response;
  uint64_t rng;
  void *user;
  call_state state;
  tryon_http_response resp;
  int attempts;     /* finished, also kept in resp.attempts */
  long http_status; /* of the last finished attempt, also in resp.status */
  /* the attempt in flight */
  bool too_large;
  bool nomem;
  /* the verdict of the last finished attempt */
  tryon_status st;
  char msg[256];
};

/* Opens a socket only towards a public address (public_only requests). */
static curl_socket_t open_public_socket(void *ud, curlsocktype purpose,
                                        struct curl_sockaddr *addr) {
  (void)ud;
  if (purpose != CURLSOCKTYPE_IPCXN || !tryon__http_address_public(&addr->addr)) {
    TRYON_LOG_WARN("http connection refused: not a public address");
    return CURL_SOCKET_BAD;
  }
  return socket(addr->family, addr->socktype, addr->protocol);
}

/* --------------------------------------------------------------------- start-up */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_code = CURLE_FAILED_INIT;

static void global_init_once(void) {
  global_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

tryon_status tryon_http_global_init(tryon_err *err) {
  pthread_once(&global_once, global_init_once);
  if (global_code != CURLE_OK)
    return tryon_err_set(err, TRYON_E_INTERNAL, "libcurl did not start: %s",
                         curl_easy_strerror(global_code));
  return TRYON_OK;
}

void tryon_http_global_cleanup(void) {
  if (global_code == CURLE_OK)
    curl_global_cleanup();
}

/* ------------------------------------------------------------------- callbacks */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  tryon_http_call *call = ud;
  size_t n = size * nmemb;
  tryon_status st = tryon_buf_append(&call->resp.body, data, n);
  if (st == TRYON_OK)
    return n;
  /* Anything but n aborts the transfer with CURLE_WRITE_ERROR; the flags say why. */
  if (st == TRYON_E_TOO_LARGE)
    call->too_large = true;
  else
    call->nomem = true;
  return 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  tryon_http_call *call = ud;
  size_t n = size * nmemb;
  static const char name[] = "retry-after:";
  /* A status line starts a new response (after a 100 Continue or a redirect): forget
   * what the previous one said. */
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0)
    call->resp.retry_after_ms = 0;
  else if (n > sizeof name - 1 && strncasecmp(line, name, sizeof name - 1) == 0) {
    int64_t ms = tryon__http_parse_retry_after(line + sizeof name - 1, n - (sizeof name - 1),
                                               tryon_clock_now_ms(NULL));
    call->resp.retry_after_ms = ms > 0 ? ms : 0;
  }
  return n;
}

/* ------------------------------------------------------------------- set-up */

static bool has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

/* Whether the caller's headers already set `name` ("content-type:"). */
static bool has_header(const char *const *headers, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
    if (strncasecmp(headers[i], name, n) == 0)
      return true;
  return false;
}

static tryon_status add_header(tryon_http_call *call, const char *a, const char *b,
                               tryon_err *err) {
  tryon_buf line;
  tryon_status st;
  struct curl_slist *l;
  tryon_buf_init(&line, 8192);
  st = tryon_buf_append_str(&line, a);
  if (st == TRYON_OK && b != NULL)
    st = tryon_buf_append_str(&line, b);
  if (st != TRYON_OK) {
    st = tryon_err_set(err, st == TRYON_E_TOO_LARGE ? TRYON_E_INVALID : st,
                       "a request header is too long");
    goto out;
  }
  l = curl_slist_append(call->headers, line.data);
  if (l == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  call->headers = l;
out:
  tryon_buf_release(&line);
  return st;
}

static tryon_status check_method(const char *m, tryon_err *err) {
  size_t n = strlen(m);
  if (n == 0 || n >= 16)
    return tryon_err_set(err, TRYON_E_INVALID, "bad request method");
  for (size_t i = 0; i < n; i++)
    if (m[i] < 'A' || m[i] > 'Z')
      return tryon_err_set(err, TRYON_E_INVALID, "bad request method");
  return TRYON_OK;
}

/* Checks the URL is http(s) with a host, and keeps the host and a loggable path. */
static tryon_status parse_url(tryon_http_call *call, const char *url, tryon_err *err) {
  tryon_status st = TRYON_OK;
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *path = NULL;
  if (u == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  if (has_crlf(url) || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
    /* The URL itself is not quoted: it may carry a key in its query. */
    st = tryon_err_set(err, TRYON_E_INVALID, "the request URL is not an http(s) URL with a host");
    goto out;
  }
  if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
    path = NULL;
  tryon_utf8_copy(call->host, sizeof call->host, host);
  tryon__http_log_path(path != NULL ? path : "/", call->path, sizeof call->path);
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(path);
  curl_url_cleanup(u);
  return st;
}

static tryon_status build_mime(tryon_http_call *call, const tryon_http_request *req,
                               tryon_err *err) {
  tryon_status st = TRYON_OK;
  call->mime = curl_mime_init(call->easy);
  if (call->mime == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < req->nparts; i++) {
    const tryon_http_part *p = &req->parts[i];
    curl_mimepart *part;
    if (p->name == NULL || p->name[0] == '\0' || (p->data == NULL && p->len != 0) ||
        (p->filename != NULL && has_crlf(p->filename)) ||
        (p->content_type != NULL && has_crlf(p->content_type)) || has_crlf(p->name)) {
      st = tryon_err_set(err, TRYON_E_INVALID, "multipart field %zu is malformed", i);
      goto out;
    }
    part = curl_mime_addpart(call->mime);
    /* curl_mime_data copies the bytes, so the caller's buffers need not outlive us. */
    if (part == NULL || curl_mime_name(part, p->name) != CURLE_OK ||
        curl_mime_data(part, p->data != NULL ? p->data : "", p->data != NULL ? p->len : 0) !=
            CURLE_OK ||
        (p->filename != NULL && curl_mime_filename(part, p->filename) != CURLE_OK) ||
        (p->content_type != NULL && curl_mime_type(part, p->content_type) != CURLE_OK)) {
      st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
      goto out;
    }
  }
out:
  return st;
}

/* The method and the body. `json_text` is the printed `json`, or NULL. */
static tryon_status set_body(tryon_http_call *call, const tryon_http_request *req,
                             const char *json_text, tryon_err *err) {
  CURL *e = call->easy;
  const char *body = json_text != NULL ? json_text : req->body;
  size_t body_len = json_text != NULL ? strlen(json_text) : req->body_len;
  bool is_get = strcmp(call->method, "GET") == 0, is_post = strcmp(call->method, "POST") == 0;
  tryon_status st = TRYON_OK;
  CURLcode rc = CURLE_OK;

  if (req->nparts > 0) {
    st = build_mime(call, req, err);
    if (st != TRYON_OK)
      goto out;
    rc = curl_easy_setopt(e, CURLOPT_MIMEPOST, call->mime);
  } else if (body != NULL) {
    /* Copied by libcurl, and sent again by each attempt. */
    rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
  } else if (is_get) {
    rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(call->method, "HEAD") == 0) {
    rc = curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (is_post) {
    rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, "");
  }
  /* GET without a body, HEAD and POST are libcurl's own; anything else is named. */
  bool plain_get = is_get && body == NULL && req->nparts == 0;
  if (rc == CURLE_OK && !plain_get && !is_post && strcmp(call->method, "HEAD") != 0)
    rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method);
  if (rc != CURLE_OK)
    st = tryon_err_set(err, rc == CURLE_OUT_OF_MEMORY ? TRYON_E_NOMEM : TRYON_E_INTERNAL,
                       "request body not accepted: %s", curl_easy_strerror(rc));
out:
  return st;
}

static tryon_status set_headers(tryon_http_call *call, const tryon_http_request *req,
                                tryon_err *err) {
  tryon_status st = TRYON_OK;
  for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
    const char *h = req->headers[i];
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h || has_crlf(h)) {
      /* The header is not quoted: it may be an Authorization line. */
      st = tryon_err_set(err, TRYON_E_INVALID, "request header %zu is malformed", i);
      goto out;
    }
    st = add_header(call, h, NULL, err);
    if (st != TRYON_OK)
      goto out;
  }
  if (req->json != NULL) {
    if (!has_header(req->headers, "content-type:"))
      st = add_header(call, "Content-Type: application/json", NULL, err);
    if (st == TRYON_OK && !has_header(req->headers, "accept:"))
      st = add_header(call, "Accept: application/json", NULL, err);
  } else if (req->body != NULL && req->content_type != NULL &&
             !has_header(req->headers, "content-type:")) {
    if (has_crlf(req->content_type)) {
      st = tryon_err_set(err, TRYON_E_INVALID, "bad content type");
      goto out;
    }
    st = add_header(call, "Content-Type: ", req->content_type, err);
  }
  /* No "Expect: 100-continue" round trip before a large body. */
  if (st == TRYON_OK && !has_header(req->headers, "expect:"))
    st = add_header(call, "Expect:", NULL, err);
out:
  return st;
}

static tryon_status check_request(const tryon_http_request *req, tryon_err *err) {
  int kinds = (req->body != NULL) + (req->json != NULL) + (req->nparts > 0);
  if (req->url == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "no request URL");
  if (kinds > 1)
    return tryon_err_set(err, TRYON_E_INVALID, "more than one kind of request body");
  if (req->nparts > 0 && req->parts == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "multipart fields missing");
  if (req->connect_timeout_ms < 0 || req->timeout_ms < 0 || req->backoff_base_ms < 0 ||
      req->max_attempts < 0 || req->max_attempts > TRYON_HTTP_ATTEMPTS_LIMIT)
    return tryon_err_set(err, TRYON_E_INVALID, "request setting out of range");
  if ((req->user_agent != NULL && has_crlf(req->user_agent)) ||
      (req->proxy != NULL && has_crlf(req->proxy)))
    return tryon_err_set(err, TRYON_E_INVALID, "bad user agent or proxy");
  return TRYON_OK;
}

tryon_status tryon_http_call_new(const tryon_http_request *req, tryon_http_call **out,
                                 tryon_err *err) {
  tryon_http_call *call = NULL;
  char *json_text = NULL;
  tryon_status st;
  CURLcode rc = CURLE_OK;

  if (out != NULL)
    *out = NULL;
  if (req == NULL || out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no request");
    goto out;
  }
  st = check_request(req, err);
  if (st != TRYON_OK)
    goto out;
  st = tryon_http_global_init(err);
  if (st != TRYON_OK)
    goto out;
  call = calloc(1, sizeof *call);
  if (call == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  call->max_response =
      req->max_response_bytes > 0 ? req->max_response_bytes : TRYON_HTTP_MAX_RESPONSE;
  tryon_buf_init(&call->resp.body, call->max_response);
  call->max_attempts = req->max_attempts > 0 ? req->max_attempts : TRYON_HTTP_MAX_ATTEMPTS;
  call->backoff_base_ms =
      req->backoff_base_ms > 0 ? req->backoff_base_ms : (int64_t)TRYON_HTTP_BACKOFF_BASE_MS;
  call->rng = tryon__http_seed();
  call->user = req->user;
  call->state = CALL_READY;
  call->st = TRYON_E_INVALID;
  tryon_utf8_copy(call->label, sizeof call->label,
                  req->log_label != NULL ? req->log_label : "http");
  tryon_utf8_copy(call->method, sizeof call->method, req->method != NULL ? req->method : "GET");
  st = check_method(req->method != NULL ? req->method : "GET", err);
  if (st != TRYON_OK)
    goto out;
  st = parse_url(call, req->url, err);
  if (st != TRYON_OK)
    goto out;
  call->easy = curl_easy_init();
  if (call->easy == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  if (req->json != NULL) {
    json_text = cJSON_PrintUnformatted(req->json);
    if (json_text == NULL) {
      st = tryon_err_set(err, TRYON_E_NOMEM, "the JSON body could not be printed");
      goto out;
    }
  }
  st = set_headers(call, req, err);
  if (st == TRYON_OK)
    st = set_body(call, req, json_text, err);
  if (st != TRYON_OK)
    goto out;

  CURL *e = call->easy;
  long connect_ms =
      req->connect_timeout_ms > 0 ? req->connect_timeout_ms : TRYON_HTTP_CONNECT_TIMEOUT_MS;
  long total_ms = req->timeout_ms > 0 ? req->timeout_ms : TRYON_HTTP_TIMEOUT_MS;
  /* Each option set is checked; the first failure stops the chain. */
#define SET(opt, val)                       \
  do {                                      \
    if (rc == CURLE_OK)                     \
      rc = curl_easy_setopt(e, opt, (val)); \
  } while (0)
  SET(CURLOPT_URL, req->url);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
  SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  SET(CURLOPT_TIMEOUT_MS, total_ms);
  SET(CURLOPT_USERAGENT, req->user_agent != NULL ? req->user_agent : "tryon/" TRYON_VERSION);
  SET(CURLOPT_HTTPHEADER, call->headers);
  /* An announced Content-Length over the ceiling fails before the body arrives; the
   * write callback enforces it for chunked and compressed bodies. */
  SET(CURLOPT_MAXFILESIZE_LARGE,
      (curl_off_t)(call->max_response < (size_t)INT64_MAX ? call->max_response
                                                          : (size_t)INT64_MAX));
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)call);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, (void *)call);
  /* "" means no proxy at all: libcurl would otherwise read *_proxy from the
   * environment. */
  SET(CURLOPT_PROXY, req->proxy != NULL ? req->proxy : "");
  SET(CURLOPT_ACCEPT_ENCODING, "");
  if (req->public_only) {
    SET(CURLOPT_OPENSOCKETFUNCTION, open_public_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)call);
    /* The check runs when a socket opens: a connection another request left open (one
     * that was allowed inward) must not be reused, nor this one be left for others. */
    SET(CURLOPT_FRESH_CONNECT, 1L);
    SET(CURLOPT_FORBID_REUSE, 1L);
  }
#undef SET
  if (rc != CURLE_OK) {
    st = tryon_err_set(err, rc == CURLE_OUT_OF_MEMORY ? TRYON_E_NOMEM : TRYON_E_INTERNAL,
                       "libcurl refused an option: %s", curl_easy_strerror(rc));
    goto out;
  }
  *out = call;
  call = NULL;
out:
  free(json_text);
  tryon_http_call_free(call);
  return st;
}

/* --------------------------------------------------------------------- attempts */

CURL *tryon_http_call_easy(tryon_http_call *call) {
  if (call == NULL || call->state == CALL_DONE)
    return NULL;
  if (call->state == CALL_READY) {
    tryon_buf_reset(&call->resp.body);
    call->resp.status = 0;
    call->resp.content_type[0] = '\0';
    call->resp.retry_after_ms = 0;
    call->too_large = false;
    call->nomem = false;
    call->state = CALL_IN_FLIGHT;
  }
  return call->easy;
}

/* The message of the verdict, e.g. "kie POST api.kie.ai/api/v1/x: HTTP 503 after 3
 * attempts". */
static void set_verdict(tryon_http_call *call, tryon_status st, const char *what) {
  tryon_buf m;
  call->st = st;
  tryon_buf_init(&m, sizeof call->msg - 1);
  (void)tryon_buf_appendf(&m, "%s %s %s%s: %s", call->label, call->method, call->host, call->path,
                          what);
  if (call->attempts > 1)
    (void)tryon_buf_appendf(&m, " after %d attempts", call->attempts);
  /* A message that did not fit is still the host and path: good enough. */
  tryon_utf8_copy(call->msg, sizeof call->msg, m.len > 0 ? m.data : what);
  tryon_buf_release(&m);
}

tryon_http_next tryon_http_call_finished(tryon_http_call *call, CURLcode code, int64_t *delay_ms) {
  tryon_http_next next = TRYON_HTTP_DONE;
  int64_t delay = 0;
  long status = 0;
  char *ct = NULL;
  curl_off_t us = 0;
  bool retry = false;
  tryon_status st;
  char what[160];

  if (call == NULL || call->state != CALL_IN_FLIGHT)
    goto out;
  call->resp.attempts = ++call->attempts;
  (void)curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
  (void)curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
  (void)curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME_T, &us);
  long request_bytes = 0;
  (void)curl_easy_getinfo(call->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
  call->resp.sent = request_bytes > 0;
  call->resp.status = call->http_status = status;
  tryon_utf8_copy(call->resp.content_type, sizeof call->resp.content_type, ct != NULL ? ct : "");

  if (call->too_large || code == CURLE_FILESIZE_EXCEEDED) {
    st = TRYON_E_TOO_LARGE;
    snprintf(what, sizeof what, "response over %zu bytes", call->max_response);
  } else if (call->nomem) {
    st = TRYON_E_NOMEM;
    snprintf(what, sizeof what, "out of memory for the response");
  } else if (code != CURLE_OK) {
    st = tryon__http_code_status(code);
    retry = tryon__http_code_retryable(code) != 0;
    snprintf(what, sizeof what, "%s (curl %d)", curl_easy_strerror(code), (int)code);
  } else if (status >= 200 && status <= 299) {
    st = TRYON_OK;
    snprintf(what, sizeof what, "HTTP %ld", status);
  } else {
    st = TRYON_E_UPSTREAM;
    retry = tryon__http_status_retryable(status) != 0;
    snprintf(what, sizeof what, "HTTP %ld", status);
  }
  if (retry && call->attempts < call->max_attempts) {
    delay = tryon__http_backoff_ms(&call->rng, call->backoff_base_ms, call->attempts);
    if (call->resp.retry_after_ms > delay)
      delay = call->resp.retry_after_ms;
    if (delay > TRYON_HTTP_RETRY_AFTER_CAP_MS) {
      /* Longer than a transfer should wait: the job queue's backoff takes over. */
      size_t n = strlen(what);
      snprintf(what + n, sizeof what - n, ", Retry-After %lld s", (long long)(delay / 1000));
      delay = 0;
    } else {
      next = TRYON_HTTP_RETRY;
    }
  }
  set_verdict(call, st, what);
  call->state = next == TRYON_HTTP_RETRY ? CALL_READY : CALL_DONE;

  tryon_log_field f[11] = {
      TRYON_LF_STR("label", call->label),      TRYON_LF_STR("method", call->method),
      TRYON_LF_STR("host", call->host),        TRYON_LF_STR("path", call->path),
      TRYON_LF_INT("status", status),          TRYON_LF_INT("ms", (int64_t)(us / 1000)),
      TRYON_LF_INT("attempt", call->attempts), TRYON_LF_INT("attempts", call->max_attempts),
  };
  size_t nf = 8;
  if (st != TRYON_OK)
    f[nf++] = TRYON_LF_STR("error", tryon_status_code(st));
  if (code != CURLE_OK)
    f[nf++] = TRYON_LF_STR("curl", curl_easy_strerror(code));
  if (next == TRYON_HTTP_RETRY)
    f[nf++] = TRYON_LF_INT("retry_in_ms", delay);
  tryon_log_write(st == TRYON_OK ? TRYON_LOG_INFO : TRYON_LOG_WARN, "http request", f, nf);
out:
  if (delay_ms != NULL)
    *delay_ms = delay;
  return next;
}

tryon_http_next tryon_http_call_retry_hint(tryon_http_call *call, int64_t hint_ms,
                                           int64_t *delay_ms) {
  tryon_http_next next = TRYON_HTTP_DONE;
  int64_t delay = 0;
  if (call == NULL || call->state != CALL_DONE || call->attempts >= call->max_attempts)
    goto out;
  delay = tryon__http_backoff_ms(&call->rng, call->backoff_base_ms, call->attempts);
  if (hint_ms > delay)
    delay = hint_ms;
  if (delay > TRYON_HTTP_RETRY_AFTER_CAP_MS) {
    delay = 0;
    goto out;
  }
  call->state = CALL_READY;
  next = TRYON_HTTP_RETRY;
out:
  if (delay_ms != NULL)
    *delay_ms = delay;
  return next;
}

const tryon_http_response *tryon_http_call_response(const tryon_http_call *call) {
  return call != NULL ? &call->resp : NULL;
}

void tryon_http_call_take_response(tryon_http_call *call, tryon_http_response *out) {
  if (call == NULL || out == NULL)
    return;
  *out = call->resp;
  memset(&call->resp, 0, sizeof call->resp);
  tryon_buf_init(&call->resp.body, call->max_response);
  call->resp.attempts = call->attempts;
}

tryon_status tryon_http_call_status(const tryon_http_call *call, tryon_err *err) {
  if (call == NULL || call->attempts == 0)
    return tryon_err_set(err, TRYON_E_INVALID, "no attempt has finished");
  if (call->st == TRYON_OK) {
    if (err != NULL) {
      tryon_err_clear(err);
      err->http_status = (int)call->http_status;
    }
    return TRYON_OK;
  }
  tryon_err_set(err, call->st, "%s", call->msg);
  if (err != NULL)
    err->http_status = (int)call->http_status;
  return call->st;
}

void *tryon_http_call_user(const tryon_http_call *call) {
  return call != NULL ? call->user : NULL;
}

void tryon_http_call_free(tryon_http_call *call) {
  if (call == NULL)
    return;
  /* The handle first: it refers to the mime and the header list. */
  if (call->easy != NULL)
    curl_easy_cleanup(call->easy);
  curl_mime_free(call->mime);
  curl_slist_free_all(call->headers);
  tryon_buf_release(&call->resp.body);
  free(call);
}

void tryon_http_response_release(tryon_http_response *r) {
  if (r == NULL)
    return;
  tryon_buf_release(&r->body);
  memset(r, 0, sizeof *r);
}

/* --------------------------------------------------------------------- blocking */

static void sleep_ms(int64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

tryon_status tryon_http_perform(const tryon_http_request *req, tryon_http_response *out,
                                tryon_err *err) {
  tryon_http_call *call = NULL;
  tryon_status st;
  if (out != NULL) {
    memset(out, 0, sizeof *out);
    tryon_buf_init(&out->body, 0);
  }
  if (out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no response");
    goto out;
  }
  st = tryon_http_call_new(req, &call, err);
  if (st != TRYON_OK)
    goto out;
  for (;;) {
    int64_t delay = 0;
    CURL *e = tryon_http_call_easy(call);
    CURLcode code = curl_easy_perform(e);
    if (tryon_http_call_finished(call, code, &delay) != TRYON_HTTP_RETRY)
      break;
    sleep_ms(delay);
  }
  tryon_http_call_take_response(call, out);
  st = tryon_http_call_status(call, err);
out:
  tryon_http_call_free(call);
  return st;
}
