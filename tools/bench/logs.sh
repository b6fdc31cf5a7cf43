#!/usr/bin/env bash
# The logging benchmarks (docs/benchmarks.md):
#  1. OTLP ingestion into SQLite: gv-logs-bench sends batches of 100 and of 1,000 records from
#     CLIENTS clients; records acknowledged (committed to the store) a second, against the target
#     of 100,000 a second.
#  2. What shipping every log line costs a request: echo's RequestId writes one info line a call,
#     rounds interleaved A B C A B C, the host on one CPU:
#       A: ship_logs = false
#       B: ship_logs = true, to otlp-sink (reads each export, keeps nothing): the host's cost
#       C: ship_logs = true, to the logging plugin, which stores every line on the same CPU
#     Prints req/s per side, B/A (target: at least 0.95) and C/A.
# Usage: logs.sh BUILD_DIR   (env: SECONDS_PER_RUN=10 CLIENTS=4 ROUNDS=3 DURATION_MS=5000)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus
token="logs-bench-operator-token-0123456789"

logging_config='[plugin.config]
max_records_per_client_per_s = 100000000'
write_config() {  # file, ship_logs, log_level, plugin serving OTLP logs, its [plugin.config]
  cat > "$1" <<TOML
[host]
log_level = "$3"
ship_logs = $2
watch = false
data_dir = "$work/data"
[admin]
token = "$token"
[[plugin]]
name = "${4:-logging}"
path = "$BUILD/plugins/${4:-logging}.so"
$5
[[plugin]]
name = "echo"
path = "$BUILD/plugins/echo.so"
TOML
}

start_host() {  # config → sets pid and PORT
  rm -f "$work/port"
  "${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$1" --listen "127.0.0.1:0" --port-file "$work/port" \
    2>> "$work/host.log" &
  pid=$!
  wait_for_file "$work/port"
  PORT=$(cat "$work/port")
}

echo "== OTLP log ingestion into SQLite (clients: ${CLIENTS:-4}, ${SECONDS_PER_RUN:-10} s each)"
write_config "$work/ingest.toml" false warn logging "$logging_config"
for batch in 100 1000; do
  rm -rf "$work/data"
  start_host "$work/ingest.toml"
  line=$("${client_cpu[@]}" "$BUILD/bin/gv-logs-bench" --target "127.0.0.1:$PORT" --token "$token" \
          --batch "$batch" --clients "${CLIENTS:-4}" --seconds "${SECONDS_PER_RUN:-10}")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$line" | awk "$AWK_STATS"'{ printf "%s  (%.2fx the 100,000 records/s target)\n", $0, field("records_per_s") / 100000 }'
done

echo "== Shipping every log line: echo RequestId, one info line a call"
write_config "$work/A.toml" false info otlp-sink ""
write_config "$work/B.toml" true info otlp-sink ""
write_config "$work/C.toml" true info logging "$logging_config"
for round in $(seq 1 "$ROUNDS"); do
  for side in A B C; do
    rm -rf "$work/data"
    start_host "$work/$side.toml"
    line=$("${client_cpu[@]}" "$BUILD/bin/gv-load" --target "127.0.0.1:$PORT" \
            --method /gameverse.echo.v1.Echo/RequestId --payload-bytes 0 \
            --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo "$side $line" >> "$work/results"
    echo "round $round: $side $line" >&2
  done
done
awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); p99[$1] = p99[$1] " " field("p99_us"); errors += field("errors") }
END {
  printf "A ship_logs = false:               %10.0f req/s  p99 %6.0f us\n", median(rps["A"]), median(p99["A"])
  printf "B ship_logs = true, to otlp-sink:   %10.0f req/s  p99 %6.0f us\n", median(rps["B"]), median(p99["B"])
  printf "C ship_logs = true, to logging:     %10.0f req/s  p99 %6.0f us\n", median(rps["C"]), median(p99["C"])
  printf "B/A throughput %.3f (the cost of shipping)   C/A %.3f (shipping and storing)   errors: %d\n",
         median(rps["B"]) / median(rps["A"]), median(rps["C"]) / median(rps["A"]), errors
  exit errors > 0
}' "$work/results"
grep -h "log shipping dropped" "$work/host.log" | tail -3 || true
