#!/usr/bin/env bash
# Swift toolchain for the uniffi foreign tests (scripts/toolchains/README.md): Debian 12 has no Swift, so we
# build a Debian 13 (trixie) chroot with Debian's `swiftlang` once and cache it.
#
#   scripts/toolchains/swift.sh             build the chroot if missing (once, ~1 min, ~3.3 GB),
#                                           print `export SWIFT_CHROOT=...` on stdout
#   scripts/toolchains/swift.sh --rebuild   throw the cached chroot away and build it again
#   scripts/toolchains/swift.sh --remove    delete the cached chroot
#   scripts/toolchains/swift-run.sh DIR CMD...   run CMD in the chroot with DIR bind-mounted
#
# Cache: $PK_SWIFT_CHROOT (default /var/cache/pocketkey/swift-trixie), outside the repository
# on purpose: it survives `cargo clean`, `git clean -fdx` and fresh clones/worktrees on the same
# machine, is shared by all of them (it is 3.3 GB), and a bind mount of the repository can never
# end up inside the repository's own target/ (where `rm -rf target` would walk into it).
#
# Environment:
#   PK_SWIFT_CHROOT   chroot directory (default /var/cache/pocketkey/swift-trixie)
#   PK_DEBIAN_MIRROR  Debian mirror for debootstrap and the chroot's apt (default: the mirror
#                     the host's own apt uses for its release, found by apt-mirror.sh)
#   PK_DEBIAN_SECURITY_MIRROR  (default: the host's for <release>-security; none: no
#                     security line in the chroot)
#   PK_NO_INSTALL=1   never install anything (fail if the chroot is missing)
set -euo pipefail

SUITE=trixie
# Everything `swift build` / `swift test` of a SwiftPM package needs in the chroot (found by
# trying, see README.md). Changing this list re-runs apt-get in the existing chroot; no rebuild.
CHROOT_PACKAGES=(swiftlang libc6-dev)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib-chroot.sh
. "$HERE/lib-chroot.sh"

ROOTFS=${PK_SWIFT_CHROOT:-/var/cache/pocketkey/swift-trixie}
# The mirrors are looked up only when a chroot is built (debootstrap_mirrors below).
MIRROR=${PK_DEBIAN_MIRROR:-}
SEC_MIRROR=${PK_DEBIAN_SECURITY_MIRROR:-}
STAMP=$ROOTFS/.pocketkey-toolchain
ENV_FILE=$ROOT/target/toolchains/swift.env
T0=$(date +%s)

say() { [ "${PK_SWIFT_QUIET:-0}" = 1 ] || printf '[swift.sh] %s\n' "$*" >&2; }
die() { printf '[swift.sh] ERROR: %s\n' "$*" >&2; exit 1; }

want_line="packages: ${CHROOT_PACKAGES[*]}"
# (usr/bin/swift is an absolute symlink: test the link, not its target as seen from the host)
stamp_ok() { [ -f "$STAMP" ] && grep -qxF "$want_line" "$STAMP" && { [ -L "$ROOTFS/usr/bin/swift" ] || [ -f "$ROOTFS/usr/bin/swift" ]; }; }

emit_env() {
    local text
    text="export SWIFT_CHROOT='$ROOTFS'
export SWIFT_RUN='$HERE/swift-run.sh'"
    mkdir -p "$(dirname "$ENV_FILE")"
    if [ ! -f "$ENV_FILE" ] || [ "$(cat "$ENV_FILE")" != "$text" ]; then
        printf '%s\n' "$text" >"$ENV_FILE.tmp.$$" && mv -f "$ENV_FILE.tmp.$$" "$ENV_FILE"
    fi
    say "$(sed -n 's/^swift: //p' "$STAMP" 2>/dev/null | head -n1)"
    say "ready in $(( $(date +%s) - T0 ))s: chroot $ROOTFS; run things with scripts/toolchains/swift-run.sh DIR CMD..."
    printf '%s\n' "$text"
}

# Delete a chroot directory safely: first drop any mounts a SIGKILLed fallback run may have
# left, then never cross into another file system while deleting.
remove_tree() {
    local dir=$1
    [ -e "$dir" ] || return 0
    _chroot_umount_all "$dir"
    if awk -v r="$dir" 'index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        die "mounts still active below $dir; not deleting it"
    fi
    rm -rf --one-file-system "$dir"
}

mode=${1:-}
case "$mode" in
    "") ;;
    --rebuild | --remove) ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown option $mode (see --help)" ;;
esac

if [ -z "$mode" ] && stamp_ok; then
    say "cached chroot $ROOTFS"
    emit_env
    exit 0
fi

PK_SWIFT_QUIET=0   # from here on, always show progress (swift-run.sh silences only the cached case)
[ "${PK_NO_INSTALL:-0}" = 1 ] && [ "$mode" != --remove ] && die "Swift chroot missing in $ROOTFS (PK_NO_INSTALL=1)"
[ "$(id -u)" = 0 ] || die "building the Swift chroot needs root (debootstrap, chroot, mount)"

mkdir -p "$(dirname "$ROOTFS")"
# One builder at a time; a second concurrent caller waits, then finds the cache.
exec 8>"$ROOTFS.lock"
if ! flock -n 8; then
    say "another swift.sh is building $ROOTFS; waiting for it"
    flock 8
fi

if [ "$mode" = --remove ] || [ "$mode" = --rebuild ]; then
    say "removing $ROOTFS"
    remove_tree "$ROOTFS"
    remove_tree "$ROOTFS.partial"
    if [ "$mode" = --remove ]; then
        rm -f "$ROOTFS.lock" "$ROOTFS.mountlock" "$ENV_FILE"
        say "removed"
        exit 0
    fi
elif stamp_ok; then
    say "cached chroot $ROOTFS (built by a concurrent run)"
    emit_env
    exit 0
fi

apt_host() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "host: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 || {
        apt-get -o DPkg::Lock::Timeout=600 update -q >&2
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
    }
}

in_chroot() { chroot_exec "$1" "" / DEBIAN_FRONTEND=noninteractive -- "${@:2}"; }

if [ -x "$ROOTFS/usr/bin/apt-get" ]; then
    # The chroot exists but the package list changed (or an earlier apt-get step failed).
    target=$ROOTFS
    say "updating the packages of the existing chroot $ROOTFS"
else
    # Fresh build in a side directory; renamed into place only when complete.
    target=$ROOTFS.partial
    remove_tree "$target"
    remove_tree "$ROOTFS"
    apt_host debootstrap debian-archive-keyring
    if [ -z "$MIRROR" ]; then
        # The host's apt sources name the mirror that works from here; one Debian mirror
        # serves every release, so the host's (e.g. bookworm's) serves trixie as well.
        mirrors=$("$HERE/apt-mirror.sh") \
            || die "cannot tell the host's Debian mirror from its apt sources; set PK_DEBIAN_MIRROR"
        MIRROR=$(printf '%s\n' "$mirrors" | sed -n 's/^MIRROR=//p')
        [ -n "${PK_DEBIAN_SECURITY_MIRROR+set}" ] \
            || SEC_MIRROR=$(printf '%s\n' "$mirrors" | sed -n 's/^SECURITY_MIRROR=//p')
    fi
    say "debootstrap --variant=minbase $SUITE $target ($MIRROR)"
    t=$(date +%s)
    debootstrap --variant=minbase --components=main "$SUITE" "$target" "$MIRROR" \
        >"$target.debootstrap.log" 2>&1 || {
        tail -n 30 "$target.debootstrap.log" >&2
        die "debootstrap failed (full log: $target.debootstrap.log)"
    }
    rm -f "$target.debootstrap.log"
    say "debootstrap done in $(( $(date +%s) - t ))s"
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        if [ -n "$SEC_MIRROR" ]; then
            echo "deb $SEC_MIRROR $SUITE-security main"
        else
            say "no security mirror in the host's apt sources: the chroot gets no $SUITE-security"
        fi
    } >"$target/etc/apt/sources.list"
    # Keep the image lean: no docs, man pages or translations.
    cat >"$target/etc/dpkg/dpkg.cfg.d/01-pocketkey-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
NODOC
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Languages "none";\n' \
        >"$target/etc/apt/apt.conf.d/01-pocketkey-norecommends"
fi

say "chroot: apt-get update && apt-get install ${CHROOT_PACKAGES[*]} (downloads ~700 MB the first time)"
t=$(date +%s)
in_chroot "$target" apt-get -q update >&2
in_chroot "$target" apt-get -q -y install "${CHROOT_PACKAGES[@]}" >"$target.apt.log" 2>&1 || {
    tail -n 30 "$target.apt.log" >&2
    die "apt-get install in the chroot failed (full log: $target.apt.log)"
}
rm -f "$target.apt.log"
in_chroot "$target" apt-get clean
say "packages installed in $(( $(date +%s) - t ))s"

version=$(in_chroot "$target" swift --version 2>&1 | head -n1) || die "swift does not run in the chroot: $version"
printf '%s\nswift: %s\nbuilt: %s\n' "$want_line" "$version" "$(date -u +%FT%TZ)" >"$target/.pocketkey-toolchain"
[ "$target" = "$ROOTFS" ] || mv "$target" "$ROOTFS"
say "chroot complete: $(du -sh --one-file-system "$ROOTFS" | cut -f1)"
emit_env
