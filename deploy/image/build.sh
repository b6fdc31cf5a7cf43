#!/usr/bin/env bash
# The image's build step (the Dockerfile's build stage runs it; so can anyone on Debian 12, as root):
# the Debian packages CI installs (tools/gv deps), then a Release build of the host, gvctl and the
# plugins, without the tests.
# Usage: deploy/image/build.sh [BUILD_DIR]   (default: build-release)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${1:-$ROOT/build-release}
"$ROOT/tools/gv" deps
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DGAMEVERSE_WERROR=ON
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target gameverse gvctl gameverse_plugins
