#!/usr/bin/env bash
# Compile and run Smoke.kt with the toolchain from scripts/toolchains/kotlin.sh.
# Output in <repo>/target/toolchains/kotlin-smoke/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
eval "$("$ROOT/scripts/toolchains/kotlin.sh")"
OUT=$ROOT/target/toolchains/kotlin-smoke
mkdir -p "$OUT"
echo "[kotlin smoke] kotlinc Smoke.kt" >&2
"$KOTLINC" -nowarn -cp "$JNA_JAR:$KOTLIN_COROUTINES_JAR" -d "$OUT/smoke.jar" "$HERE/Smoke.kt"
echo "[kotlin smoke] java -cp ... SmokeKt" >&2
java -cp "$OUT/smoke.jar:$JNA_JAR:$KOTLIN_COROUTINES_JAR:$KOTLIN_STDLIB_JAR" SmokeKt
