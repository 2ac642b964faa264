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
#        2b. python3 + python3-cryptography inside it (the end-to-end tests' browser and webhook);
#        3. prepare-linux.sh (cargo build + uniffi-bindgen on the host, copies into the package);
#        3b. cargo build of pocketkey-relay, pocketkey-bridge, pocketkey-org and
#           pocketkey-hybrid-browser, python-fido2 copied from the host (EndToEndTests.swift
#           runs them; PK_IOS_E2E_* tell it where they are);
#        4. swift test --scratch-path TARGET/ios-shell/build, linking and rpath-ing the .so.
# Environment: PYTHON names the host interpreter holding tests/python/requirements.txt
# (default python3); PK_NO_INSTALL=1 fails instead of installing; PK_IOS_SKIP_BINDINGS=1 reuses
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

# 2b. Python with `cryptography` for the end-to-end tests' browser and push webhook
# (EndToEndTests.swift runs them as subprocesses inside the chroot).
if [ ! -x "$SWIFT_CHROOT/usr/bin/python3" ] || [ ! -d "$SWIFT_CHROOT/usr/lib/python3/dist-packages/cryptography" ]; then
    [ "${PK_NO_INSTALL:-0}" = 1 ] && die "python3-cryptography is missing in $SWIFT_CHROOT (PK_NO_INSTALL=1)"
    say "installing python3 and python3-cryptography in the Swift chroot"
    "$SWIFT_RUN" -e DEBIAN_FRONTEND=noninteractive "$SHELL_DIR" sh -c '
        pkgs="python3 python3-cryptography"
        apt-get -q -y -o DPkg::Lock::Timeout=600 install $pkgs >/dev/null 2>&1 || {
            apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null &&
            apt-get -q -y -o DPkg::Lock::Timeout=600 install $pkgs >/dev/null
        }
        apt-get clean' >&2 || die "apt-get install python3 python3-cryptography in the chroot failed"
fi

# 3. Library + bindings on the host, copied into the package.
eval "$("$HERE/prepare-linux.sh")"
: "${POCKETKEY_FFI_LIB_DIR:?prepare-linux.sh did not report the library directory}"

# 3b. The end-to-end tests' programs: the relay, the bridge, the organisation server and the
# browser's side of hybrid (host-built, static but for libc, so they run in the chroot), and
# python-fido2 as pinned in tests/python/requirements.txt (Debian's python3-fido2 is 1.x, another API): its pure-Python package is copied from the
# host's installation (scripts/test.sh installs it) to a directory the chroot sees.
# Separate builds, as the other scripts run them: one `cargo build` of them all would unify
# their dependencies' features and compile a second copy of sqlx, redis and the rest.
say "cargo build -p pocketkey-relay -p pocketkey-bridge; cargo build -p pocketkey-org; cargo build -p pocketkey-testkit --bin pocketkey-hybrid-browser"
(cd "$ROOT" && cargo build -q -p pocketkey-relay -p pocketkey-bridge && cargo build -q -p pocketkey-org \
    && cargo build -q -p pocketkey-testkit --bin pocketkey-hybrid-browser) >&2 \
    || die "cargo build of pocketkey-relay, pocketkey-bridge, pocketkey-org or pocketkey-hybrid-browser failed"
HOST_PY=${PYTHON:-python3}   # the interpreter with tests/python/requirements.txt installed
FIDO2_SRC=$("$HOST_PY" -c 'import fido2, os; print(os.path.dirname(fido2.__file__))' 2>/dev/null) \
    || die "python-fido2 is not installed on the host: pip install -r tests/python/requirements.txt"
FIDO2_WANT=$(sed -n 's/^fido2==//p' "$ROOT/tests/python/requirements.txt")
FIDO2_HAVE=$("$HOST_PY" -c 'from importlib.metadata import version; print(version("fido2"))')
[ "$FIDO2_HAVE" = "$FIDO2_WANT" ] \
    || die "the host has python-fido2 $FIDO2_HAVE, tests/python/requirements.txt pins $FIDO2_WANT"
PYLIB=$(dirname "$POCKETKEY_FFI_LIB_DIR")/python
rm -rf "$PYLIB"
mkdir -p "$PYLIB"
cp -R "$FIDO2_SRC" "$PYLIB/fido2"
find "$PYLIB" -name __pycache__ -prune -exec rm -rf {} +
CARGO_BIN_DIR=$(dirname "$(dirname "$POCKETKEY_FFI_LIB_DIR")")/debug
export PK_IOS_E2E_BIN=$CARGO_BIN_DIR PK_IOS_E2E_PYTHONPATH=$PYLIB

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
