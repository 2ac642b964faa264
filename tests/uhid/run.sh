#!/usr/bin/env bash
# The uhid transport against a real Linux kernel: boots Debian's kernel in QEMU (software
# emulation) with an initramfs holding busybox, the hid, uhid and hid-generic modules, our
# binaries and libfido2's tools, and runs guest.sh there.
# Passes when the guest reports every check passed. POCKETKEY_VM_ACCEL=kvm uses KVM.
#
#   tests/uhid/run.sh [TARGET_DIR]     (default: target/debug; binaries must be built)
#
# Needs: qemu-system-x86 (apt), fido2-tools; fetches linux-image and busybox-static .debs
# with `apt-get download` into $POCKETKEY_VM_CACHE (default /var/cache/pocketkey/uhid-vm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bins=${1:-$repo/target/debug}
cache=${POCKETKEY_VM_CACHE:-/var/cache/pocketkey/uhid-vm}
arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || { echo "uhid VM test: only amd64 is scripted (this is $arch)" >&2; exit 1; }

for b in pocketkey pocketkey-bridge pocketkey-relay; do
    [ -x "$bins/$b" ] || { echo "uhid VM test: $bins/$b is not built" >&2; exit 1; }
done
for t in fido2-token fido2-cred fido2-assert qemu-system-x86_64; do
    command -v "$t" >/dev/null || { echo "uhid VM test: $t is missing" >&2; exit 1; }
done

# --- kernel and busybox, from Debian's archive, cached -------------------------------------
. "$here/kernel.sh"

# --- initramfs -------------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
init=$work/initramfs
mkdir -p "$init"/{bin,usr/bin,lib/modules,proc,sys,dev,tmp,etc}
cp "$kdir/root/bin/busybox" "$init/bin/busybox"
for m in hid uhid hid-generic; do
    cp "$(find "$moddir" -name "$m.ko" | head -n 1)" "$init/lib/modules/$m.ko"
done
install -m 0755 "$here/guest.sh" "$init/init"
echo "pocketkey-vm" > "$init/etc/hostname"
copy_with_libs() {
    local src=$1 dest=$2
    strip -o "$dest" "$src" 2>/dev/null || cp "$src" "$dest"
    ldd "$src" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r lib; do
        mkdir -p "$init$(dirname "$lib")"
        [ -e "$init$lib" ] || cp -L "$lib" "$init$lib"
    done
}
for b in pocketkey pocketkey-bridge pocketkey-relay; do copy_with_libs "$bins/$b" "$init/usr/bin/$b"; done
for t in fido2-token fido2-cred fido2-assert; do copy_with_libs "$(command -v "$t")" "$init/usr/bin/$t"; done
# The /lib64 loader path the binaries name.
mkdir -p "$init/lib64"
[ -e "$init/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$init/lib64/"
(cd "$init" && find . | "$kdir/root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 > "$work/initramfs.gz")

# --- boot --------------------------------------------------------------------------------------
# Software emulation by default: on this project's (virtualised) machines /dev/kvm exists but
# a KVM guest never gets past the boot loader, while TCG boots the kernel in about 6 s.
accel=(-accel "${POCKETKEY_VM_ACCEL:-tcg}")
# One virtual CPU: with two, one run in four or five here hit a guest soft lockup (a process
# stuck in the kernel for minutes under TCG); with one, five runs in a row passed.
log=$work/console.log
boot() {
    echo "uhid VM test: booting $(basename "$vmlinuz") (${accel[*]})" >&2
    timeout 180 qemu-system-x86_64 "${accel[@]}" -m 1024 -smp 1 -nographic -no-reboot -nic none \
        -kernel "$vmlinuz" -initrd "$work/initramfs.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
        > "$log" 2>&1
}
# A guest that never reports (the VM hung: no result line within 180 s, where a run takes
# 12-35 s) is booted once more, and said so; a reported failure is never retried.
if ! boot && ! grep -q '^UHID-VM-RESULT: ' "$log"; then
    echo "uhid VM test: the VM hung without a result; its console said:" >&2
    tail -n 20 "$log" | tr -d '\r' >&2
    echo "uhid VM test: booting once more" >&2
    boot || true
fi
grep -E '^(PASS|FAIL) ' "$log" | tr -d '\r' || true
passed=$(grep -c '^PASS ' "$log" || true)
failed=$(grep -c '^FAIL ' "$log" || true)
if grep -q '^UHID-VM-RESULT: ok' "$log" && [ "$failed" -eq 0 ] && [ "$passed" -ge 23 ]; then
    echo "uhid VM test: $passed checks passed"
    exit 0
fi
echo "uhid VM test FAILED ($passed passed, $failed failed); the console said:" >&2
tail -n 60 "$log" | tr -d '\r' >&2
exit 1
