#!/usr/bin/env bash
# Echo through the HTTP port's JSON gateway and gRPC-Web against the same call over gRPC, in the
# same run, with one load client for all three (h2load: HTTP/2 for gRPC, HTTP/1.1 for the others):
# 100-byte payload, 32 requests outstanding (gRPC: 4 connections × 8 streams; HTTP/1.1: 32
# connections, one request each at a time), the host pinned to CPU 0 and h2load to CPU 1, rounds
# interleaved gRPC, JSON, gRPC-Web. Prints req/s per protocol (median of the rounds) and the ratios
# against gRPC. Targets: JSON ≥ 0.6×, gRPC-Web ≥ 0.8×.
# Usage: gateway.sh BUILD_DIR   (env: ROUNDS=3 DURATION_S=5 WARMUP_S=1 WORKER_THREADS=1)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
WORKER_THREADS=${WORKER_THREADS:-1}
command -v h2load >/dev/null || { echo "h2load is missing (Debian's nghttp2-client; tools/gv bench installs it)" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
pin_cpus

cat > "$work/host.toml" <<TOML
[server]
worker_threads = $WORKER_THREADS
[host]
log_level = "warn"
watch = false
plugin_dir = "$BUILD/plugins"
[http]
listen = "127.0.0.1:0"
gateway = true
max_connections = 256
[[plugin]]
name = "echo"
TOML

# EchoRequest{payload: 100 bytes}: as a gRPC (and gRPC-Web) frame, and in JSON.
payload=$(head -c 100 /dev/zero | tr '\0' 'x')
python3 - "$work" "$payload" <<'PY'
import base64, struct, sys
work, payload = sys.argv[1], sys.argv[2].encode()
message = b"\x0a" + bytes([len(payload)]) + payload
open(f"{work}/frame.bin", "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
open(f"{work}/request.json", "w").write('{"payload":"%s"}' % base64.b64encode(payload).decode())
PY

"${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 \
  --port-file "$work/port" --http-port-file "$work/http-port" &
wait_for_file "$work/port"
wait_for_file "$work/http-port"
grpc_url="http://127.0.0.1:$(cat "$work/port")/gameverse.echo.v1.Echo/Echo"
http_url="http://127.0.0.1:$(cat "$work/http-port")/gameverse.echo.v1.Echo/Echo"

run_round() {  # protocol
  local out
  case "$1" in
    grpc) out=$("${client_cpu[@]}" h2load -c 4 -m 8 -D "$DURATION_S" --warm-up-time "$WARMUP_S" \
                 -d "$work/frame.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$grpc_url") ;;
    json) out=$("${client_cpu[@]}" h2load --h1 -c 32 -m 1 -D "$DURATION_S" --warm-up-time "$WARMUP_S" \
                 -d "$work/request.json" -H 'content-type: application/json' "$http_url") ;;
    grpc-web) out=$("${client_cpu[@]}" h2load --h1 -c 32 -m 1 -D "$DURATION_S" --warm-up-time "$WARMUP_S" \
                 -d "$work/frame.bin" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' "$http_url") ;;
  esac
  local rps ok failed
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
  failed=$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")
  echo "$1 rps=$rps ok=$ok failed=$failed" | tee -a "$work/results" >&2
}

for _ in $(seq 1 "$ROUNDS"); do
  for protocol in grpc json grpc-web; do run_round "$protocol"; done
done
# A gRPC-Web reply is 200 whatever its status: check that the calls succeeded.
curl -s -o "$work/reply.bin" -H 'content-type: application/grpc-web+proto' --data-binary @"$work/frame.bin" "$http_url"
grep -q 'grpc-status:0' "$work/reply.bin" || { echo "gRPC-Web echo did not answer OK" >&2; exit 1; }

awk "$AWK_STATS"'
{ rps[$1] = rps[$1] " " field("rps"); failed += field("failed") }
END {
  printf "%-10s %10s %8s\n", "protocol", "req/s", "/gRPC"
  g = median(rps["grpc"])
  printf "%-10s %10.0f %8.3f\n", "gRPC", g, 1
  printf "%-10s %10.0f %8.3f   (target >= 0.6)\n", "JSON", median(rps["json"]), median(rps["json"]) / g
  printf "%-10s %10.0f %8.3f   (target >= 0.8)\n", "gRPC-Web", median(rps["grpc-web"]), median(rps["grpc-web"]) / g
  printf "failed requests: %d\n", failed
  exit failed > 0
}' "$work/results"
