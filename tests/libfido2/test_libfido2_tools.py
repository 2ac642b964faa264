"""libfido2's own command-line tools (Debian fido2-tools) against the UDP authenticator.

The tools reach the UDP port through udp_preload.so (LD_PRELOAD), which installs UDP I/O
functions for device paths "udp:HOST:PORT". They read PINs from /dev/tty when there is
one and from stdin otherwise; every tool runs in a new session (no controlling terminal),
so PINs are fed on stdin.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PIN = "1357924680"


@dataclass
class Tools:
    preload: str
    path: str
    workdir: Path
    pin_set: bool = False
    creds: dict = field(default_factory=dict)

    def run(self, *args, stdin: str = "", extra_env=None, check=True, timeout=60):
        env = dict(os.environ)
        env["LD_PRELOAD"] = self.preload
        env.update(extra_env or {})
        p = subprocess.run(
            list(args),
            input=stdin.encode(),
            capture_output=True,
            env=env,
            timeout=timeout,
            start_new_session=True,  # no controlling tty: PIN prompts read stdin
            cwd=self.workdir,
        )
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise AssertionError(
                f"`{' '.join(args)}` exited with {p.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
            )
        return p.returncode, out, err

    def write(self, name: str, lines: list[str]) -> Path:
        f = self.workdir / name
        f.write_text("".join(line + "\n" for line in lines))
        return f

    def ensure_pin(self):
        if not self.pin_set:
            self.run("fido2-token", "-S", self.path, stdin=f"{PIN}\n{PIN}\n")
            self.pin_set = True


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def tools(authenticator, preload, tmp_path_factory):
    return Tools(preload, authenticator.udp_path, tmp_path_factory.mktemp("fido2-tools"))


def test_token_info(pk, tools):
    _, out, _ = tools.run("fido2-token", "-I", tools.path)
    versions = re.search(r"^version strings: (.*)$", out, re.M)
    assert versions, out
    assert {v.strip() for v in versions.group(1).split(",")} == {"U2F_V2", "FIDO_2_0", "FIDO_2_1"}
    protos = re.search(r"^pin protocols: (.*)$", out, re.M)
    assert protos and [p.strip() for p in protos.group(1).split(",")] == ["2", "1"], out
    opts = {o.strip() for o in re.search(r"^options: (.*)$", out, re.M).group(1).split(",")}
    for o in ("rk", "up", "uv", "credMgmt", "pinUvAuthToken", "largeBlobs"):
        assert o in opts, f"option {o} not shown by fido2-token: {opts}"
    assert "noclientPin" in opts, f"fresh key must report clientPin=false: {opts}"
    algs = re.search(r"^algorithms: (.*)$", out, re.M)
    assert algs and "es256" in algs.group(1) and "eddsa" in algs.group(1), out
    exts = re.search(r"^extension strings: (.*)$", out, re.M)
    assert exts and "hmac-secret" in exts.group(1) and "credProtect" in exts.group(1), out


def test_list_devices(pk, tools):
    _, out, _ = tools.run("fido2-token", "-L", extra_env={"POCKETKEY_UDP_DEVICE": tools.path})
    # "<path>: vendor=0x…, product=0x… (…)" per device. The preload shim adds ours to the
    # list itself, so the listing alone proves nothing about the key: open the listed path.
    listed = [line.split(": vendor=", 1)[0] for line in out.splitlines() if ": vendor=" in line]
    assert tools.path in listed, out
    _, info, _ = tools.run("fido2-token", "-I", listed[listed.index(tools.path)])
    aaguid = pk.ctap2().get_info().aaguid
    assert re.search(rf"^aaguid: {bytes(aaguid).hex()}$", info, re.M), info


def test_set_pin(pk, tools):
    tools.ensure_pin()
    _, out, _ = tools.run("fido2-token", "-I", tools.path)
    opts = {o.strip() for o in re.search(r"^options: (.*)$", out, re.M).group(1).split(",")}
    assert "clientPin" in opts, opts
    assert re.search(r"^pin retries: 8$", out, re.M), out


@pytest.mark.parametrize("alg", ["es256", "eddsa"])
@pytest.mark.parametrize("resident", [True, False], ids=["rk", "non-rk"])
def test_make_verify_and_assert(pk, tools, alg, resident):
    tools.ensure_pin()
    rp_id = f"tools-{alg}-{'rk' if resident else 'nonrk'}.example"
    user_id = os.urandom(16)
    cdh = hashlib.sha256(os.urandom(32)).digest()
    tag = f"{alg}-{resident}"
    mc_in = tools.write(f"mc-{tag}.in", [b64(cdh), rp_id, "tools user", b64(user_id)])
    flags = ["-M", "-v"] + (["-r"] if resident else [])
    _, made, _ = tools.run("fido2-cred", *flags, "-i", str(mc_in), tools.path, alg,
                           stdin=f"{PIN}\n")
    lines = made.splitlines()
    assert len(lines) >= 6, made
    assert lines[0] == b64(cdh) and lines[1] == rp_id
    assert lines[2] == "packed", f"attestation format {lines[2]!r}"
    cred_file = tools.write(f"mc-{tag}.out", lines)

    # fido2-cred -V checks the attestation signature (self attestation: with the credential key).
    _, verified, _ = tools.run("fido2-cred", "-V", "-v", "-i", str(cred_file), alg)
    vlines = verified.splitlines()
    cred_id_b64 = vlines[0]
    assert cred_id_b64 == lines[4]
    pem = "\n".join(vlines[1:]) + "\n"
    assert "BEGIN PUBLIC KEY" in pem
    key_file = tools.workdir / f"key-{tag}.pem"
    key_file.write_text(pem)
    tools.creds[rp_id] = (cred_id_b64, user_id)

    # Assertion with the credential ID, user presence and PIN/UV.
    ga_cdh = hashlib.sha256(os.urandom(32)).digest()
    ga_in = tools.write(f"ga-{tag}.in", [b64(ga_cdh), rp_id, cred_id_b64])
    _, asserted, _ = tools.run("fido2-assert", "-G", "-p", "-v", "-i", str(ga_in), tools.path,
                               stdin=f"{PIN}\n")
    alines = asserted.splitlines()
    assert alines[0] == b64(ga_cdh) and alines[1] == rp_id, asserted
    ga_out = tools.write(f"ga-{tag}.out", alines[:4])
    tools.run("fido2-assert", "-V", "-p", "-v", "-i", str(ga_out), str(key_file), alg)

    # A tampered signature input must not verify.
    bad = tools.write(f"ga-{tag}.bad", [b64(bytes(32)), rp_id, alines[2], alines[3]])
    rc, _, _ = tools.run("fido2-assert", "-V", "-p", "-i", str(bad), str(key_file), alg,
                         check=False)
    assert rc != 0, "fido2-assert -V accepted a signature over a different clientDataHash"

    if resident:
        # Discoverable: no credential ID in the input; the user ID comes back.
        rk_in = tools.write(f"ga-rk-{tag}.in", [b64(ga_cdh), rp_id])
        _, asserted, _ = tools.run("fido2-assert", "-G", "-r", "-p", "-v", "-i", str(rk_in),
                                   tools.path, stdin=f"{PIN}\n")
        rlines = asserted.splitlines()
        assert len(rlines) >= 5, asserted
        assert rlines[4] == b64(user_id)
        tools.run("fido2-assert", "-V", "-p", "-v", "-i",
                  str(tools.write(f"ga-rk-{tag}.out", rlines[:4])), str(key_file), alg)


def test_list_resident_credentials(pk, tools):
    tools.ensure_pin()
    resident = {rp: v for rp, v in tools.creds.items() if "-rk." in rp}
    assert resident, "run after test_make_verify_and_assert"
    _, out, _ = tools.run("fido2-token", "-L", "-r", tools.path, stdin=f"{PIN}\n")
    for rp_id in resident:
        assert rp_id in out, f"{rp_id} not listed:\n{out}"
        assert "nonrk" not in out, f"non-discoverable credential listed as an RP:\n{out}"
    rp_id, (cred_id_b64, _) = next(iter(resident.items()))
    _, out, _ = tools.run("fido2-token", "-L", "-k", rp_id, tools.path, stdin=f"{PIN}\n")
    assert cred_id_b64 in out, out

    _, out, _ = tools.run("fido2-token", "-I", "-c", tools.path, stdin=f"{PIN}\n")
    m = re.search(r"existing rk\(s\): (\d+)", out)
    assert m and int(m.group(1)) == len(resident), out


def test_delete_resident_credential(pk, tools):
    tools.ensure_pin()
    resident = {rp: v for rp, v in tools.creds.items() if "-rk." in rp}
    assert resident, "run after test_make_verify_and_assert"
    rp_id, (cred_id_b64, _) = next(iter(resident.items()))
    tools.run("fido2-token", "-D", "-i", cred_id_b64, tools.path, stdin=f"{PIN}\n")
    _, out, _ = tools.run("fido2-token", "-L", "-r", tools.path, stdin=f"{PIN}\n")
    listed = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert listed == set(resident) - {rp_id}, out
    _, out, _ = tools.run("fido2-token", "-I", "-c", tools.path, stdin=f"{PIN}\n")
    assert re.search(rf"existing rk\(s\): {len(resident) - 1}$", out, re.M), out
