/*
 * The server's transport: libmicrohttpd in front of tryon_api (see http.c).
 */
#ifndef SERVER_HTTP_H
#define SERVER_HTTP_H

#include <tryon/api.h>
#include <tryon/core.h>

typedef struct server_http server_http;

/* Listens on cfg->http_port with cfg->http_threads event threads and
 * `dispatch_threads` threads for handlers that use the database. `api` and `cfg` are
 * borrowed until server_http_stop. */
tryon_status server_http_start(tryon_api *api, const tryon_config *cfg, int dispatch_threads,
                               server_http **out, tryon_err *err);

/* Stops accepting, lets requests in flight finish for up to `grace_ms`, then stops the
 * threads and frees the server. NULL is a no-op. */
void server_http_stop(server_http *srv, int grace_ms);

#endif
