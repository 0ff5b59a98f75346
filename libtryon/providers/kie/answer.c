/*
 * answer.c - verdicts on kie.ai's answers: the transfer's status, the HTTP status and
 * the envelope's body code (errors come with HTTP 200 as often as not), then the
 * fields each answer promises.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <tryon/kie.h>

#include "kie_internal.h"

/* How much of a body that is not JSON goes into a verdict's detail. */
#define SNIPPET_MAX 160

/* ---------------------------------------------------------------- refusal words */

static bool contains_ci(const char *hay, const char *needle) {
  size_t n = strlen(needle);

  for (; *hay != '\0'; hay++) {
    size_t i = 0;
    while (i < n && hay[i] != '\0' &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) {
      i++;
    }
    if (i == n) {
      return true;
    }
  }
  return false;
}

bool tryon__kie_is_refusal(const char *a, const char *b, const char *c) {
  /* Google's finish reasons (IMAGE_SAFETY, PROHIBITED_CONTENT ...) and the wording of
   * moderation messages seen from image services. Over-matching only changes the
   * word in our records (content_refused instead of generation_failed): both end the
   * task and refund the user. */
  static const char *const words[] = {
      "moderat",  "policy",         "policies", "safety",    "unsafe",      "nsfw",   "sensitive",
      "prohibit", "inappropriate",  "violat",   "flagged",   "explicit",    "nudity", "sexual",
      "harmful",  "content filter", "filtered", "blocklist", "not allowed", "refus"};
  const char *const texts[] = {a, b, c};

  for (size_t t = 0; t < 3; t++) {
    if (texts[t] == NULL) {
      continue;
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
      if (contains_ci(texts[t], words[w])) {
        return true;
      }
    }
  }
  return false;
}

/* ------------------------------------------------------------------ JSON helpers */

/* The body as a JSON value (NULL when empty or not JSON; trailing blanks allowed). */
static cJSON *body_json(const tryon_http_response *resp) {
  const char *end = NULL;
  cJSON *j;

  if (resp == NULL || resp->body.data == NULL || resp->body.len == 0) {
    return NULL;
  }
  j = cJSON_ParseWithLengthOpts(resp->body.data, resp->body.len, &end, 0);
  if (j == NULL) {
    return NULL;
  }
  while (end < resp->body.data + resp->body.len && isspace((unsigned char)*end)) {
    end++;
  }
  if (end != resp->body.data + resp->body.len) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

/* An integer field given as a JSON number or a string of digits; false otherwise. */
bool tryon__kie_int_field(const cJSON *o, const char *name, int *out) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

  if (cJSON_IsNumber(f)) {
    double d = f->valuedouble;
    if (d >= -1e6 && d <= 1e6 && floor(d) == d) {
      *out = (int)d;
      return true;
    }
    return false;
  }
  if (cJSON_IsString(f) && f->valuestring != NULL) {
    const char *s = f->valuestring;
    size_t n = strlen(s);
    int x = 0;
    if (n == 0 || n > 6) {
      return false;
    }
    for (size_t i = 0; i < n; i++) {
      if (s[i] < '0' || s[i] > '9') {
        return false;
      }
      x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return true;
  }
  return false;
}

/* A string field, or NULL (absent, null or not a string). */
static const char *str_field(const cJSON *o, const char *name) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

  return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* The envelope's message: `msg`, or `message` when msg is absent or empty. */
const char *tryon__kie_envelope_msg(const cJSON *root) {
  const char *m = str_field(root, "msg");

  if (m == NULL || m[0] == '\0') {
    const char *alt = str_field(root, "message");
    if (alt != NULL) {
      m = alt;
    }
  }
  return m;
}

/* ------------------------------------------------------------------- the codes */

/* The verdict for a body code other than 200 (also used for an HTTP error whose body
 * carries an envelope). */
static void body_code_verdict(int code, const char *msg, int64_t retry_after_ms, tryon_verdict *v) {
  const char *m = msg != NULL ? msg : "";

  switch (code) {
    case 400:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_request", "%s", m);
      break;
    case 401:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "unauthorized", "%s", m);
      break;
    case 402:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "provider_out_of_credits", "%s", m);
      break;
    case 404:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "not_found", "%s", m);
      break;
    case 408:
      /* "no result for over 10 minutes": the task is lost, asking again won't help. */
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "timeout", "%s", m);
      break;
    case 422:
      /* recordInfo's answer for a taskId kie does not know. */
      tryon_verdict_set(v, TRYON_VERDICT_FINAL,
                        contains_ci(m, "recordInfo is null") ? "not_found" : "validation", "%s", m);
      break;
    case 429:
    case 433: /* a sub-key's own limit */
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "rate_limited", "%s", m);
      break;
    case 455:
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "maintenance", "%s", m);
      break;
    case 500:
      /* Sometimes a validation error in disguise: the job bounds these retries. */
      tryon_verdict_set(v, TRYON_VERDICT_RETRY, "server_error", "%s", m);
      break;
    case 501:
      tryon_verdict_set(
          v, TRYON_VERDICT_FINAL,
          tryon__kie_is_refusal(m, NULL, NULL) ? "content_refused" : "generation_failed", "%s", m);
      break;
    case 505:
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "feature_disabled", "%s", m);
      break;
    default:
      if (code >= 500 && code <= 599) {
        tryon_verdict_set(v, TRYON_VERDICT_RETRY, "server_error", "code %d: %s", code, m);
      } else if (code >= 400 && code <= 499) {
        tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_request", "code %d: %s", code, m);
      } else {
        tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "unexpected code %d: %s", code, m);
      }
      break;
  }
  if (v->next == TRYON_VERDICT_RETRY) {
    v->retry_after_ms = retry_after_ms;
  }
}

bool tryon__kie_envelope(const cJSON *root, tryon_verdict *v) {
  const char *msg = tryon__kie_envelope_msg(root);
  const cJSON *success = cJSON_GetObjectItemCaseSensitive(root, "success");
  int code = 0;
  bool have_code = tryon__kie_int_field(root, "code", &code);

  if (msg != NULL) {
    tryon_verdict_copy_text(v->detail, sizeof v->detail, msg, strlen(msg));
  }
  if (have_code) {
    v->provider_code = code;
  }
  if (!have_code) {
    /* The upload host's answers carry `success` too; it alone is enough. */
    if (cJSON_IsTrue(success)) {
      return true;
    }
    return tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "no code in the answer%s%s",
                             msg != NULL ? ": " : "", msg != NULL ? msg : "");
  }
  if (code != 200) {
    body_code_verdict(code, msg, 0, v);
    return false;
  }
  if (cJSON_IsFalse(success)) {
    return tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "success is false%s%s",
                             msg != NULL ? ": " : "", msg != NULL ? msg : "");
  }
  return true;
}

/* The start of a body that is not an envelope, for the detail. */
static void body_snippet(const tryon_http_response *resp, char *out, size_t cap) {
  size_t n = 0;

  out[0] = '\0';
  if (resp != NULL && resp->body.data != NULL) {
    n = resp->body.len < SNIPPET_MAX ? resp->body.len : SNIPPET_MAX;
    tryon_verdict_copy_text(out, cap, resp->body.data, n);
  }
}

/*
 * The verdict on the transfer and the envelope. `*root` receives the body's JSON
 * object when there is one (the caller deletes it), whatever the verdict, so a parser
 * may look further (a 501 still carries the task). True: go on reading `data`.
 */
static bool judge(const tryon_http_response *resp, tryon_status http_st, tryon_verdict *v,
                  cJSON **root) {
  char snippet[SNIPPET_MAX + 1];
  tryon_verdict_by by;
  cJSON *j = NULL;
  bool ok = false;

  *root = NULL;
  /* The shared judgement first: a transfer that failed is the final say; an HTTP
   * error status is a default that kie's own envelope may overrule. */
  by = tryon_verdict_from_transport(resp, http_st, v);
  if (by == TRYON_VERDICT_BY_TRANSFER) {
    goto out;
  }
  j = body_json(resp);
  if (j != NULL && !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    j = NULL;
  }
  body_snippet(resp, snippet, sizeof snippet);

  if (by == TRYON_VERDICT_BY_STATUS) {
    int code = 0;
    const char *msg = j != NULL ? tryon__kie_envelope_msg(j) : NULL;
    /* An envelope with its own error code says more than the HTTP status. */
    if (j != NULL && tryon__kie_int_field(j, "code", &code) && code != 200) {
      v->provider_code = code;
      v->retry_after_ms = 0;
      body_code_verdict(code, msg, resp->retry_after_ms, v);
      goto out;
    }
    if (resp->status == 403 && contains_ci(resp->body.data, "1010")) {
      /* Cloudflare's browser-integrity check: a missing or blocked User-Agent. */
      tryon_verdict_set(v, TRYON_VERDICT_FINAL, "user_agent_refused",
                        "cloudflare refused the User-Agent (error code: 1010)");
    } else if (msg != NULL && strcmp(v->code, "bad_answer") != 0) {
      /* The envelope's words rather than the raw body. */
      tryon_verdict_detail(v, "HTTP %ld: %s", resp->status, msg);
    }
    goto out;
  }

  if (j == NULL) {
    /* A 2xx that is not a JSON object: a proxy's page or an empty body. Transient far
     * more often than a change of protocol, so ask again (the job bounds it). */
    tryon_verdict_set(v, TRYON_VERDICT_RETRY, "bad_answer", "the answer is not a JSON object%s%s",
                      snippet[0] != '\0' ? ": " : "", snippet);
    v->retry_after_ms = resp->retry_after_ms;
    goto out;
  }
  ok = tryon__kie_envelope(j, v);
  if (!ok && v->next == TRYON_VERDICT_RETRY) {
    v->retry_after_ms = resp->retry_after_ms;
  }

out:
  *root = j;
  return ok;
}

/* ------------------------------------------------------------------------ upload */

bool tryon_kie_parse_upload(const tryon_http_response *resp, tryon_status http_st,
                            char *download_url, size_t cap, tryon_verdict *v) {
  cJSON *root = NULL;
  const cJSON *data;
  const char *url;
  bool ok;

  if (download_url != NULL && cap > 0) {
    download_url[0] = '\0';
  }
  ok = judge(resp, http_st, v, &root);
  if (!ok) {
    goto out;
  }
  if (download_url == NULL || cap == 0) {
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "internal", "no room for the download url");
    goto out;
  }
  data = cJSON_GetObjectItemCaseSensitive(root, "data");
  url = cJSON_IsObject(data) ? str_field(data, "downloadUrl") : NULL;
  if (url == NULL || url[0] == '\0') {
    /* One quickstart shows `fileUrl`; it is reported absent in real answers. */
    url = cJSON_IsObject(data) ? str_field(data, "fileUrl") : NULL;
  }
  if (url == NULL || url[0] == '\0') {
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "no data.downloadUrl");
    goto out;
  }
  if (!tryon__kie_url_ok(url) || strlen(url) >= cap) {
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer",
                           "data.downloadUrl is not an http(s) url under %zu bytes", cap);
    goto out;
  }
  memcpy(download_url, url, strlen(url) + 1);
  v->code[0] = '\0';

out:
  cJSON_Delete(root);
  return ok;
}

/* -------------------------------------------------------------------- createTask */

/* A task id as an answer gives it: a non-empty string under the limit without control
 * characters. */
bool tryon__kie_task_id_copy(const cJSON *o, char out[TRYON_KIE_TASK_ID_MAX]) {
  const char *id = str_field(o, "taskId");
  size_t n;

  if (id == NULL || id[0] == '\0') {
    id = str_field(o, "task_id");
  }
  if (id == NULL) {
    return false;
  }
  n = strlen(id);
  if (n == 0 || n >= TRYON_KIE_TASK_ID_MAX) {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
      return false;
    }
  }
  memcpy(out, id, n + 1);
  return true;
}

bool tryon_kie_parse_create(const tryon_http_response *resp, tryon_status http_st,
                            char task_id[TRYON_KIE_TASK_ID_MAX], tryon_verdict *v) {
  cJSON *root = NULL;
  const cJSON *data;
  bool ok;

  if (task_id != NULL) {
    task_id[0] = '\0';
  }
  ok = judge(resp, http_st, v, &root);
  if (!ok) {
    goto out;
  }
  data = cJSON_GetObjectItemCaseSensitive(root, "data");
  if (task_id == NULL) {
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "internal", "no room for the task id");
  } else if (!cJSON_IsObject(data) || !tryon__kie_task_id_copy(data, task_id)) {
    task_id[0] = '\0';
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "no usable data.taskId");
  }

out:
  cJSON_Delete(root);
  return ok;
}

/* -------------------------------------------------------------------- recordInfo */

const char *tryon_kie_state_name(tryon_kie_state s) {
  switch (s) {
    case TRYON_KIE_WAITING:
      return "waiting";
    case TRYON_KIE_QUEUING:
      return "queuing";
    case TRYON_KIE_GENERATING:
      return "generating";
    case TRYON_KIE_SUCCESS:
      return "success";
    case TRYON_KIE_FAIL:
      return "fail";
    case TRYON_KIE_UNKNOWN:
      break;
  }
  return "unknown";
}

bool tryon_kie_state_done(tryon_kie_state s) {
  return s == TRYON_KIE_SUCCESS || s == TRYON_KIE_FAIL;
}

/* failCode / failMsg: a string, a number (some failCodes are numeric), or "" for
 * null, absent or anything else. */
static void text_field(const cJSON *o, const char *name, char *out, size_t cap) {
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

  out[0] = '\0';
  if (cJSON_IsString(f) && f->valuestring != NULL) {
    tryon_verdict_copy_text(out, cap, f->valuestring, strlen(f->valuestring));
  } else if (cJSON_IsNumber(f)) {
    snprintf(out, cap, "%.0f", f->valuedouble);
  }
}

/* resultJson's resultUrls[0] into t->result_url. resultJson is a JSON string to parse
 * again, or (accepted too) an object already. */
static bool result_url(const cJSON *data, tryon_kie_task *t) {
  const cJSON *rj = cJSON_GetObjectItemCaseSensitive(data, "resultJson");
  cJSON *parsed = NULL;
  const cJSON *obj = NULL;
  const cJSON *urls;
  const cJSON *first;
  bool ok = false;

  if (cJSON_IsString(rj) && rj->valuestring != NULL && rj->valuestring[0] != '\0') {
    parsed = cJSON_Parse(rj->valuestring);
    obj = parsed;
  } else if (cJSON_IsObject(rj)) {
    obj = rj;
  }
  if (!cJSON_IsObject(obj)) {
    goto out;
  }
  urls = cJSON_GetObjectItemCaseSensitive(obj, "resultUrls");
  first = cJSON_IsArray(urls) ? cJSON_GetArrayItem(urls, 0) : NULL;
  if (!cJSON_IsString(first) || !tryon__kie_url_ok(first->valuestring) ||
      strlen(first->valuestring) >= sizeof t->result_url) {
    goto out;
  }
  memcpy(t->result_url, first->valuestring, strlen(first->valuestring) + 1);
  ok = true;

out:
  cJSON_Delete(parsed);
  return ok;
}

static tryon_kie_state state_parse(const char *s) {
  static const struct {
    const char *name;
    tryon_kie_state state;
  } states[] = {{"waiting", TRYON_KIE_WAITING},
                {"queuing", TRYON_KIE_QUEUING},
                {"generating", TRYON_KIE_GENERATING},
                {"success", TRYON_KIE_SUCCESS},
                {"fail", TRYON_KIE_FAIL},
                {"failed", TRYON_KIE_FAIL}};

  if (s == NULL) {
    return TRYON_KIE_UNKNOWN;
  }
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
    if (strcasecmp(s, states[i].name) == 0) {
      return states[i].state;
    }
  }
  return TRYON_KIE_UNKNOWN;
}

bool tryon__kie_task_from_data(const cJSON *data, bool failed_hint, const char *env_msg,
                               tryon_kie_task *t, tryon_verdict *v) {
  const char *state_text = str_field(data, "state");
  tryon_kie_state st = state_parse(state_text);
  bool have_url;

  memset(t, 0, sizeof *t);
  (void)tryon__kie_task_id_copy(data, t->task_id);
  have_url = result_url(data, t);
  if (state_text == NULL && have_url && !failed_hint) {
    st = TRYON_KIE_SUCCESS;
  }
  /* The envelope said 501 (generation failed): that ends the task whatever data says
   * or leaves out. */
  if (failed_hint && st != TRYON_KIE_SUCCESS) {
    st = TRYON_KIE_FAIL;
  }
  t->state = st;
  v->next = TRYON_VERDICT_OK;
  v->code[0] = '\0';
  switch (st) {
    case TRYON_KIE_FAIL:
      t->result_url[0] = '\0';
      text_field(data, "failCode", t->fail_code, sizeof t->fail_code);
      text_field(data, "failMsg", t->fail_msg, sizeof t->fail_msg);
      return tryon_verdict_set(
          v, TRYON_VERDICT_FINAL,
          tryon__kie_is_refusal(t->fail_code, t->fail_msg, failed_hint ? env_msg : NULL)
              ? "content_refused"
              : "generation_failed",
          "task failed: %s%s%s", t->fail_code[0] != '\0' ? t->fail_code : "no code",
          t->fail_msg[0] != '\0' ? ": " : "",
          t->fail_msg[0] != '\0' ? t->fail_msg : (env_msg != NULL ? env_msg : ""));
    case TRYON_KIE_SUCCESS:
      if (!have_url) {
        /* Seen as a race between the state and the result: poll again (the poll
         * limit bounds it). */
        return tryon_verdict_set(v, TRYON_VERDICT_RETRY, "pending",
                                 "success without a usable resultJson.resultUrls[0]");
      }
      return true;
    case TRYON_KIE_UNKNOWN:
      t->result_url[0] = '\0';
      tryon_verdict_set(v, TRYON_VERDICT_OK, "", "unknown state \"%s\": polling on",
                        state_text != NULL ? state_text : "(none)");
      return true;
    case TRYON_KIE_WAITING:
    case TRYON_KIE_QUEUING:
    case TRYON_KIE_GENERATING:
      t->result_url[0] = '\0';
      return true;
  }
  return true;
}

bool tryon_kie_parse_record(const tryon_http_response *resp, tryon_status http_st,
                            tryon_kie_task *t, tryon_verdict *v) {
  tryon_kie_task scratch;
  cJSON *root = NULL;
  const cJSON *data;
  bool ok;

  if (t == NULL) {
    t = &scratch;
  }
  memset(t, 0, sizeof *t);
  ok = judge(resp, http_st, v, &root);
  data = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
  if (!ok && v->provider_code == 501 && cJSON_IsObject(data)) {
    /* A failed task may come as a 501 envelope around its data. */
    int provider_code = v->provider_code;
    long http_status = v->http_status;
    char msg[sizeof v->detail];
    memcpy(msg, v->detail, sizeof msg);
    ok = tryon__kie_task_from_data(data, true, msg, t, v);
    v->provider_code = provider_code;
    v->http_status = http_status;
    goto out;
  }
  if (!ok) {
    goto out;
  }
  if (!cJSON_IsObject(data)) {
    ok = tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "no data object");
    goto out;
  }
  ok = tryon__kie_task_from_data(data, false, NULL, t, v);

out:
  if (!ok && v->next != TRYON_VERDICT_FINAL) {
    memset(t, 0, sizeof *t);
  }
  cJSON_Delete(root);
  return ok;
}
