#!/usr/bin/env bash
# tryonctl user and credits end to end against a scratch database: every subcommand's
# success, usage errors (2) and refusals (1); grant idempotency by --key; a grant
# creating the user; a refused revoke changing nothing; block/unblock; history order;
# `credits audit` after every scenario, and once more after corrupting a wallet.
# usage: test_credits.sh PATH/TO/tryonctl MIGRATIONS_DIR   (ctest passes both)
set -uo pipefail
CTL=$1
MIG=$2

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
scratch_db tryon_credits
# Run from an empty folder so no .env is picked up, with a clean TRYON_ environment.
cd "$work"
unset TRYON_ENV_FILE TRYON_MIGRATIONS_DIR

# same NAME GOT WANT: a value read back (psql, JSON) is what it should be.
same() {
  if [ "$2" == "$3" ]; then
    ok "$1"
  else
    fail "$1" "got '$2', want '$3'"
  fi
}

ctl() { env TRYON_DATABASE_URL="$url" "$CTL" "$@"; }
# q SQL: one value from the scratch database.
q() { psql -X -qtA "$url" -c "$1"; }
# js EXPR: a Python expression over the JSON document on stdin (d), printed as JSON,
# e.g. js 'd["balance"]["pack"]'.
js() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(json.dumps(eval(sys.argv[1])))' "$1"; }
# audit NAME: the ledger and the wallets agree after a scenario.
audit() { check "audit after $1" 0 "^audit ok" -- ctl credits audit; }
ledger_rows() { q "SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.telegram_id = $1"; }

check "migrate"                           0 "^applied"                 -- ctl migrate --dir "$MIG"
audit "an empty database"

# --------------------------------------------------------------------------- usage: 2
long=$(head -c 1001 /dev/zero | tr '\0' r)
check "--help lists credits"              0 "credits"                  -- "$CTL" --help
check "--help lists user"                 0 "user "                    -- "$CTL" --help
check "credits --help"                    0 "audit"                    -- "$CTL" credits --help
check "user --help"                       0 "unblock"                  -- "$CTL" user --help
for sub in grant revoke balance history audit; do
  check "credits $sub --help"             0 "^usage: tryonctl credits $sub" -- "$CTL" credits "$sub" --help
done
for sub in show block unblock; do
  check "user $sub --help"                0 "^usage: tryonctl user $sub" -- "$CTL" user "$sub" --help
done
check "credits without a subcommand"      2 "missing subcommand"       -- ctl credits
check "credits unknown subcommand"        2 "unknown subcommand bogus" -- ctl credits bogus
check "user without a subcommand"         2 "missing subcommand"       -- ctl user
check "user show without USER"            2 "missing USER"             -- ctl user show
check "user show USER not a number"       2 "Telegram id"              -- ctl user show @anna
check "user show USER zero"               2 "Telegram id"              -- ctl user show 0
check "user show USER negative"           2 "Telegram id"              -- ctl user show -7
check "user show two users"               2 "unexpected argument 2"    -- ctl user show 1 2
check "user show unknown flag"            2 "unknown argument --nope"  -- ctl user show 1 --nope
check "user unblock takes no --reason"    2 "unknown argument --reason" -- ctl user unblock 1 --reason x
check "user block --reason without text"  2 "missing value after --reason" -- ctl user block 1 --reason
check "user block reason too long"        2 "longer than"              -- ctl user block 1 --reason "$long"
check "grant without --reason"            2 "missing required option --reason" -- ctl credits grant 1001 5
check "grant without AMOUNT"              2 "missing AMOUNT"           -- ctl credits grant 1001 --reason x
check "grant AMOUNT zero"                 2 "AMOUNT must be"           -- ctl credits grant 1001 0 --reason x
check "grant AMOUNT negative"             2 "AMOUNT must be"           -- ctl credits grant 1001 -5 --reason x
check "grant AMOUNT over a million"       2 "AMOUNT must be"           -- ctl credits grant 1001 1000001 --reason x
check "grant AMOUNT not a number"         2 "AMOUNT must be"           -- ctl credits grant 1001 5x --reason x
check "grant empty --reason"              2 "empty value"              -- ctl credits grant 1001 5 --reason ""
check "grant --reason too long"           2 "longer than"              -- ctl credits grant 1001 5 --reason "$long"
check "grant --key with a space"          2 "--key must be"            -- ctl credits grant 1001 5 --reason x --key "a b"
check "grant --key with an empty rest"    2 "--key must be"            -- ctl credits grant 1001 5 --reason x --key "grant:"
check "grant --key too long"              2 "--key must be"            -- ctl credits grant 1001 5 --reason x --key "$(head -c 201 /dev/zero | tr '\0' k)"
check "grant --key of a system kind"      2 "kind the system writes"   -- ctl credits grant 1001 5 --reason x --key payment:2f6e
check "revoke --key of a system kind"     2 "kind the system writes"   -- ctl credits revoke 1001 5 --reason x --key job:1:charge
check "grant --key without a value"       2 "missing value after --key" -- ctl credits grant 1001 5 --reason x --key
check "grant takes no --limit"            2 "unknown argument --limit" -- ctl credits grant 1001 5 --reason x --limit 3
check "revoke without --reason"           2 "missing required option --reason" -- ctl credits revoke 1001 5
check "revoke USER not a number"          2 "Telegram id"              -- ctl credits revoke abc 5 --reason x
check "balance without USER"              2 "missing USER"             -- ctl credits balance
check "history --limit zero"              2 "--limit must be"          -- ctl credits history 1001 --limit 0
check "history --limit over 1000"         2 "--limit must be"          -- ctl credits history 1001 --limit 1001
check "audit takes no USER"               2 "unexpected argument 1001" -- ctl credits audit 1001
same  "usage errors created no user"      "$(q 'SELECT count(*) FROM users')" 0

# ----------------------------------------------------------------- refusals: 1
check "missing database URL is refused"   1 "TRYON_DATABASE_URL is missing" -- "$CTL" credits balance 1001
check "unreachable database is refused"   1 "cannot connect"           -- \
  env TRYON_DATABASE_URL="host=/nonexistent dbname=x user=x" TRYON_DB_POOL_TIMEOUT_MS=1000 "$CTL" credits audit
check "unreachable database as JSON"      1 '^\{"error":\{"code":"database_unavailable"' -- \
  env TRYON_DATABASE_URL="host=/nonexistent dbname=x user=x" TRYON_DB_POOL_TIMEOUT_MS=1000 "$CTL" user show 1 --json
check "user show unknown"                 1 "no user with telegram id 424242" -- ctl user show 424242
check "user show unknown as JSON"         1 '^\{"error":\{"code":"not_found"' -- ctl user show 424242 --json
check "user block unknown"                1 "no user"                  -- ctl user block 424242 --reason x
check "user unblock unknown"              1 "no user"                  -- ctl user unblock 424242
check "balance unknown"                   1 '"code":"not_found"'       -- ctl credits balance 424242 --json
check "history unknown"                   1 "no user"                  -- ctl credits history 424242
check "revoke unknown"                    1 '"code":"not_found"'       -- ctl credits revoke 424242 1 --reason x --json
same  "refusals created no user"          "$(q 'SELECT count(*) FROM users')" 0
audit "refusals"

# --------------------------------------------- grant to an unknown Telegram id
check "grant creates the user (JSON)"     0 '^\{"key":"grant:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}","user":1001,"amount":5,.*"duplicate":false,"created_user":true\}$' -- \
  ctl credits grant 1001 5 --reason "welcome bonus" --json
same  "the user row exists"               "$(q 'SELECT count(*) FROM users WHERE telegram_id = 1001')" 1
check "grant creates the user (human)"    0 "created user 1002" -- ctl credits grant 1002 3 --reason "beta tester"
check "grant prints its key"              0 "^granted 3 credits to 1003 \(key grant:[0-9a-f-]{36}\)$" -- \
  ctl credits grant 1003 3 --reason "beta tester"
check "grant to a known user"             0 '"created_user":false'     -- ctl credits grant 1003 1 --reason x --json
check "the created user never signed in"  0 '"first_name":"","last_name":"".*"last_login_at":null' -- ctl user show 1002 --json
audit "grants to new users"

# ------------------------------------------------------ grant idempotency by --key
check "grant with --key"                  0 '"key":"grant:ticket-17".*"delta_pack":7.*"duplicate":false' -- \
  ctl credits grant 1001 7 --reason "support ticket 17" --key ticket-17 --json
check "same key again: duplicate"         0 '"key":"grant:ticket-17".*"delta_pack":7.*"duplicate":true' -- \
  ctl credits grant 1001 7 --reason "support ticket 17" --key ticket-17 --json
check "same key, full form: duplicate"    0 "already done: key grant:ticket-17 was used before; nothing changed" -- \
  ctl credits grant 1001 7 --reason "support ticket 17" --key grant:ticket-17
same  "one ledger row for the key"        "$(q "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'grant:ticket-17'")" 1
check "a key with a kind is kept"         0 '"key":"support:t18"'      -- \
  ctl credits grant 1001 2 --reason "support ticket 18" --key support:t18 --json
rows=$(ledger_rows 1001)
check "same key, another amount: refused" 1 '"code":"conflict"'        -- \
  ctl credits grant 1001 8 --reason "support ticket 17" --key ticket-17 --json
check "same key, another user: refused"   1 "another operation"        -- \
  ctl credits grant 1002 7 --reason "support ticket 17" --key ticket-17
same  "refused reuses changed nothing"    "$(ledger_rows 1001)" "$rows"
same  "the note is the reason, the actor tryonctl" \
  "$(q "SELECT note || '|' || actor FROM credit_ledger WHERE idempotency_key = 'grant:ticket-17'")" \
  "support ticket 17|tryonctl"
audit "repeated grants"

# ---------------------------------------------------------------------------- balance
# 1001: this month's free allowance (period) + 5 + 7 + 2 pack credits.
bal=$(ctl credits balance 1001 --json)
same  "balance pack credits"              "$(js 'd["pack"]' <<<"$bal")" 14
same  "balance plan"                      "$(js 'd["plan"]' <<<"$bal")" '"free"'
same  "balance total = period + pack"     "$(js 'd["total"] - d["period"]' <<<"$bal")" 14
check "balance JSON fields"               0 '^\{"user":1001,"total":[0-9]+,"period":[0-9]+,"pack":14,"plan":"free","period_ends_at":"[0-9T:.-]+Z","queued_until":null,"watermark":(true|false)\}$' -- \
  ctl credits balance 1001 --json
check "balance human"                     0 "^user 1001: [0-9]+ credits \(period [0-9]+, pack 14\)" -- ctl credits balance 1001
audit "balances"

# ----------------------------------------------------------------------------- revoke
total=$(ctl credits balance 1001 --json | js 'd["total"]')
rows=$(ledger_rows 1001)
wallet=$(q "SELECT period_credits || '/' || pack_credits FROM wallets w JOIN users u ON u.id = w.user_id WHERE u.telegram_id = 1001")
check "revoke more than the balance"      1 "^\{\"error\":\{\"code\":\"insufficient_credits\",.*\"balance\":$total,\"amount\":1000000\}\}" -- \
  ctl credits revoke 1001 1000000 --reason "too much" --json
check "revoke more than the balance (human)" 1 "has $total credits, cannot revoke $((total + 1))" -- \
  ctl credits revoke 1001 $((total + 1)) --reason "too much"
same  "refused revoke: no ledger row"     "$(ledger_rows 1001)" "$rows"
same  "refused revoke: wallet unchanged"  \
  "$(q "SELECT period_credits || '/' || pack_credits FROM wallets w JOIN users u ON u.id = w.user_id WHERE u.telegram_id = 1001")" "$wallet"
check "revoke with --key"                 0 '"key":"revoke:rv-1".*"delta_period":0,"delta_pack":-4,.*"pack_after":10\},"duplicate":false' -- \
  ctl credits revoke 1001 4 --reason "granted by mistake" --key rv-1 --json
check "same revoke key again: duplicate"  0 '"duplicate":true'         -- \
  ctl credits revoke 1001 4 --reason "granted by mistake" --key rv-1 --json
same  "one ledger row for the revoke key" "$(q "SELECT count(*) FROM credit_ledger WHERE idempotency_key = 'revoke:rv-1'")" 1
check "revoke takes pack, then period"    0 '"delta_period":-1,"delta_pack":-10,.*"pack_after":0' -- \
  ctl credits revoke 1001 11 --reason "abuse" --json
check "revoke prints its key"             0 "^revoked 1 credit from 1002 \(key revoke:[0-9a-f-]{36}\)$" -- \
  ctl credits revoke 1002 1 --reason "correction"
audit "revokes"

# ---------------------------------------------------------------------------- history
hist=$(ctl credits history 1001 --json)
same  "history newest first"              "$(python3 -c 'import json, sys
ids = [e["id"] for e in json.load(sys.stdin)["entries"]]
print(len(ids) > 1 and ids == sorted(ids, reverse=True))' <<<"$hist")" True
same  "history: the last change first"    "$(js 'd["entries"][0]["note"]' <<<"$hist")" '"abuse"'
same  "history: the free allowance last"  "$(js 'd["entries"][-1]["reason"]' <<<"$hist")" '"free_grant"'
same  "history: every row of the user"    "$(js 'len(d["entries"])' <<<"$hist")" "$(ledger_rows 1001)"
same  "history --limit 2"                 "$(ctl credits history 1001 --json --limit 2 | js 'len(d["entries"])')" 2
check "history human"                     0 "grant:ticket-17 / support ticket 17" -- ctl credits history 1001
check "history human header"              0 "^ID +WHEN +REASON"         -- ctl credits history 1001 --limit 1
audit "history"

# ------------------------------------------------------------------ block / unblock
check "block with a reason"               0 "^blocked user 1001 \(since [0-9T:.-]+Z\): chargeback fraud$" -- \
  ctl user block 1001 --reason "chargeback fraud"
check "show: blocked with the reason"     0 '"blocked":true,"blocked_reason":"chargeback fraud","blocked_at":"[0-9T:.-]+Z"' -- \
  ctl user show 1001 --json
check "show human: blocked"               0 "blocked     yes, since .*: chargeback fraud" -- ctl user show 1001
check "block again keeps the reason"      0 '"blocked":true,"reason":"chargeback fraud",.*"changed":false' -- \
  ctl user block 1001 --json
check "a blocked user may get a grant"    0 '"duplicate":false'        -- \
  ctl credits grant 1001 1 --reason "goodwill" --json
check "unblock"                           0 "^unblocked user 1001$"    -- ctl user unblock 1001
check "show: unblocked, no reason"        0 '"blocked":false,"blocked_reason":null,"blocked_at":null' -- \
  ctl user show 1001 --json
check "unblock again changes nothing"     0 "was not blocked"          -- ctl user unblock 1001
check "unblock again (JSON)"              0 '^\{"user":1001,"blocked":false,"changed":false\}$' -- \
  ctl user unblock 1001 --json
same  "the schema holds: no reason left"  "$(q 'SELECT count(*) FROM users WHERE blocked_reason IS NOT NULL OR blocked_at IS NOT NULL')" 0
audit "block and unblock"

# ------------------------------------------------------------ user show, signed in
q "INSERT INTO users (telegram_id, first_name, last_name, username, language_code, is_premium, last_login_at)
   VALUES (2001, 'Анна', 'Иванова', 'anna', 'ru', true, now())" >/dev/null
check "show human: names"                 0 "name        Анна Иванова" -- ctl user show 2001
check "show human: username"              0 "username    @anna"        -- ctl user show 2001
check "show human: credits"               0 "^credits +[0-9]+ \(period [0-9]+, pack 0\)" -- ctl user show 2001
check "show JSON: user and balance"       0 '^\{"user":\{"id":[0-9]+,"telegram_id":2001,"first_name":"Анна",.*"is_premium":true,.*"last_login_at":"[0-9T:.-]+Z"\},"balance":\{"user":2001,.*"plan":"free"' -- \
  ctl user show 2001 --json
audit "user show"

# ------------------------------------------------------------ a corrupted wallet
check "audit JSON, all well"              0 '^\{"ok":true,"offenders":0,"problems":\[\]\}$' -- ctl credits audit --json
q "UPDATE wallets SET pack_credits = pack_credits + 1
   WHERE user_id = (SELECT id FROM users WHERE telegram_id = 1002)" >/dev/null
check "audit finds the corrupted wallet"  1 "^1002 +[0-9]+ +[0-9]+/3 +[0-9]+/2$" -- ctl credits audit
check "audit names only that user"        1 "1 user\(s\) whose wallet differs" -- ctl credits audit
check "audit JSON names it"               1 '^\{"ok":false,"offenders":1,"problems":\[\{"user":1002,"user_id":[0-9]+,"wallet":\{"period":[0-9]+,"pack":3\},"ledger":\{"period":[0-9]+,"pack":2\},"chain_broken":false\}\]\}$' -- \
  ctl credits audit --json

finish
