/*
 * tryon-worker - runs background jobs from the PostgreSQL queue.
 *
 * This first cut makes sure the database is reachable and its schema current, then
 * listens on the `tryon_jobs` channel until SIGTERM/SIGINT. The queue, the event loop
 * and the job kinds arrive with the job-queue issue on top of this skeleton.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <tryon/billing.h>
#include <tryon/core.h>
#include <tryon/db.h>

#include "app.h"

/* How often the housekeeping sweep runs. Reads bring wallets up to date lazily, so
 * the sweep only makes expiry visible without a read; missing one grants nothing. */
#define SWEEP_INTERVAL_MS 60000

static volatile sig_atomic_t stopping;

/* Periodic housekeeping: subscription periods and free months that ended. */
static void sweep(tryon_db *db) {
  tryon_db_conn *c = NULL;
  size_t n = 0;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_db_acquire(db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_billing_expire_due(c, tryon_clock_now_ms(NULL), &n, &err);
  tryon_db_release(c);
  if (st != TRYON_OK)
    TRYON_LOG_WARN("housekeeping failed", TRYON_LF_STR("error", tryon_err_message(&err)));
  else if (n > 0)
    TRYON_LOG_INFO("wallets brought up to date", TRYON_LF_INT("count", (int64_t)n));
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int main(void) {
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_db_conn *c = NULL;
  tryon_db_migrations rep = {0};
  tryon_err err;
  int rc = 1;

  tryon_err_clear(&err);
  if (tryon_app_init("tryon-worker", TRYON_CONFIG_NEED_DB, &cfg) != 0)
    goto out;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  tryon_db_options opt = {.conninfo = cfg.database_url,
                          .pool_size = 2, /* one listens, one sweeps */
                          .acquire_timeout_ms = cfg.db_pool_timeout_ms,
                          .application_name = "tryon-worker"};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK)
    goto fail;
  /* A worker running against an older or newer schema would corrupt jobs: refuse. */
  if (tryon_db_migration_status(db, tryon_app_migrations_dir(&cfg), &rep, &err) != TRYON_OK)
    goto fail;
  for (size_t i = 0; i < rep.count; i++) {
    if (!rep.items[i].applied) {
      tryon_err_set(&err, TRYON_E_MIGRATION, "migration %s is not applied; run tryonctl migrate",
                    rep.items[i].name);
      goto fail;
    }
  }
  if (tryon_db_acquire(db, &c, &err) != TRYON_OK ||
      tryon_db_exec(c, "LISTEN tryon_jobs", 0, NULL, NULL, &err) != TRYON_OK)
    goto fail;
  TRYON_LOG_INFO("worker started", TRYON_LF_STR("channel", "tryon_jobs"),
                 TRYON_LF_INT("job_kinds", 0));

  PGconn *pg = tryon_db_conn_pg(c);
  int64_t next_sweep = 0;
  while (!stopping) {
    if (tryon_time_monotonic_ms() >= next_sweep) {
      sweep(db);
      next_sweep = tryon_time_monotonic_ms() + SWEEP_INTERVAL_MS;
    }
    struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
    int n = poll(&p, 1, 1000);
    if (n < 0 && errno != EINTR)
      break;
    if (n > 0 && PQconsumeInput(pg) == 0) {
      tryon_err_set(&err, TRYON_E_DB_UNAVAILABLE, "lost the database connection");
      goto fail;
    }
    PGnotify *note;
    while ((note = PQnotifies(pg)) != NULL) {
      TRYON_LOG_WARN("job notification received but no job kinds are registered",
                     TRYON_LF_STR("channel", note->relname));
      PQfreemem(note);
    }
  }
  TRYON_LOG_INFO("worker stopped");
  rc = 0;
  goto out;
fail:
  TRYON_LOG_ERROR("worker cannot run", TRYON_LF_STR("error", tryon_err_message(&err)));
out:
  tryon_db_release(c);
  tryon_db_migrations_release(&rep);
  tryon_db_free(db);
  tryon_config_release(&cfg);
  return rc;
}
