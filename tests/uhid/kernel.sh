# Sourced by tests/uhid/run.sh and tests/uhid/browser/run.sh: resolves Debian's current
# kernel package and fetches it with busybox-static into $cache (once), then sets
#   kdir     the cache directory (kernel and busybox unpacked under $kdir/root)
#   vmlinuz  the kernel image
#   moddir   its /lib/modules/VERSION directory
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kpkg=$(kernel_package)
if [ -z "$kpkg" ]; then  # no package lists yet on this machine
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] || { echo "uhid VM test: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
kdir=$cache/$kpkg
if [ ! -f "$kdir/.done" ]; then
    echo "uhid VM test: fetching $kpkg and busybox-static into $kdir" >&2
    rm -rf "$kdir" && mkdir -p "$kdir/debs"
    (cd "$kdir/debs" && apt-get download "$kpkg" busybox-static >/dev/null)
    for deb in "$kdir"/debs/*.deb; do dpkg-deb -x "$deb" "$kdir/root"; done
    rm -rf "$kdir/debs"
    touch "$kdir/.done"
fi
vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* | head -n 1)
moddir=$(ls -d "$kdir"/root/lib/modules/* | head -n 1)
