#!/usr/bin/env bash
# Builds the pocketkey-ffi library and generates its Python, Kotlin and Swift bindings.
#
#   scripts/build-bindings.sh             debug build
#   scripts/build-bindings.sh --release   release build
#
# Output (TARGET = cargo's target directory, usually ./target):
#   TARGET/<profile>/libpocketkey_ffi.{so,dylib,a}   the library (unstripped)
#   TARGET/bindings/python/   pocketkey_ffi.py + a copy of the shared library next to it
#   TARGET/bindings/kotlin/   com/pocketkey/core/pocketkey_ffi.kt (JNA loads libpocketkey_ffi)
#   TARGET/bindings/swift/    PocketKeyCore.swift, PocketKeyCoreFFI.h, PocketKeyCoreFFI.modulemap
# Names come from uniffi.toml. Idempotent: every run regenerates the three directories.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

PROFILE=debug
CARGO_PROFILE=()
for arg in "$@"; do
    case "$arg" in
        --release) PROFILE=release; CARGO_PROFILE=(--release) ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}

case "$(uname -s)" in
    Darwin) LIB_FILE=libpocketkey_ffi.dylib ;;
    *) LIB_FILE=libpocketkey_ffi.so ;;
esac

echo "==> cargo build -p pocketkey-ffi --features bindgen ${CARGO_PROFILE[*]:-} (library + uniffi-bindgen)" >&2
cargo build -p pocketkey-ffi --features bindgen "${CARGO_PROFILE[@]}" >&2

LIB="$TARGET_DIR/$PROFILE/$LIB_FILE"
BINDGEN="$TARGET_DIR/$PROFILE/uniffi-bindgen"
OUT="$TARGET_DIR/bindings"
for f in "$LIB" "$BINDGEN"; do
    [ -f "$f" ] || { echo "missing after the build: $f" >&2; exit 1; }
done

for lang in python kotlin swift; do
    echo "==> uniffi-bindgen generate --language $lang" >&2
    # Write into a fresh directory, then swap it in: a failed run leaves the old output.
    rm -rf "$OUT/$lang.new"
    "$BINDGEN" generate --library "$LIB" --language "$lang" --no-format \
        --config "$ROOT/uniffi.toml" --out-dir "$OUT/$lang.new" >&2
    rm -rf "$OUT/$lang"
    mv "$OUT/$lang.new" "$OUT/$lang"
done
cp "$LIB" "$OUT/python/"

echo "library:  $LIB"
echo "python:   $OUT/python"
echo "kotlin:   $OUT/kotlin"
echo "swift:    $OUT/swift"
