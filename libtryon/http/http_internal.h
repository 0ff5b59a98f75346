/*
 * http_internal.h - the pure decisions of libtryon/http (policy.c), shared with the
 * transfer code (http.c) and reached by the unit tests; not part of the API.
 */
#ifndef TRYON_HTTP_INTERNAL_H
#define TRYON_HTTP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <tryon/core.h>

/* Whether an attempt that ended with a transport error `code` may be tried again:
 * resolve, connect, send/receive, empty reply, partial body, handshake and timeouts
 * yes; TLS verification, a bad URL, an unsupported protocol, a write abort no. */
int tryon__http_code_retryable(CURLcode code);

/* The status a transport error maps to (TRYON_E_TIMEOUT, TRYON_E_TOO_LARGE,
 * TRYON_E_NOMEM, TRYON_E_INVALID for a malformed URL, TRYON_E_NETWORK otherwise). */
tryon_status tryon__http_code_status(CURLcode code);

/* Whether an HTTP status may be tried again: 408, 429 and 5xx. */
int tryon__http_status_retryable(long status);

/* The delay a Retry-After value `v[0..n)` asks for, in ms: delta seconds (digits only)
 * or an HTTP-date compared with `now_ms`; a date in the past gives 0. -1 when the value
 * is neither. Delta seconds saturate at a day. */
int64_t tryon__http_parse_retry_after(const char *v, size_t n, int64_t now_ms);

/* A random delay in [0, min(base * 2^(attempt-1), TRYON_HTTP_BACKOFF_CAP_MS)] from the
 * xorshift state `*rng` (never 0). `attempt` counts from 1. */
int64_t tryon__http_backoff_ms(uint64_t *rng, int64_t base_ms, int attempt);

/* A seed for the xorshift state from OpenSSL's CSPRNG (never 0). */
uint64_t tryon__http_seed(void);

/* Copies URL path `path` into `out` (`cap` >= 2) for a log line: no query or fragment,
 * any segment containing ':' replaced by "***", cut short to fit. */
void tryon__http_log_path(const char *path, char *out, size_t cap);

/* Whether a socket address is public: not unspecified, loopback, private (10/8,
 * 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), CGNAT
 * (100.64/10), "this network" (0/8), multicast or broadcast; IPv4-mapped IPv6
 * addresses are judged as IPv4. */
bool tryon__http_address_public(const struct sockaddr *sa);

#endif /* TRYON_HTTP_INTERNAL_H */
