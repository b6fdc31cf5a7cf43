#!/usr/bin/env bash
# The reload benchmark: the host serves echo (from a copy in a temporary plugin directory) under
# steady load from gv-reload-bench, which reloads echo through the admin service every
# INTERVAL_MS. Host pinned to CPU 0, load to CPU 1.
# Usage: reload.sh BUILD_DIR   (env: RELOADS=50 INTERVAL_MS=200 CLIENTS=8)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
host=
trap '[ -n "$host" ] && kill "$host" 2>/dev/null; rm -rf "$work"' EXIT
pin_cpus

cp "$BUILD/plugins/echo.so" "$work/echo.so"
cat > "$work/host.toml" <<TOML
[server]
worker_threads = 1
[host]
log_level = "warn"
watch = false
plugin_dir = "$work"
[admin]
allow_loopback = true     # gv-reload-bench reloads over loopback, without the token
[[plugin]]
name = "echo"
TOML
"${server_cpu[@]}" "$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" &
host=$!
wait_for_file "$work/port"
"${client_cpu[@]}" "$BUILD/bin/gv-reload-bench" --target "127.0.0.1:$(cat "$work/port")" \
  --reloads "${RELOADS:-50}" --interval-ms "${INTERVAL_MS:-200}" --clients "${CLIENTS:-8}"
