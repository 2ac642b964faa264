#!/usr/bin/env python3
"""Drives Debian's headless Firefox ESR on the browser check's page, as chromium.py does
Chromium. Debian has no geckodriver package, so this speaks WebDriver BiDi, which Firefox
itself serves (`--remote-debugging-port`), over a websocket: no driver binary in between.

    firefox.py TAG [SCREENSHOT.png]

Prints `FIGURE TAG <what> <seconds>` and `RESULT TAG ok|fail <detail>`; exits non-zero on a
failure. The relying party (rp.py) must listen on http://localhost:8000.
"""

import base64
import itertools
import json
import os
import re
import subprocess
import sys
import time

import websocket

tag = sys.argv[1]
shot = sys.argv[2] if len(sys.argv) > 2 else None
URL = "http://localhost:8000/"
PORT = 9222


def figure(what, seconds):
    print(f"FIGURE {tag} {what} {seconds:.1f}", flush=True)


def finish(ok, detail):
    print(f"RESULT {tag} {'ok' if ok else 'fail'} {detail}", flush=True)


class Bidi:
    def __init__(self, url):
        # Firefox refuses a handshake carrying an Origin header (400) unless allowed by
        # --remote-allow-origins; websocket-client sends one unless told not to.
        self.ws = websocket.create_connection(url, timeout=300, suppress_origin=True)
        self.ids = itertools.count(1)

    def call(self, method, **params):
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") != n:
                continue  # an event
            if msg.get("type") == "error":
                raise RuntimeError(f"{method}: {msg.get('error')}: {msg.get('message')}")
            return msg["result"]

    def evaluate(self, context, expression):
        r = self.call(
            "script.evaluate",
            expression=expression,
            target={"context": context},
            awaitPromise=True,
            userActivation=True,
        )
        if r.get("type") == "exception":
            raise RuntimeError(json.dumps(r.get("exceptionDetails"))[:400])
        return r["result"].get("value")


profile = f"/tmp/firefox-profile-{tag}"
os.makedirs(profile, exist_ok=True)
with open(os.path.join(profile, "user.js"), "w") as f:
    f.write('user_pref("browser.shell.checkDefaultBrowser", false);\n')
    f.write('user_pref("datareporting.policy.dataSubmissionEnabled", false);\n')
    # A headless window never gets the OS focus; in test mode Firefox's focus manager treats
    # the raised window as active anyway (WebAuthn needs the active tab, below).
    f.write('user_pref("focusmanager.testmode", true);\n')
    f.write('user_pref("remote.log.level", "Info");\n')
    f.write('user_pref("logging.webauthn_authrs", "debug");\n')

t0 = time.monotonic()
log = open(f"/tmp/firefox-{tag}.log", "wb")
browser = subprocess.Popen(
    ["firefox-esr", "--headless", "--no-remote", "--profile", profile,
     f"--remote-debugging-port={PORT}", "--window-size=640,480", "about:blank"],
    stdout=log, stderr=subprocess.STDOUT,
)
ok = False
try:
    # Firefox announces the BiDi endpoint on its output once it is ready.
    endpoint = None
    while endpoint is None:
        if browser.poll() is not None:
            raise RuntimeError(f"firefox exited with {browser.returncode}")
        with open(f"/tmp/firefox-{tag}.log", "rb") as f:
            m = re.search(rb"WebDriver BiDi listening on (ws://\S+)", f.read())
        if m:
            endpoint = m.group(1).decode().rstrip("/") + "/session"
        else:
            time.sleep(0.2)
    bidi = Bidi(endpoint)
    bidi.call("session.new", capabilities={})
    context = bidi.call("browsingContext.getTree")["contexts"][0]["context"]
    bidi.call("browsingContext.navigate", context=context, url=URL, wait="complete")
    # Firefox answers WebAuthn only in the active tab (else NotAllowedError "CredentialsContainer
    # request is not allowed."); a headless window is not activated by itself.
    bidi.call("browsingContext.activate", context=context)
    bidi.evaluate(context, "window.focus()")
    print(f"NOTE {tag} document.hasFocus() = {bidi.evaluate(context, 'document.hasFocus()')}", flush=True)
    figure("browser-start", time.monotonic() - t0)
    if os.environ.get("PK_VIA"):
        bidi.evaluate(context, f"via({json.dumps(os.environ['PK_VIA'])})")

    t0 = time.monotonic()
    reg = json.loads(bidi.evaluate(context, f"run(signUp, {json.dumps(tag + '-user')}).then(JSON.stringify)"))
    figure("create", time.monotonic() - t0)
    if not reg.get("ok"):
        finish(False, "create: " + json.dumps(reg))
    else:
        t0 = time.monotonic()
        auth = json.loads(bidi.evaluate(context, "run(signIn).then(JSON.stringify)"))
        figure("get", time.monotonic() - t0)
        if not auth.get("ok"):
            finish(False, "get: " + json.dumps(auth))
        elif auth.get("user") != f"{tag}-user" or not auth.get("uv"):
            finish(False, "get: wrong user or no UV: " + json.dumps(auth))
        else:
            ok = True
            finish(True, f"signed in as {auth['user']} (create {reg['ms']} ms, get {auth['ms']} ms in the page)")
    if shot:
        data = bidi.call("browsingContext.captureScreenshot", context=context)["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(data))
    try:
        bidi.call("session.end")
    except Exception:
        pass
except Exception as e:
    finish(False, f"{type(e).__name__}: {e}")
finally:
    browser.terminate()
    try:
        browser.wait(30)
    except subprocess.TimeoutExpired:
        browser.kill()
sys.exit(0 if ok else 1)
