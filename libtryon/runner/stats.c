/*
 * The runner's counters, copied under stats_mu so that a metrics thread reads a
 * consistent snapshot.
 */
#include "runner_internal.h"

void tryon__stats_duration(tryon_runner *r, int64_t ms) {
  static const int64_t le[6] = {100, 1000, 5000, 30000, 120000, 600000};
  pthread_mutex_lock(&r->stats_mu);
  r->stats.duration_count++;
  r->stats.duration_ms_sum += ms;
  for (size_t i = 0; i < 6; i++) {
    if (ms <= le[i])
      r->stats.duration_le[i]++;
  }
  pthread_mutex_unlock(&r->stats_mu);
}

void tryon_runner_stats_get(tryon_runner *r, tryon_runner_stats *out) {
  pthread_mutex_lock(&r->stats_mu);
  *out = r->stats;
  pthread_mutex_unlock(&r->stats_mu);
}

void tryon__stats_set_listening(tryon_runner *r, bool on) {
  pthread_mutex_lock(&r->stats_mu);
  r->stats.listening = on;
  pthread_mutex_unlock(&r->stats_mu);
}
