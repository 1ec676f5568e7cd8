"""Smoke test of the Channels fan-out benchmark: ``bench/fanout --quick`` with asgi-bridge
(BusChannelLayer, ZeroMQ) and uvicorn + channels_redis runs to the end, every message reaching
every member. Only the shape of the output is checked, no timing: the figures depend on the
machine and its load. Needs the gateway in build/bin (or build-bench/bin), taskset,
redis-server, uvicorn and python3-channels-redis.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .harness import REPO

RUN = REPO / "bench" / "fanout"
ROWS = ["asgi-bridge, BusChannelLayer, ZeroMQ bus", "uvicorn --workers 2, channels_redis"]


def test_bench_fanout_quick(tmp_path):
    pytest.importorskip("channels_redis", reason="bench/fanout compares with channels_redis")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if os.environ.get("ASGI_BRIDGE_BIN"):  # the gateway under test, as the other tests
        env["ASGI_BRIDGE_BENCH_BIN"] = os.path.dirname(os.environ["ASGI_BRIDGE_BIN"])
    result = subprocess.run(
        ["/usr/bin/python3", str(RUN), "--quick", "--servers", "bridge-zmq,uvicorn-redis",
         "--logs", str(tmp_path), "--json", str(tmp_path / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for server in ROWS:
        row = next((r for r in rows if r.startswith(f"| {server} |")), None)
        assert row is not None and row.rstrip().endswith("| 0 |"), report  # none lost
