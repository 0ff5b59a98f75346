#!/usr/bin/env bash
# tryonctl jobs end to end against a scratch database: list (filters), show, cancel a
# queued job, retry a failed one, and the refusals (unknown id, wrong state) and usage
# errors. Jobs are made with psql, as the server would enqueue them.
# usage: test_jobs.sh PATH/TO/tryonctl MIGRATIONS_DIR   (ctest passes both)
set -uo pipefail
CTL=$1
MIG=$2

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
scratch_db tryon_jobs_cli
cd "$work"
unset TRYON_ENV_FILE TRYON_MIGRATIONS_DIR
ctl() { env TRYON_DATABASE_URL="$url" "$CTL" "$@"; }
sql() { psql -X -q -tA "$url" -c "$1"; }

ctl migrate --dir "$MIG" >/dev/null || exit 1
sql "INSERT INTO users (telegram_id, first_name) VALUES (4242, 'Job owner')"
job_queued=$(sql "INSERT INTO jobs (kind, user_id) SELECT 'noop', id FROM users RETURNING id")
job_failed=$(sql "INSERT INTO jobs (kind, state, attempts, error, finished_at)
              VALUES ('sleep', 'failed', 3, '{\"code\":\"x\"}', now()) RETURNING id")
job_running=$(sql "INSERT INTO jobs (kind, state, attempts, lease_owner, lease_expires_at)
               VALUES ('noop', 'running', 1, 'w1', now() + interval '1 minute') RETURNING id")

check "jobs --help"                       0 "jobs list"                   -- "$CTL" jobs --help
check "jobs without a subcommand"         2 "missing subcommand"          -- "$CTL" jobs
check "jobs list unknown state"           2 "unknown state nope"          -- ctl jobs list --state nope
check "jobs list --limit 0"               2 "--limit must be"             -- ctl jobs list --limit 0
check "jobs list"                         0 "3 job\(s\)"                  -- ctl jobs list
check "jobs list --state failed"          0 "\"state\":\"failed\""        -- ctl jobs list --state failed --json
check "jobs list --user"                  0 "$job_queued"                     -- ctl jobs list --user 4242
check "jobs list --user unknown"          1 '"code":"not_found"'         -- ctl jobs list --user 999 --json
check "jobs show"                         0 "\"kind\":\"sleep\""          -- ctl jobs show "$job_failed" --json
check "jobs show unknown"                 1 '"code":"not_found"'         -- ctl jobs show 00000000-0000-4000-8000-000000000000 --json
check "jobs show not a uuid"              1 '"code":"not_found"'         -- ctl jobs show nope --json
check "jobs cancel a running job"         1 "conflict"                    -- ctl jobs cancel "$job_running" --json
check "jobs cancel a queued job"          0 "cancelled"                   -- ctl jobs cancel "$job_queued"
check "jobs cancel it again"              1 "conflict"                    -- ctl jobs cancel "$job_queued" --json
check "jobs retry the cancelled job"      0 "queued again"                -- ctl jobs retry "$job_queued"
check "jobs retry a failed job"           0 "\"state\":\"queued\""        -- ctl jobs retry "$job_failed" --json
check "jobs retry a running job"          1 "conflict"                    -- ctl jobs retry "$job_running" --json
attempts=$(sql "SELECT attempts FROM jobs WHERE id = '$job_failed'")
if [ "$attempts" = "0" ]; then ok "a retried job starts its attempts over"; else
  fail "a retried job starts its attempts over" "attempts $attempts"; fi

finish
