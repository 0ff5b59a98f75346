/*
 * cmd_initdata.c - initdata verify: checks Telegram Mini App initData read from
 * standard input, with the bot token (HMAC) or Telegram's public key (Ed25519).
 */
#include <stdio.h>
#include <stdlib.h>

#include <tryon/auth.h>

#include "app.h"
#include "cli.h"

#define INITDATA_STDIN_MAX (64 * 1024)

/* Reads standard input up to `cap` bytes (INITDATA_STDIN_MAX + 2: enough to tell "too
 * long" from a 64 KiB line with its newline) into buf; drops one trailing newline. */
static size_t read_initdata(char *buf, size_t cap) {
  size_t n = 0;
  size_t got;

  while (n < cap && (got = fread(buf + n, 1, cap - n, stdin)) > 0)
    n += got;
  if (n > 0 && buf[n - 1] == '\n')
    n--;
  return n;
}

/* The combinations the table cannot say; -1 when the options make sense. */
static int check_options(const cli_args *a, bool ed25519, const char *bot_token) {
  bool test_env = cli_flag(a, "--test-env"), has_bot_id = cli_flag(a, "--bot-id");
  int rc = -1;

  if (cli_flag(a, "--max-age") && cli_flag(a, "--no-max-age"))
    rc = cli_usage_error(a->usage, "--max-age conflicts with", "--no-max-age");
  else if (ed25519 && !has_bot_id)
    rc = cli_usage_error(a->usage, "missing required option", "--bot-id");
  else if (ed25519 && bot_token != NULL)
    rc = cli_usage_error(a->usage, "not used with --ed25519:", "--bot-token");
  else if (!ed25519 && (test_env || has_bot_id))
    rc = cli_usage_error(a->usage, "only with --ed25519:", test_env ? "--test-env" : "--bot-id");
  return rc;
}

static int cmd_initdata_verify(const cli_args *a) {
  tryon_initdata_options opt = {
      .method = TRYON_INITDATA_HMAC, .max_age_s = 86400, .max_future_s = 60};
  bool ed25519 = cli_flag(a, "--ed25519");
  const char *bot_token = cli_value(a, "--bot-token");
  char *input = NULL;
  size_t len = 0;
  tryon_initdata data;
  tryon_err err;
  tryon_config cfg = {0};
  cJSON *doc = NULL;
  int rc = check_options(a, ed25519, bot_token);

  tryon_err_clear(&err);
  if (rc >= 0)
    goto out;
  rc = EXIT_OK;
  if (!ed25519 && bot_token == NULL) {
    /* Without --bot-token, the configured one (environment or .env): keeps the token
     * out of the process list. */
    if (tryon_app_init("tryonctl", 0, &cfg) != 0) {
      rc = EXIT_REFUSED;
      goto out;
    }
    bot_token = cfg.bot_token;
    if (bot_token == NULL) {
      rc = cli_usage_error(a->usage, "no bot token: set TRYON_BOT_TOKEN or pass", "--bot-token");
      goto out;
    }
  }
  opt.max_age_s = cli_flag(a, "--no-max-age") ? 0 : cli_number(a, "--max-age", opt.max_age_s);
  if (ed25519) {
    opt.method = TRYON_INITDATA_ED25519;
    opt.bot_id = cli_number(a, "--bot-id", 0);
    opt.test_env = cli_flag(a, "--test-env");
  } else {
    opt.bot_token = bot_token;
  }

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
      cJSON_AddItemToObject(doc, "user", tryon_tg_user_to_json(&data.user));
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
  cli_print_json(doc);
  doc = NULL;
out:
  cJSON_Delete(doc);
  free(input);
  tryon_config_release(&cfg);
  return rc;
}

static const cli_command commands[] = {
    {.name = "verify",
     .summary = "check initData read from stdin",
     .help =
         "Checks Telegram Mini App initData read from standard input (one trailing newline\n"
         "is ignored; at most 64 KiB) and prints one JSON document: {\"valid\":true,\n"
         "\"user\":{...},\"auth_date\":N} and exit 0, or {\"valid\":false,\"error\":{\"code\",\n"
         "\"message\"}} and exit 1. Needs no configuration and no database.\n",
     .options = {{"--bot-token", CLI_WORD, "TOKEN",
                  "check the HMAC hash with this bot token; without it, the\n"
                  "configured TRYON_BOT_TOKEN (environment or .env), which keeps\n"
                  "the token out of the process list",
                  "token"},
                 {"--ed25519", CLI_FLAG, NULL,
                  "check the Ed25519 signature instead (third-party validation)"},
                 {"--bot-id", CLI_NUMBER, "ID",
                  "with --ed25519: the bot's numeric id (before ':' in its token)", "id"},
                 {"--test-env", CLI_FLAG, NULL, "with --ed25519: Telegram's test-environment key"},
                 {"--max-age", CLI_NUMBER, "SECONDS", "refuse data older than this (default 86400)",
                  "seconds"},
                 {"--no-max-age", CLI_FLAG, NULL, "do not check the age (for old fixtures)"}},
     .run = cmd_initdata_verify},
};

const cli_group cli_group_initdata = {
    .name = "initdata",
    .summary = "verify Telegram initData read from stdin (initdata verify)",
    .help = "Telegram Mini App initData, as the server checks it at sign-in.\n",
    .commands = commands,
    .count = sizeof commands / sizeof commands[0]};
