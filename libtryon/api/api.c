/*
 * The API object, routing, the two serving phases, and the pieces every response
 * shares: JSON bodies, error shape, security and CORS headers.
 */
#include "api/api_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ responses */

/* Bodies larger than this are a bug in a handler, not a user's doing. */
#define RESPONSE_BODY_MAX (8u * 1024u * 1024u)

void tryon_api_response_init(tryon_api_response *r) {
  memset(r, 0, sizeof *r);
  tryon_buf_init(&r->body, RESPONSE_BODY_MAX);
  r->route = "-";
  r->content_type = "application/json; charset=utf-8";
}

void tryon_api_response_release(tryon_api_response *r) {
  tryon_buf_release(&r->body);
}

void tryon_api_response_header(tryon_api_response *r, const char *name, const char *value) {
  if (r->nheaders >= TRYON_API_MAX_HEADERS)
    return;
  tryon_api_header *h = &r->headers[r->nheaders++];
  snprintf(h->name, sizeof h->name, "%s", name);
  snprintf(h->value, sizeof h->value, "%s", value);
}

void tryon__api_json(tryon_api_response *resp, int status, cJSON *doc) {
  char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
  cJSON_Delete(doc);
  tryon_buf_reset(&resp->body);
  if (text == NULL || tryon_buf_append_str(&resp->body, text) != TRYON_OK) {
    /* Out of memory: a fixed body that needs no allocation beyond the buffer's. */
    resp->status = 500;
    tryon_buf_reset(&resp->body);
    (void)tryon_buf_append_str(
        &resp->body, "{\"error\":{\"code\":\"internal_error\",\"message\":\"out of memory\"}}");
  } else {
    resp->status = status;
  }
  cJSON_free(text);
}

void tryon__api_fail(tryon_api_response *resp, int status, const char *code, const char *message) {
  cJSON *doc = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(doc, "error");
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", message);
  tryon__api_json(resp, status, doc);
}

void tryon__api_fail_status(tryon_api_response *resp, tryon_status st) {
  switch (st) {
    case TRYON_E_INITDATA_MALFORMED:
    case TRYON_E_INITDATA_DUPLICATE_KEY:
    case TRYON_E_INITDATA_MISSING_HASH:
    case TRYON_E_INITDATA_MISSING_FIELD:
    case TRYON_E_INITDATA_BAD_HASH:
    case TRYON_E_INITDATA_BAD_SIGNATURE:
    case TRYON_E_INITDATA_EXPIRED:
    case TRYON_E_INITDATA_FROM_FUTURE:
      tryon__api_fail(resp, 401, tryon_status_code(st),
                      "Telegram sign-in data was not accepted; reopen the app from Telegram");
      break;
    case TRYON_E_TOKEN_MISSING:
    case TRYON_E_TOKEN_MALFORMED:
    case TRYON_E_TOKEN_BAD_ALG:
    case TRYON_E_TOKEN_BAD_SIGNATURE:
    case TRYON_E_TOKEN_EXPIRED:
    case TRYON_E_TOKEN_NOT_YET_VALID:
      tryon__api_fail(resp, 401, tryon_status_code(st), "your session is not valid; sign in again");
      break;
    case TRYON_E_DB_UNAVAILABLE:
      tryon__api_fail(resp, 503, "service_unavailable",
                      "the service is briefly unavailable; try again in a moment");
      tryon_api_response_header(resp, "Retry-After", "1");
      break;
    case TRYON_E_POOL_TIMEOUT:
      tryon__api_fail(resp, 503, "server_busy", "the service is busy; try again in a moment");
      tryon_api_response_header(resp, "Retry-After", "1");
      break;
    default:
      tryon__api_fail(resp, 500, "internal_error",
                      "something went wrong on our side; try again later");
      break;
  }
}

/* ------------------------------------------------------------------ request helpers */

const char *tryon__api_header(const tryon_api_request *req, const char *name) {
  return req->header ? req->header(req->header_ud, name) : NULL;
}

bool tryon__api_path_id(const tryon_api_request *req, tryon_api_response *resp,
                        const char *not_found, char id[64]) {
  if (!tryon__api_segment(req, 2, id, 64)) {
    tryon__api_fail(resp, 404, "not_found", not_found);
    return false;
  }
  /* One spelling: the database matches either case, storage keys are lower-case. */
  for (char *p = id; *p; p++) {
    if (*p >= 'A' && *p <= 'F')
      *p = (char)(*p - 'A' + 'a');
  }
  return true;
}

bool tryon__api_query_limit(const tryon_api_request *req, tryon_api_response *resp, long *limit) {
  const char *lim = tryon__api_query(req, "limit");
  if (lim == NULL)
    return true; /* the caller's default stays */
  char *end = NULL;
  long v = strtol(lim, &end, 10);
  if (end == lim || *end != '\0' || v < 1 || v > 100) {
    tryon__api_fail(resp, 422, "invalid_request", "limit must be a number from 1 to 100");
    return false;
  }
  *limit = v;
  return true;
}

bool tryon__api_json_body(const tryon_api_request *req, tryon_api_response *resp, cJSON **doc) {
  *doc = NULL;
  if (!tryon__api_is_json(req)) {
    tryon__api_fail(resp, 415, "unsupported_media_type", "the body must be application/json");
    return false;
  }
  const char *end = NULL;
  *doc = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, false);
  /* Only white space may follow the document. */
  while (*doc != NULL && end < req->body + req->body_len &&
         (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
    end++;
  if (*doc == NULL || end != req->body + req->body_len) {
    tryon__api_fail(resp, 400, "malformed_json", "the body is not valid JSON");
    return false;
  }
  return true;
}

bool tryon__api_is_json(const tryon_api_request *req) {
  const char *ct = tryon__api_header(req, "Content-Type");
  if (ct == NULL)
    return false;
  while (*ct == ' ')
    ct++;
  size_t n = strlen("application/json");
  return strncasecmp(ct, "application/json", n) == 0 &&
         (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Token buckets run on the monotonic clock (a wall-clock step must neither starve nor
 * flood a key); a test's own clock replaces it. */
static int64_t limit_now_ms(const tryon_api *api) {
  return api->clock != NULL ? tryon_clock_now_ms(api->clock) : tryon_time_monotonic_ms();
}

/* Takes a token from `rl` for `key`; on refusal counts it and fills a 429. */
static bool admit(tryon_api *api, tryon_ratelimit *rl, atomic_uint_fast64_t *refused,
                  const char *key, tryon_api_response *resp) {
  int retry = 1;
  if (tryon_ratelimit_take(rl, key, limit_now_ms(api), &retry))
    return true;
  atomic_fetch_add(refused, 1);
  char v[16];
  snprintf(v, sizeof v, "%d", retry);
  tryon__api_fail(resp, 429, "rate_limited", "too many requests; slow down a little");
  tryon_api_response_header(resp, "Retry-After", v);
  return false;
}

bool tryon__api_user_admit(tryon_api *api, const char *key, tryon_api_response *resp) {
  return admit(api, api->user_limit, &api->user_refused, key, resp);
}

/* The per-address key: an IPv4 address as is; an IPv6 address by its /64, since one
 * customer line holds a whole /64 and would otherwise get a bucket per address. */
static void address_key(const char *ip, char *out, size_t cap) {
  unsigned char a[16];
  char text[INET6_ADDRSTRLEN];
  if (ip != NULL && strchr(ip, ':') != NULL && inet_pton(AF_INET6, ip, a) == 1) {
    memset(a + 8, 0, 8);
    inet_ntop(AF_INET6, a, text, sizeof text);
    snprintf(out, cap, "ip:%s/64", text);
  } else {
    snprintf(out, cap, "ip:%s", ip && ip[0] ? ip : "-");
  }
}

bool tryon__api_authenticate(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                             int64_t *user_id) {
  const char *h = tryon__api_header(req, "Authorization");
  tryon_jwt_claims claims;
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
    tryon__api_fail_status(resp, TRYON_E_TOKEN_MISSING);
    return false;
  }
  const char *tok = h + 7;
  while (*tok == ' ')
    tok++;
  st = tryon_jwt_verify(api->cfg->jwt_secret, strlen(api->cfg->jwt_secret), tok, strlen(tok), 30,
                        api->clock, &claims, &err);
  if (st != TRYON_OK) {
    /* The reason goes to the debug log, never the token. */
    TRYON_LOG_DEBUG("session token refused", TRYON_LF_STR("reason", tryon_status_code(st)));
    tryon__api_fail_status(resp, st);
    return false;
  }
  *user_id = claims.sub;
  resp->user_id = claims.sub;
  return true;
}

bool tryon__api_session(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                        tryon_user *user) {
  int64_t uid = 0;
  tryon_db_conn *c = NULL;
  char key[40];
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (!tryon__api_authenticate(api, req, resp, &uid))
    return false;
  snprintf(key, sizeof key, "user:%lld", (long long)uid);
  if (!tryon__api_user_admit(api, key, resp))
    return false;
  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_users_get(c, uid, user, &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND) {
    /* A valid token of a user who no longer exists: the session is over. */
    tryon__api_fail(resp, 401, "user_unknown", "your session is not valid; sign in again");
    return false;
  }
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot load the user", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    return false;
  }
  if (user->blocked) {
    tryon__api_fail(resp, 403, "user_blocked", "this account is blocked");
    return false;
  }
  return true;
}

const char *tryon__api_query(const tryon_api_request *req, const char *name) {
  return req->query ? req->query(req->query_ud, name) : NULL;
}

bool tryon__api_segment(const tryon_api_request *req, int index, char *out, size_t cap) {
  const char *p = req->path;
  for (int i = 0; i <= index; i++) {
    if (*p != '/')
      return false;
    p++;
    size_t n = strcspn(p, "/");
    if (i == index) {
      if (n == 0 || n >= cap)
        return false;
      memcpy(out, p, n);
      out[n] = '\0';
      return true;
    }
    p += n;
  }
  return false;
}

bool tryon__api_has_header(const tryon_api_response *resp, const char *name) {
  for (size_t i = 0; i < resp->nheaders; i++) {
    if (strcasecmp(resp->headers[i].name, name) == 0)
      return true;
  }
  return false;
}

/* ---------------------------------------------------------------------------- headers */

static bool origin_allowed(const tryon_api *api, const char *origin) {
  /* Scheme and host are case-insensitive; the configured origin is compared as given
   * otherwise (set it exactly as browsers send it: no default port, no path). */
  return origin != NULL && api->origin[0] != '\0' && strcasecmp(origin, api->origin) == 0;
}

/* Adds a header unless the handler chose its own. */
static void header_default(tryon_api_response *resp, const char *name, const char *value) {
  if (!tryon__api_has_header(resp, name))
    tryon_api_response_header(resp, name, value);
}

/* Every response: the API's security headers (a handler may choose its own caching and
 * resource policy, as the image links do), and CORS for the web app's origin only. */
static void finish(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  header_default(resp, "X-Content-Type-Options", "nosniff");
  header_default(resp, "Referrer-Policy", "no-referrer");
  /* A page of the web app is framed by Telegram's web clients and carries its own CSP
   * (webapp.c); everything else may be framed by no one. */
  if (!resp->framable)
    header_default(resp, "X-Frame-Options", "DENY");
  header_default(resp, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  header_default(resp, "Cross-Origin-Resource-Policy", "same-site");
  header_default(resp, "Cache-Control", "no-store");
  if (api->https)
    header_default(resp, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
  const char *origin = tryon__api_header(req, "Origin");
  tryon_api_response_header(resp, "Vary", "Origin");
  /* A handler that chose its own CORS origin (a download for Telegram's client) keeps it:
   * a second Access-Control-Allow-Origin would make browsers refuse both. */
  if (origin_allowed(api, origin) && !tryon__api_has_header(resp, "Access-Control-Allow-Origin")) {
    tryon_api_response_header(resp, "Access-Control-Allow-Origin", origin);
    tryon_api_response_header(resp, "Access-Control-Expose-Headers", "Retry-After");
  }
}

/* ---------------------------------------------------------------------------- routing */

/* Whether `path` fits `pattern`, segment by segment; {x} matches one non-empty segment. */
static bool path_matches(const char *pattern, const char *path) {
  const char *p = pattern, *s = path;
  while (*p && *s) {
    if (*p == '{') {
      const char *close = strchr(p, '}');
      if (close == NULL)
        return false;
      if (*s == '/')
        return false; /* empty segment */
      while (*s && *s != '/')
        s++;
      p = close + 1;
      continue;
    }
    if (*p != *s)
      return false;
    p++;
    s++;
  }
  return *p == '\0' && *s == '\0';
}

static void allow_list(const char *path, char *out, size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < tryon__api_route_count; i++) {
    const tryon__api_route *r = &tryon__api_routes[i];
    if (!path_matches(r->pattern, path) || strstr(out, r->method) != NULL)
      continue;
    int w = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", r->method);
    if (w < 0 || (size_t)w >= cap - used)
      break;
    used += (size_t)w;
  }
}

void tryon_api_plan_request(tryon_api *api, const tryon_api_request *req, tryon_api_plan *plan,
                            tryon_api_response *resp) {
  char allow[96];
  memset(plan, 0, sizeof *plan);
  plan->route = -1;

  /* HEAD is GET without the body (the transport drops it), so health checks may use it. */
  const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
  for (size_t i = 0; i < tryon__api_route_count; i++) {
    const tryon__api_route *r = &tryon__api_routes[i];
    if (strcmp(r->method, method) == 0 && path_matches(r->pattern, req->path)) {
      plan->route = (int)i;
      plan->body_limit = r->body_limit;
      plan->blocking = r->blocking;
      plan->multipart = r->part_limit > 0;
      plan->part_limit = r->part_limit;
      plan->too_large_code = r->too_large_code ? r->too_large_code : "body_too_large";
      resp->route = r->pattern;
      break;
    }
  }
  allow_list(req->path, allow, sizeof allow);

  if (plan->route < 0 && strcmp(req->method, "OPTIONS") == 0 && allow[0] != '\0') {
    /* CORS preflight: only the web app's origin may call the API from a browser. */
    const char *origin = tryon__api_header(req, "Origin");
    plan->done = true;
    if (!origin_allowed(api, origin)) {
      tryon__api_fail(resp, 403, "origin_not_allowed", "this origin may not call the API");
    } else {
      resp->status = 204;
      tryon_api_response_header(resp, "Access-Control-Allow-Methods", allow);
      tryon_api_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Idempotency-Key");
      tryon_api_response_header(resp, "Access-Control-Max-Age", "600");
    }
  } else if (plan->route < 0 && allow[0] != '\0') {
    plan->done = true;
    tryon__api_fail(resp, 405, "method_not_allowed", "this endpoint does not take that method");
    tryon_api_response_header(resp, "Allow", allow);
  } else if (plan->route < 0 && api->webapp != NULL && tryon__webapp_owns(req->path)) {
    plan->done = true;
    if (strcmp(method, "GET") == 0) {
      tryon__webapp_serve(api->webapp, req, resp);
    } else {
      tryon__api_fail(resp, 405, "method_not_allowed", "the app's pages take GET and HEAD");
      tryon_api_response_header(resp, "Allow", "GET, HEAD");
    }
  } else if (plan->route < 0) {
    plan->done = true;
    tryon__api_fail(resp, 404, "not_found", "no such endpoint");
  } else {
    const tryon__api_route *r = &tryon__api_routes[plan->route];
    char key[80];
    int64_t uid = 0;
    address_key(req->client_ip, key, sizeof key);
    if (r->rate_limited)
      plan->done = !admit(api, api->ip_limit, &api->ip_refused, key, resp);
    /* A large body is read only for a signed-in user: the token is checked (no
     * database) before a byte of it is buffered. */
    if (!plan->done && r->part_limit > 0)
      plan->done = !tryon__api_authenticate(api, req, resp, &uid);
  }
  if (plan->done)
    finish(api, req, resp);
}

void tryon_api_handle(tryon_api *api, const tryon_api_plan *plan, const tryon_api_request *req,
                      tryon_api_response *resp) {
  if (plan->route < 0 || (size_t)plan->route >= tryon__api_route_count) {
    tryon__api_fail(resp, 404, "not_found", "no such endpoint");
  } else {
    const tryon__api_route *r = &tryon__api_routes[plan->route];
    resp->route = r->pattern;
    if (req->body_len > r->body_limit) {
      tryon__api_fail(resp, 413, plan->too_large_code ? plan->too_large_code : "body_too_large",
                      "the request body is too large");
    } else {
      r->fn(api, req, resp);
      if (resp->status == 0)
        tryon__api_fail(resp, 500, "internal_error", "the request was not answered");
    }
  }
  finish(api, req, resp);
}

void tryon_api_error(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp,
                     int status, const char *code, const char *message) {
  tryon__api_fail(resp, status, code, message);
  finish(api, req, resp);
}

bool tryon__api_image_slot_take(tryon_api *api) {
  /* Never wait: a dispatch thread waiting here would stall every other endpoint. */
  while (sem_trywait(&api->image_slots) != 0) {
    if (errno != EINTR)
      return false;
  }
  return true;
}

void tryon__api_image_slot_give(tryon_api *api) {
  sem_post(&api->image_slots);
}

/* ------------------------------------------------------------------------ lifecycle */

/* scheme://host[:port] of a URL, without path. */
static void url_origin(const char *url, char *out, size_t cap) {
  const char *host = strstr(url, "://");
  size_t n = strlen(url);
  if (host != NULL) {
    const char *slash = strchr(host + 3, '/');
    if (slash != NULL)
      n = (size_t)(slash - url);
  }
  snprintf(out, cap, "%.*s", (int)n, url);
}

tryon_status tryon_api_new(const tryon_api_options *opt, tryon_api **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_api *api = NULL;

  if (opt == NULL || opt->cfg == NULL || opt->db == NULL || out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_api_new");
    goto out;
  }
  *out = NULL;
  const tryon_config *cfg = opt->cfg;
  if (cfg->jwt_secret == NULL || strlen(cfg->jwt_secret) < TRYON_JWT_SECRET_MIN) {
    st = tryon_err_set(err, TRYON_E_CONFIG, "TRYON_JWT_SECRET must be at least %d bytes",
                       TRYON_JWT_SECRET_MIN);
    goto out;
  }
  api = calloc(1, sizeof *api);
  if (api == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  /* One decode per core, at most 4: a hostile 40 MP file peaks near 700 MiB. */
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (sem_init(&api->image_slots, 0, cores > 0 && cores < 4 ? (unsigned)cores : 4) != 0) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot set up the image slots");
    free(api); /* nothing else made yet; tryon_api_free would destroy the semaphore */
    api = NULL;
    goto out;
  }
  api->cfg = cfg;
  api->db = opt->db;
  api->storage = opt->storage;
  api->clock = opt->clock;
  tryon_link_key_derive(cfg->jwt_secret, strlen(cfg->jwt_secret), &api->link_key);
  api->initdata.method = cfg->initdata_ed25519 ? TRYON_INITDATA_ED25519 : TRYON_INITDATA_HMAC;
  api->initdata.bot_token = cfg->bot_token;
  api->initdata.test_env = cfg->telegram_test_env;
  api->initdata.max_age_s = cfg->initdata_max_age_s;
  api->initdata.max_future_s = 60;
  api->initdata.clock = opt->clock;
  /* The bot id: configured, else the digits before ':' in the bot token. */
  const char *id_text = cfg->telegram_bot_id ? cfg->telegram_bot_id : cfg->bot_token;
  if (id_text != NULL) {
    char *end = NULL;
    long long id = strtoll(id_text, &end, 10);
    if (end != id_text && id > 0 && (*end == '\0' || *end == ':'))
      api->initdata.bot_id = id;
  }
  if (api->initdata.method == TRYON_INITDATA_HMAC && cfg->bot_token == NULL) {
    st = tryon_err_set(err, TRYON_E_CONFIG, "TRYON_BOT_TOKEN is needed to check sign-in data");
    goto out;
  }
  if (api->initdata.method == TRYON_INITDATA_ED25519 && api->initdata.bot_id == 0) {
    st = tryon_err_set(err, TRYON_E_CONFIG,
                       "TRYON_TELEGRAM_BOT_ID (or a bot token) is needed for the Ed25519 check");
    goto out;
  }
  url_origin(cfg->webapp_origin ? cfg->webapp_origin : cfg->public_url, api->origin,
             sizeof api->origin);
  api->https = cfg->public_url != NULL && strncasecmp(cfg->public_url, "https://", 8) == 0;
  api->ip_limit = tryon_ratelimit_new(cfg->rate_ip_rps, cfg->rate_ip_burst);
  api->user_limit = tryon_ratelimit_new(cfg->rate_user_rps, cfg->rate_user_burst);
  api->metrics = calloc(tryon__api_route_count + 1, sizeof *api->metrics);
  if (api->ip_limit == NULL || api->user_limit == NULL || api->metrics == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  if (cfg->webapp_dir != NULL) {
    st = tryon__webapp_load(cfg->webapp_dir, TRYON_WEBAPP_MAX_BYTES, &api->webapp, err);
    if (st != TRYON_OK)
      goto out;
  }
  *out = api;
  api = NULL;
out:
  tryon_api_free(api);
  return st;
}

void tryon_api_free(tryon_api *api) {
  if (api == NULL)
    return;
  tryon_ratelimit_free(api->ip_limit);
  tryon_ratelimit_free(api->user_limit);
  free(api->metrics);
  tryon__webapp_free(api->webapp);
  sem_destroy(&api->image_slots);
  free(api);
}
