import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# pocketkey-relay keeps its routing data in SQLite under ~/.local/state by default: in memory here.
os.environ.setdefault("POCKETKEY_RELAY_STATE", ":memory:")

from pocketkey_fixtures import (  # noqa: E402,F401
    authenticator,
    ctap2,
    device,
    fresh_authenticator,
    manual_authenticator,
    pk,
    pytest_runtest_makereport,
)
