"""deploy/systemd/ (docs/deploy.md, "systemd"): the three units as systemd reads them.

- `systemd-analyze verify --root` passes on each (a root in the test's folder with the units,
  a copy of this machine's system units, and the programs each Exec line names at its path);
- the example configuration in each unit's header is real: every ASGI_BRIDGE_* name is in the
  program's option table and is read by the program (a bad value stops it), and the examples
  together, run as systemd would run them (hosts made 127.0.0.1 ports, /etc/asgi-bridge a
  folder of the test's with keys from the gateway's keygen), serve a request through two
  gateways from a Python worker and from a C++ worker;
- each TimeoutStopSec exceeds the drain its comment claims, with the defaults read from the
  programs' --help.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import (APPS_DIR, REPO, WORKER_PATH, Proc, free_port, gateway_binary, request,
                      wait_for_log, wait_until)
from .test_cpp_workers import example_binary

UNITS = REPO / "deploy" / "systemd"
CPP_EXAMPLE = "echo"  # the C++ worker program the cpp-worker@ instance runs
ETC = "/etc/asgi-bridge/"
BAD = "bad:-1"  # not a number, a file, an address nor a bus URL


class Unit:
    """One unit file: its [Service] settings and the example env file in its header comment."""

    def __init__(self, file_name: str, instance: str = ""):
        self.file_name = file_name
        self.name = file_name.replace("@.", f"@{instance}.")
        self.instance = instance
        self.text = (UNITS / file_name).read_text()
        header, _, body = self.text.partition("\n[")
        self.example = dict(re.findall(r"^#   ([A-Z][A-Z0-9_]*)=(.*)$", header, re.M))
        section = body.split("\n[Service]\n", 1)[1].split("\n[", 1)[0]
        self.service: list[tuple[str, str]] = re.findall(r"^(\w+)=(.*)$", section, re.M)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.service if k == key]

    def value(self, key: str) -> str:
        return self.values(key)[-1]

    def environment(self) -> dict[str, str]:
        """Environment= lines, then the example env file, which systemd lets override them."""
        env = dict(line.split("=", 1) for line in self.values("Environment"))
        env.update(self.example)
        return env

    def command(self, key: str, env: dict[str, str]) -> list[str]:
        """An Exec line as systemd splits it: %i the instance, ${NAME} one argument,
        $NAME alone a word split at whitespace."""
        argv = []
        for word in self.value(key).replace("%i", self.instance).split():
            alone = re.fullmatch(r"\$(\w+)", word)
            if alone:
                argv += env.get(alone.group(1), "").split()
            else:
                argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
        return argv

    def stop_timeout(self) -> float:
        value = self.value("TimeoutStopSec")
        match = re.fullmatch(r"(\d+)s?", value)
        assert match, f"{self.name}: TimeoutStopSec={value}, not plain seconds"
        return float(match.group(1))


def gateway_unit() -> Unit:
    return Unit("asgi-bridge-gateway.service")


def worker_unit() -> Unit:
    return Unit("asgi-bridge-worker@.service", "myapp")


def cpp_unit() -> Unit:
    return Unit("asgi-bridge-cpp-worker@.service", f"asgi-bridge-example-{CPP_EXAMPLE}")


def installed_programs() -> dict[str, Path]:
    """Where the units expect our programs, and the built ones."""
    return {"/usr/local/bin/asgi-bridge": gateway_binary(),
            f"/usr/local/bin/asgi-bridge-example-{CPP_EXAMPLE}": example_binary(CPP_EXAMPLE)}


# -- systemd-analyze verify -------------------------------------------------------------


def verify_root(root: Path, units: list[Unit]) -> None:
    """A root systemd can load the units from: the units, this machine's system units (for
    sysinit.target and the like), and every program an Exec line names, at its path."""
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for unit in units:
        shutil.copy(UNITS / unit.file_name, root / "etc" / "systemd" / "system")
    shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system",
                    symlinks=True)
    ours = installed_programs()
    for unit in units:
        env = unit.environment()
        for key in ("ExecStart", "ExecReload"):
            if unit.values(key):
                path = unit.command(key, env)[0]
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                # The real file, not a symlink: /usr/bin/python3 points to python3.11, which
                # systemd would look for inside the root.
                place(Path(ours.get(path) or os.path.realpath(path)), target)


def place(source: Path, target: Path) -> None:
    """A hard link where it can be (the gateway is 100 MB in a debug build), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian: package systemd)")
    units = [gateway_unit(), worker_unit(), cpp_unit()]
    verify_root(tmp_path, units)
    for unit in units:
        out = subprocess.run([analyze, "verify", f"--root={tmp_path}", unit.name],
                             capture_output=True, text=True, timeout=30)
        # Our units' own warnings (an unknown key, a bad value) name them, and leave the
        # exit code 0; a missing unit or program would be an error of this root's.
        warnings = [line for line in out.stderr.splitlines()
                    if "asgi-bridge" in line or "not found" in line or "not executable" in line]
        assert out.returncode == 0 and not warnings, f"{unit.name}:\n{out.stderr}"


# -- the example configuration ----------------------------------------------------------


def documented_options(doc: str, heading: str) -> set[str]:
    """The options named in the first column of the first table under a heading of a doc."""
    section = (REPO / "docs" / doc).read_text().split(f"\n{heading}\n", 1)[1]
    table = re.search(r"^\|.*?(?=\n\n)", section, re.M | re.S).group(0)
    return {name for row in table.splitlines() for name in re.findall(r"`(--[\w-]+)", row.split("|")[1])}


def option(name: str) -> str:
    """ASGI_BRIDGE_BUS_SECRET_KEY -> --bus-secret-key."""
    return "--" + name.removeprefix("ASGI_BRIDGE_").lower().replace("_", "-")


@pytest.mark.parametrize("unit, doc, heading", [
    (gateway_unit(), "operations.md", "## Gateway options"),
    (worker_unit(), "operations.md", "## Worker options"),
    (cpp_unit(), "workers-cpp.md", "## Running"),
], ids=["gateway", "worker", "cpp-worker"])
def test_example_names_are_documented_options(unit, doc, heading):
    names = [n for n in unit.example if n.startswith("ASGI_BRIDGE_")]
    assert names, f"{unit.name}: no ASGI_BRIDGE_* example"
    documented = documented_options(doc, heading)
    missing = [n for n in names if option(n) not in documented]
    assert not missing, f"{unit.name}'s example sets {missing}, not in {doc}'s option table"


class Site:
    """The examples made this machine's: each HOST:PORT a free port on 127.0.0.1, /etc/asgi-bridge
    a folder of the test's holding the key files the examples name (made by the gateway's
    keygen; each worker's public key in the gateway's allow-list), our programs the built ones."""

    def __init__(self, root: Path):
        self.root = root
        self.ports: dict[str, int] = {}
        self.procs: list[Proc] = []
        self.keys()

    def address(self, match: re.Match) -> str:
        return f"127.0.0.1:{self.ports.setdefault(match.group(0), free_port())}"

    def local(self, value: str) -> str:
        value = re.sub(r"\b\d+\.\d+\.\d+\.\d+:\d+\b", self.address, value)
        return value.replace(ETC, f"{self.root}{ETC}")

    def keys(self) -> None:
        gateway, workers = gateway_unit().example, [worker_unit().example, cpp_unit().example]
        allowed = Path(self.local(gateway["ASGI_BRIDGE_BUS_AUTHORIZED_KEYS"]))
        allowed.mkdir(parents=True)
        for env in [gateway, *workers]:
            if "ASGI_BRIDGE_BUS_SECRET_KEY" not in env:
                continue  # a worker the gateway will refuse: its test says so
            public = Path(self.local(env["ASGI_BRIDGE_BUS_SECRET_KEY"].removesuffix("_secret")))
            subprocess.run([str(gateway_binary()), "keygen", str(public.with_suffix(""))],
                           check=True, capture_output=True, timeout=30)
            if env is not gateway:
                shutil.copy(public, allowed)

    def run(self, unit: Unit, name: str, env: dict[str, str]) -> Proc:
        """The unit's ExecStart as systemd would run it with `env` (the Python worker's app
        a test app), made local."""
        if "APP" in env:
            env = {**env, "APP": "basic_app:app", "APP_DIR": str(APPS_DIR), "IT_STATE_DIR": str(self.root)}
        here = {**{k: str(v) for k, v in installed_programs().items()},
                "/usr/bin/python3": sys.executable, "/opt/asgi-bridge": str(WORKER_PATH)}
        env = {k: here.get(v, v) for k, v in ((k, self.local(v)) for k, v in env.items())}
        argv = [here.get(a, a) for a in unit.command("ExecStart", env)]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_BRIDGE_")}
        proc = Proc(name, argv, self.root / f"{name}.log", env={**clean, **env})
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):  # workers first: nothing left for the gateways to drain
            if proc.name.startswith("gateway"):
                proc.kill()  # else it answers 503 for the example's --drain-delay first
            proc.close()


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


def gateway_hosts() -> list[str]:
    """The gateways the Python worker's example serves, by host."""
    return re.findall(r"zmq://([\d.]+):", worker_unit().example["ASGI_BRIDGE_BUS"])


def gateway_env(host: str) -> dict[str, str]:
    """The gateway unit's environment on `host` (its example is for the first gateway)."""
    unit = gateway_unit()
    own = re.search(r"zmq://([\d.]+):", unit.example["ASGI_BRIDGE_BUS"]).group(1)
    return {k: v.replace(own, host).replace("0.0.0.0:", f"{host}:")
            for k, v in unit.environment().items()}


def start_gateways(site: Site) -> list[tuple[int, int]]:
    """The gateway unit on each host the worker examples name: [(client port, admin port)]."""
    hosts = gateway_hosts()
    assert len(hosts) == 2 and re.findall(r"zmq://([\d.]+):", cpp_unit().example["ARGS"]) == hosts
    ports = []
    for i, host in enumerate(hosts):
        env = gateway_env(host)
        site.run(gateway_unit(), f"gateway{i + 1}", env)
        ports.append(tuple(int(site.local(env[name]).rsplit(":", 1)[1])
                           for name in ("ASGI_BRIDGE_BIND", "ASGI_BRIDGE_ADMIN")))
    return ports


def ready(admin: int) -> bool:
    try:
        return request(admin, "GET", "/readyz", timeout=2).status == 200
    except OSError:
        return False


def assert_served(site: Site, gateways: list[tuple[int, int]]) -> None:
    """Each gateway ready (/readyz: a worker joined over CURVE) and serving a request."""
    for i, (port, admin) in enumerate(gateways):
        wait_until(lambda: ready(admin), 15, f"gateway{i + 1}'s /readyz to answer 200")
        r = request(port, "POST", "/echo", body=b"through the units")
        assert (r.status, r.body) == (200, b"through the units")
    for proc in site.procs:
        assert proc.alive(), proc.log()
        if proc.name.startswith("gateway"):
            assert "bus: CURVE on, " in proc.log(), proc.log()


@pytest.mark.parametrize("unit, in_effect", [
    (worker_unit(), "started {ASGI_BRIDGE_PROCESSES} workers"),
    (cpp_unit(), "{ASGI_BRIDGE_THREADS} app thread(s)"),
], ids=["python-worker", "cpp-worker"])
def test_examples_serve(site, unit, in_effect):
    """The two gateways and the worker, each with its unit's example; the example's count of
    processes or threads in effect (the worker's log)."""
    gateways = start_gateways(site)
    env = unit.environment()
    worker = site.run(unit, "worker", env)
    assert_served(site, gateways)
    wait_for_log(worker, in_effect.format(**env))


@pytest.mark.parametrize("unit", [gateway_unit(), worker_unit(), cpp_unit()],
                         ids=["gateway", "worker", "cpp-worker"])
def test_every_example_name_is_read(site, unit):
    """Each ASGI_BRIDGE_* name of the example set to a bad value, the rest of the example's
    environment (which serves, above) unchanged: the program refuses to start. A name it
    ignored would leave it running. Each run on ports of its own: they run at once."""
    env = unit.environment()
    runs = {}
    for name in (n for n in unit.example if n.startswith("ASGI_BRIDGE_")):
        site.ports.clear()
        runs[name] = site.run(unit, f"bad-{name}", {**env, name: BAD})
    for name, proc in runs.items():
        code = proc.wait(10)
        assert code != 0, f"{name}={BAD}: exit {code}\n{proc.log()}"


# -- stop timeouts ----------------------------------------------------------------------


def help_default(argv: list[str], name: str) -> float:
    """An option's default as the program's --help states it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_BRIDGE_")}
    env.update(COLUMNS="200", PYTHONPATH=str(WORKER_PATH))
    text = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=30,
                          env=env, check=True).stdout
    # One block per option: its line, and the lines its help wraps to.
    block = next(b for b in re.split(r"\n(?=\s*-)", text) if re.match(rf"\s*{name}\b", b))
    match = re.search(r" [A-Z]+=([\d.]+) |\(default ([\d.]+)\)", block)  # CLI11's, argparse's
    assert match, f"no default for {name} in: {block}"
    return float(match.group(1) or match.group(2))


def test_gateway_stop_timeout_exceeds_its_drain():
    unit = gateway_unit()
    delay = help_default([str(gateway_binary())], "--drain-delay")
    timeout = help_default([str(gateway_binary())], "--drain-timeout")
    example_delay = float(unit.example.get("ASGI_BRIDGE_DRAIN_DELAY", delay))
    example_timeout = float(unit.example.get("ASGI_BRIDGE_DRAIN_TIMEOUT", timeout))
    claim = re.search(r"defaults (\S+) \+ (\S+) s; (\S+) \+ (\S+) in the example", unit.text)
    assert claim, "the gateway unit's comment states the drain it allows for"
    assert [float(x) for x in claim.groups()] == [delay, timeout, example_delay, example_timeout]
    assert unit.stop_timeout() > max(delay + timeout, example_delay + example_timeout)


@pytest.mark.parametrize("unit, program", [
    (worker_unit(), [sys.executable, "-m", "asgi_bridge"]),
    (cpp_unit(), None),
], ids=["worker", "cpp-worker"])
def test_worker_stop_timeout_exceeds_its_graceful_timeout(unit, program):
    program = program or [str(example_binary(CPP_EXAMPLE))]
    graceful = help_default(program, "--graceful-timeout")
    claim = re.search(r"--graceful-timeout, (\S+) s\)", unit.text)
    assert claim and float(claim.group(1)) == graceful, \
        f"{unit.name}'s comment states --graceful-timeout's default ({graceful:g} s)"
    graceful = float(unit.example.get("ASGI_BRIDGE_GRACEFUL_TIMEOUT", graceful))
    assert unit.stop_timeout() > graceful
    deploy = (REPO / "docs" / "deploy.md").read_text()
    assert f"systemd: `TimeoutStopSec={unit.value('TimeoutStopSec')}`" in deploy
