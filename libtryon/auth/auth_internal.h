/*
 * auth_internal.h - helpers shared by the files of libtryon/auth and its tests, not part
 * of the API: strict base64url and hex, exact integers out of JSON and decimal text,
 * saturating time arithmetic, and initData verification against a given Ed25519 key.
 */
#ifndef TRYON_AUTH_INTERNAL_H
#define TRYON_AUTH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/auth.h>

/* The largest integer a JSON number (an IEEE double) holds exactly: 2^53 - 1. */
#define TRYON__JSON_INT_MAX INT64_C(9007199254740991)

/* Characters base64url without padding takes for `n` bytes. */
size_t tryon__b64url_encoded_len(size_t n);

/* Writes base64url without padding of `in[0..n)` and a NUL into `out` (`cap` bytes).
 * Returns the length written, or 0 with out unchanged when it does not fit (n > 0). */
size_t tryon__b64url_encode(const void *in, size_t n, char *out, size_t cap);

/*
 * Decodes strict base64url without padding: only A-Z a-z 0-9 - _, no '=', no white
 * space, a length that is not 1 modulo 4, and unused trailing bits zero (so each byte
 * string has exactly one accepted text form). Writes at most `cap` bytes to `out` and
 * their number to `*out_len`. Returns false on any violation or when `cap` is short.
 */
bool tryon__b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *out_len);

/* Hex digits: tryon_hex_digit, tryon_hex_decode and tryon_hex_encode in tryon/core.h. */

/* A JSON number that is integral and within +-(2^53 - 1), where a double is exact.
 * False for anything else (fractions, larger magnitudes, non-numbers, NULL). */
bool tryon__json_int(const cJSON *item, int64_t *out);

/* Plain decimal digits `s[0..n)` (no sign, no blanks, 1 to 19 digits) within int64. */
bool tryon__dec_i64(const char *s, size_t n, int64_t *out);

/* As tryon__dec_i64, and also canonical and positive: no leading zero. */
bool tryon__dec_positive_i64(const char *s, size_t n, int64_t *out);

/* Whether a JSON object has two members of the same name. */
bool tryon__json_has_duplicate_keys(const cJSON *obj);

/* a + b and a - b, clamped to the int64 range instead of overflowing. */
int64_t tryon__sat_add(int64_t a, int64_t b);
int64_t tryon__sat_sub(int64_t a, int64_t b);

/* Whole Unix seconds of `clock` (NULL: the system clock), rounded down. */
int64_t tryon__now_s(const tryon_clock *clock);

/*
 * tryon_initdata_verify with the Ed25519 public key given (32 bytes) instead of one of
 * Telegram's; NULL chooses Telegram's key by opt->test_env. Lets the tests check the
 * Ed25519 path with vectors signed by a throw-away key.
 */
tryon_status tryon__initdata_verify_with_key(const char *init_data, size_t len,
                                             const tryon_initdata_options *opt,
                                             const unsigned char *ed25519_key, tryon_initdata *out,
                                             tryon_err *err);

#endif /* TRYON_AUTH_INTERNAL_H */
