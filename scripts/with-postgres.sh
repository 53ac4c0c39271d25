#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster (socket only, no TCP port), then
# stop and delete the cluster. DATABASE_URL is set for the command.
#   scripts/with-postgres.sh pytest -q
set -euo pipefail
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
D=$(mktemp -d /tmp/clm-pg.XXXXXX)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$D"
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$D/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$D/data" -l "$D/log" -w \
  -o "-k $D -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
as_pg "$PGBIN/createdb" -h "$D" -U postgres clm
export DATABASE_URL="postgres://postgres@/clm?host=$D"
"$@"
