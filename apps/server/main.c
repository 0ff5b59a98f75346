/*
 * tryon-server - the HTTP API: configuration, the database pool, the API, the
 * transport, and a graceful stop on SIGTERM/SIGINT.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <tryon/api.h>
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>

#include "app.h"
#include "server_http.h"

/* How long requests in flight may take to finish after a stop signal. */
#define SHUTDOWN_GRACE_MS 10000

int main(void) {
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_storage *storage = NULL;
  tryon_api *api = NULL;
  server_http *http = NULL;
  tryon_err err;
  int rc = 1;
  sigset_t sigs;

  tryon_err_clear(&err);
  if (tryon_app_init("tryon-server", TRYON_CONFIG_NEED_DB | TRYON_CONFIG_NEED_AUTH, &cfg) != 0)
    goto out;
  /* Block the stop signals in every thread (the ones started below inherit the mask)
   * and take them synchronously in main with sigwait. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  tryon_db_options dbo = {.conninfo = cfg.database_url,
                          .pool_size = cfg.db_pool_size,
                          .acquire_timeout_ms = cfg.db_pool_timeout_ms,
                          .application_name = "tryon-server"};
  tryon_api_options apo = {.cfg = &cfg};
  if (tryon_db_new(&dbo, &db, &err) != TRYON_OK)
    goto fail;
  if (tryon_files_global_init(&err) != TRYON_OK ||
      tryon_storage_local_new(cfg.storage_dir, &storage, &err) != TRYON_OK)
    goto fail;
  apo.db = db;
  apo.storage = storage;
  if (tryon_api_new(&apo, &api, &err) != TRYON_OK)
    goto fail;
  /* One dispatch thread per database connection: more could only wait for the pool. */
  if (server_http_start(api, &cfg, cfg.db_pool_size, &http, &err) != TRYON_OK)
    goto fail;
  TRYON_LOG_INFO("server listening", TRYON_LF_INT("port", cfg.http_port),
                 TRYON_LF_STR("public_url", cfg.public_url),
                 TRYON_LF_INT("http_threads", cfg.http_threads),
                 TRYON_LF_INT("db_pool", cfg.db_pool_size));
  int sig = 0;
  sigwait(&sigs, &sig);
  TRYON_LOG_INFO("shutting down", TRYON_LF_INT("signal", sig));
  rc = 0;
  goto out;
fail:
  TRYON_LOG_ERROR("server cannot start", TRYON_LF_STR("error", tryon_err_message(&err)));
  fprintf(stderr, "tryon-server: %s\n", tryon_err_message(&err));
out:
  server_http_stop(http, SHUTDOWN_GRACE_MS);
  tryon_api_free(api);
  tryon_storage_free(storage);
  tryon_db_free(db);
  tryon_files_global_shutdown();
  tryon_config_release(&cfg);
  if (rc == 0)
    TRYON_LOG_INFO("server stopped");
  return rc;
}
