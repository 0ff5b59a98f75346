/*
 * uuid.c - version 4 and version 7 UUIDs (RFC 9562), text form and strict parsing.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/rand.h>

#include <tryon/core.h>

/*
 * Version 7 layout used here (RFC 9562, section 6.2, method 1): 48 bits of Unix
 * milliseconds, then a 42-bit counter spread over rand_a (12 bits) and the top 30 bits
 * of rand_b, then 32 random bits. The counter is seeded randomly for each new
 * millisecond and incremented for UUIDs made within the same one, so UUIDs from one
 * process sort in creation order even when many share a millisecond. Its seed keeps the
 * top bit clear, leaving at least 2^41 increments before it could wrap.
 */
#define V7_COUNTER_BITS 42
#define V7_COUNTER_MASK ((UINT64_C(1) << V7_COUNTER_BITS) - 1)
#define V7_SEED_MASK (V7_COUNTER_MASK >> 1)
#define V7_MS_MASK ((UINT64_C(1) << 48) - 1)

static pthread_mutex_t v7_lock = PTHREAD_MUTEX_INITIALIZER;
static int v7_have_last;
static uint64_t v7_last_ms;
static uint64_t v7_last_counter;

tryon_status tryon_uuid_v4(tryon_uuid *out) {
  tryon_uuid u;

  if (out == NULL) {
    return TRYON_E_INVALID;
  }
  if (RAND_bytes(u.b, (int)sizeof u.b) != 1) {
    return TRYON_E_INTERNAL;
  }
  u.b[6] = (uint8_t)((u.b[6] & 0x0f) | 0x40);
  u.b[8] = (uint8_t)((u.b[8] & 0x3f) | 0x80);
  *out = u;
  return TRYON_OK;
}

tryon_status tryon_uuid_v7(const tryon_clock *clock, tryon_uuid *out) {
  uint8_t rnd[10];
  uint64_t ms;
  uint64_t seed = 0;
  uint64_t counter;
  int64_t now;

  if (out == NULL) {
    return TRYON_E_INVALID;
  }
  /* The RNG is called outside the lock: it is thread-safe and the slowest step. */
  if (RAND_bytes(rnd, (int)sizeof rnd) != 1) {
    return TRYON_E_INTERNAL;
  }
  now = tryon_clock_now_ms(clock);
  /* Before 1970 there is nothing sensible to encode; the field is unsigned. */
  ms = now < 0 ? 0 : (uint64_t)now & V7_MS_MASK;
  for (int i = 0; i < 6; i++) {
    seed = (seed << 8) | rnd[i];
  }
  seed &= V7_SEED_MASK;

  pthread_mutex_lock(&v7_lock);
  /* Only an exact repeat of the millisecond continues the counter. A clock that went
   * back (or another tryon_clock in a test) starts afresh: the timestamp stays the one
   * the clock gave, which matters more than ordering across clocks. */
  if (v7_have_last && ms == v7_last_ms && v7_last_counter < V7_COUNTER_MASK) {
    counter = v7_last_counter + 1;
  } else {
    counter = seed;
  }
  v7_have_last = 1;
  v7_last_ms = ms;
  v7_last_counter = counter;
  pthread_mutex_unlock(&v7_lock);

  for (int i = 0; i < 6; i++) {
    out->b[i] = (uint8_t)(ms >> (40 - 8 * i));
  }
  out->b[6] = (uint8_t)(0x70 | ((counter >> 38) & 0x0f));
  out->b[7] = (uint8_t)(counter >> 30);
  out->b[8] = (uint8_t)(0x80 | ((counter >> 24) & 0x3f));
  out->b[9] = (uint8_t)(counter >> 16);
  out->b[10] = (uint8_t)(counter >> 8);
  out->b[11] = (uint8_t)counter;
  memcpy(out->b + 12, rnd + 6, 4);
  return TRYON_OK;
}

void tryon_uuid_format(const tryon_uuid *u, char out[TRYON_UUID_STR_LEN]) {
  static const char hex[] = "0123456789abcdef";
  char *p = out;

  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      *p++ = '-';
    }
    *p++ = hex[u->b[i] >> 4];
    *p++ = hex[u->b[i] & 0x0f];
  }
  *p = '\0';
}

tryon_status tryon_uuid_parse(const char *s, tryon_uuid *out) {
  tryon_uuid u;
  size_t pos = 0;

  if (s == NULL || out == NULL) {
    return TRYON_E_INVALID;
  }
  /* Reading stops at the first bad character, so a short string is never read past its
   * terminator. */
  for (int i = 0; i < 16; i++) {
    int hi;
    int lo;

    if (i == 4 || i == 6 || i == 8 || i == 10) {
      if (s[pos] != '-') {
        return TRYON_E_INVALID;
      }
      pos++;
    }
    hi = tryon_hex_digit(s[pos]);
    if (hi < 0) {
      return TRYON_E_INVALID;
    }
    lo = tryon_hex_digit(s[pos + 1]);
    if (lo < 0) {
      return TRYON_E_INVALID;
    }
    u.b[i] = (uint8_t)(hi << 4 | lo);
    pos += 2;
  }
  if (s[pos] != '\0') {
    return TRYON_E_INVALID;
  }
  *out = u;
  return TRYON_OK;
}

bool tryon_uuid_valid(const char *s) {
  tryon_uuid u;

  /* tryon_uuid_parse refuses anything after the 36th character. */
  return s != NULL && tryon_uuid_parse(s, &u) == TRYON_OK;
}
