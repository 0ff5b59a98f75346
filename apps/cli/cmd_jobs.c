/*
 * cmd_jobs.c - jobs list, show, retry and cancel: background jobs as operators see them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/files.h>
#include <tryon/generations.h>
#include <tryon/jobs.h>
#include <tryon/users.h>

#include "cli.h"

/* Whether `s` names a job state, as tryon_job_state_name spells them. */
static bool state_known(const char *s) {
  bool known = false;

  for (int st = TRYON_JOB_QUEUED; !known && st <= TRYON_JOB_CANCELLED; st++)
    known = strcmp(s, tryon_job_state_name((tryon_job_state)st)) == 0;
  return known;
}

static int cmd_jobs_list(const cli_args *a) {
  cli_db s = {0};
  tryon_job *jobs = NULL;
  size_t n = 0;
  int64_t limit = cli_number(a, "--limit", 50), tg = 0, uid = 0;
  const char *state = cli_value(a, "--state"), *user = cli_value(a, "--user");
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (state != NULL && !state_known(state))
    return cli_usage_error(a->usage, "unknown state", state);
  if (user != NULL && !cli_parse_positive(user, &tg))
    return cli_usage_error(a->usage, "--user must be a Telegram id, got", user);
  jobs = calloc((size_t)limit, sizeof *jobs);
  if (jobs == NULL || !cli_db_open(&s, &err)) {
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  if (tg != 0) {
    tryon_user u;
    if (tryon_users_get_by_telegram(s.conn, tg, &u, &err) != TRYON_OK) {
      rc = cli_refuse(a, &err, NULL);
      goto out;
    }
    uid = u.id;
  }
  if (tryon_jobs_list(s.conn, state, uid, (size_t)limit, jobs, &n, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "jobs");
    for (size_t i = 0; i < n; i++)
      cJSON_AddItemToArray(arr, tryon_job_to_json(&jobs[i], TRYON_JOB_JSON_OPERATOR));
    cli_print_json(doc);
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
  cli_db_close(&s);
  return rc;
}

static int cmd_jobs_show(const cli_args *a) {
  cli_db s = {0};
  tryon_job j;
  tryon_err err;
  int rc = EXIT_OK;

  memset(&j, 0, sizeof j);
  tryon_err_clear(&err);
  if (!cli_db_open(&s, &err) || tryon_jobs_get(s.conn, a->pos[0], 0, &j, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  cJSON *doc = tryon_job_to_json(&j, TRYON_JOB_JSON_OPERATOR);
  if (a->json) {
    cli_print_json(doc);
  } else {
    char *text = cJSON_Print(doc);
    printf("%s\n", text ? text : "");
    cJSON_free(text);
    cJSON_Delete(doc);
  }
out:
  tryon_job_release(&j);
  cli_db_close(&s);
  return rc;
}

/* retry and cancel: one change, one line of output. */
static int change_job(const cli_args *a, bool retry) {
  cli_db s = {0};
  tryon_err err;
  int rc = EXIT_OK;
  tryon_status st;

  tryon_err_clear(&err);
  if (!cli_db_open(&s, &err)) {
    rc = cli_refuse(a, &err, NULL);
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
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  if (a->json) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", a->pos[0]);
    cJSON_AddStringToObject(doc, "state", retry ? "queued" : "cancelled");
    cli_print_json(doc);
  } else {
    printf("job %s %s\n", a->pos[0], retry ? "queued again" : "cancelled");
  }
out:
  cli_db_close(&s);
  return rc;
}

static int cmd_jobs_retry(const cli_args *a) {
  return change_job(a, true);
}

static int cmd_jobs_cancel(const cli_args *a) {
  return change_job(a, false);
}

static const cli_command commands[] = {
    {.name = "list",
     .summary = "newest first; --state queued|running|succeeded|failed|cancelled",
     .help = "Lists jobs, newest first (default 50, at most 1000).\n",
     .options = {{"--state", CLI_TEXT, "S",
                  "only jobs in state S: queued, running, succeeded, failed, cancelled"},
                 {"--user", CLI_TEXT, "USER", "only the jobs of the user with Telegram id USER"},
                 {"--limit", CLI_NUMBER, "N", "at most N jobs (1 to 1000, default 50)",
                  .max = 1000},
                 {"--json", CLI_FLAG, NULL, "print {\"jobs\":[{...}]}"}},
     .run = cmd_jobs_list},
    {.name = "show",
     .summary = "one job: state, attempts, progress, lease, payload, result, error",
     .help = "Shows one job. Exit 1 (not_found) for an unknown id.\n",
     .pos = {"ID"},
     .options = {{"--json", CLI_FLAG, NULL, "print the job on one line"}},
     .run = cmd_jobs_show},
    {.name = "retry",
     .summary = "queue a failed or cancelled job again with fresh attempts",
     .help = "Queues a failed or cancelled job again with a fresh set of attempts. Exit 1\n"
             "(conflict) for a job in another state.\n",
     .pos = {"ID"},
     .options = {{"--json", CLI_FLAG, NULL, "print {\"id\",\"state\"}"}},
     .run = cmd_jobs_retry},
    {.name = "cancel",
     .summary = "cancel a queued job (a running one cannot be)",
     .help = "Cancels a queued job. Exit 1 (conflict) when it is running or finished. A try-on\n"
             "is refunded and its generation marked cancelled in the same transaction.\n",
     .pos = {"ID"},
     .options = {{"--json", CLI_FLAG, NULL, "print {\"id\",\"state\"}"}},
     .run = cmd_jobs_cancel},
};

const cli_group cli_group_jobs = {
    .name = "jobs",
    .summary = "list, show, retry and cancel background jobs",
    .help = "Inspects and steers background jobs. USER is a Telegram id.\n",
    .commands = commands,
    .count = sizeof commands / sizeof commands[0]};
