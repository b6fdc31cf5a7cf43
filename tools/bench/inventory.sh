#!/usr/bin/env bash
# The inventory benchmark (docs/benchmarks.md): on SQLite, then on PostgreSQL when
# GAMEVERSE_TEST_POSTGRES_URL is set (tools/gv bench inventory starts a server), one host with
# auth, resource-manager, inventory and inventory-probe; gv-inventory-bench measures grants/s and
# accepts/s against as many raw store batches of the same shape in the same run (the ratio is what
# the domain logic costs; target >= 0.7), then 100 clients trading among 10 players, with the
# ABORTED share and the retries the inventory made (gameverse_inventory_conflicts_total).
# Usage: inventory.sh BUILD_DIR   (env: SECONDS_PER_RUN=5 CLIENTS=4 ROUNDS=3 ACCEPTS=300)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
token="inventory-bench-operator-token-0123"

bench() {  # label, [store] table
  cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
data_dir = "$work/data-$1"
$2
[http]
listen = "127.0.0.1:0"
[admin]
token = "$token"
[[plugin]]
name = "auth"
path = "$BUILD/plugins/auth.so"
[plugin.config]
argon2_opslimit = 1
argon2_memlimit_kib = 8192
registrations_per_address_per_hour = 1000000
[[plugin]]
name = "resource-manager"
path = "$BUILD/plugins/resource-manager.so"
[[plugin]]
name = "inventory"
path = "$BUILD/plugins/inventory.so"
[plugin.config]
max_open_offers = 1000
max_offers_per_minute = 1000000
[[plugin]]
name = "inventory-probe"
path = "$BUILD/plugins/inventory-probe.so"
TOML
  rm -f "$work/port" "$work/http-port"
  "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" \
    --http-port-file "$work/http-port" 2>> "$work/host.log" &
  local pid=$!
  wait_for_file "$work/port"
  "$BUILD/bin/gv-inventory-bench" --target "127.0.0.1:$(cat "$work/port")" --token "$token" --label "$1" \
    --seconds "${SECONDS_PER_RUN:-5}" --clients "${CLIENTS:-4}" --rounds "${ROUNDS:-3}" --accepts "${ACCEPTS:-300}"
  echo "$1 inventory retries and aborts (all phases; the contention phase makes nearly all of them):"
  curl -s "http://127.0.0.1:$(cat "$work/http-port")/metrics" | grep '^gameverse_inventory_conflicts_total' || echo "  none"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "== inventory on SQLite"
bench sqlite ""
if [ -n "${GAMEVERSE_TEST_POSTGRES_URL:-}" ]; then
  echo "== inventory on PostgreSQL"
  bench postgresql "[store]
backend = \"postgresql\"
postgresql_url = \"$GAMEVERSE_TEST_POSTGRES_URL\""
fi
