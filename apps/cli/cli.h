/*
 * cli.h - what tryonctl's files share: the command table, the option parser, and the
 * helpers every command uses (JSON output, refusals, the database).
 *
 * Sections:
 *   1. Exit codes
 *   2. The command table
 *   3. The parser and the program
 *   4. Output and refusals
 *   5. Values operators type
 *   6. The database
 *
 * A command is a table entry (cli_command: name, summary, help, positional arguments,
 * options) and a run function that receives what the parser made of argv. The parser
 * writes every --help from the table, refuses unknown options, missing values and
 * missing or extra positional arguments (exit 2, one line on stderr and the usage),
 * and calls the run function only for a well-formed command line. Single-threaded,
 * like the program.
 */
#ifndef TRYONCTL_CLI_H
#define TRYONCTL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <tryon/core.h>
#include <tryon/db.h>
#include <tryon/users.h>

/* ---------------------------------------------------------------------- 1. Exit codes */

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------ 2. The command table */

#define CLI_MAX_POSITIONAL 2
#define CLI_MAX_OPTIONS 8

typedef enum cli_kind {
  CLI_FLAG = 0, /* no value: given or not */
  CLI_TEXT,     /* a value; "" allowed */
  CLI_WORD,     /* a value that may not be empty: "" counts as missing */
  CLI_NUMBER,   /* an integer from 1 to `max` (0: no upper bound) */
} cli_kind;

typedef struct cli_option {
  const char *name;    /* "--limit"; NULL ends the list */
  cli_kind kind;       /* CLI_FLAG: takes no value; the others take one */
  const char *value;   /* the value's name in usage and help ("N"); NULL for a flag */
  const char *help;    /* for --help; lines after a "\n" are indented under the first */
  const char *missing; /* the noun in "missing <noun> after <name>"; NULL: "value" */
  int64_t max;         /* CLI_NUMBER: the largest value; 0: any positive one */
  bool required;       /* the command cannot run without it */
} cli_option;

typedef struct cli_args cli_args;

typedef struct cli_command {
  const char *name;                    /* "grant" */
  const char *summary;                 /* one line for its group's --help */
  const char *help;                    /* what it does: the body of its --help */
  const char *pos[CLI_MAX_POSITIONAL]; /* its positional arguments, all required */
  const char *too_many;                /* message for one more positional; NULL:
                                          "unexpected argument" */
  cli_option options[CLI_MAX_OPTIONS]; /* ended by an entry with name NULL */
  int (*run)(const cli_args *a);       /* called with the parsed command line */
} cli_command;

typedef struct cli_group {
  const char *name;            /* "credits"; NULL: commands of tryonctl itself */
  const char *summary;         /* one line for tryonctl --help */
  const char *help;            /* the body of the group's --help */
  const cli_command *commands; /* borrowed: static tables */
  size_t count;
} cli_group;

/* What the parser made of a command line; strings are borrowed from argv. */
struct cli_args {
  const cli_command *cmd;
  char name[64];   /* "credits grant": for messages */
  char usage[512]; /* "tryonctl credits grant USER AMOUNT --reason TEXT ..." */
  const char *pos[CLI_MAX_POSITIONAL];
  const char *value[CLI_MAX_OPTIONS]; /* by index in cmd->options; "" for a given flag */
  int64_t number[CLI_MAX_OPTIONS];    /* CLI_NUMBER values */
  bool json;                          /* --json was given: refusals print JSON too */
};

/* The value of option `name` (borrowed from argv), or NULL when not given. */
const char *cli_value(const cli_args *a, const char *name);
/* Whether option `name` was given. */
bool cli_flag(const cli_args *a, const char *name);
/* The value of CLI_NUMBER option `name`, or `dflt` when not given. */
int64_t cli_number(const cli_args *a, const char *name, int64_t dflt);

/* The groups, one per cmd_<group>.c (cmd_migrate.c holds tryonctl's own commands). */
extern const cli_group cli_group_credits;
extern const cli_group cli_group_file;
extern const cli_group cli_group_initdata;
extern const cli_group cli_group_jobs;
extern const cli_group cli_group_tryonctl; /* migrate, version */
extern const cli_group cli_group_user;

/* ------------------------------------------------------------ 3. The parser and the program */

/* Every group, in the order tryonctl --help lists them; `*n` receives how many. */
const cli_group *const *cli_groups(size_t *n);

/*
 * Parses argv[0..argc) (what follows "tryonctl <group> <command>") against `cmd` of
 * `group` (NULL for tryonctl's own) and runs it. --help (or -h) anywhere prints the
 * command's help and returns EXIT_OK; a malformed line returns EXIT_USAGE after one
 * line and the usage on stderr; otherwise returns what cmd->run returns.
 */
int cli_run_command(const cli_group *group, const cli_command *cmd, int argc, char **argv);

/* The whole program: tryonctl's argv in, its exit code out. */
int cli_main(int argc, char **argv);

/* ------------------------------------------------------------------ 4. Output and refusals */

/* "tryonctl: <what> <arg>" and `usage` on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *what, const char *arg);

/* Prints `doc` (taken: deleted here) on one line of stdout. */
void cli_print_json(cJSON *doc);

/* {"error":{"code","message"}} of `err` on stdout. */
void cli_print_json_error(const tryon_err *err);

/*
 * A refusal (exit 1): the error as JSON on stdout with --json, and always "tryonctl:
 * <command>: <message>" on stderr. Nothing when `err` holds no status (a bad
 * configuration, already reported). `extra` (optional, taken) adds its members to the
 * JSON error object. Returns EXIT_REFUSED.
 */
int cli_refuse(const cli_args *a, const tryon_err *err, cJSON *extra);

/* A time for people: ISO 8601, or `none` (borrowed) for 0. Returns `out`. */
const char *cli_human_time(int64_t ms, const char *none, char out[TRYON_TIME_ISO8601_LEN]);

/* ---------------------------------------------------------------- 5. Values operators type */

/* A positive decimal integer, or false. */
bool cli_parse_positive(const char *s, int64_t *out);

/* Positional USER (a->pos[0]): a Telegram id. false after a usage error in *rc. */
bool cli_telegram_id(const cli_args *a, int64_t *out, int *rc);

/* --reason: present when `required`, not empty, at most 1000 characters (the schema's
 * limit for a block reason and a ledger note). false after a usage error in *rc. */
bool cli_check_reason(const cli_args *a, bool required, int *rc);

/* -------------------------------------------------------------------------- 6. The database */

/* One command's database: the configuration and a pool of one connection, leased. */
typedef struct cli_db {
  tryon_config cfg;
  tryon_db *db;
  tryon_db_conn *conn;
} cli_db;

/* Loads the configuration and leases the connection. false: refused, and either `err`
 * says why or (bad configuration) tryon_app_init already did on stderr. Close it with
 * cli_db_close whatever it returned. */
bool cli_db_open(cli_db *s, tryon_err *err);
/* Releases what cli_db_open got; a zeroed `s` is accepted. */
void cli_db_close(cli_db *s);

/* cli_db_open, then the user of Telegram id `telegram_id` into `u`; false with `err`
 * set (or a bad configuration already reported) otherwise. */
bool cli_load_user(cli_db *s, int64_t telegram_id, tryon_user *u, tryon_err *err);

/* user show (`whole`: the user's record too) and credits balance: the wallet of USER
 * (a->pos[0]) brought up to date and printed. Defined in cmd_user.c. */
int cli_show_balance(const cli_args *a, bool whole);

/* Operators read a command's own output: routine info lines would clutter it. Raises
 * the log level to WARN unless it is DEBUG. */
void cli_quiet_log(tryon_log_level configured);

#endif
