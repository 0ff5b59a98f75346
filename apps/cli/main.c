/*
 * tryonctl - the operators' command line.
 *
 * Exit codes, for every command: 0 done, 1 refused (the command ran and said no:
 * bad configuration, database unavailable, a migration refused ...), 2 usage.
 * The commands are tables in cmd_*.c; cli.c parses argv against them.
 */
#include "cli.h"

int main(int argc, char **argv) {
  return cli_main(argc, argv);
}
