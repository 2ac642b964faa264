import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pocketkey_fixtures import (  # noqa: E402,F401
    authenticator,
    ctap2,
    device,
    fresh_authenticator,
    manual_authenticator,
    pk,
    pytest_runtest_makereport,
)
