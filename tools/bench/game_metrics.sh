#!/usr/bin/env bash
# The game metrics benchmark: the host serves the metrics plugin on SQLite; gv-game-metrics-bench
# records and exports from concurrent clients, backfills an hour over OTLP and times 1-hour-range
# queries.
# Usage: game_metrics.sh BUILD_DIR   (env: SECONDS_PER_RUN=10 CLIENTS=4)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
work=$(mktemp -d)
host=
trap '[ -n "$host" ] && kill "$host" 2>/dev/null; rm -rf "$work"' EXIT
token=$(openssl rand -hex 32)
cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
data_dir = "$work/data"
[admin]
token = "$token"
[[plugin]]
name = "metrics"
path = "$BUILD/plugins/metrics.so"
[plugin.config]
max_measurements_per_player_per_minute = 1000000000
max_points_per_client_per_minute = 1000000000
TOML
"$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" &
host=$!
for _ in $(seq 1 500); do [ -s "$work/port" ] && break; sleep 0.02; done
"$BUILD/bin/gv-game-metrics-bench" --target "127.0.0.1:$(cat "$work/port")" --token "$token" \
  --seconds "${SECONDS_PER_RUN:-10}" --clients "${CLIENTS:-4}"
