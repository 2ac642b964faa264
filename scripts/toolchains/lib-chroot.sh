# shellcheck shell=bash
# Sourced by swift.sh and swift-run.sh (not executable on its own).
#
# chroot_exec [--exec] ROOTFS HOSTDIR CWD VAR=VALUE... -- CMD...
#   Runs CMD as root inside the chroot ROOTFS with a clean environment (plus the given
#   VAR=VALUE pairs). Inside, /proc is mounted, /dev is the host's /dev (rbind), /tmp is a
#   fresh tmpfs, and HOSTDIR (if not empty) is bind-mounted at the same absolute path, so paths
#   in build files, env variables and error messages mean the same on both sides.
#   CWD is the working directory inside the chroot. With --exec the calling shell is replaced
#   (its PID becomes the command's, so killing the caller kills the command).
#
# Mount hygiene: by default everything happens in a private mount namespace
# (`unshare --mount --propagation private`): the mounts exist only for this one process tree,
# the host never sees them, and the kernel drops them when the last process exits -- also on
# failure, Ctrl-C or SIGKILL. Concurrent runs cannot interfere either. Where unshare is not
# allowed (some containers), or with PK_SWIFT_NO_UNSHARE=1, the mounts are made in the host
# namespace under an exclusive lock and removed by an EXIT trap.

PK_CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Refuse host directories that would shadow the chroot's system directories or whose path
# crosses a symlink inside the chroot (an absolute symlink there would point at the host).
chroot_check_hostdir() {
    local rootfs=$1 dir=$2 prefix="" comp
    case "$dir" in
        /*) ;;
        *) echo "host dir must be absolute: $dir" >&2; return 1 ;;
    esac
    case "$dir" in
        / | /bin | /bin/* | /boot | /boot/* | /dev | /dev/* | /etc | /etc/* | /lib | /lib/* | /lib64 | /lib64/* \
        | /proc | /proc/* | /run | /run/* | /sbin | /sbin/* | /sys | /sys/* | /usr | /usr/* | /var | /var/* | /tmp)
            echo "refusing to mount $dir into the chroot: it would shadow a system directory" >&2
            return 1 ;;
    esac
    local IFS=/
    for comp in ${dir#/}; do
        [ -n "$comp" ] || continue
        prefix=$prefix/$comp
        if [ -L "$rootfs$prefix" ]; then
            echo "refusing to mount $dir into the chroot: $prefix is a symlink there" >&2
            return 1
        fi
    done
}

# The part that runs inside the new mount namespace (or under the lock in the fallback).
# Arguments: ROOTFS HOSTDIR CWD VAR=VALUE... -- CMD...
_chroot_inner() {
    set -euo pipefail
    local rootfs=$1 hostdir=$2 cwd=$3
    shift 3
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    mount --rbind /dev "$rootfs/dev"
    # Never let an unmount under the chroot propagate back to the host's /dev (shared mounts).
    mount --make-rslave "$rootfs/dev"
    mount -t proc proc "$rootfs/proc"
    mount -t tmpfs -o mode=1777 tmpfs "$rootfs/tmp"
    if [ -n "$hostdir" ]; then
        mkdir -p "$rootfs$hostdir"
        mount --bind "$hostdir" "$rootfs$hostdir"
    fi
    # The chroot resolves names with the host's resolver config (needed for apt-get only).
    cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    # shellcheck disable=SC2016  # $1/$@ are expanded by the chroot's sh
    exec chroot "$rootfs" /usr/bin/env -i HOME=/root PATH="$PK_CHROOT_PATH" LANG=C.UTF-8 \
        TERM="${TERM:-dumb}" ${envs[@]+"${envs[@]}"} \
        /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
}

_chroot_umount_all() {
    # Unmount everything below ROOTFS, deepest first; lazy as the last resort.
    local rootfs=$1 m
    awk -v r="$rootfs" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
        while IFS= read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "warning: could not unmount $m" >&2
        done
}

chroot_exec() {
    local run=""
    if [ "$1" = --exec ]; then run="exec"; shift; fi
    local rootfs=$1 hostdir=$2
    [ -z "$hostdir" ] || chroot_check_hostdir "$rootfs" "$hostdir" || return 1
    if [ "${PK_SWIFT_NO_UNSHARE:-0}" != 1 ] && unshare --mount --propagation private true 2>/dev/null; then
        # `bash -c` re-declares the functions it needs: the namespace lives as long as this bash,
        # which in turn execs chroot, sh and the command (same PID all the way down).
        $run unshare --mount --propagation private -- bash -c \
            "$(declare -p PK_CHROOT_PATH); $(declare -f _chroot_inner); _chroot_inner \"\$@\"" \
            chroot-exec "$@"
    else
        # Fallback: host-visible mounts, one run at a time, removed by an EXIT trap (also on
        # INT/TERM/HUP, which first stop the command). Only SIGKILL can leave mounts behind;
        # the next run (or swift.sh --remove/--rebuild) removes them first.
        $run bash -c "$(declare -p PK_CHROOT_PATH); $(declare -f _chroot_inner _chroot_umount_all _chroot_fallback); _chroot_fallback \"\$@\"" \
            chroot-exec "$@"
    fi
}

_chroot_fallback() {
    local rootfs=$1
    exec 9>"$rootfs.mountlock"
    flock 9
    _chroot_umount_all "$rootfs"
    _pk_child=""
    trap '[ -z "$_pk_child" ] || { kill -TERM "$_pk_child" 2>/dev/null; wait "$_pk_child"; }; _chroot_umount_all "'"$rootfs"'"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    _chroot_inner "$@" &
    _pk_child=$!
    local rc=0
    wait "$_pk_child" || rc=$?
    _pk_child=""
    exit "$rc"
}
