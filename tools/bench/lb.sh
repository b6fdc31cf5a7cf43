#!/usr/bin/env bash
# The load balancer benchmark: throughput of two hosts behind nginx (deploy/nginx/gameverse.conf,
# grpc_pass over h2c, kept-open upstream connections) against one host called directly.
#   A: gv-load -> host 1
#   B: gv-load -> nginx -> host 1 + host 2
# Hosts: the echo plugin, worker_threads left to the host (one per usable CPU), the store and cache
# on the test PostgreSQL and Redis as in production (Echo touches neither). nginx: NGINX_WORKERS
# worker processes (default 1).
# Rounds interleaved A B A B; 100-byte unary Echo, closed loop. Prints req/s, p50, p99, B/A.
# Everything shares this machine's CPUs: B measures what the extra hop costs here, not what a
# second machine adds.
# Usage: lb.sh BUILD_DIR   (env: ROUNDS=3 DURATION_MS=5000 WARMUP_MS=1000 CHANNELS=4 OUTSTANDING=32;
#   NGINX_WORKERS=1; GAMEVERSE_TEST_POSTGRES_URL and GAMEVERSE_TEST_REDIS_URL: `tools/gv bench lb` starts both)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
CHANNELS=${CHANNELS:-4}
OUTSTANDING=${OUTSTANDING:-32}
NGINX_WORKERS=${NGINX_WORKERS:-1}
: "${GAMEVERSE_TEST_POSTGRES_URL:?is not set: run through tools/gv bench lb}"
: "${GAMEVERSE_TEST_REDIS_URL:?is not set: run through tools/gv bench lb}"
command -v nginx > /dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is not installed (tools/gv deps)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
chmod 755 "$work"  # nginx's workers (nobody, when run as root) reach their files
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
plugin_dir = "$BUILD/plugins"
[store]
backend = "postgresql"
postgresql_url = "$GAMEVERSE_TEST_POSTGRES_URL"
pool_size = 2
[redis]
url = "$GAMEVERSE_TEST_REDIS_URL"
[cache]
backend = "redis"
[pubsub]
backend = "redis"
[[plugin]]
name = "echo"
TOML

for h in 1 2; do
  "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port$h" 2> "$work/host$h.log" &
  pids+=($!)
  wait_for_file "$work/port$h"
done
PORT1=$(cat "$work/port1")
PORT2=$(cat "$work/port2")

# deploy/nginx/gameverse.conf with loopback addresses, as tests/deploy/lb_test does.
NGINX_PORT=58051
while (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null; do NGINX_PORT=$((NGINX_PORT + 1)); done
mkdir -p "$work/nginx/tmp"
sed -e "s/server host-a:50051/server 127.0.0.1:$PORT1/" -e "s/server host-b:50051/server 127.0.0.1:$PORT2/" \
  -e "s/listen 50051 http2;/listen 127.0.0.1:$NGINX_PORT http2;/" "$ROOT/deploy/nginx/gameverse.conf" > "$work/nginx/gameverse.conf"
n="$work/nginx"
cat > "$n/nginx.conf" <<CONF
daemon off;
worker_processes $NGINX_WORKERS;
pid $n/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  include $n/gameverse.conf;
}
CONF
"$NGINX" -p "$n" -c "$n/nginx.conf" -e "$n/error.log" &
pids+=($!)
for _ in $(seq 1 250); do (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && break; sleep 0.02; done

run_round() {  # A|B
  local target=127.0.0.1:$PORT1 line
  [ "$1" = B ] && target=127.0.0.1:$NGINX_PORT
  line=$("$BUILD/bin/gv-load" --target "$target" --payload-bytes 100 --channels "$CHANNELS" \
          --outstanding "$OUTSTANDING" --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS")
  echo "$1 $line" >> "$work/results"
  echo "round: $1 $line" >&2
}
load_before=$(cut -d" " -f1-3 /proc/loadavg)
for _ in $(seq 1 "$ROUNDS"); do
  run_round A
  run_round B
done

echo "load average before: $load_before; nginx workers: $NGINX_WORKERS"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1); nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')"
awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); p50[$1] = p50[$1] " " field("p50_us"); p99[$1] = p99[$1] " " field("p99_us"); errors += field("errors") }
END {
  printf "%-32s %10s %8s %8s\n", "", "req/s", "p50 us", "p99 us"
  printf "%-32s %10.0f %8.0f %8.0f\n", "A: one host, direct", median(rps["A"]), median(p50["A"]), median(p99["A"])
  printf "%-32s %10.0f %8.0f %8.0f\n", "B: two hosts behind nginx", median(rps["B"]), median(p50["B"]), median(p99["B"])
  printf "B/A throughput %.3f\n", median(rps["B"]) / median(rps["A"])
  printf "errors: %d\n", errors
  exit errors > 0
}' "$work/results"
