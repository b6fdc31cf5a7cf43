#!/usr/bin/env bash
# The container image without a container engine: deploy/image/install.sh lays the build out under
# a directory exactly as the image holds it, and the installed host starts from there with the
# image's config (deploy/image/gameverse.toml: PostgreSQL and Redis, TLS on the port, secrets in
# files), against the test PostgreSQL (a database of its own) and Redis. Then what the image's
# HEALTHCHECK runs, a plugin method over gRPC and TLS, and SIGTERM: the host drains and exits 0.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SOURCE=$(cd "$2" && pwd)
: "${GAMEVERSE_TEST_POSTGRES_URL:?is not set: run the suite with tools/gv test}"
: "${GAMEVERSE_TEST_REDIS_URL:?is not set: run the suite with tools/gv test}"

work=$(mktemp -d)
image="$work/image"
host=
database="gv_install_$$"
cleanup() {
  local status=$?
  [ "$status" -ne 0 ] && [ -f "$work/host.log" ] && { echo "--- host log"; tail -n 50 "$work/host.log"; }
  [ -n "$host" ] && kill "$host" 2>/dev/null && wait "$host" 2>/dev/null
  psql "$GAMEVERSE_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $database" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; exit 1; }

step "install as the image lays it out"
"$SOURCE/deploy/image/install.sh" "$BUILD" "$image"
config="$image/etc/gameverse/config/gameverse.toml"
[ -x "$image/usr/local/bin/gameverse" ] && [ -x "$image/usr/local/bin/gvctl" ] || fail "no host or gvctl in usr/local/bin"
[ -f "$config" ] || fail "no config at etc/gameverse/config/gameverse.toml"
[ -f "$image/usr/local/include/gameverse/abi.h" ] || fail "no SDK headers in usr/local/include"
plugins=$(sed -n 's/^name = "\([a-z0-9-]*\)".*/\1/p' "$config")
for plugin in $plugins; do
  [ -f "$image/usr/local/lib/gameverse/plugins/$plugin.so" ] || fail "the config loads $plugin, not installed"
done

step "secrets and TLS material where the config reads them"
secrets="$image/etc/gameverse/secrets"
tls="$image/etc/gameverse/tls"
psql "$GAMEVERSE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $database" > /dev/null
echo "${GAMEVERSE_TEST_POSTGRES_URL%/*}/$database" > "$secrets/postgresql-url"
echo "$GAMEVERSE_TEST_REDIS_URL" > "$secrets/redis-url"
openssl rand -hex 32 > "$secrets/admin-token"
openssl rand -base64 32 > "$secrets/auth-kek"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=gameverse-test-ca \
  -keyout "$work/ca.key" -out "$tls/ca.pem" 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=gameverse \
  -keyout "$tls/server.key" -out "$work/server.csr" 2> /dev/null
printf 'subjectAltName = DNS:gameverse\n' > "$work/san"
openssl x509 -req -in "$work/server.csr" -CA "$tls/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile "$work/san" -out "$tls/server.pem" 2> /dev/null

step "start the installed host with the image's config"
# The image's paths, under the directory the image was laid out in; ports any free ones.
sed -e "s#\"/etc/gameverse/#\"$image/etc/gameverse/#" -e "s#\"/usr/local/#\"$image/usr/local/#" \
  -e "s#\"/var/lib/gameverse\"#\"$image/var/lib/gameverse\"#" -e 's#listen = "0.0.0.0:8080"#listen = "127.0.0.1:0"#' \
  "$config" > "$work/gameverse.toml"
grep -q "$image/etc/gameverse/secrets/postgresql-url" "$work/gameverse.toml" || fail "the config does not read the database URL from its secret"
"$image/usr/local/bin/gameverse" --config "$work/gameverse.toml" --listen 127.0.0.1:0 --port-file "$work/port" \
  --http-port-file "$work/http-port" > "$work/host.log" 2>&1 &
host=$!
for _ in $(seq 1 1500); do [ -s "$work/port" ] && break; kill -0 "$host" 2>/dev/null || break; sleep 0.02; done
[ -s "$work/port" ] || fail "the installed host did not start"
port=$(cat "$work/port")

step "the image's HEALTHCHECK"
# Its command and environment, as the Dockerfile gives them (the address and CA made local).
healthcheck=$(sed -n 's/^HEALTHCHECK .* CMD \[\(.*\)\]$/\1/p' "$SOURCE/Dockerfile" | tr -d '",')
[ -n "$healthcheck" ] || fail "the Dockerfile has no HEALTHCHECK CMD"
server_name=$(sed -n 's/.*GAMEVERSE_TLS_SERVER_NAME=\([^ ]*\).*/\1/p' "$SOURCE/Dockerfile")
run_in_image() {
  env PATH="$image/usr/local/bin:/usr/bin:/bin" GAMEVERSE_ADDR="127.0.0.1:$port" GAMEVERSE_TLS_CA="$tls/ca.pem" \
    GAMEVERSE_TLS_SERVER_NAME="$server_name" "$@"
}
# shellcheck disable=SC2086  # the command's words
run_in_image $healthcheck | tee "$work/health.out" || fail "the HEALTHCHECK failed against a serving host"
grep -qx "host: SERVING" "$work/health.out" || fail "the HEALTHCHECK did not see SERVING"
run_in_image gvctl health gameverse.auth.v1.Auth | grep -qx "gameverse.auth.v1.Auth: SERVING" || fail "auth is not served"
if run_in_image gvctl health gameverse.nothing.v1.Nothing > /dev/null 2>&1; then
  fail "the health check passes for a service nobody serves"
fi
# Without the CA the TLS port does not answer: the health check fails (exit 3), it does not pass.
if env PATH="$image/usr/local/bin" GAMEVERSE_ADDR="127.0.0.1:$port" gvctl health --timeout-ms 2000 > /dev/null 2>&1; then
  fail "a plaintext health check passed against the TLS port"
fi

step "every plugin of the config serves, and a plugin method answers over gRPC and TLS"
export GAMEVERSE_ADMIN_TOKEN
GAMEVERSE_ADMIN_TOKEN=$(cat "$secrets/admin-token")
run_in_image gvctl list | tee "$work/list.out"
for plugin in $plugins; do
  grep -Eq "^$plugin +serving " "$work/list.out" || fail "$plugin is not serving"
done
# auth's GrantRole, through the gate with the admin token from its secret, answered from PostgreSQL.
output=$(run_in_image gvctl grant-role nobody-here-$$ moderator 2>&1 || true)
echo "$output"
[[ "$output" == *"no account has the username 'nobody-here-$$'"* ]] || fail "auth's GrantRole did not answer"

step "SIGTERM: the host drains and exits 0"
kill -TERM "$host"
status=0
wait "$host" || status=$?
host=
[ "$status" -eq 0 ] || fail "the host exited with $status after SIGTERM"
grep -q "SIGTERM received: draining" "$work/host.log" || fail "the host did not drain"
echo "install test: ok"
