#!/usr/bin/env python3
"""Drives Debian's headless Chromium through chromedriver (Selenium) on the browser check's
page: navigator.credentials.create then .get against the USB security key in the VM.

    chromium.py TAG [SCREENSHOT.png] [--usernameless]

--usernameless: after the sign-in with an allow list, also try one with an empty list.

Prints `FIGURE TAG <what> <seconds>` lines and `RESULT TAG ok|fail <detail>`; exits non-zero on
a failure. The relying party (rp.py) must listen on http://localhost:8000.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service

args = [a for a in sys.argv[1:] if not a.startswith("--")]
tag = args[0]
shot = args[1] if len(args) > 1 else None
usernameless = "--usernameless" in sys.argv
URL = "http://localhost:8000/"


def figure(what, seconds):
    print(f"FIGURE {tag} {what} {seconds:.1f}", flush=True)


def finish(ok, detail):
    print(f"RESULT {tag} {'ok' if ok else 'fail'} {detail}", flush=True)


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in (
    "--headless=new",
    "--no-sandbox",  # root in the VM
    "--disable-gpu",
    "--window-size=640,480",
    "--no-first-run",
    "--user-data-dir=/tmp/chromium-profile",
    # FIDO and HID logging, to see where a request stops.
    "--enable-logging=stderr",
    "--vmodule=*/device/fido/*=2,*/webauthn/*=2,*/services/device/hid/*=1",
):
    options.add_argument(arg)
# --enable-chrome-logs: Chromium's own log (the vmodule lines above) into chromedriver's.
service = Service(
    "/usr/bin/chromedriver",
    log_path=f"/tmp/chromedriver-{tag}.log",
    service_args=["--enable-chrome-logs"],
)

t0 = time.monotonic()
driver = webdriver.Chrome(service=service, options=options)
driver.get(URL)
figure("browser-start", time.monotonic() - t0)
if os.environ.get("PK_VIA"):
    driver.execute_script("via(arguments[0])", os.environ["PK_VIA"])


def page(call, timeout):
    """Runs `call` (a page function, see page.html) and returns its result dict."""
    driver.set_script_timeout(timeout)
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];" f"run({call}).then(done);"
    )


ok = False
try:
    # A key that waits for its user keeps the browser waiting; bound it well above the VM's pace.
    t0 = time.monotonic()
    reg = page(f"signUp, {json.dumps(tag + '-user')}", 600)
    figure("create", time.monotonic() - t0)
    if not reg.get("ok"):
        finish(False, "create: " + json.dumps(reg))
    else:
        t0 = time.monotonic()
        auth = page("signIn, true", 600)
        figure("get", time.monotonic() - t0)
        if not auth.get("ok"):
            finish(False, "get: " + json.dumps(auth))
        elif auth.get("user") != f"{tag}-user" or not auth.get("uv"):
            finish(False, "get: wrong user or no UV: " + json.dumps(auth))
        else:
            ok = True
            finish(True, f"signed in as {auth['user']} (create {reg['ms']} ms, get {auth['ms']} ms in the page)")
    if shot:
        driver.save_screenshot(shot)
    if ok and usernameless:
        # An empty allowCredentials list: headless Chromium has no one to answer an account
        # chooser, so this is reported, not required.
        t0 = time.monotonic()
        try:
            r = page("signIn, false", 150)
            figure("get-usernameless", time.monotonic() - t0)
            print(f"NOTE {tag} usernameless get: {json.dumps(r)}", flush=True)
        except TimeoutException:
            print(f"NOTE {tag} usernameless get: no answer within 150 s", flush=True)
finally:
    driver.quit()
sys.exit(0 if ok else 1)
