/*
 * The routing table and the handlers of the operational and sign-in endpoints.
 */
#include "api/api_internal.h"

#include <tryon/billing.h>

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* initData is a few hundred bytes to a few KiB; a sign-in body is that plus framing. */
#define AUTH_BODY_MAX (16u * 1024u)

/* ------------------------------------------------------------------------ operations */

static void h_healthz(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  (void)api;
  (void)req;
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "status", "ok");
  tryon__api_json(resp, 200, doc);
}

/* A probe flood must not turn into a database flood: a success is reused for a second. */
#define READY_CACHE_MS 1000

static void h_readyz(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  (void)req;
  int64_t now = tryon_time_monotonic_ms();
  int64_t last = atomic_load(&api->ready_at_ms);
  if (last == 0 || now - last >= READY_CACHE_MS) {
    tryon_db_conn *c = NULL;
    tryon_err err;
    tryon_err_clear(&err);
    tryon_status st = tryon_db_acquire(api->db, &c, &err);
    if (st == TRYON_OK)
      st = tryon_db_exec(c, "SELECT 1", 0, NULL, NULL, &err);
    tryon_db_release(c);
    if (st != TRYON_OK) {
      TRYON_LOG_WARN("readiness check failed", TRYON_LF_STR("error", tryon_err_message(&err)));
      tryon__api_fail(resp, 503, "database_unavailable", "the database is not reachable");
      return;
    }
    atomic_store(&api->ready_at_ms, now);
  }
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "status", "ready");
  tryon__api_json(resp, 200, doc);
}

/* On the API port, metrics are for whoever holds TRYON_METRICS_TOKEN: without one set
 * the endpoint does not exist there (404, as for any unknown path). */
static void h_metrics(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  const char *want = api->cfg->metrics_token;
  const char *h = tryon__api_header(req, "Authorization");
  if (want == NULL) {
    tryon__api_fail(resp, 404, "not_found", "no such endpoint");
    return;
  }
  const char *got = h != NULL && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : "";
  size_t n = strlen(want);
  if (strlen(got) != n || CRYPTO_memcmp(got, want, n) != 0) {
    tryon__api_fail(resp, 401, "metrics_token_invalid", "a valid metrics token is required");
    return;
  }
  tryon__api_metrics_text(api, &resp->body);
  resp->status = 200;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* -------------------------------------------------------------------------- sign-in */

/* Where the initData is: `Authorization: tma <initData>` or {"init_data": "..."}.
 * Returns false after filling an error response. `*doc` keeps the parsed body alive
 * while `*data` points into it. */
static bool find_init_data(const tryon_api_request *req, tryon_api_response *resp, cJSON **doc,
                           const char **data, size_t *len) {
  const char *h = tryon__api_header(req, "Authorization");
  if (h != NULL && strncasecmp(h, "tma ", 4) == 0) {
    *data = h + 4;
    *len = strlen(*data);
    return true;
  }
  if (req->body_len == 0) {
    tryon__api_fail(resp, 400, "missing_init_data",
                    "send init_data in the body or an Authorization: tma header");
    return false;
  }
  if (!tryon__api_json_body(req, resp, doc))
    return false;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(*doc, "init_data");
  if (!cJSON_IsObject(*doc) || !cJSON_IsString(v) || v->valuestring[0] == '\0') {
    tryon__api_fail(resp, 422, "invalid_request", "init_data must be a non-empty string");
    return false;
  }
  *data = v->valuestring;
  *len = strlen(v->valuestring);
  return true;
}

static void h_auth_telegram(tryon_api *api, const tryon_api_request *req,
                            tryon_api_response *resp) {
  cJSON *body = NULL;
  const char *data = NULL;
  size_t len = 0;
  tryon_initdata init;
  tryon_db_conn *c = NULL;
  tryon_user user;
  tryon_jwt_claims claims;
  char token[TRYON_JWT_MAX];
  char key[40];
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (!find_init_data(req, resp, &body, &data, &len))
    goto out;
  st = tryon_initdata_verify(data, len, &api->initdata, &init, &err);
  if (st == TRYON_OK && !init.has_user)
    st = TRYON_E_INITDATA_MISSING_FIELD;
  if (st != TRYON_OK) {
    /* Which check failed, never the data itself. */
    TRYON_LOG_INFO("sign-in refused", TRYON_LF_STR("reason", tryon_status_code(st)));
    tryon__api_fail_status(resp, st);
    goto out;
  }
  snprintf(key, sizeof key, "tg:%lld", (long long)init.user.id);
  if (!tryon__api_user_admit(api, key, resp))
    goto out;

  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_users_upsert_telegram(c, &init.user, &user, NULL, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("sign-in failed", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    goto out;
  }
  resp->user_id = user.id;
  if (user.blocked) {
    tryon__api_fail(resp, 403, "user_blocked", "this account is blocked");
    goto out;
  }
  st = tryon_jwt_issue(api->cfg->jwt_secret, strlen(api->cfg->jwt_secret), user.id,
                       api->cfg->jwt_ttl_s, api->clock, token, sizeof token, &claims, &err);
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot issue a session token", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    goto out;
  }
  char exp[TRYON_TIME_ISO8601_LEN];
  tryon_time_format_iso8601(claims.exp * 1000, exp);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "token", token);
  cJSON_AddStringToObject(doc, "expires_at", exp);
  cJSON_AddItemToObject(doc, "user", tryon_user_to_json(&user, 0));
  tryon__api_json(resp, 200, doc);
out:
  cJSON_Delete(body);
}

static void h_me(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  tryon_user user;
  tryon_balance balance;
  if (!tryon__api_session(api, req, resp, &user) ||
      !tryon__api_balance(api, user.id, &balance, resp))
    return;
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddItemToObject(doc, "user", tryon_user_to_json(&user, 0));
  cJSON_AddItemToObject(doc, "balance", tryon_balance_to_json(&balance));
  tryon__api_json(resp, 200, doc);
}

/* -------------------------------------------------------------------------- the table */

/* A try-on request is a few ids and words. */
#define TRYON_BODY_MAX 4096u
/* A kie.ai callback: recordInfo's data (a prompt of up to 5,000 characters inside). */
#define KIE_CALLBACK_BODY_MAX (64u * 1024u)

/* A multipart upload: the 5 MiB photo, one byte more (to tell "over 5 MB" apart from a
 * cut stream), and room for the form's framing. */
#define UPLOAD_PART_MAX (TRYON_FILES_MAX_BYTES + 1u)
#define UPLOAD_BODY_MAX (TRYON_FILES_MAX_BYTES + 64u * 1024u)

/* method, pattern, handler, body limit, blocking (database or disk), per-address rate
 * limit, part limit (multipart routes), the code for a body over its limit */
const tryon__api_route tryon__api_routes[] = {
    {"GET", "/healthz", h_healthz, 0, false, false, 0, NULL},
    {"GET", "/readyz", h_readyz, 0, true, true, 0, NULL},
    {"GET", "/metrics", h_metrics, 0, false, true, 0, NULL},
    {"POST", "/api/auth/telegram", h_auth_telegram, AUTH_BODY_MAX, true, true, 0, NULL},
    {"GET", "/api/me", h_me, 0, true, true, 0, NULL},
    {"GET", "/api/billing", tryon__api_h_billing, 0, true, true, 0, NULL},
    {"POST", "/api/uploads", tryon__api_h_upload_create, UPLOAD_BODY_MAX, true, true,
     UPLOAD_PART_MAX, "file_too_large"},
    {"GET", "/api/uploads", tryon__api_h_upload_list, 0, true, true, 0, NULL},
    {"DELETE", "/api/uploads/{id}", tryon__api_h_upload_delete, 0, true, true, 0, NULL},
    {"GET", "/files/{id}", tryon__api_h_file, 0, true, false, 0, NULL},
    {"GET", "/files/{id}/thumb", tryon__api_h_file_thumb, 0, true, false, 0, NULL},
    {"POST", "/api/tryon", tryon__api_h_tryon_create, TRYON_BODY_MAX, true, true, 0, NULL},
    {"GET", "/api/generations", tryon__api_h_generation_list, 0, true, true, 0, NULL},
    {"GET", "/api/generations/{id}", tryon__api_h_generation_get, 0, true, true, 0, NULL},
    {"DELETE", "/api/generations/{id}", tryon__api_h_generation_delete, 0, true, true, 0, NULL},
    {"GET", "/api/jobs/{id}", tryon__api_h_job_get, 0, true, true, 0, NULL},
    {"POST", "/api/jobs/{id}/cancel", tryon__api_h_job_cancel, 0, true, true, 0, NULL},
    {"POST", "/webhooks/kie", tryon__api_h_kie_callback, KIE_CALLBACK_BODY_MAX, true, true, 0,
     NULL},
};
const size_t tryon__api_route_count = sizeof tryon__api_routes / sizeof tryon__api_routes[0];
