/*
 * test_auth.c - unit tests of libtryon/auth: Telegram initData (HMAC and Ed25519) and
 * session tokens (HS256 JWT). Real-world vectors come from
 * tests/data/telegram/initdata_vectors.json; tokens for the negative JWT cases are
 * built here with OpenSSL directly, so only the one property under test is wrong.
 * Run: ctest --test-dir build-sanitize -R test_auth
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <tryon/auth.h>

#include "auth/auth_internal.h"
#include "testsupport.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A bot token and a JWT secret of our own for the cases we sign here. */
#define TEST_BOT_TOKEN "123456789:AAtest-token-for-libtryon-unit-tests"
#define TEST_SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define T0 INT64_C(1733000000) /* a fixed "now" for signed cases, Unix seconds */

static cJSON *vectors; /* tests/data/telegram/initdata_vectors.json, loaded once */

/* ==================================================================== helpers */

static int load_vectors(void **state) {
  char *path = tryon_test_path("tests/data/telegram/initdata_vectors.json");
  FILE *f = fopen(path, "rb");
  tryon_buf text;
  char chunk[4096];
  size_t got;
  const char *end = NULL;

  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    free(path);
    return -1;
  }
  free(path);
  tryon_buf_init(&text, 1 << 20);
  while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (tryon_buf_append(&text, chunk, got) != TRYON_OK) {
      break;
    }
  }
  fclose(f);
  vectors = cJSON_ParseWithLengthOpts(text.data, text.len + 1, &end, 1);
  tryon_buf_release(&text);
  return vectors != NULL ? 0 : -1;
}

static int free_vectors(void **state) {
  cJSON_Delete(vectors);
  vectors = NULL;
  return 0;
}

static const char *vstr(const cJSON *v, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(v, name);
  if (!cJSON_IsString(item)) {
    fail_msg("vector field %s is missing", name);
  }
  return item->valuestring;
}

static const cJSON *vector_named(const char *list, const char *name) {
  const cJSON *v;
  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(vectors, list)) {
    if (strcmp(vstr(v, "name"), name) == 0) {
      return v;
    }
  }
  fail_msg("no vector %s/%s", list, name);
  return NULL;
}

/* The value of `key` in a raw query string (not decoded), into out. */
static void raw_value(const char *qs, const char *key, char *out, size_t cap) {
  size_t klen = strlen(key);
  const char *p = qs;

  out[0] = '\0';
  while (p != NULL && *p != '\0') {
    const char *amp = strchr(p, '&');
    size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
    if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
      snprintf(out, cap, "%.*s", (int)(n - klen - 1), p + klen + 1);
      return;
    }
    p = amp != NULL ? amp + 1 : NULL;
  }
}

static int64_t raw_auth_date(const char *qs) {
  char v[32];
  raw_value(qs, "auth_date", v, sizeof v);
  return strtoll(v, NULL, 10);
}

/* A failure must say which check failed without quoting what was checked. */
static void assert_no_leak(const tryon_err *err, const char *const *secrets, size_t n) {
  assert_true(err->message[0] != '\0');
  for (size_t i = 0; i < n; i++) {
    if (secrets[i] != NULL && strlen(secrets[i]) >= 8 && strstr(err->message, secrets[i])) {
      fail_msg("error message \"%s\" quotes a secret", err->message);
    }
  }
}

/* Checks a refused initData: the status, and that neither the input, its hash or
 * signature, nor the bot token appear in the message. */
static void assert_initdata_refused(tryon_status st, tryon_status want, const tryon_err *err,
                                    const char *input, const char *bot_token) {
  char hash[512];
  char sig[512];
  const char *secrets[] = {input, hash, sig, bot_token};

  if (st != want) {
    fail_msg("status %s (%s), want %s", tryon_status_name(st), err->message,
             tryon_status_name(want));
  }
  assert_int_equal(err->status, want);
  raw_value(input != NULL ? input : "", "hash", hash, sizeof hash);
  raw_value(input != NULL ? input : "", "signature", sig, sizeof sig);
  assert_no_leak(err, secrets, ARRAY_LEN(secrets));
}

static tryon_initdata_options hmac_opts(const char *bot_token, int64_t max_age_s,
                                        const tryon_fixed_clock *fc) {
  tryon_initdata_options o;
  memset(&o, 0, sizeof o);
  o.method = TRYON_INITDATA_HMAC;
  o.bot_token = bot_token;
  o.max_age_s = max_age_s;
  o.max_future_s = 60;
  o.clock = fc != NULL ? &fc->clock : NULL;
  return o;
}

static tryon_initdata_options ed_opts(int64_t bot_id, bool test_env, const tryon_fixed_clock *fc) {
  tryon_initdata_options o;
  memset(&o, 0, sizeof o);
  o.method = TRYON_INITDATA_ED25519;
  o.bot_id = bot_id;
  o.test_env = test_env;
  o.max_age_s = 86400;
  o.max_future_s = 60;
  o.clock = fc != NULL ? &fc->clock : NULL;
  return o;
}

/* Verifies with the HMAC method, TEST_BOT_TOKEN and "now" = now_s. */
static tryon_status verify_at(const char *data, int64_t now_s, int64_t max_age_s,
                              tryon_initdata *out, tryon_err *err) {
  tryon_fixed_clock fc;
  tryon_initdata_options o;

  tryon_fixed_clock_init(&fc, now_s * 1000);
  o = hmac_opts(TEST_BOT_TOKEN, max_age_s, &fc);
  tryon_err_clear(err);
  return tryon_initdata_verify(data, strlen(data), &o, out, err);
}

/* application/x-www-form-urlencoded text of `in` (unreserved bytes kept, the rest %XX). */
static void form_encode(const char *in, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;

  for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
    assert_true(o + 4 < cap);
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = '\0';
}

/* "auth_date=<auth_date>&query_id=Q&user=<user_json encoded>", signed with
 * TEST_BOT_TOKEN, into out. */
static void signed_with_user(const char *user_json, int64_t auth_date, char *out, size_t cap) {
  char enc[8192];
  char fields[9000];
  tryon_err err;

  form_encode(user_json, enc, sizeof enc);
  snprintf(fields, sizeof fields, "auth_date=%" PRId64 "&query_id=Q&user=%s", auth_date, enc);
  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_sign(fields, TEST_BOT_TOKEN, out, cap, &err), TRYON_OK);
}

static void sign_ok(const char *fields, char *out, size_t cap) {
  tryon_err err;
  tryon_err_clear(&err);
  if (tryon_initdata_sign(fields, TEST_BOT_TOKEN, out, cap, &err) != TRYON_OK) {
    fail_msg("sign failed: %s", err.message);
  }
}

/* base64url without padding, made with OpenSSL's encoder rather than the code under test. */
static void b64url_ref(const void *in, size_t n, char *out, size_t cap) {
  unsigned char tmp[4096];
  int len;

  assert_true(n <= 3000 && cap > n * 4 / 3 + 4);
  len = EVP_EncodeBlock(tmp, in, (int)n);
  while (len > 0 && tmp[len - 1] == '=') {
    len--;
  }
  for (int i = 0; i < len; i++) {
    out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
  }
  out[len] = '\0';
}

/* A token of our own making: header and claims JSON as given, signed with HS256 under
 * `secret` (so a case can be wrong in exactly one respect). */
static void craft_token(const char *header, const char *claims, const char *secret, char *out,
                        size_t cap) {
  char h[2048];
  char c[2048];
  char s[64];
  unsigned char mac[32];
  unsigned int mac_len = 0;
  char signing_input[4200];

  b64url_ref(header, strlen(header), h, sizeof h);
  b64url_ref(claims, strlen(claims), c, sizeof c);
  snprintf(signing_input, sizeof signing_input, "%s.%s", h, c);
  assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                       (const unsigned char *)signing_input, strlen(signing_input), mac, &mac_len));
  b64url_ref(mac, mac_len, s, sizeof s);
  snprintf(out, cap, "%s.%s", signing_input, s);
}

static void valid_claims(char *out, size_t cap) {
  snprintf(out, cap,
           "{\"sub\":\"42\",\"iat\":%" PRId64 ",\"exp\":%" PRId64
           ",\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
           T0, T0 + 3600);
}

static tryon_status jwt_verify_at(const char *token, int64_t now_s, int64_t leeway,
                                  tryon_jwt_claims *claims, tryon_err *err) {
  tryon_fixed_clock fc;
  tryon_fixed_clock_init(&fc, now_s * 1000);
  tryon_err_clear(err);
  return tryon_jwt_verify(TEST_SECRET, strlen(TEST_SECRET), token, strlen(token), leeway, &fc.clock,
                          claims, err);
}

/* Checks a refused token: the status, and neither token, its signature part nor the
 * secret in the message. */
static void assert_token_refused(tryon_status st, tryon_status want, const tryon_err *err,
                                 const char *token) {
  const char *sig = token != NULL ? strrchr(token, '.') : NULL;
  const char *secrets[] = {token, sig != NULL ? sig + 1 : NULL, TEST_SECRET};

  if (st != want) {
    fail_msg("status %s (%s), want %s", tryon_status_name(st), err->message,
             tryon_status_name(want));
  }
  assert_int_equal(err->status, want);
  assert_no_leak(err, secrets, ARRAY_LEN(secrets));
}

/* ============================================================ initData vectors */

static void test_auth__initdata_hmac_vectors(void **state) {
  const cJSON *v;
  int count = 0;

  cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(vectors, "hmac")) {
    const char *name = vstr(v, "name");
    const char *data = vstr(v, "init_data");
    const char *token = vstr(v, "bot_token");
    bool valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "valid"));
    bool age_off = strstr(vstr(v, "note"), "age check is off") != NULL;
    tryon_fixed_clock fc;
    tryon_initdata_options o;
    tryon_initdata out;
    tryon_err err;
    tryon_status st;

    /* Vectors whose note says so are checked with the age check off; the others at a
     * clock one second after their auth_date with the usual limit. */
    tryon_fixed_clock_init(&fc, (raw_auth_date(data) + 1) * 1000);
    o = hmac_opts(token, age_off ? 0 : 86400, age_off ? NULL : &fc);
    tryon_err_clear(&err);
    st = tryon_initdata_verify(data, strlen(data), &o, &out, &err);
    if (valid) {
      if (st != TRYON_OK) {
        fail_msg("vector %s: %s (%s)", name, tryon_status_name(st), err.message);
      }
      assert_int_equal(out.auth_date, raw_auth_date(data));
      assert_true(out.has_user);
    } else {
      if (st != TRYON_E_INITDATA_BAD_HASH && st != TRYON_E_INITDATA_MISSING_HASH) {
        fail_msg("vector %s: %s, want a hash refusal", name, tryon_status_name(st));
      }
      assert_initdata_refused(st, st, &err, data, token);
      assert_false(out.has_user);
    }
    if (valid && age_off) {
      /* The same data today is far too old. */
      o = hmac_opts(token, 86400, NULL);
      st = tryon_initdata_verify(data, strlen(data), &o, NULL, &err);
      assert_initdata_refused(st, TRYON_E_INITDATA_EXPIRED, &err, data, token);
    }
    count++;
  }
  assert_true(count >= 6);
}

/* The canonical vector's published intermediate values: our reading of the algorithm
 * (secret key, data-check string) matches theirs. */
static void test_auth__initdata_canonical_intermediates(void **state) {
  const cJSON *v = vector_named("hmac", "canonical");
  const char *token = vstr(v, "bot_token");
  const char *dcs = vstr(v, "data_check_string");
  unsigned char secret[32];
  unsigned char mac[32];
  unsigned int n = 0;
  char hex[65];
  char want_hash[128];

  HMAC(EVP_sha256(), "WebAppData", 10, (const unsigned char *)token, strlen(token), secret, &n);
  tryon_hex_encode(secret, sizeof secret, hex);
  assert_string_equal(hex, vstr(v, "secret_key_hex"));
  HMAC(EVP_sha256(), secret, 32, (const unsigned char *)dcs, strlen(dcs), mac, &n);
  tryon_hex_encode(mac, sizeof mac, hex);
  raw_value(vstr(v, "init_data"), "hash", want_hash, sizeof want_hash);
  assert_string_equal(hex, want_hash);
}

/* tryon_initdata_sign reproduces Telegram's hash: the canonical vector minus its hash,
 * signed again, is the vector. */
static void test_auth__initdata_sign_reproduces_vector(void **state) {
  const cJSON *v = vector_named("hmac", "canonical");
  const char *data = vstr(v, "init_data");
  char fields[2048];
  char out[2048];
  tryon_err err;

  snprintf(fields, sizeof fields, "%.*s", (int)(strstr(data, "&hash=") - data), data);
  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_sign(fields, vstr(v, "bot_token"), out, sizeof out, &err),
                   TRYON_OK);
  assert_string_equal(out, data);
}

/* With HMAC only `hash` is left out: a `signature` field is hashed like any other. The
 * expected hash is computed here with OpenSSL, independently of the signer. */
static void test_auth__initdata_hmac_keeps_signature_field(void **state) {
  const char *dcs = "auth_date=1733000000\nquery_id=Q\nsignature=c2ln";
  unsigned char secret[32];
  unsigned char mac[32];
  unsigned int n = 0;
  char hex[65];
  char data[512];
  tryon_err err;

  HMAC(EVP_sha256(), "WebAppData", 10, (const unsigned char *)TEST_BOT_TOKEN,
       strlen(TEST_BOT_TOKEN), secret, &n);
  HMAC(EVP_sha256(), secret, 32, (const unsigned char *)dcs, strlen(dcs), mac, &n);
  tryon_hex_encode(mac, sizeof mac, hex);
  snprintf(data, sizeof data, "signature=c2ln&auth_date=1733000000&hash=%s&query_id=Q", hex);
  assert_int_equal(verify_at(data, T0, 86400, NULL, &err), TRYON_OK);
}

static void test_auth__initdata_canonical_fields(void **state) {
  const cJSON *v = vector_named("hmac", "canonical");
  const char *data = vstr(v, "init_data");
  tryon_initdata_options o = hmac_opts(vstr(v, "bot_token"), 0, NULL);
  tryon_initdata out;
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_verify(data, strlen(data), &o, &out, &err), TRYON_OK);
  assert_true(out.has_user);
  assert_int_equal(out.user.id, 279058397);
  assert_string_equal(out.user.first_name, "Vladislav");
  assert_string_equal(out.user.last_name, "Kibenko");
  assert_string_equal(out.user.username, "vdkfrost");
  assert_string_equal(out.user.language_code, "ru");
  assert_string_equal(out.user.photo_url, "");
  assert_true(out.user.is_premium);
  assert_false(out.user.allows_write_to_pm);
  assert_int_equal(out.auth_date, 1662771648);
  assert_string_equal(out.query_id, "AAHdF6IQAAAAAN0XohDhrOrc");
  assert_string_equal(out.chat_type, "");
  assert_string_equal(out.start_param, "");

  /* The hash may come in upper case too. */
  {
    char upper[2048];
    snprintf(upper, sizeof upper, "%s", data);
    for (char *p = strstr(upper, "hash=") + 5; *p != '\0'; p++) {
      if (*p >= 'a' && *p <= 'f') {
        *p = (char)(*p - 'a' + 'A');
      }
    }
    assert_int_equal(tryon_initdata_verify(upper, strlen(upper), &o, NULL, &err), TRYON_OK);
  }
}

/* '+' in the user JSON is a space, and UTF-16 escapes of a flag emoji become UTF-8. */
static void test_auth__initdata_plus_vector_fields(void **state) {
  const cJSON *v = vector_named("hmac", "aiogram-plus-as-space");
  const char *data = vstr(v, "init_data");
  tryon_initdata_options o = hmac_opts(vstr(v, "bot_token"), 0, NULL);
  tryon_initdata out;
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_verify(data, strlen(data), &o, &out, &err), TRYON_OK);
  /* This fixture sends id and the flags as strings; see CLAUDE.md. */
  assert_int_equal(out.user.id, 123456789);
  assert_string_equal(out.user.first_name, "PlaceholderFirstName");
  assert_string_equal(out.user.last_name, "PlaceholderLastName \xF0\x9F\x87\xBA\xF0\x9F\x87\xA6");
  assert_string_equal(out.user.username, "Latand");
  assert_true(out.user.is_premium);
  assert_true(out.user.allows_write_to_pm);
  assert_string_equal(out.query_id, "test");
}

static void test_auth__initdata_ed25519_production_vector(void **state) {
  const cJSON *v = vector_named("ed25519", "telegram-production-signed");
  const char *data = vstr(v, "init_data");
  int64_t bot_id = (int64_t)cJSON_GetObjectItemCaseSensitive(v, "bot_id")->valuedouble;
  tryon_fixed_clock fc;
  tryon_initdata_options o;
  tryon_initdata out;
  tryon_err err;
  tryon_status st;

  assert_int_equal(bot_id, INT64_C(7342037359));
  tryon_fixed_clock_init(&fc, raw_auth_date(data) * 1000);
  o = ed_opts(bot_id, false, &fc);
  tryon_err_clear(&err);
  st = tryon_initdata_verify(data, strlen(data), &o, &out, &err);
  if (st != TRYON_OK) {
    fail_msg("%s: %s", tryon_status_name(st), err.message);
  }
  /* The user JSON was signed with "\/" escapes: verifying at all shows they were hashed
   * as sent; the struct gets the unescaped text. */
  assert_int_equal(out.user.id, 279058397);
  assert_string_equal(out.user.first_name, "Vladislav + - ? /");
  assert_string_equal(out.user.photo_url, "https://t.me/i/userpic/320/"
                                          "4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg");
  assert_true(out.user.allows_write_to_pm);
  assert_string_equal(out.chat_type, "private");
  assert_string_equal(out.chat_instance, "8134722200314281151");
  assert_int_equal(out.auth_date, 1733584787);

  /* Signed for production: the test-environment key and another bot refuse it. */
  o = ed_opts(bot_id, true, &fc);
  st = tryon_initdata_verify(data, strlen(data), &o, &out, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_BAD_SIGNATURE, &err, data, NULL);
  assert_false(out.has_user);
  o = ed_opts(bot_id + 1, false, &fc);
  st = tryon_initdata_verify(data, strlen(data), &o, &out, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_BAD_SIGNATURE, &err, data, NULL);

  /* The same JSON re-serialised with plain "/" is different bytes: refused. */
  {
    char plain[4096];
    size_t o2 = 0;
    for (const char *p = data; *p != '\0'; p++) {
      if (strncmp(p, "%5C%2F", 6) == 0) {
        p += 5;
        memcpy(plain + o2, "%2F", 3);
        o2 += 3;
      } else {
        plain[o2++] = *p;
      }
    }
    plain[o2] = '\0';
    o = ed_opts(bot_id, false, &fc);
    st = tryon_initdata_verify(plain, strlen(plain), &o, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_BAD_SIGNATURE, &err, plain, NULL);
  }
}

/* Ed25519 leaves `hash` out of the signed message: removing it changes nothing. */
static void test_auth__initdata_ed25519_ignores_hash(void **state) {
  const char *data = vstr(vector_named("ed25519", "telegram-production-signed"), "init_data");
  char copy[4096];
  char *h;
  char *amp;
  tryon_fixed_clock fc;
  tryon_initdata_options o;
  tryon_err err;

  snprintf(copy, sizeof copy, "%s", data);
  h = strstr(copy, "&hash=");
  amp = strchr(h + 1, '&');
  memmove(h, amp, strlen(amp) + 1);
  assert_null(strstr(copy, "hash="));
  tryon_fixed_clock_init(&fc, raw_auth_date(data) * 1000);
  o = ed_opts(7342037359, false, &fc);
  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_verify(copy, strlen(copy), &o, NULL, &err), TRYON_OK);
}

static void test_auth__initdata_ed25519_signature_defects(void **state) {
  const char *data = vstr(vector_named("ed25519", "telegram-production-signed"), "init_data");
  const char *sig = strstr(data, "signature=") + strlen("signature=");
  size_t prefix = (size_t)(sig - data);
  const struct {
    const char *name;
    int cut;            /* characters removed from the end of the signature */
    const char *suffix; /* then appended */
    tryon_status want;
  } cases[] = {
      {"one character short", 1, "", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"four characters short (63 bytes)", 4, "", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"empty", 86, "", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"padded", 0, "%3D%3D", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"standard alphabet", 1, "%2B", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"non-canonical last character", 1, "R", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"one bit flipped", 2, "BQ", TRYON_E_INITDATA_BAD_SIGNATURE},
      {"too long", 0, "AAAA", TRYON_E_INITDATA_BAD_SIGNATURE},
  };
  tryon_fixed_clock fc;
  tryon_initdata_options o;

  assert_int_equal(strlen(sig), 86);
  tryon_fixed_clock_init(&fc, raw_auth_date(data) * 1000);
  o = ed_opts(7342037359, false, &fc);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char buf[4096];
    tryon_err err;
    tryon_status st;
    snprintf(buf, sizeof buf, "%.*s%s", (int)(prefix + 86 - (size_t)cases[i].cut), data,
             cases[i].suffix);
    tryon_err_clear(&err);
    st = tryon_initdata_verify(buf, strlen(buf), &o, NULL, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].name, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    assert_initdata_refused(st, cases[i].want, &err, buf, NULL);
  }
  /* No signature at all. */
  {
    char buf[4096];
    tryon_err err;
    tryon_status st;
    snprintf(buf, sizeof buf, "%.*s", (int)(prefix - strlen("&signature=")), data);
    tryon_err_clear(&err);
    st = tryon_initdata_verify(buf, strlen(buf), &o, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_MISSING_FIELD, &err, buf, NULL);
  }
}

/* A vector signed by a throw-away key, checked through the internal entry point that
 * takes the key: the message layout ("<bot_id>:WebAppData\n" + fields) is right. */
static void test_auth__initdata_ed25519_throwaway_key_vector(void **state) {
  const cJSON *v = vector_named("ed25519", "aiogram-throwaway-key");
  const char *data = vstr(v, "init_data");
  int64_t bot_id = (int64_t)cJSON_GetObjectItemCaseSensitive(v, "bot_id")->valuedouble;
  unsigned char key[32];
  tryon_fixed_clock fc;
  tryon_initdata_options o;
  tryon_initdata out;
  tryon_err err;
  tryon_status st;
  char buf[2048];
  const char *good_end = "-jU_Cw";

  assert_true(tryon_hex_decode(vstr(v, "public_key_hex"), 64, key, sizeof key));
  tryon_fixed_clock_init(&fc, raw_auth_date(data) * 1000);
  o = ed_opts(bot_id, false, &fc);
  tryon_err_clear(&err);
  st = tryon__initdata_verify_with_key(data, strlen(data), &o, key, &out, &err);
  if (st != TRYON_OK) {
    fail_msg("%s: %s", tryon_status_name(st), err.message);
  }
  assert_int_equal(out.user.id, 42);
  assert_string_equal(out.user.first_name, "Test");
  assert_string_equal(out.query_id, "test");

  /* Telegram's keys did not sign it. */
  st = tryon_initdata_verify(data, strlen(data), &o, NULL, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_BAD_SIGNATURE, &err, data, NULL);

  /* The note's altered ending, and no signature. */
  assert_int_equal(strcmp(data + strlen(data) - strlen(good_end), good_end), 0);
  snprintf(buf, sizeof buf, "%.*s-j1U_w", (int)(strlen(data) - strlen(good_end)), data);
  st = tryon__initdata_verify_with_key(buf, strlen(buf), &o, key, NULL, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_BAD_SIGNATURE, &err, buf, NULL);
  snprintf(buf, sizeof buf, "%.*s", (int)(strstr(data, "&signature=") - data), data);
  st = tryon__initdata_verify_with_key(buf, strlen(buf), &o, key, NULL, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_MISSING_FIELD, &err, buf, NULL);
}

/* Data we sign with the throw-away private key: Ed25519 runs the same date and user
 * checks after the signature. */
static void test_auth__initdata_ed25519_checks_after_signature(void **state) {
  const cJSON *v = vector_named("ed25519", "aiogram-throwaway-key");
  unsigned char pub[32];
  unsigned char priv[32];
  const struct {
    const char *dcs;
    const char *qs;
    tryon_status want;
  } cases[] = {
      {"auth_date=1733000000\nuser={\"id\":7}", "user=%7B%22id%22%3A7%7D&auth_date=1733000000",
       TRYON_OK},
      {"auth_date=1733000000\nuser={\"id\":7.5}", "user=%7B%22id%22%3A7.5%7D&auth_date=1733000000",
       TRYON_E_INITDATA_MALFORMED},
      {"auth_date=1732000000\nuser={\"id\":7}", "user=%7B%22id%22%3A7%7D&auth_date=1732000000",
       TRYON_E_INITDATA_EXPIRED},
      {"user={\"id\":7}", "user=%7B%22id%22%3A7%7D", TRYON_E_INITDATA_MISSING_FIELD},
  };
  tryon_fixed_clock fc;
  tryon_initdata_options o;

  assert_true(tryon_hex_decode(vstr(v, "public_key_hex"), 64, pub, sizeof pub));
  assert_true(tryon_hex_decode(vstr(v, "private_key_hex"), 64, priv, sizeof priv));
  tryon_fixed_clock_init(&fc, T0 * 1000);
  o = ed_opts(42, false, &fc);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, sizeof priv);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char msg[512];
    unsigned char sig[64];
    size_t sig_len = sizeof sig;
    char sig_text[128];
    char qs[1024];
    tryon_err err;
    tryon_status st;

    snprintf(msg, sizeof msg, "42:WebAppData\n%s", cases[i].dcs);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)msg, strlen(msg)),
                     1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    b64url_ref(sig, sig_len, sig_text, sizeof sig_text);
    snprintf(qs, sizeof qs, "%s&signature=%s", cases[i].qs, sig_text);
    tryon_err_clear(&err);
    st = tryon__initdata_verify_with_key(qs, strlen(qs), &o, pub, NULL, &err);
    if (st != cases[i].want) {
      fail_msg("case %zu: %s (%s), want %s", i, tryon_status_name(st), err.message,
               tryon_status_name(cases[i].want));
    }
    if (st != TRYON_OK) {
      assert_initdata_refused(st, cases[i].want, &err, qs, NULL);
    }
  }
}

/* ==================================================================== tampering */

/* Changes one byte of the value (or key) of each field in turn, never the hash itself:
 * every change is caught by the hash. */
static void test_auth__initdata_tamper_each_field(void **state) {
  const cJSON *v = vector_named("hmac", "canonical");
  const char *data = vstr(v, "init_data");
  const char *token = vstr(v, "bot_token");
  tryon_initdata_options o = hmac_opts(token, 0, NULL);
  size_t n = strlen(data);
  int tampered = 0;

  for (size_t start = 0; start < n;) {
    const char *amp = strchr(data + start, '&');
    size_t end = amp != NULL ? (size_t)(amp - data) : n;
    size_t eq = (size_t)(strchr(data + start, '=') - data);
    bool is_hash = strncmp(data + start, "hash=", 5) == 0;

    for (int part = 0; part < 2 && !is_hash; part++) {
      /* part 0: the first plain character of the value; part 1: of the key. */
      size_t from = part == 0 ? eq + 1 : start;
      size_t to = part == 0 ? end : eq;
      size_t at = to;
      char copy[2048];
      tryon_err err;
      tryon_status st;
      for (size_t i = from; i < to; i++) {
        if (data[i] == '%') {
          i += 2;
        } else if ((data[i] >= '0' && data[i] <= '9') || (data[i] >= 'a' && data[i] <= 'z') ||
                   (data[i] >= 'A' && data[i] <= 'Z')) {
          at = i;
          break;
        }
      }
      assert_true(at < to);
      snprintf(copy, sizeof copy, "%s", data);
      copy[at] = copy[at] == '9'   ? '0'
                 : copy[at] == 'z' ? 'a'
                 : copy[at] == 'Z' ? 'A'
                                   : copy[at] + 1;
      tryon_err_clear(&err);
      st = tryon_initdata_verify(copy, n, &o, NULL, &err);
      assert_initdata_refused(st, TRYON_E_INITDATA_BAD_HASH, &err, copy, token);
      tampered++;
    }
    start = end + 1;
  }
  assert_int_equal(tampered, 6); /* three fields, value and key each */

  /* And the hash: one digit changed. */
  {
    char copy[2048];
    tryon_err err;
    tryon_status st;
    snprintf(copy, sizeof copy, "%s", data);
    char *h = strstr(copy, "hash=") + 5 + 10;
    *h = *h == '0' ? '1' : '0';
    tryon_err_clear(&err);
    st = tryon_initdata_verify(copy, n, &o, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_BAD_HASH, &err, copy, token);
  }
}

/* Fields moved around are the same data (the check sorts them); an extra field is not. */
static void test_auth__initdata_order_free_extra_field_not(void **state) {
  char data[512];
  char moved[1024];
  char hash[128];
  tryon_err err;

  sign_ok("auth_date=1733000000&query_id=Q&chat_type=private", data, sizeof data);
  raw_value(data, "hash", hash, sizeof hash);
  snprintf(moved, sizeof moved, "hash=%s&chat_type=private&query_id=Q&auth_date=1733000000", hash);
  assert_int_equal(verify_at(moved, T0, 86400, NULL, &err), TRYON_OK);
  snprintf(moved, sizeof moved, "%s&start_param=x", data);
  assert_initdata_refused(verify_at(moved, T0, 86400, NULL, &err), TRYON_E_INITDATA_BAD_HASH, &err,
                          moved, TEST_BOT_TOKEN);
}

/* ================================================================ parse errors */

static void test_auth__initdata_duplicate_keys(void **state) {
  const char *data = vstr(vector_named("hmac", "canonical"), "init_data");
  const struct {
    const char *extra;
    const char *named; /* the field the message names, or NULL for none */
  } cases[] = {
      {"&auth_date=1662771648", "auth_date"},
      {"&hash=c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2", "hash"},
      {"&auth%5Fdate=1", "auth_date"}, /* the same key once decoded */
      {"&query_id=x", "query_id"},
      {"&x=1&x=2", NULL},
  };
  tryon_initdata_options o =
      hmac_opts(vstr(vector_named("hmac", "canonical"), "bot_token"), 0, NULL);

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char buf[4096];
    tryon_err err;
    tryon_status st;
    snprintf(buf, sizeof buf, "%s%s", data, cases[i].extra);
    tryon_err_clear(&err);
    st = tryon_initdata_verify(buf, strlen(buf), &o, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_DUPLICATE_KEY, &err, buf, o.bot_token);
    if (cases[i].named != NULL) {
      assert_non_null(strstr(err.message, cases[i].named));
    } else {
      assert_string_equal(err.message, "init data repeats a field");
    }
  }
}

static void test_auth__initdata_missing_hash(void **state) {
  const char *cases[] = {
      "",
      "auth_date=1733000000&query_id=Q",
      "auth_date=1733000000&hash_=00",
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err;
    tryon_status st = verify_at(cases[i], T0, 86400, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_MISSING_HASH, &err, cases[i], TEST_BOT_TOKEN);
  }
}

static void test_auth__initdata_hash_format(void **state) {
  char good[4096];
  char hash[128];
  const char *bad_hashes[] = {
      "",
      "0",
      "c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b",   /* 63 */
      "c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2a", /* 65 */
      "g501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2",  /* not hex */
      "c501b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2%20", /* a space */
      "0x01b71e775f74ce10e377dea85a7ea24ecd640b223ea86dfe453e0eaed2e2b2",
  };

  sign_ok("auth_date=1733000000&query_id=Q", good, sizeof good);
  raw_value(good, "hash", hash, sizeof hash);
  assert_int_equal(strlen(hash), 64);
  for (size_t i = 0; i < ARRAY_LEN(bad_hashes); i++) {
    char buf[4096];
    tryon_err err;
    tryon_status st;
    snprintf(buf, sizeof buf, "auth_date=1733000000&query_id=Q&hash=%s", bad_hashes[i]);
    st = verify_at(buf, T0, 86400, NULL, &err);
    assert_initdata_refused(st, TRYON_E_INITDATA_BAD_HASH, &err, buf, TEST_BOT_TOKEN);
  }
}

static void test_auth__initdata_malformed(void **state) {
  const char *cases[] = {
      "auth_date=1733000000&query_id=%",
      "auth_date=1733000000&query_id=%4",
      "auth_date=1733000000&query_id=%zz",
      "auth_date=1733000000&query_id=a%2",
      "auth_date=1733000000&query_id=%G0",
      "auth_date=1733000000&query_id=%%41",
      "auth_date=1733000000&q%=1",
      "auth_date=1733000000&query_id",
      "auth_date=1733000000&=v",
      "auth_date=1733000000&&query_id=Q",
      "auth_date=1733000000&query_id=Q&",
      "&auth_date=1733000000",
      "auth_date=1733000000&query_id=a%00b",
      "auth_date=1733000000&%00=1",
      "=",
      "&",
      "hash",
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_err err;
    tryon_status st = verify_at(cases[i], T0, 86400, NULL, &err);
    if (st != TRYON_E_INITDATA_MALFORMED) {
      fail_msg("case %zu: %s, want malformed", i, tryon_status_name(st));
    }
    assert_initdata_refused(st, TRYON_E_INITDATA_MALFORMED, &err, cases[i], TEST_BOT_TOKEN);
  }
}

static void test_auth__initdata_limits(void **state) {
  char *big = malloc(70 * 1024);
  char signed_big[70 * 1024];
  tryon_err err;
  tryon_status st;
  size_t n;

  assert_non_null(big);
  /* 64 fields are fine, 65 are not. */
  n = (size_t)snprintf(big, 70 * 1024, "auth_date=1733000000");
  for (int i = 1; i < 64; i++) {
    n += (size_t)snprintf(big + n, 70 * 1024 - n, "&f%d=%d", i, i);
  }
  sign_ok(big, signed_big, sizeof signed_big); /* 64 fields, plus the hash: 65 */
  st = verify_at(signed_big, T0, 86400, NULL, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_MALFORMED, &err, signed_big, TEST_BOT_TOKEN);
  big[strrchr(big, '&') - big] = '\0'; /* 63 fields + hash: 64 */
  sign_ok(big, signed_big, sizeof signed_big);
  assert_int_equal(verify_at(signed_big, T0, 86400, NULL, &err), TRYON_OK);

  /* Exactly 64 KiB is read; one byte more is refused unread. */
  n = (size_t)snprintf(big, 70 * 1024, "auth_date=1733000000&query_id=Q&start_param=");
  memset(big + n, 'a', 64 * 1024 - n - strlen("&hash=") - 64);
  big[64 * 1024 - strlen("&hash=") - 64] = '\0';
  sign_ok(big, signed_big, sizeof signed_big);
  assert_int_equal(strlen(signed_big), 64 * 1024);
  assert_int_equal(verify_at(signed_big, T0, 86400, NULL, &err), TRYON_OK);
  memcpy(big, signed_big, 64 * 1024);
  memcpy(big + 64 * 1024, "0", 2);
  st = verify_at(big, T0, 86400, NULL, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_MALFORMED, &err, big, TEST_BOT_TOKEN);
  free(big);
}

/* ==================================================================== decoding */

static void test_auth__initdata_plus_percent20_percent2b(void **state) {
  const struct {
    const char *signed_as; /* query_id as signed */
    const char *sent_as;   /* query_id as sent with that hash */
    tryon_status want;
    const char *decoded;
  } cases[] = {
      {"a+b", "a+b", TRYON_OK, "a b"},
      {"a%20b", "a%20b", TRYON_OK, "a b"},
      {"a%2Bb", "a%2Bb", TRYON_OK, "a+b"},
      {"a%2bb", "a%2bb", TRYON_OK, "a+b"},
      /* "+" and "%20" are the same decoded byte, so the same hash holds... */
      {"a+b", "a%20b", TRYON_OK, "a b"},
      {"a%20b", "a+b", TRYON_OK, "a b"},
      {"%61+b", "a+b", TRYON_OK, "a b"},
      /* ...but "%2B" is a plus sign, a different byte. */
      {"a+b", "a%2Bb", TRYON_E_INITDATA_BAD_HASH, ""},
      {"a%2Bb", "a+b", TRYON_E_INITDATA_BAD_HASH, ""},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char fields[256];
    char data[512];
    char hash[128];
    char sent[512];
    tryon_initdata out;
    tryon_err err;
    tryon_status st;

    snprintf(fields, sizeof fields, "auth_date=1733000000&query_id=%s", cases[i].signed_as);
    sign_ok(fields, data, sizeof data);
    raw_value(data, "hash", hash, sizeof hash);
    snprintf(sent, sizeof sent, "auth_date=1733000000&query_id=%s&hash=%s", cases[i].sent_as, hash);
    st = verify_at(sent, T0, 86400, &out, &err);
    if (st != cases[i].want) {
      fail_msg("case %zu: %s, want %s", i, tryon_status_name(st), tryon_status_name(cases[i].want));
    }
    if (st == TRYON_OK) {
      assert_string_equal(out.query_id, cases[i].decoded);
    } else {
      assert_initdata_refused(st, cases[i].want, &err, sent, TEST_BOT_TOKEN);
    }
  }
}

static void test_auth__initdata_utf8_names_round_trip(void **state) {
  const struct {
    const char *json;
    const char *first;
    const char *last;
    const char *username;
  } cases[] = {
      {"{\"id\":1,\"first_name\":\"Владислав\",\"last_name\":\"Кибенко\"}", "Владислав", "Кибенко",
       ""},
      {"{\"id\":2,\"first_name\":\"Ann 😀\",\"last_name\":\"🇺🇦\",\"username\":\"ann\"}", "Ann 😀",
       "🇺🇦", "ann"},
      /* JSON escapes: a BMP character and a surrogate pair. */
      {"{\"id\":3,\"first_name\":\"\\u0416\\u0443\",\"last_name\":\"\\ud83d\\ude00\"}", "Жу", "😀",
       ""},
      {"{\"id\":4,\"first_name\":\"a\\\"b\\\\c\",\"last_name\":null}", "a\"b\\c", "", ""},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char data[4096];
    tryon_initdata out;
    tryon_err err;
    tryon_status st;

    signed_with_user(cases[i].json, T0, data, sizeof data);
    st = verify_at(data, T0, 86400, &out, &err);
    if (st != TRYON_OK) {
      fail_msg("case %zu: %s (%s)", i, tryon_status_name(st), err.message);
    }
    assert_true(out.has_user);
    assert_int_equal(out.user.id, (int64_t)i + 1);
    assert_string_equal(out.user.first_name, cases[i].first);
    assert_string_equal(out.user.last_name, cases[i].last);
    assert_string_equal(out.user.username, cases[i].username);
  }
}

/* Names too long for the struct are cut on a character boundary; identifiers that do
 * not fit are dropped; text that is not UTF-8 is refused. */
static void test_auth__initdata_long_and_bad_text(void **state) {
  char json[8192];
  char data[16384];
  char name[1024] = "";
  char url[3000] = "https://t.me/";
  tryon_initdata out;
  tryon_err err;
  tryon_status st;

  for (int i = 0; i < 100; i++) {
    memcpy(name + 3 * i, "\xE2\x82\xAC", 4); /* U+20AC, 3 bytes each: 300 in all */
  }
  memset(url + strlen(url), 'x', 2100);
  url[13 + 2100] = '\0';
  snprintf(json, sizeof json,
           "{\"id\":5,\"first_name\":\"%s\",\"last_name\":\"%s\",\"username\":\"%0200d\","
           "\"photo_url\":\"%s\",\"language_code\":\"en\"}",
           name, "ok", 7, url);
  signed_with_user(json, T0, data, sizeof data);
  st = verify_at(data, T0, 86400, &out, &err);
  if (st != TRYON_OK) {
    fail_msg("%s (%s)", tryon_status_name(st), err.message);
  }
  assert_int_equal(strlen(out.user.first_name), 255); /* 85 whole characters */
  assert_int_equal(memcmp(out.user.first_name, name, 255), 0);
  assert_string_equal(out.user.last_name, "ok");
  assert_string_equal(out.user.username, "");
  assert_string_equal(out.user.photo_url, "");
  assert_string_equal(out.user.language_code, "en");

  /* A start_param longer than 512 bytes is dropped too. */
  {
    char fields[2048];
    int n = snprintf(fields, sizeof fields, "auth_date=%" PRId64 "&start_param=", T0);
    memset(fields + n, 'p', 513);
    fields[n + 513] = '\0';
    sign_ok(fields, data, sizeof data);
    assert_int_equal(verify_at(data, T0, 86400, &out, &err), TRYON_OK);
    assert_string_equal(out.start_param, "");
    fields[n + 512] = '\0';
    sign_ok(fields, data, sizeof data);
    assert_int_equal(verify_at(data, T0, 86400, &out, &err), TRYON_OK);
    assert_int_equal(strlen(out.start_param), 512);
  }

  /* Invalid UTF-8 in a name, or in a plain field. */
  signed_with_user("{\"id\":6,\"first_name\":\"\xC3\x28\"}", T0, data, sizeof data);
  st = verify_at(data, T0, 86400, &out, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_MALFORMED, &err, data, TEST_BOT_TOKEN);
  sign_ok("auth_date=1733000000&chat_type=%FF", data, sizeof data);
  st = verify_at(data, T0, 86400, &out, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_MALFORMED, &err, data, TEST_BOT_TOKEN);
}

/* "\/" inside the user JSON is hashed as sent and unescaped in the struct. */
static void test_auth__initdata_slash_escape_hashed_as_sent(void **state) {
  const char *escaped = "{\"id\":9,\"photo_url\":\"https:\\/\\/t.me\\/i\\/a.svg\"}";
  char data[4096];
  char hash[128];
  char plain_user[512];
  char resent[4096];
  tryon_initdata out;
  tryon_err err;
  tryon_status st;

  signed_with_user(escaped, T0, data, sizeof data);
  assert_non_null(strstr(data, "%5C%2F"));
  st = verify_at(data, T0, 86400, &out, &err);
  assert_int_equal(st, TRYON_OK);
  assert_string_equal(out.user.photo_url, "https://t.me/i/a.svg");

  /* The same object written without the escapes keeps the meaning but not the hash. */
  raw_value(data, "hash", hash, sizeof hash);
  form_encode("{\"id\":9,\"photo_url\":\"https://t.me/i/a.svg\"}", plain_user, sizeof plain_user);
  snprintf(resent, sizeof resent, "auth_date=%" PRId64 "&query_id=Q&user=%s&hash=%s", T0,
           plain_user, hash);
  st = verify_at(resent, T0, 86400, &out, &err);
  assert_initdata_refused(st, TRYON_E_INITDATA_BAD_HASH, &err, resent, TEST_BOT_TOKEN);
}

/* ==================================================================== the dates */

static void test_auth__initdata_expiry_edges(void **state) {
  const struct {
    const char *name;
    int64_t now_ms;
    int64_t max_age;
    int64_t max_future;
    tryon_status want;
  } cases[] = {
      {"just signed", T0 * 1000, 86400, 60, TRYON_OK},
      {"exactly max age", (T0 + 86400) * 1000, 86400, 60, TRYON_OK},
      {"max age and 999 ms", (T0 + 86400) * 1000 + 999, 86400, 60, TRYON_OK},
      {"one second past", (T0 + 86401) * 1000, 86400, 60, TRYON_E_INITDATA_EXPIRED},
      {"short max age", (T0 + 301) * 1000, 300, 60, TRYON_E_INITDATA_EXPIRED},
      {"age check off", (T0 + 1000000000) * 1000, 0, 60, TRYON_OK},
      {"60 s in the future", (T0 - 60) * 1000, 86400, 60, TRYON_OK},
      {"61 s in the future", (T0 - 61) * 1000, 86400, 60, TRYON_E_INITDATA_FROM_FUTURE},
      {"61 s ahead, future limit 0 means 60", (T0 - 61) * 1000, 86400, 0,
       TRYON_E_INITDATA_FROM_FUTURE},
      {"60 s ahead, future limit 0 means 60", (T0 - 60) * 1000, 86400, 0, TRYON_OK},
      {"ahead within a larger limit", (T0 - 600) * 1000, 86400, 600, TRYON_OK},
      {"clock before 1970", -5000, 0, 60, TRYON_E_INITDATA_FROM_FUTURE},
  };
  char data[512];
  char fields[128];

  snprintf(fields, sizeof fields, "auth_date=%" PRId64 "&query_id=Q", T0);
  sign_ok(fields, data, sizeof data);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_fixed_clock fc;
    tryon_initdata_options o;
    tryon_initdata out;
    tryon_err err;
    tryon_status st;

    tryon_fixed_clock_init(&fc, cases[i].now_ms);
    o = hmac_opts(TEST_BOT_TOKEN, cases[i].max_age, &fc);
    o.max_future_s = cases[i].max_future;
    tryon_err_clear(&err);
    st = tryon_initdata_verify(data, strlen(data), &o, &out, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].name, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    if (st == TRYON_OK) {
      assert_int_equal(out.auth_date, T0);
      assert_false(out.has_user);
    } else {
      assert_initdata_refused(st, cases[i].want, &err, data, TEST_BOT_TOKEN);
    }
  }
}

static void test_auth__initdata_auth_date_missing_or_malformed(void **state) {
  const struct {
    const char *fields;
    tryon_status want;
  } cases[] = {
      {"query_id=Q", TRYON_E_INITDATA_MISSING_FIELD},
      {"query_id=Q&auth_dat=1733000000", TRYON_E_INITDATA_MISSING_FIELD},
      {"auth_date=&query_id=Q", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=abc", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=-5", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=%2B1733000000", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=+1733000000", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=1733000000.0", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=1733000000x", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=0x1", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=99999999999999999999", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=9223372036854775808", TRYON_E_INITDATA_MALFORMED},
      {"auth_date=9223372036854775807", TRYON_E_INITDATA_FROM_FUTURE},
      {"auth_date=0", TRYON_E_INITDATA_EXPIRED},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char data[512];
    tryon_err err;
    tryon_status st;
    sign_ok(cases[i].fields, data, sizeof data);
    st = verify_at(data, T0, 86400, NULL, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].fields, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    assert_initdata_refused(st, cases[i].want, &err, data, TEST_BOT_TOKEN);
  }
}

/* ==================================================================== the user */

static void test_auth__initdata_user_id(void **state) {
  const struct {
    const char *json;
    tryon_status want;
    int64_t id;
  } cases[] = {
      {"{\"id\":279058397}", TRYON_OK, 279058397},
      {"{\"id\":4503599627370496}", TRYON_OK, INT64_C(4503599627370496)}, /* 2^52 */
      {"{\"id\":9007199254740991}", TRYON_OK, INT64_C(9007199254740991)}, /* 2^53 - 1 */
      {"{\"id\":\"123456789\"}", TRYON_OK, 123456789},
      {"{\"id\":1e5}", TRYON_OK, 100000},
      {" {\"id\":1} ", TRYON_OK, 1},
      {"{\"id\":1.5}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":9007199254740993}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":1e300}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":1e400}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":0}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":-5}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":\"abc\"}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":\"0123\"}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":\"12 \"}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":\"9223372036854775808\"}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":true}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":null}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":[1]}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"first_name\":\"x\"}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":1,\"first_name\":5}", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":1", TRYON_E_INITDATA_MALFORMED, 0},
      {"{\"id\":1} x", TRYON_E_INITDATA_MALFORMED, 0},
      {"[1]", TRYON_E_INITDATA_MALFORMED, 0},
      {"\"x\"", TRYON_E_INITDATA_MALFORMED, 0},
      {"", TRYON_E_INITDATA_MALFORMED, 0},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char data[1024];
    tryon_initdata out;
    tryon_err err;
    tryon_status st;

    signed_with_user(cases[i].json, T0, data, sizeof data);
    st = verify_at(data, T0, 86400, &out, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].json, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    if (st == TRYON_OK) {
      assert_int_equal(out.user.id, cases[i].id);
    } else {
      assert_initdata_refused(st, cases[i].want, &err, data, TEST_BOT_TOKEN);
      assert_false(out.has_user);
      assert_int_equal(out.user.id, 0);
    }
  }
}

static void test_auth__initdata_plain_fields(void **state) {
  char data[1024];
  tryon_initdata out;
  tryon_err err;

  sign_ok("auth_date=1733000000&query_id=AAH&chat_type=supergroup&chat_instance=-812&"
          "start_param=ref_42&can_send_after=5",
          data, sizeof data);
  assert_int_equal(verify_at(data, T0, 86400, &out, &err), TRYON_OK);
  assert_false(out.has_user);
  assert_string_equal(out.query_id, "AAH");
  assert_string_equal(out.chat_type, "supergroup");
  assert_string_equal(out.chat_instance, "-812");
  assert_string_equal(out.start_param, "ref_42");
}

/* =============================================================== API misuse */

static void test_auth__initdata_bad_options(void **state) {
  const char *data = "auth_date=1733000000&hash=00";
  tryon_initdata_options good = hmac_opts(TEST_BOT_TOKEN, 86400, NULL);
  tryon_initdata_options o[8];
  tryon_initdata out;
  tryon_err err;

  for (size_t i = 0; i < ARRAY_LEN(o); i++) {
    o[i] = good;
  }
  o[0].bot_token = NULL;
  o[1].bot_token = "";
  o[2].method = TRYON_INITDATA_ED25519;
  o[2].bot_id = 0;
  o[3].method = TRYON_INITDATA_ED25519;
  o[3].bot_id = -1;
  o[4].method = (tryon_initdata_method)7;
  o[5].max_age_s = -1;
  o[6].max_future_s = -1;
  o[7] = good;
  for (size_t i = 0; i + 1 < ARRAY_LEN(o); i++) {
    tryon_err_clear(&err);
    assert_int_equal(tryon_initdata_verify(data, strlen(data), &o[i], &out, &err), TRYON_E_INVALID);
    assert_int_equal(err.status, TRYON_E_INVALID);
  }
  assert_int_equal(tryon_initdata_verify(data, strlen(data), NULL, NULL, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_initdata_verify(NULL, 5, &o[7], NULL, &err), TRYON_E_INVALID);
  /* A NULL err is fine. */
  assert_int_equal(tryon_initdata_verify(data, strlen(data), &o[7], NULL, NULL),
                   TRYON_E_INITDATA_BAD_HASH);
}

static void test_auth__initdata_sign_errors(void **state) {
  char out[128];
  char small[82]; /* "auth_date=1&hash=" + 64 + NUL */
  tryon_err err;

  tryon_err_clear(&err);
  assert_int_equal(tryon_initdata_sign("auth_date=1", TEST_BOT_TOKEN, small, sizeof small, &err),
                   TRYON_OK);
  assert_int_equal(strlen(small), strlen("auth_date=1&hash=") + 64);
  assert_int_equal(tryon_initdata_sign("auth_date=12", TEST_BOT_TOKEN, small, sizeof small, &err),
                   TRYON_E_TOO_LARGE);
  assert_string_equal(small, "");
  assert_int_equal(tryon_initdata_sign("a=1&hash=00", TEST_BOT_TOKEN, out, sizeof out, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_initdata_sign("a=%zz", TEST_BOT_TOKEN, out, sizeof out, &err),
                   TRYON_E_INVALID);
  assert_non_null(strstr(err.message, "percent"));
  assert_int_equal(tryon_initdata_sign("a=1&a=2", TEST_BOT_TOKEN, out, sizeof out, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_initdata_sign(NULL, TEST_BOT_TOKEN, out, sizeof out, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_initdata_sign("a=1", "", out, sizeof out, &err), TRYON_E_INVALID);
  assert_int_equal(tryon_initdata_sign("a=1", TEST_BOT_TOKEN, NULL, 0, &err), TRYON_E_INVALID);
  assert_null(strstr(err.message, TEST_BOT_TOKEN));
}

/* ========================================================================= JWT */

static void test_auth__jwt_round_trip(void **state) {
  tryon_fixed_clock fc;
  char token[TRYON_JWT_MAX];
  char token2[TRYON_JWT_MAX];
  tryon_jwt_claims issued;
  tryon_jwt_claims got;
  tryon_err err;
  const int64_t subs[] = {1, 42, INT64_C(9007199254740993), INT64_MAX};

  tryon_fixed_clock_init(&fc, T0 * 1000 + 750);
  for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
    tryon_err_clear(&err);
    assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), subs[i], 3600, &fc.clock,
                                     token, sizeof token, &issued, &err),
                     TRYON_OK);
    assert_int_equal(issued.sub, subs[i]);
    assert_int_equal(issued.iat, T0);
    assert_int_equal(issued.exp, T0 + 3600);
    assert_int_equal(strlen(issued.jti), 36);
    assert_int_equal(issued.jti[14], '4'); /* version 4 */
    assert_true(strlen(token) < TRYON_JWT_MAX);
    assert_int_equal(jwt_verify_at(token, T0 + 10, 0, &got, &err), TRYON_OK);
    assert_int_equal(got.sub, subs[i]);
    assert_int_equal(got.iat, issued.iat);
    assert_int_equal(got.exp, issued.exp);
    assert_string_equal(got.jti, issued.jti);
  }

  /* The wire form: our header, and the claims as documented. */
  {
    char *dot1 = strchr(token, '.');
    char *dot2 = strchr(dot1 + 1, '.');
    unsigned char text[512];
    size_t n = 0;
    const char *end = NULL;
    cJSON *claims;
    char want[256];

    assert_true(tryon__b64url_decode(token, (size_t)(dot1 - token), text, sizeof text - 1, &n));
    text[n] = '\0';
    assert_string_equal((char *)text, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    assert_true(
        tryon__b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), text, sizeof text - 1, &n));
    text[n] = '\0';
    claims = cJSON_ParseWithLengthOpts((char *)text, n + 1, &end, 1);
    assert_non_null(claims);
    snprintf(want, sizeof want, "%" PRId64, INT64_MAX);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(claims, "sub")->valuestring, want);
    assert_true(cJSON_GetObjectItemCaseSensitive(claims, "iat")->valuedouble == (double)T0);
    assert_true(cJSON_GetObjectItemCaseSensitive(claims, "exp")->valuedouble ==
                (double)(T0 + 3600));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(claims, "jti")->valuestring, issued.jti);
    cJSON_Delete(claims);
    assert_int_equal(strlen(dot2 + 1), 43); /* 32 bytes, unpadded */
  }

  /* Two tokens for the same user at the same instant still differ (jti). */
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_OK);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, token2,
                                   sizeof token2, NULL, &err),
                   TRYON_OK);
  assert_string_not_equal(token, token2);
  /* claims may be NULL on verify too. */
  assert_int_equal(jwt_verify_at(token, T0, 0, NULL, &err), TRYON_OK);
  /* A token crafted independently (OpenSSL's encoder) is accepted: the formats agree. */
  {
    char claims[256];
    char crafted[1024];
    valid_claims(claims, sizeof claims);
    craft_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, TEST_SECRET, crafted,
                sizeof crafted);
    assert_int_equal(jwt_verify_at(crafted, T0, 0, &got, &err), TRYON_OK);
    assert_int_equal(got.sub, 42);
    assert_string_equal(got.jti, "0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10");
    craft_token("{\"alg\":\"HS256\"}", claims, TEST_SECRET, crafted, sizeof crafted);
    assert_int_equal(jwt_verify_at(crafted, T0, 0, &got, &err), TRYON_OK);
  }
}

static void test_auth__jwt_time_edges(void **state) {
  const struct {
    const char *name;
    int64_t now;
    int64_t leeway;
    tryon_status want;
  } cases[] = {
      {"at issue", T0, 0, TRYON_OK},
      {"exactly at exp", T0 + 3600, 0, TRYON_OK},
      {"one second after exp", T0 + 3601, 0, TRYON_E_TOKEN_EXPIRED},
      {"after exp within leeway", T0 + 3630, 30, TRYON_OK},
      {"past the leeway", T0 + 3631, 30, TRYON_E_TOKEN_EXPIRED},
      {"iat one second ahead", T0 - 1, 0, TRYON_E_TOKEN_NOT_YET_VALID},
      {"iat ahead within leeway", T0 - 30, 30, TRYON_OK},
      {"iat ahead past the leeway", T0 - 31, 30, TRYON_E_TOKEN_NOT_YET_VALID},
      {"huge leeway saturates", T0 + 100000000, INT64_MAX, TRYON_OK},
  };
  tryon_fixed_clock fc;
  char token[TRYON_JWT_MAX];
  tryon_err err;

  tryon_fixed_clock_init(&fc, T0 * 1000);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_OK);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_jwt_claims c;
    tryon_status st = jwt_verify_at(token, cases[i].now, cases[i].leeway, &c, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].name, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    if (st != TRYON_OK) {
      assert_token_refused(st, cases[i].want, &err, token);
      assert_int_equal(c.sub, 0);
    }
  }
}

static void test_auth__jwt_secrets(void **state) {
  tryon_fixed_clock fc;
  char token[TRYON_JWT_MAX];
  char short_secret[TRYON_JWT_SECRET_MIN];
  tryon_err err;
  tryon_status st;

  memset(short_secret, 's', sizeof short_secret);
  tryon_fixed_clock_init(&fc, T0 * 1000);
  /* 31 bytes: refused for issuing and for verifying. */
  st = tryon_jwt_issue(short_secret, sizeof short_secret - 1, 42, 3600, &fc.clock, token,
                       sizeof token, NULL, &err);
  assert_int_equal(st, TRYON_E_INVALID);
  assert_string_equal(token, "");
  assert_int_equal(tryon_jwt_issue(NULL, 40, 42, 3600, &fc.clock, token, sizeof token, NULL, &err),
                   TRYON_E_INVALID);
  /* 32 bytes is enough. */
  assert_int_equal(tryon_jwt_issue(short_secret, sizeof short_secret, 42, 3600, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_OK);
  tryon_err_clear(&err);
  st = tryon_jwt_verify(short_secret, sizeof short_secret - 1, token, strlen(token), 0, &fc.clock,
                        NULL, &err);
  assert_token_refused(st, TRYON_E_INVALID, &err, token);
  st = tryon_jwt_verify(NULL, 0, token, strlen(token), 0, &fc.clock, NULL, &err);
  assert_int_equal(st, TRYON_E_INVALID);
  assert_int_equal(tryon_jwt_verify(short_secret, sizeof short_secret, token, strlen(token), 0,
                                    &fc.clock, NULL, &err),
                   TRYON_OK);
  /* The secret that signed it, and no other. */
  st = jwt_verify_at(token, T0, 0, NULL, &err);
  assert_token_refused(st, TRYON_E_TOKEN_BAD_SIGNATURE, &err, token);
  {
    char other[] = TEST_SECRET;
    other[0] ^= 1;
    tryon_err_clear(&err);
    assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, token,
                                     sizeof token, NULL, &err),
                     TRYON_OK);
    st = tryon_jwt_verify(other, strlen(other), token, strlen(token), 0, &fc.clock, NULL, &err);
    assert_token_refused(st, TRYON_E_TOKEN_BAD_SIGNATURE, &err, token);
  }
  /* A negative leeway is a caller error. */
  assert_int_equal(jwt_verify_at(token, T0, -1, NULL, &err), TRYON_E_INVALID);
}

static void test_auth__jwt_alg_confusion(void **state) {
  const char *headers[] = {
      "{\"alg\":\"none\",\"typ\":\"JWT\"}",
      "{\"alg\":\"None\",\"typ\":\"JWT\"}",
      "{\"alg\":\"NONE\"}",
      "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
      "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
      "{\"alg\":\"HS384\"}",
      "{\"alg\":\"hs256\"}",
      "{\"alg\":\"HS256 \"}",
      "{\"alg\":\"\"}",
      "{\"typ\":\"JWT\"}",
      "{\"alg\":256,\"typ\":\"JWT\"}",
      "{\"alg\":null}",
      "{\"alg\":true}",
      "{\"alg\":[\"HS256\"]}",
      "{\"alg\":{\"name\":\"HS256\"}}",
      "{\"Alg\":\"HS256\"}",
  };
  char claims[256];

  valid_claims(claims, sizeof claims);
  for (size_t i = 0; i < ARRAY_LEN(headers); i++) {
    char token[1024];
    tryon_err err;
    tryon_status st;
    /* Signed correctly with the right secret: only the algorithm is wrong. */
    craft_token(headers[i], claims, TEST_SECRET, token, sizeof token);
    st = jwt_verify_at(token, T0, 0, NULL, &err);
    if (st != TRYON_E_TOKEN_BAD_ALG) {
      fail_msg("%s: %s, want bad alg", headers[i], tryon_status_name(st));
    }
    assert_token_refused(st, TRYON_E_TOKEN_BAD_ALG, &err, token);
  }
  /* The classic: alg none and an empty signature. */
  {
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char h[256];
    char c[512];
    char token[1024];
    tryon_err err;
    b64url_ref(none, strlen(none), h, sizeof h);
    b64url_ref(claims, strlen(claims), c, sizeof c);
    snprintf(token, sizeof token, "%s.%s.", h, c);
    assert_token_refused(jwt_verify_at(token, T0, 0, NULL, &err), TRYON_E_TOKEN_BAD_ALG, &err,
                         token);
  }
}

static void test_auth__jwt_header_rules(void **state) {
  const struct {
    const char *header;
    tryon_status want;
  } cases[] = {
      {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", TRYON_OK},
      {"{\"typ\":\"JWT\",\"alg\":\"HS256\",\"kid\":\"k1\"}", TRYON_OK},
      {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\",\"typ\":1}", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\",\"alg\":\"none\"}", TRYON_E_TOKEN_MALFORMED},
      {"[\"HS256\"]", TRYON_E_TOKEN_MALFORMED},
      {"\"HS256\"", TRYON_E_TOKEN_MALFORMED},
      {"null", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\"", TRYON_E_TOKEN_MALFORMED},
      {"{\"alg\":\"HS256\"} ", TRYON_OK},
      {"{\"alg\":\"HS256\"}x", TRYON_E_TOKEN_MALFORMED},
      {"", TRYON_E_TOKEN_MALFORMED},
  };
  char claims[256];

  valid_claims(claims, sizeof claims);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char token[1024];
    tryon_err err;
    tryon_status st;
    craft_token(cases[i].header, claims, TEST_SECRET, token, sizeof token);
    st = jwt_verify_at(token, T0, 0, NULL, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].header, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    if (st != TRYON_OK) {
      assert_token_refused(st, cases[i].want, &err, token);
    }
  }
}

static void test_auth__jwt_claims_rules(void **state) {
  const struct {
    const char *claims;
    tryon_status want;
  } cases[] = {
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_OK},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0B5B6A43-3C58-4B9C-9A55-8F5B4D1F2A10\",\"extra\":[1]}",
       TRYON_OK},
      {"{\"sub\":42,\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"abc\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"-1\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"0\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"042\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"4 2\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"9223372036854775808\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1733003600.5,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":\"1733003600\","
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1e300,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1733003600}", TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"iat\":1733000000,\"exp\":1733003600,\"jti\":\"x\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"{\"sub\":\"42\",\"sub\":\"43\",\"iat\":1733000000,\"exp\":1733003600,"
       "\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\"}",
       TRYON_E_TOKEN_MALFORMED},
      {"[]", TRYON_E_TOKEN_MALFORMED},
      {"null", TRYON_E_TOKEN_MALFORMED},
      {"42", TRYON_E_TOKEN_MALFORMED},
      {"{", TRYON_E_TOKEN_MALFORMED},
      {"", TRYON_E_TOKEN_MALFORMED},
  };

  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char token[1024];
    tryon_jwt_claims c;
    tryon_err err;
    tryon_status st;
    craft_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", cases[i].claims, TEST_SECRET, token,
                sizeof token);
    st = jwt_verify_at(token, T0, 0, &c, &err);
    if (st != cases[i].want) {
      fail_msg("%s: %s, want %s", cases[i].claims, tryon_status_name(st),
               tryon_status_name(cases[i].want));
    }
    if (st == TRYON_OK) {
      assert_int_equal(c.sub, 42);
    } else {
      assert_token_refused(st, cases[i].want, &err, token);
    }
  }
}

/* Text that is not strict base64url, anywhere in the token, is malformed. */
static void test_auth__jwt_bad_base64(void **state) {
  tryon_fixed_clock fc;
  char good[TRYON_JWT_MAX];
  tryon_err err;
  const struct {
    const char *name;
    int part;       /* 0 header, 1 claims, 2 signature */
    int at;         /* character index in the part; -1: append */
    const char *in; /* replacement / appended text */
  } cases[] = {
      {"padding on the header", 0, -1, "="},
      {"double padding on the header", 0, -1, "=="},
      {"padding on the claims", 1, -1, "=="},
      {"padding on the signature", 2, -1, "="},
      {"'+' in the header", 0, 3, "+"},
      {"'/' in the claims", 1, 5, "/"},
      {"'+' in the signature", 2, 7, "+"},
      {"'/' in the signature", 2, 0, "/"},
      {"a space", 1, 2, " "},
      {"a newline", 2, 10, "\n"},
      {"a control character", 1, 4, "\x01"},
      /* The last of 43 characters carries 2 unused bits, always clear in a canonical
       * form; "B" (value 1) sets one. */
      {"non-canonical trailing bits", 2, 42, "B"},
  };

  tryon_fixed_clock_init(&fc, T0 * 1000);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, good,
                                   sizeof good, NULL, &err),
                   TRYON_OK);
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char token[TRYON_JWT_MAX + 16];
    const char *starts[3];
    size_t lens[3];
    size_t o = 0;
    tryon_status st;

    starts[0] = good;
    starts[1] = strchr(good, '.') + 1;
    starts[2] = strchr(starts[1], '.') + 1;
    lens[0] = (size_t)(starts[1] - starts[0] - 1);
    lens[1] = (size_t)(starts[2] - starts[1] - 1);
    lens[2] = strlen(starts[2]);
    for (int p = 0; p < 3; p++) {
      memcpy(token + o, starts[p], lens[p]);
      if (p == cases[i].part) {
        if (cases[i].at < 0) {
          memcpy(token + o + lens[p], cases[i].in, strlen(cases[i].in));
          o += strlen(cases[i].in);
        } else {
          token[o + (size_t)cases[i].at] = cases[i].in[0];
        }
      }
      o += lens[p];
      token[o++] = p < 2 ? '.' : '\0';
    }
    st = jwt_verify_at(token, T0, 0, NULL, &err);
    if (st != TRYON_E_TOKEN_MALFORMED) {
      fail_msg("%s: %s, want malformed", cases[i].name, tryon_status_name(st));
    }
    assert_token_refused(st, TRYON_E_TOKEN_MALFORMED, &err, token);
  }
}

static void test_auth__jwt_structure(void **state) {
  tryon_fixed_clock fc;
  char good[TRYON_JWT_MAX];
  char buf[TRYON_JWT_MAX * 6];
  tryon_err err;
  tryon_status st;
  const char *shapes[] = {
      "abc", "a.b", "a.b.c.d", "..", "...", ".eyJ9.abc", "eyJ9..abc", "a.b.c.",
  };

  tryon_fixed_clock_init(&fc, T0 * 1000);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, good,
                                   sizeof good, NULL, &err),
                   TRYON_OK);
  for (size_t i = 0; i < ARRAY_LEN(shapes); i++) {
    st = jwt_verify_at(shapes[i], T0, 0, NULL, &err);
    if (st != TRYON_E_TOKEN_MALFORMED) {
      fail_msg("%s: %s, want malformed", shapes[i], tryon_status_name(st));
    }
    assert_token_refused(st, TRYON_E_TOKEN_MALFORMED, &err, shapes[i]);
  }
  /* A valid token with a fourth part, or a dot in front. */
  snprintf(buf, sizeof buf, "%s.", good);
  assert_token_refused(jwt_verify_at(buf, T0, 0, NULL, &err), TRYON_E_TOKEN_MALFORMED, &err, buf);
  snprintf(buf, sizeof buf, ".%s", good);
  assert_token_refused(jwt_verify_at(buf, T0, 0, NULL, &err), TRYON_E_TOKEN_MALFORMED, &err, buf);
  /* The signature cut to 40 characters (30 bytes) still decodes: a bad signature. */
  snprintf(buf, sizeof buf, "%.*s", (int)strlen(good) - 3, good);
  assert_token_refused(jwt_verify_at(buf, T0, 0, NULL, &err), TRYON_E_TOKEN_BAD_SIGNATURE, &err,
                       buf);
  /* Empty: no token at all. */
  tryon_err_clear(&err);
  st = tryon_jwt_verify(TEST_SECRET, strlen(TEST_SECRET), "", 0, 0, &fc.clock, NULL, &err);
  assert_int_equal(st, TRYON_E_TOKEN_MISSING);
  st = tryon_jwt_verify(TEST_SECRET, strlen(TEST_SECRET), NULL, 0, 0, &fc.clock, NULL, &err);
  assert_int_equal(st, TRYON_E_TOKEN_MISSING);
  assert_true(err.message[0] != '\0');
  /* Oversize: past TRYON_JWT_MAX * 4 bytes, refused before anything else. */
  memset(buf, 'A', TRYON_JWT_MAX * 4 + 1);
  memcpy(buf, good, strlen(good));
  buf[TRYON_JWT_MAX * 4 + 1] = '\0';
  assert_token_refused(jwt_verify_at(buf, T0, 0, NULL, &err), TRYON_E_TOKEN_MALFORMED, &err, buf);
  /* The limit itself is not refused as oversize: a huge claim set signed correctly. */
  {
    char claims[TRYON_JWT_MAX * 3];
    int n = snprintf(claims, sizeof claims,
                     "{\"sub\":\"42\",\"iat\":%" PRId64 ",\"exp\":%" PRId64
                     ",\"jti\":\"0b5b6a43-3c58-4b9c-9a55-8f5b4d1f2a10\",\"pad\":\"",
                     T0, T0 + 60);
    memset(claims + n, 'x', 1400 - (size_t)n);
    snprintf(claims + 1400, sizeof claims - 1400, "\"}");
    craft_token("{\"alg\":\"HS256\"}", claims, TEST_SECRET, buf, sizeof buf);
    assert_true(strlen(buf) <= TRYON_JWT_MAX * 4);
    assert_int_equal(jwt_verify_at(buf, T0, 0, NULL, &err), TRYON_OK);
  }
}

static void test_auth__jwt_issue_arguments(void **state) {
  tryon_fixed_clock fc;
  char token[TRYON_JWT_MAX];
  char small[64];
  tryon_jwt_claims c;
  tryon_err err;

  tryon_fixed_clock_init(&fc, T0 * 1000);
  tryon_err_clear(&err);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, small,
                                   sizeof small, &c, &err),
                   TRYON_E_TOO_LARGE);
  assert_string_equal(small, "");
  assert_int_equal(c.sub, 0);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 0, 3600, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), -3, 3600, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 0, &fc.clock, token,
                                   sizeof token, NULL, &err),
                   TRYON_E_INVALID);
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, INT64_MAX, &fc.clock,
                                   token, sizeof token, NULL, &err),
                   TRYON_E_INVALID);
  assert_int_equal(
      tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, &fc.clock, NULL, 0, NULL, &err),
      TRYON_E_INVALID);
  assert_null(strstr(err.message, TEST_SECRET));
  /* The system clock works too. */
  assert_int_equal(tryon_jwt_issue(TEST_SECRET, strlen(TEST_SECRET), 42, 3600, NULL, token,
                                   sizeof token, &c, &err),
                   TRYON_OK);
  assert_int_equal(
      tryon_jwt_verify(TEST_SECRET, strlen(TEST_SECRET), token, strlen(token), 0, NULL, NULL, &err),
      TRYON_OK);
}

/* ===================================================================== codecs */

static void test_auth__codec_base64url(void **state) {
  unsigned char bytes[64];
  const struct {
    const char *text;
    bool ok;
  } cases[] = {
      {"", true},       {"AA", true},   {"AAA", true},  {"AAAA", true},  {"A", false},
      {"AAAAA", false}, {"AB", false},  {"AAB", false}, {"AA==", false}, {"A+A/", false},
      {"AA A", false},  {"-_-_", true}, {"AQ", true},   {"AQI", true},
  };

  for (size_t n = 0; n <= 40; n++) {
    char mine[128];
    char ref[128];
    unsigned char back[64];
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
      bytes[i] = (unsigned char)(i * 37 + n * 11 + 250);
    }
    assert_int_equal(tryon__b64url_encode(bytes, n, mine, sizeof mine),
                     tryon__b64url_encoded_len(n));
    b64url_ref(bytes, n, ref, sizeof ref);
    assert_string_equal(mine, ref);
    assert_true(tryon__b64url_decode(mine, strlen(mine), back, sizeof back, &got));
    assert_int_equal(got, n);
    assert_memory_equal(back, bytes, n);
  }
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    size_t got = 0;
    if (tryon__b64url_decode(cases[i].text, strlen(cases[i].text), bytes, sizeof bytes, &got) !=
        cases[i].ok) {
      fail_msg("\"%s\": want %s", cases[i].text, cases[i].ok ? "accepted" : "refused");
    }
  }
  /* Output room is respected. */
  {
    char out[4];
    size_t got = 0;
    assert_int_equal(tryon__b64url_encode("abc", 3, out, sizeof out), 0);
    assert_false(tryon__b64url_decode("AAAA", 4, bytes, 2, &got));
  }
}

static void test_auth__codec_numbers(void **state) {
  const struct {
    const char *text;
    bool ok;
    int64_t v;
  } dec[] = {
      {"0", true, 0},
      {"007", true, 7},
      {"9223372036854775807", true, INT64_MAX},
      {"9223372036854775808", false, 0},
      {"10000000000000000000", false, 0},
      {"", false, 0},
      {"-1", false, 0},
      {"+1", false, 0},
      {" 1", false, 0},
      {"1a", false, 0},
  };

  for (size_t i = 0; i < ARRAY_LEN(dec); i++) {
    int64_t v = -1;
    assert_int_equal(tryon__dec_i64(dec[i].text, strlen(dec[i].text), &v), dec[i].ok);
    if (dec[i].ok) {
      assert_int_equal(v, dec[i].v);
    }
  }
  {
    int64_t v = 0;
    assert_false(tryon__dec_positive_i64("0", 1, &v));
    assert_false(tryon__dec_positive_i64("01", 2, &v));
    assert_true(tryon__dec_positive_i64("10", 2, &v));
    assert_int_equal(v, 10);
  }
  assert_int_equal(tryon__sat_add(INT64_MAX, 1), INT64_MAX);
  assert_int_equal(tryon__sat_add(INT64_MIN, -1), INT64_MIN);
  assert_int_equal(tryon__sat_sub(INT64_MIN, 1), INT64_MIN);
  assert_int_equal(tryon__sat_sub(INT64_MAX, -1), INT64_MAX);
  assert_int_equal(tryon__sat_sub(5, 7), -2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_auth__initdata_hmac_vectors),
      cmocka_unit_test(test_auth__initdata_canonical_intermediates),
      cmocka_unit_test(test_auth__initdata_sign_reproduces_vector),
      cmocka_unit_test(test_auth__initdata_hmac_keeps_signature_field),
      cmocka_unit_test(test_auth__initdata_canonical_fields),
      cmocka_unit_test(test_auth__initdata_plus_vector_fields),
      cmocka_unit_test(test_auth__initdata_ed25519_production_vector),
      cmocka_unit_test(test_auth__initdata_ed25519_ignores_hash),
      cmocka_unit_test(test_auth__initdata_ed25519_signature_defects),
      cmocka_unit_test(test_auth__initdata_ed25519_throwaway_key_vector),
      cmocka_unit_test(test_auth__initdata_ed25519_checks_after_signature),
      cmocka_unit_test(test_auth__initdata_tamper_each_field),
      cmocka_unit_test(test_auth__initdata_order_free_extra_field_not),
      cmocka_unit_test(test_auth__initdata_duplicate_keys),
      cmocka_unit_test(test_auth__initdata_missing_hash),
      cmocka_unit_test(test_auth__initdata_hash_format),
      cmocka_unit_test(test_auth__initdata_malformed),
      cmocka_unit_test(test_auth__initdata_limits),
      cmocka_unit_test(test_auth__initdata_plus_percent20_percent2b),
      cmocka_unit_test(test_auth__initdata_utf8_names_round_trip),
      cmocka_unit_test(test_auth__initdata_long_and_bad_text),
      cmocka_unit_test(test_auth__initdata_slash_escape_hashed_as_sent),
      cmocka_unit_test(test_auth__initdata_expiry_edges),
      cmocka_unit_test(test_auth__initdata_auth_date_missing_or_malformed),
      cmocka_unit_test(test_auth__initdata_user_id),
      cmocka_unit_test(test_auth__initdata_plain_fields),
      cmocka_unit_test(test_auth__initdata_bad_options),
      cmocka_unit_test(test_auth__initdata_sign_errors),
      cmocka_unit_test(test_auth__jwt_round_trip),
      cmocka_unit_test(test_auth__jwt_time_edges),
      cmocka_unit_test(test_auth__jwt_secrets),
      cmocka_unit_test(test_auth__jwt_alg_confusion),
      cmocka_unit_test(test_auth__jwt_header_rules),
      cmocka_unit_test(test_auth__jwt_claims_rules),
      cmocka_unit_test(test_auth__jwt_bad_base64),
      cmocka_unit_test(test_auth__jwt_structure),
      cmocka_unit_test(test_auth__jwt_issue_arguments),
      cmocka_unit_test(test_auth__codec_base64url),
      cmocka_unit_test(test_auth__codec_numbers),
  };
  return cmocka_run_group_tests_name("test_auth", tests, load_vectors, free_vectors);
}
