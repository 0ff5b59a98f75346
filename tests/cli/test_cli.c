/*
 * tryonctl's option parser, driven through the real command tables: every command's
 * --help exits 0 and names each of its options, an unknown option and an option
 * without its value exit 2 with one line, and the group and program level refuse what
 * they do not know. No command runs: every case stops in the parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

/* What one parser call printed and returned. */
typedef struct run {
  int rc;
  char out[16384];
  char err[4096];
} run;

/* Reads what was written to `f` since it was rewound into `buf`. */
static void slurp(FILE *f, char *buf, size_t cap) {
  size_t n;

  rewind(f);
  n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
}

/* Runs `cmd` of `g` (or, with cmd NULL, the whole program) on `argv` with stdout and
 * stderr captured. */
static void capture(run *r, const cli_group *g, const cli_command *cmd, int argc, char **argv) {
  FILE *out = tmpfile(), *err = tmpfile();
  int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);

  assert_non_null(out);
  assert_non_null(err);
  fflush(stdout);
  fflush(stderr);
  dup2(fileno(out), STDOUT_FILENO);
  dup2(fileno(err), STDERR_FILENO);
  r->rc = cmd != NULL ? cli_run_command(g, cmd, argc, argv) : cli_main(argc, argv);
  fflush(stdout);
  fflush(stderr);
  dup2(saved_out, STDOUT_FILENO);
  dup2(saved_err, STDERR_FILENO);
  close(saved_out);
  close(saved_err);
  slurp(out, r->out, sizeof r->out);
  slurp(err, r->err, sizeof r->err);
  fclose(out);
  fclose(err);
}

/* Calls `check` for every command of every group. */
static void each_command(void (*check)(const cli_group *, const cli_command *)) {
  size_t n = 0;
  const cli_group *const *groups = cli_groups(&n);

  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) {
    assert_true(groups[i]->count > 0);
    for (size_t j = 0; j < groups[i]->count; j++)
      check(groups[i], &groups[i]->commands[j]);
  }
}

/* argv for `cmd`: a dummy for each positional argument, a value for each required
 * option, then `extra` (NULL: none). Returns argc; strings are static. */
static int base_argv(const cli_command *cmd, char **argv, const char *extra) {
  int argc = 0;

  for (int i = 0; i < CLI_MAX_POSITIONAL && cmd->pos[i] != NULL; i++)
    argv[argc++] = "1";
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    if (cmd->options[i].required) {
      argv[argc++] = (char *)cmd->options[i].name;
      argv[argc++] = "1";
    }
  }
  if (extra != NULL)
    argv[argc++] = (char *)extra;
  argv[argc] = NULL;
  return argc;
}

static void help_names_options(const cli_group *g, const cli_command *cmd) {
  char *argv[] = {"--help", NULL};
  run r;

  capture(&r, g, cmd, 1, argv);
  assert_int_equal(r.rc, EXIT_OK);
  assert_non_null(strstr(r.out, "usage: tryonctl "));
  assert_non_null(strstr(r.out, cmd->name));
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    if (strstr(r.out, cmd->options[i].name) == NULL)
      fail_msg("%s --help does not name %s", cmd->name, cmd->options[i].name);
  }
  assert_string_equal(r.err, "");
}

static void test_cli__help_of_every_command_names_its_options(void **state) {
  (void)state;
  each_command(help_names_options);
}

static void unknown_option(const cli_group *g, const cli_command *cmd) {
  char *argv[2 * CLI_MAX_OPTIONS + CLI_MAX_POSITIONAL + 2];
  int argc = base_argv(cmd, argv, "--no-such-option");
  run r;

  capture(&r, g, cmd, argc, argv);
  assert_int_equal(r.rc, EXIT_USAGE);
  assert_non_null(strstr(r.err, "tryonctl: unknown argument --no-such-option\nusage: "));
  assert_string_equal(r.out, "");
}

static void test_cli__unknown_option_is_a_usage_error(void **state) {
  (void)state;
  each_command(unknown_option);
}

static void missing_values(const cli_group *g, const cli_command *cmd) {
  for (int i = 0; i < CLI_MAX_OPTIONS && cmd->options[i].name != NULL; i++) {
    char *argv[2 * CLI_MAX_OPTIONS + CLI_MAX_POSITIONAL + 2];
    int argc;
    run r;

    if (cmd->options[i].kind == CLI_FLAG)
      continue;
    argc = base_argv(cmd, argv, cmd->options[i].name);
    capture(&r, g, cmd, argc, argv);
    assert_int_equal(r.rc, EXIT_USAGE);
    assert_non_null(strstr(r.err, "tryonctl: missing "));
    assert_non_null(strstr(r.err, cmd->options[i].name));
    assert_string_equal(r.out, "");
  }
}

static void test_cli__option_without_its_value_is_a_usage_error(void **state) {
  (void)state;
  each_command(missing_values);
}

static void missing_positional(const cli_group *g, const cli_command *cmd) {
  run r;

  if (cmd->pos[0] == NULL)
    return;
  capture(&r, g, cmd, 0, (char *[]){NULL});
  assert_int_equal(r.rc, EXIT_USAGE);
  assert_non_null(strstr(r.err, "tryonctl: missing "));
  assert_non_null(strstr(r.err, cmd->pos[0]));
}

static void test_cli__missing_positional_is_a_usage_error(void **state) {
  (void)state;
  each_command(missing_positional);
}

/* Program-level cases: argv as typed, the exit code and a piece of the output. */
static const struct {
  const char *args[4];
  int rc;
  const char *want; /* in stdout or stderr */
} program_cases[] = {
    {{NULL}, EXIT_USAGE, "usage: tryonctl COMMAND"},
    {{"--help"}, EXIT_OK, "exit codes: 0 done, 1 refused, 2 usage"},
    {{"bogus"}, EXIT_USAGE, "unknown command bogus"},
    {{"credits"}, EXIT_USAGE, "missing subcommand after credits"},
    {{"credits", "bogus"}, EXIT_USAGE, "unknown subcommand bogus"},
    {{"credits", "--help"}, EXIT_OK, "tryonctl credits grant USER AMOUNT"},
    {{"credits", "grant", "1", "2"}, EXIT_USAGE, "missing required option --reason"},
    {{"user", "show", "1", "2"}, EXIT_USAGE, "unexpected argument 2"},
    {{"user", "show", "--nope", "--help"}, EXIT_OK, "usage: tryonctl user show USER"},
    {{"jobs", "list", "--limit", "1001"}, EXIT_USAGE, "--limit must be an integer from 1 to 1000"},
    {{"initdata", "verify", "--bot-token", ""}, EXIT_USAGE, "missing token after --bot-token"},
    {{"--version"}, EXIT_OK, "tryonctl "},
};

static void test_cli__program_level_usage(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof program_cases / sizeof program_cases[0]; i++) {
    char *argv[6] = {"tryonctl"};
    int argc = 1;
    run r;

    for (int j = 0; j < 4 && program_cases[i].args[j] != NULL; j++)
      argv[argc++] = (char *)program_cases[i].args[j];
    capture(&r, NULL, NULL, argc, argv);
    if (r.rc != program_cases[i].rc)
      fail_msg("case %zu: exit %d, want %d (%s)", i, r.rc, program_cases[i].rc, r.err);
    if (strstr(r.out, program_cases[i].want) == NULL &&
        strstr(r.err, program_cases[i].want) == NULL)
      fail_msg("case %zu: output lacks \"%s\": %s%s", i, program_cases[i].want, r.out, r.err);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cli__help_of_every_command_names_its_options),
      cmocka_unit_test(test_cli__unknown_option_is_a_usage_error),
      cmocka_unit_test(test_cli__option_without_its_value_is_a_usage_error),
      cmocka_unit_test(test_cli__missing_positional_is_a_usage_error),
      cmocka_unit_test(test_cli__program_level_usage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
