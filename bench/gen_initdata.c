/*
 * gen_initdata - writes N signed sign-in bodies, one JSON document a line, for the HTTP
 * benchmark: distinct Telegram users, so each sign-in is a real upsert of its own row.
 *
 *   gen_initdata BOT_TOKEN N > bodies.txt
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <tryon/auth.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gen_initdata BOT_TOKEN N\n");
    return 2;
  }
  long n = strtol(argv[2], NULL, 10);
  long long now = (long long)time(NULL);
  for (long i = 0; i < n; i++) {
    char fields[512], signed_data[1024];
    tryon_err err;
    snprintf(
        fields, sizeof fields,
        "query_id=AAHbench%ld&user=%%7B%%22id%%22%%3A%ld%%2C%%22first_name%%22%%3A%%22Bench%%22"
        "%%2C%%22username%%22%%3A%%22bench%ld%%22%%2C%%22language_code%%22%%3A%%22en%%22%%7D"
        "&auth_date=%lld",
        i, 800000000 + i, i, now);
    if (tryon_initdata_sign(fields, argv[1], signed_data, sizeof signed_data, &err) != TRYON_OK) {
      fprintf(stderr, "gen_initdata: %s\n", tryon_err_message(&err));
      return 1;
    }
    printf("{\"init_data\":\"%s\"}\n", signed_data);
  }
  return 0;
}
