/*
 * GET /healthz: 200 while the loop turns (it turns at least every second) and the
 * LISTEN connection is up, 503 otherwise — what a supervisor restarts on.
 * GET /metrics: Prometheus text from the runner's and the pool's counters; reading
 * them takes a mutex each, never the database.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "metrics.h"

#define HEALTH_STALE_MS 5000

struct tryon_worker_metrics {
  struct MHD_Daemon *daemon;
  tryon_runner *runner;
  tryon_db *db;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             tryon_buf *body) {
  size_t len = 0;
  char *text = tryon_buf_steal(body, &len);
  if (text == NULL)
    return MHD_NO;
  struct MHD_Response *res = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (res == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(res, "Content-Type", type);
  MHD_add_response_header(res, "Cache-Control", "no-store");
  enum MHD_Result r = MHD_queue_response(conn, status, res);
  MHD_destroy_response(res);
  return r;
}

static void metrics_text(tryon_worker_metrics *m, tryon_buf *b) {
  static const char *const le[6] = {"0.1", "1", "5", "30", "120", "600"};
  tryon_runner_stats s;
  tryon_db_stats d;
  tryon_runner_stats_get(m->runner, &s);
  tryon_db_stats_get(m->db, &d);
  tryon_buf_appendf(
      b,
      "# HELP tryon_worker_jobs_total Jobs this worker handled, by outcome.\n"
      "# TYPE tryon_worker_jobs_total counter\n"
      "tryon_worker_jobs_total{outcome=\"claimed\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"succeeded\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"retried\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"failed\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"released\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"lost\"} %lld\n"
      "tryon_worker_jobs_total{outcome=\"abandoned\"} %lld\n"
      "# HELP tryon_worker_jobs_held Jobs held now.\n"
      "# TYPE tryon_worker_jobs_held gauge\n"
      "tryon_worker_jobs_held %lld\n"
      "# HELP tryon_worker_jobs_waiting Held jobs waiting on a timer or a transfer.\n"
      "# TYPE tryon_worker_jobs_waiting gauge\n"
      "tryon_worker_jobs_waiting %lld\n"
      "# HELP tryon_queue_jobs Jobs in the whole queue by state (reaper tick).\n"
      "# TYPE tryon_queue_jobs gauge\n"
      "tryon_queue_jobs{state=\"queued\"} %lld\n"
      "tryon_queue_jobs{state=\"running\"} %lld\n"
      "# HELP tryon_worker_job_duration_seconds Claim to end of an attempt (success, retry"
      " or failure).\n"
      "# TYPE tryon_worker_job_duration_seconds histogram\n",
      (long long)s.claimed, (long long)s.succeeded, (long long)s.retried, (long long)s.failed,
      (long long)s.released, (long long)s.lost, (long long)s.abandoned, (long long)s.running,
      (long long)s.waiting, (long long)s.queue_queued, (long long)s.queue_running);
  for (size_t i = 0; i < 6; i++)
    tryon_buf_appendf(b, "tryon_worker_job_duration_seconds_bucket{le=\"%s\"} %lld\n", le[i],
                      (long long)s.duration_le[i]);
  tryon_buf_appendf(b,
                    "tryon_worker_job_duration_seconds_bucket{le=\"+Inf\"} %lld\n"
                    "tryon_worker_job_duration_seconds_sum %.3f\n"
                    "tryon_worker_job_duration_seconds_count %lld\n"
                    "# HELP tryon_db_pool_connections The worker's pooled connections.\n"
                    "# TYPE tryon_db_pool_connections gauge\n"
                    "tryon_db_pool_connections{state=\"open\"} %d\n"
                    "tryon_db_pool_connections{state=\"in_use\"} %d\n"
                    "# HELP tryon_worker_listening 1 while the LISTEN connection is up.\n"
                    "# TYPE tryon_worker_listening gauge\n"
                    "tryon_worker_listening %d\n"
                    "# HELP tryon_worker_stopping 1 once a stop began.\n"
                    "# TYPE tryon_worker_stopping gauge\n"
                    "tryon_worker_stopping %d\n",
                    (long long)s.duration_count, (double)s.duration_ms_sum / 1000.0,
                    (long long)s.duration_count, d.open, d.in_use, s.listening ? 1 : 0,
                    s.stopping ? 1 : 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  (void)version;
  (void)upload;
  (void)upload_size;
  (void)req_cls;
  tryon_worker_metrics *m = cls;
  tryon_buf body;
  tryon_buf_init(&body, 64 * 1024);
  if (strcmp(method, "GET") != 0) {
    tryon_buf_append_str(&body, "{\"error\":{\"code\":\"method_not_allowed\"}}");
    return reply(conn, 405, "application/json", &body);
  }
  if (strcmp(url, "/healthz") == 0) {
    tryon_runner_stats s;
    tryon_runner_stats_get(m->runner, &s);
    bool ok =
        s.listening && !s.stopping && tryon_time_monotonic_ms() - s.loop_tick_ms < HEALTH_STALE_MS;
    tryon_buf_appendf(&body, "{\"status\":\"%s\",\"listening\":%s,\"stopping\":%s,\"held\":%lld}",
                      ok ? "ok" : "unhealthy", s.listening ? "true" : "false",
                      s.stopping ? "true" : "false", (long long)s.running);
    return reply(conn, ok ? 200 : 503, "application/json", &body);
  }
  if (strcmp(url, "/metrics") == 0) {
    metrics_text(m, &body);
    return reply(conn, 200, "text/plain; version=0.0.4", &body);
  }
  tryon_buf_append_str(&body, "{\"error\":{\"code\":\"not_found\"}}");
  return reply(conn, 404, "application/json", &body);
}

tryon_status tryon_worker_metrics_start(int port, tryon_runner *runner, tryon_db *db,
                                        tryon_worker_metrics **out, tryon_err *err) {
  tryon_worker_metrics *m = calloc(1, sizeof *m);
  if (m == NULL)
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  m->runner = runner;
  m->db = db;
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  m->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port,
                               NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, &addr,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
  if (m->daemon == NULL) {
    free(m);
    return tryon_err_set(err, TRYON_E_IO, "cannot listen on 127.0.0.1:%d for metrics", port);
  }
  TRYON_LOG_INFO("worker metrics listening", TRYON_LF_INT("port", port));
  *out = m;
  return TRYON_OK;
}

void tryon_worker_metrics_stop(tryon_worker_metrics *m) {
  if (m == NULL)
    return;
  MHD_stop_daemon(m->daemon);
  free(m);
}
