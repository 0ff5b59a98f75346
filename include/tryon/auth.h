/*
 * tryon/auth.h - who the user is: Telegram Mini App initData checks and session tokens.
 *
 * Sections:
 *   1. Telegram users
 *   2. initData (HMAC-SHA256 with the bot token, or Ed25519 third-party signature)
 *   3. Session tokens (JWT, HS256 only)
 *
 * Nothing here touches the database or the network; everything is pure and safe to call
 * from any number of threads at once. No function logs or echoes initData, a hash, a
 * signature, a token or a secret: statuses and messages say which check failed, never
 * the data.
 */
#ifndef TRYON_AUTH_H
#define TRYON_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- 1. Telegram users */

/* Field sizes in bytes with the NUL; Telegram's limits in characters are smaller, and a
 * character takes at most 4 bytes in UTF-8. */
#define TRYON_TG_NAME_MAX 257
#define TRYON_TG_USERNAME_MAX 129
#define TRYON_TG_LANG_MAX 36
#define TRYON_TG_URL_MAX 2049

/* The `user` object of initData. Strings are "" when absent. */
typedef struct tryon_tg_user {
  int64_t id; /* up to 52 bits: always int64 */
  char first_name[TRYON_TG_NAME_MAX];
  char last_name[TRYON_TG_NAME_MAX];
  char username[TRYON_TG_USERNAME_MAX];
  char language_code[TRYON_TG_LANG_MAX];
  char photo_url[TRYON_TG_URL_MAX];
  bool is_premium;
  bool allows_write_to_pm;
} tryon_tg_user;

/*
 * The Telegram user `u` (borrowed for the call) as JSON: a new object {"id",
 * "first_name","last_name","username","language_code","is_premium","photo_url"}, the
 * profile as Telegram names it ("id" is the Telegram id). tryonctl initdata verify
 * prints it; tryon_user_to_json builds on it. The caller owns the object (cJSON_Delete,
 * or add it to a parent). NULL when out of memory. Pure; thread-safe.
 */
TRYON_API cJSON *tryon_tg_user_to_json(const tryon_tg_user *u);

/* ------------------------------------------------------------------------ 2. initData */

typedef enum tryon_initdata_method {
  TRYON_INITDATA_HMAC = 0,    /* hash = HMAC-SHA256(HMAC-SHA256("WebAppData", token), dcs) */
  TRYON_INITDATA_ED25519 = 1, /* signature over "<bot_id>:WebAppData\n" + dcs */
} tryon_initdata_method;

typedef struct tryon_initdata_options {
  tryon_initdata_method method;
  const char *bot_token;    /* HMAC: required. Borrowed for the call. */
  int64_t bot_id;           /* Ed25519: required (the number before ':' in the token) */
  bool test_env;            /* Ed25519: Telegram's test-environment public key */
  int64_t max_age_s;        /* auth_date older than this is refused; 0: no age check */
  int64_t max_future_s;     /* auth_date ahead of now by more than this is refused; 0: 60 */
  const tryon_clock *clock; /* NULL: the system clock */
} tryon_initdata_options;

/* What a valid initData says. Strings are "" when absent. */
typedef struct tryon_initdata {
  tryon_tg_user user;
  bool has_user;
  int64_t auth_date; /* Unix seconds */
  char query_id[129];
  char chat_type[33];
  char chat_instance[33];
  char start_param[513];
} tryon_initdata;

/*
 * Checks `init_data` (`len` bytes, the query string exactly as the client sent it) and
 * fills `out` (optional) with its fields.
 *
 * Parsing: `&`-separated `key=value` pairs, percent-decoded with `+` as a space;
 * malformed escapes, empty keys or a pair without `=` → E_INITDATA_MALFORMED; a key seen
 * twice → E_INITDATA_DUPLICATE_KEY. The data-check string is every pair but `hash`
 * (HMAC) or but `hash` and `signature` (Ed25519), decoded, sorted by key, joined as
 * `key=value` lines with "\n", the values byte for byte as decoded (the user JSON is
 * never re-serialised, so `\/` escapes are hashed as sent).
 *
 * Checks, in this order: HMAC needs `hash` (E_INITDATA_MISSING_HASH), 64 hex digits
 * compared in constant time (E_INITDATA_BAD_HASH); Ed25519 needs `signature`
 * (E_INITDATA_MISSING_FIELD), base64url without padding, verified against Telegram's
 * production or test key (E_INITDATA_BAD_SIGNATURE); `auth_date` present and a decimal
 * integer (E_INITDATA_MISSING_FIELD / E_INITDATA_MALFORMED), not older than max_age_s
 * (E_INITDATA_EXPIRED), not ahead by more than max_future_s (E_INITDATA_FROM_FUTURE);
 * `user`, when present, a JSON object whose id is a positive integer, or the same as a
 * decimal string (E_INITDATA_MALFORMED); libtryon/auth/CLAUDE.md has the details.
 * Bad options → E_INVALID. Input over 64 KiB → E_INITDATA_MALFORMED.
 */
TRYON_API tryon_status tryon_initdata_verify(const char *init_data, size_t len,
                                             const tryon_initdata_options *opt, tryon_initdata *out,
                                             tryon_err *err);

/*
 * Appends `hash=<hex>` to a query string of fields, as Telegram would sign it with
 * `bot_token` (HMAC method). `fields` is "k=v&k=v" already percent-encoded, without a
 * hash. Writes a NUL-terminated string into `out` (caller-owned, `cap` bytes);
 * E_TOO_LARGE if it does not fit. For tests, benchmarks and the local development
 * sign-in; never used to accept data.
 */
TRYON_API tryon_status tryon_initdata_sign(const char *fields, const char *bot_token, char *out,
                                           size_t cap, tryon_err *err);

/* ------------------------------------------------------------------- 3. Session tokens */

#define TRYON_JWT_SECRET_MIN 32 /* bytes */
#define TRYON_JWT_MAX 512       /* a token we issue always fits */

typedef struct tryon_jwt_claims {
  int64_t sub; /* our users.id (as a decimal string in the token) */
  int64_t iat; /* Unix seconds */
  int64_t exp; /* Unix seconds */
  char jti[TRYON_UUID_STR_LEN];
} tryon_jwt_claims;

/*
 * Issues an HS256 JWT for user `sub` valid `ttl_s` seconds from now:
 * header {"alg":"HS256","typ":"JWT"}, claims {"sub":"<id>","iat","exp","jti"}.
 * `secret` must be at least TRYON_JWT_SECRET_MIN bytes (E_INVALID otherwise).
 * Writes the token into `out` (caller-owned, `cap` bytes, TRYON_JWT_MAX suffices) and
 * the claims into `claims` (optional).
 */
TRYON_API tryon_status tryon_jwt_issue(const char *secret, size_t secret_len, int64_t sub,
                                       int64_t ttl_s, const tryon_clock *clock, char *out,
                                       size_t cap, tryon_jwt_claims *claims, tryon_err *err);

/*
 * Verifies `token` (`len` bytes) and fills `claims` (optional). Accepts only a header
 * whose alg is exactly "HS256" (alg "none", "RS256", "HS512", a missing alg →
 * E_TOKEN_BAD_ALG); base64url without padding in three dot-separated parts, JSON
 * objects, `sub` a decimal string, `exp` and `iat` integers (E_TOKEN_MALFORMED);
 * signature compared in constant time (E_TOKEN_BAD_SIGNATURE); now > exp + leeway →
 * E_TOKEN_EXPIRED; iat > now + leeway → E_TOKEN_NOT_YET_VALID. An empty token →
 * E_TOKEN_MISSING. Tokens over TRYON_JWT_MAX*4 bytes → E_TOKEN_MALFORMED.
 */
TRYON_API tryon_status tryon_jwt_verify(const char *secret, size_t secret_len, const char *token,
                                        size_t len, int64_t leeway_s, const tryon_clock *clock,
                                        tryon_jwt_claims *claims, tryon_err *err);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_AUTH_H */
