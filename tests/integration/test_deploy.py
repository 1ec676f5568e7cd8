"""deploy/: the compose file validates, and the Dockerfiles copy what exists.
(No Docker engine runs here: images are not built.)"""

import functools
import json
import os
import re
import shutil
import subprocess

from .harness import REPO

DEPLOY = REPO / "deploy"


REDIS_PASSWORD = "test-password-1"  # what the user exports for cluster-redis.yml


def compose(*args, file="docker-compose.yml"):
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (scripts/install-deps installs it)"
    env = dict(os.environ, ASGI_BRIDGE_REDIS_PASSWORD=REDIS_PASSWORD)
    out = subprocess.run([exe, "-f", str(DEPLOY / file), *args],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_compose_file_is_valid():
    compose("config", "-q")
    assert sorted(compose("config", "--services").split()) == ["gateway", "keygen", "worker1",
                                                               "worker2"]


def test_compose_workers_reach_the_gateway_bus():
    config = compose("config")
    assert config.count("zmq://gateway:5555") == 2
    assert "zmq://0.0.0.0:5555" in config


def test_compose_bus_uses_curve_with_keys_from_its_keygen_service(tmp_path):
    """The bus listens on 0.0.0.0, so it must be CURVE (the gateway refuses to start
    otherwise). The keygen service's script, run here with the volumes as folders,
    makes the keys that the gateway and a worker, configured as in the compose file,
    then use: the worker serves through the gateway."""
    import yaml

    from .harness import Bridge, free_port, gateway_binary, request

    services = yaml.safe_load(compose("config"))["services"]
    keygen = services["keygen"]
    root = tmp_path / "keygen-root"  # the keygen container's / : its volumes where it mounts them
    volumes = {}  # volume name -> its folder here
    for volume in keygen["volumes"]:
        source, target = volume.split(":")[:2]
        volumes[source] = root / target.lstrip("/")
        volumes[source].mkdir(parents=True)

    def mounted(service, path):
        """Where `path` inside `service` is here."""
        for volume in services[service]["volumes"]:
            source, target = volume.split(":")[:2]
            if path == target or path.startswith(target + "/"):
                return str(volumes[source]) + path[len(target):]
        raise AssertionError(f"{service} mounts nothing at {path}")

    script = keygen["command"][0].replace("cd /", f"cd {root}/")
    script = script.replace("asgi-bridge keygen", f"{gateway_binary()} keygen")
    script = re.sub(r"chown -R \S+ ", "true ", script)  # the test is not root everywhere
    subprocess.run(["bash", "-c", script], check=True, timeout=60)
    subprocess.run(["bash", "-c", script], check=True, timeout=60)  # a second run keeps them

    gateway_env = services["gateway"]["environment"]
    assert "zmq://0.0.0.0:5555" in services["gateway"]["command"]
    gateway_args = ["--bus-secret-key", mounted("gateway", gateway_env["ASGI_BRIDGE_BUS_SECRET_KEY"]),
                    "--bus-authorized-keys",
                    mounted("gateway", gateway_env["ASGI_BRIDGE_BUS_AUTHORIZED_KEYS"])]
    worker_env = services["worker1"]["environment"]
    worker_args = ["--bus-server-key", mounted("worker1", worker_env["ASGI_BRIDGE_BUS_SERVER_KEY"]),
                   "--bus-secret-key", mounted("worker1", worker_env["ASGI_BRIDGE_BUS_SECRET_KEY"])]
    assert not list(volumes["worker-keys"].glob("gateway*_secret")), "no gateway secret for workers"
    assert not list(volumes["gateway-keys"].rglob("worker*_secret")), "no worker secret for the gateway"
    port = free_port()
    bridge = Bridge(f"zmq://0.0.0.0:{port}", tmp_path / "bridge", "basic_app:app")
    try:
        bridge.start_gateway(gateway_args)
        bridge.bus_url = f"zmq://127.0.0.1:{port}"
        bridge.start_worker(args=worker_args)
        bridge.wait_ready()
        assert request(bridge.port, "GET", "/").status == 200
        assert "CURVE on, 1 authorized worker keys" in bridge.gateway.log()
    finally:
        bridge.close()


def test_dockerfiles_copy_existing_paths():
    for name in ("Dockerfile.gateway", "Dockerfile.worker"):
        text = (DEPLOY / name).read_text()
        for src in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
            assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
        assert re.search(r"^FROM debian:12", text, re.M), f"{name} is not based on Debian 12"


def test_worker_image_compiles_the_native_fast_path(tmp_path):
    """The worker image's native stage, its compiler line run here on the same
    Debian: the package beside the module it makes runs on the native path."""
    stage = next(s for s in dockerfile_stages("Dockerfile.worker") if s.startswith("debian:12 AS native"))
    command = re.search(r"^RUN (g\+\+ .*?[^\\])$", stage, re.M | re.S).group(1).replace("\\\n", " ")
    shutil.copytree(REPO / "workers" / "python" / "native", tmp_path / "native")
    # Debian's python3-config: the first python3 on PATH may be another interpreter.
    env = dict(os.environ, PATH=f"/usr/bin:{os.environ.get('PATH', '')}")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, check=True, timeout=300)
    package = tmp_path / "image"
    shutil.copytree(REPO / "workers" / "python" / "asgi_bridge", package / "asgi_bridge",
                    ignore=shutil.ignore_patterns("_native*.so", "__pycache__"))
    built = list(tmp_path.glob("_native*.so"))
    assert len(built) == 1, built
    shutil.copy(built[0], package / "asgi_bridge")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import asgi_bridge._native as n; print(n.__file__)"],
                           cwd=package, capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, PYTHONPATH=str(package)))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(package / "asgi_bridge" / built[0].name)


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
    runtime_stage = next(stage for stage in dockerfile_stages("Dockerfile.gateway")
                         if stage.startswith("debian:12-slim AS runtime"))
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


@functools.lru_cache(maxsize=None)  # docker-compose takes seconds per run
def cluster_services(file):
    import yaml
    return yaml.safe_load(compose("config", file=file))["services"]


def test_cluster_compose_files_are_valid():
    assert sorted(cluster_services("cluster-zmq.yml")) == [
        "cpp-worker", "gateway1", "gateway2", "haproxy", "keygen", "python-worker1",
        "python-worker2"]
    assert sorted(cluster_services("cluster-redis.yml")) == [
        "cpp-worker1", "cpp-worker2", "gateway1", "gateway2", "haproxy", "python-worker1",
        "python-worker2", "redis", "tls-certs"]


def test_cluster_redis_needs_a_password():
    exe = shutil.which("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "ASGI_BRIDGE_REDIS_PASSWORD"}
    out = subprocess.run([exe, "-f", str(DEPLOY / "cluster-redis.yml"), "config", "-q"],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert out.returncode != 0 and "set ASGI_BRIDGE_REDIS_PASSWORD" in out.stderr


def test_cluster_zmq_workers_connect_to_both_gateways_with_curve():
    services = cluster_services("cluster-zmq.yml")
    workers = [name for name in services if "worker" in name]
    for name in workers:
        command = services[name]["command"]
        assert {"zmq://gateway1:5555", "zmq://gateway2:5555"} <= set(command), name
        assert services[name]["environment"]["ASGI_BRIDGE_BUS_SECRET_KEY"], name
    for name in ("gateway1", "gateway2"):
        assert "zmq://0.0.0.0:5555" in services[name]["command"]
        assert services[name]["environment"]["ASGI_BRIDGE_BUS_AUTHORIZED_KEYS"]


def test_cluster_gateways_drain_before_their_stop_grace_period():
    for file in ("cluster-zmq.yml", "cluster-redis.yml"):
        for name in ("gateway1", "gateway2"):
            service = cluster_services(file)[name]
            command = service["command"]
            delay = float(command[command.index("--drain-delay") + 1])
            drain = float(command[command.index("--drain-timeout") + 1])
            grace = float(service["stop_grace_period"].rstrip("s"))
            assert delay + drain < grace, (file, name)
            assert "0.0.0.0:9000" in command  # the admin port HAProxy checks


def test_haproxy_cfg_is_valid_and_checks_readyz(tmp_path):
    """haproxy -c on deploy/haproxy.cfg (the compose host names made local)."""
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed (scripts/install-deps installs it)"
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in text
    assert re.findall(r"server (gateway\d) \1:8000 check port 9000", text) == ["gateway1",
                                                                              "gateway2"]
    local = tmp_path / "haproxy.cfg"
    local.write_text(re.sub(r"gateway(\d):", "127.0.0.1:", text))
    out = subprocess.run([haproxy, "-c", "-f", str(local)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    for file in ("cluster-zmq.yml", "cluster-redis.yml"):
        assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in \
            cluster_services(file)["haproxy"]["volumes"][0].replace(str(DEPLOY), ".")


def image_env(dockerfile: str, stage: str) -> dict:
    """The ENV of one stage of a Dockerfile ("FROM x AS stage")."""
    text = next(t for t in dockerfile_stages(dockerfile) if t.split("\n", 1)[0].endswith(f" AS {stage}"))
    env = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", text, flags=re.M | re.S):
        env.update(re.findall(r"(\w+)=(\S+)", block))
    return env


def test_cluster_redis_tls_certs_acl_and_env_serve_through_a_gateway(tmp_path, monkeypatch):
    """cluster-redis.yml as far as it runs without containers: its `tls-certs` script makes
    the certificates, its Redis command (TLS only, client certificates required, no default
    user, the ACL user `bridge`) runs on a local redis-server, and a gateway with its image's
    environment under the compose file's, and a worker with the compose file's, serve
    through it; without the password, or without a client certificate, Redis refuses."""
    from .harness import Bridge, Proc, free_port, request, wait_until

    services = cluster_services("cluster-redis.yml")
    tls, ca = tmp_path / "tls", tmp_path / "ca"
    tls.mkdir()
    ca.mkdir()
    script = services["tls-certs"]["command"][0].replace("$$", "$")
    subprocess.run(["bash", "-c", script.replace("cd /tls", f"cd {tls}").replace("/ca/", f"{ca}/")],
                   check=True, capture_output=True, timeout=60)
    assert sorted(p.name for p in tls.iterdir()) == [
        "ca.crt", "ca.srl", "client.crt", "client.key", "redis.crt", "redis.key"]
    assert (ca / "ca.key").stat().st_mode & 0o077 == 0 and not (tls / "ca.key").exists()

    def local(value):
        return str(value).replace("/tls/", f"{tls}/")

    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    port = free_port()
    args = [local(a) for a in command[1:]]
    args[args.index("--tls-port") + 1] = str(port)
    redis = Proc("redis", ["redis-server", *args, "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                 tmp_path / "redis.log")
    bus = services["gateway1"]["environment"]["ASGI_BRIDGE_BUS"]
    assert bus.startswith("rediss://") and all(
        services[name]["environment"]["ASGI_BRIDGE_BUS"] == bus
        for name in services if "worker" in name or "gateway" in name)
    bus = bus.replace("@redis:6379", f"@127.0.0.1:{port}")
    password = bus.split("://bridge:", 1)[1].split("@", 1)[0]
    cli = ["redis-cli", "-p", str(port), "--tls", "--cacert", f"{tls}/ca.crt"]
    client_cert = ["--cert", f"{tls}/client.crt", "--key", f"{tls}/client.key"]

    def redis_cli(*args) -> str:
        out = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()

    def start(bridge, service: str, what) -> None:
        # As in the container: the image's environment, then the compose file's (the bus
        # URL itself the harness gives, pointing at the local Redis).
        env = image_env("Dockerfile.gateway", "gateway") if service.startswith("gateway") else {}
        assert "ASGI_BRIDGE_BUS_SECRET_KEY" in env or not service.startswith("gateway"), env
        env.update(services[service]["environment"])
        with monkeypatch.context() as m:
            for name, value in env.items():
                if name not in ("ASGI_BRIDGE_BUS", "ASGI_BRIDGE_LOG_LEVEL"):
                    m.setenv(name, local(value))
            what()

    bridge = Bridge(bus, tmp_path / "bridge", "basic_app:app")
    try:
        wait_until(lambda: "Ready to accept" in redis.log(), 10, "redis-server to start")
        assert "NOAUTH" in redis_cli(*client_cert, "ping")
        assert "PONG" not in redis_cli("--user", "bridge", "--pass", password, "--no-auth-warning", "ping")
        start(bridge, "gateway1", bridge.start_gateway)
        start(bridge, "python-worker1", bridge.start_worker)
        bridge.wait_ready()
        assert request(bridge.port, "GET", "/").status == 200
        # The ACL lets the gateway PSUBSCRIBE to the broadcast patterns too: a PUBLISH
        # there (as the bus user) reaches one subscriber, the gateway.

        def receivers() -> int:
            out = redis_cli(*client_cert, "--user", "bridge", "--pass", password, "--no-auth-warning",
                            "PUBLISH", "asgi:broadcast:probe", "x")
            return int(out) if out.isdigit() else 0
        wait_until(lambda: receivers() >= 1, 10, "the gateway to subscribe to the broadcast patterns")
        assert "subscription refused" not in bridge.gateway.log()
    finally:
        bridge.close()
        redis.close()


def test_every_image_has_a_healthcheck():
    for name in ("Dockerfile.gateway", "Dockerfile.worker"):
        for stage in dockerfile_stages(name):
            if "ENTRYPOINT" in stage:  # an image one runs, not a build or base stage
                assert "\nHEALTHCHECK " in stage, f"{name}: {stage.splitlines()[0]}"
    assert "build" in (REPO / ".dockerignore").read_text().split()


def test_worker_image_healthcheck_follows_the_health_file(bridge_factory, tmp_path):
    """The worker image's HEALTHCHECK command, run here against a real worker's
    --health-file (the image's path swapped for one of the test's)."""
    text = (DEPLOY / "Dockerfile.worker").read_text()
    path = re.search(r"ASGI_BRIDGE_HEALTH_FILE=(\S+)", text).group(1)
    argv = json.loads(re.search(r"HEALTHCHECK .*\\\n\s+CMD (\[.*\])", text).group(1))
    health = tmp_path / "health"
    bridge_factory(worker_args=["--health-file", str(health)])
    from .harness import wait_until
    wait_until(health.exists, 10, "the worker to touch its health file")

    def probe(file):
        cmd = [a.replace(path, str(file)) for a in argv]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode

    assert probe(health) == 0
    assert probe(tmp_path / "missing") != 0
