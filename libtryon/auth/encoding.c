/*
 * encoding.c - the strict text forms the auth checks rely on: base64url, hex, exact
 * integers from JSON and decimal text, and time arithmetic that cannot overflow.
 */
#include <string.h>

#include "auth/auth_internal.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '-') {
    return 62;
  }
  if (c == '_') {
    return 63;
  }
  return -1;
}

size_t tryon__b64url_encoded_len(size_t n) {
  return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

size_t tryon__b64url_encode(const void *in, size_t n, char *out, size_t cap) {
  const unsigned char *p = in;
  size_t len = tryon__b64url_encoded_len(n);
  size_t o = 0;
  size_t i = 0;

  if (out == NULL || cap < len + 1) {
    return 0;
  }
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    out[o++] = b64url_alphabet[v >> 18];
    out[o++] = b64url_alphabet[(v >> 12) & 63];
    out[o++] = b64url_alphabet[(v >> 6) & 63];
    out[o++] = b64url_alphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    out[o++] = b64url_alphabet[v >> 18];
    out[o++] = b64url_alphabet[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    out[o++] = b64url_alphabet[v >> 18];
    out[o++] = b64url_alphabet[(v >> 12) & 63];
    out[o++] = b64url_alphabet[(v >> 6) & 63];
  }
  out[o] = '\0';
  return o;
}

bool tryon__b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap,
                          size_t *out_len) {
  size_t rem = n % 4;
  size_t need = n / 4 * 3 + (rem == 0 ? 0 : rem - 1);
  size_t o = 0;
  size_t i = 0;
  int v[4];

  /* One character left over carries only 6 bits: no byte can end there. */
  if ((s == NULL && n > 0) || rem == 1 || need > cap) {
    return false;
  }
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; k++) {
      v[k] = b64url_value((unsigned char)s[i + (size_t)k]);
      if (v[k] < 0) {
        return false;
      }
    }
    out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
    out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
  }
  for (size_t k = 0; k < rem; k++) {
    v[k] = b64url_value((unsigned char)s[i + k]);
    if (v[k] < 0) {
      return false;
    }
  }
  /* The bits past the last whole byte must be zero: otherwise several texts would
   * decode to the same bytes, and a signature could be "changed" without changing. */
  if (rem == 2) {
    if ((v[1] & 15) != 0) {
      return false;
    }
    out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
  } else if (rem == 3) {
    if ((v[2] & 3) != 0) {
      return false;
    }
    out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
    out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
  }
  if (out_len != NULL) {
    *out_len = o;
  }
  return true;
}

bool tryon__json_int(const cJSON *item, int64_t *out) {
  double d;
  int64_t v;

  if (!cJSON_IsNumber(item)) {
    return false;
  }
  d = item->valuedouble;
  /* The range test comes first (and is false for NaN) so the cast below is defined. */
  if (!(d >= -(double)TRYON__JSON_INT_MAX && d <= (double)TRYON__JSON_INT_MAX)) {
    return false;
  }
  v = (int64_t)d;
  if ((double)v != d) {
    return false;
  }
  *out = v;
  return true;
}

bool tryon__dec_i64(const char *s, size_t n, int64_t *out) {
  int64_t v = 0;

  if (s == NULL || n == 0 || n > 19) {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    int d = s[i] - '0';
    if (s[i] < '0' || s[i] > '9' || v > (INT64_MAX - d) / 10) {
      return false;
    }
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool tryon__dec_positive_i64(const char *s, size_t n, int64_t *out) {
  int64_t v = 0;

  if (s == NULL || n == 0 || s[0] == '0' || !tryon__dec_i64(s, n, &v)) {
    return false;
  }
  *out = v;
  return true;
}

bool tryon__json_has_duplicate_keys(const cJSON *obj) {
  /* Objects here are a handful of members: the quadratic scan is the simple choice. */
  for (const cJSON *a = obj != NULL ? obj->child : NULL; a != NULL; a = a->next) {
    for (const cJSON *b = a->next; b != NULL; b = b->next) {
      if (a->string != NULL && b->string != NULL && strcmp(a->string, b->string) == 0) {
        return true;
      }
    }
  }
  return false;
}

int64_t tryon__sat_add(int64_t a, int64_t b) {
  if (b > 0 && a > INT64_MAX - b) {
    return INT64_MAX;
  }
  if (b < 0 && a < INT64_MIN - b) {
    return INT64_MIN;
  }
  return a + b;
}

int64_t tryon__sat_sub(int64_t a, int64_t b) {
  if (b < 0 && a > INT64_MAX + b) {
    return INT64_MAX;
  }
  if (b > 0 && a < INT64_MIN + b) {
    return INT64_MIN;
  }
  return a - b;
}

int64_t tryon__now_s(const tryon_clock *clock) {
  int64_t ms = tryon_clock_now_ms(clock);
  int64_t s = ms / 1000;

  /* Division truncates toward zero; a clock before 1970 still rounds down. */
  if (ms % 1000 < 0) {
    s--;
  }
  return s;
}
