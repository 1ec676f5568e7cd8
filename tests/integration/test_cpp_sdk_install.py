"""The C++ worker SDK as another project uses it: `cmake --install` of our
build into a fresh prefix, a project outside the source tree
(apps/installed_sdk) configured with find_package(asgi_bridge) against that
prefix only, built, and its worker serving a real gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import Proc, gateway_binary, request

APP_DIR = Path(__file__).parent / "apps" / "installed_sdk"


def run_step(argv: list, what: str, timeout: float) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed_worker(tmp_path_factory) -> Path:
    """The external project's worker executable, built on the installed SDK."""
    build_dir = gateway_binary().parent.parent
    if not (build_dir / "cmake_install.cmake").is_file():
        pytest.fail(f"{build_dir} is not a CMake build directory", pytrace=False)
    base = tmp_path_factory.mktemp("installed-sdk")
    prefix, app_build = base / "prefix", base / "build"
    run_step(["cmake", "--install", build_dir, "--prefix", prefix], "cmake --install", 120)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    env_launcher = os.environ.get("CMAKE_CXX_COMPILER_LAUNCHER")
    launcher = [f"-DCMAKE_CXX_COMPILER_LAUNCHER={env_launcher}"] if env_launcher else []
    run_step(["cmake", "-S", APP_DIR, "-B", app_build, *generator, *launcher,
              f"-DCMAKE_PREFIX_PATH={prefix}"], "configuring the external project", 120)
    run_step(["cmake", "--build", app_build], "building the external project", 600)
    return app_build / "installed-sdk-worker"


def test_install_layout(installed_worker):
    prefix = installed_worker.parent.parent / "prefix"
    for rel in ["include/asgi_bridge/worker/run.hpp",
                "include/asgi_bridge/protocol/codec.hpp",
                "include/asgi_bridge/bus/transport.hpp",
                "bin/asgi-bridge", "bin/asgi-bridge-example-chat"]:
        assert (prefix / rel).is_file(), rel
    configs = list(prefix.glob("lib*/**/asgi_bridgeConfig.cmake"))
    assert len(configs) == 1, configs


def test_external_worker_serves_a_gateway(bridge_factory, installed_worker, tmp_path):
    bridge = bridge_factory(None, workers=0)
    worker = Proc("installed-sdk", [str(installed_worker), "--bus", bridge.bus_url],
                  tmp_path / "installed-sdk.log")
    bridge.procs.append(worker)
    bridge.wait_ready()
    r = request(bridge.port, "GET", "/from/outside?x=1")
    assert (r.status, r.body) == (200, b"installed SDK: GET /from/outside"), worker.log()
