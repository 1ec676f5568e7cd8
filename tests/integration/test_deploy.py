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


def dockerfile_stages(name):
    """The Dockerfile's stages, split at each FROM: [build, runtime] here."""
    return re.split(r"^FROM ", (DEPLOY / name).read_text(), flags=re.M)[1:]


def test_gateway_image_builds_with_every_package_cmake_requires():
    """cmake/dependencies.cmake names the Debian -dev package of each library it
    requires: the image's build stage must install every one (the jemalloc
    commit once missed it)."""
    build_stage = dockerfile_stages("Dockerfile.gateway")[0]
    cmake = (REPO / "cmake" / "dependencies.cmake").read_text()
    required = re.findall(r'asgi_bridge_require\(\w+ "?([^"\n]+?)"? "', cmake)
    packages = {p for group in required for p in group.split()} - {"libgtest-dev"}
    assert packages, "no asgi_bridge_require() found"
    missing = sorted(p for p in packages if not re.search(rf"\s{re.escape(p)}\s", build_stage))
    assert not missing, f"Dockerfile.gateway's build stage does not install {missing}"


def test_gateway_image_ships_every_library_the_binary_links():
    """Each shared library the built gateway needs directly (objdump's NEEDED)
    comes from a Debian package the runtime stage installs, or from the base
    image's C and C++ runtime."""
    runtime_stage = dockerfile_stages("Dockerfile.gateway")[-1]
    from .harness import gateway_binary

    dump = subprocess.run(["objdump", "-p", str(gateway_binary())], capture_output=True,
                          text=True, timeout=30, check=True).stdout
    base_image = {"libc6", "libstdc++6", "libgcc-s1"}
    for library in re.findall(r"NEEDED\s+(\S+)", dump):
        owner = subprocess.run(["dpkg", "-S", f"*/{library}"], capture_output=True, text=True,
                               timeout=30)
        assert owner.returncode == 0, f"no Debian package holds {library}"
        package = owner.stdout.split(":", 1)[0].split(",")[0].strip()
        if package in base_image:
            continue
        assert re.search(rf"\s{re.escape(package)}\s", runtime_stage), \
            f"Dockerfile.gateway's runtime stage does not install {package} ({library})"
