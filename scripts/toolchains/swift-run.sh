#!/usr/bin/env bash
# Run a command inside the cached Swift (Debian 13 `swiftlang`) chroot built by swift.sh.
#
#   scripts/toolchains/swift-run.sh [-C DIR] [-e VAR=VALUE]... HOST_DIR CMD [ARG...]
#
# HOST_DIR is bind-mounted into the chroot at the same absolute path (so /work/main stays
# /work/main, and Package.swift linker paths, LD_LIBRARY_PATH etc. are the same on both sides).
# The command runs as root with a clean environment in DIR (-C), else in the current directory
# if that lies inside HOST_DIR, else in HOST_DIR. Passed through when set on the host:
# LD_LIBRARY_PATH, RUST_BACKTRACE, RUST_LOG and every PK_* variable; add more with -e.
# Its exit status is the command's.
#
# Examples:
#   scripts/toolchains/swift-run.sh "$PWD" swift --version
#   scripts/toolchains/swift-run.sh -C /work/main/ios-shell/PocketKeyKit /work/main swift test
#
# Mounts (/proc, /dev, a private /tmp, HOST_DIR) live in a private mount namespace and vanish
# with the command, whatever way it ends; see lib-chroot.sh. Safe to run concurrently.
# Builds the chroot first if it is missing (scripts/toolchains/swift.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-chroot.sh
. "$HERE/lib-chroot.sh"

usage() { sed -n '2,20p' "$0" >&2; exit 2; }

cwd=""
envs=()
while [ $# -gt 0 ]; do
    case "$1" in
        -C) [ $# -ge 2 ] || usage; cwd=$2; shift 2 ;;
        -e) [ $# -ge 2 ] || usage; case "$2" in *=*) envs+=("$2") ;; *) usage ;; esac; shift 2 ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || usage

[ "$(id -u)" = 0 ] || { echo "swift-run.sh: needs root (chroot, mount)" >&2; exit 1; }
[ -d "$1" ] || { echo "swift-run.sh: no such directory: $1" >&2; exit 1; }
hostdir=$(cd "$1" && pwd -P)
shift

ROOTFS=${PK_SWIFT_CHROOT:-/var/cache/pocketkey/swift-trixie}
# Cheap when cached (~30 ms); builds or completes the chroot otherwise, and waits for a
# concurrent build instead of running in a half-built chroot.
PK_SWIFT_QUIET=1 "$HERE/swift.sh" >/dev/null

if [ -z "$cwd" ]; then
    here=$(pwd -P)
    case "$here/" in
        "$hostdir"/*) cwd=$here ;;
        *) cwd=$hostdir ;;
    esac
fi
case "$cwd" in
    "$hostdir" | "$hostdir"/*) ;;
    *) echo "swift-run.sh: -C $cwd is not inside $hostdir" >&2; exit 1 ;;
esac

for v in LD_LIBRARY_PATH RUST_BACKTRACE RUST_LOG; do
    [ -n "${!v:-}" ] && envs=("$v=${!v}" ${envs[@]+"${envs[@]}"})
done
while IFS= read -r v; do
    envs=("$v=${!v}" ${envs[@]+"${envs[@]}"})
done < <(compgen -e | grep '^PK_' || true)

chroot_exec --exec "$ROOTFS" "$hostdir" "$cwd" ${envs[@]+"${envs[@]}"} -- "$@"
