#!/usr/bin/env bash
# The layer lint must fail on a crossing: plants violations in a temporary copy of the
# tree and checks that scripts/check-layers names each one by file and line (and that
# the same copy passes before the plants, so the failure is theirs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/scripts"
cp -r "$root/libtryon" "$root/include" "$root/apps" "$tmp/"
mkdir -p "$tmp/tests" && cp -r "$root/tests/support" "$tmp/tests/"
lint=$root/scripts/check-layers

fail() { echo "FAIL: $*"; exit 1; }

"$lint" --root "$tmp" >/dev/null || fail "the unplanted copy does not pass"

# Planted: a foundation module reaching up to the edge; a provider using the database;
# the engine using a domain module; a program including a private header by path; a
# module including another module's private header; a folder missing from the map.
plant() { # file line-text → the line number it got
  printf '%s\n' "$2" >>"$tmp/$1"
  wc -l <"$tmp/$1" | tr -d ' '
}
provider=$(awk '$1 == "module" && $3 == "providers" { print $4; exit }' "$root/libtryon/layers.map")
[ -n "$provider" ] || fail "the map names no provider"
provider_file=$(cd "$tmp" && ls "$provider"/*.c | head -n 1)
l1=$(plant libtryon/db/pool.c '#include <tryon/api.h>')
l2=$(plant "$provider_file" '#include <tryon/db.h>')
l3=$(plant libtryon/jobs/jobs.c '#include <tryon/billing.h>')
l4=$(plant apps/server/main.c '#include "../../libtryon/db/db_internal.h"')
l5=$(plant libtryon/billing/billing.c '#include "files/files_internal.h"')
mkdir -p "$tmp/libtryon/stray" && printf 'int x;\n' >"$tmp/libtryon/stray/stray.c"

set +e
out=$("$lint" --root "$tmp" 2>&1)
rc=$?
set -e
echo "$out"
[ "$rc" -eq 1 ] || fail "expected exit 1, got $rc"
for want in "libtryon/db/pool.c:$l1:" "$provider_file:$l2:" "libtryon/jobs/jobs.c:$l3:" \
  "apps/server/main.c:$l4:" "libtryon/billing/billing.c:$l5:" "libtryon/stray/stray.c:1:"; do
  grep -qF "$want" <<<"$out" || fail "no report for $want"
done
[ "$(grep -c ': #include\|: file' <<<"$out")" -eq 6 ] || fail "expected exactly the 6 plants"
echo "ok: every planted crossing named"
