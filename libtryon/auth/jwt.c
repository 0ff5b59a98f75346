/*
 * jwt.c - session tokens: HS256 JSON Web Tokens (RFC 7519) that we issue and accept.
 *
 * Only what we issue is accepted: alg exactly "HS256", strict unpadded base64url,
 * JSON objects without repeated names, sub/iat/exp/jti all present. The header is read
 * before the signature is checked (it names the algorithm) but the claims only after.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <tryon/auth.h>

#include "auth/auth_internal.h"

#define JWT_HEADER_JSON "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define JWT_VERIFY_MAX (TRYON_JWT_MAX * 4)
/* Decoded parts of a token at the verify limit fit in this (3 bytes per 4 characters),
 * with a NUL. */
#define JWT_PART_MAX (JWT_VERIFY_MAX / 4 * 3 + 1)
#define JWT_CLAIMS_JSON_MAX 256
#define HS256_LEN 32

static tryon_status hs256(const char *secret, size_t secret_len, const char *msg, size_t len,
                          unsigned char mac[HS256_LEN], tryon_err *err) {
  unsigned int mac_len = 0;

  if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, len, mac, &mac_len) ==
          NULL ||
      mac_len != HS256_LEN) {
    ERR_clear_error();
    return tryon_err_set(err, TRYON_E_INTERNAL, "HMAC-SHA256 failed");
  }
  return TRYON_OK;
}

static bool secret_ok(const char *secret, size_t secret_len) {
  return secret != NULL && secret_len >= TRYON_JWT_SECRET_MIN && secret_len <= INT_MAX;
}

tryon_status tryon_jwt_issue(const char *secret, size_t secret_len, int64_t sub, int64_t ttl_s,
                             const tryon_clock *clock, char *out, size_t cap,
                             tryon_jwt_claims *claims, tryon_err *err) {
  tryon_status st = TRYON_OK;
  cJSON *doc = NULL;
  tryon_jwt_claims c;
  tryon_uuid jti;
  char sub_text[24];
  char json[JWT_CLAIMS_JSON_MAX];
  char token[TRYON_JWT_MAX];
  unsigned char mac[HS256_LEN];
  size_t len = 0;
  size_t n = 0;

  memset(&c, 0, sizeof c);
  if (claims != NULL) {
    memset(claims, 0, sizeof *claims);
  }
  if (out != NULL && cap > 0) {
    out[0] = '\0';
  }
  if (!secret_ok(secret, secret_len)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "the session secret must be at least %d bytes",
                       TRYON_JWT_SECRET_MIN);
    goto out;
  }
  if (out == NULL || sub <= 0 || ttl_s <= 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_jwt_issue");
    goto out;
  }
  c.sub = sub;
  c.iat = tryon__now_s(clock);
  c.exp = tryon__sat_add(c.iat, ttl_s);
  /* Times go out as JSON numbers, which stay exact only up to 2^53. */
  if (c.iat < 0 || c.exp > TRYON__JSON_INT_MAX) {
    st = tryon_err_set(err, TRYON_E_INVALID, "session token lifetime out of range");
    goto out;
  }
  if (tryon_uuid_v4(&jti) != TRYON_OK) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot draw a random token id");
    goto out;
  }
  tryon_uuid_format(&jti, c.jti);
  snprintf(sub_text, sizeof sub_text, "%" PRId64, sub);

  doc = cJSON_CreateObject();
  if (doc == NULL || cJSON_AddStringToObject(doc, "sub", sub_text) == NULL ||
      cJSON_AddNumberToObject(doc, "iat", (double)c.iat) == NULL ||
      cJSON_AddNumberToObject(doc, "exp", (double)c.exp) == NULL ||
      cJSON_AddStringToObject(doc, "jti", c.jti) == NULL ||
      !cJSON_PrintPreallocated(doc, json, (int)sizeof json, 0)) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "cannot build the session token claims");
    goto out;
  }

  /* header "." claims, signed, then "." signature; every piece fits TRYON_JWT_MAX. */
  len = tryon__b64url_encode(JWT_HEADER_JSON, strlen(JWT_HEADER_JSON), token, sizeof token);
  token[len++] = '.';
  n = tryon__b64url_encode(json, strlen(json), token + len, sizeof token - len);
  if (n == 0) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "session token claims too long");
    goto out;
  }
  len += n;
  st = hs256(secret, secret_len, token, len, mac, err);
  if (st != TRYON_OK) {
    goto out;
  }
  token[len++] = '.';
  n = tryon__b64url_encode(mac, sizeof mac, token + len, sizeof token - len);
  if (n == 0) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "session token too long");
    goto out;
  }
  len += n;
  if (len + 1 > cap) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE, "session token needs %zu bytes, %zu given", len + 1,
                       cap);
    goto out;
  }
  memcpy(out, token, len + 1);
  if (claims != NULL) {
    *claims = c;
  }
out:
  OPENSSL_cleanse(mac, sizeof mac);
  cJSON_Delete(doc);
  return st;
}

/* Parses decoded text as a JSON object with distinct member names; NULL otherwise. */
static cJSON *parse_object(const unsigned char *text, size_t len) {
  const char *end = NULL;
  cJSON *doc = NULL;

  /* text[len] is a NUL the caller put there; one inside would end the parse early. */
  if (memchr(text, '\0', len) != NULL) {
    return NULL;
  }
  doc = cJSON_ParseWithLengthOpts((const char *)text, len + 1, &end, 1);
  if (doc != NULL && (!cJSON_IsObject(doc) || tryon__json_has_duplicate_keys(doc))) {
    cJSON_Delete(doc);
    doc = NULL;
  }
  return doc;
}

static tryon_status check_header(const cJSON *hdr, tryon_err *err) {
  const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
  const cJSON *typ = cJSON_GetObjectItemCaseSensitive(hdr, "typ");

  /* Exactly the one algorithm we sign with: "none", other HMAC sizes and public-key
   * algorithms (whose "key" an attacker would pick) are all refused here. */
  if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0) {
    return tryon_err_set(err, TRYON_E_TOKEN_BAD_ALG, "session token algorithm is not HS256");
  }
  if (typ != NULL && (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0)) {
    return tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token type is not JWT");
  }
  /* RFC 7515 4.1.11: extensions listed in "crit" must be understood; we know none. */
  if (cJSON_GetObjectItemCaseSensitive(hdr, "crit") != NULL) {
    return tryon_err_set(err, TRYON_E_TOKEN_MALFORMED,
                         "session token header has critical extensions");
  }
  return TRYON_OK;
}

static tryon_status read_claims(const cJSON *doc, tryon_jwt_claims *c, tryon_err *err) {
  const cJSON *sub = cJSON_GetObjectItemCaseSensitive(doc, "sub");
  const cJSON *jti = cJSON_GetObjectItemCaseSensitive(doc, "jti");
  tryon_uuid u;

  if (!cJSON_IsString(sub) ||
      !tryon__dec_positive_i64(sub->valuestring, strlen(sub->valuestring), &c->sub)) {
    return tryon_err_set(err, TRYON_E_TOKEN_MALFORMED,
                         "session token sub is not a positive decimal string");
  }
  if (!tryon__json_int(cJSON_GetObjectItemCaseSensitive(doc, "iat"), &c->iat) ||
      !tryon__json_int(cJSON_GetObjectItemCaseSensitive(doc, "exp"), &c->exp)) {
    return tryon_err_set(err, TRYON_E_TOKEN_MALFORMED,
                         "session token iat and exp must be integers");
  }
  if (!cJSON_IsString(jti) || strlen(jti->valuestring) != TRYON_UUID_STR_LEN - 1 ||
      tryon_uuid_parse(jti->valuestring, &u) != TRYON_OK) {
    return tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token jti is not a UUID");
  }
  memcpy(c->jti, jti->valuestring, TRYON_UUID_STR_LEN);
  return TRYON_OK;
}

tryon_status tryon_jwt_verify(const char *secret, size_t secret_len, const char *token, size_t len,
                              int64_t leeway_s, const tryon_clock *clock, tryon_jwt_claims *claims,
                              tryon_err *err) {
  tryon_status st = TRYON_OK;
  cJSON *hdr = NULL;
  cJSON *body = NULL;
  tryon_jwt_claims c;
  const char *dot1 = NULL;
  const char *dot2 = NULL;
  unsigned char hdr_text[JWT_PART_MAX];
  unsigned char body_text[JWT_PART_MAX];
  unsigned char sig[JWT_PART_MAX];
  unsigned char mac[HS256_LEN];
  size_t hdr_len = 0;
  size_t body_len = 0;
  size_t sig_len = 0;
  int64_t now = 0;

  memset(&c, 0, sizeof c);
  memset(mac, 0, sizeof mac);
  if (claims != NULL) {
    memset(claims, 0, sizeof *claims);
  }
  if (!secret_ok(secret, secret_len)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "the session secret must be at least %d bytes",
                       TRYON_JWT_SECRET_MIN);
    goto out;
  }
  if (leeway_s < 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "the leeway must not be negative");
    goto out;
  }
  if (token == NULL || len == 0) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MISSING, "no session token");
    goto out;
  }
  if (len > JWT_VERIFY_MAX) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token is longer than %d bytes",
                       JWT_VERIFY_MAX);
    goto out;
  }
  dot1 = memchr(token, '.', len);
  dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
  if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token does not have three parts");
    goto out;
  }
  /* Every part is decoded before anything is believed, so bad text anywhere is
   * "malformed" rather than whichever later check it happens to trip. */
  if (!tryon__b64url_decode(token, (size_t)(dot1 - token), hdr_text, sizeof hdr_text - 1,
                            &hdr_len) ||
      !tryon__b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), body_text, sizeof body_text - 1,
                            &body_len) ||
      !tryon__b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), sig, sizeof sig,
                            &sig_len)) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token is not unpadded base64url");
    goto out;
  }
  hdr_text[hdr_len] = '\0';
  body_text[body_len] = '\0';
  hdr = parse_object(hdr_text, hdr_len);
  if (hdr == NULL) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token header is not a JSON object");
    goto out;
  }
  st = check_header(hdr, err);
  if (st != TRYON_OK) {
    goto out;
  }
  st = hs256(secret, secret_len, token, (size_t)(dot2 - token), mac, err);
  if (st != TRYON_OK) {
    goto out;
  }
  if (sig_len != HS256_LEN || CRYPTO_memcmp(mac, sig, HS256_LEN) != 0) {
    st = tryon_err_set(err, TRYON_E_TOKEN_BAD_SIGNATURE, "session token signature is invalid");
    goto out;
  }
  body = parse_object(body_text, body_len);
  if (body == NULL) {
    st = tryon_err_set(err, TRYON_E_TOKEN_MALFORMED, "session token claims are not a JSON object");
    goto out;
  }
  st = read_claims(body, &c, err);
  if (st != TRYON_OK) {
    goto out;
  }
  now = tryon__now_s(clock);
  if (now > tryon__sat_add(c.exp, leeway_s)) {
    st = tryon_err_set(err, TRYON_E_TOKEN_EXPIRED, "session token has expired");
    goto out;
  }
  if (c.iat > tryon__sat_add(now, leeway_s)) {
    st = tryon_err_set(err, TRYON_E_TOKEN_NOT_YET_VALID, "session token is issued in the future");
    goto out;
  }
  if (claims != NULL) {
    *claims = c;
  }
out:
  OPENSSL_cleanse(mac, sizeof mac);
  cJSON_Delete(body);
  cJSON_Delete(hdr);
  return st;
}
