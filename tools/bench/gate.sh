#!/usr/bin/env bash
# The gate benchmark: what checking an access token costs. The host serves echo and auth
# (worker_threads = 1, pinned to CPU 0; the load client on CPU 1), rounds interleaved A B A B on
# the same port and the same data:
#   A: Echo declared public, called without a token
#   B: Echo overridden to "authenticated" in the config, called with a valid access token
# Prints req/s and p99 per side and B/A. Usage: gate.sh BUILD_DIR (env: ROUNDS=3 DURATION_MS=5000)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
ROUNDS=${ROUNDS:-3}
DURATION_MS=${DURATION_MS:-5000}
WARMUP_MS=${WARMUP_MS:-1000}
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus

write_config() {  # file, extra lines for the echo entry
  cat > "$1" <<TOML
[server]
worker_threads = 1
[host]
log_level = "warn"
watch = false
data_dir = "$work/data"
[[plugin]]
name = "auth"
path = "$BUILD/plugins/auth.so"
[plugin.config]
access_token_ttl_s = 3600
argon2_opslimit = 1
argon2_memlimit_kib = 8192
[[plugin]]
name = "echo"
path = "$BUILD/plugins/echo.so"
$2
TOML
}
write_config "$work/public.toml" ""
write_config "$work/gated.toml" '[plugin.access]
"/gameverse.echo.v1.Echo/Echo" = "authenticated"'

start_host() {  # config → sets pid and port
  rm -f "$work/port"
  "${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$1" --listen "127.0.0.1:${PORT:-0}" --port-file "$work/port" &
  pid=$!
  wait_for_file "$work/port"
  PORT=$(cat "$work/port")
}

start_host "$work/public.toml"
token=$("$BUILD/bin/gv-auth-bench" --target "127.0.0.1:$PORT" --print-token)
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    if [ "$side" = A ]; then start_host "$work/public.toml"; args=(); else start_host "$work/gated.toml"; args=(--token "$token"); fi
    line=$("${client_cpu[@]}" "$BUILD/bin/gv-load" --target "127.0.0.1:$PORT" --payload-bytes 100 \
            --warmup-ms "$WARMUP_MS" --duration-ms "$DURATION_MS" "${args[@]}")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo "$side $line" >> "$work/results"
    echo "round $round: $side $line" >&2
  done
done
awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); p99[$1] = p99[$1] " " field("p99_us"); errors += field("errors") }
END {
  printf "A public, no token:        %10.0f req/s  p99 %6.0f us\n", median(rps["A"]), median(p99["A"])
  printf "B authenticated, token:    %10.0f req/s  p99 %6.0f us\n", median(rps["B"]), median(p99["B"])
  printf "B/A throughput %.3f   errors: %d\n", median(rps["B"]) / median(rps["A"]), errors
  exit errors > 0
}' "$work/results"
