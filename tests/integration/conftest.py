"""Fixtures for the integration tests: real gateway, real workers.

- ``bus_url``: a fresh bus URL per test, parametrized over the buses it runs
  on: ``zmq`` by default; ``zmq`` and ``redis`` for a test (or module) marked
  ``every_bus`` (bus-independent behaviour). ``zmq_only("why")`` marks a test
  that relies on what only ZeroMQ does (``ready``, the gateway routing by
  capacity...) inside such a module. ASGI_BRIDGE_TEST_BUSES (comma-separated:
  ``zmq``, ``zmq+ipc``, ``redis``, ``rediss``, ``curve``) runs every test over each of
  those buses instead, ZeroMQ-only ones over its ZeroMQ buses. ``curve`` is
  ZeroMQ with CURVE: keys made per test, passed to the gateway and the
  workers the harness starts (``harness.BusUrl``) and to the scripted
  worker (fakeworker). Redis: one private
  redis-server per session (free port, no persistence), a database per test;
  ``rediss``: one with TLS and client certificates (made per session), the
  TLS options passed as for ``curve``.
- ``bridge_factory``: ``start(app, gateway_args=..., workers=N, ...)``
  starts a gateway and N workers on that bus and waits until they serve;
  everything started is stopped when the test ends.
- On a failing test, the tail of every live process's log is attached to the
  report.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from pathlib import Path
from typing import Iterable, Optional

import pytest

from .fakeworker import FakeWorker
from .harness import (LIVE, Bridge, BusUrl, HarnessError, Proc, free_port,
                      gateway_binary, wait_until)
from .tlscerts import Pki

ALL_BUSES = ["zmq", "redis"]
# None: each test's markers choose (see above).
BUS_SCHEMES = ([s.strip() for s in os.environ["ASGI_BRIDGE_TEST_BUSES"].split(",") if s.strip()]
               if os.environ.get("ASGI_BRIDGE_TEST_BUSES") else None)
REDIS_DATABASES = 10000  # one per test; the session's server is never flushed
_redis_dbs = itertools.count(1)
LOG_TAIL_LINES = int(os.environ.get("ASGI_BRIDGE_TEST_LOG_LINES", "150"))


@pytest.fixture(scope="session")
def gateway_path():
    """Fails (never skips) every test when the gateway is not built."""
    try:
        return gateway_binary()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "every_bus: bus-independent behaviour: runs over ZeroMQ and Redis")
    config.addinivalue_line(
        "markers", "zmq_only(reason): relies on what only the ZeroMQ bus does")


def buses_for(item) -> list[str]:
    if BUS_SCHEMES is not None:
        schemes = BUS_SCHEMES
    elif item.get_closest_marker("every_bus") is not None:
        schemes = ALL_BUSES
    else:
        schemes = ["zmq"]
    if item.get_closest_marker("zmq_only") is not None:
        schemes = [s for s in schemes if s.startswith("zmq")]
    return schemes


def pytest_generate_tests(metafunc):
    if "bus_url" not in metafunc.fixturenames:
        return
    schemes = buses_for(metafunc.definition)
    if not schemes:
        schemes = [pytest.param("zmq", marks=pytest.mark.skip(
            reason="ZeroMQ-only test; ASGI_BRIDGE_TEST_BUSES names no ZeroMQ bus"))]
    metafunc.parametrize("bus_url", schemes, indirect=True)


def _start_redis(tmp_path, *args: str) -> tuple[Proc, int]:
    if shutil.which("redis-server") is None:
        raise HarnessError("redis-server not found: scripts/install-deps installs it "
                           "(the tests start their own, never a system service)")
    port = free_port()
    proc = Proc("redis-server",
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *args],
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


def start_tls_redis(tmp_path: Path, pki: Pki, auth_clients: bool,
                    extra: Iterable[str] = (), port: Optional[int] = None) -> tuple[Proc, int]:
    """redis-server with a TLS port; its plain port stays open only for _start_redis's
    readiness probe (the tests use the TLS port alone). It listens on 127.0.0.2 too, an
    address its certificate does not name."""
    port = port or free_port()
    proc, _ = _start_redis(tmp_path, "--bind", "127.0.0.1", "127.0.0.2", "--tls-port", str(port),
                           "--tls-cert-file", str(pki.server[0]), "--tls-key-file", str(pki.server[1]),
                           "--tls-ca-cert-file", str(pki.ca),
                           "--tls-auth-clients", "yes" if auth_clients else "no", *extra)
    return proc, port


@pytest.fixture(scope="session")
def rediss_server(tmp_path_factory):
    """A redis-server with TLS (Proc, with .port and .tls_args: the options a gateway or a
    worker needs to trust it) shared by the session's ``rediss`` tests."""
    pki = Pki(tmp_path_factory.mktemp("rediss") / "pki")
    proc, port = start_tls_redis(pki.root.parent, pki, auth_clients=True,
                                 extra=("--databases", str(REDIS_DATABASES)))
    proc.port = port
    proc.tls_args = ["--bus-tls-ca-file", str(pki.ca), *pki.client_args()]
    yield proc
    proc.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server (Proc, with .port) shared by the session's Redis tests."""
    proc, port = _start_redis(tmp_path_factory.mktemp("redis"),
                              "--databases", str(REDIS_DATABASES))
    proc.port = port
    yield proc
    proc.close()


def _curve_bus(keys: Path) -> BusUrl:
    """A loopback ZeroMQ bus with CURVE: a gateway key pair, one worker key pair on the
    gateway's allow-list (every worker of the test shares it)."""
    import zmq.auth
    (keys / "authorized").mkdir(parents=True)
    zmq.auth.create_certificates(keys, "gateway")
    zmq.auth.create_certificates(keys / "authorized", "worker")
    return BusUrl(f"zmq://127.0.0.1:{free_port()}",
                  gateway_args=["--bus-secret-key", str(keys / "gateway.key_secret"),
                                "--bus-authorized-keys", str(keys / "authorized")],
                  worker_args=["--bus-server-key", str(keys / "gateway.key"),
                               "--bus-secret-key", str(keys / "authorized" / "worker.key_secret")])


@pytest.fixture
def bus_url(request, tmp_path):
    scheme = request.param  # set by pytest_generate_tests
    if scheme == "zmq":
        yield f"zmq://127.0.0.1:{free_port()}"
    elif scheme == "zmq+ipc":
        yield f"zmq+ipc://{tmp_path}/bus.sock"
    elif scheme == "curve":
        yield _curve_bus(tmp_path / "curve-keys")
    elif scheme == "redis":
        server = request.getfixturevalue("redis_server")
        if not server.alive():
            raise HarnessError(f"the session's redis-server exited: {server.log(20)}")
        yield f"redis://127.0.0.1:{server.port}/{next(_redis_dbs) % REDIS_DATABASES}"
    elif scheme == "rediss":
        server = request.getfixturevalue("rediss_server")
        if not server.alive():
            raise HarnessError(f"the session's TLS redis-server exited: {server.log(20)}")
        yield BusUrl(f"rediss://127.0.0.1:{server.port}/{next(_redis_dbs) % REDIS_DATABASES}",
                     gateway_args=server.tls_args, worker_args=server.tls_args)
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


# A gateway with no worker, for tests that add scripted ones (fakeworker.py)
# to make a worker misbehave: fake_bridge.add_fake(**FakeWorker options).
@pytest.fixture
def fake_bridge(bridge_factory, bus_url):
    if not bus_url.startswith("zmq://"):
        pytest.skip("the scripted worker speaks ZeroMQ only")
    b = bridge_factory(None, workers=0, gateway_args=["--dispatch-timeout", "10"])
    fakes = []

    def add_fake(**kwargs):
        f = FakeWorker(b.bus_url, **kwargs)
        fakes.append(f)
        return f
    b.add_fake = add_fake
    yield b
    for f in fakes:
        f.close()


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
