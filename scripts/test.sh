#!/usr/bin/env bash
# The one test command: installs what is missing, builds, runs every test suite.
#
#   scripts/test.sh                  everything
#   scripts/test.sh -- -k webauthn   extra arguments after "--" go to pytest
#
# Environment:
#   PK_SKIP_CARGO_TEST=1   skip `cargo test --workspace`
#   PK_SKIP_PYTEST=1       skip the real-client suites
#   PK_SKIP_UHID_VM=1      skip the uhid test in a virtual machine (tests/uhid/run.sh)
#   PK_SKIP_BROWSER_VM=1   skip the browser check in a virtual machine (tests/uhid/browser/run.sh)
#   PK_SKIP_KOTLIN=1       skip the Kotlin/JVM bindings test (tests/kotlin/run.sh)
#   PK_SKIP_SWIFT=1        skip the Swift package test (ios-shell/scripts/test-linux.sh)
#   PK_IOS_SKIP_BINDINGS=1 the Swift test reuses bindings generated earlier (a partial run)
#   PK_NO_INSTALL=1        never call apt-get / pip (fail instead)
#   PYTHON=...             Python interpreter to use (default python3)
#   CI=...                 set by CI: any skip above (or no rustfmt) fails the run at once
#
# Every skipped step has a SKIPPED row in the summary, so a run that passed with a step
# missing says so. Idempotent: apt-get runs only if a tool is missing, pip only if a pinned
# package is.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

PYTEST_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) PYTEST_ARGS+=("$1") ;;
    esac
    shift
done

# The steps a variable can skip, in the order they run: "VARIABLE|step name".
SKIPPABLE=(
    "PK_SKIP_KOTLIN|kotlin bindings test"
    "PK_SKIP_KOTLIN|kotlin android app-logic test"
    "PK_SKIP_SWIFT|swift test ios-shell/PocketKeyKit"
    "PK_IOS_SKIP_BINDINGS|swift test: fresh bindings"
    "PK_SKIP_CARGO_TEST|cargo test --workspace"
    "PK_SKIP_UHID_VM|uhid in a VM (real kernel, libfido2 tools)"
    "PK_SKIP_BROWSER_VM|a browser in a VM (headless Chromium, uhid key)"
    "PK_SKIP_PYTEST|pytest tests/"
)
# skip_reason VARIABLE: the reason to put in the row if VARIABLE skips its step, else nothing.
# PK_SKIP_* skip with any value; PK_IOS_SKIP_BINDINGS only with 1 (as prepare-linux.sh reads it).
skip_reason() {
    local v=${!1:-}
    case "$1" in
        PK_IOS_SKIP_BINDINGS) [ "$v" = 1 ] ;;
        *) [ -n "$v" ] ;;
    esac && printf '%s=%s' "$1" "$v"
}

STEP_NAMES=()
STEP_RESULTS=()
STEP_TIMES=()
FAILED=0
T_ALL=$(date +%s)

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# run_step NAME CMD...: runs a step, records its outcome and duration.
run_step() {
    local name=$1; shift
    local t0 rc
    log "$name"
    t0=$(date +%s)
    "$@"
    rc=$?
    STEP_NAMES+=("$name")
    STEP_TIMES+=("$(( $(date +%s) - t0 ))")
    if [ $rc -eq 0 ]; then
        STEP_RESULTS+=("ok")
    else
        STEP_RESULTS+=("FAILED (exit $rc)")
        FAILED=1
    fi
    return $rc
}

# skip_step NAME REASON: records a step that is not run, as a SKIPPED row.
SKIPPED=0
skip_step() {
    log "$1: SKIPPED ($2)"
    STEP_NAMES+=("$1")
    STEP_RESULTS+=("SKIPPED ($2)")
    STEP_TIMES+=(0)
    SKIPPED=$(( SKIPPED + 1 ))
}

summary() {
    local i total=$(( $(date +%s) - T_ALL ))
    printf '\n\033[1m==> Summary\033[0m\n'
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-34s %-18s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_TIMES[$i]}"
    done
    if [ -n "${PYTEST_SUMMARY:-}" ]; then
        printf '  pytest: %s\n' "$PYTEST_SUMMARY"
    fi
    printf '  total: %ss\n' "$total"
    if [ $FAILED -eq 0 ] && [ $SKIPPED -eq 0 ]; then
        printf '\033[32mALL PASSED\033[0m\n'
    elif [ $FAILED -eq 0 ]; then
        printf '\033[33mPASSED, %s step(s) SKIPPED: not a full run\033[0m\n' "$SKIPPED"
    else
        printf '\033[31mFAILED\033[0m\n'
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "need root to run: $*" >&2; return 1
    fi
}

# ---------------------------------------------------------------------------------------
# 1. System packages (Debian): libfido2 command-line tools, headers, a C compiler, redis-server.

install_system_packages() {
    local missing=()
    command -v fido2-token >/dev/null 2>&1 && command -v fido2-cred >/dev/null 2>&1 \
        && command -v fido2-assert >/dev/null 2>&1 || missing+=(fido2-tools)
    [ -f /usr/include/fido.h ] || missing+=(libfido2-dev)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc)
    # cli/tests/store_access.rs: `--keyring` on a session bus without a Secret Service
    command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus-daemon)
    # bridge/tests/key_at_rest.rs: the bridge's master key in a real Secret Service
    command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
    # tests/python/test_org.py runs the organisation server on PostgreSQL too (initdb + postgres)
    { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; } \
        || missing+=(postgresql)
    # pocketkey-org's console (webauthn-rs links OpenSSL); its browser tests drive headless
    # Chromium through chromedriver (tests/python/test_console.py)
    [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    # relay/tests/nodes.rs and tests/python/test_relay_nodes.py: relay nodes sharing a Redis
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # the uhid test boots a kernel in QEMU (tests/uhid/run.sh)
    if [ -z "${PK_SKIP_UHID_VM:-}" ]; then
        command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
    fi
    if [ -z "${PK_SKIP_BROWSER_VM:-}" ]; then  # tests/uhid/browser builds its root with mmdebstrap
        command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap qemu-system-x86)
        command -v mke2fs >/dev/null 2>&1 || missing+=(e2fsprogs)  # the root image (ext4)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        echo "system packages present"
        return 0
    fi
    if [ -n "${PK_NO_INSTALL:-}" ]; then
        echo "missing system packages: ${missing[*]} (PK_NO_INSTALL is set)" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
}

# ---------------------------------------------------------------------------------------
# 2. Python packages, pinned in tests/python/requirements.txt.

PY=${PYTHON:-python3}
REQS="$ROOT/tests/python/requirements.txt"

py_reqs_satisfied() {
    "$1" - "$REQS" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        have = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        have = None
    if have != want.strip():
        bad.append(f"{name.strip()} (have {have}, want {want.strip()})")
if bad:
    print("python packages to install: " + ", ".join(bad))
    sys.exit(1)
EOF
}

install_python_packages() {
    if ! command -v "$PY" >/dev/null 2>&1; then
        if [ -n "${PK_NO_INSTALL:-}" ]; then echo "no $PY" >&2; return 1; fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv \
            || return 1
    fi
    if py_reqs_satisfied "$PY"; then
        echo "python packages present ($("$PY" --version 2>&1))"
        return 0
    fi
    if [ -n "${PK_NO_INSTALL:-}" ]; then return 1; fi
    local stdlib
    stdlib=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
    if [ -f "$stdlib/EXTERNALLY-MANAGED" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
        # Distribution-managed Python: use a private venv under target/ (kept between runs).
        local venv="$TARGET_DIR/pocketkey-tests/venv"
        if [ ! -x "$venv/bin/python" ]; then
            if ! "$PY" -m venv "$venv" 2>/dev/null; then
                rm -rf "$venv"
                as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
                    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
                    && "$PY" -m venv "$venv" || return 1
            fi
        fi
        PY="$venv/bin/python"
        if py_reqs_satisfied "$PY"; then return 0; fi
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQS" \
        && py_reqs_satisfied "$PY"
}

# ---------------------------------------------------------------------------------------
# 3. Builds.

TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}
ART="$TARGET_DIR/pocketkey-tests"
mkdir -p "$ART"

# A CI run builds once from a clean clone: incremental caches would only cost disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

# A cold run fills ≈ 2 GB of target/ and, on a new machine, ≈ 3 GB of toolchain caches under
# /var/cache/pocketkey (Swift chroot, uhid VM kernel). Say so up front when space is short,
# instead of failing half-way with "No space left on device".
NEED_GB=6
check_disk() {
    local free_kb
    free_kb=$(df -Pk "$TARGET_DIR" 2>/dev/null | awk 'NR==2 {print $4}')
    [ -n "$free_kb" ] || return 0
    echo "free disk at $TARGET_DIR: $(( free_kb / 1024 / 1024 )) GiB"
    if [ "$free_kb" -lt $(( NEED_GB * 1024 * 1024 )) ]; then
        echo "warning: less than $NEED_GB GiB free; a cold build may run out of space" >&2
    fi
}
check_disk

build_pocketkey() {
    cargo build -p pocketkey -p pocketkey-org
}

build_preload() {
    # shellcheck disable=SC2046
    cc -shared -fPIC -O2 -Wall -Wextra -Werror \
        -o "$ART/udp_preload.so" "$ROOT/tests/libfido2/udp_preload.c" \
        $(pkg-config --cflags --libs libfido2) -ldl
}

cargo_tests() {
    cargo test --workspace --no-fail-fast
}

uhid_vm_test() {
    cargo build -p pocketkey -p pocketkey-bridge -p pocketkey-relay \
        && "$ROOT/tests/uhid/run.sh" "$TARGET_DIR/debug"
}

# Headless Chromium in a Debian VM signs up and in with the uhid key (tests/uhid/README.md):
# 5-11 min, plus 2-6 min to build the cached root image the first time.
browser_vm_test() {
    cargo build -p pocketkey -p pocketkey-bridge -p pocketkey-relay \
        && "$ROOT/tests/uhid/browser/run.sh" "$TARGET_DIR/debug"
}

python_tests() {
    local out="$ART/pytest.log" rc a
    local targets=("$ROOT/tests")
    for a in "${PYTEST_ARGS[@]}"; do  # explicit test paths replace the default
        case "$a" in -*) ;; *) if [ -e "${a%%::*}" ]; then targets=(); break; fi ;; esac
    done
    POCKETKEY_BIN="$TARGET_DIR/debug/pocketkey" \
    POCKETKEY_ORG_BIN="$TARGET_DIR/debug/pocketkey-org" \
    POCKETKEY_UDP_PRELOAD="$ART/udp_preload.so" \
    POCKETKEY_BINDINGS_DIR="$TARGET_DIR/bindings/python" \
    PYTHONDONTWRITEBYTECODE=1 \
        "$PY" -m pytest "${targets[@]}" --junitxml="$ART/junit.xml" "${PYTEST_ARGS[@]}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    PYTEST_SUMMARY=$(grep -E '(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$out" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
    return $rc
}

HAVE_RUSTFMT=0
cargo fmt --version >/dev/null 2>&1 && HAVE_RUSTFMT=1  # rustup's default profile ships it

# CI must not pass with a step missing: list every skip and stop before building anything.
if [ -n "${CI:-}" ]; then
    [ $HAVE_RUSTFMT -eq 1 ] || skip_step "cargo fmt --check" "rustfmt not installed"
    for entry in "${SKIPPABLE[@]}"; do
        reason=$(skip_reason "${entry%%|*}") && skip_step "${entry#*|}" "$reason"
    done
    if [ $SKIPPED -gt 0 ]; then
        echo "CI is set and $SKIPPED step(s) would be skipped: a CI run must run every step" >&2
        FAILED=1
        summary
        exit 1
    fi
fi

# run_unless VARIABLE NAME CMD...: the step NAME, or its SKIPPED row when VARIABLE is set.
run_unless() {
    local reason
    if reason=$(skip_reason "$1"); then skip_step "$2" "$reason"; return 0; fi
    shift
    run_step "$@"
}

if [ $HAVE_RUSTFMT -eq 1 ]; then
    run_step "cargo fmt --check" cargo fmt --all -- --check
else
    skip_step "cargo fmt --check" "rustfmt not installed"
fi
run_step "system packages" install_system_packages
run_step "python packages" install_python_packages
if run_step "cargo build -p pocketkey" build_pocketkey; then BUILT=1; else BUILT=0; fi
run_step "build udp_preload.so" build_preload
run_step "scripts/build-bindings.sh" "$ROOT/scripts/build-bindings.sh"
run_unless PK_SKIP_KOTLIN "kotlin bindings test" "$ROOT/tests/kotlin/run.sh"
# The Android app model against a relay, a bridge and python-fido2 (after python packages).
run_unless PK_SKIP_KOTLIN "kotlin android app-logic test" "$ROOT/tests/kotlin/run-app-logic.sh"
if [ -z "${PK_SKIP_SWIFT:-}" ] && reason=$(skip_reason PK_IOS_SKIP_BINDINGS); then
    skip_step "swift test: fresh bindings" "$reason"
fi
# PYTHON: the interpreter holding tests/python/requirements.txt (the end-to-end test copies
# its python-fido2 into the Swift chroot).
run_unless PK_SKIP_SWIFT "swift test ios-shell/PocketKeyKit" \
    env PYTHON="$PY" "$ROOT/ios-shell/scripts/test-linux.sh"
run_unless PK_SKIP_CARGO_TEST "cargo test --workspace" cargo_tests
run_unless PK_SKIP_UHID_VM "uhid in a VM (real kernel, libfido2 tools)" uhid_vm_test
run_unless PK_SKIP_BROWSER_VM "a browser in a VM (headless Chromium, uhid key)" browser_vm_test
if reason=$(skip_reason PK_SKIP_PYTEST); then
    skip_step "pytest tests/" "$reason"
elif [ $BUILT -eq 1 ]; then
    run_step "pytest tests/" python_tests
else
    STEP_NAMES+=("pytest tests/"); STEP_RESULTS+=("not run (no binary)"); STEP_TIMES+=(0); FAILED=1
fi

summary
exit $FAILED
