# Sourced by the Kotlin test scripts (after they define `say` and ROOT): puts kotlinc, the
# Kotlin stdlib/coroutines jars and JNA in the environment, or exits.
#
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
