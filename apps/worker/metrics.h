/* The worker's health and metrics listener (loopback only). */
#ifndef TRYON_WORKER_METRICS_H
#define TRYON_WORKER_METRICS_H

#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/runner.h>

typedef struct tryon_worker_metrics tryon_worker_metrics;

/* Serves GET /healthz and GET /metrics on 127.0.0.1:port from its own thread. */
tryon_status tryon_worker_metrics_start(int port, tryon_runner *runner, tryon_db *db,
                                        tryon_worker_metrics **out, tryon_err *err);
/* Stops the listener; NULL is a no-op. */
void tryon_worker_metrics_stop(tryon_worker_metrics *m);

#endif
