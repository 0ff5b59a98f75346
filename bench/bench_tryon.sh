#!/usr/bin/env bash
# bench/bench_tryon.sh - the try-on path on a release build and the private cluster: one
# worker (offline provider: the local composite, so the figures are ours, not kie.ai's)
# and bench_tryon driving the paying transaction, then the whole path. Also the worker's
# peak RSS and threads. Prints figures; asserts nothing. bench_tryon.sh [PER_THREAD]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
. "$(dirname "$0")/lib.sh"
cd "$TRYON_ROOT"
ensure_packages
pg_start
bench_build
STORE=$TRYON_ROOT/var/bench-storage
rm -rf "$STORE"
bench_fresh_db tryon_bench_tryon
env TRYON_ENV_FILE=/dev/null TRYON_DATABASE_URL="$URL" TRYON_LOG_LEVEL=warn \
  TRYON_STORAGE_DIR="$STORE" TRYON_DB_POOL_SIZE=4 TRYON_JOBS_PER_USER=4 \
  "$BUILD/bin/tryon-worker" &
worker=$!
cleanup() {
  kill -TERM "$worker" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  rm -rf "$STORE"
  if [ "${PG_STARTED_HERE:-0}" = 1 ]; then pg_stop; fi
}
trap cleanup EXIT
sleep 1
"$BUILD/bench/bench_tryon" "$URL" "$STORE" "${1:-100}"
echo "  worker: peak RSS $(( $(awk '/VmHWM/ {print $2}' "/proc/$worker/status") / 1024 )) MiB, $(awk '/Threads/ {print $2}' "/proc/$worker/status") threads"
