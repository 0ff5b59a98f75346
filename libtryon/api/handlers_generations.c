/*
 * Try-ons: POST /api/tryon (charge + generation + job in one transaction), the history
 * (GET /api/generations, GET/DELETE /api/generations/{id}) and the job's progress
 * (GET /api/jobs/{id}).
 */
#include "api/api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/billing.h>
#include <tryon/generations.h>
#include <tryon/jobs.h>
#include <tryon/kie.h>

static cJSON *generation_json(tryon_api *api, const tryon_user *user, const tryon_generation *g) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", g->id);
  cJSON_AddStringToObject(o, "kind", g->kind);
  cJSON_AddStringToObject(o, "status", g->status);
  if (g->category[0])
    cJSON_AddStringToObject(o, "category", g->category);
  cJSON_AddStringToObject(o, "aspect_ratio", g->aspect_ratio);
  cJSON_AddStringToObject(o, "output_format", g->output_format);
  cJSON_AddNumberToObject(o, "cost", (double)g->cost);
  cJSON_AddBoolToObject(o, "watermarked", g->watermarked);
  cJSON_AddBoolToObject(o, "offline_preview", strcmp(g->provider, "offline") == 0);
  if (g->job_id[0])
    cJSON_AddStringToObject(o, "job_id", g->job_id);
  else
    cJSON_AddNullToObject(o, "job_id");
  if (g->person_upload_id[0]) {
    cJSON *in = cJSON_AddObjectToObject(o, "inputs");
    cJSON_AddStringToObject(in, "person_upload_id", g->person_upload_id);
    cJSON_AddStringToObject(in, "item_upload_id", g->item_upload_id);
  }
  if (g->result_upload_id[0]) {
    cJSON *r = cJSON_AddObjectToObject(o, "result");
    cJSON_AddStringToObject(r, "upload_id", g->result_upload_id);
    tryon__api_image_links(api, g->result_upload_id, g->result_has_thumb, r);
  } else {
    cJSON_AddNullToObject(o, "result");
  }
  if (g->error_code[0]) {
    /* The user's words for the code, never the provider's detail. */
    char msg[512];
    tryon_generations_user_message(g->error_code, user->language_code, g->cost, g->credits_expired,
                                   msg, sizeof msg);
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", g->error_code);
    cJSON_AddStringToObject(e, "message", msg);
  } else {
    cJSON_AddNullToObject(o, "error");
  }
  tryon_json_add_time(o, "created_at", g->created_us / 1000);
  tryon_json_add_time(o, "started_at", g->started_ms);
  tryon_json_add_time(o, "finished_at", g->finished_ms);
  return o;
}

/* A field of the body that must be a string when present; false after a 422. */
static bool string_field(const cJSON *doc, const char *name, bool required, const char **out,
                         tryon_api_response *resp) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
  char msg[96];
  *out = NULL;
  if (v == NULL || cJSON_IsNull(v)) {
    if (!required)
      return true;
    snprintf(msg, sizeof msg, "%s is required", name);
  } else if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
    *out = v->valuestring;
    return true;
  } else {
    snprintf(msg, sizeof msg, "%s must be a non-empty string", name);
  }
  tryon__api_fail(resp, 422, "invalid_request", msg);
  return false;
}

void tryon__api_h_tryon_create(tryon_api *api, const tryon_api_request *req,
                               tryon_api_response *resp) {
  tryon_user user;
  cJSON *body = NULL;
  tryon_db_conn *c = NULL;
  tryon_generations_created out;
  tryon_billing_refusal refusal = {0};
  tryon_err err;
  tryon_generations_tryon_params p;

  tryon_err_clear(&err);
  memset(&p, 0, sizeof p);
  if (!tryon__api_session(api, req, resp, &user))
    goto out;
  p.idempotency_key = tryon__api_header(req, "Idempotency-Key");
  if (p.idempotency_key == NULL || p.idempotency_key[0] == '\0') {
    tryon__api_fail(resp, 400, "idempotency_key_required",
                    "send an Idempotency-Key header (a fresh one for each new try-on)");
    goto out;
  }
  if (!tryon__api_json_body(req, resp, &body))
    goto out;
  if (!cJSON_IsObject(body)) {
    tryon__api_fail(resp, 422, "invalid_request", "the body must be a JSON object");
    goto out;
  }
  if (!string_field(body, "person_upload_id", true, &p.person_upload_id, resp) ||
      !string_field(body, "item_upload_id", true, &p.item_upload_id, resp) ||
      !string_field(body, "category", true, &p.category, resp) ||
      !string_field(body, "aspect_ratio", false, &p.aspect_ratio, resp) ||
      !string_field(body, "output_format", false, &p.output_format, resp))
    goto out;
  p.user_id = user.id;
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st =
        tryon_generations_create_tryon(c, &p, tryon_clock_now_ms(api->clock), &out, &refusal, &err);
  tryon_db_release(c);
  switch (st) {
    case TRYON_OK:
      break;
    case TRYON_E_INSUFFICIENT_CREDITS:
      tryon__api_fail_insufficient(resp, refusal.balance, refusal.cost);
      goto out;
    case TRYON_E_NOT_FOUND:
      tryon__api_fail(resp, 404, "not_found", "no such photo: upload both photos first");
      goto out;
    case TRYON_E_INVALID:
      tryon__api_fail(resp, 422, "invalid_request", tryon_err_message(&err));
      goto out;
    case TRYON_E_CONFLICT:
      tryon__api_fail(resp, 409, "idempotency_key_reused", tryon_err_message(&err));
      goto out;
    case TRYON_E_FORBIDDEN:
      tryon__api_fail(resp, 403, "forbidden", "this account is blocked");
      goto out;
    default:
      TRYON_LOG_ERROR("try-on not created", TRYON_LF_STR("error", tryon_err_message(&err)));
      tryon__api_fail_status(resp, st);
      goto out;
  }
  if (out.created)
    TRYON_LOG_INFO("try-on queued", TRYON_LF_INT("user", user.id), TRYON_LF_STR("job", out.job_id),
                   TRYON_LF_STR("category", p.category));
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "job_id", out.job_id);
  cJSON_AddStringToObject(doc, "generation_id", out.generation_id);
  cJSON_AddNumberToObject(doc, "cost", (double)out.cost);
  cJSON_AddNumberToObject(doc, "balance", (double)out.balance);
  cJSON_AddBoolToObject(doc, "watermark", out.watermark);
  cJSON_AddBoolToObject(doc, "replayed", !out.created);
  tryon__api_json(resp, 202, doc);
out:
  cJSON_Delete(body);
}

/* ------------------------------------------------------------------------ history */

void tryon__api_h_generation_list(tryon_api *api, const tryon_api_request *req,
                                  tryon_api_response *resp) {
  tryon_user user;
  tryon_generation *rows = NULL;
  char next[TRYON_GENERATIONS_CURSOR_MAX];
  size_t n = 0;
  long limit = 20;
  tryon_db_conn *c = NULL;
  tryon_err err;

  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user))
    return;
  if (!tryon__api_query_limit(req, resp, &limit))
    return;
  rows = calloc((size_t)limit, sizeof *rows);
  if (rows == NULL) {
    tryon__api_fail_status(resp, TRYON_E_NOMEM);
    return;
  }
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_generations_list(c, user.id, (int)limit, tryon__api_query(req, "cursor"), rows, &n,
                                next, &err);
  tryon_db_release(c);
  if (st == TRYON_E_INVALID) {
    tryon__api_fail(resp, 422, "invalid_request", "the cursor or limit is not valid");
  } else if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
  } else {
    cJSON *doc = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(doc, "items");
    for (size_t i = 0; i < n; i++)
      cJSON_AddItemToArray(items, generation_json(api, &user, &rows[i]));
    if (next[0] != '\0')
      cJSON_AddStringToObject(doc, "next_cursor", next);
    else
      cJSON_AddNullToObject(doc, "next_cursor");
    tryon__api_json(resp, 200, doc);
  }
  free(rows);
}

void tryon__api_h_generation_get(tryon_api *api, const tryon_api_request *req,
                                 tryon_api_response *resp) {
  tryon_user user;
  tryon_generation g;
  char id[64];
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user) ||
      !tryon__api_path_id(req, resp, "no such try-on", id))
    return;
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_generations_get(c, user.id, id, &g, &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND)
    tryon__api_fail(resp, 404, "not_found", "no such try-on");
  else if (st != TRYON_OK)
    tryon__api_fail_status(resp, st);
  else
    tryon__api_json(resp, 200, generation_json(api, &user, &g));
}

void tryon__api_h_generation_delete(tryon_api *api, const tryon_api_request *req,
                                    tryon_api_response *resp) {
  tryon_user user;
  char id[64], result[TRYON_UUID_STR_LEN];
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user) ||
      !tryon__api_path_id(req, resp, "no such try-on", id))
    return;
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_generations_delete(c, user.id, id, result, &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND) {
    tryon__api_fail(resp, 404, "not_found", "no such try-on");
  } else if (st == TRYON_E_CONFLICT) {
    tryon__api_fail(resp, 409, "in_progress", "the try-on is still being made; delete it after");
  } else if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
  } else {
    if (result[0] != '\0')
      tryon__api_remove_image(api, result);
    resp->status = 204;
  }
}

/* ---------------------------------------------------------------------------- jobs */

void tryon__api_h_job_get(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  tryon_user user;
  tryon_job job;
  char id[64];
  int64_t position = 0;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  memset(&job, 0, sizeof job);
  if (!tryon__api_session(api, req, resp, &user) ||
      !tryon__api_path_id(req, resp, "no such job", id))
    return;
  int64_t now = tryon_clock_now_ms(api->clock);
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_jobs_get(c, id, user.id, &job, &err);
  if (st == TRYON_OK && job.state == TRYON_JOB_QUEUED)
    st = tryon_jobs_position(c, id, now, &position, &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND) {
    tryon__api_fail(resp, 404, "not_found", "no such job");
  } else if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
  } else {
    cJSON *doc = tryon_job_to_json(&job, 0);
    if (job.state == TRYON_JOB_QUEUED)
      cJSON_AddNumberToObject(doc, "queue_position", (double)position);
    else
      cJSON_AddNullToObject(doc, "queue_position");
    cJSON *gen = cJSON_Parse(job.payload ? job.payload : "{}");
    const char *gid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(gen, "generation_id"));
    if (gid != NULL)
      cJSON_AddStringToObject(doc, "generation_id", gid);
    cJSON_Delete(gen);
    tryon__api_json(resp, 200, doc);
  }
  tryon_job_release(&job);
}

/* A queued job's owner may cancel it; a try-on's credits come back at once. */
void tryon__api_h_job_cancel(tryon_api *api, const tryon_api_request *req,
                             tryon_api_response *resp) {
  tryon_user user;
  tryon_balance balance;
  char id[64];
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user) ||
      !tryon__api_path_id(req, resp, "no such job", id))
    return;
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_generations_cancel_job(c, api->storage, id, user.id, tryon_clock_now_ms(api->clock),
                                      &err);
  tryon_db_release(c);
  if (st == TRYON_E_NOT_FOUND) {
    tryon__api_fail(resp, 404, "not_found", "no such job");
    return;
  }
  if (st == TRYON_E_CONFLICT) {
    tryon__api_fail(resp, 409, "too_late", "the job has already started or ended");
    return;
  }
  if (st == TRYON_E_FORBIDDEN) {
    tryon__api_fail(resp, 409, "already_generating",
                    "the image service is already making this picture; it can no longer be "
                    "cancelled");
    return;
  }
  if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st);
    return;
  }
  if (!tryon__api_balance(api, user.id, &balance, resp))
    return;
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "id", id);
  cJSON_AddStringToObject(doc, "state", "cancelled");
  cJSON_AddItemToObject(doc, "balance", tryon_balance_to_json(&balance));
  tryon__api_json(resp, 200, doc);
}

/* ------------------------------------------------------------ kie.ai callbacks */

/* How far a signed callback's timestamp may be from our clock. */
#define KIE_CALLBACK_SKEW_S 300

void tryon__api_h_kie_callback(tryon_api *api, const tryon_api_request *req,
                               tryon_api_response *resp) {
  tryon_kie_task task;
  tryon_verdict v;
  tryon_db_conn *c = NULL;
  tryon_err err;
  bool found = false;
  tryon_err_clear(&err);
  /* No callback URL: kie.ai was never told this address, so nobody has cause to call
   * it. (With one, config requires the signing key.) */
  if (api->cfg->kie_callback_url == NULL || api->cfg->kie_webhook_hmac_key == NULL) {
    tryon__api_fail(resp, 404, "not_found", "no such endpoint");
    return;
  }
  if (tryon_kie_parse_callback(req->body, req->body_len, &task, &v, &err) != TRYON_OK) {
    tryon__api_fail(resp, 400, "invalid_callback", "not a kie.ai callback");
    return;
  }
  /* The signature covers the task id and the time, not the body: a callback is only
   * "this task has news"; the worker reads the result from recordInfo. */
  if (tryon_kie_callback_verify(
          api->cfg->kie_webhook_hmac_key, tryon__api_header(req, "X-Webhook-Timestamp"),
          tryon__api_header(req, "X-Webhook-Signature"), task.task_id,
          tryon_clock_now_ms(api->clock) / 1000, KIE_CALLBACK_SKEW_S, &err) != TRYON_OK) {
    TRYON_LOG_WARN("kie callback refused", TRYON_LF_STR("reason", tryon_err_message(&err)));
    tryon__api_fail(resp, 403, "forbidden", "the callback's signature is not valid");
    return;
  }
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_generations_wake_task(c, "kie", task.task_id, &found, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    tryon__api_fail_status(resp, st); /* kie.ai may deliver it again; polling goes on */
    return;
  }
  TRYON_LOG_INFO("kie callback", TRYON_LF_STR("task", task.task_id),
                 TRYON_LF_STR("state", tryon_kie_state_name(task.state)),
                 TRYON_LF_BOOL("job_woken", found));
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddBoolToObject(doc, "ok", true);
  tryon__api_json(resp, 200, doc);
}
