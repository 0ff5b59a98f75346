#!/usr/bin/env bash
# bench/bench_jobs.sh - queue throughput (enqueue, claim + succeed) on a
# release build and a fresh migrated database in the private cluster. Prints figures.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
cd "$TRYON_ROOT"
ensure_packages
pg_start
trap '[ "${PG_STARTED_HERE:-0}" = 1 ] && pg_stop' EXIT
BUILD=$TRYON_ROOT/build
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRYON_TESTS=OFF >/dev/null
cmake --build "$BUILD" >/dev/null
DB=tryon_bench_jobs
pg_psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB OWNER tryon"
URL="host=$PG_SOCK port=$PG_PORT dbname=$DB user=tryon"
TRYON_ENV_FILE=/dev/null TRYON_DATABASE_URL=$URL "$BUILD/bin/tryonctl" migrate >/dev/null
"$BUILD/bench/bench_jobs" "$URL"
