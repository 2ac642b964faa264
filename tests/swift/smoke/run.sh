#!/usr/bin/env bash
# Build libsmoke_ffi.so on the host, then `swift test` this package inside the Swift chroot
# (scripts/toolchains/swift.sh, swift-run.sh), linking the .so by -Xlinker -L and finding it
# at run time through an rpath. Build output: <repo>/target/toolchains/swift-smoke/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OUT=$ROOT/target/toolchains/swift-smoke
LIB=$OUT/lib

"$ROOT/scripts/toolchains/swift.sh" >/dev/null

echo "[swift smoke] cc -shared native/smoke_ffi.c -> $LIB/libsmoke_ffi.so" >&2
mkdir -p "$LIB"
cc -shared -fPIC -O2 -Wall -Werror -pthread -o "$LIB/libsmoke_ffi.so" "$HERE/native/smoke_ffi.c"

echo "[swift smoke] swift test (in the chroot)" >&2
exec "$ROOT/scripts/toolchains/swift-run.sh" "$ROOT" \
    swift test --package-path "$HERE" --scratch-path "$OUT/build" \
    -Xlinker -L"$LIB" -Xlinker -rpath -Xlinker "$LIB" "$@"
