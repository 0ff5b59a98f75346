/*
 * The runner's DB threads: a locked queue of tryon__task (back for job steps, front for
 * the runner's own upkeep), each task run with a pooled connection leased for it alone
 * (or none, for tryon_run_work), then pushed on a done list and announced through the
 * eventfd. The loop drains the done list in FIFO order.
 */
#include <stdlib.h>
#include <unistd.h>

#include "runner_internal.h"

void tryon__runner_wake(tryon_runner *r) {
  uint64_t one = 1;
  /* A full counter already means "wake up": nothing to do on EAGAIN. */
  ssize_t w = write(r->wake_fd, &one, sizeof one);
  (void)w;
}

void tryon__runner_submit(tryon_runner *r, tryon__task *t) {
  t->next = NULL;
  t->st = TRYON_OK;
  tryon_err_clear(&t->err);
  r->inflight++;
  pthread_mutex_lock(&r->mu);
  if (r->todo_tail != NULL)
    r->todo_tail->next = t;
  else
    r->todo_head = t;
  r->todo_tail = t;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

void tryon__runner_submit_urgent(tryon_runner *r, tryon__task *t) {
  t->st = TRYON_OK;
  tryon_err_clear(&t->err);
  r->inflight++;
  pthread_mutex_lock(&r->mu);
  t->next = r->todo_head;
  r->todo_head = t;
  if (r->todo_tail == NULL)
    r->todo_tail = t;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void *db_thread(void *arg) {
  tryon_runner *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->todo_head == NULL && !r->quit)
      pthread_cond_wait(&r->cv, &r->mu);
    tryon__task *t = r->todo_head;
    if (t == NULL) { /* quitting with nothing left */
      pthread_mutex_unlock(&r->mu);
      break;
    }
    r->todo_head = t->next;
    if (r->todo_head == NULL)
      r->todo_tail = NULL;
    pthread_mutex_unlock(&r->mu);

    tryon_db_conn *c = NULL;
    t->st = t->no_conn ? TRYON_OK : tryon_db_acquire(r->opt.db, &c, &t->err);
    if (t->st == TRYON_OK)
      t->st = t->fn(r, c, t, &t->err);
    tryon_db_release(c);

    pthread_mutex_lock(&r->mu);
    t->next = r->done_list;
    r->done_list = t;
    pthread_mutex_unlock(&r->mu);
    tryon__runner_wake(r);
  }
  return NULL;
}

void tryon__tasks_drain_done(tryon_runner *r) {
  pthread_mutex_lock(&r->mu);
  tryon__task *list = r->done_list;
  r->done_list = NULL;
  pthread_mutex_unlock(&r->mu);
  tryon__task *fifo = NULL; /* the list is newest first: turn it around */
  while (list != NULL) {
    tryon__task *n = list->next;
    list->next = fifo;
    fifo = list;
    list = n;
  }
  while (fifo != NULL) {
    tryon__task *t = fifo;
    fifo = t->next;
    r->inflight--;
    t->done(r, t);
  }
}

tryon_status tryon__threads_start(tryon_runner *r, tryon_err *err) {
  tryon_status st = TRYON_OK;
  r->threads = calloc((size_t)r->opt.db_threads, sizeof *r->threads);
  if (r->threads == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  for (r->nthreads = 0; r->nthreads < r->opt.db_threads; r->nthreads++) {
    if (pthread_create(&r->threads[r->nthreads], NULL, db_thread, r) != 0)
      break;
  }
  if (r->nthreads == 0) {
    free(r->threads);
    r->threads = NULL;
    st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot start database threads");
  }
out:
  return st;
}

void tryon__threads_stop(tryon_runner *r) {
  pthread_mutex_lock(&r->mu);
  r->quit = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < r->nthreads; i++)
    pthread_join(r->threads[i], NULL);
  free(r->threads);
  r->threads = NULL;
  r->nthreads = 0;
}
