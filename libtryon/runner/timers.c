/*
 * The runner's timers: a binary min-heap of tryon__timer (embedded in what owns them;
 * `idx` is the heap slot or SIZE_MAX), on the loop thread only. Arming a timer that is
 * armed moves it; the heap is sized at start so arming never allocates while it runs.
 */
#include <stdlib.h>

#include "runner_internal.h"

static void heap_swap(tryon_runner *r, size_t a, size_t b) {
  tryon__timer *t = r->heap[a];
  r->heap[a] = r->heap[b];
  r->heap[b] = t;
  r->heap[a]->idx = a;
  r->heap[b]->idx = b;
}

static void heap_up(tryon_runner *r, size_t i) {
  while (i > 0 && r->heap[(i - 1) / 2]->due > r->heap[i]->due) {
    heap_swap(r, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(tryon_runner *r, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < r->nheap && r->heap[l]->due < r->heap[m]->due)
      m = l;
    if (l + 1 < r->nheap && r->heap[l + 1]->due < r->heap[m]->due)
      m = l + 1;
    if (m == i)
      return;
    heap_swap(r, i, m);
    i = m;
  }
}

void tryon__timer_cancel(tryon_runner *r, tryon__timer *t) {
  if (t->idx == SIZE_MAX)
    return;
  size_t i = t->idx;
  r->nheap--;
  if (i != r->nheap) {
    r->heap[i] = r->heap[r->nheap];
    r->heap[i]->idx = i;
    heap_down(r, i);
    heap_up(r, i);
  }
  t->idx = SIZE_MAX;
}

/* Arms (or re-arms) `t` to fire `ms` from now. false when memory ran out. */
bool tryon__timer_arm(tryon_runner *r, tryon__timer *t, int64_t ms, tryon__timer_fn fire) {
  tryon__timer_cancel(r, t);
  if (r->nheap == r->capheap) {
    size_t cap = r->capheap ? r->capheap * 2 : 64;
    tryon__timer **h = realloc(r->heap, cap * sizeof *h);
    if (h == NULL)
      return false;
    r->heap = h;
    r->capheap = cap;
  }
  t->due = tryon_time_monotonic_ms() + (ms > 0 ? ms : 0);
  t->fire = fire;
  t->idx = r->nheap;
  r->heap[r->nheap++] = t;
  heap_up(r, t->idx);
  return true;
}

void tryon__timers_run_due(tryon_runner *r) {
  int64_t now = tryon_time_monotonic_ms();
  while (r->nheap > 0 && r->heap[0]->due <= now) {
    tryon__timer *t = r->heap[0];
    tryon__timer_cancel(r, t);
    t->fire(r, t);
  }
}
