#!/usr/bin/env bash
# bench/bench_worker.sh - the worker process on a release build and the private cluster:
#   1. noop throughput, jobs/s, with 1 and 2 worker processes (N jobs queued at once);
#   2. enqueue-to-start latency with NOTIFY (one job at a time, 5 ms apart), p50/p99,
#      measured from outside by bench_latency;
#   3. one worker holding 1,000 waiting jobs: its RSS, peak RSS and threads, and how
#      long SIGTERM takes to hand them all back.
# Prints figures; asserts nothing. N=20000 by default (bench_worker.sh N).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
. "$(dirname "$0")/lib.sh"
cd "$TRYON_ROOT"
ensure_packages
pg_start
N=${1:-20000}
bench_build
DB=tryon_bench_worker
WORKERS=()
cleanup() {
  for p in "${WORKERS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${PG_STARTED_HERE:-0}" = 1 ]; then pg_stop; fi
}
trap cleanup EXIT

sql() { pg_psql -d "$DB" -qAtc "$1"; }
now_ms() { date +%s%3N; }
fresh_db() { bench_fresh_db "$DB"; }
# start_worker [NAME=value ...]: a worker in the background, its pid appended to WORKERS.
start_worker() {
  env TRYON_ENV_FILE=/dev/null TRYON_DATABASE_URL="$URL" TRYON_LOG_LEVEL=warn \
    TRYON_WORKER_POLL_MS=1000 TRYON_WORKER_TEST_KINDS=true "$@" "$BUILD/bin/tryon-worker" &
  WORKERS+=($!)
}
stop_workers() {
  for p in "${WORKERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${WORKERS[@]}"; do wait "$p" 2>/dev/null || true; done
  WORKERS=()
}
wait_for() { # wait_for SQL WANT: polls every 10 ms
  until [ "$(sql "$1")" = "$2" ]; do sleep 0.01; done
}

echo "== noop throughput, $N jobs queued at once"
for nw in 1 2; do
  fresh_db
  for _ in $(seq "$nw"); do start_worker TRYON_WORKER_CONCURRENCY=256 TRYON_DB_POOL_SIZE=4; done
  sleep 1 # the workers are up and listening
  t0=$(now_ms)
  sql "INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, $N); NOTIFY tryon_jobs, 'noop'"
  t1=$(now_ms)
  wait_for "SELECT count(*) FROM jobs WHERE kind = 'noop' AND state = 'succeeded'" "$N"
  t2=$(now_ms)
  stop_workers
  echo "  $nw worker(s): $(( N * 1000 / (t2 - t1) )) jobs/s ($N jobs in $(( t2 - t1 )) ms after a $(( t1 - t0 )) ms enqueue)"
done

echo "== enqueue-to-start latency with NOTIFY (one job at a time, 5 ms apart)"
fresh_db
start_worker TRYON_DB_POOL_SIZE=4
sleep 1
"$BUILD/bench/bench_latency" "$URL" 500
stop_workers

echo "== one worker holding 1,000 waiting jobs"
fresh_db
start_worker TRYON_WORKER_CONCURRENCY=1000 TRYON_DB_POOL_SIZE=4 TRYON_WORKER_GRACE_MS=30000
pid=${WORKERS[0]}
sleep 1
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
sql "INSERT INTO jobs (kind, payload) SELECT 'sleep', '{\"ms\":600000,\"steps\":60}'
     FROM generate_series(1, 1000); NOTIFY tryon_jobs, 'sleep'"
wait_for "SELECT count(*) FROM jobs WHERE state = 'running' AND stage = 'sleeping'" 1000
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$pid/status")
echo "  idle RSS $(( rss0 / 1024 )) MiB; holding 1,000: RSS $(( rss / 1024 )) MiB, peak $(( hwm / 1024 )) MiB, $threads threads ($(( (rss - rss0) * 1024 / 1000 )) bytes a job)"
t0=$(now_ms)
stop_workers
t1=$(now_ms)
echo "  SIGTERM handed back $(sql "SELECT count(*) FROM jobs WHERE kind = 'sleep' AND state = 'queued' AND attempts = 0") jobs in $(( t1 - t0 )) ms"
