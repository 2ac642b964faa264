"""The files that let phones open activation links in the app (App Links on Android,
Universal Links on iOS): `pocketkey-org serve --android-app PACKAGE:SHA256 --ios-app
TEAMID.BUNDLE` serves `/.well-known/assetlinks.json` and
`/.well-known/apple-app-site-association` as JSON without an API key, and answers 404 for
each platform not configured. Whether Android and iOS accept them (the manifest's
`autoVerify` filter, the `applinks:` entitlement) cannot be checked here: no device."""

from __future__ import annotations

import json
import subprocess

from test_org import BIN, Org

PRINT = "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5"
ROTATED = "AA" * 31 + "0b"


def well_known(org, name):
    status, headers, raw = org.request("GET", "/.well-known/" + name, key=None)
    return status, headers["Content-Type"], json.loads(raw)


def test_the_configured_apps_are_served_as_json_without_an_api_key(tmp_path):
    org = Org(tmp_path, "--android-app", "com.pocketkey.app:" + PRINT,
              "--android-app", "com.pocketkey.app:" + ROTATED,
              "--ios-app", "ABCDE12345.com.pocketkey.app")
    try:
        status, content_type, statements = well_known(org, "assetlinks.json")
        assert (status, content_type) == (200, "application/json")
        rotated = ":".join(ROTATED.upper()[i:i + 2] for i in range(0, 64, 2))
        assert statements == [{
            "relation": ["delegate_permission/common.handle_all_urls"],
            "target": {"namespace": "android_app", "package_name": "com.pocketkey.app",
                       "sha256_cert_fingerprints": [PRINT, rotated]},
        }]
        status, content_type, aasa = well_known(org, "apple-app-site-association")
        assert (status, content_type) == (200, "application/json")
        [details] = aasa["applinks"]["details"]
        assert details["appID"] == "ABCDE12345.com.pocketkey.app"
        assert details["appIDs"] == ["ABCDE12345.com.pocketkey.app"]
        assert details["paths"] == ["/activate/*"]
        assert details["components"][0]["/"] == "/activate/*"
    finally:
        org.stop()


def test_a_platform_not_configured_is_404(tmp_path):
    org = Org(tmp_path, "--ios-app", "ABCDE12345.com.pocketkey.app")
    try:
        status, content_type, body = well_known(org, "assetlinks.json")
        assert (status, content_type, body["error"]) == (404, "application/json", "not_found")
        assert "--android-app" in body["message"]
        assert well_known(org, "apple-app-site-association")[0] == 200
    finally:
        org.stop()
    (tmp_path / "bare").mkdir()
    bare = Org(tmp_path / "bare")
    try:
        for name in ("assetlinks.json", "apple-app-site-association"):
            assert well_known(bare, name)[0] == 404, name
    finally:
        bare.stop()


def test_malformed_app_flags_stop_serve_with_the_flag_named(tmp_path):
    org = Org(tmp_path)
    org.stop()
    for flag, value in [("--android-app", "com.pocketkey.app"), ("--android-app", "com.pocketkey.app:ABCD"),
                        ("--ios-app", "com.pocketkey.app"), ("--ios-app", "abcde12345.com.pocketkey.app")]:
        proc = subprocess.run([BIN, "serve", "--state-dir", str(org.state), "--listen", "127.0.0.1:0",
                               "--public-url", "https://org.example.test", flag, value],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and flag in proc.stderr, (value, proc.stderr)
        assert "listening:" not in proc.stdout
