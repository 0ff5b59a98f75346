/*
 * tryon/api.h - the HTTP API as a library: routing, handlers, errors, headers, rate
 * limits and metrics, independent of the HTTP server that carries the bytes.
 *
 * Sections:
 *   1. Requests and responses
 *   2. The API object
 *   3. Serving a request (plan, then handle)
 *   4. Rate limiting (token buckets)
 *   5. The client's address
 *   6. The web app (static files)
 *
 * A transport (apps/server, on libmicrohttpd) serves each request in two phases:
 *   1. tryon_api_plan on the connection's own thread, before reading the body: finds the
 *      route, applies the per-address rate limit, answers CORS preflights, 404 and 405
 *      at once, and says how large a body the route accepts and whether its handler
 *      blocks (talks to the database).
 *   2. tryon_api_handle with the whole body, on a worker thread when the plan says the
 *      handler blocks, so that no event loop ever waits on the database.
 * Every response it produces carries the security headers, CORS headers for the
 * configured web app origin, and errors shaped {"error":{"code","message"}}.
 *
 * Thread-safety: one tryon_api serves any number of threads at once.
 */
#ifndef TRYON_API_H
#define TRYON_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- 1. Requests and responses */

/* Looks up a request header by name, case-insensitively; NULL when absent. */
typedef const char *(*tryon_api_header_fn)(void *ud, const char *name);

/* One part of a multipart/form-data body, parsed by the transport as it streamed in. */
typedef struct tryon_api_part {
  const char *name;         /* the form field */
  const char *filename;     /* as sent, or NULL; never used to name anything */
  const char *content_type; /* as sent, or NULL; a claim, not a fact */
  const char *data;
  size_t len;
  bool too_large; /* the part passed the route's part ceiling; data holds its start only */
} tryon_api_part;

/* What the transport knows of a request. Every pointer is borrowed for the call. */
typedef struct tryon_api_request {
  const char *method;    /* "GET", "POST" ... */
  const char *path;      /* without the query string */
  const char *client_ip; /* from tryon_api_client_address (section 5) */
  tryon_api_header_fn header;
  void *header_ud;
  tryon_api_header_fn query; /* a query argument by name, percent-decoded; may be NULL */
  void *query_ud;
  const char *body; /* NULL in the plan phase; NULL for multipart bodies (see parts) */
  size_t body_len;
  const tryon_api_part *parts; /* multipart/form-data routes: the parts, in order */
  size_t nparts;
} tryon_api_request;

#define TRYON_API_MAX_HEADERS 16

/* A response header. `value` holds the longest one the API sets (the page's CSP) with
 * room to spare; a longer one would be cut, so keep new policies under it. */
typedef struct tryon_api_header {
  char name[40];
  char value[384];
} tryon_api_header;

/* What the API answers. Initialise with tryon_api_response_init, release with
 * tryon_api_response_release. */
typedef struct tryon_api_response {
  int status;               /* 0 until decided */
  const char *content_type; /* static string */
  tryon_buf body;           /* owned */
  tryon_api_header headers[TRYON_API_MAX_HEADERS];
  size_t nheaders;
  const char *route; /* static: the matched route pattern, or "-" */
  int64_t user_id;   /* the signed-in user, 0 if none (for the access log) */
  /* A web app file (section 6): its bytes, borrowed from the API for the API's lifetime
   * (send them without copying); `body` stays empty. NULL for every other answer. */
  const char *static_body;
  size_t static_len;
  bool framable; /* a page Telegram frames: its own CSP, no X-Frame-Options */
} tryon_api_response;

TRYON_API void tryon_api_response_init(tryon_api_response *r);
TRYON_API void tryon_api_response_release(tryon_api_response *r);
/* Adds a header (truncated to fit; dropped beyond TRYON_API_MAX_HEADERS). */
TRYON_API void tryon_api_response_header(tryon_api_response *r, const char *name,
                                         const char *value);

/* ---------------------------------------------------------------- 2. The API object */

typedef struct tryon_api tryon_api;

typedef struct tryon_api_options {
  const tryon_config *cfg;  /* borrowed for the API's lifetime; needs bot token, JWT secret */
  tryon_db *db;             /* borrowed for the API's lifetime */
  tryon_storage *storage;   /* borrowed for the API's lifetime: where images live */
  const tryon_clock *clock; /* NULL: the system clock */
} tryon_api_options;

/* Creates the API. TRYON_E_CONFIG when the settings cannot serve sign-in (no bot
 * token for the HMAC check, no bot id for Ed25519, a JWT secret under 32 bytes), or
 * when cfg->webapp_dir is set and cannot be served (section 6: missing, no index.html,
 * over the limits; the message says which). Reads the web app's files here, once. */
TRYON_API tryon_status tryon_api_new(const tryon_api_options *opt, tryon_api **out, tryon_err *err);
TRYON_API void tryon_api_free(tryon_api *api);

/* ------------------------------------------------------- 3. Serving a request */

typedef struct tryon_api_plan {
  int route;                  /* index into the routing table; -1 when none */
  size_t body_limit;          /* bytes the route accepts in a body (all parts and framing) */
  bool blocking;              /* the handler talks to the database: run it on a worker thread */
  bool done;                  /* the response is already final (404, 405, 429, preflight) */
  bool multipart;             /* the body is multipart/form-data: parse it into parts */
  size_t part_limit;          /* bytes one part may hold (multipart only) */
  const char *too_large_code; /* the error code for a body over its ceiling */
} tryon_api_plan;

/* Phase 1 (see the top of this header). `req->body` is not read. Fills `plan`, and
 * `resp` when plan->done. Never blocks. */
TRYON_API void tryon_api_plan_request(tryon_api *api, const tryon_api_request *req,
                                      tryon_api_plan *plan, tryon_api_response *resp);

/* Phase 2: runs the route's handler with the whole body and fills `resp`. */
TRYON_API void tryon_api_handle(tryon_api *api, const tryon_api_plan *plan,
                                const tryon_api_request *req, tryon_api_response *resp);

/* An error response decided by the transport (413 body too large, 503 busy ...), with
 * the same shape and headers as the API's own. `code` is snake_case. */
TRYON_API void tryon_api_error(tryon_api *api, const tryon_api_request *req,
                               tryon_api_response *resp, int status, const char *code,
                               const char *message);

/* Counts a finished request in the metrics (its route from `plan`, status, duration). */
TRYON_API void tryon_api_observe(tryon_api *api, const tryon_api_plan *plan,
                                 const tryon_api_response *resp, int64_t duration_us);

/* --------------------------------------------------------- 4. Rate limiting */

/*
 * Token buckets keyed by short strings ("ip:203.0.113.9", "user:42"): each key may make
 * `burst` requests at once and `rate` per second on average. Memory is bounded: a full
 * table reuses the longest-idle bucket (such a key starts with a full bucket again),
 * so a flood of distinct keys cannot exhaust memory.
 */
typedef struct tryon_ratelimit tryon_ratelimit;

/* NULL on bad arguments (rate or burst < 1) or out of memory. */
TRYON_API tryon_ratelimit *tryon_ratelimit_new(int rate_per_s, int burst);
TRYON_API void tryon_ratelimit_free(tryon_ratelimit *rl);
/* Takes one token for `key` at `now_ms`. true: allowed. false: refused, and
 * `*retry_after_s` (optional) is the whole seconds until a token is back (>= 1). */
TRYON_API bool tryon_ratelimit_take(tryon_ratelimit *rl, const char *key, int64_t now_ms,
                                    int *retry_after_s);

/* --------------------------------------------------------- 5. The client's address */

/* Room for any address tryon_api_client_address writes, with its NUL. */
#define TRYON_API_ADDR_MAX 46

/*
 * The client's address, the one value the rate limits, the access log and (with the
 * payments issue) the YooKassa webhook's sender check use. Computed by the transport for
 * every request. With hops >= 2 the inner proxy must accept connections only from the
 * outer one, or a client reaching it directly chooses the entry that is read.
 *
 * `forwarded`: every line of the configured client-address header (TRYON_CLIENT_IP_HEADER)
 * in arrival order, joined with ","; NULL when no header is configured or none came.
 * `hops` (>= 1): how many proxies of ours append to it. Each proxy appends the address it
 * saw at the right end, so the entry `hops` places from the right is the client; all to
 * its left came from the client and proves nothing. An entry may carry a port
 * ("1.2.3.4:5555", "[2001:db8::1]:443"); "::ffff:a.b.c.d" is the IPv4 a.b.c.d. When the
 * header is absent, holds fewer entries than `hops`, or that entry does not parse as an
 * address (inet_pton), the socket's peer `peer` (may be NULL) is used instead, mapped the
 * same way. Writes the address as inet_ntop spells it into `out` (`cap` bytes, at least
 * TRYON_API_ADDR_MAX), or "" when there is none; returns whether the header decided.
 * Pure; thread-safe.
 */
TRYON_API bool tryon_api_client_address(const char *forwarded, int hops,
                                        const struct sockaddr *peer, char *out, size_t cap);

/* ------------------------------------------------------ 6. The web app (static files) */

/*
 * With cfg->webapp_dir set (TRYON_WEBAPP_DIR: the built app, webapp/dist), tryon_api_new
 * reads every regular file under it (names starting with '.' skipped) into memory, at
 * most TRYON_WEBAPP_MAX_BYTES in all (every variant counted) and TRYON_WEBAPP_MAX_FILES
 * files; "x.gz" and "x.br" beside "x" are x's precompressed variants. Serving then never
 * touches the disk and never blocks: tryon_api_plan_request answers on the event thread
 * (plan->done) with resp->static_body pointing at the bytes.
 *
 * Which paths: every path except /api, /files and /webhooks (and below) and /healthz,
 * /readyz, /metrics, which stay the API's. GET and HEAD only (else 405, Allow: GET,
 * HEAD). A path naming a file → that file; under /assets/ and no file → 404 (a stale
 * page's asset, never index.html); any other path → index.html (the app's routes).
 *
 * Headers: Cache-Control "public, max-age=31536000, immutable" under /assets/ (hashed
 * names), "no-cache" for everything else (index.html above all); a strong ETag per
 * variant (If-None-Match → 304, weak comparison, "*" matches); Accept-Encoding picks br,
 * then gzip, else identity (q=0 refuses a coding, "*" counts), with Content-Encoding and
 * always "Vary: Accept-Encoding"; Content-Type from the extension (unknown:
 * application/octet-stream). HTML answers carry the page CSP (scripts, styles, fetches
 * and images from 'self' only, images also from blob: and data:; frame-ancestors
 * https://web.telegram.org and every https subdomain of telegram.org; the exact text is
 * PAGE_CSP in webapp.c), no X-Frame-Options and Cross-Origin-Resource-Policy:
 * cross-origin, so Telegram's web clients may frame them. Every other answer (assets,
 * 404s, the API) keeps the strict headers: X-Frame-Options DENY, default-src 'none'.
 * Without webapp_dir, these paths answer 404 as before.
 */
#define TRYON_WEBAPP_MAX_BYTES (64u * 1024u * 1024u)
#define TRYON_WEBAPP_MAX_FILES 4096

#ifdef __cplusplus
}
#endif
#endif /* TRYON_API_H */
