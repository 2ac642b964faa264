#!/usr/bin/env bash
# Prepares ios-shell/PocketKeyKit for a Linux build: builds the pocketkey-ffi library and its
# bindings on the host (scripts/build-bindings.sh), then copies into the package
#   Sources/PocketKeyCore/PocketKeyCore.swift       the generated Swift bindings
#   Sources/PocketKeyCoreFFI/PocketKeyCoreFFI.h     the generated C header
#   Sources/PocketKeyCoreFFI/module.modulemap       the generated module map (renamed)
# and a snapshot of the library that matches them into TARGET/ios-shell/lib/libpocketkey_ffi.so
# (a copy, so a concurrent rebuild of target/debug cannot swap the library under the tests:
# uniffi checks at first call that the bindings and the library agree).
#
#   ios-shell/scripts/prepare-linux.sh             debug library
#   ios-shell/scripts/prepare-linux.sh --release   release library
#   PK_IOS_SKIP_BINDINGS=1 ...                     reuse TARGET/bindings/swift as it is
#
# stdout: `export POCKETKEY_FFI_LIB_DIR=<dir holding libpocketkey_ffi.so>` (eval it);
# progress on stderr. The copies in Sources/ are git-ignored (ios-shell/.gitignore), and are
# rewritten only when their content changed, so SwiftPM's incremental build stays incremental.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHELL_DIR=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$SHELL_DIR/.." && pwd)
PKG=$SHELL_DIR/PocketKeyKit

PROFILE=debug
BUILD_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --release) PROFILE=release; BUILD_ARGS=(--release) ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "prepare-linux.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '[prepare-linux] %s\n' "$*" >&2; }

TARGET_DIR=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}

if [ "${PK_IOS_SKIP_BINDINGS:-0}" = 1 ]; then
    say "PK_IOS_SKIP_BINDINGS=1: using the bindings already in $TARGET_DIR/bindings/swift"
else
    "$ROOT/scripts/build-bindings.sh" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"} >&2
fi

GEN=$TARGET_DIR/bindings/swift
LIB=$TARGET_DIR/$PROFILE/libpocketkey_ffi.so
for f in "$GEN/PocketKeyCore.swift" "$GEN/PocketKeyCoreFFI.h" "$GEN/PocketKeyCoreFFI.modulemap" "$LIB"; do
    [ -f "$f" ] || { echo "prepare-linux.sh: missing $f (did scripts/build-bindings.sh run?)" >&2; exit 1; }
done

# install_if_changed SRC DEST: copy through a temporary file, only when the content differs.
install_if_changed() {
    local src=$1 dest=$2
    mkdir -p "$(dirname "$dest")"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        return 0
    fi
    cp "$src" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    say "updated ${dest#"$ROOT"/}"
}

install_if_changed "$GEN/PocketKeyCore.swift" "$PKG/Sources/PocketKeyCore/PocketKeyCore.swift"
install_if_changed "$GEN/PocketKeyCoreFFI.h" "$PKG/Sources/PocketKeyCoreFFI/PocketKeyCoreFFI.h"
# SwiftPM's system-library targets want the module map under the name module.modulemap.
install_if_changed "$GEN/PocketKeyCoreFFI.modulemap" "$PKG/Sources/PocketKeyCoreFFI/module.modulemap"

LIB_DIR=$TARGET_DIR/ios-shell/lib
install_if_changed "$LIB" "$LIB_DIR/libpocketkey_ffi.so"

say "package ready: $PKG (library: $LIB_DIR/libpocketkey_ffi.so)"
printf 'export POCKETKEY_FFI_LIB_DIR=%q\n' "$LIB_DIR"
