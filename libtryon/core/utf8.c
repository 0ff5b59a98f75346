/*
 * utf8.c - just enough UTF-8 to truncate and sanitise text without breaking it.
 */
#include "internal.h"

#include <tryon/core.h>

size_t tryon__utf8_seq_len(const unsigned char *s, size_t n) {
  size_t len = 0;
  unsigned lo = 0x80;
  unsigned hi = 0xbf;

  if (n == 0) {
    return 0;
  }
  if (s[0] < 0x80) {
    return 1;
  }
  /* The second byte's range depends on the lead byte: that is how overlong forms,
   * surrogates and code points past U+10FFFF are excluded (RFC 3629, section 4). */
  if (s[0] >= 0xc2 && s[0] <= 0xdf) {
    len = 2;
  } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    len = 3;
    if (s[0] == 0xe0) {
      lo = 0xa0;
    } else if (s[0] == 0xed) {
      hi = 0x9f;
    }
  } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    len = 4;
    if (s[0] == 0xf0) {
      lo = 0x90;
    } else if (s[0] == 0xf4) {
      hi = 0x8f;
    }
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) {
    return 0;
  }
  for (size_t i = 2; i < len; i++) {
    if (s[i] < 0x80 || s[i] > 0xbf) {
      return 0;
    }
  }
  return len;
}

int tryon__utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;

  while (i < n) {
    size_t len = tryon__utf8_seq_len(p + i, n - i);
    if (len == 0) {
      return 0;
    }
    i += len;
  }
  return 1;
}

size_t tryon__utf8_trim_partial(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t start = n;
  size_t want = 0;

  /* Walk back over at most three continuation bytes to the lead byte of the last
   * sequence; only that sequence can have been cut. */
  while (start > 0 && n - start < 4) {
    start--;
    if ((p[start] & 0xc0) != 0x80) {
      break;
    }
  }
  if (start == n) {
    return n;
  }
  if (p[start] >= 0xf0) {
    want = 4;
  } else if (p[start] >= 0xe0) {
    want = 3;
  } else if (p[start] >= 0xc0) {
    want = 2;
  } else {
    want = 1;
  }
  return n - start < want ? start : n;
}

bool tryon_utf8_valid(const char *s, size_t n) {
  return tryon__utf8_valid(s, n) != 0;
}

size_t tryon_utf8_prefix(const char *s, size_t n) {
  return tryon__utf8_trim_partial(s, n);
}
