/*
 * Internal to the api module: the API object, the routing table and the helpers the
 * handlers share. Nothing outside libtryon/api includes this.
 */
#ifndef TRYON_API_INTERNAL_H
#define TRYON_API_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdatomic.h>

#include <tryon/api.h>
#include <tryon/auth.h>
#include <tryon/users.h>

typedef void (*tryon__api_handler)(tryon_api *api, const tryon_api_request *req,
                                   tryon_api_response *resp);

typedef struct tryon__api_route {
  const char *method;
  const char *pattern; /* "/api/uploads/{id}": a {name} segment matches any one segment */
  tryon__api_handler fn;
  size_t body_limit;
  bool blocking;     /* talks to the database */
  bool rate_limited; /* counts against the per-address limit */
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
  const tryon_clock *clock;
  tryon_initdata_options initdata;
  char origin[256]; /* the web app origin CORS allows */
  bool https;       /* public URL is https: send HSTS */
  tryon_ratelimit *ip_limit;
  tryon_ratelimit *user_limit;
  atomic_uint_fast64_t ip_refused;
  atomic_uint_fast64_t user_refused;
  tryon__api_route_metrics *metrics; /* route_count + 1 (the last: unmatched) */
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
/* Takes one token from the per-user bucket; on refusal fills a 429 and returns false. */
bool tryon__api_user_admit(tryon_api *api, const char *key, tryon_api_response *resp);
/* Verifies the Bearer token and loads nothing: sets *user_id. On failure fills a 401. */
bool tryon__api_authenticate(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                             int64_t *user_id);
/* The user as the API shows it. */
cJSON *tryon__api_user_json(const tryon_user *u);

/* ---- metrics (metrics.c) */
void tryon__api_metrics_text(tryon_api *api, tryon_buf *out);

#endif
