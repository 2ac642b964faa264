#!/usr/bin/env bash
# The Android app model (android-shell/app-logic) on the JVM, against the real engine through
# the generated Kotlin bindings, with real processes: pocketkey-relay, pocketkey-bridge, a
# python-fido2 client and the browser side of hybrid, pocketkey-hybrid-browser (tests/kotlin/app-logic/).
#
#   tests/kotlin/run-app-logic.sh            build what is stale, compile, run every case
#   tests/kotlin/run-app-logic.sh push scan  only the cases whose names contain one of the words
#
# Same toolchain and bindings as tests/kotlin/run.sh; needs python3 with fido2
# (tests/python/requirements.txt). Prints one line per case and "kotlin: N passed, M failed";
# exits non-zero on any failure. Output in <target>/kotlin-app-logic/.
#
# Environment: PK_NO_INSTALL=1 (toolchain), PK_KOTLIN_TEST_TIMEOUT (seconds, default 900).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
say() { printf '[kotlin app-logic] %s\n' "$*" >&2; }
T0=$(date +%s)

. "$ROOT/tests/kotlin/lib.sh"
python3 -c 'import fido2' 2>/dev/null \
    || { say "ERROR: python3 cannot import fido2: pip install -r tests/python/requirements.txt"; exit 1; }

OUT=$TARGET_DIR/kotlin-app-logic
mkdir -p "$OUT"

# --- binaries, bindings, then one kotlinc run (skipped when nothing changed) ---------------
say "cargo build -p pocketkey-relay -p pocketkey-bridge"
cargo build -q -p pocketkey-relay -p pocketkey-bridge >&2
say "cargo build -p pocketkey-testkit --bin pocketkey-hybrid-browser"
cargo build -q -p pocketkey-testkit --bin pocketkey-hybrid-browser >&2
fresh_bindings
mapfile -t SOURCES < <( { find "$GEN/com/pocketkey/core" "$ROOT/android-shell/app-logic/src/main/kotlin" \
                            "$HERE/app-logic" -name '*.kt'
                          printf '%s\n' "$HERE/bindings/Harness.kt" "$HERE/bindings/Cbor.kt" "$HERE/bindings/Ctap.kt"
                        } | LC_ALL=C sort)
JAR=$OUT/app-logic-test.jar
compile_jar "$JAR" "${SOURCES[@]}"

# --- run ----------------------------------------------------------------------------------
say "java com.pocketkey.tests.applogic.AppLogicTestKt $*"
set +e
PK_BIN_DIR=$LIB_DIR PK_REPO=$ROOT POCKETKEY_RELAY_STATE=:memory: \
timeout "${PK_KOTLIN_TEST_TIMEOUT:-900}" java \
    -Djna.library.path="$LIB_DIR" \
    -cp "$JAR:$JNA_JAR:$KOTLIN_COROUTINES_JAR:$KOTLIN_STDLIB_JAR" \
    com.pocketkey.tests.applogic.AppLogicTestKt "$@"
rc=$?
set -e
[ $rc -eq 124 ] && echo "kotlin: 0 passed, 1 failed (timed out after ${PK_KOTLIN_TEST_TIMEOUT:-900}s)"
say "done in $(( $(date +%s) - T0 ))s (exit $rc)"
exit $rc
