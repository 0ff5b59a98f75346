#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tryon/http.h>

extern char **environ;

void tryon_app_log_sink(tryon_log_level level, const char *line, void *ud) {
  (void)level;
  (void)ud;
  size_t n = strlen(line);
  char *msg = malloc(n + 1);
  if (msg == NULL)
    return;
  memcpy(msg, line, n);
  msg[n] = '\n';
  /* One write(2) per line: stderr is unbuffered and a single write of a line is not
   * split between concurrent writers on a pipe (up to PIPE_BUF) or a file. */
  ssize_t w = write(STDERR_FILENO, msg, n + 1);
  (void)w;
  free(msg);
}

int tryon_app_init(const char *prog, unsigned needs, tryon_config *cfg) {
  tryon_err err;
  tryon_err_clear(&err);
  /* The programs are the only place that reads the process environment. */
  const char *env_file = getenv("TRYON_ENV_FILE");
  if (env_file == NULL || env_file[0] == '\0')
    env_file = ".env";
  if (tryon_config_load(cfg, (const char *const *)environ, env_file, needs, &err) != TRYON_OK) {
    fprintf(stderr, "%s: configuration: %s\n", prog, tryon_err_message(&err));
    return -1;
  }
  tryon_log_set_level(cfg->log_level);
  tryon_log_set_sink(tryon_app_log_sink, NULL);
  /* libcurl's global set-up is not thread-safe: do it before any thread starts. */
  if (tryon_http_global_init(&err) != TRYON_OK) {
    fprintf(stderr, "%s: %s\n", prog, tryon_err_message(&err));
    tryon_config_release(cfg);
    return -1;
  }
  return 0;
}

const char *tryon_app_migrations_dir(const tryon_config *cfg) {
  return cfg->migrations_dir ? cfg->migrations_dir : TRYON_DEFAULT_MIGRATIONS_DIR;
}

const char *tryon_app_version(void) {
  return TRYON_VERSION;
}
