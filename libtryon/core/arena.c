/*
 * arena.c - region allocation for one request or one job.
 *
 * Memory comes from a chain of blocks. Small allocations are carved from the newest
 * block; one larger than a quarter of a block gets a block of its own, linked behind the
 * current one so the free space there is not abandoned. Blocks are calloc'ed, and every
 * byte is handed out once, so allocations come back zeroed without a memset.
 */
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/core.h>

#define ARENA_ALIGN (alignof(max_align_t))
#define ARENA_BLOCK_SIZE ((size_t)8192)
#define ARENA_LARGE (ARENA_BLOCK_SIZE / 4)

typedef struct arena_block {
  struct arena_block *next;
  size_t size; /* usable bytes in data */
  size_t used;
  max_align_t data[]; /* the element type gives the payload its alignment */
} arena_block;

typedef struct arena_cleanup {
  struct arena_cleanup *next;
  tryon_cleanup_fn fn;
  void *ptr;
} arena_cleanup;

struct tryon_arena {
  arena_block *head;       /* the block small allocations come from */
  arena_cleanup *cleanups; /* newest first, so running the list is LIFO */
  size_t limit;            /* 0: none */
  size_t used;             /* bytes handed out to callers */
};

tryon_arena *tryon_arena_new(size_t limit) {
  tryon_arena *a = calloc(1, sizeof *a);

  if (a != NULL) {
    a->limit = limit;
  }
  return a;
}

void tryon_arena_free(tryon_arena *a) {
  arena_cleanup *c;
  arena_block *blk;

  if (a == NULL) {
    return;
  }
  /* Pop before calling, so each cleanup runs exactly once even if one of them registers
   * another (its node still lives in a block, which is freed only afterwards). */
  while ((c = a->cleanups) != NULL) {
    a->cleanups = c->next;
    c->fn(c->ptr);
  }
  while ((blk = a->head) != NULL) {
    a->head = blk->next;
    free(blk);
  }
  free(a);
}

static arena_block *block_new(size_t size) {
  arena_block *blk;

  if (size > SIZE_MAX - sizeof *blk) {
    return NULL;
  }
  blk = calloc(1, sizeof *blk + size);
  if (blk != NULL) {
    blk->size = size;
  }
  return blk;
}

/* `n` zeroed, aligned bytes, not counted against the limit (cleanup nodes use it too). */
static void *arena_take(tryon_arena *a, size_t n) {
  arena_block *blk;
  size_t need;
  void *p;

  if (n == 0) {
    n = 1;
  }
  if (n > SIZE_MAX - (ARENA_ALIGN - 1)) {
    return NULL;
  }
  need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);

  if (a->head != NULL && a->head->size - a->head->used >= need) {
    blk = a->head;
  } else if (need > ARENA_LARGE) {
    blk = block_new(need);
    if (blk == NULL) {
      return NULL;
    }
    if (a->head != NULL) {
      blk->next = a->head->next;
      a->head->next = blk;
    } else {
      a->head = blk;
    }
  } else {
    blk = block_new(ARENA_BLOCK_SIZE);
    if (blk == NULL) {
      return NULL;
    }
    blk->next = a->head;
    a->head = blk;
  }
  p = (unsigned char *)blk->data + blk->used;
  blk->used += need;
  return p;
}

void *tryon_arena_alloc(tryon_arena *a, size_t n) {
  void *p;

  if (a == NULL) {
    return NULL;
  }
  if (a->limit != 0 && n > a->limit - a->used) {
    return NULL;
  }
  p = arena_take(a, n);
  if (p != NULL) {
    a->used += n;
  }
  return p;
}

char *tryon_arena_strndup(tryon_arena *a, const char *s, size_t n) {
  char *p;
  size_t len;

  if (s == NULL) {
    return NULL;
  }
  /* Like POSIX strndup, stop at a NUL within the first n bytes, so a caller may pass a
   * bound larger than the string. */
  len = strnlen(s, n);
  if (len == SIZE_MAX) {
    return NULL;
  }
  p = tryon_arena_alloc(a, len + 1);
  if (p != NULL) {
    memcpy(p, s, len);
    p[len] = '\0';
  }
  return p;
}

char *tryon_arena_strdup(tryon_arena *a, const char *s) {
  if (s == NULL) {
    return NULL;
  }
  return tryon_arena_strndup(a, s, strlen(s));
}

char *tryon_arena_sprintf(tryon_arena *a, const char *fmt, ...) {
  va_list ap;
  int n;
  char *p = NULL;

  if (a == NULL || fmt == NULL) {
    return NULL;
  }
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    goto out;
  }
  p = tryon_arena_alloc(a, (size_t)n + 1);
  if (p == NULL) {
    goto out;
  }
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);

out:
  return p;
}

tryon_status tryon_arena_cleanup_add(tryon_arena *a, tryon_cleanup_fn fn, void *ptr) {
  arena_cleanup *c;

  if (fn == NULL) {
    return TRYON_E_INVALID;
  }
  /* Whatever goes wrong, the resource must not leak: release it now. */
  if (a == NULL) {
    fn(ptr);
    return TRYON_E_INVALID;
  }
  c = arena_take(a, sizeof *c);
  if (c == NULL) {
    fn(ptr);
    return TRYON_E_NOMEM;
  }
  c->fn = fn;
  c->ptr = ptr;
  c->next = a->cleanups;
  a->cleanups = c;
  return TRYON_OK;
}

size_t tryon_arena_used(const tryon_arena *a) {
  return a != NULL ? a->used : 0;
}
