#!/usr/bin/env bash
# A real browser signs up and in with the uhid security key: boots Debian's kernel in QEMU
# (software emulation) on a Debian root filesystem holding Chromium, chromedriver, Firefox ESR,
# Selenium and python-fido2, with our binaries added, and runs guest.sh there (see it for what
# is checked). Passes when the guest reports every check passed.
#
#   tests/uhid/browser/run.sh [TARGET_DIR]     (default: target/debug; binaries must be built)
#
# Environment:
#   POCKETKEY_VM_CACHE           cache directory (default /var/cache/pocketkey/uhid-vm): the
#                                kernel (shared with tests/uhid/run.sh) and the root image
#   POCKETKEY_BROWSER_VM_ARGS    extra guest switches, e.g. "pk.udevd pk.only=bridge" (guest.sh)
#   POCKETKEY_BROWSER_SHOT       where to write the screenshot (default TARGET_DIR/browser-vm.png)
#   POCKETKEY_VM_ACCEL           QEMU accelerator (default tcg; see tests/uhid/run.sh)
#
# Needs: qemu-system-x86, mmdebstrap, e2fsprogs (apt), pip (fido2 wheel). The first run builds
# the root image (≈ 2 min, ≈ 2 GB) with mmdebstrap from the machine's own apt sources.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
bins=${1:-$repo/target/debug}
cache=${POCKETKEY_VM_CACHE:-/var/cache/pocketkey/uhid-vm}
shot=${POCKETKEY_BROWSER_SHOT:-$bins/browser-vm.png}
[ "$(dpkg --print-architecture)" = amd64 ] || { echo "browser VM test: only amd64 is scripted" >&2; exit 1; }
for b in pocketkey pocketkey-bridge pocketkey-relay; do
    [ -x "$bins/$b" ] || { echo "browser VM test: $bins/$b is not built" >&2; exit 1; }
done
for t in qemu-system-x86_64 mmdebstrap mke2fs; do
    command -v "$t" >/dev/null || { echo "browser VM test: $t is missing" >&2; exit 1; }
done

# --- kernel and busybox (shared with tests/uhid/run.sh) --------------------------------------
. "$here/../kernel.sh"

# --- the Debian root image, cached under a name that changes with its contents -------------
packages="chromium chromium-driver firefox-esr python3-selenium python3-cryptography python3-websocket fonts-dejavu-core udev procps"
fido2_version=2.2.1  # python-fido2's Fido2Server verifies the browser's answers (Debian has 0.9)
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
rdir=$cache/browser-root-$(echo "$suite $packages fido2-$fido2_version" | sha256sum | cut -c1-12)
image=$rdir/root.img
if [ ! -f "$rdir/.done" ]; then
    echo "browser VM test: building the root image in $rdir" >&2
    rm -rf "$rdir" && mkdir -p "$rdir"
    mmdebstrap --quiet --variant=apt --include="${packages// /,}" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$suite" "$rdir/root" "$sources" >&2
    python3 -m pip download --quiet --no-deps -d "$rdir/wheel" "fido2==$fido2_version" >&2
    pyver=$(basename "$(ls -d "$rdir"/root/usr/lib/python3.[0-9]* | head -n 1)")
    python3 -m zipfile -e "$rdir"/wheel/fido2-*.whl "$rdir/root/usr/local/lib/$pyver/dist-packages/"
    mb=$(du -sxm "$rdir/root" | cut -f1)
    mke2fs -q -t ext4 -L pocketkey-root -d "$rdir/root" "$image" "$((mb * 5 / 4 + 256))M"
    rm -rf "$rdir/root" "$rdir/wheel"
    touch "$rdir/.done"
fi

# --- initramfs: busybox, the modules to reach the disk and run uhid, our files ---------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
init=$work/initramfs
mkdir -p "$init"/{bin,lib/modules,proc,sys,dev,pk/bin}
cp "$kdir/root/bin/busybox" "$init/bin/busybox"
# Modules in load order, each after the ones its .modinfo `depends=` names.
order=()
add_module() {
    local m=$1 ko dep
    for dep in "${order[@]}"; do [ "$dep" = "$m" ] && return 0; done
    ko=$(find "$moddir" -name "$m.ko" | head -n 1)
    [ -n "$ko" ] || { echo "browser VM test: no module $m" >&2; exit 1; }
    for dep in $(tr '\0' '\n' < "$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep"
    done
    cp "$ko" "$init/lib/modules/$m.ko"
    order+=("$m")
}
for m in virtio_pci virtio_blk crc32c_generic ext4 hid uhid hid-generic; do
    add_module "$m"
done
printf '%s\n' "${order[@]}" > "$init/lib/modules/order"
install -m 0755 "$here/init.sh" "$init/init"
install -m 0755 "$here/guest.sh" "$here/chromium.py" "$here/firefox.py" "$here/rp.py" "$init/pk/"
install -m 0644 "$here/page.html" "$init/pk/"
for b in pocketkey pocketkey-bridge pocketkey-relay; do
    strip -o "$init/pk/bin/$b" "$bins/$b" 2>/dev/null || cp "$bins/$b" "$init/pk/bin/$b"
done
(cd "$init" && find . | "$kdir/root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initramfs.gz")

# --- boot ----------------------------------------------------------------------------------------
# TCG and one vCPU, for the reasons in tests/uhid/run.sh. The disk is opened with snapshot=on:
# the guest writes to a throw-away overlay, the cached image never changes.
log=$work/console.log
echo "browser VM test: booting $(basename "$vmlinuz") on $(basename "$rdir")" >&2
started=$(date +%s)
console=(-nographic)
args=${POCKETKEY_BROWSER_VM_ARGS:-}
if [ -n "${POCKETKEY_BROWSER_VM_SHELL:-}" ]; then
    # Probing by hand: a shell in the guest's root, its console on the FIFOs $SHELL.in/.out.
    p=$POCKETKEY_BROWSER_VM_SHELL
    rm -f "$p.in" "$p.out" && mkfifo "$p.in" "$p.out"
    console=(-display none -monitor none -serial "pipe:$p")
    args="$args pk.shell"
    echo "browser VM test: shell on $p.in / $p.out" >&2
fi
timeout "${POCKETKEY_BROWSER_VM_TIMEOUT:-1200}" qemu-system-x86_64 -accel "${POCKETKEY_VM_ACCEL:-tcg}" \
    -m 3072 -smp 1 "${console[@]}" -no-reboot -nic none \
    -drive "file=$image,format=raw,if=virtio,snapshot=on" \
    -kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init $args" \
    > "$log" 2>&1 || true
echo "browser VM test: the VM ran $(( $(date +%s) - started )) s" >&2
tr -d '\r' < "$log" > "$work/console.txt"
[ -n "${POCKETKEY_BROWSER_VM_LOG:-}" ] && cp "$work/console.txt" "$POCKETKEY_BROWSER_VM_LOG"
if grep -q '^SCREENSHOT-BEGIN' "$work/console.txt"; then
    sed -n '/^SCREENSHOT-BEGIN/,/^SCREENSHOT-END/p' "$work/console.txt" | sed '1d;$d' | base64 -d > "$shot" \
        && echo "browser VM test: screenshot in $shot" >&2
fi
grep -E '^(PASS|FAIL|FIGURE|RESULT|NOTE) ' "$work/console.txt" || true
passed=$(grep -c '^PASS ' "$work/console.txt" || true)
failed=$(grep -c '^FAIL ' "$work/console.txt" || true)
# The default run (parts 1 and 2) has 10 checks; a pk.only=… run fewer.
case " $args " in *" pk.only="*) want=1 ;; *) want=10 ;; esac
if grep -q '^BROWSER-VM-RESULT: ok' "$work/console.txt" && [ "$failed" -eq 0 ] && [ "$passed" -ge "$want" ]; then
    echo "browser VM test: $passed checks passed"
    exit 0
fi
echo "browser VM test FAILED ($passed passed, $failed failed); the console said:" >&2
grep -v -E '^(PASS|FAIL|FIGURE|RESULT|NOTE) |^[A-Za-z0-9+/=]{76}$' "$work/console.txt" | tail -n 80 >&2
exit 1
