#!/usr/bin/env bash
# Builds ios-shell/build/PocketKeyCoreFFI.xcframework (the Rust engine as static libraries for
# iPhone and the iOS Simulator, with the uniffi C header and module map) and copies the
# generated Swift bindings into PocketKeyKit/Sources/PocketKeyCore/, so Xcode can build the
# PocketKeyKit package (Package.swift's binary target) and the app.
#
#   ios-shell/scripts/build-xcframework.sh            release libraries
#   ios-shell/scripts/build-xcframework.sh --debug    debug libraries
#
# Needs macOS with Xcode (xcodebuild, lipo, the iOS SDKs) and rustup; it adds the three Rust
# targets below if they are missing. It cannot run on Linux (no Apple SDKs or linker there):
# there it stops at once with a message; Linux builds and tests the package with
# ios-shell/scripts/test-linux.sh instead.
#
# Slices:
#   ios-arm64                     aarch64-apple-ios          (devices)
#   ios-arm64_x86_64-simulator    aarch64-apple-ios-sim + x86_64-apple-ios, joined by lipo
#                                 (Apple-silicon and Intel Macs)
# Each slice's Headers/ holds PocketKeyCoreFFI.h and module.modulemap (uniffi's module map
# renamed, as the uniffi manual says for XCFrameworks; without its `use "_Builtin_*"` lines,
# which Xcode 26's explicit module builds reject: uniffi-rs issue 2917).
set -euo pipefail

if [ "$(uname -s)" != Darwin ]; then
    echo "build-xcframework.sh: this builds the iOS XCFramework and needs macOS with Xcode" >&2
    echo "  (xcodebuild, lipo and the iOS SDKs); this machine runs $(uname -s)." >&2
    echo "  On Linux, build and test the Swift package with ios-shell/scripts/test-linux.sh." >&2
    exit 1
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHELL_DIR=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$SHELL_DIR/.." && pwd)
PKG=$SHELL_DIR/PocketKeyKit
OUT=$SHELL_DIR/build/PocketKeyCoreFFI.xcframework

PROFILE=release
CARGO_PROFILE=(--release)
for arg in "$@"; do
    case "$arg" in
        --debug) PROFILE=debug; CARGO_PROFILE=() ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "build-xcframework.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '[build-xcframework] %s\n' "$*" >&2; }

for tool in xcodebuild lipo cargo rustup; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-xcframework.sh: $tool not found" >&2; exit 1; }
done

# Must match `platforms: [.iOS(.v15)]` in PocketKeyKit/Package.swift; rustc and the cc crate
# (bundled SQLite) both read it.
export IPHONEOS_DEPLOYMENT_TARGET=15.0

DEVICE=aarch64-apple-ios
SIMULATORS=(aarch64-apple-ios-sim x86_64-apple-ios)

installed=$(rustup target list --installed)
for t in "$DEVICE" "${SIMULATORS[@]}"; do
    grep -qx "$t" <<<"$installed" || { say "rustup target add $t"; rustup target add "$t"; }
done

cd "$ROOT"
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}

# Only the static library: `cargo rustc --crate-type` overrides the crate's
# ["cdylib", "staticlib", "lib"] for this build.
for t in "$DEVICE" "${SIMULATORS[@]}"; do
    say "cargo rustc -p pocketkey-ffi --lib --crate-type staticlib --target $t ${CARGO_PROFILE[*]:-}"
    cargo rustc -p pocketkey-ffi --lib --crate-type staticlib --target "$t" ${CARGO_PROFILE[@]+"${CARGO_PROFILE[@]}"}
done

# The Swift bindings, header and module map, generated from the host library (same crate,
# same features: the same interface as the iOS libraries).
"$ROOT/scripts/build-bindings.sh" ${CARGO_PROFILE[@]+"${CARGO_PROFILE[@]}"} >&2
GEN=$TARGET_DIR/bindings/swift

WORK=$TARGET_DIR/ios-shell/xcframework
rm -rf "$WORK"
mkdir -p "$WORK/headers" "$WORK/ios-simulator"
cp "$GEN/PocketKeyCoreFFI.h" "$WORK/headers/"
sed '/use "_Builtin_/d' "$GEN/PocketKeyCoreFFI.modulemap" >"$WORK/headers/module.modulemap"

say "lipo ${SIMULATORS[*]} -> one simulator library"
lipo -create \
    "$TARGET_DIR/aarch64-apple-ios-sim/$PROFILE/libpocketkey_ffi.a" \
    "$TARGET_DIR/x86_64-apple-ios/$PROFILE/libpocketkey_ffi.a" \
    -output "$WORK/ios-simulator/libpocketkey_ffi.a"

say "xcodebuild -create-xcframework -> ${OUT#"$ROOT"/}"
rm -rf "$OUT"   # xcodebuild refuses to overwrite
mkdir -p "$(dirname "$OUT")"
xcodebuild -create-xcframework \
    -library "$TARGET_DIR/$DEVICE/$PROFILE/libpocketkey_ffi.a" -headers "$WORK/headers" \
    -library "$WORK/ios-simulator/libpocketkey_ffi.a" -headers "$WORK/headers" \
    -output "$OUT"

mkdir -p "$PKG/Sources/PocketKeyCore"
cp "$GEN/PocketKeyCore.swift" "$PKG/Sources/PocketKeyCore/PocketKeyCore.swift"

say "done: $OUT"
say "Swift bindings: ${PKG#"$ROOT"/}/Sources/PocketKeyCore/PocketKeyCore.swift"
