#!/usr/bin/env bash
# bench/bench_http.sh - requests/s, p50/p99 latency and server CPU per request for
# POST /api/auth/telegram (each with its database upsert) and GET /api/me, with wrk on
# loopback against a release build and the private PostgreSQL cluster.
#
#   bench/bench_http.sh [SECONDS] [CONNECTIONS]     (defaults: 10 s, 64 connections)
#
# Prints figures; asserts nothing. The load generator shares the machine's cores with
# the server and PostgreSQL, so the figures are conservative.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
. "$(dirname "$0")/lib.sh"
cd "$TRYON_ROOT"
DURATION=${1:-10}
CONNS=${2:-64}

ensure_packages
command -v wrk >/dev/null || { say "installing wrk"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
pg_start
trap '[ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null; [ "${PG_STARTED_HERE:-0}" = 1 ] && pg_stop; rm -rf "$WORK"' EXIT
WORK=$(mktemp -d)

bench_build

DB=tryon_bench
pg_psql -d postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB OWNER tryon"
URL="host=$PG_SOCK port=$PG_PORT dbname=$DB user=tryon"
BOT="7000000001:bench-token"
export TRYON_ENV_FILE=/dev/null TRYON_DATABASE_URL=$URL TRYON_BOT_TOKEN=$BOT \
  TRYON_JWT_SECRET=bench-secret-0123456789abcdef0123456789 TRYON_HTTP_PORT=18080 \
  TRYON_LOG_LEVEL=warn TRYON_DB_POOL_SIZE=${TRYON_DB_POOL_SIZE:-$(( $(nproc) * 2 ))} TRYON_HTTP_THREADS=${TRYON_HTTP_THREADS:-2} TRYON_RATE_LIMIT_IP_RPS=1000000 TRYON_RATE_LIMIT_IP_BURST=1000000 \
  TRYON_RATE_LIMIT_USER_RPS=1000000 TRYON_RATE_LIMIT_USER_BURST=1000000
"$BUILD/bin/tryonctl" migrate >/dev/null
"$BUILD/bench/gen_initdata" "$BOT" 50000 >"$WORK/bodies.txt"

"$BUILD/bin/tryon-server" & SERVER_PID=$!
for _ in $(seq 100); do curl -sf localhost:18080/healthz >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TICK=$(getconf CLK_TCK)

# run NAME wrk-args...: prints requests/s, latency and server CPU microseconds/request.
run() {
  local name=$1; shift
  local before after out rps reqs
  before=$(cpu_ticks)
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$@")
  after=$(cpu_ticks)
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")
  printf '%-24s %9.0f req/s  %s  server CPU %.1f us/request\n' "$name" "$rps" \
    "$(tail -n 1 <<<"$out")" \
    "$(awk -v a="$after" -v b="$before" -v t="$TICK" -v r="$reqs" 'BEGIN { print (a - b) * 1e6 / t / r }')"
}

say "$CONNS connections, ${DURATION}s each, 2 wrk threads, $(nproc) cores shared"
run "POST /api/auth/telegram" -s bench/http/signin.lua http://127.0.0.1:18080 -- "$WORK/bodies.txt"
TOKEN=$(head -n 1 "$WORK/bodies.txt" | curl -sf -H 'Content-Type: application/json' \
  --data-binary @- localhost:18080/api/auth/telegram | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
run "GET /api/me" -s bench/http/me.lua http://127.0.0.1:18080/api/me -- "$TOKEN"
echo "users after the run: $(pg_psql -d $DB -tAc 'SELECT count(*) FROM users')"
