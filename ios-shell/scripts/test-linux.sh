#!/usr/bin/env bash
# Builds and tests ios-shell/PocketKeyKit on Linux: `swift test` (XCTest) inside the cached
# Debian 13 Swift chroot (scripts/toolchains/swift.sh, swift-run.sh), against the host-built
# libpocketkey_ffi.so and the bindings generated from it (prepare-linux.sh).
#
#   ios-shell/scripts/test-linux.sh                    everything
#   ios-shell/scripts/test-linux.sh --filter Scan      extra arguments go to `swift test`
#
# Steps: 1. the chroot (built once, ~2-3 min, cached in /var/cache/pocketkey/swift-trixie);
#        2. libssl-dev inside it (the tests verify ES256 signatures with OpenSSL's libcrypto:
#           CryptoKit does not exist on Linux and swift-crypto cannot be fetched offline);
#        3. prepare-linux.sh (cargo build + uniffi-bindgen on the host, copies into the package);
#        4. swift test --scratch-path TARGET/ios-shell/build, linking and rpath-ing the .so.
# Environment: PK_NO_INSTALL=1 fails instead of installing; PK_IOS_SKIP_BINDINGS=1 reuses
# the generated bindings (see prepare-linux.sh); PK_IOS_TEST_TIMEOUT (seconds, default 1800).
# Log of the last run: TARGET/ios-shell/swift-test.log. Exit status: swift test's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHELL_DIR=$(cd "$HERE/.." && pwd)
ROOT=$(cd "$SHELL_DIR/.." && pwd)
PKG=$SHELL_DIR/PocketKeyKit
SWIFT_RUN=$ROOT/scripts/toolchains/swift-run.sh
T0=$(date +%s)

say() { printf '[ios-shell] %s\n' "$*" >&2; }
die() { printf '[ios-shell] ERROR: %s\n' "$*" >&2; exit 1; }

case "$(uname -s)" in
    Linux) ;;
    *) die "test-linux.sh runs on Linux (a Debian chroot); on a Mac use build-xcframework.sh and Xcode" ;;
esac

# 1. The Swift chroot (a no-op when cached; honours PK_NO_INSTALL).
eval "$("$ROOT/scripts/toolchains/swift.sh")"
: "${SWIFT_CHROOT:?swift.sh did not report SWIFT_CHROOT}"

# 2. OpenSSL headers for the test target's CPocketKeyOpenSSL module.
if [ ! -f "$SWIFT_CHROOT/usr/include/openssl/evp.h" ]; then
    [ "${PK_NO_INSTALL:-0}" = 1 ] && die "libssl-dev is missing in $SWIFT_CHROOT (PK_NO_INSTALL=1)"
    say "installing libssl-dev in the Swift chroot"
    "$SWIFT_RUN" -e DEBIAN_FRONTEND=noninteractive "$SHELL_DIR" sh -c '
        apt-get -q -y -o DPkg::Lock::Timeout=600 install libssl-dev >/dev/null 2>&1 || {
            apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null &&
            apt-get -q -y -o DPkg::Lock::Timeout=600 install libssl-dev >/dev/null
        }
        apt-get clean' >&2 || die "apt-get install libssl-dev in the chroot failed"
fi

# 3. Library + bindings on the host, copied into the package.
eval "$("$HERE/prepare-linux.sh")"
: "${POCKETKEY_FFI_LIB_DIR:?prepare-linux.sh did not report the library directory}"

TARGET_DIR=$(dirname "$POCKETKEY_FFI_LIB_DIR")   # TARGET/ios-shell
case "$TARGET_DIR/" in
    "$ROOT"/*) ;;
    *) die "cargo's target directory ($TARGET_DIR) must lie inside $ROOT: only $ROOT is mounted into the chroot" ;;
esac
SCRATCH=$TARGET_DIR/build
LOG=$TARGET_DIR/swift-test.log

# SwiftPM's incremental build does not always recompile the test target when the generated
# bindings change (new methods shift SecurityKey's vtable: the stale test object then calls
# the wrong method and crashes). Start the scratch directory afresh whenever they changed.
BINDINGS_STAMP=$(cat "$PKG/Sources/PocketKeyCore/PocketKeyCore.swift" \
    "$PKG/Sources/PocketKeyCoreFFI/PocketKeyCoreFFI.h" | sha256sum | cut -d' ' -f1)
if [ -d "$SCRATCH" ] && [ "$(cat "$SCRATCH/.bindings-stamp" 2>/dev/null)" != "$BINDINGS_STAMP" ]; then
    say "bindings changed since the last build: starting $SCRATCH afresh"
    rm -rf "$SCRATCH"
fi
mkdir -p "$SCRATCH"
echo "$BINDINGS_STAMP" > "$SCRATCH/.bindings-stamp"

# 4. swift test in the chroot. The whole repository is mounted (same path inside), so the
# package, the scratch directory and the library keep their host paths.
say "swift test (in the chroot; the first build compiles the bindings, ~1-2 min on 2 cores)"
set +e
"$SWIFT_RUN" -C "$PKG" "$ROOT" timeout --foreground "${PK_IOS_TEST_TIMEOUT:-1800}" \
    swift test --package-path "$PKG" --scratch-path "$SCRATCH" \
    -Xlinker -L"$POCKETKEY_FFI_LIB_DIR" -Xlinker -rpath -Xlinker "$POCKETKEY_FFI_LIB_DIR" \
    "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e

summary=$(grep -E 'Executed [0-9]+ tests?, with' "$LOG" | tail -n1 | sed 's/^ *//' || true)
say "${summary:-no XCTest summary (see $LOG)}; exit $rc; $(( $(date +%s) - T0 ))s"
# A green exit with no XCTest run (a filter matching nothing, tests not built) proves nothing.
executed=$(printf '%s' "$summary" | sed -n 's/.*Executed \([0-9][0-9]*\) test.*/\1/p')
if [ "$rc" -eq 0 ] && [ "${executed:-0}" -eq 0 ]; then
    say "ERROR: swift test passed but XCTest executed no tests"
    exit 1
fi
exit "$rc"
