#!/usr/bin/env bash
# tryonctl end to end against a scratch database: exit codes (0 done, 1 refused,
# 2 usage), migrate and migrate --status, human and JSON output.
# usage: test_tryonctl.sh PATH/TO/tryonctl MIGRATIONS_DIR   (ctest passes both)
set -uo pipefail
CTL=$1
MIG=$2

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
scratch_db tryon_cli
# Run from an empty folder so no .env is picked up, with a clean TRYON_ environment.
cd "$work"
unset TRYON_ENV_FILE TRYON_MIGRATIONS_DIR

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

# initdata verify: no configuration, no database; initData on stdin. Vectors from
# tests/data/telegram (next to the migrations folder's parent).
VEC="$MIG/../tests/data/telegram/initdata_vectors.json"
vec() { # vec LIST NAME FIELD
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(next(v for v in d[sys.argv[2]] if v["name"] == sys.argv[3])[sys.argv[4]])' "$VEC" "$@"
}
# stdin_ctl INPUT ARGS...: tryonctl with INPUT (and a newline) on standard input.
stdin_ctl() { local input=$1; shift; "$CTL" "$@" <<<"$input"; }
canon=$(vec hmac canonical init_data)
canon_token=$(vec hmac canonical bot_token)
ed_prod=$(vec ed25519 telegram-production-signed init_data)
ed_bot=$(vec ed25519 telegram-production-signed bot_id)
check "initdata verify --help"            0 "--bot-token"            -- "$CTL" initdata verify --help
check "initdata valid, no max age"        0 '^\{"valid":true,"user":\{"id":279058397,' -- \
  stdin_ctl "$canon" initdata verify --bot-token "$canon_token" --no-max-age
check "initdata too old by default"       1 '"code":"initdata_expired"' -- \
  stdin_ctl "$canon" initdata verify --bot-token "$canon_token"
check "initdata tampered"                 1 '"code":"initdata_bad_hash"' -- \
  stdin_ctl "${canon/Kibenko/Kibenkp}" initdata verify --bot-token "$canon_token" --no-max-age
check "initdata Ed25519 production"       0 '"valid":true.*"auth_date":1733584787' -- \
  stdin_ctl "$ed_prod" initdata verify --ed25519 --bot-id "$ed_bot" --no-max-age
check "initdata Ed25519 wrong key"        1 '"code":"initdata_bad_signature"' -- \
  stdin_ctl "$ed_prod" initdata verify --ed25519 --bot-id "$ed_bot" --test-env --no-max-age
check "initdata needs a bot token"        2 "no bot token" -- \
  stdin_ctl "$canon" initdata verify --no-max-age
check "initdata takes TRYON_BOT_TOKEN"    0 '"valid":true' -- \
  env TRYON_BOT_TOKEN="$canon_token" bash -c '"$0" initdata verify --no-max-age <<<"$1"' \
  "$CTL" "$canon"
check "initdata --ed25519 needs --bot-id" 2 "missing required option --bot-id" -- \
  stdin_ctl "$ed_prod" initdata verify --ed25519
check "initdata --max-age must be > 0"    2 "positive integer" -- \
  stdin_ctl "$canon" initdata verify --bot-token "$canon_token" --max-age 0
check "initdata max-age flags conflict"   2 "conflicts" -- \
  stdin_ctl "$canon" initdata verify --bot-token "$canon_token" --max-age 5 --no-max-age
check "initdata over 64 KiB is refused"  1 '"code":"initdata_malformed"' -- \
  stdin_ctl "$(head -c 70000 /dev/zero | tr '\0' a)" initdata verify --bot-token "$canon_token"
check "initdata unknown flag"             2 "unknown argument --nope" -- \
  stdin_ctl "$canon" initdata verify --bot-token "$canon_token" --nope
# A refusal names the failed check, never the token, the hash or the data.
out=$(stdin_ctl "${canon/Kibenko/Kibenkp}" initdata verify --bot-token "$canon_token" 2>&1)
rc=$?
canon_hash=${canon##*hash=}
if [ "$rc" -ne 1 ] || ! grep -q initdata_bad_hash <<<"$out" ||
   grep -qF -e "$canon_token" -e "$canon_hash" -e "Kibenkp" <<<"$out"; then
  fail "initdata refusal" "it quotes a secret or the data" "$out"
else
  ok "initdata refusal quotes no secret"
fi

finish
