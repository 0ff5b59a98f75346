/*
 * Internal to the api module: the API object, the routing table and the helpers the
 * handlers share. Nothing outside libtryon/api includes this.
 */
#ifndef TRYON_API_INTERNAL_H
#define TRYON_API_INTERNAL_H

#include <cjson/cJSON.h>
#include <semaphore.h>
#include <stdatomic.h>

#include <tryon/api.h>
#include <tryon/auth.h>
#include <tryon/users.h>

typedef struct tryon__webapp tryon__webapp;

typedef void (*tryon__api_handler)(tryon_api *api, const tryon_api_request *req,
                                   tryon_api_response *resp);

typedef struct tryon__api_route {
  const char *method;
  const char *pattern; /* "/api/uploads/{id}": a {name} segment matches any one segment */
  tryon__api_handler fn;
  size_t body_limit;
  bool blocking;              /* talks to the database or the disk */
  bool rate_limited;          /* counts against the per-address limit */
  size_t part_limit;          /* > 0: the body is multipart/form-data, each part at most this */
  const char *too_large_code; /* NULL: "body_too_large" */
} tryon__api_route;

extern const tryon__api_route tryon__api_routes[];
extern const size_t tryon__api_route_count;

/* Statuses the metrics count separately; anything else is "other". */
#define TRYON__API_STATUS_SLOTS 24
/* Request duration histogram bounds, microseconds; one more bucket for +Inf. */
#define TRYON__API_LATENCY_BUCKETS 14

typedef struct tryon__api_route_metrics {
  atomic_uint_fast64_t by_status[TRYON__API_STATUS_SLOTS];
  atomic_uint_fast64_t latency[TRYON__API_LATENCY_BUCKETS + 1];
  atomic_uint_fast64_t latency_sum_us;
  atomic_uint_fast64_t count;
} tryon__api_route_metrics;

struct tryon_api {
  const tryon_config *cfg;
  tryon_db *db;
  tryon_storage *storage;
  tryon_link_key link_key;
  const tryon_clock *clock;
  tryon_initdata_options initdata;
  char origin[256]; /* the web app origin CORS allows */
  bool https;       /* public URL is https: send HSTS */
  tryon_ratelimit *ip_limit;
  tryon_ratelimit *user_limit;
  sem_t image_slots;               /* image decodes that may run at once (one per core) */
  atomic_int_fast64_t ready_at_ms; /* when /readyz last saw the database answer (monotonic) */
  atomic_uint_fast64_t ip_refused;
  atomic_uint_fast64_t user_refused;
  tryon__api_route_metrics *metrics; /* route_count + 1 (the last: unmatched) */
  tryon__webapp *webapp;             /* NULL: no web app configured */
};

/* ---- responses (api.c) */

/* Sets status and a JSON body from `doc` (taken: deleted here). */
void tryon__api_json(tryon_api_response *resp, int status, cJSON *doc);
/* {"error":{"code","message"}} with `status`. */
void tryon__api_fail(tryon_api_response *resp, int status, const char *code, const char *message);
/* Maps a library status to an HTTP error response (401 for sign-in failures, 503 for
 * an unavailable database, 500 otherwise), with a message fit for a user. */
void tryon__api_fail_status(tryon_api_response *resp, tryon_status st);

/* ---- request helpers (api.c) */

/* The value of header `name`, or NULL. */
const char *tryon__api_header(const tryon_api_request *req, const char *name);
/* Whether the body is declared JSON (application/json, any parameters). */
bool tryon__api_is_json(const tryon_api_request *req);
/* The {id} of /api/<what>/{id} into id (64 bytes), hex digits lower-cased; false after a
 * 404 `not_found` with the words `not_found`. */
bool tryon__api_path_id(const tryon_api_request *req, tryon_api_response *resp,
                        const char *not_found, char id[64]);
/* The ?limit= of a list (1..100) into *limit, which keeps the caller's default when
 * absent; false after a 422. */
bool tryon__api_query_limit(const tryon_api_request *req, tryon_api_response *resp, long *limit);
/* Parses an application/json body into *doc (caller deletes); false after filling a
 * 415 or 400 malformed_json response. Only white space may follow the document. */
bool tryon__api_json_body(const tryon_api_request *req, tryon_api_response *resp, cJSON **doc);
/* Takes one token from the per-user bucket; on refusal fills a 429 and returns false. */
bool tryon__api_user_admit(tryon_api *api, const char *key, tryon_api_response *resp);
/* Verifies the Bearer token and loads nothing: sets *user_id. On failure fills a 401. */
bool tryon__api_authenticate(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                             int64_t *user_id);
/* What every signed-in endpoint does first: the token (401), the user's rate limit
 * (429), the user's row (401 if gone, 403 if blocked). Fills `user` and returns true,
 * or fills the error response and returns false. */
bool tryon__api_session(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                        tryon_user *user);
/* A query argument (decoded) or NULL. */
const char *tryon__api_query(const tryon_api_request *req, const char *name);
/* Copies path segment `index` (0-based: "/a/b" has "a" and "b") into out; false if absent
 * or longer than cap - 1. */
bool tryon__api_segment(const tryon_api_request *req, int index, char *out, size_t cap);
/* Whether resp already has header `name`. */
bool tryon__api_has_header(const tryon_api_response *resp, const char *name);

/* ---- handlers defined outside handlers.c */
void tryon__api_h_upload_create(tryon_api *api, const tryon_api_request *req,
                                tryon_api_response *resp);
void tryon__api_h_upload_list(tryon_api *api, const tryon_api_request *req,
                              tryon_api_response *resp);
void tryon__api_h_upload_delete(tryon_api *api, const tryon_api_request *req,
                                tryon_api_response *resp);
void tryon__api_h_file(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp);
void tryon__api_h_file_thumb(tryon_api *api, const tryon_api_request *req,
                             tryon_api_response *resp);
/* Adds "url" and "thumb_url" (signed links to image `id`) to `obj`. */
void tryon__api_image_links(tryon_api *api, const char *id, bool has_thumb, cJSON *obj);
/* Removes a stored image and its thumbnail (a missing file is only logged). */
void tryon__api_remove_image(tryon_api *api, const char *id);

/* ---- try-ons, history, jobs (handlers_generations.c) */
void tryon__api_h_tryon_create(tryon_api *api, const tryon_api_request *req,
                               tryon_api_response *resp);
void tryon__api_h_generation_list(tryon_api *api, const tryon_api_request *req,
                                  tryon_api_response *resp);
void tryon__api_h_generation_get(tryon_api *api, const tryon_api_request *req,
                                 tryon_api_response *resp);
void tryon__api_h_generation_delete(tryon_api *api, const tryon_api_request *req,
                                    tryon_api_response *resp);
void tryon__api_h_job_get(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp);
void tryon__api_h_job_cancel(tryon_api *api, const tryon_api_request *req,
                             tryon_api_response *resp);
void tryon__api_h_kie_callback(tryon_api *api, const tryon_api_request *req,
                               tryon_api_response *resp);

/* ---- billing (handlers_billing.c) */
typedef struct tryon_balance tryon_balance;
/* Reads the user's balance (bringing the wallet up to date); on failure fills resp. */
bool tryon__api_balance(tryon_api *api, int64_t user_id, tryon_balance *b,
                        tryon_api_response *resp);
/* 402 {"error":{"code":"insufficient_credits","message","balance","cost"}}. */
void tryon__api_fail_insufficient(tryon_api_response *resp, int64_t balance, int64_t cost);
void tryon__api_h_billing(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp);

/* Takes one of the image-decode slots, without waiting; false if none is free. */
bool tryon__api_image_slot_take(tryon_api *api);
void tryon__api_image_slot_give(tryon_api *api);

/* ---- the web app (webapp.c; the rules are in api.h section 6) */

/* Reads the files under `dir` into a new web app (tryon__webapp_free), at most
 * `max_total` bytes in all. TRYON_E_CONFIG for a missing folder, no index.html, too
 * many or too large files; TRYON_E_IO for a file that cannot be read. */
tryon_status tryon__webapp_load(const char *dir, size_t max_total, tryon__webapp **out,
                                tryon_err *err);
void tryon__webapp_free(tryon__webapp *w);
/* Bytes held (every variant) and files served (variants not counted). */
size_t tryon__webapp_bytes(const tryon__webapp *w);
size_t tryon__webapp_files(const tryon__webapp *w);
/* Whether `path` is the web app's rather than the API's. */
bool tryon__webapp_owns(const char *path);
/* The Content-Type for a file name, by its extension. */
const char *tryon__webapp_content_type(const char *path);
/* 0 identity, 1 gzip, 2 br: what to send for `accept_encoding` (may be NULL) given the
 * variants that exist. */
int tryon__webapp_pick_encoding(const char *accept_encoding, bool have_gzip, bool have_br);
/* Answers a GET/HEAD of a path the web app owns (never blocks, no disk). */
void tryon__webapp_serve(const tryon__webapp *w, const tryon_api_request *req,
                         tryon_api_response *resp);

/* ---- metrics (metrics.c) */
void tryon__api_metrics_text(tryon_api *api, tryon_buf *out);

#endif
