/*
 * tryonctl - the operators' command line.
 *
 * Exit codes, for every command: 0 done, 1 refused (the command ran and said no:
 * bad configuration, database unavailable, a migration refused ...), 2 usage.
 * Commands are a table; each has --help.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <tryon/auth.h>
#include <tryon/billing.h>
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>
#include <tryon/generations.h>
#include <tryon/jobs.h>
#include <tryon/users.h>

#include "app.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2 };

typedef struct command {
  const char *name;
  const char *summary;
  const char *usage;
  int (*run)(int argc, char **argv);
} command;

/* "tryonctl: <what> <arg>" and the command's usage line on stderr; exit code 2. */
static int usage_error(const char *cmd_usage, const char *what, const char *arg) {
  fprintf(stderr, "tryonctl: %s %s\nusage: %s\n", what, arg, cmd_usage);
  return EXIT_USAGE;
}

static bool is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Prints a cJSON document on one line and frees it. */
static void print_json(cJSON *doc) {
  char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
  if (text != NULL)
    printf("%s\n", text);
  else
    fprintf(stderr, "tryonctl: out of memory printing JSON\n");
  cJSON_free(text);
  cJSON_Delete(doc);
}

static void print_json_error(const tryon_err *err) {
  cJSON *doc = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(doc, "error");
  cJSON_AddStringToObject(e, "code", tryon_status_code(err->status));
  cJSON_AddStringToObject(e, "message", tryon_err_message(err));
  print_json(doc);
}

/* ---------------------------------------------------------------------------- version */

static const char version_usage[] = "tryonctl version [--json]";

static int cmd_version(int argc, char **argv) {
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      printf("usage: %s\n\nPrints the version of tryon.\n", version_usage);
      return EXIT_OK;
    }
    if (strcmp(argv[i], "--json") == 0)
      json = true;
    else
      return usage_error(version_usage, "unknown argument", argv[i]);
  }
  if (json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "version", tryon_app_version());
    print_json(doc);
  } else
    printf("tryonctl %s\n", tryon_app_version());
  return EXIT_OK;
}

/* ---------------------------------------------------------------------------- migrate */

static const char migrate_usage[] = "tryonctl migrate [--status] [--dir DIR] [--json]";

static const char migrate_help[] =
    "Applies the pending migrations of DIR to the database at TRYON_DATABASE_URL, each\n"
    "in its own transaction, in version order. Running it again changes nothing.\n"
    "It refuses (exit 1) when the database holds a migration that no file provides or a\n"
    "file was changed after it was applied.\n"
    "\n"
    "  --status    list the migrations and whether each is applied; change nothing\n"
    "  --dir DIR   the migrations folder (default: TRYON_MIGRATIONS_DIR, else the\n"
    "              folder this build came from)\n"
    "  --json      print the result as JSON\n";

static void print_report(const tryon_db_migrations *rep, bool status_only, bool json) {
  size_t pending = 0;
  for (size_t i = 0; i < rep->count; i++)
    pending += !rep->items[i].applied;
  if (json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "migrations");
    for (size_t i = 0; i < rep->count; i++) {
      const tryon_db_migration *m = &rep->items[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToArray(arr, o);
      cJSON_AddNumberToObject(o, "version", (double)m->version);
      cJSON_AddStringToObject(o, "name", m->name);
      cJSON_AddBoolToObject(o, "applied", m->applied);
      cJSON_AddBoolToObject(o, "has_file", m->has_file);
      if (m->applied) {
        char ts[TRYON_TIME_ISO8601_LEN];
        tryon_time_format_iso8601(m->applied_at_ms, ts);
        cJSON_AddStringToObject(o, "applied_at", ts);
      }
    }
    cJSON_AddNumberToObject(doc, "pending", (double)pending);
    if (!status_only)
      cJSON_AddNumberToObject(doc, "newly_applied", (double)rep->newly_applied);
    print_json(doc);
    return;
  }
  if (status_only) {
    printf("%-8s  %-40s  %-8s  %s\n", "VERSION", "NAME", "STATE", "APPLIED AT");
    for (size_t i = 0; i < rep->count; i++) {
      const tryon_db_migration *m = &rep->items[i];
      char ts[TRYON_TIME_ISO8601_LEN] = "-";
      if (m->applied)
        tryon_time_format_iso8601(m->applied_at_ms, ts);
      printf("%-8lld  %-40s  %-8s  %s\n", (long long)m->version, m->name,
             !m->has_file ? "unknown"
             : m->applied ? "applied"
                          : "pending",
             ts);
    }
    printf("%zu migration(s), %zu pending\n", rep->count, pending);
    return;
  }
  if (rep->newly_applied == 0)
    printf("database is up to date (%zu migration(s))\n", rep->count);
  else
    printf("applied %zu migration(s); database is up to date (%zu in all)\n", rep->newly_applied,
           rep->count);
}

static int cmd_migrate(int argc, char **argv) {
  bool status_only = false, json = false;
  const char *dir = NULL;
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_db_migrations rep = {0};
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      printf("usage: %s\n\n%s", migrate_usage, migrate_help);
      return EXIT_OK;
    }
    if (strcmp(argv[i], "--status") == 0)
      status_only = true;
    else if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if (strcmp(argv[i], "--dir") == 0) {
      if (i + 1 >= argc)
        return usage_error(migrate_usage, "missing folder after", argv[i]);
      dir = argv[++i];
    } else
      return usage_error(migrate_usage, "unknown argument", argv[i]);
  }

  if (tryon_app_init("tryonctl", TRYON_CONFIG_NEED_DB, &cfg) != 0) {
    rc = EXIT_REFUSED;
    goto out;
  }
  /* Operators read the command's own output; routine info lines would only clutter it. */
  if (cfg.log_level < TRYON_LOG_WARN && cfg.log_level != TRYON_LOG_DEBUG)
    tryon_log_set_level(TRYON_LOG_WARN);
  if (dir == NULL)
    dir = tryon_app_migrations_dir(&cfg);

  tryon_db_options opt = {.conninfo = cfg.database_url,
                          .pool_size = 1,
                          .acquire_timeout_ms = cfg.db_pool_timeout_ms,
                          .application_name = "tryonctl"};
  if (tryon_db_new(&opt, &db, &err) != TRYON_OK) {
    rc = EXIT_REFUSED;
    goto out;
  }
  tryon_status st = status_only ? tryon_db_migration_status(db, dir, &rep, &err)
                                : tryon_db_migrate(db, dir, &rep, &err);
  if (rep.count > 0 || st == TRYON_OK)
    print_report(&rep, status_only, json);
  if (st != TRYON_OK)
    rc = EXIT_REFUSED;
out:
  if (rc == EXIT_REFUSED && err.status != TRYON_OK) {
    if (json)
      print_json_error(&err);
    fprintf(stderr, "tryonctl: migrate: %s\n", tryon_err_message(&err));
  }
  tryon_db_migrations_release(&rep);
  tryon_db_free(db);
  tryon_config_release(&cfg);
  return rc;
}

/* The prologue of a command with one subcommand (`initdata verify`, `file check`):
 * --help anywhere prints the help (exit 0), a missing or other subcommand is a usage
 * error. Returns -1 to go on, else the exit code to return. */
static int one_subcommand(int argc, char **argv, const char *sub, const char *usage,
                          const char *help) {
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      printf("usage: %s\n\n%s", usage, help);
      return EXIT_OK;
    }
  }
  if (argc < 2)
    return usage_error(usage, "missing subcommand after", argv[0]);
  if (strcmp(argv[1], sub) != 0)
    return usage_error(usage, "unknown subcommand", argv[1]);
  return -1;
}

/* --------------------------------------------------------------------------- initdata */

static const char initdata_usage[] =
    "tryonctl initdata verify [--bot-token TOKEN] [--max-age SECONDS | --no-max-age]\n"
    "       tryonctl initdata verify --ed25519 --bot-id ID [--test-env]"
    " [--max-age SECONDS | --no-max-age]";

static const char initdata_help[] =
    "Checks Telegram Mini App initData read from standard input (one trailing newline is\n"
    "ignored; at most 64 KiB) and prints one JSON document: {\"valid\":true,\"user\":{...},\n"
    "\"auth_date\":N} and exit 0, or {\"valid\":false,\"error\":{\"code\",\"message\"}} and\n"
    "exit 1. Needs no configuration and no database.\n"
    "\n"
    "  --bot-token TOKEN  check the HMAC hash with this bot token; without it, the\n"
    "                     configured TRYON_BOT_TOKEN (environment or .env), which keeps\n"
    "                     the token out of the process list\n"
    "  --ed25519          check the Ed25519 signature instead (third-party validation)\n"
    "  --bot-id ID        with --ed25519: the bot's numeric id (before ':' in its token)\n"
    "  --test-env         with --ed25519: Telegram's test-environment key\n"
    "  --max-age SECONDS  refuse data older than this (default 86400)\n"
    "  --no-max-age       do not check the age (for old fixtures)\n";

#define INITDATA_STDIN_MAX (64 * 1024)

/* A positive decimal integer argument, or false. */
static bool parse_positive(const char *s, int64_t *out) {
  char *end = NULL;
  long long v;

  if (s == NULL || s[0] < '0' || s[0] > '9') {
    return false;
  }
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0) {
    return false;
  }
  *out = (int64_t)v;
  return true;
}

/* Reads standard input up to INITDATA_STDIN_MAX + 2 bytes (enough to tell "too long"
 * from a 64 KiB line with its newline) into buf; drops one trailing newline. */
static size_t read_initdata(char *buf, size_t cap) {
  size_t n = 0;
  size_t got;

  while (n < cap && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
    n += got;
  }
  if (n > 0 && buf[n - 1] == '\n') {
    n--;
  }
  return n;
}

static cJSON *user_json(const tryon_tg_user *u) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "id", (double)u->id);
  cJSON_AddStringToObject(o, "first_name", u->first_name);
  cJSON_AddStringToObject(o, "last_name", u->last_name);
  cJSON_AddStringToObject(o, "username", u->username);
  cJSON_AddStringToObject(o, "language_code", u->language_code);
  cJSON_AddBoolToObject(o, "is_premium", u->is_premium);
  cJSON_AddStringToObject(o, "photo_url", u->photo_url);
  return o;
}

static int cmd_initdata(int argc, char **argv) {
  tryon_initdata_options opt = {
      .method = TRYON_INITDATA_HMAC, .max_age_s = 86400, .max_future_s = 60};
  bool ed25519 = false, test_env = false, have_max_age = false, no_max_age = false;
  const char *bot_token = NULL;
  int64_t bot_id = 0;
  char *input = NULL;
  size_t len = 0;
  tryon_initdata data;
  tryon_err err;
  tryon_config cfg = {0};
  cJSON *doc = NULL;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  int pre = one_subcommand(argc, argv, "verify", initdata_usage, initdata_help);
  if (pre >= 0)
    return pre;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--ed25519") == 0)
      ed25519 = true;
    else if (strcmp(argv[i], "--test-env") == 0)
      test_env = true;
    else if (strcmp(argv[i], "--no-max-age") == 0)
      no_max_age = true;
    else if (strcmp(argv[i], "--bot-token") == 0) {
      /* The token itself is never echoed, not even in a usage error. */
      if (i + 1 >= argc || argv[i + 1][0] == '\0')
        return usage_error(initdata_usage, "missing token after", argv[i]);
      bot_token = argv[++i];
    } else if (strcmp(argv[i], "--bot-id") == 0) {
      if (i + 1 >= argc)
        return usage_error(initdata_usage, "missing id after", argv[i]);
      if (!parse_positive(argv[i + 1], &bot_id))
        return usage_error(initdata_usage, "--bot-id must be a positive integer, got", argv[i + 1]);
      i++;
    } else if (strcmp(argv[i], "--max-age") == 0) {
      if (i + 1 >= argc)
        return usage_error(initdata_usage, "missing seconds after", argv[i]);
      if (!parse_positive(argv[i + 1], &opt.max_age_s))
        return usage_error(initdata_usage, "--max-age must be a positive integer, got",
                           argv[i + 1]);
      have_max_age = true;
      i++;
    } else
      return usage_error(initdata_usage, "unknown argument", argv[i]);
  }
  if (have_max_age && no_max_age)
    return usage_error(initdata_usage, "--max-age conflicts with", "--no-max-age");
  if (ed25519 && bot_id == 0)
    return usage_error(initdata_usage, "missing required option", "--bot-id");
  if (!ed25519 && bot_token == NULL) {
    /* Without --bot-token, the configured one (environment or .env): keeps the token
     * out of the process list. */
    if (tryon_app_init("tryonctl", 0, &cfg) != 0)
      return EXIT_REFUSED;
    bot_token = cfg.bot_token;
    if (bot_token == NULL) {
      tryon_config_release(&cfg);
      return usage_error(initdata_usage, "no bot token: set TRYON_BOT_TOKEN or pass",
                         "--bot-token");
    }
  }
  if (ed25519 && bot_token != NULL)
    return usage_error(initdata_usage, "not used with --ed25519:", "--bot-token");
  if (!ed25519 && (test_env || bot_id != 0))
    return usage_error(initdata_usage,
                       "only with --ed25519:", test_env ? "--test-env" : "--bot-id");
  if (no_max_age)
    opt.max_age_s = 0;
  if (ed25519) {
    opt.method = TRYON_INITDATA_ED25519;
    opt.bot_id = bot_id;
    opt.test_env = test_env;
  } else
    opt.bot_token = bot_token;

  input = malloc(INITDATA_STDIN_MAX + 2);
  if (input == NULL) {
    fprintf(stderr, "tryonctl: initdata verify: out of memory\n");
    rc = EXIT_REFUSED;
    goto out;
  }
  len = read_initdata(input, INITDATA_STDIN_MAX + 2);
  doc = cJSON_CreateObject();
  if (tryon_initdata_verify(input, len, &opt, &data, &err) == TRYON_OK) {
    cJSON_AddBoolToObject(doc, "valid", true);
    if (data.has_user)
      cJSON_AddItemToObject(doc, "user", user_json(&data.user));
    else
      cJSON_AddNullToObject(doc, "user");
    cJSON_AddNumberToObject(doc, "auth_date", (double)data.auth_date);
  } else {
    cJSON *e = NULL;
    cJSON_AddBoolToObject(doc, "valid", false);
    e = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddStringToObject(e, "code", tryon_status_code(err.status));
    cJSON_AddStringToObject(e, "message", tryon_err_message(&err));
    fprintf(stderr, "tryonctl: initdata verify: %s\n", tryon_err_message(&err));
    rc = EXIT_REFUSED;
  }
  print_json(doc);
  doc = NULL;
out:
  cJSON_Delete(doc);
  free(input);
  tryon_config_release(&cfg);
  return rc;
}

/* ------------------------------------------------------------------------------- file */

static const char file_usage[] = "tryonctl file check PATH [--out OUT] [--thumb-out OUT]";

static const char file_help[] =
    "Runs an image file through the upload checks and normalisation the server applies\n"
    "and prints one JSON document: {\"ok\":true,\"mime\",\"width\",\"height\",\"bytes\",\n"
    "\"sha256\"} (of the normalised image) and exit 0, or {\"ok\":false,\"error\":{\"code\",\n"
    "\"message\"}} and exit 1. The declared type comes from the extension (.jpg/.jpeg:\n"
    "image/jpeg, .png: image/png, else none). Needs no configuration and no database.\n"
    "\n"
    "  --out OUT        write the normalised image to OUT (atomically: a temporary file\n"
    "                   in the same folder, then rename)\n"
    "  --thumb-out OUT  write the thumbnail to OUT, the same way\n";

/* The type a file name implies, as a browser would declare it; NULL for none. */
static const char *mime_from_name(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');

  if (dot == NULL || (slash != NULL && dot < slash))
    return NULL;
  if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
    return "image/jpeg";
  if (strcasecmp(dot, ".png") == 0)
    return "image/png";
  return NULL;
}

/* Reads at most `cap` bytes of `path` into a new malloc buffer (caller frees). A file
 * longer than the upload ceiling is read only to one byte past it: that is enough for
 * the library to refuse it, and a huge file is never loaded. */
static tryon_status read_upload(const char *path, size_t cap, unsigned char **out, size_t *len,
                                tryon_err *err) {
  FILE *f = NULL;
  unsigned char *buf = NULL;
  size_t n = 0, got;
  tryon_status st = TRYON_OK;

  *out = NULL;
  *len = 0;
  buf = malloc(cap > 0 ? cap : 1);
  if (buf == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  f = fopen(path, "rb");
  if (f == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0)
    n += got;
  if (ferror(f)) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  *out = buf;
  *len = n;
  buf = NULL;
out:
  if (f != NULL)
    fclose(f);
  free(buf);
  return st;
}

/* Writes `len` bytes to `path` through a temporary file in the same folder and a
 * rename, so a reader never sees half a file and a failure leaves `path` untouched. */
static tryon_status write_atomic(const char *path, const void *data, size_t len, tryon_err *err) {
  size_t cap = strlen(path) + sizeof ".tmp.XXXXXX";
  char *tmp = malloc(cap);
  const unsigned char *p = data;
  int fd = -1;
  tryon_status st = TRYON_OK;

  if (tmp == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  snprintf(tmp, cap, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot create a file next to %s: %s", path,
                       strerror(errno));
    free(tmp);
    tmp = NULL;
    goto out;
  }
  /* mkstemp makes the file 0600; an image is not a secret. */
  if (fchmod(fd, 0644) != 0)
    goto fail;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto fail;
    p += w;
    len -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    goto fail;
  goto out;
fail:
  st = tryon_err_set(err, TRYON_E_IO, "cannot write %s: %s", path, strerror(errno));
  if (fd >= 0)
    close(fd);
  fd = -1;
  unlink(tmp);
out:
  free(tmp);
  return st;
}

static int cmd_file(int argc, char **argv) {
  const char *path = NULL, *out_path = NULL, *thumb_path = NULL;
  unsigned char *data = NULL;
  size_t len = 0;
  tryon_image img = {0};
  tryon_err err;
  tryon_log_level level = TRYON_LOG_WARN;
  const char *env_level = getenv("TRYON_LOG_LEVEL");
  cJSON *doc = NULL;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  int pre = one_subcommand(argc, argv, "check", file_usage, file_help);
  if (pre >= 0)
    return pre;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "--thumb-out") == 0) {
      if (i + 1 >= argc || argv[i + 1][0] == '\0')
        return usage_error(file_usage, "missing file after", argv[i]);
      if (strcmp(argv[i], "--out") == 0)
        out_path = argv[++i];
      else
        thumb_path = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0')
      return usage_error(file_usage, "unknown argument", argv[i]);
    else if (path != NULL)
      return usage_error(file_usage, "more than one file:", argv[i]);
    else
      path = argv[i];
  }
  if (path == NULL)
    return usage_error(file_usage, "missing", "PATH");

  /* No configuration: only the log level, so TRYON_LOG_LEVEL=debug shows why libvips
   * refused a file. Log lines go to stderr, the JSON to stdout. */
  if (env_level != NULL && env_level[0] != '\0')
    (void)tryon_log_level_parse(env_level, &level);
  tryon_log_set_level(level < TRYON_LOG_WARN && level != TRYON_LOG_DEBUG ? TRYON_LOG_WARN : level);
  tryon_log_set_sink(tryon_app_log_sink, NULL);

  if (read_upload(path, (size_t)TRYON_FILES_MAX_BYTES + 1, &data, &len, &err) != TRYON_OK ||
      tryon_files_global_init(&err) != TRYON_OK ||
      tryon_image_normalise(data, len, mime_from_name(path), &img, &err) != TRYON_OK ||
      (out_path != NULL && write_atomic(out_path, img.data, img.len, &err) != TRYON_OK) ||
      (thumb_path != NULL && write_atomic(thumb_path, img.thumb, img.thumb_len, &err) != TRYON_OK))
    rc = EXIT_REFUSED;

  doc = cJSON_CreateObject();
  if (rc == EXIT_OK) {
    char hex[2 * sizeof img.sha256 + 1];
    tryon_hex_encode(img.sha256, sizeof img.sha256, hex);
    cJSON_AddBoolToObject(doc, "ok", true);
    cJSON_AddStringToObject(doc, "mime", img.mime);
    cJSON_AddNumberToObject(doc, "width", img.width);
    cJSON_AddNumberToObject(doc, "height", img.height);
    cJSON_AddNumberToObject(doc, "bytes", (double)img.len);
    cJSON_AddStringToObject(doc, "sha256", hex);
  } else {
    cJSON *e = NULL;
    cJSON_AddBoolToObject(doc, "ok", false);
    e = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddStringToObject(e, "code", tryon_status_code(err.status));
    cJSON_AddStringToObject(e, "message", tryon_err_message(&err));
    fprintf(stderr, "tryonctl: file check: %s\n", tryon_err_message(&err));
  }
  print_json(doc);
  tryon_image_release(&img);
  free(data);
  tryon_files_global_shutdown();
  return rc;
}

/* ------------------------------------------------------------ shared by user and credits */

/* The options a user or credits subcommand may take. */
enum {
  OPT_JSON = 1u << 0,
  OPT_REASON = 1u << 1,
  OPT_KEY = 1u << 2,
  OPT_LIMIT = 1u << 3,
  OPT_STATE = 1u << 4,
  OPT_USER = 1u << 5,
};

#define CTL_MAX_POSITIONAL 2

/* A subcommand's arguments once parsed (strings borrowed from argv). */
typedef struct ctl_args {
  const char *name; /* "credits grant": for messages */
  const char *usage;
  const char *pos[CTL_MAX_POSITIONAL];
  bool json;
  const char *reason; /* NULL: not given */
  const char *key;
  const char *limit;
  const char *state;
  const char *user;
} ctl_args;

typedef struct subcommand {
  const char *name;
  const char *usage;
  const char *help;
  unsigned opts;                             /* OPT_* it takes */
  const char *pos_names[CTL_MAX_POSITIONAL]; /* its positional arguments, all required */
  int (*run)(const ctl_args *a);
} subcommand;

/* Parses the arguments of subcommand `sub` (argv[0] is its name) and runs it. */
static int run_subcommand(const char *group, const subcommand *sub, int argc, char **argv) {
  char name[64];
  ctl_args a;
  int npos = 0, want = 0;

  memset(&a, 0, sizeof a);
  snprintf(name, sizeof name, "%s %s", group, sub->name);
  a.name = name;
  a.usage = sub->usage;
  while (want < CTL_MAX_POSITIONAL && sub->pos_names[want] != NULL)
    want++;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char **slot = NULL;
    unsigned opt = 0;

    if (is_help(arg)) {
      printf("usage: %s\n\n%s", sub->usage, sub->help);
      return EXIT_OK;
    }
    if (strcmp(arg, "--json") == 0) {
      opt = OPT_JSON;
    } else if (strcmp(arg, "--reason") == 0) {
      opt = OPT_REASON;
      slot = &a.reason;
    } else if (strcmp(arg, "--key") == 0) {
      opt = OPT_KEY;
      slot = &a.key;
    } else if (strcmp(arg, "--limit") == 0) {
      opt = OPT_LIMIT;
      slot = &a.limit;
    } else if (strcmp(arg, "--state") == 0) {
      opt = OPT_STATE;
      slot = &a.state;
    } else if (strcmp(arg, "--user") == 0) {
      opt = OPT_USER;
      slot = &a.user;
    } else if (arg[0] == '-' && arg[1] != '\0' && !(arg[1] >= '0' && arg[1] <= '9')) {
      /* "-5" is not an option but a bad number, left for the value checks to name. */
      return usage_error(sub->usage, "unknown argument", arg);
    }
    if (opt != 0 && (sub->opts & opt) == 0)
      return usage_error(sub->usage, "unknown argument", arg);
    if (opt == OPT_JSON)
      a.json = true;
    else if (slot != NULL) {
      if (i + 1 >= argc)
        return usage_error(sub->usage, "missing value after", arg);
      *slot = argv[++i];
    } else if (npos >= want)
      return usage_error(sub->usage, "unexpected argument", arg);
    else
      a.pos[npos++] = arg;
  }
  if (npos < want)
    return usage_error(sub->usage, "missing", sub->pos_names[npos]);
  return sub->run(&a);
}

/* Runs the subcommand named by argv[1] of a group ("user", "credits"). */
static int run_group(const char *usage, const char *help, const subcommand *subs, size_t n,
                     int argc, char **argv) {
  if (argc < 2)
    return usage_error(usage, "missing subcommand after", argv[0]);
  if (is_help(argv[1])) {
    printf("usage: %s\n\n%s", usage, help);
    return EXIT_OK;
  }
  for (size_t i = 0; i < n; i++) {
    if (strcmp(argv[1], subs[i].name) == 0)
      return run_subcommand(argv[0], &subs[i], argc - 1, argv + 1);
  }
  return usage_error(usage, "unknown subcommand", argv[1]);
}

/* USER: a Telegram id, a positive integer. */
static bool parse_telegram_id(const ctl_args *a, int64_t *out, int *rc) {
  if (parse_positive(a->pos[0], out))
    return true;
  *rc = usage_error(a->usage, "USER must be a Telegram id (a positive integer), got", a->pos[0]);
  return false;
}

/* A reason (block reason or ledger note): present when required, not empty, at most
 * 1000 characters (the schema's limit for both). */
static bool check_reason(const ctl_args *a, bool required, int *rc) {
  if (a->reason == NULL) {
    if (required)
      *rc = usage_error(a->usage, "missing required option", "--reason");
    return !required;
  }
  if (a->reason[0] == '\0') {
    *rc = usage_error(a->usage, "empty value after", "--reason");
    return false;
  }
  if (tryon_utf8_chars(a->reason) > 1000) {
    *rc = usage_error(a->usage, "--reason is longer than", "1000 characters");
    return false;
  }
  return true;
}

/* One command's database: the configuration and a pool of one connection, leased. */
typedef struct ctl_db {
  tryon_config cfg;
  tryon_db *db;
  tryon_db_conn *conn;
} ctl_db;

/* Loads the configuration and leases the connection. false: refused, and either `err`
 * says why or (bad configuration) tryon_app_init already did on stderr. */
static bool ctl_db_open(ctl_db *s, tryon_err *err) {
  memset(s, 0, sizeof *s);
  if (tryon_app_init("tryonctl", TRYON_CONFIG_NEED_DB, &s->cfg) != 0)
    return false;
  /* Operators read the command's own output; routine info lines would only clutter it. */
  if (s->cfg.log_level < TRYON_LOG_WARN && s->cfg.log_level != TRYON_LOG_DEBUG)
    tryon_log_set_level(TRYON_LOG_WARN);
  tryon_db_options opt = {.conninfo = s->cfg.database_url,
                          .pool_size = 1,
                          .acquire_timeout_ms = s->cfg.db_pool_timeout_ms,
                          .application_name = "tryonctl"};
  return tryon_db_new(&opt, &s->db, err) == TRYON_OK &&
         tryon_db_acquire(s->db, &s->conn, err) == TRYON_OK;
}

static void ctl_db_close(ctl_db *s) {
  tryon_db_release(s->conn);
  tryon_db_free(s->db);
  tryon_config_release(&s->cfg);
  memset(s, 0, sizeof *s);
}

/* A refusal (exit 1): the error as JSON on stdout with --json, and always
 * "tryonctl: <command>: <message>" on stderr. Nothing when `err` holds no status (a
 * bad configuration, already reported). `extra` (optional, taken) adds fields to the
 * JSON error object. */
static int refuse(const ctl_args *a, const tryon_err *err, cJSON *extra) {
  if (err->status != TRYON_OK) {
    if (a->json) {
      cJSON *doc = cJSON_CreateObject();
      cJSON *e = cJSON_AddObjectToObject(doc, "error");
      cJSON_AddStringToObject(e, "code", tryon_status_code(err->status));
      cJSON_AddStringToObject(e, "message", tryon_err_message(err));
      for (cJSON *it = extra ? extra->child : NULL; it != NULL; it = it->next)
        cJSON_AddItemToObject(e, it->string, cJSON_Duplicate(it, true));
      print_json(doc);
    }
    fprintf(stderr, "tryonctl: %s: %s\n", a->name, tryon_err_message(err));
  }
  cJSON_Delete(extra);
  return EXIT_REFUSED;
}

/* A time for people: ISO 8601, or `none` for 0. Returns `out`. */
static const char *human_time(int64_t ms, const char *none, char out[TRYON_TIME_ISO8601_LEN]) {
  if (ms == 0)
    snprintf(out, TRYON_TIME_ISO8601_LEN, "%s", none);
  else
    tryon_time_format_iso8601(ms, out);
  return out;
}

/* The balance as the API shows it, after "user": the Telegram id, as operators name
 * users. Caller deletes. */
static cJSON *balance_json(int64_t telegram_id, const tryon_balance *b) {
  cJSON *o = tryon_balance_to_json(b);
  cJSON *user = cJSON_CreateNumber((double)telegram_id);

  /* Added, detached and inserted again: cJSON has no "add first", and this keeps the
   * member's name. */
  cJSON_AddItemToObject(o, "user", user);
  cJSON_DetachItemViaPointer(o, user);
  cJSON_InsertItemInArray(o, 0, user);
  return o;
}

/* The plan and watermark lines under a "... N credits (period P, pack K)" line. */
static void print_balance_details(const tryon_balance *b) {
  char ts[TRYON_TIME_ISO8601_LEN];

  printf("  plan        %s", tryon_billing_plan_code(b->plan));
  if (b->period_ends_ms != 0)
    printf(", period ends %s", human_time(b->period_ends_ms, "-", ts));
  if (b->queued_until_ms != 0)
    printf(", paid until %s", human_time(b->queued_until_ms, "-", ts));
  printf("\n  watermark   %s\n", b->watermark ? "yes (next spend takes free credits)" : "no");
}

/* Opens the database and loads the user of Telegram id `telegram_id`; false with `err`
 * set (or a bad configuration already reported) otherwise. */
static bool load_user(ctl_db *s, int64_t telegram_id, tryon_user *u, tryon_err *err) {
  return ctl_db_open(s, err) &&
         tryon_users_get_by_telegram(s->conn, telegram_id, u, err) == TRYON_OK;
}

/* ------------------------------------------------------------------------------- user */

static const char user_usage[] = "tryonctl user show USER [--json]\n"
                                 "       tryonctl user block USER [--reason TEXT] [--json]\n"
                                 "       tryonctl user unblock USER [--json]";

static const char user_help[] =
    "Looks up, blocks and unblocks users. USER is always a Telegram id. Each subcommand\n"
    "takes --help. Exit 1 (not_found) for a Telegram id no user has.\n"
    "\n"
    "  show     the user and their credits\n"
    "  block    refuse the user everywhere (403), with an optional reason\n"
    "  unblock  lift a block\n";

static const char user_show_usage[] = "tryonctl user show USER [--json]";
static const char user_show_help[] =
    "Prints the user with Telegram id USER (names, username, language, premium, block,\n"
    "sign-up and last sign-in) and their credits (total, period and pack credits, plan,\n"
    "period end, watermark). Reading the credits brings the wallet up to date, as the\n"
    "app does: it may create the wallet and grant this month's free allowance.\n"
    "\n"
    "  --json  print {\"user\":{...},\"balance\":{...}}\n";

static const char user_block_usage[] = "tryonctl user block USER [--reason TEXT] [--json]";
static const char user_block_help[] =
    "Blocks the user with Telegram id USER: every request of theirs is refused (403).\n"
    "Blocking a blocked user keeps the time of the first block; --reason replaces its\n"
    "reason, no --reason keeps it.\n"
    "\n"
    "  --reason TEXT  why (at most 1000 characters); shown by user show\n"
    "  --json         print {\"user\",\"blocked\",\"reason\",\"blocked_at\",\"changed\"}\n";

static const char user_unblock_usage[] = "tryonctl user unblock USER [--json]";
static const char user_unblock_help[] =
    "Lifts the block of the user with Telegram id USER (and forgets its reason).\n"
    "Unblocking a user who is not blocked changes nothing.\n"
    "\n"
    "  --json  print {\"user\",\"blocked\",\"changed\"}\n";

static void print_user(const tryon_user *u) {
  char ts[TRYON_TIME_ISO8601_LEN];

  printf("user %lld (id %lld)\n", (long long)u->telegram_id, (long long)u->id);
  if (u->first_name[0] == '\0' && u->last_name[0] == '\0')
    printf("  name        -\n");
  else
    printf("  name        %s%s%s\n", u->first_name,
           u->first_name[0] != '\0' && u->last_name[0] != '\0' ? " " : "", u->last_name);
  printf("  username    %s%s\n", u->username[0] != '\0' ? "@" : "",
         u->username[0] != '\0' ? u->username : "-");
  printf("  language    %s\n", u->language_code[0] != '\0' ? u->language_code : "-");
  printf("  premium     %s\n", u->is_premium ? "yes" : "no");
  if (u->blocked)
    printf("  blocked     yes, since %s%s%s\n", human_time(u->blocked_at_ms, "-", ts),
           u->blocked_reason[0] != '\0' ? ": " : "", u->blocked_reason);
  else
    printf("  blocked     no\n");
  printf("  created     %s\n", human_time(u->created_at_ms, "-", ts));
  printf("  last login  %s\n", human_time(u->last_login_at_ms, "never", ts));
}

/* user show and credits balance: the user's wallet brought up to date, shown with the
 * user's record (`whole`) or alone. */
static int show_balance(const ctl_args *a, bool whole) {
  ctl_db s = {0};
  tryon_user u;
  tryon_balance b;
  tryon_err err;
  int64_t tg = 0;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!parse_telegram_id(a, &tg, &rc))
    return rc;
  if (!load_user(&s, tg, &u, &err) ||
      tryon_billing_balance(s.conn, u.id, tryon_clock_now_ms(NULL), &b, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (a->json && whole) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "user", tryon_user_to_json(&u, TRYON_USER_JSON_OPERATOR));
    cJSON_AddItemToObject(doc, "balance", balance_json(tg, &b));
    print_json(doc);
  } else if (a->json) {
    print_json(balance_json(tg, &b));
  } else {
    if (whole) {
      print_user(&u);
      printf("credits       ");
    } else {
      printf("user %lld: ", (long long)tg);
    }
    printf("%lld%s (period %lld, pack %lld)\n", (long long)b.total, whole ? "" : " credits",
           (long long)b.period, (long long)b.pack);
    print_balance_details(&b);
  }
out:
  ctl_db_close(&s);
  return rc;
}

static int cmd_user_show(const ctl_args *a) {
  return show_balance(a, true);
}

/* block and unblock: the same steps, the other way round. */
static int block_user(const ctl_args *a, bool block) {
  ctl_db s = {0};
  tryon_user before, after;
  tryon_err err;
  int64_t tg = 0;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!parse_telegram_id(a, &tg, &rc) || !check_reason(a, false, &rc))
    return rc;
  if (!load_user(&s, tg, &before, &err) ||
      tryon_users_set_blocked(s.conn, before.id, block, a->reason, &err) != TRYON_OK ||
      tryon_users_get(s.conn, before.id, &after, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  bool changed = before.blocked != after.blocked;
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "user", (double)tg);
    cJSON_AddBoolToObject(doc, "blocked", after.blocked);
    if (block) {
      if (after.blocked_reason[0] != '\0')
        cJSON_AddStringToObject(doc, "reason", after.blocked_reason);
      else
        cJSON_AddNullToObject(doc, "reason");
      tryon_json_add_time(doc, "blocked_at", after.blocked_at_ms);
    }
    cJSON_AddBoolToObject(doc, "changed", changed);
    print_json(doc);
  } else if (block) {
    char ts[TRYON_TIME_ISO8601_LEN];
    printf(changed ? "blocked user %lld (since %s)%s%s\n"
                   : "user %lld was already blocked (since %s)%s%s\n",
           (long long)tg, human_time(after.blocked_at_ms, "-", ts),
           after.blocked_reason[0] != '\0' ? ": " : "", after.blocked_reason);
  } else if (changed)
    printf("unblocked user %lld\n", (long long)tg);
  else
    printf("user %lld was not blocked; nothing changed\n", (long long)tg);
out:
  ctl_db_close(&s);
  return rc;
}

static int cmd_user_block(const ctl_args *a) {
  return block_user(a, true);
}

static int cmd_user_unblock(const ctl_args *a) {
  return block_user(a, false);
}

static const subcommand user_subcommands[] = {
    {"show", user_show_usage, user_show_help, OPT_JSON, {"USER"}, cmd_user_show},
    {"block", user_block_usage, user_block_help, OPT_JSON | OPT_REASON, {"USER"}, cmd_user_block},
    {"unblock", user_unblock_usage, user_unblock_help, OPT_JSON, {"USER"}, cmd_user_unblock},
};

static int cmd_user(int argc, char **argv) {
  return run_group(user_usage, user_help, user_subcommands,
                   sizeof user_subcommands / sizeof user_subcommands[0], argc, argv);
}

/* ---------------------------------------------------------------------------- credits */

static const char credits_usage[] =
    "tryonctl credits grant USER AMOUNT --reason TEXT [--key KEY] [--json]\n"
    "       tryonctl credits revoke USER AMOUNT --reason TEXT [--key KEY] [--json]\n"
    "       tryonctl credits balance USER [--json]\n"
    "       tryonctl credits history USER [--limit N] [--json]\n"
    "       tryonctl credits audit [--json]";

static const char credits_help[] =
    "Operators' view of and corrections to credits. USER is always a Telegram id. Every\n"
    "change is a ledger entry under an idempotency key, so repeating a command with the\n"
    "same --key changes nothing. Each subcommand takes --help.\n"
    "\n"
    "  grant    add pack credits (they never expire)\n"
    "  revoke   take credits away, pack credits first; never below zero\n"
    "  balance  the user's credits now\n"
    "  history  the user's ledger entries, newest first\n"
    "  audit    check every wallet against the sums of its ledger\n";

static const char grant_usage[] =
    "tryonctl credits grant USER AMOUNT --reason TEXT [--key KEY] [--json]";
static const char grant_help[] =
    "Adds AMOUNT (1 to 1000000) pack credits to the user with Telegram id USER. A\n"
    "Telegram id no user has yet gets a user row (never signed in), so credits can be\n"
    "granted before a first sign-in; the output says so. Blocked users may receive\n"
    "grants. Repeating a grant with the same KEY changes nothing and prints the first\n"
    "result (exit 0, \"duplicate\":true); a KEY first used for a different change is\n"
    "refused (conflict).\n"
    "\n"
    "  --reason TEXT  why (required, at most 1000 characters): the ledger entry's note\n"
    "  --key KEY      the idempotency key (default grant:<new uuid>, printed); \"grant:\"\n"
    "                 is put in front of a KEY without a \"kind:\" prefix; the kinds\n"
    "                 the system writes (free, sub, expire, job, payment) are refused\n"
    "  --json         print {\"key\",\"user\",\"amount\",\"result\":{...},\"duplicate\",\n"
    "                 \"created_user\"}\n";

static const char revoke_usage[] =
    "tryonctl credits revoke USER AMOUNT --reason TEXT [--key KEY] [--json]";
static const char revoke_help[] =
    "Takes AMOUNT (1 to 1000000) credits from the user with Telegram id USER, pack\n"
    "credits first, then period credits. A user with fewer credits is refused (exit 1,\n"
    "insufficient_credits, with the balance) and nothing changes. Repeating a revoke\n"
    "with the same KEY changes nothing and prints the first result; a KEY first used\n"
    "for a different change is refused (conflict).\n"
    "\n"
    "  --reason TEXT  why (required, at most 1000 characters): the ledger entry's note\n"
    "  --key KEY      the idempotency key (default revoke:<new uuid>, printed); \"revoke:\"\n"
    "                 is put in front of a KEY without a \"kind:\" prefix; the kinds\n"
    "                 the system writes (free, sub, expire, job, payment) are refused\n"
    "  --json         print {\"key\",\"user\",\"amount\",\"result\":{...},\"duplicate\"}\n";

static const char balance_usage[] = "tryonctl credits balance USER [--json]";
static const char balance_help[] =
    "Prints the credits of the user with Telegram id USER: total, period and pack\n"
    "credits, the plan and the end of its period, and whether the next spend would be\n"
    "watermarked. Brings the wallet up to date first (may grant this month's free\n"
    "allowance), as the app does.\n"
    "\n"
    "  --json  print {\"user\",\"total\",\"period\",\"pack\",\"plan\",\"period_ends_at\",\n"
    "          \"queued_until\",\"watermark\"} (times ISO 8601 or null)\n";

static const char history_usage[] = "tryonctl credits history USER [--limit N] [--json]";
static const char history_help[] =
    "Prints the ledger entries of the user with Telegram id USER, newest first.\n"
    "\n"
    "  --limit N  at most N entries (1 to 1000, default 50)\n"
    "  --json     print {\"user\",\"entries\":[{\"id\",\"key\",\"reason\",\"delta_period\",\n"
    "             \"delta_pack\",\"period_after\",\"pack_after\",\"from_free\",\"note\",\n"
    "             \"created_at\"}]}\n";

static const char audit_usage[] = "tryonctl credits audit [--json]";
static const char audit_help[] =
    "Checks every user's wallet against the sums of their ledger entries. Exit 0 when\n"
    "all agree; exit 1 listing each user whose wallet differs (Telegram id, the\n"
    "wallet's period/pack credits and the ledger's).\n"
    "\n"
    "  --json  print {\"ok\",\"offenders\",\"problems\":[{\"user\",\"user_id\",\"wallet\":\n"
    "          {\"period\",\"pack\"},\"ledger\":{\"period\",\"pack\"}}]}\n";

#define CREDITS_AMOUNT_MAX 1000000
#define HISTORY_DEFAULT 50
#define HISTORY_MAX 1000
#define AUDIT_LIST_MAX 1000

/* The idempotency key of a grant or revoke into `out`: KEY as given when it has a
 * "kind:" prefix, else "<kind>:KEY"; without KEY "<kind>:<new uuid v4>". Refuses (usage)
 * what the ledger would (spaces, an empty rest, more than 200 bytes) and the system's
 * own kinds. */
static bool make_key(const ctl_args *a, const char *kind, char out[TRYON_LEDGER_KEY_MAX + 1],
                     int *rc, tryon_err *err) {
  char id[TRYON_UUID_STR_LEN];
  tryon_uuid u;
  int n;

  if (a->key == NULL) {
    if (tryon_uuid_v4(&u) != TRYON_OK) {
      tryon_err_set(err, TRYON_E_INTERNAL, "cannot make a random key");
      *rc = refuse(a, err, NULL);
      return false;
    }
    tryon_uuid_format(&u, id);
    snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s:%s", kind, id);
    return true;
  }
  n = tryon_billing_key_has_kind(a->key)
          ? snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s", a->key)
          : snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s:%s", kind, a->key);
  bool ok = n > 0 && n <= TRYON_LEDGER_KEY_MAX && tryon_billing_key_valid(out);
  if (!ok)
    *rc = usage_error(a->usage, "--key must be kind:text without spaces, at most 200 bytes, got",
                      a->key);
  else if (tryon_billing_key_reserved(out)) {
    *rc = usage_error(a->usage, "--key of a kind the system writes itself, got", a->key);
    ok = false;
  }
  return ok;
}

static cJSON *result_json(const tryon_billing_result *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "ledger_id", (double)r->ledger_id);
  cJSON_AddNumberToObject(o, "delta_period", (double)r->delta_period);
  cJSON_AddNumberToObject(o, "delta_pack", (double)r->delta_pack);
  cJSON_AddNumberToObject(o, "period_after", (double)r->period_after);
  cJSON_AddNumberToObject(o, "pack_after", (double)r->pack_after);
  return o;
}

/* USER AMOUNT --reason TEXT [--key KEY]: what grant and revoke both take. */
static bool parse_change(const ctl_args *a, int64_t *tg, int64_t *amount, int *rc) {
  if (!parse_telegram_id(a, tg, rc))
    return false;
  if (!parse_positive(a->pos[1], amount) || *amount > CREDITS_AMOUNT_MAX) {
    *rc = usage_error(a->usage, "AMOUNT must be an integer from 1 to 1000000, got", a->pos[1]);
    return false;
  }
  return check_reason(a, true, rc);
}

/* grant (sign +1) and revoke (sign -1): the same steps. */
static int change_credits(const ctl_args *a, bool grant) {
  const char *kind = grant ? "grant" : "revoke";
  char key[TRYON_LEDGER_KEY_MAX + 1];
  ctl_db s = {0};
  tryon_user u;
  tryon_billing_result res = {0};
  tryon_err err;
  bool created = false;
  int64_t tg = 0, amount = 0, now = tryon_clock_now_ms(NULL);
  int rc = EXIT_OK;
  tryon_status st;

  tryon_err_clear(&err);
  if (!parse_change(a, &tg, &amount, &rc) || !make_key(a, kind, key, &rc, &err))
    return rc;
  if (!ctl_db_open(&s, &err)) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  /* A grant may come before the person's first sign-in; a revoke needs credits, so a
   * user it would have to create could only be refused. */
  st = grant ? tryon_users_ensure_telegram(s.conn, tg, &u, &created, &err)
             : tryon_users_get_by_telegram(s.conn, tg, &u, &err);
  if (st == TRYON_OK)
    st = grant ? tryon_billing_grant(s.conn, u.id, amount, key, "tryonctl", a->reason, now, &res,
                                     &err)
               : tryon_billing_revoke(s.conn, u.id, amount, key, "tryonctl", a->reason, now, &res,
                                      &err);
  if (st == TRYON_E_INSUFFICIENT_CREDITS) {
    /* revoke reports no balance with its refusal: read it (nothing changed). */
    tryon_balance b;
    tryon_err berr;
    tryon_err_clear(&berr);
    cJSON *extra = cJSON_CreateObject();
    if (tryon_billing_balance(s.conn, u.id, now, &b, &berr) == TRYON_OK) {
      cJSON_AddNumberToObject(extra, "balance", (double)b.total);
      tryon_err_set(&err, st, "user %lld has %lld credits, cannot revoke %lld", (long long)tg,
                    (long long)b.total, (long long)amount);
    }
    cJSON_AddNumberToObject(extra, "amount", (double)amount);
    rc = refuse(a, &err, extra);
    goto out;
  }
  /* A replayed key returns the first result; it must be this very change, not another
   * one that happened to use the key (the result does not name its user). */
  if (st == TRYON_E_DUPLICATE && (grant ? res.delta_pack != amount || res.delta_period != 0
                                        : res.delta_pack > 0 || res.delta_period > 0 ||
                                              res.delta_pack + res.delta_period != -amount)) {
    st = tryon_err_set(&err, TRYON_E_CONFLICT,
                       "key %s was used before for another change (period %+lld, pack %+lld)", key,
                       (long long)res.delta_period, (long long)res.delta_pack);
  }
  if (st != TRYON_OK && st != TRYON_E_DUPLICATE) {
    /* The outcome may be unknown (a connection lost at COMMIT): the key lets the
     * operator retry safely, so it is always shown. */
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddStringToObject(extra, "key", key);
    fprintf(stderr, "tryonctl: %s: to retry safely, run it again with --key %s\n", a->name, key);
    rc = refuse(a, &err, extra);
    goto out;
  }
  bool duplicate = st == TRYON_E_DUPLICATE;
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "key", key);
    cJSON_AddNumberToObject(doc, "user", (double)tg);
    cJSON_AddNumberToObject(doc, "amount", (double)amount);
    cJSON_AddItemToObject(doc, "result", result_json(&res));
    cJSON_AddBoolToObject(doc, "duplicate", duplicate);
    if (grant)
      cJSON_AddBoolToObject(doc, "created_user", created);
    print_json(doc);
    goto out;
  }
  if (created)
    printf("created user %lld (no user had this Telegram id; never signed in)\n", (long long)tg);
  if (duplicate)
    printf("already done: key %s was used before; nothing changed (ledger entry %lld:"
           " %s %lld credit%s %s %lld)\n",
           key, (long long)res.ledger_id, grant ? "granted" : "revoked", (long long)amount,
           amount == 1 ? "" : "s", grant ? "to" : "from", (long long)tg);
  else
    printf("%s %lld credit%s %s %lld (key %s)\n", grant ? "granted" : "revoked", (long long)amount,
           amount == 1 ? "" : "s", grant ? "to" : "from", (long long)tg, key);
  printf("%s: period %lld, pack %lld\n", duplicate ? "that entry left" : "balance now",
         (long long)res.period_after, (long long)res.pack_after);
out:
  ctl_db_close(&s);
  return rc;
}

static int cmd_credits_grant(const ctl_args *a) {
  return change_credits(a, true);
}

static int cmd_credits_revoke(const ctl_args *a) {
  return change_credits(a, false);
}

static int cmd_credits_balance(const ctl_args *a) {
  return show_balance(a, false);
}

static int cmd_credits_history(const ctl_args *a) {
  ctl_db s = {0};
  tryon_user u;
  tryon_ledger_entry *entries = NULL;
  size_t n = 0;
  tryon_err err;
  int64_t tg = 0, limit = HISTORY_DEFAULT;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!parse_telegram_id(a, &tg, &rc))
    return rc;
  if (a->limit != NULL && (!parse_positive(a->limit, &limit) || limit > HISTORY_MAX))
    return usage_error(a->usage, "--limit must be an integer from 1 to 1000, got", a->limit);
  entries = calloc((size_t)limit, sizeof *entries);
  if (entries == NULL) {
    rc = refuse(a, &(tryon_err){.status = TRYON_E_NOMEM}, NULL);
    goto out;
  }
  if (!load_user(&s, tg, &u, &err) ||
      tryon_billing_history(s.conn, u.id, (size_t)limit, entries, &n, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "user", (double)tg);
    cJSON *arr = cJSON_AddArrayToObject(doc, "entries");
    for (size_t i = 0; i < n; i++) {
      const tryon_ledger_entry *e = &entries[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddItemToArray(arr, o);
      cJSON_AddNumberToObject(o, "id", (double)e->id);
      cJSON_AddStringToObject(o, "key", e->key);
      cJSON_AddStringToObject(o, "reason", e->reason);
      cJSON_AddNumberToObject(o, "delta_period", (double)e->delta_period);
      cJSON_AddNumberToObject(o, "delta_pack", (double)e->delta_pack);
      cJSON_AddNumberToObject(o, "period_after", (double)e->period_after);
      cJSON_AddNumberToObject(o, "pack_after", (double)e->pack_after);
      cJSON_AddBoolToObject(o, "from_free", e->from_free);
      cJSON_AddStringToObject(o, "note", e->note);
      tryon_json_add_time(o, "created_at", e->created_ms);
    }
    print_json(doc);
    goto out;
  }
  if (n == 0) {
    printf("user %lld has no ledger entries\n", (long long)tg);
    goto out;
  }
  printf("%-8s  %-24s  %-18s  %7s  %7s  %13s  %s\n", "ID", "WHEN", "REASON", "PERIOD", "PACK",
         "AFTER (P/K)", "KEY / NOTE");
  for (size_t i = 0; i < n; i++) {
    const tryon_ledger_entry *e = &entries[i];
    char ts[TRYON_TIME_ISO8601_LEN], after[48];
    snprintf(after, sizeof after, "%lld/%lld", (long long)e->period_after,
             (long long)e->pack_after);
    printf("%-8lld  %-24s  %-18s  %+7lld  %+7lld  %13s  %s%s%s\n", (long long)e->id,
           human_time(e->created_ms, "-", ts), e->reason, (long long)e->delta_period,
           (long long)e->delta_pack, after, e->key, e->note[0] != '\0' ? " / " : "", e->note);
  }
out:
  free(entries);
  ctl_db_close(&s);
  return rc;
}

static int cmd_credits_audit(const ctl_args *a) {
  ctl_db s = {0};
  tryon_audit_problem *problems = NULL;
  size_t n = 0;
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  problems = calloc(AUDIT_LIST_MAX, sizeof *problems);
  if (problems == NULL) {
    rc = refuse(a, &(tryon_err){.status = TRYON_E_NOMEM}, NULL);
    goto out;
  }
  if (!ctl_db_open(&s, &err) ||
      tryon_billing_audit(s.conn, problems, AUDIT_LIST_MAX, &n, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  size_t listed = n < AUDIT_LIST_MAX ? n : AUDIT_LIST_MAX;
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddBoolToObject(doc, "ok", n == 0);
    cJSON_AddNumberToObject(doc, "offenders", (double)n);
    cJSON *arr = cJSON_AddArrayToObject(doc, "problems");
    for (size_t i = 0; i < listed; i++) {
      const tryon_audit_problem *p = &problems[i];
      cJSON *o = cJSON_CreateObject(), *w = NULL, *l = NULL;
      cJSON_AddItemToArray(arr, o);
      cJSON_AddNumberToObject(o, "user", (double)p->telegram_id);
      cJSON_AddNumberToObject(o, "user_id", (double)p->user_id);
      w = cJSON_AddObjectToObject(o, "wallet");
      cJSON_AddNumberToObject(w, "period", (double)p->wallet_period);
      cJSON_AddNumberToObject(w, "pack", (double)p->wallet_pack);
      l = cJSON_AddObjectToObject(o, "ledger");
      cJSON_AddNumberToObject(l, "period", (double)p->ledger_period);
      cJSON_AddNumberToObject(l, "pack", (double)p->ledger_pack);
      cJSON_AddBoolToObject(o, "chain_broken", p->chain_broken);
    }
    print_json(doc);
  } else if (n == 0)
    printf("audit ok: every wallet equals the sums of its ledger\n");
  else {
    printf("%-14s  %-10s  %-17s  %s\n", "USER", "ID", "WALLET (P/K)", "LEDGER (P/K)");
    for (size_t i = 0; i < listed; i++) {
      const tryon_audit_problem *p = &problems[i];
      char wallet[48];
      snprintf(wallet, sizeof wallet, "%lld/%lld", (long long)p->wallet_period,
               (long long)p->wallet_pack);
      printf("%-14lld  %-10lld  %-17s  %lld/%lld%s\n", (long long)p->telegram_id,
             (long long)p->user_id, wallet, (long long)p->ledger_period, (long long)p->ledger_pack,
             p->chain_broken ? "  (running balances broken)" : "");
    }
    if (listed < n)
      printf("... and %zu more\n", n - listed);
  }
  if (n > 0) {
    fprintf(stderr, "tryonctl: %s: %zu user(s) whose wallet differs from the ledger\n", a->name, n);
    rc = EXIT_REFUSED;
  }
out:
  free(problems);
  ctl_db_close(&s);
  return rc;
}

static const subcommand credits_subcommands[] = {
    {"grant",
     grant_usage,
     grant_help,
     OPT_JSON | OPT_REASON | OPT_KEY,
     {"USER", "AMOUNT"},
     cmd_credits_grant},
    {"revoke",
     revoke_usage,
     revoke_help,
     OPT_JSON | OPT_REASON | OPT_KEY,
     {"USER", "AMOUNT"},
     cmd_credits_revoke},
    {"balance", balance_usage, balance_help, OPT_JSON, {"USER"}, cmd_credits_balance},
    {"history", history_usage, history_help, OPT_JSON | OPT_LIMIT, {"USER"}, cmd_credits_history},
    {"audit", audit_usage, audit_help, OPT_JSON, {NULL}, cmd_credits_audit},
};

static int cmd_credits(int argc, char **argv) {
  return run_group(credits_usage, credits_help, credits_subcommands,
                   sizeof credits_subcommands / sizeof credits_subcommands[0], argc, argv);
}

/* ------------------------------------------------------------------------------- jobs */

static const char jobs_usage[] =
    "tryonctl jobs list [--state S] [--user USER] [--limit N] [--json]\n"
    "       tryonctl jobs show ID [--json]\n"
    "       tryonctl jobs retry ID\n"
    "       tryonctl jobs cancel ID";
static const char jobs_help[] =
    "Inspects and steers background jobs. USER is a Telegram id. Each subcommand takes\n"
    "--help.\n"
    "\n"
    "  list    newest first; --state queued|running|succeeded|failed|cancelled\n"
    "  show    one job: state, attempts, progress, lease, payload, result, error\n"
    "  retry   queue a failed or cancelled job again with fresh attempts\n"
    "  cancel  cancel a queued job (a running one cannot be)\n";
static const char jobs_list_usage[] =
    "tryonctl jobs list [--state S] [--user USER] [--limit N] [--json]";
static const char jobs_list_help[] = "Lists jobs, newest first (default 50, at most 1000).\n";
static const char jobs_show_usage[] = "tryonctl jobs show ID [--json]";
static const char jobs_show_help[] = "Shows one job. Exit 1 (not_found) for an unknown id.\n";
static const char jobs_retry_usage[] = "tryonctl jobs retry ID [--json]";
static const char jobs_retry_help[] =
    "Queues a failed or cancelled job again with a fresh set of attempts. Exit 1\n"
    "(conflict) for a job in another state.\n";
static const char jobs_cancel_usage[] = "tryonctl jobs cancel ID [--json]";
static const char jobs_cancel_help[] =
    "Cancels a queued job. Exit 1 (conflict) when it is running or finished. The refund\n"
    "of what it charged is the worker's failure hook (not run from here).\n";

static int cmd_jobs_list(const ctl_args *a) {
  ctl_db s = {0};
  tryon_job *jobs = NULL;
  size_t n = 0;
  int64_t limit = 50, tg = 0, uid = 0;
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (a->limit != NULL && (!parse_positive(a->limit, &limit) || limit > 1000))
    return usage_error(a->usage, "--limit must be from 1 to 1000, got", a->limit);
  if (a->state != NULL && strcmp(a->state, "queued") != 0 && strcmp(a->state, "running") != 0 &&
      strcmp(a->state, "succeeded") != 0 && strcmp(a->state, "failed") != 0 &&
      strcmp(a->state, "cancelled") != 0)
    return usage_error(a->usage, "unknown state", a->state);
  if (a->user != NULL && !parse_positive(a->user, &tg))
    return usage_error(a->usage, "--user must be a Telegram id, got", a->user);
  jobs = calloc((size_t)limit, sizeof *jobs);
  if (jobs == NULL || !ctl_db_open(&s, &err)) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (tg != 0) {
    tryon_user u;
    if (tryon_users_get_by_telegram(s.conn, tg, &u, &err) != TRYON_OK) {
      rc = refuse(a, &err, NULL);
      goto out;
    }
    uid = u.id;
  }
  if (tryon_jobs_list(s.conn, a->state, uid, (size_t)limit, jobs, &n, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "jobs");
    for (size_t i = 0; i < n; i++)
      cJSON_AddItemToArray(arr, tryon_job_to_json(&jobs[i], TRYON_JOB_JSON_OPERATOR));
    print_json(doc);
  } else {
    char ts[TRYON_TIME_ISO8601_LEN];
    printf("%-36s  %-12s  %-9s  %-8s  %-4s  %s\n", "ID", "KIND", "STATE", "ATTEMPTS", "%",
           "CREATED");
    for (size_t i = 0; i < n; i++) {
      char att[16];
      snprintf(att, sizeof att, "%d/%d", jobs[i].attempts, jobs[i].max_attempts);
      tryon_time_format_iso8601(jobs[i].created_ms, ts);
      printf("%-36s  %-12s  %-9s  %-8s  %-4d  %s\n", jobs[i].id, jobs[i].kind,
             tryon_job_state_name(jobs[i].state), att, jobs[i].progress, ts);
    }
    printf("%zu job(s)\n", n);
  }
out:
  for (size_t i = 0; jobs != NULL && i < n; i++)
    tryon_job_release(&jobs[i]);
  free(jobs);
  ctl_db_close(&s);
  return rc;
}

static int cmd_jobs_show(const ctl_args *a) {
  ctl_db s = {0};
  tryon_job j;
  tryon_err err;
  int rc = EXIT_OK;

  memset(&j, 0, sizeof j);
  tryon_err_clear(&err);
  if (!ctl_db_open(&s, &err) || tryon_jobs_get(s.conn, a->pos[0], 0, &j, &err) != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  cJSON *doc = tryon_job_to_json(&j, TRYON_JOB_JSON_OPERATOR);
  if (a->json) {
    print_json(doc);
  } else {
    char *text = cJSON_Print(doc);
    printf("%s\n", text ? text : "");
    cJSON_free(text);
    cJSON_Delete(doc);
  }
out:
  tryon_job_release(&j);
  ctl_db_close(&s);
  return rc;
}

/* retry and cancel: one change, one line of output. */
static int change_job(const ctl_args *a, bool retry) {
  ctl_db s = {0};
  tryon_err err;
  int rc = EXIT_OK;
  tryon_status st;

  tryon_err_clear(&err);
  if (!ctl_db_open(&s, &err)) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (retry) {
    st = tryon_jobs_retry(s.conn, a->pos[0], tryon_clock_now_ms(NULL), &err);
  } else {
    /* One transaction: the job cancelled and, for a try-on, its credits refunded, a
     * result an earlier attempt left removed and its generation marked cancelled. */
    tryon_storage *storage = NULL;
    st = tryon_storage_local_new(s.cfg.storage_dir, &storage, &err);
    if (st == TRYON_OK)
      st = tryon_generations_cancel_job(s.conn, storage, a->pos[0], 0, tryon_clock_now_ms(NULL),
                                        &err);
    tryon_storage_free(storage);
  }
  if (st != TRYON_OK) {
    rc = refuse(a, &err, NULL);
    goto out;
  }
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", a->pos[0]);
    cJSON_AddStringToObject(doc, "state", retry ? "queued" : "cancelled");
    print_json(doc);
  } else {
    printf("job %s %s\n", a->pos[0], retry ? "queued again" : "cancelled");
  }
out:
  ctl_db_close(&s);
  return rc;
}

static int cmd_jobs_retry(const ctl_args *a) {
  return change_job(a, true);
}

static int cmd_jobs_cancel(const ctl_args *a) {
  return change_job(a, false);
}

static const subcommand jobs_subcommands[] = {
    {"list",
     jobs_list_usage,
     jobs_list_help,
     OPT_JSON | OPT_STATE | OPT_USER | OPT_LIMIT,
     {NULL},
     cmd_jobs_list},
    {"show", jobs_show_usage, jobs_show_help, OPT_JSON, {"ID"}, cmd_jobs_show},
    {"retry", jobs_retry_usage, jobs_retry_help, OPT_JSON, {"ID"}, cmd_jobs_retry},
    {"cancel", jobs_cancel_usage, jobs_cancel_help, OPT_JSON, {"ID"}, cmd_jobs_cancel},
};

static int cmd_jobs(int argc, char **argv) {
  return run_group(jobs_usage, jobs_help, jobs_subcommands,
                   sizeof jobs_subcommands / sizeof jobs_subcommands[0], argc, argv);
}

/* ------------------------------------------------------------------------------- main */

static const command commands[] = {
    {"credits", "grant, revoke and inspect credits; audit wallets against the ledger",
     credits_usage, cmd_credits},
    {"file", "check and normalise an image as an upload would be (file check)", file_usage,
     cmd_file},
    {"initdata", "verify Telegram initData read from stdin (initdata verify)", initdata_usage,
     cmd_initdata},
    {"jobs", "list, show, retry and cancel background jobs", jobs_usage, cmd_jobs},
    {"migrate", "apply database migrations, or list them with --status", migrate_usage,
     cmd_migrate},
    {"user", "show, block and unblock users", user_usage, cmd_user},
    {"version", "print the version", version_usage, cmd_version},
};

static void print_help(FILE *f) {
  fprintf(f, "usage: tryonctl COMMAND [ARGS...]\n\n"
             "The operators' tool of tryon. Settings come from the environment and .env\n"
             "(see .env.example). Every command takes --help.\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nexit codes: 0 done, 1 refused, 2 usage\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_help(stderr);
    return EXIT_USAGE;
  }
  if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    print_help(stdout);
    return EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0)
    return cmd_version(1, argv + 1);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr, "tryonctl: unknown command %s (see tryonctl --help)\n", argv[1]);
  return EXIT_USAGE;
}
