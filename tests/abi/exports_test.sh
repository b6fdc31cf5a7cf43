#!/usr/bin/env bash
# Every plugin in the directory must export exactly one defined dynamic symbol: its entry.
set -euo pipefail
dir=$1
shopt -s nullglob
plugins=("$dir"/*.so)
[ ${#plugins[@]} -gt 0 ] || { echo "no plugins found in $dir"; exit 1; }
status=0
for plugin in "${plugins[@]}"; do
  symbols=$(nm -D --defined-only "$plugin" | awk '{print $3}')
  if [ "$symbols" != "gv_plugin_entry_v1" ]; then
    echo "FAIL $plugin exports:"; echo "$symbols" | sed 's/^/  /'; status=1
  else
    echo "ok   $plugin"
  fi
done
exit $status
