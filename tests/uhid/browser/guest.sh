#!/bin/bash
# Runs inside the browser test VM's Debian root (init.sh chroots here): the relying party
# (rp.py) on http://localhost:8000, then headless Chromium signing up and in with
#   1. `pocketkey serve --uhid` (the software key as a USB security key), and
#   2. `pocketkey-bridge --uhid` paired with `pocketkey listen --auto-approve` over a relay,
# and, with pk.firefox, Firefox ESR (firefox.py) against a fresh `pocketkey serve --uhid`.
# Prints "PASS <name>" / "FAIL <name>", "FIGURE ..." lines, the screenshot of the bridge run
# as base64 between SCREENSHOT-BEGIN/-END, and finally "BROWSER-VM-RESULT: ok|fail".
#
# Kernel command-line switches (run.sh passes POCKETKEY_BROWSER_VM_ARGS through):
#   pk.udevd         run systemd-udevd (default: no udev daemon, only the kernel's devtmpfs)
#   pk.only=NAME     run only part NAME (serve, bridge, firefox)
#   pk.firefox       also run part 3, Firefox (not by default: see tests/uhid/README.md)
#   pk.usernameless  part 1 also signs in with an empty allowCredentials list
export PATH=/opt/pk/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8
cd /tmp
result=ok
cmdline=" $(cat /proc/cmdline) "
opt() { case "$cmdline" in *" pk.$1 "*) return 0 ;; esac; return 1; }
only=$(echo "$cmdline" | sed -n 's/.* pk\.only=\([a-z]*\) .*/\1/p')
part() { [ -z "$only" ] || [ "$only" = "$1" ]; }
# Firefox is tried only when asked for: headless it refuses WebAuthn (see tests/uhid/README.md).
firefox_part() { [ "$only" = firefox ] || { [ -z "$only" ] && opt firefox; }; }

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; result=fail; }
finish() { echo "BROWSER-VM-RESULT: $result"; exit 0; }

# Waits up to $2 tenths of a second for command $1 to succeed.
wait_for() {
    local n=0
    while [ "$n" -lt "$2" ]; do
        bash -c "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}

# What the browser's FIDO and HID code logged, for a failing run.
browser_log() {
    cat "/tmp/$1.err" /tmp/chromedriver-"$1".log /tmp/firefox-"$1".log 2>/dev/null \
        | grep -a -i -E 'fido|hid|webauthn|authenticator|authrs|u2f|ctap' | tail -n 40
}

# Runs driver $1 (chromium.py / firefox.py) with tag $2 and its other arguments, echoes its
# FIGURE/RESULT lines and checks the relying party verified both ceremonies for that user.
sign_up_and_in() {
    local driver=$1 tag=$2
    shift 2
    # FIGURE, RESULT and NOTE lines go to the console as they come (a run takes minutes here).
    python3 "/opt/pk/$driver" "$tag" "$@" 2> "/tmp/$tag.err" | tee "/tmp/$driver-$tag.out"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then pass "$tag: the browser signed up and in ($driver)"
    else
        fail "$tag: $driver exited with $rc"
        browser_log "$tag"
        tail -n 5 "/tmp/$tag.err"
    fi
    if grep -q "^RP-VERIFIED register user=$tag-user uv=True" /tmp/rp.out \
        && grep -q "^RP-VERIFIED authenticate user=$tag-user uv=True" /tmp/rp.out
    then pass "$tag: the relying party verified the registration and the sign-in, both with UV"
    else fail "$tag: the relying party did not verify both: $(grep -E "RP-(VERIFIED|REJECTED)" /tmp/rp.out | tail -n 4)"; fi
}

echo "127.0.0.1 localhost" > /etc/hosts
echo "pocketkey-vm" > /etc/hostname
if opt udevd; then
    /lib/systemd/systemd-udevd --daemon && udevadm trigger && udevadm settle \
        && pass "udevd running" || fail "udevd did not start"
fi

python3 /opt/pk/rp.py > /tmp/rp.out 2> /tmp/rp.log &
wait_for 'grep -q "^RP listening" /tmp/rp.out' 300 || { fail "rp.py did not start: $(cat /tmp/rp.log)"; finish; }

# --- 1. pocketkey serve --uhid ---------------------------------------------------------------
if part serve; then
    pocketkey serve --uhid --auto-approve --state-dir /tmp/key > /tmp/serve.log 2>&1 &
    serve=$!
    if wait_for 'ls /dev/hidraw0' 100; then pass "serve: /dev/hidraw0 appeared"
    else fail "serve: no hidraw device: $(cat /tmp/serve.log)"; finish; fi
    # pk.usernameless: also an empty allowCredentials list (reported as a NOTE, see README).
    PK_VIA="pocketkey serve --uhid" sign_up_and_in chromium.py serve $(opt usernameless && echo --usernameless)
    grep -q 'ctap2 cmd 0x01 -> status 0x00' /tmp/serve.log && pass "serve: the key logged the makeCredential" \
        || fail "serve: no makeCredential in the key's log: $(tail -n 20 /tmp/serve.log)"
    kill -INT "$serve"; wait "$serve"
fi

# --- 2. pocketkey-bridge --uhid with a phone -------------------------------------------------
if part bridge; then
    pocketkey-relay --listen 127.0.0.1:8080 --memory > /tmp/relay.out 2> /tmp/relay.log &
    wait_for 'grep -q "^listening on" /tmp/relay.out' 100 || { fail "relay did not start: $(cat /tmp/relay.log)"; finish; }
    pocketkey-bridge --key-file --uhid --relay ws://127.0.0.1:8080 --state-dir /tmp/bridge --name "VM desktop" \
        --print-url --auto-confirm \
        > /tmp/bridge.out 2> /tmp/bridge.log &
    if wait_for 'grep -q "^pair: " /tmp/bridge.out' 300; then pass "bridge: printed its pairing URL"
    else fail "bridge: no pair line: $(cat /tmp/bridge.log)"; finish; fi
    url=$(sed -n 's/^pair: //p' /tmp/bridge.out | head -n 1)
    if pocketkey pair "$url" --state-dir /tmp/phone --phone-name "VM phone" > /tmp/pair.log 2>&1
    then pass "phone: paired"
    else fail "phone: pair: $(cat /tmp/pair.log)"; finish; fi
    pocketkey listen --state-dir /tmp/phone --auto-approve --phone-name "VM phone" > /tmp/listen.log 2>&1 &
    if wait_for 'ls /dev/hidraw*' 100; then pass "bridge: $(ls /dev/hidraw* | head -n 1) appeared"
    else fail "bridge: no hidraw device: $(cat /tmp/bridge.log)"; finish; fi
    PK_VIA="pocketkey-bridge --uhid, relay, phone (pocketkey listen)" \
        sign_up_and_in chromium.py bridge /tmp/bridge.png
    grep -q "^VM desktop: " /tmp/listen.log && pass "phone: served the requests of \"VM desktop\"" \
        || fail "phone: the computer's name is not in the phone's log: $(tail -n 20 /tmp/listen.log)"
    if [ -s /tmp/bridge.png ]; then
        echo "SCREENSHOT-BEGIN"; base64 -w 76 /tmp/bridge.png; echo "SCREENSHOT-END"
    fi
fi


# --- 3. Firefox ESR against pocketkey serve --uhid ------------------------------------------
if firefox_part; then
    pocketkey serve --uhid --auto-approve --state-dir /tmp/key-firefox > /tmp/serve-firefox.log 2>&1 &
    serve=$!
    if wait_for 'ls /dev/hidraw*' 100; then pass "firefox: $(ls /dev/hidraw* | head -n 1) appeared"
    else fail "firefox: no hidraw device: $(cat /tmp/serve-firefox.log)"; finish; fi
    PK_VIA="pocketkey serve --uhid" MOZ_LOG=webauthn_authrs:4,webauthn_service:4 \
        sign_up_and_in firefox.py firefox /tmp/firefox.png
    kill -INT "$serve"; wait "$serve"
fi

finish
