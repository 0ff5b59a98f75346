/*
 * buf.c - growable byte buffers with a hard ceiling.
 *
 * Invariants: len <= max; data[len] == '\0'; cap == 0 exactly when data points at the
 * shared empty string, which is never written.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/core.h>

/* The first allocation; small enough for short strings, large enough to skip the first
 * few doublings. */
#define BUF_MIN_CAP 64

static char buf_empty[1];

void tryon_buf_init(tryon_buf *b, size_t max) {
  b->data = buf_empty;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void tryon_buf_release(tryon_buf *b) {
  if (b->cap != 0) {
    free(b->data);
  }
  tryon_buf_init(b, b->max);
}

void tryon_buf_reset(tryon_buf *b) {
  b->len = 0;
  if (b->cap != 0) {
    b->data[0] = '\0';
  }
}

/* Makes room for `want` bytes in total, terminator included (want <= max + 1 is checked
 * by the callers). On failure the buffer is untouched. */
static tryon_status buf_reserve(tryon_buf *b, size_t want) {
  size_t cap = b->cap != 0 ? b->cap : BUF_MIN_CAP;
  char *p;

  if (want <= b->cap) {
    return TRYON_OK;
  }
  /* Doubling keeps appends amortised O(1); past SIZE_MAX / 2 it would overflow, and
   * there is no point in reserving beyond what the ceiling allows. */
  while (cap < want) {
    cap = cap > SIZE_MAX / 2 ? want : cap * 2;
  }
  if (b->max < SIZE_MAX && cap > b->max + 1) {
    cap = b->max + 1;
  }
  p = b->cap != 0 ? realloc(b->data, cap) : malloc(cap);
  if (p == NULL) {
    return TRYON_E_NOMEM;
  }
  if (b->cap == 0) {
    p[0] = '\0';
  }
  b->data = p;
  b->cap = cap;
  return TRYON_OK;
}

/* Whether `n` more bytes fit under the ceiling and in memory arithmetic. */
static tryon_status buf_check_room(const tryon_buf *b, size_t n) {
  if (n > b->max - b->len) {
    return TRYON_E_TOO_LARGE;
  }
  /* len + n <= max, but len + n + 1 (the terminator) may still wrap when max is
   * SIZE_MAX; such a size could never be allocated anyway. */
  if (b->len + n == SIZE_MAX) {
    return TRYON_E_NOMEM;
  }
  return TRYON_OK;
}

tryon_status tryon_buf_append(tryon_buf *b, const void *data, size_t n) {
  const char *src = data;
  tryon_status st;

  if (b == NULL || (data == NULL && n != 0)) {
    return TRYON_E_INVALID;
  }
  if (n == 0) {
    return TRYON_OK;
  }
  st = buf_check_room(b, n);
  if (st != TRYON_OK) {
    return st;
  }
  /* Appending a piece of the buffer to itself must survive the realloc that may move
   * it, so remember the piece by offset. The comparison is on integers because
   * relational operators between unrelated pointers are undefined. */
  if (b->cap != 0 && (uintptr_t)src >= (uintptr_t)b->data &&
      (uintptr_t)src < (uintptr_t)b->data + b->cap) {
    size_t off = (size_t)((uintptr_t)src - (uintptr_t)b->data);
    st = buf_reserve(b, b->len + n + 1);
    src = b->data + off;
  } else {
    st = buf_reserve(b, b->len + n + 1);
  }
  if (st != TRYON_OK) {
    return st;
  }
  memmove(b->data + b->len, src, n);
  b->len += n;
  b->data[b->len] = '\0';
  return TRYON_OK;
}

tryon_status tryon_buf_append_str(tryon_buf *b, const char *s) {
  if (s == NULL) {
    return TRYON_E_INVALID;
  }
  return tryon_buf_append(b, s, strlen(s));
}

tryon_status tryon_buf_appendf(tryon_buf *b, const char *fmt, ...) {
  va_list ap;
  va_list ap2;
  int n;
  size_t avail;
  tryon_status st = TRYON_OK;

  if (b == NULL || fmt == NULL) {
    return TRYON_E_INVALID;
  }
  va_start(ap, fmt);
  va_copy(ap2, ap);
  /* First try the space already there; most appends fit and format only once. */
  avail = b->cap != 0 ? b->cap - b->len : 0;
  n = vsnprintf(avail != 0 ? b->data + b->len : NULL, avail, fmt, ap);
  if (n < 0) {
    st = TRYON_E_INVALID;
    goto out;
  }
  st = buf_check_room(b, (size_t)n);
  if (st != TRYON_OK) {
    goto out;
  }
  if ((size_t)n >= avail) {
    st = buf_reserve(b, b->len + (size_t)n + 1);
    if (st != TRYON_OK) {
      goto out;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
  }
  b->len += (size_t)n;

out:
  /* A failed attempt may have written past len; the terminator hides it again. */
  if (b->cap != 0) {
    b->data[b->len] = '\0';
  }
  va_end(ap2);
  va_end(ap);
  return st;
}

char *tryon_buf_steal(tryon_buf *b, size_t *len_out) {
  char *p = NULL;
  size_t len = 0;

  if (b->cap == 0) {
    p = malloc(1);
    if (p == NULL) {
      goto out;
    }
    p[0] = '\0';
  } else {
    p = b->data;
    len = b->len;
  }
  tryon_buf_init(b, b->max);

out:
  if (len_out != NULL) {
    *len_out = len;
  }
  return p;
}
