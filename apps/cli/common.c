/*
 * common.c - what every tryonctl command uses: JSON output, refusals, the values
 * operators type, and a database of one connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/users.h>

#include "app.h"
#include "cli.h"

int cli_usage_error(const char *usage, const char *what, const char *arg) {
  fprintf(stderr, "tryonctl: %s %s\nusage: %s\n", what, arg, usage);
  return EXIT_USAGE;
}

void cli_print_json(cJSON *doc) {
  char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
  if (text != NULL)
    printf("%s\n", text);
  else
    fprintf(stderr, "tryonctl: out of memory printing JSON\n");
  cJSON_free(text);
  cJSON_Delete(doc);
}

void cli_print_json_error(const tryon_err *err) {
  cJSON *doc = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(doc, "error");
  cJSON_AddStringToObject(e, "code", tryon_status_code(err->status));
  cJSON_AddStringToObject(e, "message", tryon_err_message(err));
  cli_print_json(doc);
}

int cli_refuse(const cli_args *a, const tryon_err *err, cJSON *extra) {
  if (err->status != TRYON_OK) {
    if (a->json) {
      cJSON *doc = cJSON_CreateObject();
      cJSON *e = cJSON_AddObjectToObject(doc, "error");
      cJSON_AddStringToObject(e, "code", tryon_status_code(err->status));
      cJSON_AddStringToObject(e, "message", tryon_err_message(err));
      for (cJSON *it = extra ? extra->child : NULL; it != NULL; it = it->next)
        cJSON_AddItemToObject(e, it->string, cJSON_Duplicate(it, true));
      cli_print_json(doc);
    }
    fprintf(stderr, "tryonctl: %s: %s\n", a->name, tryon_err_message(err));
  }
  cJSON_Delete(extra);
  return EXIT_REFUSED;
}

const char *cli_human_time(int64_t ms, const char *none, char out[TRYON_TIME_ISO8601_LEN]) {
  if (ms == 0)
    snprintf(out, TRYON_TIME_ISO8601_LEN, "%s", none);
  else
    tryon_time_format_iso8601(ms, out);
  return out;
}

bool cli_parse_positive(const char *s, int64_t *out) {
  char *end = NULL;
  long long v = 0;
  bool ok = s != NULL && s[0] >= '0' && s[0] <= '9';

  if (ok) {
    errno = 0;
    v = strtoll(s, &end, 10);
    ok = errno == 0 && *end == '\0' && v > 0;
  }
  if (ok)
    *out = (int64_t)v;
  return ok;
}

bool cli_telegram_id(const cli_args *a, int64_t *out, int *rc) {
  if (cli_parse_positive(a->pos[0], out))
    return true;
  *rc =
      cli_usage_error(a->usage, "USER must be a Telegram id (a positive integer), got", a->pos[0]);
  return false;
}

bool cli_check_reason(const cli_args *a, bool required, int *rc) {
  const char *reason = cli_value(a, "--reason");
  bool ok = true;

  if (reason == NULL) {
    if (required)
      *rc = cli_usage_error(a->usage, "missing required option", "--reason");
    ok = !required;
  } else if (reason[0] == '\0') {
    *rc = cli_usage_error(a->usage, "empty value after", "--reason");
    ok = false;
  } else if (tryon_utf8_chars(reason) > TRYON_USER_BLOCKED_REASON_CHARS) {
    *rc = cli_usage_error(a->usage, "--reason is longer than", "1000 characters");
    ok = false;
  }
  return ok;
}

void cli_quiet_log(tryon_log_level configured) {
  if (configured < TRYON_LOG_WARN && configured != TRYON_LOG_DEBUG)
    tryon_log_set_level(TRYON_LOG_WARN);
}

bool cli_db_open(cli_db *s, tryon_err *err) {
  memset(s, 0, sizeof *s);
  if (tryon_app_init("tryonctl", TRYON_CONFIG_NEED_DB, &s->cfg) != 0)
    return false;
  cli_quiet_log(s->cfg.log_level);
  tryon_db_options opt = {.conninfo = s->cfg.database_url,
                          .pool_size = 1,
                          .acquire_timeout_ms = s->cfg.db_pool_timeout_ms,
                          .application_name = "tryonctl"};
  return tryon_db_new(&opt, &s->db, err) == TRYON_OK &&
         tryon_db_acquire(s->db, &s->conn, err) == TRYON_OK;
}

void cli_db_close(cli_db *s) {
  tryon_db_release(s->conn);
  tryon_db_free(s->db);
  tryon_config_release(&s->cfg);
  memset(s, 0, sizeof *s);
}

bool cli_load_user(cli_db *s, int64_t telegram_id, tryon_user *u, tryon_err *err) {
  return cli_db_open(s, err) &&
         tryon_users_get_by_telegram(s->conn, telegram_id, u, err) == TRYON_OK;
}
