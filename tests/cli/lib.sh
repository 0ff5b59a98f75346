# shellcheck shell=bash
# Shared by the CLI tests: counters, `check`, and (with scratch_db) a scratch database.
# Source it after `set -uo pipefail`; end the test with `finish`.

passed=0
failed=0
work=$(mktemp -d)
scratch=""

cleanup() {
  if [ -n "$scratch" ]; then
    psql -X -q "$TRYON_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" \
      >/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# scratch_db PREFIX: creates an empty database; sets $url to its conninfo.
scratch_db() {
  : "${TRYON_TEST_DATABASE_URL:?run through scripts/test, which sets TRYON_TEST_DATABASE_URL}"
  scratch="${1}_$$_$RANDOM"
  psql -X -q "$TRYON_TEST_DATABASE_URL" -c "CREATE DATABASE $scratch" >/dev/null || exit 1
  url="${TRYON_TEST_DATABASE_URL/dbname=postgres/dbname=$scratch}"
}

ok() {
  echo "ok   $1"
  passed=$((passed + 1))
}

# fail NAME WHY [OUTPUT]
fail() {
  echo "FAIL $1: $2"
  [ $# -ge 3 ] && sed 's/^/    /' <<<"$3"
  failed=$((failed + 1))
}

# check NAME WANT_EXIT GREP_PATTERN -- COMMAND...
check() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "$name" "exit $rc, want $want" "$out"
  elif [ -n "$pattern" ] && ! grep -Eq -- "$pattern" <<<"$out"; then
    fail "$name" "output lacks /$pattern/" "$out"
  else
    ok "$name"
  fi
}

# The closing line ctest's log shows, and the exit status.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
