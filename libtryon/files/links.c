/*
 * Signed links to stored images.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/files.h>

void tryon_link_key_derive(const char *secret, size_t secret_len, tryon_link_key *out) {
  static const char label[] = "tryon/file-links/v1";
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)label, sizeof label - 1,
       out->k, &n);
}

static void mac(const tryon_link_key *key, const char *id, bool thumb, int64_t exp,
                unsigned char out[32]) {
  char msg[128];
  unsigned int n = 0;
  int len = snprintf(msg, sizeof msg, "v1\n%s\n%s\n%" PRId64, id, thumb ? "thumb" : "full", exp);
  HMAC(EVP_sha256(), key->k, sizeof key->k, (const unsigned char *)msg, (size_t)len, out, &n);
}

tryon_status tryon_link_sign(const tryon_link_key *key, const char *id, bool thumb, int64_t exp,
                             char *out, size_t cap, tryon_err *err) {
  unsigned char sig[32];
  char hex[65];
  if (!tryon_uuid_valid(id) || exp <= 0)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid link parameters");
  mac(key, id, thumb, exp, sig);
  tryon_hex_encode(sig, sizeof sig, hex);
  int w =
      snprintf(out, cap, "/files/%s%s?exp=%" PRId64 "&sig=%s", id, thumb ? "/thumb" : "", exp, hex);
  if (w < 0 || (size_t)w >= cap)
    return tryon_err_set(err, TRYON_E_TOO_LARGE, "link does not fit");
  return TRYON_OK;
}

tryon_status tryon_link_verify(const tryon_link_key *key, const char *id, bool thumb,
                               const char *exp, const char *sig, int64_t now_s, tryon_err *err) {
  unsigned char want[32], got[32];
  int64_t e = 0;
  /* exp: plain decimal digits only, so that "+1", " 1" or "1e9" cannot alias a value. */
  bool ok = tryon_uuid_valid(id) && exp != NULL && sig != NULL && exp[0] != '\0' &&
            strlen(exp) <= 18 && strspn(exp, "0123456789") == strlen(exp) && exp[0] != '0';
  if (ok) {
    e = strtoll(exp, NULL, 10);
    ok = tryon_hex_decode(sig, strlen(sig), got, sizeof got);
  }
  if (ok) {
    mac(key, id, thumb, e, want);
    ok = CRYPTO_memcmp(want, got, sizeof want) == 0;
  }
  if (ok && e < now_s)
    ok = false;
  return ok ? TRYON_OK : tryon_err_set(err, TRYON_E_FORBIDDEN, "this link is invalid or expired");
}
