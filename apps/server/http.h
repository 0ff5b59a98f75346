/*
 * The server's transport: libmicrohttpd in front of tryon_api (see http.c).
 */
#ifndef TRYON_SERVER_HTTP_H
#define TRYON_SERVER_HTTP_H

#include <tryon/api.h>
#include <tryon/core.h>

typedef struct tryon_http tryon_http;

/* Listens on cfg->http_port with cfg->http_threads event threads and
 * `dispatch_threads` threads for handlers that use the database. `api` and `cfg` are
 * borrowed until tryon_http_stop. */
tryon_status tryon_http_start(tryon_api *api, const tryon_config *cfg, int dispatch_threads,
                              tryon_http **out, tryon_err *err);

/* Stops accepting, lets requests in flight finish for up to `grace_ms`, then stops the
 * threads and frees the server. NULL is a no-op. */
void tryon_http_stop(tryon_http *srv, int grace_ms);

#endif
