#!/usr/bin/env bash
# The blocking-handler benchmark: Echo answered on the completion-queue thread (A) against
# BlockingEcho, the same handler declared .blocking and run on the host's pool (B), in one host
# with its default config, rounds interleaved A B A B, server pinned to CPU 0 and the load client
# to CPU 1. Prints req/s, p50, p99 per method and B/A (target: throughput >= 0.9).
# Usage: blocking.sh BUILD_DIR   (env: ROUNDS=5 DURATION_MS=5000 WARMUP_MS=1000)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
ROUNDS=${ROUNDS:-5}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
CHANNELS=${CHANNELS:-4}
OUTSTANDING=${OUTSTANDING:-32}

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus

cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
plugin_dir = "$BUILD/plugins"
data_dir = "$work/data"
${BLOCKING_CONFIG:-}
[[plugin]]
name = "echo"
TOML

"${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" &
wait_for_file "$work/port"
target="127.0.0.1:$(cat "$work/port")"

for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    method=/gameverse.echo.v1.Echo/Echo
    [ "$side" = B ] && method=/gameverse.echo.v1.Echo/BlockingEcho
    line=$("${client_cpu[@]}" "$BUILD/bin/gv-load" --target "$target" --method "$method" --payload-bytes 100 \
            --channels "$CHANNELS" --outstanding "$OUTSTANDING" --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
    echo "$side $line" >> "$work/results"
    echo "round $round: $side $method $line" >&2
  done
done

awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); p50[$1] = p50[$1] " " field("p50_us"); p99[$1] = p99[$1] " " field("p99_us"); errors += field("errors") }
END {
  printf "%-14s %10s %8s %8s\n", "method", "req/s", "p50 us", "p99 us"
  printf "%-14s %10.0f %8.0f %8.0f\n", "Echo (A)", median(rps["A"]), median(p50["A"]), median(p99["A"])
  printf "%-14s %10.0f %8.0f %8.0f\n", "BlockingEcho (B)", median(rps["B"]), median(p50["B"]), median(p99["B"])
  printf "B/A throughput %.3f (medians of interleaved rounds)\n", median(rps["B"]) / median(rps["A"])
  printf "errors: %d\n", errors
  exit errors > 0
}' "$work/results"
