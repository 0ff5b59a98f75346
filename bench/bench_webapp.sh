#!/usr/bin/env bash
# bench/bench_webapp.sh - the web app in Debian's Chromium against a release build of
# tryon-server (bench_build: $TRYON_ROOT/build) on loopback and the private cluster:
# first-screen JavaScript gzipped and bytes transferred to the home screen's balance,
# navigation → balance under 4x CPU throttling (median of 5 cold loads), and the try-on
# screen's interaction latency (tool-tryon → screen-tryon, category click → selected).
# bench_webapp.mjs does the browser part through tests/browser/lib/harness.mjs.
# Prints figures; asserts nothing.  BENCH_RUNS=5 BENCH_CPU_RATE=4 bench/bench_webapp.sh
set -euo pipefail
. "$(dirname "$0")/../scripts/lib/common.sh"
. "$(dirname "$0")/lib.sh"
cd "$TRYON_ROOT"
ensure_packages
ensure_node
pg_start
trap '[ "${PG_STARTED_HERE:-0}" = 1 ] && pg_stop' EXIT
npm_ci_if_changed "$TRYON_ROOT/tests/browser"
webapp_build || die "no web app on this branch (webapp/package.json)"
bench_build
# The harness makes (and drops) its own scratch database on the cluster, as in the tests.
env TRYON_TEST_DATABASE_URL="$TRYON_PG_ADMIN_URL" TRYON_SOURCE_DIR="$TRYON_ROOT" \
  TRYON_SERVER_BIN="$BUILD/bin/tryon-server" TRYON_WORKER_BIN="$BUILD/bin/tryon-worker" \
  TRYONCTL_BIN="$BUILD/bin/tryonctl" TRYON_WEBAPP_DIST="$WEBAPP_DIST" \
  node bench/bench_webapp.mjs
