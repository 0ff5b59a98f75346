/*
 * Request metrics and their Prometheus text exposition.
 *
 * Counters are atomics in a fixed array (routes x statuses, routes x latency buckets):
 * observing a request takes no lock and allocates nothing.
 */
#include "api/api_internal.h"

#include <stdio.h>

static const int status_slots[TRYON__API_STATUS_SLOTS - 1] = {
    200, 201, 202, 204, 301, 302, 304, 400, 401, 402, 403, 404,
    405, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504};

/* Upper bounds of the latency buckets, microseconds. */
static const int64_t latency_bounds[TRYON__API_LATENCY_BUCKETS] = {
    250,   500,    1000,   2500,   5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};

static int status_slot(int status) {
  for (int i = 0; i < TRYON__API_STATUS_SLOTS - 1; i++) {
    if (status_slots[i] == status)
      return i;
  }
  return TRYON__API_STATUS_SLOTS - 1;
}

void tryon_api_observe(tryon_api *api, const tryon_api_plan *plan, const tryon_api_response *resp,
                       int64_t duration_us) {
  size_t r = plan != NULL && plan->route >= 0 ? (size_t)plan->route : tryon__api_route_count;
  tryon__api_route_metrics *m = &api->metrics[r];
  int b = 0;
  if (duration_us < 0)
    duration_us = 0;
  while (b < TRYON__API_LATENCY_BUCKETS && duration_us > latency_bounds[b])
    b++;
  atomic_fetch_add_explicit(&m->by_status[status_slot(resp->status)], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->latency[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->latency_sum_us, (uint_fast64_t)duration_us, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

static void route_labels(size_t r, const char **method, const char **pattern) {
  if (r < tryon__api_route_count) {
    *method = tryon__api_routes[r].method;
    *pattern = tryon__api_routes[r].pattern;
  } else {
    *method = "-";
    *pattern = "unmatched";
  }
}

void tryon__api_metrics_text(tryon_api *api, tryon_buf *out) {
  tryon_db_stats ds;
  const char *method, *pattern;

  tryon_buf_append_str(out, "# HELP tryon_http_requests_total HTTP requests by route and "
                            "status.\n# TYPE tryon_http_requests_total counter\n");
  for (size_t r = 0; r <= tryon__api_route_count; r++) {
    route_labels(r, &method, &pattern);
    for (int s = 0; s < TRYON__API_STATUS_SLOTS; s++) {
      uint_fast64_t n = atomic_load_explicit(&api->metrics[r].by_status[s], memory_order_relaxed);
      if (n == 0)
        continue;
      char status[8];
      if (s < TRYON__API_STATUS_SLOTS - 1)
        snprintf(status, sizeof status, "%d", status_slots[s]);
      else
        snprintf(status, sizeof status, "other");
      tryon_buf_appendf(out,
                        "tryon_http_requests_total{method=\"%s\",route=\"%s\",status=\"%s\"} "
                        "%llu\n",
                        method, pattern, status, (unsigned long long)n);
    }
  }
  tryon_buf_append_str(out, "# HELP tryon_http_request_duration_seconds Time to answer a "
                            "request.\n# TYPE tryon_http_request_duration_seconds histogram\n");
  for (size_t r = 0; r <= tryon__api_route_count; r++) {
    const tryon__api_route_metrics *m = &api->metrics[r];
    if (atomic_load_explicit(&m->count, memory_order_relaxed) == 0)
      continue;
    route_labels(r, &method, &pattern);
    /* _count is the +Inf bucket as read here, so the two always agree. */
    uint_fast64_t cumulative = 0;
    for (int b = 0; b <= TRYON__API_LATENCY_BUCKETS; b++) {
      cumulative += atomic_load_explicit(&m->latency[b], memory_order_relaxed);
      char le[24];
      if (b < TRYON__API_LATENCY_BUCKETS)
        snprintf(le, sizeof le, "%g", (double)latency_bounds[b] / 1e6);
      else
        snprintf(le, sizeof le, "+Inf");
      tryon_buf_appendf(out,
                        "tryon_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                        "le=\"%s\"} %llu\n",
                        method, pattern, le, (unsigned long long)cumulative);
    }
    tryon_buf_appendf(
        out,
        "tryon_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
        "tryon_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
        method, pattern,
        (double)atomic_load_explicit(&m->latency_sum_us, memory_order_relaxed) / 1e6, method,
        pattern, (unsigned long long)cumulative);
  }
  tryon_buf_appendf(out,
                    "# HELP tryon_ratelimit_refused_total Requests refused by a rate limit.\n"
                    "# TYPE tryon_ratelimit_refused_total counter\n"
                    "tryon_ratelimit_refused_total{scope=\"ip\"} %llu\n"
                    "tryon_ratelimit_refused_total{scope=\"user\"} %llu\n",
                    (unsigned long long)atomic_load(&api->ip_refused),
                    (unsigned long long)atomic_load(&api->user_refused));
  tryon_db_stats_get(api->db, &ds);
  tryon_buf_appendf(out,
                    "# HELP tryon_db_pool_connections Database pool connections by state.\n"
                    "# TYPE tryon_db_pool_connections gauge\n"
                    "tryon_db_pool_connections{state=\"max\"} %d\n"
                    "tryon_db_pool_connections{state=\"open\"} %d\n"
                    "tryon_db_pool_connections{state=\"in_use\"} %d\n"
                    "# HELP tryon_db_pool_waiting Threads waiting for a pool connection.\n"
                    "# TYPE tryon_db_pool_waiting gauge\n"
                    "tryon_db_pool_waiting %d\n"
                    "# HELP tryon_db_pool_acquired_total Pool leases granted.\n"
                    "# TYPE tryon_db_pool_acquired_total counter\n"
                    "tryon_db_pool_acquired_total %llu\n"
                    "# HELP tryon_db_pool_timeouts_total Pool leases that timed out.\n"
                    "# TYPE tryon_db_pool_timeouts_total counter\n"
                    "tryon_db_pool_timeouts_total %llu\n"
                    "# HELP tryon_db_pool_reconnects_total Connections remade after breaking.\n"
                    "# TYPE tryon_db_pool_reconnects_total counter\n"
                    "tryon_db_pool_reconnects_total %llu\n",
                    ds.size, ds.open, ds.in_use, ds.waiting, (unsigned long long)ds.acquired,
                    (unsigned long long)ds.timeouts, (unsigned long long)ds.reconnects);
}
