/*
 * cmd_credits.c - credits grant, revoke, balance, history and audit: the operators'
 * view of and corrections to the ledger.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/billing.h>
#include <tryon/users.h>

#include "cli.h"

#define CREDITS_AMOUNT_MAX 1000000
#define HISTORY_DEFAULT 50
#define HISTORY_MAX 1000
#define AUDIT_LIST_MAX 1000

/* The idempotency key of a grant or revoke into `out`: KEY as given when it has a
 * "kind:" prefix, else "<kind>:KEY"; without KEY "<kind>:<new uuid v4>". Refuses (usage)
 * what the ledger would (spaces, an empty rest, more than 200 bytes) and the system's
 * own kinds. */
static bool make_key(const cli_args *a, const char *kind, char out[TRYON_LEDGER_KEY_MAX + 1],
                     int *rc, tryon_err *err) {
  char id[TRYON_UUID_STR_LEN];
  tryon_uuid u;
  int n;

  if (cli_value(a, "--key") == NULL) {
    if (tryon_uuid_v4(&u) != TRYON_OK) {
      tryon_err_set(err, TRYON_E_INTERNAL, "cannot make a random key");
      *rc = cli_refuse(a, err, NULL);
      return false;
    }
    tryon_uuid_format(&u, id);
    snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s:%s", kind, id);
    return true;
  }
  n = tryon_billing_key_has_kind(cli_value(a, "--key"))
          ? snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s", cli_value(a, "--key"))
          : snprintf(out, TRYON_LEDGER_KEY_MAX + 1, "%s:%s", kind, cli_value(a, "--key"));
  bool ok = n > 0 && n <= TRYON_LEDGER_KEY_MAX && tryon_billing_key_valid(out);
  if (!ok)
    *rc =
        cli_usage_error(a->usage, "--key must be kind:text without spaces, at most 200 bytes, got",
                        cli_value(a, "--key"));
  else if (tryon_billing_key_reserved(out)) {
    *rc = cli_usage_error(a->usage, "--key of a kind the system writes itself, got",
                          cli_value(a, "--key"));
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
static bool parse_change(const cli_args *a, int64_t *tg, int64_t *amount, int *rc) {
  if (!cli_telegram_id(a, tg, rc))
    return false;
  if (!cli_parse_positive(a->pos[1], amount) || *amount > CREDITS_AMOUNT_MAX) {
    *rc = cli_usage_error(a->usage, "AMOUNT must be an integer from 1 to 1000000, got", a->pos[1]);
    return false;
  }
  return cli_check_reason(a, true, rc);
}

/* grant (sign +1) and revoke (sign -1): the same steps. */
static int change_credits(const cli_args *a, bool grant) {
  const char *kind = grant ? "grant" : "revoke";
  char key[TRYON_LEDGER_KEY_MAX + 1];
  cli_db s = {0};
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
  if (!cli_db_open(&s, &err)) {
    rc = cli_refuse(a, &err, NULL);
    goto out;
  }
  /* A grant may come before the person's first sign-in; a revoke needs credits, so a
   * user it would have to create could only be refused. */
  st = grant ? tryon_users_ensure_telegram(s.conn, tg, &u, &created, &err)
             : tryon_users_get_by_telegram(s.conn, tg, &u, &err);
  if (st == TRYON_OK)
    st = grant ? tryon_billing_grant(s.conn, u.id, amount, key, "tryonctl",
                                     cli_value(a, "--reason"), now, &res, &err)
               : tryon_billing_revoke(s.conn, u.id, amount, key, "tryonctl",
                                      cli_value(a, "--reason"), now, &res, &err);
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
    rc = cli_refuse(a, &err, extra);
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
    rc = cli_refuse(a, &err, extra);
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
    cli_print_json(doc);
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
  cli_db_close(&s);
  return rc;
}

static int cmd_credits_grant(const cli_args *a) {
  return change_credits(a, true);
}

static int cmd_credits_revoke(const cli_args *a) {
  return change_credits(a, false);
}

static int cmd_credits_balance(const cli_args *a) {
  return cli_show_balance(a, false);
}

static int cmd_credits_history(const cli_args *a) {
  cli_db s = {0};
  tryon_user u;
  tryon_ledger_entry *entries = NULL;
  size_t n = 0;
  tryon_err err;
  int64_t tg = 0, limit = cli_number(a, "--limit", HISTORY_DEFAULT);
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  if (!cli_telegram_id(a, &tg, &rc))
    return rc;
  entries = calloc((size_t)limit, sizeof *entries);
  if (entries == NULL) {
    rc = cli_refuse(a, &(tryon_err){.status = TRYON_E_NOMEM}, NULL);
    goto out;
  }
  if (!cli_load_user(&s, tg, &u, &err) ||
      tryon_billing_history(s.conn, u.id, (size_t)limit, entries, &n, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
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
    cli_print_json(doc);
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
           cli_human_time(e->created_ms, "-", ts), e->reason, (long long)e->delta_period,
           (long long)e->delta_pack, after, e->key, e->note[0] != '\0' ? " / " : "", e->note);
  }
out:
  free(entries);
  cli_db_close(&s);
  return rc;
}

static int cmd_credits_audit(const cli_args *a) {
  cli_db s = {0};
  tryon_audit_problem *problems = NULL;
  size_t n = 0;
  tryon_err err;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  problems = calloc(AUDIT_LIST_MAX, sizeof *problems);
  if (problems == NULL) {
    rc = cli_refuse(a, &(tryon_err){.status = TRYON_E_NOMEM}, NULL);
    goto out;
  }
  if (!cli_db_open(&s, &err) ||
      tryon_billing_audit(s.conn, problems, AUDIT_LIST_MAX, &n, &err) != TRYON_OK) {
    rc = cli_refuse(a, &err, NULL);
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
    cli_print_json(doc);
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
  cli_db_close(&s);
  return rc;
}

static const cli_command commands[] = {
    {.name = "grant",
     .summary = "add pack credits (they never expire)",
     .help = "Adds AMOUNT (1 to 1000000) pack credits to the user with Telegram id USER. A\n"
             "Telegram id no user has yet gets a user row (never signed in), so credits can be\n"
             "granted before a first sign-in; the output says so. Blocked users may receive\n"
             "grants. Repeating a grant with the same KEY changes nothing and prints the first\n"
             "result (exit 0, \"duplicate\":true); a KEY first used for a different change is\n"
             "refused (conflict).\n",
     .pos = {"USER", "AMOUNT"},
     .options = {{"--reason", CLI_TEXT, "TEXT",
                  "why (at most 1000 characters): the ledger entry's note", .required = true},
                 {"--key", CLI_TEXT, "KEY",
                  "the idempotency key (default grant:<new uuid>, printed); \"grant:\"\n"
                  "is put in front of a KEY without a \"kind:\" prefix; the kinds\n"
                  "the system writes (free, sub, expire, job, payment) are refused"},
                 {"--json", CLI_FLAG, NULL,
                  "print {\"key\",\"user\",\"amount\",\"result\":{...},\"duplicate\",\n"
                  "\"created_user\"}"}},
     .run = cmd_credits_grant},
    {.name = "revoke",
     .summary = "take credits away, pack credits first; never below zero",
     .help = "Takes AMOUNT (1 to 1000000) credits from the user with Telegram id USER, pack\n"
             "credits first, then period credits. A user with fewer credits is refused (exit 1,\n"
             "insufficient_credits, with the balance) and nothing changes. Repeating a revoke\n"
             "with the same KEY changes nothing and prints the first result; a KEY first used\n"
             "for a different change is refused (conflict).\n",
     .pos = {"USER", "AMOUNT"},
     .options = {{"--reason", CLI_TEXT, "TEXT",
                  "why (at most 1000 characters): the ledger entry's note", .required = true},
                 {"--key", CLI_TEXT, "KEY",
                  "the idempotency key (default revoke:<new uuid>, printed); \"revoke:\"\n"
                  "is put in front of a KEY without a \"kind:\" prefix; the kinds\n"
                  "the system writes (free, sub, expire, job, payment) are refused"},
                 {"--json", CLI_FLAG, NULL,
                  "print {\"key\",\"user\",\"amount\",\"result\":{...},\"duplicate\"}"}},
     .run = cmd_credits_revoke},
    {.name = "balance",
     .summary = "the user's credits now",
     .help = "Prints the credits of the user with Telegram id USER: total, period and pack\n"
             "credits, the plan and the end of its period, and whether the next spend would be\n"
             "watermarked. Brings the wallet up to date first (may grant this month's free\n"
             "allowance), as the app does.\n",
     .pos = {"USER"},
     .options = {{"--json", CLI_FLAG, NULL,
                  "print {\"user\",\"total\",\"period\",\"pack\",\"plan\",\"period_ends_at\",\n"
                  "\"queued_until\",\"watermark\"} (times ISO 8601 or null)"}},
     .run = cmd_credits_balance},
    {.name = "history",
     .summary = "the user's ledger entries, newest first",
     .help = "Prints the ledger entries of the user with Telegram id USER, newest first.\n",
     .pos = {"USER"},
     .options = {{"--limit", CLI_NUMBER, "N", "at most N entries (1 to 1000, default 50)",
                  .max = HISTORY_MAX},
                 {"--json", CLI_FLAG, NULL,
                  "print {\"user\",\"entries\":[{\"id\",\"key\",\"reason\",\"delta_period\",\n"
                  "\"delta_pack\",\"period_after\",\"pack_after\",\"from_free\",\"note\",\n"
                  "\"created_at\"}]}"}},
     .run = cmd_credits_history},
    {.name = "audit",
     .summary = "check every wallet against the sums of its ledger",
     .help = "Checks every user's wallet against the sums of their ledger entries. Exit 0 when\n"
             "all agree; exit 1 listing each user whose wallet differs (Telegram id, the\n"
             "wallet's period/pack credits and the ledger's).\n",
     .options = {{"--json", CLI_FLAG, NULL,
                  "print {\"ok\",\"offenders\",\"problems\":[{\"user\",\"user_id\",\"wallet\":\n"
                  "{\"period\",\"pack\"},\"ledger\":{\"period\",\"pack\"}}]}"}},
     .run = cmd_credits_audit},
};

const cli_group cli_group_credits = {
    .name = "credits",
    .summary = "grant, revoke and inspect credits; audit wallets against the ledger",
    .help = "Operators' view of and corrections to credits. USER is always a Telegram id. Every\n"
            "change is a ledger entry under an idempotency key, so repeating a command with the\n"
            "same --key changes nothing.\n",
    .commands = commands,
    .count = sizeof commands / sizeof commands[0]};
