/*
 * cmd_user.c - user show, block and unblock; and the balance view that user show and
 * credits balance share.
 */
#include <stdio.h>

#include <tryon/billing.h>
#include <tryon/users.h>

#include "cli.h"

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
    printf(", period ends %s", cli_human_time(b->period_ends_ms, "-", ts));
  if (b->queued_until_ms != 0)
    printf(", paid until %s", cli_human_time(b->queued_until_ms, "-", ts));
  printf("\n  watermark   %s\n", b->watermark ? "yes (next spend takes free credits)" : "no");
}

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
    printf("  blocked     yes, since %s%s%s\n", cli_human_time(u->blocked_at_ms, "-", ts),
           u->blocked_reason[0] != '\0' ? ": " : "", u->blocked_reason);
  else
    printf("  blocked     no\n");
  printf("  created     %s\n", cli_human_time(u->created_at_ms, "-", ts));
  printf("  last login  %s\n", cli_human_time(u->last_login_at_ms, "never", ts));
}

/* user show and credits balance: the user's wallet brought up to date, shown with the
 * user's record (`whole`) or alone. */
int cli_show_balance(const cli_args *a, bool whole) {
  cli_db s = {0};
  tryon_user u;
  tryon_balance b;
  tryon_err err;
  int64_t tg = 0;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!cli_telegram_id(a, &tg, &rc))
    return rc;
  if (!cli_load_user(&s, tg, &u, &err) ||
      tryon_billing_balance(s.conn, u.id, tryon_clock_now_ms(NULL), &b, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  if (a->json && whole) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "user", tryon_user_to_json(&u, TRYON_USER_JSON_OPERATOR));
    cJSON_AddItemToObject(doc, "balance", balance_json(tg, &b));
    cli_print_json(doc);
  } else if (a->json) {
    cli_print_json(balance_json(tg, &b));
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
  cli_db_close(&s);
  return rc;
}

static int cmd_user_show(const cli_args *a) {
  return cli_show_balance(a, true);
}

/* block and unblock: the same steps, the other way round. */
static int block_user(const cli_args *a, bool block) {
  cli_db s = {0};
  tryon_user before, after;
  tryon_err err;
  int64_t tg = 0;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!cli_telegram_id(a, &tg, &rc) || !cli_check_reason(a, false, &rc))
    return rc;
  if (!cli_load_user(&s, tg, &before, &err) ||
      tryon_users_set_blocked(s.conn, before.id, block, cli_value(a, "--reason"), &err) !=
          TRYON_OK ||
      tryon_users_get(s.conn, before.id, &after, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
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
    cli_print_json(doc);
  } else if (block) {
    char ts[TRYON_TIME_ISO8601_LEN];
    printf(changed ? "blocked user %lld (since %s)%s%s\n"
                   : "user %lld was already blocked (since %s)%s%s\n",
           (long long)tg, cli_human_time(after.blocked_at_ms, "-", ts),
           after.blocked_reason[0] != '\0' ? ": " : "", after.blocked_reason);
  } else if (changed)
    printf("unblocked user %lld\n", (long long)tg);
  else
    printf("user %lld was not blocked; nothing changed\n", (long long)tg);
out:
  cli_db_close(&s);
  return rc;
}

static int cmd_user_block(const cli_args *a) {
  return block_user(a, true);
}

static int cmd_user_unblock(const cli_args *a) {
  return block_user(a, false);
}

static const cli_command commands[] = {
    {.name = "show",
     .summary = "the user and their credits",
     .help = "Prints the user with Telegram id USER (names, username, language, premium, block,\n"
             "sign-up and last sign-in) and their credits (total, period and pack credits, plan,\n"
             "period end, watermark). Reading the credits brings the wallet up to date, as the\n"
             "app does: it may create the wallet and grant this month's free allowance.\n",
     .pos = {"USER"},
     .options = {{"--json", CLI_FLAG, NULL, "print {\"user\":{...},\"balance\":{...}}"}},
     .run = cmd_user_show},
    {.name = "block",
     .summary = "refuse the user everywhere (403), with an optional reason",
     .help = "Blocks the user with Telegram id USER: every request of theirs is refused (403).\n"
             "Blocking a blocked user keeps the time of the first block; --reason replaces its\n"
             "reason, no --reason keeps it.\n",
     .pos = {"USER"},
     .options = {{"--reason", CLI_TEXT, "TEXT",
                  "why (at most 1000 characters); shown by user show"},
                 {"--json", CLI_FLAG, NULL,
                  "print {\"user\",\"blocked\",\"reason\",\"blocked_at\",\"changed\"}"}},
     .run = cmd_user_block},
    {.name = "unblock",
     .summary = "lift a block",
     .help = "Lifts the block of the user with Telegram id USER (and forgets its reason).\n"
             "Unblocking a user who is not blocked changes nothing.\n",
     .pos = {"USER"},
     .options = {{"--json", CLI_FLAG, NULL, "print {\"user\",\"blocked\",\"changed\"}"}},
     .run = cmd_user_unblock},
};

const cli_group cli_group_user = {
    .name = "user",
    .summary = "show, block and unblock users",
    .help = "Looks up, blocks and unblocks users. USER is always a Telegram id. Exit 1\n"
            "(not_found) for a Telegram id no user has.\n",
    .commands = commands,
    .count = sizeof commands / sizeof commands[0]};
