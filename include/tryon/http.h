/*
 * tryon/http.h - the one way out to the network: outbound HTTP(S) on libcurl.
 *
 * Sections:
 *   1. Start-up
 *   2. Requests and responses
 *   3. Calls for an event loop (the worker's curl_multi_poll loop)
 *   4. Blocking requests (CLI tools and tests; never on an event loop)
 *   5. JSON
 *   6. Verdicts on providers' answers (the vocabulary every provider client shares)
 *
 * Every request gets: a connect and a total timeout per attempt, a User-Agent (the
 * providers sit behind Cloudflare, which answers 403 to requests without one), TLS
 * verification (peer and host, always), http/https only (redirects too), no signals,
 * no proxy unless one is given (the *_proxy environment variables are ignored: the
 * library never reads the environment), and a ceiling on the response body enforced
 * while it arrives. Up to `max_attempts` attempts (default 3) are made when an attempt
 * fails with a network error (resolve, connect, reset, empty reply, timeout), an HTTP
 * 408, 429 or 5xx; never on another 4xx, a TLS verification failure, a bad URL or a
 * response over the ceiling. Between attempts: exponential backoff with full jitter,
 * random in [0, min(base * 2^(n-1), 30 s)], or the server's Retry-After (delta seconds
 * or HTTP-date) when that is longer. A Retry-After over TRYON_HTTP_RETRY_AFTER_CAP_MS
 * (60 s) ends the call at once with that response (status 429 or 503,
 * `retry_after_ms` set): waiting that long is the job queue's business (its own
 * backoff honours the value), not a transfer's.
 *
 * Each attempt writes one log line (msg "http request"; info for a 2xx, warn else)
 * through the installed sink: label, method, host, path without the query string,
 * status (0: none), ms, attempt, attempts and, when they apply, error (the status's
 * code), curl (libcurl's message) and retry_in_ms. Never a header value, a body or a
 * query string; a path segment containing ':' (Telegram's bot<token>) is "***".
 *
 * Thread-safety: a call belongs to one thread at a time; different calls may run on
 * different threads at once.
 */
#ifndef TRYON_HTTP_H
#define TRYON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <tryon/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------------- 1. Start-up */

/*
 * curl_global_init, once per process (pthread_once; later calls return the first
 * call's result). Programs call it at start-up, before any thread starts, because
 * curl_global_init is not thread-safe against other users of OpenSSL. The first
 * tryon_http_call_new runs it too, so a forgotten call still works.
 * TRYON_E_INTERNAL when libcurl cannot start.
 */
TRYON_API tryon_status tryon_http_global_init(tryon_err *err);
/* curl_global_cleanup, at exit, with no call in flight. */
TRYON_API void tryon_http_global_cleanup(void);

/* ------------------------------------------------------- 2. Requests and responses */

#define TRYON_HTTP_CONNECT_TIMEOUT_MS 10000     /* default connect timeout per attempt */
#define TRYON_HTTP_TIMEOUT_MS 60000             /* default total timeout per attempt */
#define TRYON_HTTP_MAX_RESPONSE (16u << 20)     /* default response body ceiling, 16 MiB */
#define TRYON_HTTP_MAX_ATTEMPTS 3               /* default attempts */
#define TRYON_HTTP_ATTEMPTS_LIMIT 10            /* the most a request may ask for */
#define TRYON_HTTP_BACKOFF_BASE_MS 500          /* default backoff base */
#define TRYON_HTTP_BACKOFF_CAP_MS 30000         /* no backoff step is longer */
#define TRYON_HTTP_RETRY_AFTER_CAP_MS 60000     /* a longer Retry-After ends the call */
#define TRYON_HTTP_ZERO_TERMINATED ((size_t)-1) /* a part's `len`: data is a C string */

/* One field of a multipart/form-data body (kie.ai's file-stream upload: `file`,
 * `uploadPath`, `fileName`). Everything is borrowed for tryon_http_call_new, which
 * copies it. */
typedef struct tryon_http_part {
  const char *name;         /* the field name; required */
  const char *data;         /* the bytes (NULL only with len 0) */
  size_t len;               /* or TRYON_HTTP_ZERO_TERMINATED */
  const char *filename;     /* NULL: a plain field; else sent as the part's filename */
  const char *content_type; /* NULL: none, or libcurl's guess from `filename` */
} tryon_http_part;

/*
 * What to send. Every pointer is borrowed for tryon_http_call_new /
 * tryon_http_perform, which copy what they keep. A zero field takes its default.
 * At most one of `body`, `json` and `parts` may be set.
 */
typedef struct tryon_http_request {
  const char *method;           /* "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"; NULL: GET */
  const char *url;              /* http:// or https://; required */
  const char *const *headers;   /* NULL-terminated "Name: value" lines (no CR/LF), or NULL */
  const char *body;             /* request body bytes, or NULL */
  size_t body_len;              /* bytes of `body` */
  const char *content_type;     /* Content-Type of `body`; NULL: libcurl's
                                   application/x-www-form-urlencoded */
  const cJSON *json;            /* a JSON body, printed by the call; sets Content-Type and
                                   Accept to application/json */
  const tryon_http_part *parts; /* a multipart/form-data body (POST unless `method`) */
  size_t nparts;
  long connect_timeout_ms;   /* per attempt; 0: TRYON_HTTP_CONNECT_TIMEOUT_MS */
  long timeout_ms;           /* whole attempt; 0: TRYON_HTTP_TIMEOUT_MS */
  size_t max_response_bytes; /* body ceiling; 0: TRYON_HTTP_MAX_RESPONSE */
  int max_attempts;          /* 1..TRYON_HTTP_ATTEMPTS_LIMIT; 0: TRYON_HTTP_MAX_ATTEMPTS */
  int64_t backoff_base_ms;   /* 0: TRYON_HTTP_BACKOFF_BASE_MS */
  bool follow_redirects;     /* up to 5, http/https only; default: a 3xx is the answer */
  const char *proxy;         /* a proxy URL; NULL: none */
  bool public_only;          /* connect only to public addresses: loopback, private,
                                link-local, CGNAT, multicast, documentation, benchmarking
                                and other special-purpose ones, and IPv6 spellings of
                                IPv4 (NAT64, 6to4, Teredo, IPv4-compatible) are refused
                                when the socket opens (after DNS, so a name resolving
                                inward is refused too) — for URLs that come from outside */
  const char *log_label;     /* "kie", "yookassa" ... for the log line; NULL: "http" */
  const char *user_agent;    /* NULL: "tryon/<version>" */
  void *user;                /* the caller's, returned by tryon_http_call_user */
} tryon_http_request;

typedef struct tryon_http_response {
  long status;            /* HTTP status of the last attempt; 0 when none arrived */
  tryon_buf body;         /* the last attempt's body, owned (NUL-terminated) */
  char content_type[128]; /* "" when none (cut short when longer) */
  int64_t retry_after_ms; /* the last attempt's Retry-After in ms; 0 when none */
  int attempts;           /* attempts finished */
  bool sent;              /* the last attempt's request left (some of it reached a server);
                             false when the connection never opened (DNS, connect refused or
                             timed out): a POST that was not sent is safe to make again */
} tryon_http_response;

/* Frees the body and zeroes `r`. A zeroed response (and a second release) is fine. */
TRYON_API void tryon_http_response_release(tryon_http_response *r);

/* ------------------------------------------ 3. Calls for an event loop (curl multi) */

/*
 * A call is one request and its attempts on one easy handle, without a multi handle
 * and without ever sleeping, so an event loop can drive many at once:
 *
 *   tryon_http_call_new(&req, &call, &err);
 *   curl_multi_add_handle(multi, tryon_http_call_easy(call));
 *   ... curl_multi_poll, curl_multi_perform; on a CURLMSG_DONE message for `easy`:
 *   CURLcode code = msg->data.result;          (read it before removing the handle)
 *   curl_multi_remove_handle(multi, easy);
 *   if (tryon_http_call_finished(call, code, &delay_ms) == TRYON_HTTP_RETRY)
 *     after delay_ms: curl_multi_add_handle(multi, tryon_http_call_easy(call));
 *   else
 *     st = tryon_http_call_status(call, &err); resp = tryon_http_call_response(call);
 *     tryon_http_call_free(call);
 *
 * CURLOPT_PRIVATE is left to the loop (the runner keeps its own pointer there); the
 * request's `user` pointer travels with the call (tryon_http_call_user).
 */
typedef struct tryon_http_call tryon_http_call;

typedef enum tryon_http_next {
  TRYON_HTTP_DONE = 0,  /* final: read tryon_http_call_status and the response */
  TRYON_HTTP_RETRY = 1, /* wait *delay_ms, then add tryon_http_call_easy(call) again */
} tryon_http_next;

/*
 * Validates and copies `req` into a new call in `*out` (caller frees with
 * tryon_http_call_free). TRYON_E_INVALID for a NULL req/url/out, a URL that is not
 * http(s) with a host, a bad method, a header without ':' or with CR/LF, more than one
 * kind of body, a part without a name, or a setting out of range; TRYON_E_NOMEM;
 * TRYON_E_INTERNAL when libcurl cannot start. `*out` is NULL on failure.
 */
TRYON_API tryon_status tryon_http_call_new(const tryon_http_request *req, tryon_http_call **out,
                                           tryon_err *err);

/*
 * The easy handle armed for the next attempt (the previous attempt's response is
 * cleared here), owned by the call: add it to a multi; never clean it up nor change an
 * option but CURLOPT_PRIVATE, which is the loop's. NULL once the call is done
 * (tryon_http_call_finished returned DONE and no retry hint reopened it). Calling it
 * again while the attempt is in flight returns the same handle and clears nothing.
 */
TRYON_API CURL *tryon_http_call_easy(tryon_http_call *call);

/*
 * Records the attempt that just ended (the loop has removed the handle from its multi;
 * `code` is the CURLMSG_DONE result), writes its log line and decides: TRYON_HTTP_RETRY
 * with *delay_ms (the backoff with full jitter, or the Retry-After when longer) when the
 * attempt failed in a retryable way and attempts remain; else TRYON_HTTP_DONE
 * (*delay_ms = 0). After RETRY the response still shows the failed attempt until
 * tryon_http_call_easy arms the next.
 */
TRYON_API tryon_http_next tryon_http_call_finished(tryon_http_call *call, CURLcode code,
                                                   int64_t *delay_ms);

/*
 * For a provider's own retry hint in a finished answer (kie.ai answers HTTP 200 with
 * an error code in the JSON body): asks for one more attempt after `hint_ms` (0: the
 * backoff with jitter; the longer of the two otherwise). RETRY with *delay_ms when
 * attempts remain and the delay is within TRYON_HTTP_RETRY_AFTER_CAP_MS; DONE otherwise
 * (the call's status is unchanged: the caller owns the verdict on its body). Only
 * after tryon_http_call_finished returned DONE.
 */
TRYON_API tryon_http_next tryon_http_call_retry_hint(tryon_http_call *call, int64_t hint_ms,
                                                     int64_t *delay_ms);

/* The response so far, borrowed from the call until its next tryon_http_call_easy or
 * its free. */
TRYON_API const tryon_http_response *tryon_http_call_response(const tryon_http_call *call);

/* Moves the response into `out` (caller releases with tryon_http_response_release);
 * the call's own response is left empty. */
TRYON_API void tryon_http_call_take_response(tryon_http_call *call, tryon_http_response *out);

/*
 * The verdict of the last attempt, with detail in err (err->http_status = the HTTP
 * status when one arrived): TRYON_OK for a 2xx; TRYON_E_UPSTREAM for any other HTTP
 * status (a 3xx not followed, a 4xx, a 5xx or 408/429 after the last try, a Retry-After
 * over the cap); TRYON_E_TIMEOUT for a timed-out attempt; TRYON_E_TOO_LARGE for a body
 * (or Content-Length) over the ceiling; TRYON_E_NETWORK for any other transport
 * failure (resolve, connect, reset, TLS handshake or verification, a redirect to
 * another protocol); TRYON_E_NOMEM; TRYON_E_INVALID before any attempt finished.
 * Messages name the label, method, host and path, never the query or a header.
 */
TRYON_API tryon_status tryon_http_call_status(const tryon_http_call *call, tryon_err *err);

/* The request's `user` pointer. */
TRYON_API void *tryon_http_call_user(const tryon_http_call *call);

/* Cleans up the easy handle (it must not be in a multi) and frees everything. NULL is
 * a no-op. */
TRYON_API void tryon_http_call_free(tryon_http_call *call);

/* -------------------------------------------------------------- 4. Blocking requests */

/*
 * Runs the request to its verdict with curl_easy_perform, sleeping between attempts,
 * so NEVER on an event loop. `out` (caller-owned) is initialised and, whatever the
 * status, holds the last attempt's response: release it with
 * tryon_http_response_release. Statuses as tryon_http_call_new, then as
 * tryon_http_call_status.
 */
TRYON_API tryon_status tryon_http_perform(const tryon_http_request *req, tryon_http_response *out,
                                          tryon_err *err);

/* ------------------------------------------------------------------------- 5. JSON */

/*
 * Parses a response body as JSON into `*out` (the caller deletes it with
 * cJSON_Delete). TRYON_E_UPSTREAM (with err->http_status = r->status) when the body is
 * empty, is not JSON or has trailing bytes; *out is NULL then.
 */
TRYON_API tryon_status tryon_http_response_json(const tryon_http_response *r, cJSON **out,
                                                tryon_err *err);

/*
 * tryon_http_perform then tryon_http_response_json: the request (with its `json` body,
 * if any) runs to its verdict and `*json_out` receives the parsed body (or NULL when
 * it is not JSON). Returns the transfer's verdict; on a 2xx, TRYON_E_UPSTREAM when the
 * body is not JSON. An error answer's JSON is returned too (providers explain
 * themselves in it). `out` as for tryon_http_perform; `json_out` may be NULL.
 */
TRYON_API tryon_status tryon_http_json(const tryon_http_request *req, tryon_http_response *out,
                                       cJSON **json_out, tryon_err *err);

/* ------------------------------------------------ 6. Verdicts on providers' answers */

/*
 * Every provider client (providers/<name>: kie.ai today; OpenRouter, YooKassa and the
 * Telegram Bot API next) judges each answer into one tryon_verdict, so the engine and
 * the domain above decide on three words and a reason code, whoever answered:
 *
 *   OK     the answer was understood; read the client's parsed outputs.
 *   RETRY  transient: ask again after retry_after_ms (0: the caller's own backoff). The
 *          caller bounds how many times, and a request that may have taken effect (a
 *          POST that was sent) is only repeated when the client's table says the
 *          provider made nothing.
 *   FINAL  asking again will not help: the job fails (and the domain refunds).
 *
 * `code` is OUR stable word, never the provider's: it reaches the job's error, picks
 * the user's message (tryon_generations_user_message) and is counted in metrics, so a
 * word is never renamed once used. `detail` is the provider's own words (or what was
 * wrong), control characters blanked, for logs and operators only, never shown to a
 * user. The shared words (a new provider maps onto these before inventing one):
 *   transport (tryon_verdict_from_transport): network, timeout, internal, bad_answer,
 *     unauthorized, provider_out_of_credits, forbidden, not_found, rate_limited,
 *     server_error, bad_request;
 *   the provider's tables add: maintenance, validation, pending, generation_failed,
 *     content_refused, feature_disabled, user_agent_refused (kie.ai, see kie.h).
 *
 * Adding a provider: its answer parsers take (resp, http_st) as a finished call gives
 * them and
 *   1. call tryon_verdict_from_transport(resp, http_st, v): TRANSFER is the final say;
 *      STATUS is a default the provider may refine from its error body (kie.ai's
 *      envelope code, YooKassa's `code`, OpenRouter's `error.code`, Telegram's
 *      `error_code` with `parameters.retry_after`); BODY (0) means read the 2xx body;
 *   2. map each documented code of the body into (next, code) with tryon_verdict_set,
 *      in one switch whose every case names the documentation's meaning, keeping the
 *      provider's number in provider_code and its message in the detail (tryon_verdict_set
 *      formats it; tryon_verdict_copy_text for raw text);
 *   3. a code nobody documented: 5xx-like RETRY server_error, 4xx-like FINAL bad_request,
 *      anything else FINAL bad_answer; well-formed JSON missing a promised field FINAL
 *      bad_answer (retrying will not change it);
 *   4. table-test every documented code in the client's unit test, and script the same
 *      answers in its fake (tests/fakes) so the engine's end-to-end tests see them.
 */

typedef enum tryon_verdict_next {
  TRYON_VERDICT_OK = 0,    /* understood: read the parser's outputs */
  TRYON_VERDICT_RETRY = 1, /* transient: again after retry_after_ms, bounded by the caller */
  TRYON_VERDICT_FINAL = 2, /* asking again will not help */
} tryon_verdict_next;

#define TRYON_VERDICT_CODE_MAX 40    /* bytes of `code`, NUL included */
#define TRYON_VERDICT_DETAIL_MAX 300 /* bytes of `detail`, NUL included */

/* The verdict on one answer; a plain value, filled by the provider's parsers. */
typedef struct tryon_verdict {
  tryon_verdict_next next;
  int64_t retry_after_ms;                /* RETRY from an answer: its Retry-After, or 0 */
  char code[TRYON_VERDICT_CODE_MAX];     /* our stable reason word; "" for OK */
  char detail[TRYON_VERDICT_DETAIL_MAX]; /* the provider's words or ours; logs only */
  long http_status;                      /* 0 when no HTTP answer arrived */
  int provider_code;                     /* the provider's own code in the body (kie.ai's
                                            envelope `code`); 0 when none */
} tryon_verdict;

/* What decided a verdict in tryon_verdict_from_transport. BODY is 0: `if (by)` reads
 * "the transport decided". */
typedef enum tryon_verdict_by {
  TRYON_VERDICT_BY_BODY = 0,     /* a 2xx arrived: v is OK so far, the body decides */
  TRYON_VERDICT_BY_STATUS = 1,   /* a non-2xx HTTP answer: v holds the status's verdict,
                                    which the provider may refine from its error body */
  TRYON_VERDICT_BY_TRANSFER = 2, /* no usable answer: v is the final say */
} tryon_verdict_by;

/*
 * The judgement every provider shares, on what a finished call gives: `resp`
 * (tryon_http_call_response or tryon_http_perform's response; NULL when none) and
 * `http_st` (tryon_http_call_status / tryon_http_perform). Zeroes `*v`, sets
 * v->http_status from resp, then:
 *   TRANSFER: TRYON_E_TIMEOUT RETRY timeout; TRYON_E_NETWORK RETRY network; TRYON_E_NOMEM
 *     RETRY internal; TRYON_E_TOO_LARGE FINAL bad_answer (a body over the ceiling will
 *     not shrink); any other status FINAL internal (the request was not sent); OK or
 *     UPSTREAM without an HTTP answer RETRY network. retry_after_ms stays 0.
 *   STATUS (http_st UPSTREAM, or a status outside 2xx): 401 FINAL unauthorized, 402
 *     FINAL provider_out_of_credits, 403 FINAL forbidden, 404 FINAL not_found, 408 RETRY
 *     timeout, 429 RETRY rate_limited, 5xx RETRY server_error, other 4xx FINAL
 *     bad_request, anything else (a 3xx not followed) FINAL bad_answer; a RETRY carries
 *     resp->retry_after_ms; the detail is "HTTP <status>: <start of the body>".
 *   BODY: a 2xx; v->next OK, code "".
 * Never fails; `v` must not be NULL. Pure and reentrant.
 */
TRYON_API tryon_verdict_by tryon_verdict_from_transport(const tryon_http_response *resp,
                                                        tryon_status http_st, tryon_verdict *v);

/*
 * Sets v->next and v->code (cut to fit) and, when `fmt` is not NULL, v->detail from a
 * printf format (control characters blanked, cut short at a character boundary);
 * retry_after_ms, http_status and provider_code are left as they are. Returns
 * next == TRYON_VERDICT_OK, so a parser may `return tryon_verdict_set(...)`.
 */
TRYON_API bool tryon_verdict_set(tryon_verdict *v, tryon_verdict_next next, const char *code,
                                 const char *fmt, ...) TRYON_PRINTF(4, 5);

/* Replaces v->detail alone, as tryon_verdict_set formats it. */
TRYON_API void tryon_verdict_detail(tryon_verdict *v, const char *fmt, ...) TRYON_PRINTF(2, 3);

/*
 * Copies provider text `src[0..len)` (not necessarily NUL-terminated, e.g. a body) into
 * `dst` (`cap` >= 1 bytes): control characters become spaces, and a copy cut short
 * ends at a character boundary. For details, failure messages and body snippets.
 */
TRYON_API void tryon_verdict_copy_text(char *dst, size_t cap, const char *src, size_t len);

/* "ok", "retry", "final" (for log lines). */
TRYON_API const char *tryon_verdict_next_name(tryon_verdict_next next);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_HTTP_H */
