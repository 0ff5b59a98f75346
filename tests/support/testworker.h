/*
 * The tryon-worker binary as a test's child process: started on a scratch database with
 * extra settings, its log in a file, stopped by signal. TRYON_WORKER_BIN (set by ctest)
 * names the binary.
 */
#ifndef TRYON_TESTWORKER_H
#define TRYON_TESTWORKER_H

#include <stdbool.h>
#include <sys/types.h>

#include "testsupport.h"

/* Starts the worker on `t` with TRYON_ENV_FILE=/dev/null, TRYON_WORKER_TEST_KINDS=true
 * (the noop and sleep kinds; an extra "TRYON_WORKER_TEST_KINDS=false" turns them off),
 * `extra_env` ("NAME=value",
 * NULL-terminated; may be NULL) and its stdout+stderr appended to `log_path` (NULL:
 * inherited). Fails the test when it cannot start. */
pid_t tryon_testworker_spawn(const tryon_testdb *t, const char *const *extra_env,
                             const char *log_path);

/* SIGKILLs every worker this process started and has not waited for (teardown: a
 * failed test must not leave workers behind). */
void tryon_testworker_kill_all(void);

/* Sends `sig` and waits for the process; returns its wait status. */
int tryon_testworker_signal_wait(pid_t pid, int sig);

/* Polls `sql` (one value) on `c` every 20 ms until it equals `want`, for up to
 * `timeout_ms`; false when it never did (the last value is in `last`, 128 bytes). */
bool tryon_test_wait_value(tryon_db_conn *c, const char *sql, const char *want, int timeout_ms,
                           char last[128]);

/* A loopback TCP port that was free a moment ago. */
int tryon_test_free_port(void);

#endif
