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


def test_compose_gateway_healthcheck_probes_a_real_admin_endpoint(bridge_factory):
    """The compose file's healthcheck command, run here against a real gateway's
    --admin port (the compose file's 9000 swapped for a free port): healthy while
    the gateway runs, unhealthy where nothing answers."""
    import yaml

    from .harness import free_port

    gateway = yaml.safe_load(compose("config"))["services"]["gateway"]
    assert "--admin" in gateway["command"]
    argv = gateway["healthcheck"]["test"]
    assert argv[0] == "CMD" and "/healthz" in argv[-1]

    def probe(port):
        cmd = [a.replace("/9000", f"/{port}") for a in argv[1:]]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode

    port = free_port()
    bridge_factory(gateway_args=["--admin", f"127.0.0.1:{port}"])
    assert probe(port) == 0
    assert probe(free_port()) != 0
