/*
 * The wallet as the app sees it: GET /api/billing, the balance in /api/me, and the
 * 402 answer of a request that cannot be paid.
 */
#include "api/api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <tryon/billing.h>

#define HISTORY_SHOWN 20

void tryon__api_fail_insufficient(tryon_api_response *resp, int64_t balance, int64_t cost) {
  char msg[160];
  snprintf(msg, sizeof msg,
           "not enough credits: you have %" PRId64 ", this costs %" PRId64
           "; buy a pack or a subscription",
           balance, cost);
  cJSON *doc = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(doc, "error");
  cJSON_AddStringToObject(e, "code", "insufficient_credits");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddNumberToObject(e, "balance", (double)balance);
  cJSON_AddNumberToObject(e, "cost", (double)cost);
  tryon__api_json(resp, 402, doc);
}

bool tryon__api_balance(tryon_api *api, int64_t user_id, tryon_balance *b,
                        tryon_api_response *resp) {
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_billing_balance(c, user_id, tryon_clock_now_ms(api->clock), b, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot read a balance", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    return false;
  }
  return true;
}

static cJSON *products_json(void) {
  size_t n = 0;
  const tryon_product *p = tryon_billing_products(&n);
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < n; i++) {
    char price[32];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", p[i].code);
    cJSON_AddStringToObject(o, "title", p[i].title);
    cJSON_AddStringToObject(o, "kind",
                            p[i].plan == TRYON_PLAN_NONE   ? "pack"
                            : p[i].plan == TRYON_PLAN_FREE ? "free"
                                                           : "subscription");
    cJSON_AddNumberToObject(o, "price_kopecks", (double)p[i].price_kopecks);
    /* Kopecks as the rouble string payment providers use, never a float. */
    snprintf(price, sizeof price, "%" PRId64 ".%02" PRId64, p[i].price_kopecks / 100,
             p[i].price_kopecks % 100);
    cJSON_AddStringToObject(o, "price", price);
    cJSON_AddStringToObject(o, "currency", "RUB");
    cJSON_AddNumberToObject(o, "credits", (double)p[i].credits);
    cJSON_AddNumberToObject(o, "period_days", p[i].period_days);
    cJSON_AddBoolToObject(o, "watermark", p[i].watermark);
    cJSON_AddItemToArray(arr, o);
  }
  return arr;
}

void tryon__api_h_billing(tryon_api *api, const tryon_api_request *req, tryon_api_response *resp) {
  tryon_user user;
  tryon_balance b;
  tryon_ledger_entry hist[HISTORY_SHOWN];
  size_t n = 0;
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_status st;

  tryon_err_clear(&err);
  if (!tryon__api_session(api, req, resp, &user))
    return;
  st = tryon_db_acquire(api->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_billing_balance(c, user.id, tryon_clock_now_ms(api->clock), &b, &err);
  if (st == TRYON_OK)
    st = tryon_billing_history(c, user.id, HISTORY_SHOWN, hist, &n, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    TRYON_LOG_ERROR("cannot read billing", TRYON_LF_STR("error", tryon_err_message(&err)));
    tryon__api_fail_status(resp, st);
    return;
  }
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddItemToObject(doc, "balance", tryon_balance_to_json(&b));
  cJSON_AddItemToObject(doc, "products", products_json());
  cJSON *costs = cJSON_AddObjectToObject(doc, "costs");
  cJSON_AddNumberToObject(costs, "tryon", TRYON_COST_TRYON);
  cJSON_AddNumberToObject(costs, "assistant", TRYON_COST_ASSISTANT);
  cJSON_AddNumberToObject(costs, "edit", TRYON_COST_EDIT);
  cJSON *arr = cJSON_AddArrayToObject(doc, "history");
  for (size_t i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)hist[i].id);
    cJSON_AddStringToObject(o, "reason", hist[i].reason);
    cJSON_AddNumberToObject(o, "delta", (double)(hist[i].delta_period + hist[i].delta_pack));
    cJSON_AddNumberToObject(o, "delta_period", (double)hist[i].delta_period);
    cJSON_AddNumberToObject(o, "delta_pack", (double)hist[i].delta_pack);
    cJSON_AddNumberToObject(o, "balance_after",
                            (double)(hist[i].period_after + hist[i].pack_after));
    cJSON_AddBoolToObject(o, "watermark", hist[i].from_free);
    tryon_json_add_time(o, "created_at", hist[i].created_ms);
    cJSON_AddItemToArray(arr, o);
  }
  tryon__api_json(resp, 200, doc);
}
