# bench/lib.sh - what every benchmark script does first; sourced after
# scripts/lib/common.sh.

# bench_build: a release build of the product and the benchmarks in $BUILD.
bench_build() {
  BUILD=$TRYON_ROOT/build
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRYON_TESTS=OFF >/dev/null
  cmake --build "$BUILD" >/dev/null
}

# bench_fresh_db NAME: database NAME in the private cluster, dropped, made again and
# migrated; $URL is its conninfo.
bench_fresh_db() {
  URL="host=$PG_SOCK port=$PG_PORT dbname=$1 user=tryon"
  pg_psql -d postgres -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 OWNER tryon"
  TRYON_ENV_FILE=/dev/null TRYON_DATABASE_URL=$URL "$BUILD/bin/tryonctl" migrate >/dev/null
}
