/*
 * initdata.c - Telegram Mini App initData: parsing the query string, the HMAC-SHA256
 * and Ed25519 checks, the age checks, the `user` object; and signing, for tests.
 *
 * Everything a call needs lives in one arena freed before it returns: the decoded
 * fields and the data-check string. Nothing is cached between calls, so any number of
 * threads may verify at once.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <tryon/auth.h>

#include "auth/auth_internal.h"

#define INITDATA_MAX_BYTES (64 * 1024)
#define INITDATA_MAX_FIELDS 64
#define MAX_FUTURE_DEFAULT_S 60
/* Decoded fields (at most the input plus two NULs a field) and the data-check string
 * (the same again plus the Ed25519 prefix) fit well within this. */
#define INITDATA_ARENA_LIMIT (4 * INITDATA_MAX_BYTES)

/* Telegram's Ed25519 public keys for third-party validation (core.telegram.org/bots/
 * webapps, "Validating data for Third-Party Use"). */
static const char tg_key_production_hex[] =
    "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d";
static const char tg_key_test_hex[] =
    "40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec";

/* One decoded `key=value` pair. Both point into the call's arena and are NUL-terminated
 * (decoded NUL bytes are refused, so the lengths agree with strlen). */
typedef struct field {
  const char *key;
  size_t key_len;
  const char *val;
  size_t val_len;
} field;

typedef struct fields {
  field f[INITDATA_MAX_FIELDS];
  size_t n;
} fields;

/* The names Telegram documents. Error messages name a field only when it is one of
 * these: any other key is client-chosen text and stays out of messages and logs. */
static const char *const known_fields[] = {
    "auth_date", "can_send_after", "chat",      "chat_instance", "chat_type", "hash",
    "query_id",  "receiver",       "signature", "start_param",   "user",
};

static const char *known_name(const field *f) {
  for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++) {
    if (strcmp(f->key, known_fields[i]) == 0) {
      return known_fields[i];
    }
  }
  return NULL;
}

enum { DECODE_OK, DECODE_BAD_ESCAPE, DECODE_NUL };

/* application/x-www-form-urlencoded decoding of s[0..n) into out (room for n bytes):
 * `+` is a space, `%XY` a byte; a `%` without two hex digits after it is an error, as
 * is a NUL byte (the values become C strings). Other bytes are copied as they are. */
static int percent_decode(const char *s, size_t n, char *out, size_t *out_len) {
  size_t o = 0;

  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%') {
      int hi = i + 2 < n ? tryon_hex_digit((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < n ? tryon_hex_digit((unsigned char)s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return DECODE_BAD_ESCAPE;
      }
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    if (c == '\0') {
      return DECODE_NUL;
    }
    out[o++] = (char)c;
  }
  *out_len = o;
  return DECODE_OK;
}

static int field_cmp(const void *a, const void *b) {
  const field *x = a;
  const field *y = b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);

  if (c != 0) {
    return c;
  }
  return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Decodes one "key=value" piece (the `number`-th, for messages) into `*dst`. */
static tryon_status decode_field(const char *s, size_t n, size_t number, char **dst, field *f,
                                 tryon_err *err) {
  const char *eq = memchr(s, '=', n);
  size_t klen = 0;
  size_t vlen = 0;
  int rc;

  if (eq == NULL) {
    return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data field %zu has no '='", number);
  }
  rc = percent_decode(s, (size_t)(eq - s), *dst, &klen);
  if (rc == DECODE_OK) {
    f->key = *dst;
    f->key_len = klen;
    (*dst)[klen] = '\0';
    *dst += klen + 1;
    rc = percent_decode(eq + 1, n - (size_t)(eq - s) - 1, *dst, &vlen);
  }
  if (rc == DECODE_BAD_ESCAPE) {
    return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED,
                         "init data field %zu has a malformed percent escape", number);
  }
  if (rc == DECODE_NUL) {
    return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data field %zu contains a NUL byte",
                         number);
  }
  if (klen == 0) {
    return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data field %zu has an empty name",
                         number);
  }
  f->val = *dst;
  f->val_len = vlen;
  (*dst)[vlen] = '\0';
  *dst += vlen + 1;
  return TRYON_OK;
}

/* Splits s[0..len) at '&', decodes every pair into the arena and sorts them by key;
 * a key seen twice is an error. Empty input gives no fields. */
static tryon_status parse_fields(const char *s, size_t len, tryon_arena *arena, fields *fs,
                                 tryon_err *err) {
  tryon_status st = TRYON_OK;
  size_t count = 1;
  char *dst = NULL;
  const char *p = s;
  const char *end = s + len;

  fs->n = 0;
  if (len > INITDATA_MAX_BYTES) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data is longer than %d bytes",
                       INITDATA_MAX_BYTES);
    goto out;
  }
  if (len == 0) {
    goto out;
  }
  for (size_t i = 0; i < len; i++) {
    count += s[i] == '&';
  }
  if (count > INITDATA_MAX_FIELDS) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data has more than %d fields",
                       INITDATA_MAX_FIELDS);
    goto out;
  }
  /* Decoding never lengthens text; each key and value gains a NUL. */
  dst = tryon_arena_alloc(arena, len + 2 * count);
  if (dst == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory decoding init data");
    goto out;
  }
  while (fs->n < count) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp != NULL ? amp : end;
    st = decode_field(p, (size_t)(stop - p), fs->n + 1, &dst, &fs->f[fs->n], err);
    if (st != TRYON_OK) {
      goto out;
    }
    fs->n++;
    p = stop + 1;
  }
  qsort(fs->f, fs->n, sizeof fs->f[0], field_cmp);
  for (size_t i = 1; i < fs->n; i++) {
    if (field_cmp(&fs->f[i - 1], &fs->f[i]) == 0) {
      const char *name = known_name(&fs->f[i]);
      st = name != NULL
               ? tryon_err_set(err, TRYON_E_INITDATA_DUPLICATE_KEY,
                               "init data repeats the field %s", name)
               : tryon_err_set(err, TRYON_E_INITDATA_DUPLICATE_KEY, "init data repeats a field");
      goto out;
    }
  }
out:
  return st;
}

static const field *find_field(const fields *fs, const char *name) {
  size_t n = strlen(name);

  for (size_t i = 0; i < fs->n; i++) {
    if (fs->f[i].key_len == n && memcmp(fs->f[i].key, name, n) == 0) {
      return &fs->f[i];
    }
  }
  return NULL;
}

static bool excluded(const field *f, bool drop_signature) {
  return strcmp(f->key, "hash") == 0 || (drop_signature && strcmp(f->key, "signature") == 0);
}

/* `prefix` followed by the sorted fields but `hash` (and `signature` when asked) as
 * "key=value" lines joined by "\n", values byte for byte as decoded. */
static tryon_status data_check_string(const fields *fs, const char *prefix, bool drop_signature,
                                      tryon_arena *arena, char **out, size_t *out_len,
                                      tryon_err *err) {
  size_t plen = strlen(prefix);
  size_t total = plen;
  size_t o = 0;
  bool first = true;
  char *s = NULL;

  for (size_t i = 0; i < fs->n; i++) {
    if (!excluded(&fs->f[i], drop_signature)) {
      total += fs->f[i].key_len + 1 + fs->f[i].val_len + 1;
    }
  }
  s = tryon_arena_alloc(arena, total + 1);
  if (s == NULL) {
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory building the data-check string");
  }
  memcpy(s, prefix, plen);
  o = plen;
  for (size_t i = 0; i < fs->n; i++) {
    const field *f = &fs->f[i];
    if (excluded(f, drop_signature)) {
      continue;
    }
    if (!first) {
      s[o++] = '\n';
    }
    first = false;
    memcpy(s + o, f->key, f->key_len);
    o += f->key_len;
    s[o++] = '=';
    memcpy(s + o, f->val, f->val_len);
    o += f->val_len;
  }
  s[o] = '\0';
  *out = s;
  *out_len = o;
  return TRYON_OK;
}

/* HMAC-SHA256(key = HMAC-SHA256(key = "WebAppData", msg = bot_token), msg). */
static tryon_status initdata_mac(const char *bot_token, const char *msg, size_t len,
                                 unsigned char mac[32], tryon_err *err) {
  static const char salt[] = "WebAppData";
  tryon_status st = TRYON_OK;
  unsigned char secret[32];
  unsigned int secret_len = 0;
  unsigned int mac_len = 0;

  if (HMAC(EVP_sha256(), salt, (int)(sizeof salt - 1), (const unsigned char *)bot_token,
           strlen(bot_token), secret, &secret_len) == NULL ||
      HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, len, mac, &mac_len) ==
          NULL ||
      mac_len != 32) {
    ERR_clear_error();
    st = tryon_err_set(err, TRYON_E_INTERNAL, "HMAC-SHA256 failed");
  }
  /* The derived key is as good as the bot token: leave no copy on the stack. */
  OPENSSL_cleanse(secret, sizeof secret);
  return st;
}

static tryon_status check_hmac(const fields *fs, const char *bot_token, tryon_arena *arena,
                               tryon_err *err) {
  tryon_status st = TRYON_OK;
  const field *hash = find_field(fs, "hash");
  unsigned char want[32];
  unsigned char mac[32];
  char *msg = NULL;
  size_t msg_len = 0;

  if (hash == NULL) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MISSING_HASH, "init data has no hash");
    goto out;
  }
  if (!tryon_hex_decode(hash->val, hash->val_len, want, sizeof want)) {
    st = tryon_err_set(err, TRYON_E_INITDATA_BAD_HASH, "init data hash is not 64 hex digits");
    goto out;
  }
  st = data_check_string(fs, "", false, arena, &msg, &msg_len, err);
  if (st != TRYON_OK) {
    goto out;
  }
  st = initdata_mac(bot_token, msg, msg_len, mac, err);
  if (st != TRYON_OK) {
    goto out;
  }
  if (CRYPTO_memcmp(mac, want, sizeof mac) != 0) {
    st = tryon_err_set(err, TRYON_E_INITDATA_BAD_HASH, "init data hash does not match");
  }
out:
  return st;
}

static tryon_status check_ed25519(const fields *fs, int64_t bot_id, const unsigned char key[32],
                                  tryon_arena *arena, tryon_err *err) {
  tryon_status st = TRYON_OK;
  const field *sig_field = find_field(fs, "signature");
  unsigned char sig[64];
  size_t sig_len = 0;
  char prefix[48];
  char *msg = NULL;
  size_t msg_len = 0;
  EVP_PKEY *pkey = NULL;
  EVP_MD_CTX *ctx = NULL;

  if (sig_field == NULL) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MISSING_FIELD, "init data has no signature");
    goto out;
  }
  if (!tryon__b64url_decode(sig_field->val, sig_field->val_len, sig, sizeof sig, &sig_len) ||
      sig_len != sizeof sig) {
    st = tryon_err_set(err, TRYON_E_INITDATA_BAD_SIGNATURE,
                       "init data signature is not 64 bytes of unpadded base64url");
    goto out;
  }
  snprintf(prefix, sizeof prefix, "%" PRId64 ":WebAppData\n", bot_id);
  st = data_check_string(fs, prefix, true, arena, &msg, &msg_len, err);
  if (st != TRYON_OK) {
    goto out;
  }
  pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, 32);
  ctx = EVP_MD_CTX_new();
  if (pkey == NULL || ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1) {
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot set up Ed25519 verification");
    goto out;
  }
  /* 1 is a valid signature; 0 a wrong one; below 0 an error, which is refused too. */
  if (EVP_DigestVerify(ctx, sig, sizeof sig, (const unsigned char *)msg, msg_len) != 1) {
    st = tryon_err_set(err, TRYON_E_INITDATA_BAD_SIGNATURE, "init data signature is invalid");
  }
out:
  if (st != TRYON_OK) {
    /* A failed check leaves OpenSSL errors queued on this thread; they are ours. */
    ERR_clear_error();
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return st;
}

/* Copies text (validated as UTF-8) into dst[cap]. What does not fit is cut at a
 * character boundary when `cut`, and dropped entirely (dst = "") otherwise: names are
 * text to show, but a cut username, URL or identifier would name something else. */
static bool copy_text(char *dst, size_t cap, const char *src, size_t n, bool cut) {
  if (!tryon_utf8_valid(src, n)) {
    return false;
  }
  if (n >= cap) {
    n = cut ? tryon_utf8_prefix(src, cap - 1) : 0;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
  return true;
}

static bool json_flag(const cJSON *item) {
  /* Telegram sends booleans; some libraries' fixtures send the strings. */
  return cJSON_IsTrue(item) ||
         (cJSON_IsString(item) && strcmp(cJSON_GetStringValue(item), "true") == 0);
}

typedef struct user_text {
  const char *name;
  size_t offset;
  size_t cap;
  bool cut;
} user_text;

static const user_text user_texts[] = {
    {"first_name", offsetof(tryon_tg_user, first_name), TRYON_TG_NAME_MAX, true},
    {"last_name", offsetof(tryon_tg_user, last_name), TRYON_TG_NAME_MAX, true},
    {"username", offsetof(tryon_tg_user, username), TRYON_TG_USERNAME_MAX, false},
    {"language_code", offsetof(tryon_tg_user, language_code), TRYON_TG_LANG_MAX, false},
    {"photo_url", offsetof(tryon_tg_user, photo_url), TRYON_TG_URL_MAX, false},
};

/* The user's id: a JSON integer (exact in a double), or the same as a decimal string,
 * which some libraries' fixtures send; positive either way. */
static bool user_id(const cJSON *item, int64_t *id) {
  if (cJSON_IsString(item)) {
    const char *s = cJSON_GetStringValue(item);
    return tryon__dec_positive_i64(s, strlen(s), id);
  }
  return tryon__json_int(item, id) && *id > 0;
}

static tryon_status parse_user(const field *f, tryon_tg_user *u, tryon_err *err) {
  tryon_status st = TRYON_OK;
  cJSON *root = NULL;
  const char *end = NULL;

  /* The value is NUL-terminated and holds no other NUL, so requiring the terminator
   * right after the object refuses trailing bytes. */
  root = cJSON_ParseWithLengthOpts(f->val, f->val_len + 1, &end, 1);
  if (root == NULL || !cJSON_IsObject(root) || end != f->val + f->val_len) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data user is not a JSON object");
    goto out;
  }
  if (!user_id(cJSON_GetObjectItemCaseSensitive(root, "id"), &u->id)) {
    st = tryon_err_set(err, TRYON_E_INITDATA_MALFORMED,
                       "init data user id is not a positive integer");
    goto out;
  }
  for (size_t i = 0; i < sizeof user_texts / sizeof user_texts[0]; i++) {
    const user_text *t = &user_texts[i];
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, t->name);
    char *dst = (char *)u + t->offset;
    if (item == NULL || cJSON_IsNull(item)) {
      continue;
    }
    if (!cJSON_IsString(item) ||
        !copy_text(dst, t->cap, item->valuestring, strlen(item->valuestring), t->cut)) {
      st = tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data user %s is not a UTF-8 string",
                         t->name);
      goto out;
    }
  }
  u->is_premium = json_flag(cJSON_GetObjectItemCaseSensitive(root, "is_premium"));
  u->allows_write_to_pm = json_flag(cJSON_GetObjectItemCaseSensitive(root, "allows_write_to_pm"));
out:
  cJSON_Delete(root);
  return st;
}

/* The plain text fields of initData, each "" when absent or too long to keep whole. */
static tryon_status copy_plain_fields(const fields *fs, tryon_initdata *d, tryon_err *err) {
  const struct {
    const char *name;
    char *dst;
    size_t cap;
  } plain[] = {
      {"query_id", d->query_id, sizeof d->query_id},
      {"chat_type", d->chat_type, sizeof d->chat_type},
      {"chat_instance", d->chat_instance, sizeof d->chat_instance},
      {"start_param", d->start_param, sizeof d->start_param},
  };

  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    const field *f = find_field(fs, plain[i].name);
    if (f != NULL && !copy_text(plain[i].dst, plain[i].cap, f->val, f->val_len, false)) {
      return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED, "init data %s is not UTF-8",
                           plain[i].name);
    }
  }
  return TRYON_OK;
}

static tryon_status check_options(const char *init_data, size_t len,
                                  const tryon_initdata_options *opt, tryon_err *err) {
  if (opt == NULL || (init_data == NULL && len > 0)) {
    return tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_initdata_verify");
  }
  if (opt->method == TRYON_INITDATA_HMAC) {
    if (opt->bot_token == NULL || opt->bot_token[0] == '\0') {
      return tryon_err_set(err, TRYON_E_INVALID, "the HMAC method needs the bot token");
    }
  } else if (opt->method == TRYON_INITDATA_ED25519) {
    if (opt->bot_id <= 0) {
      return tryon_err_set(err, TRYON_E_INVALID, "the Ed25519 method needs a positive bot id");
    }
  } else {
    return tryon_err_set(err, TRYON_E_INVALID, "unknown initData method");
  }
  if (opt->max_age_s < 0 || opt->max_future_s < 0) {
    return tryon_err_set(err, TRYON_E_INVALID, "initData age limits must not be negative");
  }
  return TRYON_OK;
}

static tryon_status check_dates(const fields *fs, const tryon_initdata_options *opt,
                                int64_t *auth_date, tryon_err *err) {
  const field *f = find_field(fs, "auth_date");
  int64_t max_future = opt->max_future_s > 0 ? opt->max_future_s : MAX_FUTURE_DEFAULT_S;
  int64_t now = 0;

  if (f == NULL) {
    return tryon_err_set(err, TRYON_E_INITDATA_MISSING_FIELD, "init data has no auth_date");
  }
  if (!tryon__dec_i64(f->val, f->val_len, auth_date)) {
    return tryon_err_set(err, TRYON_E_INITDATA_MALFORMED,
                         "init data auth_date is not a decimal integer");
  }
  now = tryon__now_s(opt->clock);
  if (opt->max_age_s > 0 && tryon__sat_sub(now, *auth_date) > opt->max_age_s) {
    return tryon_err_set(err, TRYON_E_INITDATA_EXPIRED,
                         "init data is older than %" PRId64 " seconds", opt->max_age_s);
  }
  if (tryon__sat_sub(*auth_date, now) > max_future) {
    return tryon_err_set(err, TRYON_E_INITDATA_FROM_FUTURE,
                         "init data is dated more than %" PRId64 " seconds ahead", max_future);
  }
  return TRYON_OK;
}

tryon_status tryon__initdata_verify_with_key(const char *init_data, size_t len,
                                             const tryon_initdata_options *opt,
                                             const unsigned char *ed25519_key, tryon_initdata *out,
                                             tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_arena *arena = NULL;
  fields fs;
  tryon_initdata got;
  const field *user = NULL;
  unsigned char key[32];

  memset(&got, 0, sizeof got);
  if (out != NULL) {
    memset(out, 0, sizeof *out);
  }
  st = check_options(init_data, len, opt, err);
  if (st != TRYON_OK) {
    goto out;
  }
  arena = tryon_arena_new(INITDATA_ARENA_LIMIT);
  if (arena == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory checking init data");
    goto out;
  }
  st = parse_fields(init_data, len, arena, &fs, err);
  if (st != TRYON_OK) {
    goto out;
  }
  if (opt->method == TRYON_INITDATA_HMAC) {
    st = check_hmac(&fs, opt->bot_token, arena, err);
  } else {
    if (ed25519_key == NULL) {
      tryon_hex_decode(opt->test_env ? tg_key_test_hex : tg_key_production_hex, 64, key,
                       sizeof key);
      ed25519_key = key;
    }
    st = check_ed25519(&fs, opt->bot_id, ed25519_key, arena, err);
  }
  if (st != TRYON_OK) {
    goto out;
  }
  /* Only signed data gets this far: the rest is read from what Telegram vouched for. */
  st = check_dates(&fs, opt, &got.auth_date, err);
  if (st != TRYON_OK) {
    goto out;
  }
  user = find_field(&fs, "user");
  if (user != NULL) {
    st = parse_user(user, &got.user, err);
    if (st != TRYON_OK) {
      goto out;
    }
    got.has_user = true;
  }
  st = copy_plain_fields(&fs, &got, err);
  if (st != TRYON_OK) {
    goto out;
  }
  if (out != NULL) {
    *out = got;
  }
out:
  tryon_arena_free(arena);
  return st;
}

tryon_status tryon_initdata_verify(const char *init_data, size_t len,
                                   const tryon_initdata_options *opt, tryon_initdata *out,
                                   tryon_err *err) {
  return tryon__initdata_verify_with_key(init_data, len, opt, NULL, out, err);
}

tryon_status tryon_initdata_sign(const char *fields_text, const char *bot_token, char *out,
                                 size_t cap, tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_arena *arena = NULL;
  fields fs;
  char *msg = NULL;
  size_t msg_len = 0;
  unsigned char mac[32];
  char hex[65];
  size_t n = 0;
  size_t need = 0;

  if (out != NULL && cap > 0) {
    out[0] = '\0';
  }
  if (fields_text == NULL || bot_token == NULL || bot_token[0] == '\0' || out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid argument to tryon_initdata_sign");
    goto out;
  }
  n = strlen(fields_text);
  arena = tryon_arena_new(INITDATA_ARENA_LIMIT);
  if (arena == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory signing init data");
    goto out;
  }
  st = parse_fields(fields_text, n, arena, &fs, err);
  if (st != TRYON_OK) {
    st = tryon_err_set(err, TRYON_E_INVALID, "cannot sign: %s",
                       err != NULL ? err->message : "malformed fields");
    goto out;
  }
  if (find_field(&fs, "hash") != NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "cannot sign: the fields already hold a hash");
    goto out;
  }
  st = data_check_string(&fs, "", false, arena, &msg, &msg_len, err);
  if (st != TRYON_OK) {
    goto out;
  }
  st = initdata_mac(bot_token, msg, msg_len, mac, err);
  if (st != TRYON_OK) {
    goto out;
  }
  tryon_hex_encode(mac, sizeof mac, hex);
  need = n + (n > 0 ? 1 : 0) + strlen("hash=") + 64 + 1;
  if (need > cap) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE, "signed init data needs %zu bytes, %zu given", need,
                       cap);
    goto out;
  }
  snprintf(out, cap, "%s%shash=%s", fields_text, n > 0 ? "&" : "", hex);
out:
  tryon_arena_free(arena);
  return st;
}

cJSON *tryon_tg_user_to_json(const tryon_tg_user *u) {
  cJSON *o = cJSON_CreateObject();
  if (o != NULL && u != NULL) {
    cJSON_AddNumberToObject(o, "id", (double)u->id);
    cJSON_AddStringToObject(o, "first_name", u->first_name);
    cJSON_AddStringToObject(o, "last_name", u->last_name);
    cJSON_AddStringToObject(o, "username", u->username);
    cJSON_AddStringToObject(o, "language_code", u->language_code);
    cJSON_AddBoolToObject(o, "is_premium", u->is_premium);
    cJSON_AddStringToObject(o, "photo_url", u->photo_url);
  }
  return o;
}
