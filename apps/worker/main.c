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

#include <tryon/core.h>
#include <tryon/db.h>

#include "app.h"

static volatile sig_atomic_t stopping;

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
                          .pool_size = 1,
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
  while (!stopping) {
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
