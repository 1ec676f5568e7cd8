"""Fixtures for the integration tests: real gateway, real workers.

- ``bus_url``: a fresh bus URL per test, parametrized over the transports
  named in ASGI_BRIDGE_TEST_BUSES (comma-separated, default ``zmq``; ``redis``
  starts a private redis-server on a free port).
- ``bridge_factory``: ``start(app, gateway_args=..., workers=N, ...)``
  starts a gateway and N workers on that bus and waits until they serve;
  everything started is stopped when the test ends.
- On a failing test, the tail of every live process's log is attached to the
  report.
"""

from __future__ import annotations

import os
import socket
from typing import Iterable, Optional

import pytest

from .harness import (LIVE, Bridge, HarnessError, Proc, free_port,
                      gateway_binary, wait_until)

BUS_SCHEMES = [s.strip() for s in
               os.environ.get("ASGI_BRIDGE_TEST_BUSES", "zmq").split(",") if s.strip()]
LOG_TAIL_LINES = int(os.environ.get("ASGI_BRIDGE_TEST_LOG_LINES", "150"))


@pytest.fixture(scope="session")
def gateway_path():
    """Fails (never skips) every test when the gateway is not built."""
    try:
        return gateway_binary()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


def _start_redis(tmp_path) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc("redis-server",
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                tmp_path / "redis.log")

    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    wait_until(up, 10, "redis-server to answer PING")
    return proc, port


@pytest.fixture(params=BUS_SCHEMES)
def bus_url(request, tmp_path):
    scheme = request.param
    if scheme == "zmq":
        yield f"zmq://127.0.0.1:{free_port()}"
    elif scheme == "zmq+ipc":
        yield f"zmq+ipc://{tmp_path}/bus.sock"
    elif scheme == "redis":
        proc, port = _start_redis(tmp_path)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.close()
    else:
        raise ValueError(f"unknown bus scheme {scheme!r} in ASGI_BRIDGE_TEST_BUSES")


@pytest.fixture
def bridge_factory(gateway_path, bus_url, tmp_path):
    bridges: list[Bridge] = []

    def start(app: Optional[str] = "basic_app:app", *,
              gateway_args: Iterable[str] = (), workers: int = 1,
              worker_args: Iterable[str] = (), ready: bool = True,
              ready_path: str = "/__ready") -> Bridge:
        b = Bridge(bus_url, tmp_path / f"bridge{len(bridges) + 1}", app,
                   gateway_args=gateway_args, worker_args=worker_args)
        bridges.append(b)
        b.start_gateway()
        for _ in range(workers):
            b.start_worker()
        if ready and workers:
            b.wait_ready(ready_path)
        return b

    yield start
    for b in reversed(bridges):
        b.close()


@pytest.fixture
def bridge(bridge_factory):
    """The basic test app behind one gateway with default options."""
    return bridge_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for proc in list(LIVE):
            state = "running" if proc.alive() else f"exited {proc.returncode}"
            report.sections.append(
                (f"log of {proc.name} (pid {proc.pid}, {state}) {proc.log_path}",
                 proc.log(LOG_TAIL_LINES)))
