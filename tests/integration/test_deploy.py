"""deploy/: the compose file validates, and the Dockerfiles copy what exists.
(No Docker engine runs here: images are not built.)"""

import re
import shutil
import subprocess

from .harness import REPO

DEPLOY = REPO / "deploy"


def compose(*args):
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (scripts/install-deps installs it)"
    out = subprocess.run([exe, "-f", str(DEPLOY / "docker-compose.yml"), *args],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_compose_file_is_valid():
    compose("config", "-q")
    assert sorted(compose("config", "--services").split()) == ["gateway", "worker1", "worker2"]


def test_compose_workers_reach_the_gateway_bus():
    config = compose("config")
    assert config.count("zmq://gateway:5555") == 2
    assert "zmq://0.0.0.0:5555" in config


def test_dockerfiles_copy_existing_paths():
    for name in ("Dockerfile.gateway", "Dockerfile.worker"):
        text = (DEPLOY / name).read_text()
        for src in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
            assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
        assert re.search(r"^FROM debian:12", text, re.M), f"{name} is not based on Debian 12"
