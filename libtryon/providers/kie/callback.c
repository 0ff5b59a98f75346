/*
 * callback.c - kie.ai's completion callback: the signature (required whenever a
 * callback URL is configured)
 * (base64(HMAC-SHA256(key, taskId + "." + timestamp))) and the body.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <tryon/kie.h>

#include "kie_internal.h"

/* Longest signature header considered (a SHA-256 MAC is 44 base64 characters). */
#define SIGNATURE_MAX 128
/* Digits of a Unix-seconds timestamp accepted (more would be out of any skew). */
#define TIMESTAMP_DIGITS_MAX 15

/* The signature header in one form: blanks around it dropped, the URL-safe alphabet
 * mapped to the standard one, '=' padding dropped. False when it does not fit or
 * holds something that is not base64. */
static bool signature_normalise(const char *s, char *out, size_t cap, size_t *len) {
  size_t n;
  size_t k = 0;

  while (*s == ' ' || *s == '\t') {
    s++;
  }
  n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
    n--;
  }
  while (n > 0 && s[n - 1] == '=') {
    n--;
  }
  if (n == 0 || n >= cap) {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!isalnum((unsigned char)c) && c != '+' && c != '/') {
      return false;
    }
    out[k++] = c;
  }
  out[k] = '\0';
  *len = k;
  return true;
}

tryon_status tryon_kie_callback_verify(const char *key, const char *timestamp_hdr,
                                       const char *signature_hdr, const char *task_id,
                                       int64_t now_s, int64_t max_skew_s, tryon_err *err) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  char expected[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  char given[SIGNATURE_MAX];
  size_t given_len = 0;
  size_t exp_len;
  char *msg = NULL;
  size_t id_len;
  size_t ts_len;
  int64_t ts = 0;
  tryon_status st = TRYON_OK;

  if (key == NULL || key[0] == '\0' || task_id == NULL || task_id[0] == '\0' || max_skew_s < 0) {
    st =
        tryon_err_set(err, TRYON_E_INVALID, "kie callback: no key, task id or skew to verify with");
    goto out;
  }
  if (timestamp_hdr == NULL || timestamp_hdr[0] == '\0' || signature_hdr == NULL ||
      signature_hdr[0] == '\0') {
    st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: signature or timestamp missing");
    goto out;
  }
  ts_len = strlen(timestamp_hdr);
  if (ts_len > TIMESTAMP_DIGITS_MAX) {
    st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: malformed timestamp");
    goto out;
  }
  for (size_t i = 0; i < ts_len; i++) {
    if (timestamp_hdr[i] < '0' || timestamp_hdr[i] > '9') {
      st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: malformed timestamp");
      goto out;
    }
    ts = ts * 10 + (timestamp_hdr[i] - '0');
  }
  /* Both ways: a timestamp from the future is as suspect as an old one (a replay
   * prepared in advance), beyond clock drift. */
  if ((ts > now_s && ts - now_s > max_skew_s) || (ts <= now_s && now_s - ts > max_skew_s)) {
    st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: timestamp outside the allowed skew");
    goto out;
  }
  if (!signature_normalise(signature_hdr, given, sizeof given, &given_len)) {
    st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: malformed signature");
    goto out;
  }

  id_len = strlen(task_id);
  msg = malloc(id_len + 1 + ts_len + 1);
  if (msg == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "kie callback: out of memory");
    goto out;
  }
  memcpy(msg, task_id, id_len);
  msg[id_len] = '.';
  memcpy(msg + id_len + 1, timestamp_hdr, ts_len + 1);
  if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, id_len + 1 + ts_len,
           mac, &mac_len) == NULL) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "kie callback: HMAC-SHA256 failed");
    goto out;
  }
  exp_len = (size_t)EVP_EncodeBlock((unsigned char *)expected, mac, (int)mac_len);
  while (exp_len > 0 && expected[exp_len - 1] == '=') {
    exp_len--;
  }
  /* The lengths are public (a SHA-256 MAC's); the bytes compare in constant time. */
  if (given_len != exp_len || CRYPTO_memcmp(given, expected, exp_len) != 0) {
    st = tryon_err_set(err, TRYON_E_FORBIDDEN, "kie callback: signature does not match");
    goto out;
  }

out:
  OPENSSL_cleanse(mac, sizeof mac);
  OPENSSL_cleanse(expected, sizeof expected);
  free(msg);
  return st;
}

tryon_status tryon_kie_parse_callback(const char *body, size_t len, tryon_kie_task *out,
                                      tryon_verdict *v, tryon_err *err) {
  const char *end = NULL;
  cJSON *root = NULL;
  const cJSON *data;
  int code = 0;
  bool have_code;
  tryon_status st = TRYON_OK;

  if (out == NULL || v == NULL || (body == NULL && len != 0)) {
    return tryon_err_set(err, TRYON_E_INVALID, "kie callback: missing argument");
  }
  memset(out, 0, sizeof *out);
  memset(v, 0, sizeof *v);
  if (body == NULL || len == 0) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "the callback is empty");
    st = tryon_err_set(err, TRYON_E_INVALID, "kie callback: empty body");
    goto out;
  }
  root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (root != NULL) {
    while (end < body + len && isspace((unsigned char)*end)) {
      end++;
    }
  }
  if (root == NULL || end != body + len || !cJSON_IsObject(root)) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "the callback is not a JSON object");
    st = tryon_err_set(err, TRYON_E_INVALID, "kie callback: the body is not a JSON object");
    goto out;
  }
  data = cJSON_GetObjectItemCaseSensitive(root, "data");
  if (!cJSON_IsObject(data)) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "the callback has no data object");
    st = tryon_err_set(err, TRYON_E_INVALID, "kie callback: no data object");
    goto out;
  }

  have_code = tryon__kie_int_field(root, "code", &code);
  if (!have_code || code == 200) {
    (void)tryon__kie_task_from_data(data, false, NULL, out, v);
  } else if (code == 501) {
    const char *msg = tryon__kie_envelope_msg(root);
    (void)tryon__kie_task_from_data(data, true, msg, out, v);
  } else {
    /* Another code: its verdict (e.g. a RETRY), and the task id to poll. */
    (void)tryon__kie_envelope(root, v);
    (void)tryon__kie_task_id_copy(data, out->task_id);
  }
  if (have_code) {
    v->provider_code = code;
  }
  /* The id may sit beside data rather than in it. */
  if (out->task_id[0] == '\0' && !tryon__kie_task_id_copy(root, out->task_id)) {
    tryon_verdict_set(v, TRYON_VERDICT_FINAL, "bad_answer", "the callback has no task id");
    st = tryon_err_set(err, TRYON_E_INVALID, "kie callback: no usable taskId or task_id");
    goto out;
  }

out:
  cJSON_Delete(root);
  return st;
}
