# Sourced by the Kotlin test scripts after they set ROOT and define `say`: the toolchain, the
# generated bindings and one cached kotlinc run, shared by tests/kotlin/run.sh (the bindings)
# and tests/kotlin/run-app-logic.sh (the Android app model).

# --- toolchain: kotlinc, the Kotlin stdlib/coroutines jars and JNA, or exit -----------------
# `eval "$(kotlin.sh)"` would hide kotlin.sh's exit status (eval of nothing succeeds) and then
# run with whatever KOTLINC the caller's environment held: take the output apart from the
# status, and use only the variables kotlin.sh printed.
unset KOTLINC KOTLIN_HOME KOTLIN_STDLIB_JAR KOTLIN_COROUTINES_JAR JNA_JAR
if ! KOTLIN_ENV=$("$ROOT/scripts/toolchains/kotlin.sh"); then
    say "ERROR: scripts/toolchains/kotlin.sh failed"
    exit 1
fi
eval "$KOTLIN_ENV"
for v in KOTLINC KOTLIN_STDLIB_JAR KOTLIN_COROUTINES_JAR JNA_JAR; do
    [ -n "${!v:-}" ] || { say "ERROR: scripts/toolchains/kotlin.sh did not export $v"; exit 1; }
done

TARGET_DIR=$(cargo metadata --no-deps --format-version 1 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}
LIB_DIR=$TARGET_DIR/debug
LIB=$LIB_DIR/libpocketkey_ffi.so
GEN=$TARGET_DIR/bindings/kotlin
GEN_KT=$GEN/com/pocketkey/core/pocketkey_ffi.kt

# fresh_bindings: the library built as scripts/build-bindings.sh builds it (the same features,
# so the library is not relinked and the bindings made stale), and the generated Kotlin
# regenerated only when it is missing or older than the library or uniffi.toml.
fresh_bindings() {
    say "cargo build -p pocketkey-ffi --features bindgen"
    cargo build -q -p pocketkey-ffi --features bindgen >&2
    if [ ! -f "$GEN_KT" ] || [ "$LIB" -nt "$GEN_KT" ] || [ "$ROOT/uniffi.toml" -nt "$GEN_KT" ]; then
        say "generated Kotlin missing or stale: scripts/build-bindings.sh"
        "$ROOT/scripts/build-bindings.sh" >/dev/null
    fi
    [ -f "$LIB" ] || { say "ERROR: $LIB missing"; exit 1; }
    [ -f "$GEN_KT" ] || { say "ERROR: $GEN_KT missing after build-bindings.sh"; exit 1; }
}

# compile_jar JAR SOURCE...: one kotlinc run, skipped when JAR was built from exactly these
# sources with this compiler and these jars (a sha-256 stamp beside it).
compile_jar() {
    local jar=$1 stamp t
    shift
    stamp=$( { "$KOTLINC" -version 2>&1 | head -n1; printf '%s\n' "$JNA_JAR" "$KOTLIN_COROUTINES_JAR"
               for f in "$@"; do printf '%s\n' "$f"; sha256sum <"$f"; done; } | sha256sum | cut -d' ' -f1)
    if [ -f "$jar" ] && [ "$(cat "$jar.stamp" 2>/dev/null)" = "$stamp" ]; then
        say "sources unchanged: reusing $jar"
        return 0
    fi
    say "kotlinc: $# files"
    t=$(date +%s)
    rm -f "$jar.stamp"
    # -nowarn: the generated bindings alone produce dozens of warnings.
    "$KOTLINC" -nowarn -cp "$JNA_JAR:$KOTLIN_COROUTINES_JAR" -d "$jar.tmp.$$.jar" "$@"
    mv -f "$jar.tmp.$$.jar" "$jar"
    printf '%s\n' "$stamp" >"$jar.stamp"
    say "compiled in $(( $(date +%s) - t ))s"
}
