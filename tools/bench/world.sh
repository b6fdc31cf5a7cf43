#!/usr/bin/env bash
# The world-state benchmark (docs/benchmarks.md): one host with the world-state plugin, one room of
# 2,000 entities with a tenth moving every tick, 200 Play clients acknowledging every frame, at
# 20 Hz and at 60 Hz. gv-world-bench reports bytes per client per second, moving entities in view
# per frame and the host's CPU per tick (utime + stime from /proc/<pid>/stat over the measured
# window: everything the host does, gRPC included). The host runs on CPU 0, the clients on CPU 1.
# Usage: world.sh BUILD_DIR   (env: SECONDS_PER_RUN=10 CLIENTS=200 ENTITIES=2000 RATES="20 60")
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
. "$(dirname "$0")/lib.sh"
pin_cpus
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

bench() {  # tick_hz
  cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
data_dir = "$work/data-$1"
[http]
listen = "127.0.0.1:0"
[[plugin]]
name = "world-state"
path = "$BUILD/plugins/world-state.so"
[plugin.config]
tick_hz = $1
aoi_radius_m = 50
aoi_cell_m = 25
max_entities_per_client = 2000
max_inputs_per_client_per_tick = 1000
max_queued_inputs_per_room = 10000
max_clients_per_room = 256
send_budget_bytes_per_s = 16384
[plugin.access]
"/gameverse.world.v1.World/Play" = "public"
TOML
  rm -f "$work/port" "$work/http-port"
  "${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 \
    --port-file "$work/port" --http-port-file "$work/http-port" 2>> "$work/host.log" &
  local pid=$!
  wait_for_file "$work/port"
  "${client_cpu[@]}" "$BUILD/bin/gv-world-bench" --target "127.0.0.1:$(cat "$work/port")" --host-pid "$pid" \
    --hz "$1" --clients "${CLIENTS:-200}" --entities "${ENTITIES:-2000}" --seconds "${SECONDS_PER_RUN:-10}"
  # The room's own share: inputs, simulation and every client's frame, without gRPC (whole run).
  curl -s "http://127.0.0.1:$(cat "$work/http-port")/metrics" | awk '
    /^gameverse_world_tick_cpu_seconds_sum/ { sum = $2 } /^gameverse_world_tick_cpu_seconds_count/ { n = $2 }
    END { if (n > 0) printf "  room tick alone (whole run, CPU): %.2f ms a tick over %d ticks\n", sum * 1000 / n, n }'
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for hz in ${RATES:-20 60}; do
  echo "== world-state at $hz Hz"
  bench "$hz"
done
