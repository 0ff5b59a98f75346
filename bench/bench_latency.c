/*
 * bench_latency - enqueue-to-start latency of a running worker, seen from outside:
 * each of `n` noop jobs (argv[2], default 500) is enqueued in its own transaction,
 * 5 ms apart; the time from the INSERT's commit returning to the arrival of the job's
 * "running" event on tryon_events (sent by the claim's own commit) is one sample.
 * A worker must be running on the database (argv[1]); bench_worker.sh starts one.
 * Prints p50/p99/max in ms; asserts nothing.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Waits for the "running" event of job `id`; false after 5 s. */
static int wait_running(PGconn *l, const char *id) {
  char want[80];
  snprintf(want, sizeof want, "\"job\" : \"%s\", \"state\" : \"running\"", id);
  double deadline = now_ms() + 5000;
  while (now_ms() < deadline) {
    PGnotify *n;
    while ((n = PQnotifies(l)) != NULL) {
      int hit = strstr(n->extra, want) != NULL;
      PQfreemem(n);
      if (hit)
        return 1;
    }
    struct pollfd p = {.fd = PQsocket(l), .events = POLLIN};
    poll(&p, 1, 100);
    PQconsumeInput(l);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_latency CONNINFO [N]\n");
    return 2;
  }
  long n = argc > 2 ? strtol(argv[2], NULL, 10) : 500;
  if (n < 1 || n > 100000)
    n = 500;
  PGconn *l = PQconnectdb(argv[1]), *c = PQconnectdb(argv[1]);
  if (PQstatus(l) != CONNECTION_OK || PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "bench_latency: cannot connect\n");
    return 1;
  }
  PQclear(PQexec(l, "LISTEN tryon_events"));
  double *ms = calloc((size_t)n, sizeof *ms);
  long got = 0;
  for (long i = 0; i < n && ms != NULL; i++) {
    PGresult *r = PQexec(c, "WITH j AS (INSERT INTO jobs (kind) VALUES ('noop') RETURNING id,"
                            " kind) SELECT id::text, pg_notify('tryon_jobs', kind) FROM j");
    double t0 = now_ms();
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      fprintf(stderr, "bench_latency: %s", PQerrorMessage(c));
      PQclear(r);
      break;
    }
    if (wait_running(l, PQgetvalue(r, 0, 0)))
      ms[got++] = now_ms() - t0;
    PQclear(r);
    usleep(5000);
  }
  if (got > 0) {
    qsort(ms, (size_t)got, sizeof *ms, cmp);
    printf("  %ld jobs: p50 %.2f ms, p99 %.2f ms, max %.2f ms (commit returned -> running event"
           " received)\n",
           got, ms[got / 2], ms[(long)((double)(got - 1) * 0.99)], ms[got - 1]);
  }
  if (got < n)
    printf("  %ld jobs never reported running within 5 s\n", n - got);
  free(ms);
  PQfinish(l);
  PQfinish(c);
  return got == n ? 0 : 1;
}
