/* The worker as a child process of a test (see testworker.h). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testworker.h"

/* Workers started and not yet waited for, so that a failed test can stop them. */
static pid_t live[64];

static void forget(pid_t pid) {
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
    if (live[i] == pid)
      live[i] = 0;
  }
}

void tryon_testworker_kill_all(void) {
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
    if (live[i] > 0)
      tryon_testworker_signal_wait(live[i], SIGKILL);
  }
}

pid_t tryon_testworker_spawn(const tryon_testdb *t, const char *const *extra_env,
                             const char *log_path) {
  const char *bin = getenv("TRYON_WORKER_BIN");
  if (bin == NULL)
    fail_msg("TRYON_WORKER_BIN is not set: run through ctest");
  char db[1024];
  snprintf(db, sizeof db, "TRYON_DATABASE_URL=%s", t->conninfo);
  /* The extras come first: like getenv, the configuration takes a name's first entry. */
  const char *env[32];
  size_t n = 0;
  for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL && n < 26; i++)
    env[n++] = extra_env[i];
  env[n++] = db;
  env[n++] = "TRYON_ENV_FILE=/dev/null";
  env[n++] = "TRYON_LOG_LEVEL=warn";
  /* Tests enqueue noop and sleep jobs; an extra "TRYON_WORKER_TEST_KINDS=false" (first,
   * so it wins) starts a worker as production runs it. */
  env[n++] = "TRYON_WORKER_TEST_KINDS=true";
  env[n++] = "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1";
  /* The test's leak suppressions (tests/lsan.supp) hold for the worker too. */
  static char lsan[600];
  const char *l = getenv("LSAN_OPTIONS");
  if (l != NULL && n < 31) {
    snprintf(lsan, sizeof lsan, "LSAN_OPTIONS=%s", l);
    env[n++] = lsan;
  }
  env[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (log_path != NULL) {
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  char *argv[] = {(char *)bin, NULL};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, bin, &fa, NULL, argv, (char *const *)env);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    fail_msg("cannot start %s", bin);
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
    if (live[i] == 0) {
      live[i] = pid;
      break;
    }
  }
  return pid;
}

int tryon_testworker_signal_wait(pid_t pid, int sig) {
  int status = 0;
  kill(pid, sig);
  waitpid(pid, &status, 0);
  forget(pid);
  return status;
}

bool tryon_test_wait_value(tryon_db_conn *c, const char *sql, const char *want, int timeout_ms,
                           char last[128]) {
  for (int waited = 0;; waited += 20) {
    char *v = tryon_test_query_value(c, sql, 0, NULL);
    snprintf(last, 128, "%s", v ? v : "(null)");
    bool ok = v != NULL && strcmp(v, want) == 0;
    free(v);
    if (ok)
      return true;
    if (waited >= timeout_ms)
      return false;
    usleep(20 * 1000);
  }
}

int tryon_test_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}
