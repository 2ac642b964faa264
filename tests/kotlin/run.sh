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

eval "$("$ROOT/scripts/toolchains/kotlin.sh")"

TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}
LIB_DIR=$TARGET_DIR/debug
LIB=$LIB_DIR/libpocketkey_ffi.so
GEN=$TARGET_DIR/bindings/kotlin
GEN_KT=$GEN/com/pocketkey/core/pocketkey_ffi.kt
OUT=$TARGET_DIR/kotlin-tests
mkdir -p "$OUT"

# --- bindings -----------------------------------------------------------------------------
say "cargo build -p pocketkey-ffi --features bindgen"
cargo build -q -p pocketkey-ffi --features bindgen >&2
if [ ! -f "$GEN_KT" ] || [ "$LIB" -nt "$GEN_KT" ] || [ "$ROOT/uniffi.toml" -nt "$GEN_KT" ]; then
    say "generated Kotlin missing or stale: scripts/build-bindings.sh"
    "$ROOT/scripts/build-bindings.sh" >/dev/null
fi
[ -f "$LIB" ] || { say "ERROR: $LIB missing"; exit 1; }
[ -f "$GEN_KT" ] || { say "ERROR: $GEN_KT missing after build-bindings.sh"; exit 1; }

# --- compile (one kotlinc run, skipped when nothing changed) ------------------------------
mapfile -t SOURCES < <(find "$GEN/com/pocketkey/core" "$HERE/bindings" -name '*.kt' | LC_ALL=C sort)
JAR=$OUT/bindings-test.jar
STAMP=$( { "$KOTLINC" -version 2>&1 | head -n1; printf '%s\n' "$JNA_JAR" "$KOTLIN_COROUTINES_JAR"
           for f in "${SOURCES[@]}"; do printf '%s\n' "$f"; sha256sum <"$f"; done; } | sha256sum | cut -d' ' -f1)
if [ -f "$JAR" ] && [ "$(cat "$JAR.stamp" 2>/dev/null)" = "$STAMP" ]; then
    say "sources unchanged: reusing $JAR"
else
    say "kotlinc: ${#SOURCES[@]} files"
    t=$(date +%s)
    rm -f "$JAR.stamp"
    # -nowarn: the generated bindings alone produce dozens of warnings.
    "$KOTLINC" -nowarn -cp "$JNA_JAR:$KOTLIN_COROUTINES_JAR" -d "$JAR.tmp.$$.jar" "${SOURCES[@]}"
    mv -f "$JAR.tmp.$$.jar" "$JAR"
    printf '%s\n' "$STAMP" >"$JAR.stamp"
    say "compiled in $(( $(date +%s) - t ))s"
fi

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
