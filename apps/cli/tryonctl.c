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
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/files.h>

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
  if (argc >= 2 && is_help(argv[1])) {
    printf("usage: %s\n\n%s", initdata_usage, initdata_help);
    return EXIT_OK;
  }
  if (argc < 2)
    return usage_error(initdata_usage, "missing subcommand after", argv[0]);
  if (strcmp(argv[1], "verify") != 0)
    return usage_error(initdata_usage, "unknown subcommand", argv[1]);
  for (int i = 2; i < argc; i++) {
    if (is_help(argv[i])) {
      printf("usage: %s\n\n%s", initdata_usage, initdata_help);
      return EXIT_OK;
    }
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
  if (argc >= 2 && is_help(argv[1])) {
    printf("usage: %s\n\n%s", file_usage, file_help);
    return EXIT_OK;
  }
  if (argc < 2)
    return usage_error(file_usage, "missing subcommand after", argv[0]);
  if (strcmp(argv[1], "check") != 0)
    return usage_error(file_usage, "unknown subcommand", argv[1]);
  for (int i = 2; i < argc; i++) {
    if (is_help(argv[i])) {
      printf("usage: %s\n\n%s", file_usage, file_help);
      return EXIT_OK;
    }
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

/* ------------------------------------------------------------------------------- main */

static const command commands[] = {
    {"file", "check and normalise an image as an upload would be (file check)", file_usage,
     cmd_file},
    {"initdata", "verify Telegram initData read from stdin (initdata verify)", initdata_usage,
     cmd_initdata},
    {"migrate", "apply database migrations, or list them with --status", migrate_usage,
     cmd_migrate},
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
