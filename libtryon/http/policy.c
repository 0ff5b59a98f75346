/*
 * policy.c - what libtryon/http decides without touching the network: which failures
 * are worth another attempt, how long to wait, what a Retry-After says, and what of a
 * URL may appear in a log line.
 */
#include <netinet/in.h>
#include <string.h>

#include <openssl/rand.h>
#include <tryon/http.h>

#include "http/http_internal.h"

int tryon__http_code_retryable(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
    /* A failed handshake (reset mid-way, a middlebox) is transient; a certificate that
     * does not verify is CURLE_PEER_FAILED_VERIFICATION and is never retried. */
    case CURLE_SSL_CONNECT_ERROR:
      return 1;
    default:
      return 0;
  }
}

tryon_status tryon__http_code_status(CURLcode code) {
  switch (code) {
    case CURLE_OK:
      return TRYON_OK;
    case CURLE_OPERATION_TIMEDOUT:
      return TRYON_E_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
      return TRYON_E_TOO_LARGE;
    case CURLE_OUT_OF_MEMORY:
      return TRYON_E_NOMEM;
    case CURLE_URL_MALFORMAT:
      return TRYON_E_INVALID;
    default:
      return TRYON_E_NETWORK;
  }
}

int tryon__http_status_retryable(long status) {
  return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

#define DAY_S 86400

int64_t tryon__http_parse_retry_after(const char *v, size_t n, int64_t now_ms) {
  int64_t out = -1;
  while (n > 0 && (*v == ' ' || *v == '\t')) {
    v++;
    n--;
  }
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
    n--;
  if (n == 0)
    goto out;
  size_t digits = 0;
  while (digits < n && v[digits] >= '0' && v[digits] <= '9')
    digits++;
  if (digits == n) {
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) {
      s = s * 10 + (v[i] - '0');
      if (s > DAY_S) {
        s = DAY_S;
        break;
      }
    }
    out = s * 1000;
    goto out;
  }
  /* An HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"; the obsolete forms also start with
   * the day's name). curl_getdate is lenient, so anything else is refused first; it
   * wants a C string. */
  char date[64];
  if (n >= sizeof date || !((v[0] >= 'A' && v[0] <= 'Z') || (v[0] >= 'a' && v[0] <= 'z')))
    goto out;
  memcpy(date, v, n);
  date[n] = '\0';
  time_t t = curl_getdate(date, NULL);
  if (t == (time_t)-1)
    goto out;
  int64_t d = (int64_t)t * 1000 - now_ms;
  out = d > 0 ? d : 0;
out:
  return out;
}

static uint64_t xorshift64s(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int64_t tryon__http_backoff_ms(uint64_t *rng, int64_t base_ms, int attempt) {
  int64_t ceiling = base_ms > 0 ? base_ms : 0;
  for (int i = 1; i < attempt && ceiling < TRYON_HTTP_BACKOFF_CAP_MS; i++)
    ceiling *= 2;
  if (ceiling > TRYON_HTTP_BACKOFF_CAP_MS)
    ceiling = TRYON_HTTP_BACKOFF_CAP_MS;
  if (ceiling == 0)
    return 0;
  return (int64_t)(xorshift64s(rng) % (uint64_t)(ceiling + 1));
}

uint64_t tryon__http_seed(void) {
  uint64_t s = 0;
  if (RAND_bytes((unsigned char *)&s, (int)sizeof s) != 1)
    s = (uint64_t)tryon_time_monotonic_ms() ^ (uint64_t)(uintptr_t)&s;
  return s != 0 ? s : 0x9E3779B97F4A7C15ULL;
}

void tryon__http_log_path(const char *path, char *out, size_t cap) {
  size_t o = 0;
  const char *p = path != NULL ? path : "";
  if (cap == 0)
    return;
  while (*p != '\0' && *p != '?' && *p != '#') {
    /* One segment: up to the next '/', '?', '#' or the end. */
    size_t n = strcspn(p, "/?#");
    int secret = memchr(p, ':', n) != NULL;
    for (size_t i = 0; !secret && i + 2 < n; i++)
      secret = p[i] == '%' && p[i + 1] == '3' && (p[i + 2] == 'a' || p[i + 2] == 'A');
    const char *seg = secret ? "***" : p;
    size_t len = secret ? 3 : n;
    for (size_t i = 0; i < len && o + 1 < cap; i++)
      out[o++] = seg[i];
    p += n;
    if (*p == '/') {
      if (o + 1 < cap)
        out[o++] = '/';
      p++;
    }
  }
  out[o] = '\0';
}

/* ------------------------------------------------------------- public addresses */

/* A prefix of `bits` bits: `addr` holds them (the rest is zero). */
typedef struct prefix {
  unsigned char addr[16];
  int bits;
} prefix;

static bool in_prefix(const unsigned char *a, const prefix *p) {
  int whole = p->bits / 8, rest = p->bits % 8;
  if (memcmp(a, p->addr, (size_t)whole) != 0)
    return false;
  return rest == 0 || ((a[whole] ^ p->addr[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static bool in_any(const unsigned char *a, const prefix *table, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (in_prefix(a, &table[i]))
      return true;
  return false;
}

/* IPv4 ranges that are not the public Internet (IANA special-purpose registry). */
static const prefix v4_inward[] = {
    {{0}, 8},             /* 0/8 "this network" */
    {{10}, 8},            /* private */
    {{100, 64}, 10},      /* carrier-grade NAT */
    {{127}, 8},           /* loopback */
    {{169, 254}, 16},     /* link-local (cloud metadata lives here) */
    {{172, 16}, 12},      /* private */
    {{192, 0, 0}, 24},    /* IETF protocol assignments */
    {{192, 0, 2}, 24},    /* TEST-NET-1 */
    {{192, 88, 99}, 24},  /* deprecated 6to4 relay anycast */
    {{192, 168}, 16},     /* private */
    {{198, 18}, 15},      /* benchmarking */
    {{198, 51, 100}, 24}, /* TEST-NET-2 */
    {{203, 0, 113}, 24},  /* TEST-NET-3 */
    {{224}, 3},           /* 224/4 multicast, 240/4 reserved, broadcast */
};

/* IPv6 ranges that are not the public Internet, or that carry an IPv4 address a relay
 * or translator would reach on our behalf (NAT64, 6to4, Teredo, IPv4-compatible), so
 * that no inward IPv4 address can be reached through an IPv6 spelling of it. */
static const prefix v6_inward[] = {
    {{0}, 96},                                  /* ::/96: ::, ::1, IPv4-compatible */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96}, /* ::ffff:0:0:0/96 SIIT translated */
    {{0, 0x64, 0xff, 0x9b}, 96},                /* 64:ff9b::/96 NAT64 */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48},          /* 64:ff9b:1::/48 local NAT64 */
    {{0x01, 0x00}, 64},                         /* 100::/64 discard */
    {{0x20, 0x01, 0x00, 0x00}, 32},             /* 2001::/32 Teredo */
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48}, /* 2001:2::/48 benchmarking */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},             /* 2001:db8::/32 documentation */
    {{0x20, 0x01, 0x00, 0x10}, 28},             /* 2001:10::/28 ORCHID */
    {{0x20, 0x01, 0x00, 0x20}, 28},             /* 2001:20::/28 ORCHIDv2 */
    {{0x20, 0x02}, 16},                         /* 2002::/16 6to4 */
    {{0x3f, 0xff, 0x00}, 20},                   /* 3fff::/20 documentation */
    {{0x5f, 0x00}, 16},                         /* 5f00::/16 SRv6 SIDs */
    {{0xfc}, 7},                                /* fc00::/7 unique local */
    {{0xfe, 0x80}, 10},                         /* fe80::/10 link-local */
    {{0xfe, 0xc0}, 10},                         /* fec0::/10 site-local */
    {{0xff}, 8},                                /* multicast */
};

static bool v4_public(const unsigned char *a) {
  unsigned char v6[16] = {0};
  memcpy(v6, a, 4);
  return !in_any(v6, v4_inward, sizeof v4_inward / sizeof v4_inward[0]);
}

bool tryon__http_address_public(const struct sockaddr *sa) {
  if (sa == NULL)
    return false;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    return v4_public((const unsigned char *)&in->sin_addr.s_addr);
  }
  if (sa->sa_family != AF_INET6)
    return false;
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
  const unsigned char *a = in6->sin6_addr.s6_addr;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(a, mapped, 12) == 0) /* ::ffff:a.b.c.d is the IPv4 address itself */
    return v4_public(a + 12);
  return !in_any(a, v6_inward, sizeof v6_inward / sizeof v6_inward[0]);
}
