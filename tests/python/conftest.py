import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
# pocketkey-relay keeps its routing data in SQLite under ~/.local/state by default: in memory here.
os.environ.setdefault("POCKETKEY_RELAY_STATE", ":memory:")

from org_db import PostgresServer  # noqa: E402
from pocketkey_fixtures import (  # noqa: E402,F401
    authenticator,
    ctap2,
    device,
    fresh_authenticator,
    manual_authenticator,
    pk,
    pytest_runtest_makereport,
)


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole run, shared by every org suite (each test makes its
    own database in it): started on first use only."""
    server = PostgresServer()
    yield server
    server.stop()
