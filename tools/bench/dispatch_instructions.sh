#!/usr/bin/env bash
# The dispatch benchmark in instructions instead of time: how many instructions the host spends
# per unary 100-byte echo call, against a native typed gRPC server doing the same work.
#   native: native-echo-server, 1 completion-queue thread
#   host:   gameverse with the echo plugin, worker_threads = 1, watch off
# Each server runs under `valgrind --tool=callgrind` (deterministic: the same binaries and calls
# give the same count whatever else the machine does) or, with TOOL=perf, `perf stat -e
# instructions:u` (faster, needs a PMU). gv-load makes exactly LOW and then HIGH calls on one
# connection, OUTSTANDING in flight, and the server is stopped with SIGINT; per call =
# (total(HIGH) - total(LOW)) / (HIGH - LOW), so start-up and shut-down cancel out.
# Usage: dispatch_instructions.sh BUILD_DIR   (env: LOW=2000 HIGH=8000 OUTSTANDING=8 PAYLOAD=100
#        NATIVE_SLOTS=64 TOOL=callgrind|perf KEEP=DIR to keep the callgrind files for callgrind_annotate
#        PER_METHOD=true|false: the host's [metrics] per_method, for tools/bench/metrics.sh;
#        SERVERS="native host" to measure one only; for tools/bench/logs.sh: LOG_LEVEL=warn,
#        SHIP_LOGS=false, METHOD=/gameverse.echo.v1.Echo/Echo, HOST_TOML=tables added to the config)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves plugin_dir against its config file
LOW=${LOW:-2000}
HIGH=${HIGH:-8000}
OUTSTANDING=${OUTSTANDING:-8}
PAYLOAD=${PAYLOAD:-100}
TOOL=${TOOL:-callgrind}
NATIVE_SLOTS=${NATIVE_SLOTS:-64}

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
[ -z "${KEEP:-}" ] || mkdir -p "$KEEP"

case "$TOOL" in
  callgrind) command -v valgrind > /dev/null || { echo "valgrind is not installed" >&2; exit 1; } ;;
  perf)
    if perf stat -x, -e instructions:u true 2>&1 | grep -q "not supported"; then
      echo "perf cannot count instructions on this machine (no PMU); use TOOL=callgrind" >&2
      exit 1
    fi
    ;;
  *) echo "TOOL must be callgrind or perf, not '$TOOL'" >&2; exit 1 ;;
esac

mkdir -p "$work/data"
cat > "$work/host.toml" <<TOML
[server]
worker_threads = 1
[host]
log_level = "${LOG_LEVEL:-warn}"
ship_logs = ${SHIP_LOGS:-false}
watch = false
plugin_dir = "$BUILD/plugins"
data_dir = "$work/data"
[metrics]
per_method = ${PER_METHOD:-true}
[[plugin]]
name = "echo"
${HOST_TOML:-}
TOML

. "$(dirname "$0")/lib.sh"

fail() {  # server-pid message
  kill "$1" 2>/dev/null || true
  echo "$2" >&2
  exit 1
}

# Sets `total` to the instructions the server executed from start to exit while serving `calls` calls.
count() {  # server(native|host) calls
  local server=$1 calls=$2 out="$work/$1-$2" pid perf_pid=
  local args=()
  if [ "$server" = native ]; then
    args=("$BUILD/bin/native-echo-server" --listen 127.0.0.1:0 --threads 1 --slots "$NATIVE_SLOTS" --port-file "$work/port")
  else
    args=("$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port")
  fi
  rm -f "$work/port"
  if [ "$TOOL" = callgrind ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out.callgrind" "${args[@]}" > "$out.log" 2>&1 &
    pid=$!
    wait_for_file "$work/port" 3000  # under valgrind the host needs seconds
  else
    perf stat -x, -e instructions:u -o "$out.perf" -- "${args[@]}" > "$out.log" 2>&1 &
    perf_pid=$!
    wait_for_file "$work/port" 3000  # under valgrind the host needs seconds
    pid=$(pgrep -P "$perf_pid")
  fi
  "$BUILD/bin/gv-load" --target "127.0.0.1:$(cat "$work/port")" --payload-bytes "$PAYLOAD" \
    --method "${METHOD:-/gameverse.echo.v1.Echo/Echo}" \
    --channels 1 --outstanding "$OUTSTANDING" --calls "$calls" > "$out.load" 2>&1 \
    || { cat "$out.load" "$out.log" >&2; fail "$pid" "$server: the load failed"; }
  kill -INT "$pid"
  wait "${perf_pid:-$pid}" || { cat "$out.log" >&2; fail "$pid" "$server did not exit cleanly"; }
  if [ "$TOOL" = callgrind ]; then
    [ -z "${KEEP:-}" ] || cp "$out.callgrind" "$KEEP/callgrind.out.$server-$calls"
    total=$(awk '/^summary:/ {print $2}' "$out.callgrind")
  else
    total=$(awk -F, '$3 ~ /^instructions/ {print $1}' "$out.perf")
  fi
}

declare -A per_call
total=0
for server in ${SERVERS:-native host}; do
  count "$server" "$LOW"
  low=$total
  count "$server" "$HIGH"
  high=$total
  per_call[$server]=$(( (high - low) / (HIGH - LOW) ))
  echo "$server: $low instructions at $LOW calls, $high at $HIGH" >&2
done
printf "%-8s %22s\n" server "instructions per call"
for server in ${SERVERS:-native host}; do printf "%-8s %22d\n" "$server" "${per_call[$server]}"; done
[ -z "${per_call[native]:-}" ] || [ -z "${per_call[host]:-}" ] ||
  awk -v n="${per_call[native]}" -v h="${per_call[host]}" 'BEGIN { printf "host/native %.3f\n", h / n }'
