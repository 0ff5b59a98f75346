/*
 * What every tryon program does at start-up: load the configuration from the
 * environment and `.env`, and install the log sink. Shared by tryon-server,
 * tryon-worker and tryonctl; not part of libtryon (the library never reads the
 * environment nor prints).
 */
#ifndef TRYON_APP_H
#define TRYON_APP_H

#include <tryon/core.h>

/* Writes each log line, newline-terminated, to stderr (one write per line, so lines
 * from several threads never interleave). */
void tryon_app_log_sink(tryon_log_level level, const char *line, void *ud);

/*
 * Loads the configuration (defaults, then `.env` in the working directory or the file
 * named by TRYON_ENV_FILE, then the environment) requiring `needs`, installs the log
 * sink at the configured level, and returns 0. On a bad configuration prints
 * "<prog>: <message>" to stderr and returns -1.
 */
int tryon_app_init(const char *prog, unsigned needs, tryon_config *cfg);

/* The migrations folder: TRYON_MIGRATIONS_DIR if set, else the source tree's. Borrowed. */
const char *tryon_app_migrations_dir(const tryon_config *cfg);

/* The product version, "0.1.0". */
const char *tryon_app_version(void);

#endif
