/*
 * cmd_migrate.c - tryonctl's own commands: migrate (apply or list the migrations) and
 * version.
 */
#include <stdio.h>

#include <tryon/db.h>

#include "app.h"
#include "cli.h"

/* ---------------------------------------------------------------------------- version */

static int cmd_version(const cli_args *a) {
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "version", tryon_app_version());
    cli_print_json(doc);
  } else {
    printf("tryonctl %s\n", tryon_app_version());
  }
  return EXIT_OK;
}

/* ---------------------------------------------------------------------------- migrate */

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
      if (m->applied)
        tryon_json_add_time(o, "applied_at", m->applied_at_ms);
    }
    cJSON_AddNumberToObject(doc, "pending", (double)pending);
    if (!status_only)
      cJSON_AddNumberToObject(doc, "newly_applied", (double)rep->newly_applied);
    cli_print_json(doc);
  } else if (status_only) {
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
  } else if (rep->newly_applied == 0) {
    printf("database is up to date (%zu migration(s))\n", rep->count);
  } else {
    printf("applied %zu migration(s); database is up to date (%zu in all)\n", rep->newly_applied,
           rep->count);
  }
}

static int cmd_migrate(const cli_args *a) {
  bool status_only = cli_flag(a, "--status");
  const char *dir = cli_value(a, "--dir");
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_db_migrations rep = {0};
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (tryon_app_init("tryonctl", TRYON_CONFIG_NEED_DB, &cfg) != 0) {
    rc = EXIT_REFUSED;
    goto out;
  }
  cli_quiet_log(cfg.log_level);
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
    print_report(&rep, status_only, a->json);
  if (st != TRYON_OK)
    rc = EXIT_REFUSED;
out:
  if (rc == EXIT_REFUSED && err.status != TRYON_OK) {
    if (a->json)
      cli_print_json_error(&err);
    fprintf(stderr, "tryonctl: migrate: %s\n", tryon_err_message(&err));
  }
  tryon_db_migrations_release(&rep);
  tryon_db_free(db);
  tryon_config_release(&cfg);
  return rc;
}

static const cli_command commands[] = {
    {.name = "migrate",
     .summary = "apply database migrations, or list them with --status",
     .help = "Applies the pending migrations of DIR to the database at TRYON_DATABASE_URL, each\n"
             "in its own transaction, in version order. Running it again changes nothing.\n"
             "It refuses (exit 1) when the database holds a migration that no file provides or\n"
             "a file was changed after it was applied.\n",
     .options = {{"--status", CLI_FLAG, NULL,
                  "list the migrations and whether each is applied; change nothing"},
                 {"--dir", CLI_TEXT, "DIR",
                  "the migrations folder (default: TRYON_MIGRATIONS_DIR, else the\n"
                  "folder this build came from)",
                  "folder"},
                 {"--json", CLI_FLAG, NULL, "print the result as JSON"}},
     .run = cmd_migrate},
    {.name = "version",
     .summary = "print the version",
     .help = "Prints the version of tryon.\n",
     .options = {{"--json", CLI_FLAG, NULL, "print {\"version\"}"}},
     .run = cmd_version},
};

const cli_group cli_group_tryonctl = {
    .name = NULL, .commands = commands, .count = sizeof commands / sizeof commands[0]};
