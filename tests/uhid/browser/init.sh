#!/bin/busybox sh
# /init of the browser test VM (tests/uhid/browser/run.sh builds the initramfs around it):
# loads the modules, mounts the Debian root filesystem from the virtio disk (QEMU keeps the
# image read-only: guest writes land in a throw-away snapshot), puts our binaries and scripts
# under /opt/pk there and runs guest.sh in it. Powers off when guest.sh returns.
export PATH=/bin:/usr/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo  # the console line so far holds the boot loader's escape codes
die() { echo "FAIL init: $1"; echo "BROWSER-VM-RESULT: fail"; sync; poweroff -f; }

for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || die "insmod $m"
done
n=0
while [ ! -b /dev/vda ] && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
mkdir -p /newroot
mount -t ext4 /dev/vda /newroot || die "mount /dev/vda"
shell=$(grep -o ' pk.shell' /proc/cmdline)
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
rm -rf /newroot/opt/pk && cp -a /pk /newroot/opt/pk
ip link set lo up
if [ -n "$shell" ]; then
    # Probing by hand (run.sh with POCKETKEY_BROWSER_VM_SHELL): a shell on the console instead.
    echo "BROWSER-VM-SHELL"
    chroot /newroot /bin/bash
else
    chroot /newroot /opt/pk/guest.sh
fi
sync
poweroff -f
