# shellcheck shell=bash
# Shared by scripts/run, scripts/test and scripts/pg: packages and the private
# PostgreSQL cluster under var/pg. Source it; it defines functions and variables only.

TRYON_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian 12 packages the build, the tests and the run need.
TRYON_APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates acl openssl
  clang-format
  libcurl4-openssl-dev libpq-dev libcjson-dev libssl-dev libmagic-dev
  libmicrohttpd-dev libwebsockets-dev libvips-dev libcmocka-dev
  # libvips draws the free-tier watermark and the offline preview label with a font
  fonts-dejavu-core
  # tests/data/files/generate.sh makes the upload corpus with these
  imagemagick libimage-exiftool-perl libvips-tools
  # the CLI tests read JSON vectors and replies with it
  python3
  postgresql
  # the browser tests (tests/browser) drive Debian's Chromium through playwright-core;
  # Node.js and npm are not from Debian (see ensure_node)
  chromium
  # the app's category and tool icons are emoji, which phones and desktops draw with
  # their own emoji font; a bare Debian has none, and the screenshots would show boxes
  fonts-noto-color-emoji
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs whatever is missing; asks apt nothing when all is there (fast second runs).
ensure_packages() {
  local missing=() p
  for p in "${TRYON_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------ Node.js and the web app

# Node.js 20+ and npm come with the machine, not from Debian (Debian 12's nodejs is 18,
# too old for Vite): check them and say what to do when they are missing.
ensure_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "Node.js 20 or later and npm are needed for the web app and the browser tests; install them from nodejs.org or NodeSource (Debian 12's nodejs is too old), then run this again"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "Node.js $(node --version) is too old: the web app needs 20 or later"
}

# npm_ci_if_changed DIR: `npm ci` in DIR when its package-lock.json changed since the
# last install (a checksum kept in node_modules, which npm ci replaces whole).
npm_ci_if_changed() {
  local dir=$1 stamp=$1/node_modules/.tryon-lock-sha256 sum
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    return 0
  fi
  say "installing the packages of ${dir#"$TRYON_ROOT"/} (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $dir"
  printf '%s\n' "$sum" >"$stamp"
}

# webapp_build: builds webapp/ into webapp/dist when anything under webapp/ (but
# node_modules and dist) is newer than the last build; sets WEBAPP_DIST. Returns 1 when
# the branch has no web app yet (no webapp/package.json).
WEBAPP_DIST=$TRYON_ROOT/webapp/dist
webapp_build() {
  local app=$TRYON_ROOT/webapp stamp=$TRYON_ROOT/webapp/dist/.tryon-built
  [ -f "$app/package.json" ] || return 1
  ensure_node
  npm_ci_if_changed "$app"
  if [ -f "$stamp" ] && [ -f "$WEBAPP_DIST/index.html" ] &&
    [ -z "$(find "$app" \( -path "$app/node_modules" -o -path "$app/dist" \) -prune -o \
      -newer "$stamp" -print -quit)" ]; then
    return 0
  fi
  say "building the web app (npm run build) into ${WEBAPP_DIST#"$TRYON_ROOT"/}"
  (cd "$app" && npm run build --silent) || die "the web app does not build (cd webapp && npm run build)"
  # After the build: Vite empties dist/ first. Dot files are not served.
  touch "$stamp"
}

# ------------------------------------------------------------------ PostgreSQL cluster

pg_setup_vars() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bindir" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  PG_BIN=$bindir
  PG_DIR=$TRYON_ROOT/var/pg
  PG_DATA=$PG_DIR/data
  PG_LOG=$PG_DIR/server.log
  PG_PORT=5432
  # A unix socket path must stay under ~107 bytes; a deep checkout gets one in /tmp.
  PG_SOCK=$PG_DIR/run
  if [ $(( ${#PG_SOCK} + 20 )) -gt 100 ]; then
    PG_SOCK=/tmp/tryon-pg-$(printf '%s' "$TRYON_ROOT" | sha256sum | cut -c1-12)
  fi
  # The product and the tests connect as role "tryon" over the socket only.
  TRYON_PG_URL="host=$PG_SOCK port=$PG_PORT dbname=tryon user=tryon"
  TRYON_PG_ADMIN_URL="host=$PG_SOCK port=$PG_PORT dbname=postgres user=tryon"
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The postgres user must be able to reach var/pg: give it search (x) access to each
# parent folder that lacks it, with an ACL where possible, touching nothing else.
pg_grant_path() {
  [ "$(id -u)" -eq 0 ] || return 0
  local d=$PG_DIR
  while [ "$d" != "/" ]; do
    d=$(dirname "$d")
    if ! runuser -u postgres -- test -x "$d"; then
      setfacl -m u:postgres:x "$d" 2>/dev/null || chmod o+x "$d"
    fi
  done
}

pg_running() {
  [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_init() {
  mkdir -p "$PG_DIR" "$PG_SOCK"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_DIR" "$PG_SOCK"
    pg_grant_path
  fi
  chmod 700 "$PG_SOCK"
  [ -f "$PG_DATA/PG_VERSION" ] && return 0
  say "creating the private PostgreSQL cluster in $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  # Sockets only (no TCP port to collide with), and durable enough for a dev cluster.
  cat >>"$PG_DATA/postgresql.conf" <<CONF
# tryon private cluster
listen_addresses = ''
synchronous_commit = off
max_connections = 200
CONF
}

pg_start() {
  pg_setup_vars
  pg_init
  if pg_running; then
    PG_STARTED_HERE=0
  else
    say "starting PostgreSQL (socket $PG_SOCK)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-k $PG_SOCK -p $PG_PORT" start >/dev/null ||
      { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start"; }
    PG_STARTED_HERE=1
  fi
  pg_ensure_role
}

pg_psql() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"
}

# Role "tryon" (may create databases: the tests make scratch ones) and database "tryon".
pg_ensure_role() {
  pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'tryon'" | grep -q 1 ||
    pg_psql -d postgres -c "CREATE ROLE tryon LOGIN CREATEDB"
  pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'tryon'" | grep -q 1 ||
    pg_psql -d postgres -c "CREATE DATABASE tryon OWNER tryon"
}

pg_stop() {
  pg_setup_vars
  pg_running || return 0
  say "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
}

pg_restart() {
  pg_setup_vars
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m fast -w -t 60 \
    -o "-k $PG_SOCK -p $PG_PORT" restart >/dev/null
}
