/*
 * Hex codecs and a fast non-cryptographic string hash, shared by every module.
 */
#include <string.h>

#include <tryon/core.h>

#include "internal.h"

int tryon_hex_digit(int c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool tryon_hex_decode(const char *s, size_t n, unsigned char *out, size_t out_len) {
  if (s == NULL || n != 2 * out_len) {
    return false;
  }
  for (size_t i = 0; i < out_len; i++) {
    int hi = tryon_hex_digit((unsigned char)s[2 * i]);
    int lo = tryon_hex_digit((unsigned char)s[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return true;
}

void tryon_hex_encode(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";

  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

uint64_t tryon_hash64(const char *s) {
  /* FNV-1a, 64 bits. */
  uint64_t h = 14695981039346656037ULL;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h;
}

size_t tryon_utf8_copy(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap)
    n = tryon__utf8_trim_partial(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
  return n;
}

size_t tryon_utf8_chars(const char *s) {
  size_t n = 0;

  for (; *s != '\0'; s++) {
    n += ((unsigned char)*s & 0xc0) != 0x80;
  }
  return n;
}
