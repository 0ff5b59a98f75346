#!/usr/bin/env bash
# tryonctl end to end against a scratch database: exit codes (0 done, 1 refused,
# 2 usage), migrate and migrate --status, human and JSON output.
# usage: test_tryonctl.sh PATH/TO/tryonctl MIGRATIONS_DIR   (ctest passes both)
set -uo pipefail
CTL=$1
MIG=$2
: "${TRYON_TEST_DATABASE_URL:?run through scripts/test, which sets TRYON_TEST_DATABASE_URL}"

passed=0
failed=0
work=$(mktemp -d)
db="tryon_cli_$$_$RANDOM"
cleanup() {
  psql -X -q "$TRYON_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
psql -X -q "$TRYON_TEST_DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null || exit 1
url="${TRYON_TEST_DATABASE_URL/dbname=postgres/dbname=$db}"
# Run from an empty folder so no .env is picked up, with a clean TRYON_ environment.
cd "$work"
unset TRYON_ENV_FILE TRYON_MIGRATIONS_DIR

# check NAME WANT_EXIT GREP_PATTERN -- COMMAND...
check() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, want $want"; echo "$out" | sed 's/^/    /'
    failed=$((failed + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/"; echo "$out" | sed 's/^/    /'
    failed=$((failed + 1)); return
  fi
  echo "ok   $name"
  passed=$((passed + 1))
}

ctl() { env TRYON_DATABASE_URL="$url" "$CTL" "$@"; }

check "no command is a usage error"       2 "usage: tryonctl"        -- "$CTL"
check "--help lists the commands"         0 "migrate"                -- "$CTL" --help
check "unknown command"                   2 "unknown command bogus"  -- "$CTL" bogus
check "version"                           0 "^tryonctl [0-9]+\.[0-9]+\.[0-9]+$" -- "$CTL" version
check "version --json"                    0 '^\{"version":"[0-9.]+"\}$' -- "$CTL" version --json
check "migrate --help"                    0 "--status"               -- "$CTL" migrate --help
check "migrate unknown flag"              2 "unknown argument --nope" -- ctl migrate --nope
check "migrate --dir without a value"     2 "missing folder"         -- ctl migrate --dir
check "missing database URL is refused"   1 "TRYON_DATABASE_URL is missing" -- "$CTL" migrate
check "status before migrating"           0 "pending"                -- ctl migrate --status --dir "$MIG"
check "migrate applies"                   0 "^applied [0-9]+ migration" -- ctl migrate --dir "$MIG"
check "migrate again changes nothing"     0 "up to date"             -- ctl migrate --dir "$MIG"
check "status --json after"               0 '"pending":0'            -- ctl migrate --status --json --dir "$MIG"
check "migrate --json"                    0 '"newly_applied":0'      -- ctl migrate --json --dir "$MIG"

psql -X -q "$url" -c "INSERT INTO schema_migrations (version, name, checksum) VALUES (999999, '999999_future', 'x')" >/dev/null
check "unknown applied migration refused" 1 "999999_future"          -- ctl migrate --dir "$MIG"
check "refusal as JSON"                   1 '"code":"migration_refused"' -- ctl migrate --json --dir "$MIG"
check "status shows the unknown one"      1 "unknown"                -- ctl migrate --status --dir "$MIG"
check "unreachable database is refused"   1 "cannot connect"         -- \
  env TRYON_DATABASE_URL="host=/nonexistent dbname=x user=x" TRYON_DB_POOL_TIMEOUT_MS=1000 "$CTL" migrate --dir "$MIG"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
