/* The worker's housekeeping kinds (see housekeeping.c). */
#ifndef TRYON_WORKER_HOUSEKEEPING_H
#define TRYON_WORKER_HOUSEKEEPING_H

#include <tryon/core.h>
#include <tryon/files.h>
#include <tryon/runner.h>

/*
 * Registers and schedules the housekeeping kinds, each one database function of the
 * module that owns the data, run once per slot across all workers:
 *   "billing.expire_due" — every minute: wallets whose period or free month ended
 *                          (tryon_billing_expire_due).
 *   "jobs.purge"         — every hour: finished housekeeping jobs older than a day
 *                          (tryon_jobs_purge).
 *   "files.sweep"        — every hour: stored files no upload row names, older than an
 *                          hour, the whole store a run, 500 at a time in key order
 *                          (tryon_files_sweep_orphans with its cursor).
 * `storage` is borrowed for the runner's life. TRYON_E_INVALID as tryon_runner_add_kind
 * and tryon_runner_schedule return it.
 */
tryon_status tryon_worker_housekeeping_add(tryon_runner *r, tryon_storage *storage, tryon_err *err);

#endif
