#!/usr/bin/env bash
# The cost of per-method call metrics on the gRPC path: the same host and echo plugin with
# [metrics] per_method = true (A) and false (B), 100-byte unary echo, rounds interleaved A B A B,
# server pinned to CPU 0 and the load client to CPU 1. During A rounds /metrics is scraped once a
# second, as Prometheus would. Prints req/s, p50, p99, server CPU per call and A/B.
# With MODE=instructions it counts instead, under callgrind (deterministic, whatever else the
# machine does): the host's instructions per call with per_method on and off, through
# dispatch_instructions.sh (env LOW, HIGH, OUTSTANDING as there).
# Usage: metrics.sh BUILD_DIR   (env: ROUNDS=3 DURATION_MS=5000 WARMUP_MS=1000 WORKER_THREADS=1
#        MODE=time|instructions)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
if [ "${MODE:-time}" = instructions ]; then
  declare -A per_call
  for per_method in true false; do
    per_call[$per_method]=$(PER_METHOD=$per_method "$(dirname "$0")/dispatch_instructions.sh" "$BUILD" \
                              | awk '$1 == "host" {print $2}')
  done
  printf "%-12s %22s\n" per_method "instructions per call" true "${per_call[true]}" false "${per_call[false]}"
  awk -v on="${per_call[true]}" -v off="${per_call[false]}" 'BEGIN { printf "on/off %.4f\n", on / off }'
  exit 0
fi
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
CHANNELS=${CHANNELS:-4}
OUTSTANDING=${OUTSTANDING:-32}
WORKER_THREADS=${WORKER_THREADS:-1}

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus

for variant in A B; do
  per_method=$([ "$variant" = A ] && echo true || echo false)
  cat > "$work/host-$variant.toml" <<TOML
[server]
worker_threads = $WORKER_THREADS
[host]
log_level = "warn"
watch = false
plugin_dir = "$BUILD/plugins"
[http]
listen = "127.0.0.1:0"
[metrics]
per_method = $per_method
[[plugin]]
name = "echo"
TOML
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_round() {  # variant(A|B)
  local variant=$1 pid scraper=""
  rm -f "$work/port" "$work/http-port"
  "${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host-$variant.toml" --listen 127.0.0.1:0 \
    --port-file "$work/port" --http-port-file "$work/http-port" &
  pid=$!
  wait_for_file "$work/port"
  if [ "$variant" = A ]; then
    (while true; do curl -s -o /dev/null "http://127.0.0.1:$(cat "$work/http-port")/metrics" || true; sleep 1; done) &
    scraper=$!
  fi
  local before after line
  before=$(cpu_ticks "$pid")
  line=$("${client_cpu[@]}" "$BUILD/bin/gv-load" --target "127.0.0.1:$(cat "$work/port")" --payload-bytes 100 \
          --channels "$CHANNELS" --outstanding "$OUTSTANDING" --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
  after=$(cpu_ticks "$pid")
  [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$variant $line cpu_ticks=$((after - before))" >> "$work/results"
  echo "round: $variant $line" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  run_round A
  run_round B
done

clk_tck=$(getconf CLK_TCK)
awk -v clk="$clk_tck" -v warm="$WARMUP_MS" -v dur="$DURATION_MS" "$AWK_STATS"'
{
  rps[$1] = rps[$1] " " field("rps"); p50[$1] = p50[$1] " " field("p50_us"); p99[$1] = p99[$1] " " field("p99_us")
  cpu[$1] = cpu[$1] " " (field("cpu_ticks") / clk * 1e6) / (field("rps") * (warm + dur) / 1000)
  errors += field("errors")
}
END {
  printf "%-24s %10s %8s %8s %12s\n", "per_method", "req/s", "p50 us", "p99 us", "cpu us/call"
  printf "%-24s %10.0f %8.0f %8.0f %12.1f\n", "A: true (+1 scrape/s)", median(rps["A"]), median(p50["A"]), median(p99["A"]), median(cpu["A"])
  printf "%-24s %10.0f %8.0f %8.0f %12.1f\n", "B: false", median(rps["B"]), median(p50["B"]), median(p99["B"]), median(cpu["B"])
  printf "A/B throughput %.3f   A/B cpu per call %.3f\n", median(rps["A"]) / median(rps["B"]), median(cpu["A"]) / median(cpu["B"])
  printf "errors: %d\n", errors
  exit errors > 0
}' "$work/results"
