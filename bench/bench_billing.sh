#!/usr/bin/env bash
# bench/bench_billing.sh - credit spends per second (one hot user; 1000 users) on a
# release build and a fresh migrated database in the private cluster. Prints figures.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
. "$(dirname "$0")/lib.sh"
cd "$TRYON_ROOT"
ensure_packages
pg_start
trap '[ "${PG_STARTED_HERE:-0}" = 1 ] && pg_stop' EXIT
bench_build
bench_fresh_db tryon_bench_billing
"$BUILD/bench/bench_billing" "$URL"
