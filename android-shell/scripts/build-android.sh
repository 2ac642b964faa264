#!/usr/bin/env bash
# Builds what android-shell/pocketkey-core packages: libpocketkey_ffi.so per ABI (NDK) and the
# Kotlin bindings generated with android = true (uniffi-android.toml).
#
#   android-shell/scripts/build-android.sh                  release .so for every ABI + bindings
#   android-shell/scripts/build-android.sh --debug          debug .so instead
#   android-shell/scripts/build-android.sh --abi arm64-v8a  only this ABI (repeatable)
#   android-shell/scripts/build-android.sh --bindings-only  only the Kotlin (no NDK needed)
#
# Needs (checked first, with a message saying what to install):
#   ANDROID_NDK_HOME   the NDK root (r26 or newer; contains toolchains/llvm/prebuilt/<host>)
#   rustup targets     aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
# Uses `cargo ndk` when installed (cargo install cargo-ndk), else cargo with the NDK's clang
# set as CC/AR/linker per target.
#
# Output (both git-ignored):
#   pocketkey-core/src/main/jniLibs/<abi>/libpocketkey_ffi.so   unstripped; AGP strips on packaging
#   pocketkey-core/src/main/uniffi/com/pocketkey/core/pocketkey_ffi.kt
# The bindings are generated from the host build of the same crate (identical uniffi metadata),
# with the workspace's own uniffi-bindgen binary (always the library's uniffi version).
#
# Environment: ANDROID_API (minSdk the .so is linked for, default 28 = pocketkey-core's minSdk).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHELL_DIR=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$SHELL_DIR/.." && pwd)
MODULE=$SHELL_DIR/pocketkey-core
API=${ANDROID_API:-28}

say() { printf '[build-android] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

PROFILE=release
ABIS=()
BINDINGS_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) PROFILE=debug ;;
        --abi) shift; [ $# -gt 0 ] || die "--abi needs a value"; ABIS+=("$1") ;;
        --bindings-only) BINDINGS_ONLY=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done
[ ${#ABIS[@]} -gt 0 ] || ABIS=(arm64-v8a armeabi-v7a x86_64)

# Android ABI -> Rust target, and the NDK clang's target prefix (armv7a, not armv7).
rust_target() {
    case "$1" in
        arm64-v8a) echo aarch64-linux-android ;;
        armeabi-v7a) echo armv7-linux-androideabi ;;
        x86_64) echo x86_64-linux-android ;;
        x86) echo i686-linux-android ;;
        *) die "unknown ABI $1 (arm64-v8a, armeabi-v7a, x86_64, x86)" ;;
    esac
}
clang_target() {
    case "$1" in
        armeabi-v7a) echo armv7a-linux-androideabi ;;
        *) rust_target "$1" ;;
    esac
}

cd "$ROOT"
command -v cargo >/dev/null || die "cargo not found"
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}

# --- prerequisites, all checked before building anything ------------------------------------
if [ $BINDINGS_ONLY = 0 ]; then
    [ -n "${ANDROID_NDK_HOME:-}" ] || die "ANDROID_NDK_HOME is not set. Install the NDK (Android Studio > SDK Manager > SDK Tools > NDK, or sdkmanager 'ndk;27.2.12479018') and export ANDROID_NDK_HOME=<sdk>/ndk/<version>. (--bindings-only generates just the Kotlin.)"
    [ -d "$ANDROID_NDK_HOME/toolchains/llvm/prebuilt" ] \
        || die "ANDROID_NDK_HOME=$ANDROID_NDK_HOME is not an NDK root (no toolchains/llvm/prebuilt in it)"
    case "$(uname -s)" in
        Linux) HOST_TAG=linux-x86_64 ;;
        Darwin) HOST_TAG=darwin-x86_64 ;;   # the NDK's macOS binaries are universal, in this dir
        *) die "unsupported build host $(uname -s)" ;;
    esac
    NDK_BIN=$ANDROID_NDK_HOME/toolchains/llvm/prebuilt/$HOST_TAG/bin
    [ -x "$NDK_BIN/llvm-ar" ] || die "$NDK_BIN/llvm-ar not found (NDK for another host, or r22 and older?)"

    SYSROOT=$(rustc --print sysroot)
    missing=()
    for abi in "${ABIS[@]}"; do
        t=$(rust_target "$abi")
        [ -d "$SYSROOT/lib/rustlib/$t" ] || missing+=("$t")
        [ -x "$NDK_BIN/$(clang_target "$abi")$API-clang" ] \
            || die "the NDK has no $(clang_target "$abi")$API-clang (ANDROID_API=$API too old or too new for it)"
    done
    [ ${#missing[@]} -eq 0 ] || die "Rust standard library missing for: ${missing[*]}. Run: rustup target add ${missing[*]}"
fi

# --- the .so per ABI -------------------------------------------------------------------------
if [ $BINDINGS_ONLY = 0 ]; then
    JNI=$MODULE/src/main/jniLibs
    cargo_profile=()
    [ $PROFILE = release ] && cargo_profile=(--release)
    for abi in "${ABIS[@]}"; do
        t=$(rust_target "$abi")
        T=$(echo "$t" | tr 'a-z-' 'A-Z_')      # CARGO_TARGET_<T>_...
        u=$(echo "$t" | tr '-' '_')            # CC_<u>, AR_<u> (the cc crate's names)
        if command -v cargo-ndk >/dev/null; then
            # cargo-ndk (r23+ NDKs) sets CC/AR/linker itself, and 16 KB pages for 64-bit ABIs.
            say "cargo ndk -t $abi -P $API build -p pocketkey-ffi --lib ${cargo_profile[*]:-}"
            cargo ndk -t "$abi" -P "$API" build -p pocketkey-ffi --lib ${cargo_profile[@]+"${cargo_profile[@]}"}
        else
            say "cargo build --target $t -p pocketkey-ffi --lib ${cargo_profile[*]:-} (NDK clang, API $API)"
            clang=$NDK_BIN/$(clang_target "$abi")$API-clang
            # 64-bit .so must be aligned for 16 KB pages (Android 15+ devices, Play): the default
            # from NDK r28 on; said explicitly for older NDKs. 32-bit ARM keeps 4 KB pages.
            flags=()
            case "$abi" in
                arm64-v8a|x86_64) flags=("CARGO_TARGET_${T}_RUSTFLAGS=-C link-arg=-Wl,-z,max-page-size=16384") ;;
            esac
            env "CC_$u=$clang" "AR_$u=$NDK_BIN/llvm-ar" "CARGO_TARGET_${T}_LINKER=$clang" ${flags[@]+"${flags[@]}"} \
                cargo build --target "$t" -p pocketkey-ffi --lib ${cargo_profile[@]+"${cargo_profile[@]}"}
        fi
        so=$TARGET_DIR/$t/$PROFILE/libpocketkey_ffi.so
        [ -f "$so" ] || die "$so missing after the build"
        mkdir -p "$JNI/$abi"
        cp -f "$so" "$JNI/$abi/libpocketkey_ffi.so"
        say "$JNI/$abi/libpocketkey_ffi.so ($(du -h "$so" | cut -f1))"
    done
fi

# --- the Kotlin bindings (android = true) ----------------------------------------------------
case "$(uname -s)" in
    Darwin) HOST_LIB=libpocketkey_ffi.dylib ;;
    *) HOST_LIB=libpocketkey_ffi.so ;;
esac
say "cargo build -p pocketkey-ffi --features bindgen (host library + uniffi-bindgen, for the bindings)"
cargo build -q -p pocketkey-ffi --features bindgen >&2
LIB=$TARGET_DIR/debug/$HOST_LIB
BINDGEN=$TARGET_DIR/debug/uniffi-bindgen
OUT=$MODULE/src/main/uniffi
rm -rf "$OUT.new"
"$BINDGEN" generate --library "$LIB" --language kotlin --no-format \
    --config "$SHELL_DIR/uniffi-android.toml" --out-dir "$OUT.new" >&2
KT=$OUT.new/com/pocketkey/core/pocketkey_ffi.kt
[ -f "$KT" ] || die "uniffi-bindgen wrote no $KT"
# A generated file without the Android cleaner means the config was not read (uniffi warns
# and goes on when the config has the wrong shape): refuse it.
grep -q 'android.system.SystemCleaner' "$KT" \
    || die "the generated Kotlin is not the android = true flavour; check uniffi-android.toml"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
say "bindings: $OUT/com/pocketkey/core/pocketkey_ffi.kt"
