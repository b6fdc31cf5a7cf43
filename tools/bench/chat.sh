#!/usr/bin/env bash
# The chat fan-out benchmark (docs/benchmarks.md): one room, SUBSCRIBERS Subscribe streams, and
# messages sent at fixed rates; gv-chat-bench reports deliveries/s and delivery latency (p50, p99)
# per rate and checks that every stream got every message once, in order. First one host
# (SQLite, in-process pub/sub), then two hosts sharing PostgreSQL and Redis with the streams split
# between them and the messages sent through the first, when GAMEVERSE_TEST_POSTGRES_URL and
# GAMEVERSE_TEST_REDIS_URL are set (tools/gv bench chat starts both servers).
# Usage: chat.sh BUILD_DIR   (env: SUBSCRIBERS=1000 SECONDS_PER_RUN=5 RATES="50 100 200 400")
set -euo pipefail
BUILD=$(cd "$1" && pwd)  # absolute: the host resolves paths against its config file
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
token="chat-bench-operator-token-0123456"
seed="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
rates=(${RATES:-50 100 200 400})
rate_args=()
for r in "${rates[@]}"; do rate_args+=(--rates "$r"); done

pids=()
start_host() {  # name, shared tables; sets addr
  cat > "$work/$1.toml" <<TOML
[host]
log_level = "warn"
watch = false
data_dir = "$work/data-$1"
$2
[admin]
token = "$token"
[[plugin]]
name = "auth"
path = "$BUILD/plugins/auth.so"
[plugin.config]
argon2_opslimit = 1
argon2_memlimit_kib = 8192
registrations_per_address_per_hour = 1000000
signing_key = "$seed"
generate_keys = false
[[plugin]]
name = "chat"
path = "$BUILD/plugins/chat.so"
[plugin.config]
messages_per_player_per_10s = 1000000
reads_per_player_per_10s = 1000000
max_subscribers_per_player = 100000
max_subscribers_per_address = 100000
TOML
  rm -f "$work/$1.port"
  "$BUILD/bin/gameverse" --config "$work/$1.toml" --listen 127.0.0.1:0 --port-file "$work/$1.port" \
    > /dev/null 2>> "$work/$1.log" &
  pids+=($!)
  wait_for_file "$work/$1.port"
  addr="127.0.0.1:$(cat "$work/$1.port")"
}

client() {  # label, targets...
  local label=$1
  shift
  local args=()
  for t in "$@"; do args+=(--targets "$t"); done
  "$BUILD/bin/gv-chat-bench" "${args[@]}" --label "$label" --subscribers "${SUBSCRIBERS:-1000}" \
    --seconds "${SECONDS_PER_RUN:-5}" "${rate_args[@]}"
}

echo "== chat fan-out, one host (SQLite, in-process pub/sub)"
start_host one ""
client "one host" "$addr"
kill "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
pids=()

if [ -n "${GAMEVERSE_TEST_POSTGRES_URL:-}" ] && [ -n "${GAMEVERSE_TEST_REDIS_URL:-}" ]; then
  shared="[store]
backend = \"postgresql\"
postgresql_url = \"$GAMEVERSE_TEST_POSTGRES_URL\"
[redis]
url = \"$GAMEVERSE_TEST_REDIS_URL\"
[cache]
backend = \"redis\"
[pubsub]
backend = \"redis\""
  echo "== chat fan-out, one host on PostgreSQL and Redis"
  start_host a "$shared"
  a=$addr
  client "one host, PostgreSQL+Redis" "$a"
  echo "== chat fan-out, two hosts sharing PostgreSQL and Redis (streams split, sends through the first)"
  start_host b "$shared"
  client "two hosts" "$a" "$addr"
fi
