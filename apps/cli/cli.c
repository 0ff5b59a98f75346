/*
 * cli.c - the one option parser of tryonctl, the --help it writes from the command
 * tables, and the dispatch from argv to a command's run function.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_group *const groups[] = {
    &cli_group_credits, &cli_group_file,     &cli_group_initdata,
    &cli_group_jobs,    &cli_group_tryonctl, &cli_group_user,
};

const cli_group *const *cli_groups(size_t *n) {
  *n = sizeof groups / sizeof groups[0];
  return groups;
}

static bool is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* "-x", "--x": an option. "-5" is not one but a bad number, left for the value checks
 * to name; "-" alone is an ordinary argument. */
static bool looks_like_option(const char *a) {
  return a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
}

/* The index of option `name` in `cmd`, or -1. */
static int option_index(const cli_command *cmd, const char *name) {
  int found = -1;

  for (int i = 0; found < 0 && i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    if (strcmp(cmd->options[i].name, name) == 0)
      found = i;
  }
  return found;
}

const char *cli_value(const cli_args *a, const char *name) {
  int i = option_index(a->cmd, name);
  return i >= 0 ? a->value[i] : NULL;
}

bool cli_flag(const cli_args *a, const char *name) {
  return cli_value(a, name) != NULL;
}

int64_t cli_number(const cli_args *a, const char *name, int64_t dflt) {
  int i = option_index(a->cmd, name);
  return i >= 0 && a->value[i] != NULL ? a->number[i] : dflt;
}

/* "credits grant" or "migrate". */
static void command_name(const cli_group *g, const cli_command *cmd, char *out, size_t cap) {
  if (g != NULL && g->name != NULL)
    snprintf(out, cap, "%s %s", g->name, cmd->name);
  else
    snprintf(out, cap, "%s", cmd->name);
}

/* "tryonctl credits grant USER AMOUNT --reason TEXT [--key KEY] [--json]": positional
 * arguments, then the options in table order, optional ones in brackets. */
static void command_usage(const cli_group *g, const cli_command *cmd, char *out, size_t cap) {
  char name[64];
  size_t used;

  command_name(g, cmd, name, sizeof name);
  used = (size_t)snprintf(out, cap, "tryonctl %s", name);
  for (int i = 0; i < CLI_MAX_POSITIONAL && cmd->pos[i] != NULL && used < cap; i++)
    used += (size_t)snprintf(out + used, cap - used, " %s", cmd->pos[i]);
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL && used < cap; i++) {
    const cli_option *o = &cmd->options[i];
    used += (size_t)snprintf(out + used, cap - used, " %s%s%s%s%s", o->required ? "" : "[", o->name,
                             o->value != NULL ? " " : "", o->value != NULL ? o->value : "",
                             o->required ? "" : "]");
  }
}

/* A help text, every line after the first indented by `indent` spaces. */
static void print_indented(const char *text, int indent) {
  for (const char *p = text; *p != '\0'; p++) {
    putchar(*p);
    if (*p == '\n' && p[1] != '\0')
      printf("%*s", indent, "");
  }
}

static void print_command_help(const cli_group *g, const cli_command *cmd) {
  char usage[512], label[64];
  int width = (int)strlen("--help");

  command_usage(g, cmd, usage, sizeof usage);
  printf("usage: %s\n\n%s", usage, cmd->help);
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    const cli_option *o = &cmd->options[i];
    int n = snprintf(label, sizeof label, "%s%s%s", o->name, o->value ? " " : "",
                     o->value ? o->value : "");
    if (n > width)
      width = n;
  }
  printf("\noptions:\n");
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    const cli_option *o = &cmd->options[i];
    snprintf(label, sizeof label, "%s%s%s", o->name, o->value ? " " : "", o->value ? o->value : "");
    printf("  %-*s  ", width, label);
    print_indented(o->help, width + 4);
    printf("%s\n", o->required ? " (required)" : "");
  }
  printf("  %-*s  print this help\n", width, "--help");
}

/* The group's usage: one line per command. */
static void print_group_usage(FILE *f, const cli_group *g) {
  char usage[512];

  for (size_t i = 0; i < g->count; i++) {
    command_usage(g, &g->commands[i], usage, sizeof usage);
    fprintf(f, "%s%s\n", i == 0 ? "usage: " : "       ", usage);
  }
}

static void print_group_help(const cli_group *g) {
  int width = 0;

  print_group_usage(stdout, g);
  printf("\n%s\ncommands:\n", g->help);
  for (size_t i = 0; i < g->count; i++) {
    int n = (int)strlen(g->commands[i].name);
    if (n > width)
      width = n;
  }
  for (size_t i = 0; i < g->count; i++)
    printf("  %-*s  %s\n", width, g->commands[i].name, g->commands[i].summary);
  printf("\nEach command takes --help.\n");
}

/* A usage error of the group itself (no or an unknown command). */
static int group_usage_error(const cli_group *g, const char *what, const char *arg) {
  fprintf(stderr, "tryonctl: %s %s\n", what, arg);
  print_group_usage(stderr, g);
  return EXIT_USAGE;
}

/* Takes the value of option `o` from argv[*i + 1]; NULL after a usage message in
 * `problem` (the first one wins). */
static const char *take_value(const cli_option *o, int argc, char **argv, int *i, char *problem,
                              size_t cap) {
  const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;

  if (v != NULL)
    (*i)++;
  /* A missing or empty token is never echoed: the value itself is not shown. */
  if (v == NULL || (o->kind == CLI_WORD && v[0] == '\0')) {
    if (problem[0] == '\0')
      snprintf(problem, cap, "missing %s after %s", o->missing ? o->missing : "value", o->name);
    v = NULL;
  }
  return v;
}

int cli_run_command(const cli_group *group, const cli_command *cmd, int argc, char **argv) {
  cli_args a;
  char problem[256] = "";
  bool help = false;
  int npos = 0, want = 0, rc = EXIT_OK;

  memset(&a, 0, sizeof a);
  a.cmd = cmd;
  command_name(group, cmd, a.name, sizeof a.name);
  command_usage(group, cmd, a.usage, sizeof a.usage);
  while (want < CLI_MAX_POSITIONAL && cmd->pos[want] != NULL)
    want++;
  /* After a problem the scan goes on, only to find a --help further on: help wins. */
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i];
    int k = -1;

    if (is_help(arg)) {
      help = true;
    } else if (looks_like_option(arg)) {
      k = option_index(cmd, arg);
      if (k < 0 && problem[0] == '\0')
        snprintf(problem, sizeof problem, "unknown argument %s", arg);
    } else if (npos >= want) {
      if (problem[0] == '\0')
        snprintf(problem, sizeof problem, "%s %s",
                 cmd->too_many ? cmd->too_many : "unexpected argument", arg);
    } else {
      a.pos[npos++] = arg;
    }
    if (k < 0)
      continue;
    const cli_option *o = &cmd->options[k];
    if (o->kind == CLI_FLAG) {
      a.value[k] = "";
      continue;
    }
    const char *v = take_value(o, argc, argv, &i, problem, sizeof problem);
    if (v != NULL && o->kind == CLI_NUMBER &&
        (!cli_parse_positive(v, &a.number[k]) || (o->max > 0 && a.number[k] > o->max))) {
      if (problem[0] == '\0' && o->max > 0)
        snprintf(problem, sizeof problem, "%s must be an integer from 1 to %" PRId64 ", got %s",
                 o->name, o->max, v);
      else if (problem[0] == '\0')
        snprintf(problem, sizeof problem, "%s must be a positive integer, got %s", o->name, v);
      v = NULL;
    }
    a.value[k] = v;
  }
  if (help) {
    print_command_help(group, cmd);
    goto out;
  }
  if (problem[0] == '\0' && npos < want)
    snprintf(problem, sizeof problem, "missing %s", cmd->pos[npos]);
  for (int k = 0; problem[0] == '\0' && k < CLI_MAX_OPTIONS && cmd->options[k].name; k++) {
    if (cmd->options[k].required && a.value[k] == NULL)
      snprintf(problem, sizeof problem, "missing required option %s", cmd->options[k].name);
  }
  if (problem[0] != '\0') {
    fprintf(stderr, "tryonctl: %s\nusage: %s\n", problem, a.usage);
    rc = EXIT_USAGE;
    goto out;
  }
  a.json = option_index(cmd, "--json") >= 0 && cli_flag(&a, "--json");
  rc = cmd->run(&a);
out:
  return rc;
}

/* One line of tryonctl --help: a group, or one of tryonctl's own commands. */
typedef struct help_line {
  const char *name, *summary;
} help_line;

static int help_line_cmp(const void *x, const void *y) {
  return strcmp(((const help_line *)x)->name, ((const help_line *)y)->name);
}

static void print_help(FILE *f) {
  help_line lines[32];
  size_t n = 0;

  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
    const cli_group *g = groups[i];
    if (g->name != NULL && n < sizeof lines / sizeof lines[0])
      lines[n++] = (help_line){g->name, g->summary};
    for (size_t j = 0; g->name == NULL && j < g->count && n < sizeof lines / sizeof lines[0]; j++)
      lines[n++] = (help_line){g->commands[j].name, g->commands[j].summary};
  }
  qsort(lines, n, sizeof lines[0], help_line_cmp);
  fprintf(f, "usage: tryonctl COMMAND [ARGS...]\n\n"
             "The operators' tool of tryon. Settings come from the environment and .env\n"
             "(see .env.example). Every command takes --help.\n\ncommands:\n");
  for (size_t i = 0; i < n; i++)
    fprintf(f, "  %-10s %s\n", lines[i].name, lines[i].summary);
  fprintf(f, "\nexit codes: 0 done, 1 refused, 2 usage\n");
}

/* The command `name` of group `g`, or NULL. */
static const cli_command *find_command(const cli_group *g, const char *name) {
  const cli_command *found = NULL;

  for (size_t i = 0; found == NULL && i < g->count; i++) {
    if (strcmp(g->commands[i].name, name) == 0)
      found = &g->commands[i];
  }
  return found;
}

int cli_main(int argc, char **argv) {
  const char *word = argc >= 2 ? argv[1] : NULL;
  int rc = -1;

  if (word == NULL) {
    print_help(stderr);
    rc = EXIT_USAGE;
  } else if (is_help(word) || strcmp(word, "help") == 0) {
    print_help(stdout);
    rc = EXIT_OK;
  } else if (strcmp(word, "--version") == 0) {
    rc = cli_run_command(NULL, find_command(&cli_group_tryonctl, "version"), 0, argv + 2);
  }
  for (size_t i = 0; rc < 0 && i < sizeof groups / sizeof groups[0]; i++) {
    const cli_group *g = groups[i];
    const cli_command *cmd = NULL;
    if (g->name == NULL) {
      cmd = find_command(g, word);
      if (cmd != NULL)
        rc = cli_run_command(g, cmd, argc - 2, argv + 2);
    } else if (strcmp(g->name, word) == 0) {
      if (argc < 3)
        rc = group_usage_error(g, "missing subcommand after", word);
      else if (is_help(argv[2])) {
        print_group_help(g);
        rc = EXIT_OK;
      } else if ((cmd = find_command(g, argv[2])) != NULL)
        rc = cli_run_command(g, cmd, argc - 3, argv + 3);
      else
        rc = group_usage_error(g, "unknown subcommand", argv[2]);
    }
  }
  if (rc < 0) {
    fprintf(stderr, "tryonctl: unknown command %s (see tryonctl --help)\n", word);
    rc = EXIT_USAGE;
  }
  return rc;
}
