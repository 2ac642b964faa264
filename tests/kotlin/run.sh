#!/usr/bin/env bash
# Kotlin foreign test of the pocketkey-ffi bindings on the JVM (tests/kotlin/bindings/).
#
#   tests/kotlin/run.sh                 build what is stale, compile, run every case
#   tests/kotlin/run.sh deny scan       only the cases whose names contain one of the words
#
# 1. toolchain: scripts/toolchains/kotlin.sh (kotlinc from npm kotlin-compiler, Debian JNA;
#    installs what is missing unless PK_NO_INSTALL=1);
# 2. bindings: `cargo build -p pocketkey-ffi --features bindgen`, then scripts/build-bindings.sh
#    only if the generated Kotlin is missing or older than the library or uniffi.toml;
# 3. one kotlinc run over the generated com/pocketkey/core/*.kt and the test sources, skipped
#    when a jar built from exactly the same sources (sha-256 stamp) is already there;
# 4. java -Djna.library.path=<target>/debug ... com.pocketkey.tests.BindingsTestKt.
# Prints one line per case and a closing "kotlin: N passed, M failed"; exits non-zero on any
# failure. Output in <target>/kotlin-tests/.
#
# Environment: PK_NO_INSTALL=1 (toolchain), PK_KOTLIN_TEST_TIMEOUT (seconds, default 900).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
say() { printf '[kotlin test] %s\n' "$*" >&2; }
T0=$(date +%s)

. "$ROOT/tests/kotlin/lib.sh"

OUT=$TARGET_DIR/kotlin-tests
mkdir -p "$OUT"

# --- bindings, then one kotlinc run (skipped when nothing changed) ------------------------
fresh_bindings
mapfile -t SOURCES < <(find "$GEN/com/pocketkey/core" "$HERE/bindings" -name '*.kt' | LC_ALL=C sort)
JAR=$OUT/bindings-test.jar
compile_jar "$JAR" "${SOURCES[@]}"

# --- run ----------------------------------------------------------------------------------
say "java com.pocketkey.tests.BindingsTestKt $*"
set +e
timeout "${PK_KOTLIN_TEST_TIMEOUT:-900}" java \
    -Djna.library.path="$LIB_DIR" \
    -cp "$JAR:$JNA_JAR:$KOTLIN_COROUTINES_JAR:$KOTLIN_STDLIB_JAR" \
    com.pocketkey.tests.BindingsTestKt "$@"
rc=$?
set -e
[ $rc -eq 124 ] && echo "kotlin: 0 passed, 1 failed (timed out after ${PK_KOTLIN_TEST_TIMEOUT:-900}s)"
say "done in $(( $(date +%s) - T0 ))s (exit $rc)"
exit $rc
