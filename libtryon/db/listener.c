/*
 * The listener (section 6 of tryon/db.h): one LISTEN connection driven by its caller's
 * event loop, reconnecting in the background.
 *
 * States: IDLE (no connection; the next attempt is due at `due`), CONNECTING
 * (PQconnectPoll in progress, `want` says what its socket waits for), SUBSCRIBING (the
 * LISTENs sent, their answers awaited) and UP. An attempt that fails or outlives its
 * deadline, and a connection that breaks, go back to IDLE with a backoff. Nothing here
 * waits on the socket except tryon_db_listener_open, which exists for start-up.
 */
#include "db/db_internal.h"

#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MIN_MS 500
#define DEFAULT_BACKOFF_MAX_MS 30000
#define CHANNEL_MAX 63
/* `LISTEN "<name>"; ` for every channel */
#define LISTEN_SQL_MAX (TRYON_DB_LISTENER_MAX_CHANNELS * (CHANNEL_MAX + 12) + 1)

typedef enum listener_state {
  L_IDLE,
  L_CONNECTING,
  L_SUBSCRIBING,
  L_UP,
} listener_state;

struct tryon_db_listener {
  char *conninfo;
  char *application_name;
  char listen_sql[LISTEN_SQL_MAX];
  int64_t connect_timeout_ms, backoff_min_ms, backoff_max_ms;

  PGconn *pg;
  listener_state state;
  short want;    /* CONNECTING, SUBSCRIBING: what the socket waits for */
  int64_t due;   /* monotonic ms: IDLE, the next attempt; otherwise the attempt's deadline */
  int failures;  /* attempts failed (or losses) since it was last up */
  bool was_up;   /* it has been up before: the next UP is a reconnect */
  PGnotify *cur; /* the notification handed out last, freed at the next call */
  char error[256];
};

/* The server's notices (its FATAL message before a terminated backend closes the
 * socket, say) would go to stderr by default: the library never prints. */
static void quiet_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static bool channel_ok(const char *s) {
  size_t n = 0;
  if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
    return false;
  for (; s[n] != '\0'; n++) {
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
      return false;
  }
  return n <= CHANNEL_MAX;
}

static void forget_note(tryon_db_listener *l) {
  PQfreemem(l->cur);
  l->cur = NULL;
}

static void drop_conn(tryon_db_listener *l) {
  forget_note(l);
  PQfinish(l->pg);
  l->pg = NULL;
}

static void note_error(tryon_db_listener *l, const char *what) {
  char *msg = l->pg != NULL ? PQerrorMessage(l->pg) : NULL;
  const char *why = msg != NULL && msg[0] != '\0' ? tryon__db_trim(msg) : "";
  snprintf(l->error, sizeof l->error, "%s%s%s", what, why[0] ? ": " : "", why);
}

/* Back to IDLE: the next attempt after half of the ceiling plus a random part of the
 * other half, so that many listeners losing one server do not return in step. */
static void back_off(tryon_db_listener *l, int64_t now) {
  drop_conn(l);
  l->state = L_IDLE;
  l->want = 0;
  l->failures++;
  int64_t ceiling = l->backoff_min_ms;
  for (int i = 1; i < l->failures && ceiling < l->backoff_max_ms; i++)
    ceiling *= 2;
  if (ceiling > l->backoff_max_ms)
    ceiling = l->backoff_max_ms;
  uint32_t rnd = 0;
  if (RAND_bytes((unsigned char *)&rnd, (int)sizeof rnd) != 1)
    rnd = (uint32_t)now * 2654435761u;
  int64_t half = ceiling / 2;
  l->due = now + (ceiling - half) + (int64_t)(rnd % (uint64_t)(half + 1));
}

static unsigned attempt_failed(tryon_db_listener *l, const char *what, int64_t now) {
  note_error(l, what);
  back_off(l, now);
  return TRYON_DB_LISTENER_FAILED;
}

/* PQconnectStart: opens a non-blocking socket and returns at once. */
static unsigned attempt_start(tryon_db_listener *l, int64_t now) {
  /* Before dbname, so that the caller's conninfo can override each of them. The
   * keepalives notice a peer that vanished without closing (TCP only). */
  const char *const keys[] = {"application_name",
                              "keepalives",
                              "keepalives_idle",
                              "keepalives_interval",
                              "keepalives_count",
                              "dbname",
                              NULL};
  const char *const vals[] = {l->application_name, "1", "30", "10", "3", l->conninfo, NULL};
  drop_conn(l);
  l->pg = PQconnectStartParams(keys, vals, 1);
  if (l->pg == NULL) {
    snprintf(l->error, sizeof l->error, "out of memory connecting");
    back_off(l, now);
    return TRYON_DB_LISTENER_FAILED;
  }
  if (PQstatus(l->pg) == CONNECTION_BAD)
    return attempt_failed(l, "cannot connect", now);
  PQsetNoticeProcessor(l->pg, quiet_notice, NULL);
  l->state = L_CONNECTING;
  l->want = POLLOUT; /* as if PQconnectPoll had asked for writing (libpq's rule) */
  l->due = now + l->connect_timeout_ms;
  return 0;
}

/* Connected: the LISTENs go out without waiting for their answers. */
static unsigned subscribe(tryon_db_listener *l, int64_t now) {
  if (PQsetnonblocking(l->pg, 1) != 0 || PQsendQuery(l->pg, l->listen_sql) == 0)
    return attempt_failed(l, "cannot listen", now);
  int fl = PQflush(l->pg);
  if (fl < 0)
    return attempt_failed(l, "cannot listen", now);
  l->state = L_SUBSCRIBING;
  l->want = (short)(POLLIN | (fl == 1 ? POLLOUT : 0));
  return 0;
}

static unsigned came_up(tryon_db_listener *l) {
  unsigned what = TRYON_DB_LISTENER_UP | (l->was_up ? TRYON_DB_LISTENER_RECONNECTED : 0);
  l->state = L_UP;
  l->want = POLLIN;
  l->failures = 0;
  l->was_up = true;
  return what;
}

/* SUBSCRIBING with its socket ready: send what is left, read the LISTENs' answers. */
static unsigned subscribe_step(tryon_db_listener *l, int64_t now) {
  int fl = PQflush(l->pg);
  if (fl < 0 || PQconsumeInput(l->pg) == 0)
    return attempt_failed(l, "cannot listen", now);
  l->want = (short)(POLLIN | (fl == 1 ? POLLOUT : 0));
  while (!PQisBusy(l->pg)) {
    PGresult *res = PQgetResult(l->pg);
    if (res == NULL)
      return came_up(l); /* every LISTEN answered */
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
      return attempt_failed(l, "cannot listen", now);
  }
  return 0;
}

/* CONNECTING or SUBSCRIBING: moves on when the socket is ready; gives up at the
 * deadline. PQconnectPoll is only called once the socket is ready for what it asked
 * (calling it early could take a connect still in progress for a finished one). */
static unsigned attempt_step(tryon_db_listener *l, short revents, int64_t now) {
  unsigned what = 0;
  if (revents != 0 && l->state == L_CONNECTING) {
    switch (PQconnectPoll(l->pg)) {
      case PGRES_POLLING_READING:
        l->want = POLLIN;
        break;
      case PGRES_POLLING_WRITING:
        l->want = POLLOUT;
        break;
      case PGRES_POLLING_OK:
        what = subscribe(l, now);
        break;
      default:
        return attempt_failed(l, "cannot connect", now);
    }
  } else if (revents != 0 && l->state == L_SUBSCRIBING) {
    what = subscribe_step(l, now);
  }
  if (what == 0 && l->state != L_UP && l->state != L_IDLE && now >= l->due) {
    snprintf(l->error, sizeof l->error, "connecting timed out");
    back_off(l, now);
    what = TRYON_DB_LISTENER_FAILED;
  }
  return what;
}

/* ------------------------------------------------------------------- public API */

tryon_status tryon_db_listener_new(const tryon_db_listener_options *opt, tryon_db_listener **out,
                                   tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon_db_listener *l = NULL;
  PQconninfoOption *parsed = NULL;
  char *perr = NULL;
  size_t n = 0, used = 0;

  if (out != NULL)
    *out = NULL;
  if (out == NULL || opt == NULL || opt->conninfo == NULL || opt->channels == NULL ||
      opt->connect_timeout_ms < 0 || opt->backoff_min_ms < 0 || opt->backoff_max_ms < 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid listener options");
    goto out;
  }
  for (n = 0; opt->channels[n] != NULL; n++) {
    bool repeated = false;
    for (size_t j = 0; j < n; j++)
      repeated = repeated || strcmp(opt->channels[j], opt->channels[n]) == 0;
    if (n == TRYON_DB_LISTENER_MAX_CHANNELS || !channel_ok(opt->channels[n]) || repeated) {
      st = tryon_err_set(err, TRYON_E_INVALID, "invalid listener channel");
      goto out;
    }
  }
  parsed = PQconninfoParse(opt->conninfo, &perr);
  if (n == 0 || parsed == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID,
                       n == 0 ? "a listener needs a channel"
                              : "the listener's conninfo does not parse");
    goto out;
  }
  l = calloc(1, sizeof *l);
  if (l == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  l->conninfo = strdup(opt->conninfo);
  l->application_name = strdup(opt->application_name ? opt->application_name : "tryon-listen");
  if (l->conninfo == NULL || l->application_name == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  /* The names are checked above: quoting only keeps them as they are. */
  for (size_t i = 0; i < n; i++)
    used += (size_t)snprintf(l->listen_sql + used, sizeof l->listen_sql - used, "%sLISTEN \"%s\"",
                             i ? "; " : "", opt->channels[i]);
  l->connect_timeout_ms =
      opt->connect_timeout_ms ? opt->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
  l->backoff_min_ms = opt->backoff_min_ms ? opt->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
  l->backoff_max_ms = opt->backoff_max_ms ? opt->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
  if (l->backoff_max_ms < l->backoff_min_ms) {
    st = tryon_err_set(err, TRYON_E_INVALID, "invalid listener options");
    goto out;
  }
  l->state = L_IDLE;
  l->due = 0; /* the first process call begins connecting */
  *out = l;
  l = NULL;
out:
  PQconninfoFree(parsed);
  PQfreemem(perr);
  tryon_db_listener_free(l);
  return st;
}

tryon_status tryon_db_listener_open(tryon_db_listener *l, tryon_err *err) {
  tryon_status st = TRYON_OK;
  if (l->state == L_UP)
    goto out;
  if (l->state == L_IDLE)
    attempt_start(l, tryon_time_monotonic_ms());
  while (l->state == L_CONNECTING || l->state == L_SUBSCRIBING) {
    int64_t now = tryon_time_monotonic_ms();
    struct pollfd p = {.fd = PQsocket(l->pg), .events = l->want};
    int wait = l->due > now ? (int)(l->due - now) : 0;
    if (p.fd < 0 || poll(&p, 1, wait) < 0)
      p.revents = 0; /* EINTR or no socket: the deadline check below still runs */
    attempt_step(l, p.revents, tryon_time_monotonic_ms());
  }
  if (l->state != L_UP)
    st = tryon_err_set(err, TRYON_E_DB_UNAVAILABLE, "cannot open the listen connection: %s",
                       l->error);
out:
  return st;
}

int tryon_db_listener_fd(const tryon_db_listener *l, short *events) {
  int fd = l->state == L_IDLE || l->pg == NULL ? -1 : PQsocket(l->pg);
  if (events != NULL)
    *events = fd >= 0 ? l->want : 0;
  return fd;
}

int64_t tryon_db_listener_timeout_ms(const tryon_db_listener *l) {
  if (l->state == L_UP)
    return -1;
  int64_t left = l->due - tryon_time_monotonic_ms();
  return left > 0 ? left : 0;
}

unsigned tryon_db_listener_process(tryon_db_listener *l, short revents) {
  unsigned what = 0;
  forget_note(l);
  if (l->state == L_UP) {
    /* Nothing to read: nothing to do (the hot path of a busy loop). */
    if (revents != 0 && (PQconsumeInput(l->pg) == 0 || PQstatus(l->pg) != CONNECTION_OK)) {
      note_error(l, "connection lost");
      back_off(l, tryon_time_monotonic_ms());
      what = TRYON_DB_LISTENER_LOST;
    }
    goto out;
  }
  int64_t now = tryon_time_monotonic_ms();
  if (l->state == L_IDLE) {
    if (now >= l->due)
      what = attempt_start(l, now);
    goto out;
  }
  what = attempt_step(l, revents, now);
out:
  return what;
}

bool tryon_db_listener_next(tryon_db_listener *l, tryon_db_notification *out) {
  forget_note(l);
  if (l->state != L_UP || (l->cur = PQnotifies(l->pg)) == NULL)
    return false;
  out->channel = l->cur->relname;
  out->payload = l->cur->extra != NULL ? l->cur->extra : "";
  out->sender_pid = l->cur->be_pid;
  return true;
}

bool tryon_db_listener_up(const tryon_db_listener *l) {
  return l->state == L_UP;
}

const char *tryon_db_listener_error(const tryon_db_listener *l) {
  return l->error;
}

void tryon_db_listener_close(tryon_db_listener *l) {
  drop_conn(l);
  l->state = L_IDLE;
  l->want = 0;
  l->failures = 0;
  l->due = 0;
}

void tryon_db_listener_free(tryon_db_listener *l) {
  if (l == NULL)
    return;
  drop_conn(l);
  free(l->conninfo);
  free(l->application_name);
  free(l);
}
