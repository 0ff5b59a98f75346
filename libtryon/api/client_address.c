/*
 * client_address.c - which address a request comes from: the right entry of our
 * proxies' header, or the socket's peer, always in one canonical spelling.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <tryon/api.h>

/* Writes the canonical text of a binary address; an IPv4-mapped IPv6 address is the
 * IPv4 address itself, so a dual-stack socket or proxy never changes a client's key. */
static bool format_addr(int family, const unsigned char *a, char *out, size_t cap) {
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET6 && memcmp(a, mapped, 12) == 0) {
    family = AF_INET;
    a += 12;
  }
  return inet_ntop(family, a, out, (socklen_t)cap) != NULL;
}

/* One header entry, trimmed, without its port: "1.2.3.4:80" → 1.2.3.4, "[v6]:443" → v6,
 * a bare v6 (several colons) as it is. */
static bool parse_entry(const char *s, size_t n, char *out, size_t cap) {
  char text[64];
  unsigned char bin[16];
  while (n > 0 && (*s == ' ' || *s == '\t')) {
    s++;
    n--;
  }
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  if (n > 0 && *s == '[') {
    const char *end = memchr(s, ']', n);
    if (end == NULL)
      return false;
    size_t rest = n - (size_t)(end - s) - 1;
    if (rest > 0 && end[1] != ':')
      return false;
    s++;
    n = (size_t)(end - s);
  } else {
    const char *colon = memchr(s, ':', n);
    if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon - s) - 1) == NULL)
      n = (size_t)(colon - s); /* exactly one colon: IPv4 with a port */
  }
  if (n == 0 || n >= sizeof text)
    return false;
  memcpy(text, s, n);
  text[n] = '\0';
  if (inet_pton(AF_INET, text, bin) == 1)
    return format_addr(AF_INET, bin, out, cap);
  if (inet_pton(AF_INET6, text, bin) == 1)
    return format_addr(AF_INET6, bin, out, cap);
  return false;
}

static void peer_address(const struct sockaddr *sa, char *out, size_t cap) {
  out[0] = '\0';
  if (sa == NULL)
    return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    if (!format_addr(AF_INET, (const unsigned char *)&in->sin_addr, out, cap))
      out[0] = '\0';
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    if (!format_addr(AF_INET6, in6->sin6_addr.s6_addr, out, cap))
      out[0] = '\0';
  }
}

bool tryon_api_client_address(const char *forwarded, int hops, const struct sockaddr *peer,
                              char *out, size_t cap) {
  if (cap == 0)
    return false;
  if (forwarded != NULL && hops >= 1) {
    /* Walk entries from the right: the hops-th one is the client. */
    size_t end = strlen(forwarded);
    for (int seen = 1; seen <= hops; seen++) {
      size_t start = end;
      while (start > 0 && forwarded[start - 1] != ',')
        start--;
      if (seen == hops) {
        if (parse_entry(forwarded + start, end - start, out, cap))
          return true;
        break;
      }
      if (start == 0)
        break; /* fewer entries than hops: the request did not come through them all */
      end = start - 1;
    }
  }
  peer_address(peer, out, cap);
  return false;
}
