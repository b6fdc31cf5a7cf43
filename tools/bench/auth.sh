#!/usr/bin/env bash
# The login benchmark: the host serves the auth plugin with the documented Argon2id cost (3
# passes, 64 MiB) on SQLite; gv-auth-bench logs in from concurrent clients, and verifies hashes
# of the same cost in process for comparison.
# Usage: auth.sh BUILD_DIR   (env: SECONDS_PER_RUN=10 CLIENTS=4)
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
work=$(mktemp -d)
host=
trap '[ -n "$host" ] && kill "$host" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/host.toml" <<TOML
[host]
log_level = "warn"
watch = false
data_dir = "$work/data"
[blocking]
threads_per_plugin = 2        # the auth plugin hashes on two threads, as the baseline does
[[plugin]]
name = "auth"
path = "$BUILD/plugins/auth.so"
[plugin.config]
argon2_opslimit = 3
argon2_memlimit_kib = 65536
max_failed_logins_per_address = 1000000
TOML
"$BUILD/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" &
host=$!
for _ in $(seq 1 500); do [ -s "$work/port" ] && break; sleep 0.02; done
"$BUILD/bin/gv-auth-bench" --target "127.0.0.1:$(cat "$work/port")" --seconds "${SECONDS_PER_RUN:-10}" \
  --clients "${CLIENTS:-4}" --threads 2 --opslimit 3 --memlimit-kib 65536
