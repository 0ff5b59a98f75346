/*
 * internal.h - helpers shared by the files of libtryon/core, not part of the API.
 */
#ifndef TRYON_CORE_INTERNAL_H
#define TRYON_CORE_INTERNAL_H

#include <stddef.h>

/* The length of `s[0..n)` without a multi-byte UTF-8 sequence cut short at its end, so
 * that text truncated to fit a buffer stays valid UTF-8. */
size_t tryon__utf8_trim_partial(const char *s, size_t n);

/* Whether `s[0..n)` is well-formed UTF-8 (no overlong forms, no surrogates). */
int tryon__utf8_valid(const char *s, size_t n);

/* The length of one well-formed UTF-8 sequence at the start of `s[0..n)`, or 0 when the
 * bytes there are not one. */
size_t tryon__utf8_seq_len(const unsigned char *s, size_t n);

#endif /* TRYON_CORE_INTERNAL_H */
