/*
 * fake.h — the small server library every loopback fake in tests/fakes/ is built on.
 *
 * A fake is a test program that imitates one external service (../shared/PROVIDERS.md)
 * on 127.0.0.1 so that the real client can be tested end to end. This library does
 * everything that is not the provider's protocol, so that a fake is protocol code only:
 *
 *   - serving: libmicrohttpd on 127.0.0.1, a free port unless one is asked for, a thread
 *     per connection; `fake_run` prints "listening <port>\n" on stdout (flushed) once
 *     connections are accepted and returns 0 on SIGTERM/SIGINT after a clean stop;
 *   - routes: method + exact path (or a prefix, written with a trailing '*') → a
 *     protocol handler, first match in table order;
 *   - scripted answers: per script name (routes may share one), a queue of canned
 *     answers, each used by one request before the handler sees it;
 *   - a request log: every request outside the control prefix, in arrival order;
 *   - the control plane under FAKE_CONTROL_PREFIX (see "Control endpoints" below);
 *   - reset, and delayed callbacks (webhooks) from one background thread.
 *
 * Threads: libmicrohttpd calls handlers on connection threads, several at once. The fake
 * has one mutex (`fake_lock`); the library holds it while it calls the hooks marked
 * "lock held" below, so protocol state can live behind the same mutex. Handlers run
 * without it and take it themselves around shared state.
 *
 * Ownership: every `const char *` and `const cJSON *` handed to a hook or returned by an
 * accessor is borrowed for the duration of that call or request; every string given to
 * the library is copied unless "taken" is said.
 */
#ifndef TRYON_FAKE_H
#define TRYON_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define FAKE_CONTROL_PREFIX "/_fake/"
#define FAKE_MAX_BODY (64u << 20)      /* one request body; beyond: HTTP 413 */
#define FAKE_MAX_LOGGED 10000          /* request log entries; the oldest go first */
#define FAKE_MAX_CANNED 1000           /* canned answers queued per script name */
#define FAKE_LOG_STRING_MAX 4096       /* longer JSON strings are omitted from the log */
#define FAKE_MAX_DELAY_MS 60000        /* a canned answer's delay_ms ceiling */
#define FAKE_MAX_CALLBACKS_KEPT 1000   /* finished callbacks listed; the oldest go first */
#define FAKE_CALLBACK_TIMEOUT_MS 15000 /* one callback attempt, connect to last byte */

typedef struct fake fake;                 /* one server; opaque */
typedef struct fake_request fake_request; /* one request, valid inside its handler */
typedef struct fake_headers fake_headers; /* headers of an outgoing callback */
typedef struct fake_route fake_route;     /* one entry of the route table, below */

/* ------------------------------------------------------------------------ requests */

/* A multipart/form-data or urlencoded field (fake_request_part). `data` is always
 * NUL-terminated (not counted in `len`), so text fields read as C strings. */
typedef struct fake_part {
  const char *name;
  const char *filename;     /* NULL unless the part had one */
  const char *content_type; /* NULL unless the part had one */
  const unsigned char *data;
  size_t len;
} fake_part;

const char *fake_request_method(const fake_request *r);
/* The path without the query, as sent (not decoded). */
const char *fake_request_path(const fake_request *r);
/* The path past the matched route's prefix ("" for an exact route). */
const char *fake_request_tail(const fake_request *r);
/* The raw query without '?' ("" when none). */
const char *fake_request_query(const fake_request *r);
/* A decoded query argument, or NULL. */
const char *fake_request_arg(const fake_request *r, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *fake_request_header(const fake_request *r, const char *name);
/* The body (NUL-terminated, not counted) and its length. */
const unsigned char *fake_request_body(const fake_request *r, size_t *len);
/* The body parsed as JSON, or NULL (empty, not JSON, or a form). Parsed once. */
const cJSON *fake_request_json(fake_request *r);
/* Whether the body is a well-formed multipart/form-data or urlencoded form. */
bool fake_request_is_form(fake_request *r);
/* The first form field called `name`, or NULL; `fake_request_part_at` walks them all in
 * order (NULL past the end). */
const fake_part *fake_request_part(fake_request *r, const char *name);
const fake_part *fake_request_part_at(fake_request *r, size_t i);
/* The fake serving the request, and the route it matched (set before the guard, the
 * canned answer or the handler runs). */
fake *fake_request_fake(const fake_request *r);
const fake_route *fake_request_route(const fake_request *r);

/* ------------------------------------------------------------------------- replies */
/* A handler answers by calling one fake_reply* function (the last call wins). Without
 * one the client gets HTTP 500 {"error":"the fake gave no answer"}. Every reply carries
 * `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`. */

/* `body` (copied) with `content_type`. */
void fake_reply(fake_request *r, unsigned int status, const char *content_type, const void *body,
                size_t len);
/* `doc` printed unformatted as application/json; `doc` is taken (deleted here). */
void fake_reply_json(fake_request *r, unsigned int status, cJSON *doc);
/* `text` as text/plain. */
void fake_reply_text(fake_request *r, unsigned int status, const char *text);
/* Close the connection without an answer (the client sees an empty reply). */
void fake_reply_drop(fake_request *r);
/* One more header on the reply (any time before the handler returns). */
void fake_reply_header(fake_request *r, const char *name, const char *value);

/* -------------------------------------------------------------------------- routes */

typedef void (*fake_handler)(fake_request *r, void *ud);

struct fake_route {
  const char *method; /* "GET", "POST", ...; NULL: any */
  const char *path;   /* exact, or a prefix when it ends in '*' ("/files/" then '*') */
  /* The name of the canned-answer queue consulted before the handler, or NULL. Routes
   * may share a name (one queue for three upload endpoints). */
  const char *script;
  /* Whether the fake's `guard` hook runs first (before canned answers). */
  bool guarded;
  fake_handler handler;
};

/* A path under FAKE_CONTROL_PREFIX is a control route: never logged, never scripted,
 * never guarded — how a protocol adds its own inspection endpoint (fake-kie's
 * /_fake/tasks). A request no route matches gets HTTP 404 {"error":"no route", ...}. */

/* -------------------------------------------------------------- scripted answers */
/*
 * POST /_fake/script {"<script name>":[A, ...], ...protocol fields...} appends canned
 * answers A to their queues. The library reads these fields of A:
 *   "http"        status, 100..599 (default 200)
 *   "retry_after" a Retry-After header: seconds (number) or any string (an HTTP-date)
 *   "headers"     {"Name":"value", ...} more headers
 *   "body"        sent as-is: a string (application/json when it starts with { or [,
 *                 else text/plain) or any other JSON value (printed)
 *   "delay_ms"    wait this long before answering (or dropping), 0..FAKE_MAX_DELAY_MS
 *   "drop"        true: close the connection without an answer
 * Any other field is the protocol's: without "body" (and without "drop") the fake's
 * `canned` hook writes the reply from them (kie: an envelope from "code" and "msg").
 */

/* ---------------------------------------------------------------------- callbacks */

/* Adds one header to an outgoing callback (from a `fake_sign_fn`). */
void fake_headers_add(fake_headers *h, const char *name, const char *value);

/* Signs one attempt: adds the provider's signature headers to `h`. Called on the
 * callback thread before every attempt, without the lock (signatures carry a fresh
 * timestamp). `tag` and `body` are the callback's. */
typedef void (*fake_sign_fn)(fake_headers *h, const char *tag, const char *body, void *ud);

/* After every attempt, with the lock held: `status` is the HTTP status, 0 for a transport
 * failure (then `error` says why), -1 when the URL was refused without a call (not a
 * loopback http URL); `attempt` counts from 1; `final` when no retry follows. */
typedef void (*fake_done_fn)(const char *tag, int attempt, long status, const char *error,
                             bool final, void *ud);

typedef struct fake_callback {
  const char *url;        /* only http://127.0.0.1, localhost or [::1] are called */
  const char *body;       /* sent as application/json */
  const char *tag;        /* the protocol's name for it (kie: the task id); NULL: "" */
  const char *user_agent; /* NULL: "fake-callback/1" */
  int64_t delay_ms;       /* until the first attempt */
  /* Attempts in all (<= 0: 1). A 2xx answer ends them; anything else is retried after
   * retry_ms, doubled each time — set both as the provider documents its retries. */
  int attempts;
  int64_t retry_ms;
  fake_sign_fn sign; /* NULL: no signature */
  fake_done_fn done; /* NULL: no report */
  void *ud;          /* for sign and done */
} fake_callback;

/* Queues a callback (everything copied). Never blocks on the network: one background
 * thread delivers due callbacks one at a time, in due order. Reset drops the pending
 * ones. Takes the lock: do not call with it held. False only when out of memory. */
bool fake_callback_post(fake *f, const fake_callback *cb);

/* ------------------------------------------------------------------ the fake itself */

typedef struct fake_config {
  const char *name; /* "fake-kie": prefixes the fake's messages on stderr */
  int port;         /* 0: a free one */
  const fake_route *routes;
  size_t nroutes;
  void *ud; /* passed to every hook and handler */

  /* Each hook is optional. */
  /* Runs before the canned answers of a guarded route; true when it answered (kie: no
   * User-Agent → 403 from Cloudflare). */
  bool (*guard)(fake_request *r, void *ud);
  /* Writes the reply of a canned answer that has no "body" (status already chosen). */
  void (*canned)(fake_request *r, unsigned int status, const cJSON *answer, void *ud);
  /* Checks a canned answer's protocol fields; false with a message in `why`. */
  bool (*canned_check)(const cJSON *answer, char *why, size_t cap, void *ud);
  /* The protocol's part of a script body, lock held: called with apply false to check
   * (false with `why` rejects the whole script, nothing changes), then with apply true
   * to merge. */
  bool (*script)(const cJSON *doc, bool apply, char *why, size_t cap, void *ud);
  /* Adds the protocol's current script fields to `out` (GET /_fake/script), lock held. */
  void (*script_dump)(cJSON *out, void *ud);
  /* Adds protocol fields to a request log entry (kie: "auth_ok"), without the lock. */
  void (*log_extra)(fake_request *r, cJSON *entry, void *ud);
  /* Forgets protocol state and script, lock held; runs on reset and at fake_free. */
  void (*reset)(void *ud);
} fake_config;

/* A fake for `cfg` (copied; the route table is borrowed and must outlive the fake).
 * Not yet listening. NULL when out of memory. */
fake *fake_new(const fake_config *cfg);
/* Stops the fake if started, resets it (the `reset` hook runs), frees it. NULL: no-op. */
void fake_free(fake *f);

/* Starts listening and the callback thread; the port is then fake_port's. False (with a
 * message on stderr) when it cannot listen. For a fake living inside a test program. */
bool fake_start(fake *f);
/* Stops serving (waits for running handlers) and the callback thread. Idempotent. */
void fake_stop(fake *f);
/* The port being listened on (after fake_start). */
int fake_port(const fake *f);

/* The whole life of a fake program: blocks SIGTERM, SIGINT and SIGPIPE for every thread,
 * starts, prints "listening <port>\n", waits for SIGTERM or SIGINT, stops. Returns the
 * exit status for main: 0 after a clean stop, 1 when it could not start. */
int fake_run(fake *f);

/* The fake's mutex, around protocol state shared by handlers and hooks. */
void fake_lock(fake *f);
void fake_unlock(fake *f);

/* --------------------------------------------------------------------- utilities */

int64_t fake_mono_ms(void); /* CLOCK_MONOTONIC, for durations */
int64_t fake_wall_ms(void); /* CLOCK_REALTIME, for timestamps in answers */
/* strdup that aborts when out of memory (a test program has nothing better to do). */
char *fake_strdup(const char *s);

/*
 * Control endpoints (HTTP on the fake's port, JSON answers):
 *   POST /_fake/script     merges a script (above); HTTP 400 {"error"} and nothing
 *                          changes when any part is bad; answers the whole script
 *   GET  /_fake/script     the whole script: every queue (even empty) + protocol fields
 *   GET  /_fake/requests   {"requests":[{"method","path","query","headers":{...},
 *                          "user_agent"|null,"content_type"|null,"json"|null,
 *                          "fields":[names] (forms only),"body" (short text bodies that
 *                          are neither JSON nor a form),"body_bytes","time_ms"
 *                          (+ log_extra)}]}, oldest first
 *   GET  /_fake/callbacks  {"callbacks":[{"id","tag","url","state":"pending|delivered|
 *                          failed|refused","attempts","status"|null,"error"?}]}
 *   POST /_fake/reset      canned answers, the request log, pending callbacks and the
 *                          protocol's state (its `reset` hook) cleared; {"ok":true}
 */

#endif
