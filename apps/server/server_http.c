/*
 * The transport: libmicrohttpd carries requests to libtryon's API.
 *
 * MHD runs a few event threads (epoll). They parse requests, collect bodies up to the
 * route's ceiling and answer what needs no database (health, metrics, 404, 405, 413,
 * 429, preflights). A handler that talks to the database never runs on them: its
 * connection is suspended and the request handed to a bounded queue served by the
 * dispatch threads (as many as database connections); when the handler is done the
 * connection is resumed and MHD sends the answer. A full queue answers 503 at once.
 */
#include "server_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_CAP 4096
#define MAX_PARTS 8
#define DISCARD_MAX (8u * 1024u * 1024u)    /* bytes of a refused body read before hanging up */
#define BODY_HARD_MAX (64u * 1024u * 1024u) /* no route accepts more than this */

typedef struct request_ctx request_ctx;

struct server_http {
  tryon_api *api;
  const tryon_config *cfg;
  struct MHD_Daemon *daemon;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  request_ctx *queue[QUEUE_CAP];
  size_t head, count;
  bool stopping;
  pthread_t *threads;
  int nthreads;

  atomic_int in_flight; /* requests begun and not yet completed */
  atomic_bool closing;  /* shutting down: answers close their connection */
  MHD_socket listen_fd; /* handed back by MHD_quiesce_daemon; ours to close */
};

/* A multipart part as it streams in. */
typedef struct part_buf {
  char name[64];
  char filename[256];
  char content_type[128];
  tryon_buf data;
  bool too_large;
} part_buf;

struct request_ctx {
  server_http *srv;
  struct MHD_Connection *conn;
  tryon_api_request req;
  tryon_api_plan plan;
  tryon_api_response resp;
  tryon_buf body;
  struct MHD_PostProcessor *pp; /* multipart routes */
  part_buf partbufs[MAX_PARTS];
  tryon_api_part parts[MAX_PARTS];
  size_t nparts;
  size_t received;
  bool malformed; /* the multipart body did not parse */
  char method[16];
  char *path;
  char client_ip[TRYON_API_ADDR_MAX];
  int64_t t0_us;
  bool answered;  /* resp is final: queue it on the next callback */
  bool too_large; /* the body passed the route's ceiling: its rest is discarded */
  bool early;     /* answered before reading the body */
  size_t discarded;
};

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* MHD compares header names case-insensitively. */
static const char *header_lookup(void *ud, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)ud, MHD_HEADER_KIND, name);
}

/* Query arguments, already percent-decoded by MHD. */
static const char *query_lookup(void *ud, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)ud, MHD_GET_ARGUMENT_KIND, name);
}

/* MHD's multipart parser hands over each part's bytes as they arrive (off = 0 starts a
 * part); they go into a buffer bounded by the route's part ceiling, so an oversize
 * file is known as soon as its ceiling is passed and never held whole. */
static enum MHD_Result on_part_data(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data, uint64_t off,
                                    size_t size) {
  request_ctx *ctx = cls;
  (void)kind;
  (void)transfer_encoding;
  if (off == 0) {
    if (ctx->nparts == MAX_PARTS) {
      ctx->malformed = true;
      return MHD_NO;
    }
    part_buf *p = &ctx->partbufs[ctx->nparts++];
    snprintf(p->name, sizeof p->name, "%s", key ? key : "");
    snprintf(p->filename, sizeof p->filename, "%s", filename ? filename : "");
    snprintf(p->content_type, sizeof p->content_type, "%s", content_type ? content_type : "");
    tryon_buf_init(&p->data, ctx->plan.part_limit);
  }
  if (ctx->nparts == 0)
    return MHD_NO;
  part_buf *p = &ctx->partbufs[ctx->nparts - 1];
  if (!p->too_large && size > 0 && tryon_buf_append(&p->data, data, size) != TRYON_OK)
    p->too_large = true;
  return MHD_YES;
}

static bool is_multipart(struct MHD_Connection *conn) {
  const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  return ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0;
}

/* Turns the parsed parts into the API's view of them. */
static void expose_parts(request_ctx *ctx) {
  for (size_t i = 0; i < ctx->nparts; i++) {
    part_buf *p = &ctx->partbufs[i];
    ctx->parts[i] = (tryon_api_part){.name = p->name,
                                     .filename = p->filename[0] ? p->filename : NULL,
                                     .content_type = p->content_type[0] ? p->content_type : NULL,
                                     .data = p->data.data,
                                     .len = p->data.len,
                                     .too_large = p->too_large};
  }
  ctx->req.parts = ctx->parts;
  ctx->req.nparts = ctx->nparts;
}

/* Every line of the client-address header, in arrival order, joined with ",": a proxy
 * that adds its own line instead of appending leaves the client's line first. */
typedef struct header_join {
  const char *name;
  char text[2048];
  size_t len;
  bool any;
} header_join;

/* Appends s[0..n), keeping only the right end when the whole does not fit: the entries
 * our proxies appended are at the right, and a client padding its own part of the line
 * must not push them out. What is cut from the left is the client's. */
static void join_append(header_join *j, const char *s, size_t n) {
  const size_t room = sizeof j->text - 1;
  if (n >= room) {
    memcpy(j->text, s + (n - room), room);
    j->len = room;
  } else {
    if (j->len + n > room) {
      size_t keep = room - n;
      memmove(j->text, j->text + (j->len - keep), keep);
      j->len = keep;
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
  }
  j->text[j->len] = '\0';
}

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
  header_join *j = cls;
  (void)kind;
  if (key == NULL || value == NULL || strcasecmp(key, j->name) != 0)
    return MHD_YES;
  if (j->any)
    join_append(j, ",", 1);
  join_append(j, value, strlen(value));
  j->any = true;
  return MHD_YES;
}

static void client_address(server_http *srv, struct MHD_Connection *conn, char *out, size_t cap) {
  header_join j = {.name = srv->cfg->client_ip_header};
  if (j.name != NULL)
    MHD_get_connection_values(conn, MHD_HEADER_KIND, join_header, &j);
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  const struct sockaddr *peer = ci != NULL ? ci->client_addr : NULL;
  tryon_api_client_address(j.any ? j.text : NULL, srv->cfg->trusted_proxy_hops, peer, out, cap);
}

static enum MHD_Result send_response(request_ctx *ctx) {
  size_t len = 0;
  struct MHD_Response *r = NULL;
  if (ctx->resp.static_body != NULL) {
    /* A web app file: the API holds its bytes for as long as the server runs. */
    r = MHD_create_response_from_buffer(ctx->resp.static_len, (void *)ctx->resp.static_body,
                                        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
      return MHD_NO;
  } else {
    char *body = tryon_buf_steal(&ctx->resp.body, &len);
    if (body == NULL)
      return MHD_NO;
    r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
      free(body);
      return MHD_NO;
    }
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctx->resp.content_type);
  for (size_t i = 0; i < ctx->resp.nheaders; i++)
    MHD_add_response_header(r, ctx->resp.headers[i].name, ctx->resp.headers[i].value);
  /* While stopping, or when the request's body is left unread (an early refusal), the
   * connection must not be reused. */
  if (atomic_load(&ctx->srv->closing) || ctx->early)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(ctx->conn, (unsigned int)ctx->resp.status, r);
  MHD_destroy_response(r);
  return ret;
}

/* ------------------------------------------------------------------ dispatch threads */

static bool enqueue(server_http *srv, request_ctx *ctx) {
  bool ok = false;
  pthread_mutex_lock(&srv->mu);
  if (srv->count < QUEUE_CAP && !srv->stopping) {
    srv->queue[(srv->head + srv->count) % QUEUE_CAP] = ctx;
    srv->count++;
    ok = true;
    pthread_cond_signal(&srv->cv);
  }
  pthread_mutex_unlock(&srv->mu);
  return ok;
}

static void *dispatch_main(void *arg) {
  server_http *srv = arg;
  for (;;) {
    pthread_mutex_lock(&srv->mu);
    while (srv->count == 0 && !srv->stopping)
      pthread_cond_wait(&srv->cv, &srv->mu);
    if (srv->count == 0) { /* stopping, and the queue is drained */
      pthread_mutex_unlock(&srv->mu);
      break;
    }
    request_ctx *ctx = srv->queue[srv->head];
    srv->head = (srv->head + 1) % QUEUE_CAP;
    srv->count--;
    pthread_mutex_unlock(&srv->mu);

    ctx->req.body = ctx->body.data;
    ctx->req.body_len = ctx->body.len;
    tryon_api_handle(srv->api, &ctx->plan, &ctx->req, &ctx->resp);
    ctx->answered = true;
    MHD_resume_connection(ctx->conn);
  }
  return NULL;
}

/* ------------------------------------------------------------------------ callbacks */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  server_http *srv = cls;
  request_ctx *ctx = *req_cls;
  (void)version;

  if (ctx == NULL) {
    /* First call: headers are in, the body is not. Plan the request. */
    ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
      return MHD_NO;
    *req_cls = ctx;
    atomic_fetch_add(&srv->in_flight, 1);
    ctx->srv = srv;
    ctx->conn = conn;
    ctx->t0_us = now_us();
    tryon_api_response_init(&ctx->resp);
    snprintf(ctx->method, sizeof ctx->method, "%s", method);
    ctx->path = strdup(url);
    client_address(srv, conn, ctx->client_ip, sizeof ctx->client_ip);
    ctx->req = (tryon_api_request){.method = ctx->method,
                                   .path = ctx->path ? ctx->path : "",
                                   .client_ip = ctx->client_ip,
                                   .header = header_lookup,
                                   .header_ud = conn,
                                   .query = query_lookup,
                                   .query_ud = conn};
    tryon_api_plan_request(srv->api, &ctx->req, &ctx->plan, &ctx->resp);
    tryon_buf_init(&ctx->body,
                   ctx->plan.body_limit < BODY_HARD_MAX ? ctx->plan.body_limit : BODY_HARD_MAX);
    if (!ctx->plan.done) {
      /* A declared length over the ceiling is refused before a byte is read. */
      const char *cl =
          MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      if (cl != NULL && strtoull(cl, NULL, 10) > ctx->plan.body_limit) {
        tryon_api_error(srv->api, &ctx->req, &ctx->resp, 413,
                        ctx->plan.too_large_code ? ctx->plan.too_large_code : "body_too_large",
                        "the request body is too large");
        ctx->plan.done = true;
      } else if (ctx->plan.multipart) {
        ctx->pp = is_multipart(conn) ? MHD_create_post_processor(conn, 64 * 1024, on_part_data, ctx)
                                     : NULL;
        if (ctx->pp == NULL) {
          tryon_api_error(srv->api, &ctx->req, &ctx->resp, 415, "unsupported_media_type",
                          "send the photo as multipart/form-data");
          ctx->plan.done = true;
        }
      }
    }
    if (ctx->plan.done) {
      /* Answered now, before any body: MHD sends no "100 Continue" and reads none of
       * it; a connection whose body stays unread is closed after the answer. */
      const char *cl =
          MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      ctx->early = (cl != NULL && strtoull(cl, NULL, 10) > 0) ||
                   MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
      ctx->answered = true;
      return send_response(ctx);
    }
    return MHD_YES;
  }

  if (*upload_data_size != 0) {
    size_t n = *upload_data_size;
    *upload_data_size = 0; /* consumed (or discarded) */
    if (ctx->answered || ctx->too_large || ctx->malformed) {
      /* A body of unknown length that went over its ceiling is read to its end only up
       * to a point; past it the connection is dropped. */
      ctx->discarded += n;
      return ctx->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    ctx->received += n;
    if (ctx->received > ctx->plan.body_limit)
      ctx->too_large = true;
    else if (ctx->pp != NULL)
      ctx->malformed = MHD_post_process(ctx->pp, upload_data, n) != MHD_YES;
    else if (tryon_buf_append(&ctx->body, upload_data, n) != TRYON_OK)
      ctx->too_large = true;
    return MHD_YES;
  }

  /* The whole request is in. Finish the multipart parse. */
  if (ctx->pp != NULL) {
    if (MHD_destroy_post_processor(ctx->pp) != MHD_YES)
      ctx->malformed = true;
    ctx->pp = NULL;
    expose_parts(ctx);
  }

  /* The whole request is in (or this is the call after a resume). */
  if (ctx->answered)
    return send_response(ctx);
  if (ctx->too_large) {
    tryon_api_error(srv->api, &ctx->req, &ctx->resp, 413,
                    ctx->plan.too_large_code ? ctx->plan.too_large_code : "body_too_large",
                    "the request body is too large");
    ctx->answered = true;
    return send_response(ctx);
  }
  if (ctx->malformed) {
    tryon_api_error(srv->api, &ctx->req, &ctx->resp, 400, "malformed_multipart",
                    "the form data could not be read");
    ctx->answered = true;
    return send_response(ctx);
  }
  if (!ctx->plan.blocking) {
    ctx->req.body = ctx->body.data;
    ctx->req.body_len = ctx->body.len;
    tryon_api_handle(srv->api, &ctx->plan, &ctx->req, &ctx->resp);
    ctx->answered = true;
    return send_response(ctx);
  }
  MHD_suspend_connection(conn);
  if (!enqueue(srv, ctx)) {
    MHD_resume_connection(conn);
    tryon_api_error(srv->api, &ctx->req, &ctx->resp, 503, "server_busy",
                    "the service is busy; try again in a moment");
    tryon_api_response_header(&ctx->resp, "Retry-After", "1");
    ctx->answered = true;
  }
  return MHD_YES;
}

/* Every request ends here, answered or aborted: one access-log line, the metrics, and
 * the request's memory. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  server_http *srv = cls;
  request_ctx *ctx = *req_cls;
  (void)conn;
  if (ctx == NULL)
    return;
  int64_t us = now_us() - ctx->t0_us;
  int status = ctx->answered ? ctx->resp.status : 499; /* 499: the client went away */
  ctx->resp.status = status;
  tryon_api_observe(srv->api, &ctx->plan, &ctx->resp, us);
  if (tryon_log_enabled(TRYON_LOG_INFO))
    TRYON_LOG_INFO("request", TRYON_LF_STR("method", ctx->method),
                   TRYON_LF_STR("route", ctx->resp.route), TRYON_LF_INT("status", status),
                   TRYON_LF_INT("us", us), TRYON_LF_INT("user", ctx->resp.user_id),
                   TRYON_LF_STR("ip", ctx->client_ip),
                   TRYON_LF_BOOL("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
  tryon_api_response_release(&ctx->resp);
  tryon_buf_release(&ctx->body);
  if (ctx->pp != NULL)
    MHD_destroy_post_processor(ctx->pp);
  for (size_t i = 0; i < ctx->nparts; i++)
    tryon_buf_release(&ctx->partbufs[i].data);
  free(ctx->path);
  free(ctx);
  *req_cls = NULL;
  atomic_fetch_sub(&srv->in_flight, 1);
}

/* ------------------------------------------------------------------------ lifecycle */

/* Development: TRYON_PUBLIC_URL's host is this machine, exactly (localhost.example.com
 * or 127.0.0.1.nip.io are somebody's public names, not development). */
static bool development(const tryon_config *cfg) {
  const char *u = cfg->public_url ? strstr(cfg->public_url, "://") : NULL;
  char host[64];
  unsigned char bin[4];
  if (u == NULL)
    return false;
  u += 3;
  size_t n = *u == '[' ? strcspn(u, "]") + 1 : strcspn(u, ":/?#");
  if (n == 0 || n >= sizeof host)
    return false;
  memcpy(host, u, n);
  host[n] = '\0';
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
    return true;
  return inet_pton(AF_INET, host, bin) == 1 && bin[0] == 127;
}

/* The listening address: TRYON_HTTP_BIND, else every interface in development and
 * loopback otherwise (production sits behind a proxy; opening more is a choice). */
typedef struct bind_addr {
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } u;
  bool v6, dual;
} bind_addr;

static tryon_status bind_address(const tryon_config *cfg, bind_addr *b, tryon_err *err) {
  const char *want = cfg->http_bind ? cfg->http_bind : development(cfg) ? "0.0.0.0" : "127.0.0.1";
  memset(b, 0, sizeof *b);
  if (inet_pton(AF_INET, want, &b->u.in.sin_addr) == 1) {
    b->u.in.sin_family = AF_INET;
    b->u.in.sin_port = htons((uint16_t)cfg->http_port);
    return TRYON_OK;
  }
  if (inet_pton(AF_INET6, want, &b->u.in6.sin6_addr) == 1) {
    b->u.in6.sin6_family = AF_INET6;
    b->u.in6.sin6_port = htons((uint16_t)cfg->http_port);
    b->v6 = true;
    /* "::" means every interface, IPv4 included (MHD would make it IPv6-only). */
    b->dual = memcmp(&b->u.in6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0;
    return TRYON_OK;
  }
  return tryon_err_set(err, TRYON_E_CONFIG, "TRYON_HTTP_BIND is not an IPv4 or IPv6 address");
}

tryon_status server_http_start(tryon_api *api, const tryon_config *cfg, int dispatch_threads,
                               server_http **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  server_http *srv = calloc(1, sizeof *srv);
  bind_addr bind;

  *out = NULL;
  if (srv == NULL)
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  if ((st = bind_address(cfg, &bind, err)) != TRYON_OK) {
    free(srv);
    return st;
  }
  srv->api = api;
  srv->cfg = cfg;
  srv->listen_fd = MHD_INVALID_SOCKET;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_cond_init(&srv->cv, NULL);
  srv->threads = calloc((size_t)dispatch_threads, sizeof *srv->threads);
  if (srv->threads == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < dispatch_threads; i++) {
    if (pthread_create(&srv->threads[i], NULL, dispatch_main, srv) != 0) {
      st = tryon_err_set(err, TRYON_E_INTERNAL, "cannot start the dispatch threads");
      goto out;
    }
    srv->nthreads++;
  }
  /* One peer address may hold at most this many connections. It stays on behind a
   * proxy, sized for the proxy's share: with the bind address it keeps anyone who
   * reaches the port past the proxy from holding every connection. */
  unsigned int per_ip = cfg->http_connections_per_ip > 0
                            ? (unsigned int)cfg->http_connections_per_ip
                        : cfg->client_ip_header ? 1024u
                                                : 128u;
  srv->daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
          MHD_USE_TURBO |
          (bind.dual ? MHD_USE_DUAL_STACK
           : bind.v6 ? MHD_USE_IPv6
                     : 0),
      (uint16_t)cfg->http_port, NULL, NULL, on_request, srv, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, srv, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->http_threads,
      MHD_OPTION_SOCK_ADDR, &bind.u.sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096, MHD_OPTION_LISTEN_BACKLOG_SIZE,
      (unsigned int)1024, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_END);
  if (srv->daemon == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot listen on %s port %d",
                       cfg->http_bind ? cfg->http_bind : "the default address", cfg->http_port);
    goto out;
  }
  *out = srv;
  srv = NULL;
out:
  server_http_stop(srv, 0);
  return st;
}

void server_http_stop(server_http *srv, int grace_ms) {
  if (srv == NULL)
    return;
  /* 1. No new connections. 2. Let the requests in flight finish, up to the grace
   * period (the dispatch threads drain the queue). 3. Stop the threads, then MHD. */
  if (srv->daemon != NULL) {
    atomic_store(&srv->closing, true);
    srv->listen_fd = MHD_quiesce_daemon(srv->daemon);
    int64_t deadline = now_us() + (int64_t)grace_ms * 1000;
    while (atomic_load(&srv->in_flight) > 0 && now_us() < deadline)
      usleep(10 * 1000);
  }
  pthread_mutex_lock(&srv->mu);
  srv->stopping = true;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
  for (int i = 0; i < srv->nthreads; i++)
    pthread_join(srv->threads[i], NULL);
  if (srv->daemon != NULL)
    MHD_stop_daemon(srv->daemon);
  if (srv->listen_fd != MHD_INVALID_SOCKET)
    close(srv->listen_fd);
  pthread_mutex_destroy(&srv->mu);
  pthread_cond_destroy(&srv->cv);
  free(srv->threads);
  free(srv);
}
