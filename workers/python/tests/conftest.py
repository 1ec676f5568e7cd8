"""Test setup: the package on sys.path and a time bound on every test."""

import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)  # workers/python
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

TEST_TIMEOUT = 60  # seconds: no test may hang the suite

# scripts/test runs these tests a second time with ASGI_BRIDGE_NO_NATIVE=1: on the
# pure-Python codec alone, as `python3 -m asgi_bridge --no-native` (wire.py).
from asgi_bridge import wire  # noqa: E402

wire.select(os.environ.get("ASGI_BRIDGE_NO_NATIVE", "").lower() not in ("1", "true", "yes", "on"))


@pytest.fixture(autouse=True)
def _time_bound():
    """Fail a test that runs longer than TEST_TIMEOUT (no pytest-timeout on Debian 12)."""
    def expired(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT}s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
