/*
 * tryon-server - the HTTP API.
 *
 * This first cut serves the operational endpoints (/healthz, /readyz) with libmicrohttpd
 * on a fixed pool of threads and shuts down gracefully; the API routes, sign-in and the
 * WebSocket channel arrive with the HTTP server issue on top of this skeleton.
 */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <tryon/core.h>
#include <tryon/db.h>

#include "app.h"

#define SERVER_THREADS 4

typedef struct server {
  tryon_db *db;
} server;

/* Every response goes through here: JSON body, content type and the common headers. */
static enum MHD_Result respond_json(struct MHD_Connection *conn, unsigned int status, cJSON *doc) {
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  if (text == NULL)
    return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    cJSON_free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, unsigned int status,
                                     const char *code, const char *message) {
  cJSON *doc = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(doc, "error");
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", message);
  return respond_json(conn, status, doc);
}

static enum MHD_Result handle_readyz(server *s, struct MHD_Connection *conn) {
  tryon_db_conn *c = NULL;
  tryon_err err;
  tryon_err_clear(&err);
  tryon_status st = tryon_db_acquire(s->db, &c, &err);
  if (st == TRYON_OK)
    st = tryon_db_exec(c, "SELECT 1", 0, NULL, NULL, &err);
  tryon_db_release(c);
  if (st != TRYON_OK) {
    TRYON_LOG_WARN("readiness check failed", TRYON_LF_STR("error", tryon_err_message(&err)));
    return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "database_unavailable",
                         "the database is not reachable");
  }
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "status", "ready");
  return respond_json(conn, MHD_HTTP_OK, doc);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  server *s = cls;
  (void)version;
  (void)upload_data;
  /* The first call only announces the request; answering on the second lets MHD
   * read (and here, discard) any body first. */
  if (*req_cls == NULL) {
    *req_cls = s;
    return MHD_YES;
  }
  if (*upload_data_size != 0) {
    *upload_data_size = 0;
    return MHD_YES;
  }
  bool is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
  if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0) {
    if (!is_get)
      return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                           "this endpoint only answers GET");
    if (strcmp(url, "/readyz") == 0)
      return handle_readyz(s, conn);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "status", "ok");
    return respond_json(conn, MHD_HTTP_OK, doc);
  }
  return respond_error(conn, MHD_HTTP_NOT_FOUND, "not_found", "no such endpoint");
}

int main(void) {
  tryon_config cfg = {0};
  server s = {0};
  struct MHD_Daemon *d = NULL;
  tryon_err err;
  int rc = 1;
  sigset_t sigs;

  tryon_err_clear(&err);
  if (tryon_app_init("tryon-server", TRYON_CONFIG_NEED_DB, &cfg) != 0)
    goto out;
  /* Block the shutdown signals in every thread (MHD's inherit the mask) and wait for them
   * in main with sigwait: no async-signal-safety puzzles. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  tryon_db_options opt = {.conninfo = cfg.database_url,
                          .pool_size = cfg.db_pool_size,
                          .acquire_timeout_ms = cfg.db_pool_timeout_ms,
                          .application_name = "tryon-server"};
  if (tryon_db_new(&opt, &s.db, &err) != TRYON_OK) {
    TRYON_LOG_ERROR("cannot create the database pool",
                    TRYON_LF_STR("error", tryon_err_message(&err)));
    goto out;
  }
  d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                       (uint16_t)cfg.http_port, NULL, NULL, on_request, &s,
                       MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)SERVER_THREADS,
                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
  if (d == NULL) {
    TRYON_LOG_ERROR("cannot listen", TRYON_LF_INT("port", cfg.http_port));
    goto out;
  }
  TRYON_LOG_INFO("server listening", TRYON_LF_INT("port", cfg.http_port),
                 TRYON_LF_STR("public_url", cfg.public_url));
  int sig = 0;
  sigwait(&sigs, &sig);
  TRYON_LOG_INFO("shutting down", TRYON_LF_INT("signal", sig));
  rc = 0;
out:
  /* MHD_stop_daemon closes the listening socket, then finishes the requests in flight. */
  if (d != NULL)
    MHD_stop_daemon(d);
  tryon_db_free(s.db);
  tryon_config_release(&cfg);
  return rc;
}
