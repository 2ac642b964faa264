import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

from pocketkey_fixtures import (  # noqa: E402,F401
    authenticator,
    fresh_authenticator,
    pk,
    pytest_runtest_makereport,
)

TOOLS = ("fido2-token", "fido2-cred", "fido2-assert")


@pytest.fixture(scope="session")
def preload(tmp_path_factory) -> str:
    """Path of udp_preload.so: $POCKETKEY_UDP_PRELOAD (scripts/test.sh builds it), else build
    it here (it is one small C file)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"libfido2 tools missing: {missing} (apt-get install fido2-tools)")
    env = os.environ.get("POCKETKEY_UDP_PRELOAD")
    if env:
        assert Path(env).is_file(), f"POCKETKEY_UDP_PRELOAD={env} does not exist"
        return env
    out = tmp_path_factory.mktemp("preload") / "udp_preload.so"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libfido2"], capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "udp_preload.c"),
                    *flags, "-ldl"], check=True)
    return str(out)
