#!/usr/bin/env bash
# The dispatch benchmark: how close the host, routing every call through a plugin, comes to a
# native typed gRPC server doing the same echo.
#   A: native-echo-server (typed async completion-queue service, 1 thread)
#   B: gameverse with the echo plugin, worker_threads = 1 (WORKER_THREADS=default: the key left
#      out, so the host picks its thread count as it would in production)
# Same port, server pinned to CPU 0 and the load client to CPU 1, rounds interleaved A B A B,
# for 100-byte and 10-KiB unary echo. Prints req/s, p50, p99, server CPU per call and B/A.
# Usage: dispatch.sh BUILD_DIR   (env: ROUNDS=3 DURATION_MS=5000 WARMUP_MS=1000 WORKER_THREADS=1)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves plugin_dir against its config file
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
CHANNELS=${CHANNELS:-4}
OUTSTANDING=${OUTSTANDING:-32}
WORKER_THREADS=${WORKER_THREADS:-1}
SIZES=(100 10240)

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus

if [ "$WORKER_THREADS" = default ]; then
  server_table=""
else
  server_table="[server]
worker_threads = $WORKER_THREADS"
fi
cat > "$work/host.toml" <<TOML
$server_table
[host]
log_level = "warn"
plugin_dir = "$BUILD/plugins"
[[plugin]]
name = "echo"
TOML

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# A free port, then the same one for every round.
"$BUILD/bin/native-echo-server" --listen 127.0.0.1:0 --port-file "$work/probe" &
probe=$!
wait_for_file "$work/probe"
PORT=$(cat "$work/probe")
kill "$probe"; wait "$probe" 2>/dev/null || true

run_round() {  # server(A|B) size
  local server=$1 size=$2 pid
  rm -f "$work/port"
  if [ "$server" = A ]; then
    "${server_cpu[@]}" "$BUILD/bin/native-echo-server" --listen "127.0.0.1:$PORT" --threads 1 --port-file "$work/port" &
  else
    "${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host.toml" --listen "127.0.0.1:$PORT" --port-file "$work/port" &
  fi
  pid=$!
  wait_for_file "$work/port"
  local before after line
  before=$(cpu_ticks "$pid")
  line=$("${client_cpu[@]}" "$BUILD/bin/gv-load" --target "127.0.0.1:$PORT" --payload-bytes "$size" \
          --channels "$CHANNELS" --outstanding "$OUTSTANDING" --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
  after=$(cpu_ticks "$pid")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$server $size $line cpu_ticks=$((after - before))" >> "$work/results"
  echo "round: $server ${size}B $line" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  for size in "${SIZES[@]}"; do
    run_round A "$size"
    run_round B "$size"
  done
done

# Medians per server and size; CPU per call is over warm-up plus measured time.
clk_tck=$(getconf CLK_TCK)
awk -v clk="$clk_tck" -v warm="$WARMUP_MS" -v dur="$DURATION_MS" "$AWK_STATS"'
{
  key = $1 " " $2
  rps[key] = rps[key] " " field("rps"); p50[key] = p50[key] " " field("p50_us"); p99[key] = p99[key] " " field("p99_us")
  cpu[key] = cpu[key] " " (field("cpu_ticks") / clk * 1e6) / (field("rps") * (warm + dur) / 1000)
  errors += field("errors"); sizes[$2] = 1
}
END {
  printf "%-8s %-6s %10s %8s %8s %12s\n", "payload", "server", "req/s", "p50 us", "p99 us", "cpu us/call"
  for (s in sizes) {
    for (k = 0; k < 2; k++) {
      srv = k ? "B" : "A"; key = srv " " s
      printf "%-8s %-6s %10.0f %8.0f %8.0f %12.1f\n", s "B", srv, median(rps[key]), median(p50[key]), median(p99[key]), median(cpu[key])
    }
    printf "%-8s B/A throughput %.3f   B/A cpu per call %.3f\n", s "B", median(rps["B " s]) / median(rps["A " s]), median(cpu["B " s]) / median(cpu["A " s])
  }
  printf "errors: %d\n", errors
  exit errors > 0
}' "$work/results"
