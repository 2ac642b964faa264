#!/bin/busybox sh
# /init of the uhid test VM (tests/uhid/run.sh builds the initramfs around it): a real Linux
# kernel with uhid, hid-generic and hidraw, where `pocketkey serve --uhid` and
# `pocketkey-bridge --uhid` (paired with `pocketkey listen` through `pocketkey-relay`) create
# USB security keys that libfido2's tools find, register with and sign in with.
# Prints "PASS <name>" / "FAIL <name>" lines and finally "UHID-VM-RESULT: ok|fail".

export PATH=/bin:/usr/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
export HOME=/tmp
echo  # the console line so far holds the boot loader's escape codes
result=ok

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; result=fail; }
finish() {
    echo "UHID-VM-RESULT: $result"
    sync
    poweroff -f
}

for m in hid uhid hid-generic; do
    insmod "/lib/modules/$m.ko" || { fail "insmod $m"; finish; }
done
ip link set lo up

# Waits up to $2 tenths of a second for command $1 to succeed.
wait_for() {
    n=0
    while [ "$n" -lt "$2" ]; do
        sh -c "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

b64rand() { head -c 32 /dev/urandom | base64; }

# Registers and signs in with libfido2's tools on hidraw device $1 ($2 names the case):
# fido2-cred -M then -V (attestation verified), fido2-assert -G then -V (signature verified
# with the credential's public key), and a tampered assertion that must not verify.
register_and_sign_in() {
    dev=$1 tag=$2 rp="uhid-$2.example"
    printf '%s\n%s\n%s\n%s\n' "$(b64rand)" "$rp" "vm user" "$(b64rand)" > "/tmp/$tag-mc.in"
    if fido2-cred -M -i "/tmp/$tag-mc.in" -o "/tmp/$tag-mc.out" "$dev" es256 2> "/tmp/$tag-mc.err"
    then pass "$tag: fido2-cred -M through $dev"
    else fail "$tag: fido2-cred -M: $(cat "/tmp/$tag-mc.err")"; return; fi
    if fido2-cred -V -i "/tmp/$tag-mc.out" -o "/tmp/$tag-cred" es256 2> "/tmp/$tag-v.err"
    then pass "$tag: fido2-cred -V verified the attestation"
    else fail "$tag: fido2-cred -V: $(cat "/tmp/$tag-v.err")"; return; fi
    cred_id=$(head -n 1 "/tmp/$tag-cred")
    tail -n +2 "/tmp/$tag-cred" > "/tmp/$tag-key.pem"
    printf '%s\n%s\n%s\n' "$(b64rand)" "$rp" "$cred_id" > "/tmp/$tag-ga.in"
    if fido2-assert -G -p -i "/tmp/$tag-ga.in" -o "/tmp/$tag-ga.out" "$dev" es256 2> "/tmp/$tag-ga.err"
    then pass "$tag: fido2-assert -G through $dev"
    else fail "$tag: fido2-assert -G: $(cat "/tmp/$tag-ga.err")"; return; fi
    if fido2-assert -V -p -i "/tmp/$tag-ga.out" "/tmp/$tag-key.pem" es256 2> "/tmp/$tag-gv.err"
    then pass "$tag: fido2-assert -V verified the signature"
    else fail "$tag: fido2-assert -V: $(cat "/tmp/$tag-gv.err")"; fi
    { b64rand; sed -n '2,4p' "/tmp/$tag-ga.out"; } > "/tmp/$tag-ga.bad"
    if fido2-assert -V -p -i "/tmp/$tag-ga.bad" "/tmp/$tag-key.pem" es256 2>/dev/null
    then fail "$tag: a signature over another clientDataHash verified"
    else pass "$tag: a tampered assertion does not verify"; fi
}

# --- 1. pocketkey serve --uhid: the software key as a USB security key -------------------
pocketkey serve --uhid --auto-approve --state-dir /tmp/key > /tmp/serve.log 2>&1 &
serve=$!
if wait_for 'ls /dev/hidraw0' 100; then pass "serve: /dev/hidraw0 appeared"
else fail "serve: no hidraw device: $(cat /tmp/serve.log)"; finish; fi

if fido2-token -L > /tmp/list 2>&1 && grep -q '^/dev/hidraw0: vendor=0x1209, product=0x000a' /tmp/list
then pass "serve: fido2-token -L lists it as a FIDO device ($(cat /tmp/list))"
else fail "serve: fido2-token -L: $(cat /tmp/list)"; fi

if fido2-token -I /dev/hidraw0 > /tmp/info 2>&1 && grep -q 'FIDO_2_1' /tmp/info && grep -q '^options: .*uv' /tmp/info
then pass "serve: fido2-token -I reads getInfo"
else fail "serve: fido2-token -I: $(cat /tmp/info)"; fi

register_and_sign_in /dev/hidraw0 serve

grep -q 'ctap2 cmd 0x01 -> status 0x00' /tmp/serve.log && pass "serve: the key logged the makeCredential" \
    || fail "serve: no makeCredential in the log: $(cat /tmp/serve.log)"

# A PIN-protected assertion (CTAP 2.1 §6.5.5.7: pinUvAuthToken from the PIN, UV flag set):
# fido2-token -S sets the PIN; fido2-assert -G -v asks for it. With no controlling terminal
# here, libfido2's tools read the PIN from standard input.
pin=vm-pin-4321
if printf '%s\n%s\n' "$pin" "$pin" | fido2-token -S /dev/hidraw0 > /tmp/setpin.log 2>&1 \
    && fido2-token -I /dev/hidraw0 2>&1 | grep -Eq '^options: (.*, )?clientPin(,|$)'
then pass "serve: fido2-token -S set a PIN (getInfo says clientPin)"
else fail "serve: fido2-token -S: $(cat /tmp/setpin.log)"; fi
printf '%s\n%s\n%s\n' "$(b64rand)" uhid-serve.example "$(head -n 1 /tmp/serve-cred)" > /tmp/pin-ga.in
if ! echo wrong-pin | fido2-assert -G -p -v -i /tmp/pin-ga.in -o /tmp/pin-bad.out /dev/hidraw0 es256 \
        > /tmp/pin-bad.err 2>&1 \
    && fido2-token -I /dev/hidraw0 2>&1 | grep -q '^pin retries: 7$'
then pass "serve: a wrong PIN gets no assertion and costs one retry"
else fail "serve: wrong PIN: $(cat /tmp/pin-bad.err; fido2-token -I /dev/hidraw0 2>&1 | grep retries)"; fi
if echo "$pin" | fido2-assert -G -p -v -i /tmp/pin-ga.in -o /tmp/pin-ga.out /dev/hidraw0 es256 \
        > /tmp/pin-ga.err 2>&1 \
    && fido2-assert -V -p -v -i /tmp/pin-ga.out /tmp/serve-key.pem es256 2> /tmp/pin-gv.err \
    && fido2-token -I /dev/hidraw0 2>&1 | grep -q '^pin retries: 8$'
then pass "serve: fido2-assert -G -v with the PIN: signature verified with UV set, retries back to 8"
else fail "serve: PIN assertion: $(cat /tmp/pin-ga.err /tmp/pin-gv.err)"; fi

# SIGTERM (what a service manager sends) removes the USB key.
kill -TERM "$serve"
if wait_for '! ls /dev/hidraw0' 50; then pass "serve: /dev/hidraw0 is gone after SIGTERM"
else fail "serve: /dev/hidraw0 outlived SIGTERM"; kill -KILL "$serve"; fi
wait "$serve"

# --- 2. pocketkey-bridge --uhid: the paired phone as a USB security key -------------------
pocketkey-relay --listen 127.0.0.1:8080 --memory > /tmp/relay.out 2> /tmp/relay.log &
wait_for 'grep -q "^listening on" /tmp/relay.out' 100 || { fail "relay did not start: $(cat /tmp/relay.log)"; finish; }
pocketkey-bridge --key-file --uhid --relay ws://127.0.0.1:8080 --state-dir /tmp/bridge --name "VM desktop" --print-url --auto-confirm \
    > /tmp/bridge.out 2> /tmp/bridge.log &
bridge=$!
if wait_for 'grep -q "^pair: " /tmp/bridge.out' 100; then pass "bridge: printed its pairing URL"
else fail "bridge: no pair line: $(cat /tmp/bridge.log)"; finish; fi
url=$(sed -n 's/^pair: //p' /tmp/bridge.out | head -n 1)
if pocketkey pair "$url" --state-dir /tmp/phone --phone-name "VM phone" > /tmp/pair.log 2>&1
then pass "phone: paired"
else fail "phone: pair: $(cat /tmp/pair.log)"; finish; fi
pocketkey listen --state-dir /tmp/phone --auto-approve --phone-name "VM phone" > /tmp/listen.log 2>&1 &

dev=$(ls /dev/hidraw* 2>/dev/null | head -n 1)
if [ -n "$dev" ] && wait_for "fido2-token -I $dev | grep -q FIDO_2_1" 150
then pass "bridge: fido2-token -I on $dev answers with the phone's getInfo"
else fail "bridge: getInfo through ${dev:-no device}: $(cat /tmp/bridge.log)"; fi
register_and_sign_in "$dev" bridge
grep -q "^VM desktop: " /tmp/listen.log && pass "phone: served the requests of \"VM desktop\"" \
    || fail "phone: the computer's name is not in the phone's log: $(cat /tmp/listen.log)"
kill -TERM "$bridge"
if wait_for "! ls $dev" 50; then pass "bridge: $dev is gone after SIGTERM"
else fail "bridge: $dev outlived SIGTERM"; kill -KILL "$bridge"; fi
wait "$bridge"

finish
