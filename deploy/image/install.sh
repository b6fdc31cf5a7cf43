#!/usr/bin/env bash
# The image's install step: lays out a built tree under ROOT exactly as the runtime image holds it
# (the Dockerfile copies ROOT/ to / ; tests/deploy/install_test.sh starts the host from it):
#   ROOT/usr/local/bin/{gameverse,gvctl}
#   ROOT/usr/local/lib/gameverse/plugins/*.so      [host] plugin_dir
#   ROOT/usr/local/include, ROOT/usr/local/lib/cmake/GameVerse   the SDK, for plugins built against the image
#   ROOT/etc/gameverse/config/gameverse.toml       the config the image's command reads
#   ROOT/var/lib/gameverse                         [host] data_dir
# Usage: deploy/image/install.sh BUILD_DIR ROOT
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$1
DEST=$2
[ -f "$BUILD/cmake_install.cmake" ] || { echo "install.sh: $BUILD is not a configured build directory" >&2; exit 1; }
mkdir -p "$DEST"
DESTDIR=$(cd "$DEST" && pwd)
export DESTDIR
cmake --install "$BUILD" --prefix /usr/local > /dev/null
install -d "$DESTDIR/etc/gameverse/config" "$DESTDIR/etc/gameverse/secrets" "$DESTDIR/etc/gameverse/tls" \
  "$DESTDIR/var/lib/gameverse"
install -m 0644 "$HERE/gameverse.toml" "$DESTDIR/etc/gameverse/config/gameverse.toml"
