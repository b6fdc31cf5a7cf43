#!/usr/bin/env bash
# The cost of a hop between hosts: a unary call from one plugin to another on the same host against
# the same call forwarded to another host on loopback ([[remote]], README "Services across hosts").
#   A (local):     gv-load -> host L: platform-probe Relay -> echo Echo in process
#   B (forwarded): gv-load -> host F: platform-probe Relay -> gRPC -> host R: echo Echo
# The client calls Relay with a 100-byte EchoRequest inside; Relay calls Echo and answers with its
# reply. Rounds interleaved A B A B; closed loop. Prints req/s, p50, p99 and B/A.
# Everything shares this machine's CPUs (three hosts and the client): B's hop costs CPU on both
# ends as well as the network stack, all out of the same cores.
# Usage: hop.sh BUILD_DIR   (env: ROUNDS=3 DURATION_MS=5000 WARMUP_MS=1000 CHANNELS=4 OUTSTANDING=32)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
CHANNELS=${CHANNELS:-4}
OUTSTANDING=${OUTSTANDING:-32}

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

host_config() {  # name plugins... ; the [cluster] and [[remote]] lines come on stdin
  local name=$1
  shift
  {
    printf '[host]\nlog_level = "warn"\nwatch = false\nship_logs = false\ndata_dir = "%s"\n' "$work/data-$name"
    printf '[cluster]\nsecret = "%s"\n' "$secret"
    cat
    for p in "$@"; do
      case $p in
        platform-probe) printf '[[plugin]]\nname = "%s"\npath = "%s"\n' "$p" "$BUILD/tests/platform/plugins/$p.so" ;;
        *) printf '[[plugin]]\nname = "%s"\npath = "%s"\n' "$p" "$BUILD/plugins/$p.so" ;;
      esac
    done
  } > "$work/$name.toml"
}

start_host() {  # name
  "$BUILD/bin/gameverse" --config "$work/$1.toml" --listen 127.0.0.1:0 --port-file "$work/$1.port" 2> "$work/$1.log" &
  pids+=($!)
  wait_for_file "$work/$1.port"
}

host_config R echo < /dev/null
start_host R
host_config L platform-probe echo < /dev/null
start_host L
printf '[[remote]]\nservice = "gameverse.echo.v1.Echo"\naddresses = ["127.0.0.1:%s"]\n' "$(cat "$work/R.port")" |
  host_config F platform-probe
start_host F

run_round() {  # A|B
  local target=127.0.0.1:$(cat "$work/L.port") line
  [ "$1" = B ] && target=127.0.0.1:$(cat "$work/F.port")
  line=$("$BUILD/bin/gv-load" --target "$target" --method /gameverse.platformprobe.v1.PlatformProbe/Relay \
          --relay /gameverse.echo.v1.Echo/Echo --payload-bytes 100 --channels "$CHANNELS" \
          --outstanding "$OUTSTANDING" --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
  echo "$1 $line" >> "$work/results"
  echo "round: $1 $line" >&2
}
load_before=$(cut -d" " -f1-3 /proc/loadavg)
for _ in $(seq 1 "$ROUNDS"); do
  run_round A
  run_round B
done

echo "load average before: $load_before"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); p50[$1] = p50[$1] " " field("p50_us"); p99[$1] = p99[$1] " " field("p99_us"); errors += field("errors") }
END {
  printf "%-36s %10s %8s %8s\n", "", "req/s", "p50 us", "p99 us"
  printf "%-36s %10.0f %8.0f %8.0f\n", "A: plugin to plugin, one host", median(rps["A"]), median(p50["A"]), median(p99["A"])
  printf "%-36s %10.0f %8.0f %8.0f\n", "B: forwarded to another host", median(rps["B"]), median(p50["B"]), median(p99["B"])
  printf "B/A throughput %.3f\n", median(rps["B"]) / median(rps["A"])
  printf "errors: %d\n", errors
  exit errors > 0
}' "$work/results"
