/*
 * tryon/core.h - the base every other module stands on.
 *
 * Sections:
 *   1. Export macro
 *   2. Status codes and error detail
 *   3. Structured logging
 *   4. Clocks and time
 *   5. UUIDs
 *   6. Bounded buffers
 *   7. Arenas
 *   8. Configuration
 *   9. Hex, text and hashing
 *
 * Thread-safety: everything here is safe to call from several threads at once,
 * except that a given tryon_buf, tryon_arena or tryon_config belongs to one thread at a
 * time, and tryon_log_set_* are meant for program start-up.
 */
#ifndef TRYON_CORE_H
#define TRYON_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- 1. Export macro */

/* The library is built with -fvisibility=hidden; only symbols marked TRYON_API are
 * part of its interface. */
#define TRYON_API __attribute__((visibility("default")))

#if defined(__GNUC__)
#define TRYON_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define TRYON_NODISCARD __attribute__((warn_unused_result))
#else
#define TRYON_PRINTF(fmt, args)
#define TRYON_NODISCARD
#endif

/* ------------------------------------------------- 2. Status codes and error detail */

/*
 * Every status the library returns. Values are only ever appended: a status keeps its
 * number forever (logs and stored error rows refer to it). Each entry is
 * X(SUFFIX, "snake_code", "message"); the enum value is TRYON_<SUFFIX>.
 */
#define TRYON_STATUS_MAP(X)                                                               \
  X(OK, "ok", "success")                                                                  \
  X(E_NOMEM, "out_of_memory", "out of memory")                                            \
  X(E_INVALID, "invalid_argument", "invalid argument")                                    \
  X(E_TOO_LARGE, "too_large", "size limit exceeded")                                      \
  X(E_CONFIG, "invalid_config", "invalid configuration")                                  \
  X(E_IO, "io_error", "input/output error")                                               \
  X(E_NOT_FOUND, "not_found", "not found")                                                \
  X(E_CONFLICT, "conflict", "duplicate or conflicting entry")                             \
  X(E_CONSTRAINT, "constraint_violation", "data constraint violated")                     \
  X(E_TIMEOUT, "timeout", "operation timed out")                                          \
  X(E_DB, "database_error", "database error")                                             \
  X(E_DB_UNAVAILABLE, "database_unavailable", "database unavailable")                     \
  X(E_POOL_TIMEOUT, "pool_timeout", "timed out waiting for a database connection")        \
  X(E_SERIALIZATION, "serialization_failure", "transaction conflict, try again")          \
  X(E_MIGRATION, "migration_refused", "migration refused")                                \
  X(E_INTERNAL, "internal_error", "internal error")                                       \
  X(E_INITDATA_MALFORMED, "initdata_malformed", "init data is malformed")                 \
  X(E_INITDATA_DUPLICATE_KEY, "initdata_duplicate_key", "init data repeats a field")      \
  X(E_INITDATA_MISSING_HASH, "initdata_missing_hash", "init data has no hash")            \
  X(E_INITDATA_MISSING_FIELD, "initdata_missing_field", "init data lacks a field")        \
  X(E_INITDATA_BAD_HASH, "initdata_bad_hash", "init data hash does not match")            \
  X(E_INITDATA_BAD_SIGNATURE, "initdata_bad_signature", "init data signature is invalid") \
  X(E_INITDATA_EXPIRED, "initdata_expired", "init data is too old")                       \
  X(E_INITDATA_FROM_FUTURE, "initdata_from_future", "init data is dated in the future")   \
  X(E_TOKEN_MISSING, "token_missing", "no session token")                                 \
  X(E_TOKEN_MALFORMED, "token_malformed", "session token is malformed")                   \
  X(E_TOKEN_BAD_ALG, "token_bad_alg", "session token algorithm not accepted")             \
  X(E_TOKEN_BAD_SIGNATURE, "token_bad_signature", "session token signature is invalid")   \
  X(E_TOKEN_EXPIRED, "token_expired", "session token has expired")                        \
  X(E_TOKEN_NOT_YET_VALID, "token_not_yet_valid", "session token is not valid yet")       \
  X(E_FORBIDDEN, "forbidden", "forbidden")                                                \
  X(E_RATE_LIMITED, "rate_limited", "too many requests")                                  \
  X(E_FILE_TOO_LARGE, "file_too_large", "the file is larger than 5 MB")                   \
  X(E_EMPTY_FILE, "empty_file", "the file is empty")                                      \
  X(E_UNSUPPORTED_TYPE, "unsupported_type", "only JPEG and PNG photos are accepted")      \
  X(E_TYPE_MISMATCH, "type_mismatch", "the file's content does not match its type")       \
  X(E_CORRUPT_IMAGE, "corrupt_image", "the image is damaged and cannot be read")          \
  X(E_IMAGE_TOO_LARGE_DIMENSIONS, "image_too_large_dimensions",                           \
    "the image is larger than 8192 pixels a side or 40 megapixels")                       \
  X(E_QUOTA_EXCEEDED, "quota_exceeded", "storage quota exceeded")                         \
  X(E_INSUFFICIENT_CREDITS, "insufficient_credits", "not enough credits")                 \
  X(E_DUPLICATE, "duplicate", "already done: this key was used before")                   \
  X(E_NETWORK, "network_error", "network error")                                          \
  X(E_UPSTREAM, "upstream_error", "the remote service answered with an error")

typedef enum tryon_status {
#define TRYON__STATUS_ENUM(suffix, code, msg) TRYON_##suffix,
  TRYON_STATUS_MAP(TRYON__STATUS_ENUM)
#undef TRYON__STATUS_ENUM
      TRYON__STATUS_COUNT
} tryon_status;

/* "TRYON_E_NOMEM" for TRYON_E_NOMEM; "TRYON_UNKNOWN" for a value out of range.
 * Returns a static string. */
TRYON_API const char *tryon_status_name(tryon_status s);
/* "out_of_memory": the stable snake_case code used in JSON errors and CLI output. */
TRYON_API const char *tryon_status_code(tryon_status s);
/* "out of memory": a short lower-case message, no trailing period. */
TRYON_API const char *tryon_status_message(tryon_status s);

#define TRYON_ERR_MESSAGE_MAX 1024

/*
 * Detail about a failure, owned by the caller (usually on its stack) and passed down
 * as an optional `tryon_err *` (NULL is always accepted). Never holds a secret.
 */
typedef struct tryon_err {
  tryon_status status;
  int http_status;                     /* 0 unless an HTTP exchange failed */
  char sqlstate[6];                    /* "" unless PostgreSQL reported one */
  char message[TRYON_ERR_MESSAGE_MAX]; /* "" or a human message, NUL-terminated */
} tryon_err;

/* Clears err (no-op for NULL). */
TRYON_API void tryon_err_clear(tryon_err *err);
/* Sets err->status and a formatted message (truncated to fit) and returns `status`, so
 * a failing path can `return tryon_err_set(err, TRYON_E_INVALID, "...")`. NULL err is
 * accepted; the status is still returned. */
TRYON_API tryon_status tryon_err_set(tryon_err *err, tryon_status status, const char *fmt, ...)
    TRYON_PRINTF(3, 4);
TRYON_API tryon_status tryon_err_setv(tryon_err *err, tryon_status status, const char *fmt,
                                      va_list ap) TRYON_PRINTF(3, 0);
/* The message if set, else the status's generic message. Borrowed from err. */
TRYON_API const char *tryon_err_message(const tryon_err *err);

/* ------------------------------------------------------------ 3. Structured logging */

typedef enum tryon_log_level {
  TRYON_LOG_DEBUG = 0,
  TRYON_LOG_INFO = 1,
  TRYON_LOG_WARN = 2,
  TRYON_LOG_ERROR = 3,
} tryon_log_level;

/* "debug", "info", "warn", "error". */
TRYON_API const char *tryon_log_level_name(tryon_log_level level);
/* Parses one of the names above (case-insensitive); TRYON_E_INVALID otherwise. */
TRYON_API tryon_status tryon_log_level_parse(const char *name, tryon_log_level *out);

typedef enum tryon_log_field_type {
  TRYON_LOG_FIELD_STR,
  TRYON_LOG_FIELD_INT,
  TRYON_LOG_FIELD_BOOL,
} tryon_log_field_type;

/* One key/value of a log line. Keys and strings are borrowed for the call. */
typedef struct tryon_log_field {
  const char *key;
  tryon_log_field_type type;
  const char *s;
  int64_t i;
} tryon_log_field;

#define TRYON_LF_STR(k, v) ((tryon_log_field){.key = (k), .type = TRYON_LOG_FIELD_STR, .s = (v)})
#define TRYON_LF_INT(k, v) ((tryon_log_field){.key = (k), .type = TRYON_LOG_FIELD_INT, .i = (v)})
#define TRYON_LF_BOOL(k, v) \
  ((tryon_log_field){.key = (k), .type = TRYON_LOG_FIELD_BOOL, .i = (v) ? 1 : 0})

/*
 * The sink receives each finished line: one JSON object
 * {"ts":"2026-11-28T18:11:13.123Z","level":"info","msg":"...",<fields>} without a
 * trailing newline. `line` is borrowed for the call. The library installs no sink: it
 * never prints; programs install one at start-up.
 */
typedef void (*tryon_log_sink_fn)(tryon_log_level level, const char *line, void *ud);

/* Installs the sink (NULL drops every line). Call at start-up. */
TRYON_API void tryon_log_set_sink(tryon_log_sink_fn fn, void *ud);
/* Lines below `level` are dropped before they are formatted. Default: INFO. */
TRYON_API void tryon_log_set_level(tryon_log_level level);
TRYON_API tryon_log_level tryon_log_get_level(void);
/* Whether a line at `level` would be written (to skip costly field preparation). */
TRYON_API int tryon_log_enabled(tryon_log_level level);

/*
 * Formats and sends one line. Field values must never be secrets (tokens, initData,
 * passwords): the logger cannot tell. A field named "ts", "level" or "msg" is
 * rejected silently (dropped), so a line's frame cannot be forged.
 */
TRYON_API void tryon_log_write(tryon_log_level level, const char *msg,
                               const tryon_log_field *fields, size_t nfields);

#define TRYON__LOG(level, msg, ...)                                                                \
  do {                                                                                             \
    const tryon_log_field tryon__lf_[] = {{.key = NULL}, __VA_ARGS__};                             \
    tryon_log_write((level), (msg), tryon__lf_ + 1, sizeof tryon__lf_ / sizeof tryon__lf_[0] - 1); \
  } while (0)
/* TRYON_LOG_INFO("migration applied", TRYON_LF_STR("name", n), TRYON_LF_INT("ms", t)); */
#define TRYON_LOG_DEBUG(msg, ...) TRYON__LOG(TRYON_LOG_DEBUG, msg, ##__VA_ARGS__)
#define TRYON_LOG_INFO(msg, ...) TRYON__LOG(TRYON_LOG_INFO, msg, ##__VA_ARGS__)
#define TRYON_LOG_WARN(msg, ...) TRYON__LOG(TRYON_LOG_WARN, msg, ##__VA_ARGS__)
#define TRYON_LOG_ERROR(msg, ...) TRYON__LOG(TRYON_LOG_ERROR, msg, ##__VA_ARGS__)

/*
 * Copies a PostgreSQL connection string (URL or key=value form) into `out` with any
 * password replaced by "***", for log lines and error messages. Always NUL-terminates
 * (truncating when `cap` is short). `out` is caller-owned.
 */
TRYON_API void tryon_log_redact_conninfo(const char *conninfo, char *out, size_t cap);

/* ------------------------------------------------------------------ 4. Clocks and time */

/*
 * A clock returns wall-clock time in milliseconds since the Unix epoch. Code that
 * needs "now" takes a `const tryon_clock *`; NULL means the system clock. Tests pass a
 * clock of their own to make time-dependent behaviour exact.
 */
typedef struct tryon_clock {
  int64_t (*now_ms)(void *ud);
  void *ud;
} tryon_clock;

/* Wall-clock milliseconds from `clock` (NULL: CLOCK_REALTIME). */
TRYON_API int64_t tryon_clock_now_ms(const tryon_clock *clock);
/* Monotonic milliseconds, for durations and deadlines (never from a test clock). */
TRYON_API int64_t tryon_time_monotonic_ms(void);

/* A fixed, settable clock for tests: a tryon_clock whose ud points at it. */
typedef struct tryon_fixed_clock {
  tryon_clock clock;
  int64_t ms;
} tryon_fixed_clock;
/* Initialises `fc` to read `ms` until fc->ms is changed. */
TRYON_API void tryon_fixed_clock_init(tryon_fixed_clock *fc, int64_t ms);

#define TRYON_TIME_ISO8601_LEN 25 /* "2026-11-28T18:11:13.123Z" + NUL */
/* Formats ms since the epoch as UTC "YYYY-MM-DDTHH:MM:SS.mmmZ" into `out`. */
TRYON_API void tryon_time_format_iso8601(int64_t ms, char out[TRYON_TIME_ISO8601_LEN]);

struct cJSON;
/*
 * Adds member `name` to the cJSON object `obj`: the time `ms` as tryon_time_format_iso8601
 * writes it, or null for ms <= 0 (never, none). The one spelling of a time in every
 * JSON document tryon writes (API answers, tryonctl --json). `obj` and `name` are
 * borrowed; the new member belongs to `obj`. Out of memory leaves `obj` without it.
 */
TRYON_API void tryon_json_add_time(struct cJSON *obj, const char *name, int64_t ms);

/* ------------------------------------------------------------------------- 5. UUIDs */

typedef struct tryon_uuid {
  uint8_t b[16];
} tryon_uuid;

#define TRYON_UUID_STR_LEN 37 /* 36 characters + NUL */

/* A random (version 4) UUID from OpenSSL's CSPRNG. TRYON_E_INTERNAL if the RNG fails. */
TRYON_API tryon_status tryon_uuid_v4(tryon_uuid *out);
/* A time-ordered (version 7) UUID: 48 bits of `clock` milliseconds, then random bits.
 * Good as a primary key (index locality). */
TRYON_API tryon_status tryon_uuid_v7(const tryon_clock *clock, tryon_uuid *out);
/* Lower-case canonical text form into `out`. */
TRYON_API void tryon_uuid_format(const tryon_uuid *u, char out[TRYON_UUID_STR_LEN]);
/* Parses the canonical 8-4-4-4-12 hex form (either case); TRYON_E_INVALID otherwise. */
TRYON_API tryon_status tryon_uuid_parse(const char *s, tryon_uuid *out);
/* Whether `s` (borrowed; NULL: false) is exactly a canonical UUID, 36 characters and
 * nothing after: what every module checks an id argument with before it reaches SQL. */
TRYON_API bool tryon_uuid_valid(const char *s);

/* ---------------------------------------------------------------- 6. Bounded buffers */

/*
 * A growable byte buffer with a hard ceiling chosen at creation. `data` is always
 * NUL-terminated (the terminator is not counted in `len` nor in the ceiling), so text
 * can be used as a C string. An append that would pass `max` fails with
 * TRYON_E_TOO_LARGE and leaves the buffer as it was.
 *
 *   tryon_buf b;
 *   tryon_buf_init(&b, 64 * 1024);
 *   if (tryon_buf_append(&b, p, n) != TRYON_OK) ...
 *   tryon_buf_release(&b);
 */
typedef struct tryon_buf {
  char *data; /* owned; never NULL after init (points at "" while empty) */
  size_t len;
  size_t cap; /* allocated bytes, 0 while data points at the static "" */
  size_t max; /* ceiling for len */
} tryon_buf;

TRYON_API void tryon_buf_init(tryon_buf *b, size_t max);
/* Frees the storage; the buffer is empty and usable again (same ceiling). */
TRYON_API void tryon_buf_release(tryon_buf *b);
/* Empties the buffer, keeping its storage. */
TRYON_API void tryon_buf_reset(tryon_buf *b);
TRYON_API tryon_status tryon_buf_append(tryon_buf *b, const void *data, size_t n);
TRYON_API tryon_status tryon_buf_append_str(tryon_buf *b, const char *s);
TRYON_API tryon_status tryon_buf_appendf(tryon_buf *b, const char *fmt, ...) TRYON_PRINTF(2, 3);
/* Hands the storage to the caller (who frees it with free()) and empties the buffer.
 * Never returns NULL unless memory runs out; an empty buffer yields a fresh "". */
TRYON_API char *tryon_buf_steal(tryon_buf *b, size_t *len_out);

/* -------------------------------------------------------------------------- 7. Arenas */

/*
 * A region allocator for the work of one request or one job: allocate freely, free
 * everything at once with tryon_arena_free, which also runs the registered cleanups
 * (PGresult, cJSON, temp files ...) in reverse order of registration. An arena has a
 * ceiling on the bytes it hands out; past it, allocation returns NULL.
 */
typedef struct tryon_arena tryon_arena;

typedef void (*tryon_cleanup_fn)(void *ptr);

/* A new arena handing out at most `limit` bytes (0: no limit but memory). NULL on OOM. */
TRYON_API tryon_arena *tryon_arena_new(size_t limit);
/* Runs the cleanups (last registered first), then frees all memory. NULL is a no-op. */
TRYON_API void tryon_arena_free(tryon_arena *a);
/* `n` bytes aligned for any type, zeroed. NULL when out of memory or past the limit. */
TRYON_API void *tryon_arena_alloc(tryon_arena *a, size_t n);
/* A copy of `s` (NULL gives NULL) / of `n` bytes of `s` plus a NUL. */
TRYON_API char *tryon_arena_strdup(tryon_arena *a, const char *s);
TRYON_API char *tryon_arena_strndup(tryon_arena *a, const char *s, size_t n);
TRYON_API char *tryon_arena_sprintf(tryon_arena *a, const char *fmt, ...) TRYON_PRINTF(2, 3);
/*
 * Registers fn(ptr) to run when the arena is freed; from then on the arena owns ptr.
 * If registration itself fails (out of memory) fn(ptr) runs at once and TRYON_E_NOMEM
 * is returned, so the resource never leaks.
 */
TRYON_API tryon_status tryon_arena_cleanup_add(tryon_arena *a, tryon_cleanup_fn fn, void *ptr);
/* Bytes handed out so far (for metrics and tests). */
TRYON_API size_t tryon_arena_used(const tryon_arena *a);

/* -------------------------------------------------------------------- 8. Configuration */

/*
 * Every setting of the programs, one X-macro list, so the loader, `.env.example` and
 * the test that checks them agree. X(field, "TRYON_NAME", kind, "default", needs).
 * `needs` says which programs require the variable (TRYON_CONFIG_NEED_*); a variable
 * with a default is never missing. Kinds: STR, URL (http/https), DBURL (libpq
 * conninfo), PORT (1..65535), INT_POOL (1..200), INT_MS (1..3600000), LEVEL (log
 * level), SECRET (a string never echoed; at least 32 bytes), TOKEN (never echoed),
 * INT_S (seconds, 1..31536000), INT_RATE (1..1000000), BOOL (true/false, yes/no, on/off,
 * 1/0).
 */
#define TRYON_CONFIG_MAP(X)                                                                 \
  X(database_url, "TRYON_DATABASE_URL", DBURL, NULL, TRYON_CONFIG_NEED_DB)                  \
  X(db_pool_size, "TRYON_DB_POOL_SIZE", INT_POOL, "8", 0)                                   \
  X(db_pool_timeout_ms, "TRYON_DB_POOL_TIMEOUT_MS", INT_MS, "5000", 0)                      \
  X(migrations_dir, "TRYON_MIGRATIONS_DIR", STR, NULL, 0)                                   \
  X(http_port, "TRYON_HTTP_PORT", PORT, "8080", 0)                                          \
  X(public_url, "TRYON_PUBLIC_URL", URL, "http://localhost:8080", 0)                        \
  X(log_level, "TRYON_LOG_LEVEL", LEVEL, "info", 0)                                         \
  X(storage_dir, "TRYON_STORAGE_DIR", STR, "var/storage", 0)                                \
  X(bot_token, "TRYON_BOT_TOKEN", TOKEN, NULL, TRYON_CONFIG_NEED_AUTH)                      \
  X(jwt_secret, "TRYON_JWT_SECRET", SECRET, NULL, TRYON_CONFIG_NEED_AUTH)                   \
  X(kie_api_url, "TRYON_KIE_API_URL", URL, "https://api.kie.ai", 0)                         \
  X(kie_upload_url, "TRYON_KIE_UPLOAD_URL", URL, "https://kieai.redpandaai.co", 0)          \
  X(openrouter_api_url, "TRYON_OPENROUTER_API_URL", URL, "https://openrouter.ai/api/v1", 0) \
  X(yookassa_api_url, "TRYON_YOOKASSA_API_URL", URL, "https://api.yookassa.ru/v3", 0)       \
  X(telegram_api_url, "TRYON_TELEGRAM_API_URL", URL, "https://api.telegram.org", 0)         \
  X(initdata_max_age_s, "TRYON_INITDATA_MAX_AGE_S", INT_S, "86400", 0)                      \
  X(initdata_ed25519, "TRYON_INITDATA_ED25519", BOOL, "false", 0)                           \
  X(telegram_bot_id, "TRYON_TELEGRAM_BOT_ID", STR, NULL, 0)                                 \
  X(telegram_test_env, "TRYON_TELEGRAM_TEST_ENV", BOOL, "false", 0)                         \
  X(jwt_ttl_s, "TRYON_JWT_TTL_S", INT_S, "3600", 0)                                         \
  X(webapp_origin, "TRYON_WEBAPP_ORIGIN", URL, NULL, 0)                                     \
  X(webapp_dir, "TRYON_WEBAPP_DIR", STR, NULL, 0)                                           \
  X(http_threads, "TRYON_HTTP_THREADS", INT_POOL, "2", 0)                                   \
  X(client_ip_header, "TRYON_CLIENT_IP_HEADER", STR, NULL, 0)                               \
  X(trusted_proxy_hops, "TRYON_TRUSTED_PROXY_HOPS", INT_POOL, "1", 0)                       \
  X(http_bind, "TRYON_HTTP_BIND", STR, NULL, 0)                                             \
  X(http_connections_per_ip, "TRYON_HTTP_CONNECTIONS_PER_IP", INT_RATE, NULL, 0)            \
  X(metrics_token, "TRYON_METRICS_TOKEN", SECRET, NULL, 0)                                  \
  X(rate_ip_rps, "TRYON_RATE_LIMIT_IP_RPS", INT_RATE, "20", 0)                              \
  X(rate_ip_burst, "TRYON_RATE_LIMIT_IP_BURST", INT_RATE, "60", 0)                          \
  X(rate_user_rps, "TRYON_RATE_LIMIT_USER_RPS", INT_RATE, "10", 0)                          \
  X(rate_user_burst, "TRYON_RATE_LIMIT_USER_BURST", INT_RATE, "30", 0)                      \
  X(upload_quota, "TRYON_UPLOAD_QUOTA", INT_RATE, "200", 0)                                 \
  X(file_link_ttl_s, "TRYON_FILE_LINK_TTL_S", INT_S, "86400", 0)                            \
  X(worker_concurrency, "TRYON_WORKER_CONCURRENCY", INT_RATE, "100", 0)                     \
  X(worker_lease_ms, "TRYON_WORKER_LEASE_MS", INT_MS, "60000", 0)                           \
  X(worker_poll_ms, "TRYON_WORKER_POLL_MS", INT_MS, "5000", 0)                              \
  X(worker_grace_ms, "TRYON_WORKER_GRACE_MS", INT_MS, "20000", 0)                           \
  X(jobs_per_user, "TRYON_JOBS_PER_USER", INT_RATE, "2", 0)                                 \
  X(worker_metrics_port, "TRYON_WORKER_METRICS_PORT", PORT, NULL, 0)                        \
  X(worker_test_kinds, "TRYON_WORKER_TEST_KINDS", BOOL, "false", 0)                         \
  X(kie_api_key, "TRYON_KIE_API_KEY", TOKEN, NULL, 0)                                       \
  X(kie_model, "TRYON_KIE_MODEL", STR, "google/nano-banana-edit", 0)                        \
  X(kie_webhook_hmac_key, "TRYON_KIE_WEBHOOK_HMAC_KEY", TOKEN, NULL, 0)                     \
  X(kie_poll_limit_s, "TRYON_KIE_POLL_LIMIT_S", INT_S, "900", 0)                            \
  X(kie_callback_url, "TRYON_KIE_CALLBACK_URL", URL, NULL, 0)

/* What a program needs beyond the defaults; OR them into `needs`. */
enum {
  TRYON_CONFIG_NEED_DB = 1u << 0,   /* TRYON_DATABASE_URL */
  TRYON_CONFIG_NEED_AUTH = 1u << 1, /* TRYON_BOT_TOKEN and TRYON_JWT_SECRET */
};

/* The validated settings. Strings are owned by the struct (freed by
 * tryon_config_release); an unset optional string is NULL. */
typedef struct tryon_config {
  char *database_url;
  int db_pool_size;
  int db_pool_timeout_ms;
  char *migrations_dir;
  int http_port;
  char *public_url;
  tryon_log_level log_level;
  char *storage_dir;
  char *bot_token;
  char *jwt_secret;
  char *kie_api_url;
  char *kie_upload_url;
  char *openrouter_api_url;
  char *yookassa_api_url;
  char *telegram_api_url;
  int initdata_max_age_s;
  bool initdata_ed25519;
  char *telegram_bot_id;
  bool telegram_test_env;
  int jwt_ttl_s;
  char *webapp_origin;
  char *webapp_dir; /* NULL: the server serves no web app (the API alone) */
  int http_threads;
  char *client_ip_header;
  int trusted_proxy_hops;      /* our proxies that append to client_ip_header, >= 1 */
  char *http_bind;             /* NULL: all interfaces in development, else 127.0.0.1 */
  int http_connections_per_ip; /* 0: 128 exposed directly, 1024 behind a proxy */
  char *metrics_token;         /* NULL: GET /metrics answers 404 on the API port */
  int rate_ip_rps;
  int rate_ip_burst;
  int rate_user_rps;
  int rate_user_burst;
  int upload_quota;
  int file_link_ttl_s;
  int worker_concurrency;
  int worker_lease_ms;
  int worker_poll_ms;
  int worker_grace_ms;
  int jobs_per_user;
  int worker_metrics_port; /* 0: no metrics listener */
  bool worker_test_kinds;  /* register the noop and sleep kinds (tests, benchmarks) */
  char *kie_api_key;       /* NULL: the offline provider is used */
  char *kie_model;
  char *kie_webhook_hmac_key; /* NULL: callbacks are not signature-checked */
  int kie_poll_limit_s;
  char *kie_callback_url; /* NULL: tasks are only polled */
} tryon_config;

/*
 * Loads the settings in this order: defaults, then the `.env` file at `dotenv_path`
 * (NULL or a missing file: skipped), then `envp` (a NULL-terminated "NAME=value" array,
 * usually the program's `environ`; NULL: none). An empty value counts as unset.
 * Then validates, and on any problem returns TRYON_E_CONFIG with one message in err
 * listing every missing or malformed variable (values of secrets are never quoted).
 * A malformed `.env` line is reported the same way (with its line number).
 *
 * On success `cfg` holds owned copies; on failure it is left released (zeroed).
 * The library never calls getenv: programs pass their environment.
 */
TRYON_API tryon_status tryon_config_load(tryon_config *cfg, const char *const *envp,
                                         const char *dotenv_path, unsigned needs, tryon_err *err);
/* Frees the strings and zeroes cfg. A zeroed cfg is accepted. */
TRYON_API void tryon_config_release(tryon_config *cfg);

/* The names of every variable, in TRYON_CONFIG_MAP order (for docs and tests). */
TRYON_API size_t tryon_config_var_count(void);
TRYON_API const char *tryon_config_var_name(size_t i);

/* ------------------------------------------------------------ 9. Hex, text and hashing */

/* Copies `src` into `dst` (`cap` bytes, cap >= 1), cutting it short if needed at a
 * character boundary so the copy stays valid UTF-8 (when src is). Returns the bytes
 * copied, without the NUL. */
TRYON_API size_t tryon_utf8_copy(char *dst, size_t cap, const char *src);
/* The characters (code points, not bytes) of the NUL-terminated UTF-8 string `s`
 * (borrowed): every byte but continuation bytes. What the schema's char_length limits
 * count (a block reason, a ledger note). For text that is not valid UTF-8 the count is
 * of lead bytes; validity is checked where text enters (initData, the database). */
TRYON_API size_t tryon_utf8_chars(const char *s);
/* Whether `s[0..n)` (borrowed; may hold NULs) is well-formed UTF-8: no overlong forms,
 * no surrogates, nothing past U+10FFFF. */
TRYON_API bool tryon_utf8_valid(const char *s, size_t n);
/* The length of `s[0..n)` without a multi-byte sequence cut short at its end: how much
 * of valid text may be kept when it is truncated to n bytes. */
TRYON_API size_t tryon_utf8_prefix(const char *s, size_t n);

/* The value of one hex digit (either case), or -1. */
TRYON_API int tryon_hex_digit(int c);
/* Decodes exactly 2 * out_len hex digits (either case) from s[0..n) into `out`. false
 * when n != 2 * out_len or a character is not a hex digit. */
TRYON_API bool tryon_hex_decode(const char *s, size_t n, unsigned char *out, size_t out_len);
/* Lower-case hex of in[0..n) and a NUL into `out`, which holds 2 * n + 1 bytes. */
TRYON_API void tryon_hex_encode(const unsigned char *in, size_t n, char *out);
/* FNV-1a over a NUL-terminated string: fast, stable across runs, not cryptographic (for
 * hash tables and statement names, never for anything an attacker may steer into
 * collisions that matter). */
TRYON_API uint64_t tryon_hash64(const char *s);

#ifdef __cplusplus
}
#endif
#endif /* TRYON_CORE_H */
