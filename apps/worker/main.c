/*
 * tryon-worker - runs background jobs from the PostgreSQL queue.
 *
 * Checks that the schema is current, registers the job kinds, and hands the thread to
 * the runner (libtryon/runner): one event loop for every job this process holds, a few
 * DB threads, housekeeping on a schedule. SIGTERM/SIGINT drain it gracefully: waiting
 * jobs go back to the queue at once, steps in progress get TRYON_WORKER_GRACE_MS.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>
#include <tryon/generations.h>
#include <tryon/kie.h>
#include <tryon/runner.h>

#include "app.h"
#include "housekeeping.h"
#include "metrics.h"

static tryon_runner *volatile the_runner;

static void on_signal(int sig) {
  (void)sig;
  if (the_runner != NULL)
    tryon_runner_stop(the_runner); /* async-signal-safe */
}

/* A worker on an older or newer schema would mishandle jobs: refuse to start. */
static tryon_status schema_current(tryon_db *db, const tryon_config *cfg, tryon_err *err) {
  tryon_db_migrations rep = {0};
  tryon_status st = tryon_db_migration_status(db, tryon_app_migrations_dir(cfg), &rep, err);
  for (size_t i = 0; st == TRYON_OK && i < rep.count; i++) {
    if (!rep.items[i].applied)
      st = tryon_err_set(err, TRYON_E_MIGRATION,
                         "migration %s is not applied; run tryonctl migrate", rep.items[i].name);
  }
  tryon_db_migrations_release(&rep);
  return st;
}

int main(void) {
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_runner *runner = NULL;
  tryon_worker_metrics *metrics = NULL;
  tryon_storage *storage = NULL;
  tryon_kie_config kie;
  tryon_generations_kind_config tryon_cfg;
  tryon_err err;
  int rc = 1;

  tryon_err_clear(&err);
  if (tryon_app_init("tryon-worker", TRYON_CONFIG_NEED_DB, &cfg) != 0)
    goto out;
  /* One DB thread per pooled connection; the LISTEN connection is the runner's own. */
  tryon_db_options dbo = {.conninfo = cfg.database_url,
                          .pool_size = cfg.db_pool_size,
                          .acquire_timeout_ms = cfg.db_pool_timeout_ms,
                          .application_name = "tryon-worker"};
  if (tryon_db_new(&dbo, &db, &err) != TRYON_OK || schema_current(db, &cfg, &err) != TRYON_OK)
    goto fail;
  tryon_runner_options ro = {.db = db,
                             .conninfo = cfg.database_url,
                             .concurrency = cfg.worker_concurrency,
                             .db_threads = cfg.db_pool_size,
                             .per_user_running = cfg.jobs_per_user,
                             .lease_ms = cfg.worker_lease_ms,
                             .poll_ms = cfg.worker_poll_ms,
                             .grace_ms = cfg.worker_grace_ms};
  if (tryon_files_global_init(&err) != TRYON_OK ||
      tryon_storage_local_new(cfg.storage_dir, &storage, &err) != TRYON_OK)
    goto fail;
  /* No kie.ai key: the offline provider, so every flow works without keys. */
  kie = (tryon_kie_config){.api_url = cfg.kie_api_url,
                           .upload_url = cfg.kie_upload_url,
                           .api_key = cfg.kie_api_key,
                           .model = cfg.kie_model,
                           .callback_url = cfg.kie_callback_url};
  tryon_cfg =
      (tryon_generations_kind_config){.storage = storage,
                                      .kie = cfg.kie_api_key ? &kie : NULL,
                                      .poll_limit_ms = (int64_t)cfg.kie_poll_limit_s * 1000};
  /* noop and sleep only for tests and benchmarks: a production worker leaves such
   * jobs queued (it never claims a kind it has not registered). */
  if (tryon_runner_new(&ro, &runner, &err) != TRYON_OK ||
      (cfg.worker_test_kinds && tryon_runner_add_test_kinds(runner, &err) != TRYON_OK) ||
      tryon_worker_housekeeping_add(runner, storage, &err) != TRYON_OK ||
      tryon_generations_add_kind(runner, &tryon_cfg, &err) != TRYON_OK)
    goto fail;
  TRYON_LOG_INFO("image provider", TRYON_LF_STR("provider", cfg.kie_api_key ? "kie" : "offline"),
                 TRYON_LF_STR("model", cfg.kie_api_key ? cfg.kie_model : "offline-compose"));
  if (cfg.worker_metrics_port > 0 &&
      tryon_worker_metrics_start(cfg.worker_metrics_port, runner, db, &metrics, &err) != TRYON_OK)
    goto fail;

  the_runner = runner;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  tryon_status st = tryon_runner_run(runner, &err);
  /* The runner goes away below: a late signal must not reach it. */
  sa.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  the_runner = NULL;
  if (st != TRYON_OK)
    goto fail;
  rc = 0;
  goto out;
fail:
  TRYON_LOG_ERROR("worker cannot run", TRYON_LF_STR("error", tryon_err_message(&err)));
out:
  the_runner = NULL;
  tryon_worker_metrics_stop(metrics);
  tryon_runner_free(runner);
  tryon_storage_free(storage);
  tryon_files_global_shutdown();
  tryon_db_free(db);
  tryon_config_release(&cfg);
  return rc;
}
