#!/usr/bin/env bash
# The README's walk for a modder, end to end and out of the tree: install GameVerse, scaffold a
# plugin with `gvctl new`, build it with find_package(GameVerse) and warnings as errors, run its
# tests (the domain alone, the plugin in the installed host), load it into a running host with
# gvctl, call it, change it, rebuild and reload it.
# Usage: modder_walk.sh BUILD_DIR
set -euo pipefail
BUILD=$1
work=$(mktemp -d)
host=
cleanup() {
  local status=$?
  [ "$status" -ne 0 ] && [ -f "$work/host.log" ] && { echo "--- host log"; cat "$work/host.log"; }
  [ -n "$host" ] && kill "$host" 2>/dev/null && wait "$host" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "--- $*"; }

step "install"
cmake --install "$BUILD" --prefix "$work/prefix" > /dev/null
gvctl="$work/prefix/bin/gvctl"

step "gvctl new my-mod"
"$gvctl" new my-mod --dir "$work"

step "build out of the tree against the installed SDK"
# A host built with sanitizers gets a plugin built with the same ones: ThreadSanitizer sees the
# plugin's atomics (a blocking call's state, shared between threads) only in instrumented code.
sanitize=$(sed -n 's/^GAMEVERSE_SANITIZE:STRING=//p' "$BUILD/CMakeCache.txt")
sanitizer_flags=()
if [ -n "$sanitize" ]; then
  flags="-fsanitize=$sanitize -fno-omit-frame-pointer"
  sanitizer_flags=("-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=$sanitize"
                   "-DCMAKE_MODULE_LINKER_FLAGS=-fsanitize=$sanitize")
fi
cmake -S "$work/my-mod" -B "$work/my-mod/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_COMPILE_WARNING_AS_ERROR=ON "${sanitizer_flags[@]}" > "$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/my-mod/build"
ctest --test-dir "$work/my-mod/build" --output-on-failure

step "start a host with no plugins"
# gvctl loads plugins only from the plugin directory, and acts with the host's [admin] token.
export GAMEVERSE_ADMIN_TOKEN="modder-walk-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '[host]\nwatch = false\ndata_dir = "%s"\nplugin_dir = "%s"\n[admin]\ntoken = "%s"\n' \
  "$work/data" "$work/my-mod/build" "$GAMEVERSE_ADMIN_TOKEN" > "$work/host.toml"
"$work/prefix/bin/gameverse" --config "$work/host.toml" --listen 127.0.0.1:0 --port-file "$work/port" \
  2> "$work/host.log" &
host=$!
for _ in $(seq 1 500); do [ -s "$work/port" ] && break; sleep 0.02; done
[ -s "$work/port" ] || { cat "$work/host.log"; exit 1; }
addr="127.0.0.1:$(cat "$work/port")"

step "gvctl load, then call the new method"
"$gvctl" --addr "$addr" load my-mod --path "$work/my-mod/build/my-mod.so"
# gv-load's EchoRequest{bytes payload = 1} is GreetRequest{string player = 1} on the wire (a
# player name of 8 letters); every call must come back OK, each one counted in the store.
greet() {
  "$BUILD/bin/gv-load" --target "$addr" --method /my_mod.v1.MyMod/Greet --payload-bytes 8 --duration-ms 2000 \
    --warmup-ms 0 --channels 1 --outstanding 1
}
greet

step "edit, rebuild, gvctl reload"
plugin_source="$work/my-mod/api/my_mod_plugin.cpp"
sed -i -e 's/"greeting", "Hello"/"greeting", "Howdy"/' -e 's/"my-mod", "0.1.0"/"my-mod", "0.2.0"/' "$plugin_source"
grep -q '"greeting", "Howdy"' "$plugin_source"  # the edits took: sed says nothing when they do not
grep -q '"my-mod", "0.2.0"' "$plugin_source"
cmake --build "$work/my-mod/build"
"$gvctl" --addr "$addr" reload my-mod | tee "$work/reload.out"
grep -q "reloaded (generation 2)" "$work/reload.out"
"$gvctl" --addr "$addr" status my-mod | tee "$work/status.out"
grep -Eq '^2 +serving +0\.2\.0 ' "$work/status.out"
greet

kill -TERM "$host"
wait "$host"
host=
echo "modder walk: ok"
