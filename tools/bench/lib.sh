# Shared by the benchmark drivers (sourced, not run): CPU pinning, waiting for a server's port
# file, and the awk functions that read gv-load's result lines and take medians.

# server_cpu / client_cpu: the server on CPU 0 and the load on CPU 1, when there are two.
pin_cpus() {
  if [ "$(nproc)" -ge 2 ]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
  else
    echo "warning: one CPU only, so server and client share it; ratios are still comparable" >&2
    server_cpu=()
    client_cpu=()
  fi
}

# Waits for a server to write its port file; TRIES × 20 ms (under valgrind a host needs seconds).
wait_for_file() {  # file [tries]
  local tries=${2:-500}
  for _ in $(seq 1 "$tries"); do [ -s "$1" ] && return 0; sleep 0.02; done
  echo "the server did not start (no $1)" >&2
  exit 1
}

# field("rps") reads key=value from a gv-load result line; median(" 1 2 3") of a space-separated list.
AWK_STATS='
function field(name,   i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] } }
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'
