"""Process harness for the integration tests.

Starts a real gateway (build/bin/asgi-bridge) and real Python workers
(``/usr/bin/python3 -m asgi_bridge``) on free loopback ports, captures their
output in log files, waits until they serve, and stops them (SIGTERM, then
SIGKILL of the whole process group). Every wait here is bounded.

Nothing here is HTTP specific except the small HTTP helpers at the end, so
WebSocket tests can use the same processes.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[2]
APPS_DIR = Path(__file__).resolve().parent / "apps"
WORKER_PATH = REPO / "workers" / "python"

# Every process the harness started and has not yet cleaned up; conftest
# attaches their logs to the report of a failing test.
LIVE: list["Proc"] = []


class HarnessError(AssertionError):
    """A process did not come up or behave as the harness needs."""


def gateway_binary() -> Path:
    env = os.environ.get("ASGI_BRIDGE_BIN")
    path = Path(env) if env else REPO / "build" / "bin" / "asgi-bridge"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise HarnessError(
            f"gateway executable not found at {path}: build it first with "
            "`cmake -S . -B build -G Ninja && cmake --build build` "
            "(or set ASGI_BRIDGE_BIN)")
    return path


_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process
    has not handed out before: the kernel may give the same free port to two binds in a
    row (a gateway once got one port for both --bind and its bus)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise HarnessError("no TCP port left that this test run has not used")


def curl_echo_post(port: int, *curl_args: str) -> tuple[bytes, bytes]:
    """POSTs "from curl" as text/x-curl to /echo with curl (plus curl_args, e.g.
    --http2-prior-knowledge); returns the response's head and body."""
    out = subprocess.run(["curl", "-sS", "--max-time", "10", *curl_args, "-D", "-",
                          "--data-binary", "from curl", "-H", "Content-Type: text/x-curl",
                          f"http://127.0.0.1:{port}/echo"], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    return head, body


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05):
    """Polls predicate until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_for_log(process: "Proc", pattern, timeout: float = 10.0, more_than: int = 0) -> str:
    """Waits until the process's log has `pattern` (a substring, or a compiled regular
    expression) more than `more_than` times, and returns the whole log. A process writes
    a request's log lines (the access log, a warning) around its answer, not before it:
    a test that reads them right after its answer races the writer. Whole lines only: a
    line still being written (its pattern there, its end not yet) is left for the next
    read."""
    def count(log: str) -> int:
        return len(pattern.findall(log)) if isinstance(pattern, re.Pattern) else log.count(pattern)

    def found():
        log = process.log()
        log = log[:log.rfind("\n") + 1]
        return log if count(log) > more_than else None
    shown = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    try:
        return wait_until(found, timeout, f"{process.name} to log {shown!r}")
    except HarnessError as e:
        raise HarnessError(f"{e}; its log ends:\n{process.log(30)}") from None


class Proc:
    """A child process in its own process group, output to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 env: Optional[dict] = None,
                 preexec_fn: Optional[Callable[[], None]] = None,
                 pass_fds: Iterable[int] = ()):
        """pass_fds: descriptors the child inherits (an inherited listening socket)."""
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self._log.write(("$ " + " ".join(self.argv) + "\n").encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True, preexec_fn=preexec_fn, pass_fds=tuple(pass_fds))
        self.pid = self.popen.pid
        LIVE.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Waits for exit; fails the test if it takes longer than timeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"{self.name} (pid {self.pid}) still running after {timeout:g} s")

    def _kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL of the group after timeout. Never raises."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        self._kill_group()  # forked children, and the leader if still there
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL of the whole process group, at once."""
        self._kill_group()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.stop()
        self._log.close()
        if self in LIVE:
            LIVE.remove(self)

    def log(self, tail_lines: Optional[int] = None) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        if tail_lines is not None:
            lines = text.splitlines()
            if len(lines) > tail_lines:
                text = "\n".join([f"... ({len(lines) - tail_lines} lines cut)"]
                                 + lines[-tail_lines:])
        return text


class BusUrl(str):
    """A bus URL that needs options on each side: the ``curve`` test bus (conftest.py)
    carries its key options here."""

    def __new__(cls, url: str, gateway_args: Iterable[str] = (),
                worker_args: Iterable[str] = ()):
        self = super().__new__(cls, url)
        self.gateway_args = list(gateway_args)
        self.worker_args = list(worker_args)
        return self


def bus_args(bus_url: str, side: str) -> list[str]:
    """The options a gateway or worker needs for `bus_url` besides --bus."""
    return list(getattr(bus_url, f"{side}_args", ()))


class Gateway(Proc):
    def __init__(self, bus_url: str, log_dir: Path, args: Iterable[str] = (),
                 name: str = "gateway", port: Optional[int] = None,
                 log_level: str = "debug",
                 preexec_fn: Optional[Callable[[], None]] = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.bus_url = bus_url
        argv = [str(gateway_binary()), "--bind", f"{self.host}:{self.port}",
                "--bus", bus_url, *bus_args(bus_url, "gateway"), "--log-level", log_level, *args]
        super().__init__(name, argv, log_dir / f"{name}.log", preexec_fn=preexec_fn)

    def wait_listening(self, timeout: float = 10.0) -> None:
        def accepting():
            if not self.alive():
                raise HarnessError(
                    f"{self.name} exited with {self.returncode} before listening;"
                    f" its log:\n{self.log(60)}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_until(accepting, timeout, f"{self.name} to accept on port {self.port}")


class Worker(Proc):
    def __init__(self, app: str, bus_url: str, log_dir: Path, state_dir: Path,
                 args: Iterable[str] = (), name: str = "worker",
                 log_level: str = "debug"):
        self.app = app
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(WORKER_PATH), str(APPS_DIR)]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["IT_STATE_DIR"] = str(state_dir)
        env.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
        argv = [sys.executable, "-m", "asgi_bridge", app, "--bus", bus_url,
                *bus_args(bus_url, "worker"), "--log-level", log_level, *args]
        super().__init__(name, argv, log_dir / f"{name}.log", env=env)


class StateDir:
    """A folder that test apps write marker files into (IT_STATE_DIR)."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str) -> Optional[str]:
        try:
            return self.file(name).read_text()
        except FileNotFoundError:
            return None

    def wait_for(self, name: str, timeout: float = 10.0,
                 contains: Optional[str] = None) -> str:
        def ready():
            text = self.read(name)
            if text is None:
                return None
            if contains is not None and contains not in text:
                return None
            return text
        what = f"state file {name!r}" + (f" to contain {contains!r}" if contains else "")
        return wait_until(ready, timeout, what)

    def touch(self, name: str, text: str = "") -> None:
        tmp = self.file(name + ".tmp")
        tmp.write_text(text)
        tmp.rename(self.file(name))


class Bridge:
    """One gateway and its workers on one bus."""

    def __init__(self, bus_url: str, base_dir: Path, app: Optional[str],
                 gateway_args: Iterable[str] = (), worker_args: Iterable[str] = ()):
        self.bus_url = bus_url
        self.base_dir = base_dir
        self.log_dir = base_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateDir(base_dir / "state")
        self.app = app
        self.gateway_args = list(gateway_args)
        self.worker_args = list(worker_args)
        self.gateway: Optional[Gateway] = None
        self.workers: list[Worker] = []
        self.procs: list[Proc] = []

    # -- processes ---------------------------------------------------------

    def start_gateway(self, args: Optional[Iterable[str]] = None,
                      wait: bool = True,
                      preexec_fn: Optional[Callable[[], None]] = None) -> Gateway:
        """preexec_fn runs in the child before exec (e.g. resource.setrlimit)."""
        gw = Gateway(self.bus_url, self.log_dir,
                     self.gateway_args if args is None else args,
                     preexec_fn=preexec_fn)
        self.gateway = gw
        self.procs.append(gw)
        if wait:
            gw.wait_listening()
        return gw

    def start_worker(self, app: Optional[str] = None,
                     args: Optional[Iterable[str]] = None) -> Worker:
        app = app or self.app
        if app is None:
            raise HarnessError("start_worker needs an app")
        name = f"worker{len(self.workers) + 1}"
        w = Worker(app, self.bus_url, self.log_dir, self.state.path,
                   self.worker_args if args is None else args, name=name)
        self.workers.append(w)
        self.procs.append(w)
        return w

    def close(self) -> None:
        # Workers first, so that a draining gateway is not kept waiting.
        for p in reversed(self.procs):
            p.close()

    # -- readiness ---------------------------------------------------------

    @property
    def port(self) -> int:
        assert self.gateway is not None, "no gateway started"
        return self.gateway.port

    def wait_ready(self, path: str = "/__ready", timeout: float = 15.0) -> None:
        """Until a GET of path answers something other than 503 (or fails)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for w in self.workers:
                if not w.alive():
                    raise HarnessError(
                        f"{w.name} exited with {w.returncode} before serving;"
                        f" its log:\n{w.log(60)}")
            if self.gateway is not None and not self.gateway.alive():
                raise HarnessError(
                    f"gateway exited with {self.gateway.returncode};"
                    f" its log:\n{self.gateway.log(60)}")
            remaining = max(0.5, deadline - time.monotonic())
            try:
                r = request(self.port, "GET", path, timeout=remaining)
                if r.status != 503:
                    return
                last = f"HTTP {r.status}"
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
                time.sleep(0.1)
        raise HarnessError(f"gateway not ready after {timeout:g} s (last: {last})")


class Background:
    """Runs fn in a thread; result() re-raises its exception."""

    def __init__(self, fn, *args, **kwargs):
        self._value = None
        self._error = None
        self.finished_at = None

        def run():
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to result()
                self._error = e
            self.finished_at = time.monotonic()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self, timeout: float = 30.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"request still running after {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value


# -- HTTP helpers ----------------------------------------------------------


class Response:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes, version: int):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def header(self, name: str) -> Optional[str]:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def request(port: int, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[dict] = None, timeout: float = 10.0) -> Response:
    """One request on a fresh connection with http.client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return read_response(conn)
    finally:
        conn.close()


def read_response(conn: http.client.HTTPConnection) -> Response:
    r = conn.getresponse()
    data = r.read()
    return Response(r.status, r.reason, r.getheaders(), data, r.version)


class RawResponse:
    """A response parsed from raw bytes, keeping what http.client hides."""

    def __init__(self):
        self.status_line = ""
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.chunks: list[bytes] = []
        self.chunked = False
        self.complete = False  # the whole message arrived (terminating chunk, full length)

    def header(self, name: str) -> Optional[str]:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self) -> str:
        return (f"<RawResponse {self.status_line!r} {self.headers!r} body={self.body[:200]!r}"
                f" chunked={self.chunked} complete={self.complete}>")


class RawConnection:
    """A plain socket with a read buffer, for exact bytes on the wire."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        """Up to and including marker; raises EOFError if the peer closed first."""
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buf[:500]!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def at_eof(self) -> bool:
        """True when the peer closed the connection (waits up to the socket timeout)."""
        if self.buf:
            return False
        return not self._fill()

    def read_head(self) -> RawResponse:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        r = RawResponse()
        r.status_line = lines[0]
        parts = lines[0].split(" ", 2)
        r.status = int(parts[1])
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                r.headers.append((k, v.strip()))
        return r

    def read_chunk(self) -> Optional[bytes]:
        """One chunk of a chunked body; None for the terminating chunk."""
        size_line = self.read_until(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while self.read_until(b"\r\n") != b"\r\n":  # trailer fields, then CRLF
                pass
            return None
        data = self.read_exact(size)
        if self.read_exact(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        return data

    def read_response(self, head_request: bool = False) -> RawResponse:
        """A whole response; r.complete is False when the peer aborted it."""
        r = self.read_head()
        if head_request or r.status in (204, 304) or 100 <= r.status < 200:
            r.complete = True
            return r
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        try:
            if "chunked" in te:
                r.chunked = True
                while True:
                    chunk = self.read_chunk()
                    if chunk is None:
                        break
                    r.chunks.append(chunk)
                r.body = b"".join(r.chunks)
                r.complete = True
            elif cl is not None:
                r.body = self.read_exact(int(cl))
                r.complete = True
            else:
                r.body = self.read_to_eof()
                r.complete = True  # delimited by close: nothing to tell an abort by
        except EOFError:
            r.body = b"".join(r.chunks) + self.buf
            r.complete = False
        return r


def raw_request(port: int, data: bytes, timeout: float = 10.0,
                head_request: bool = False) -> RawResponse:
    with RawConnection(port, timeout) as c:
        c.send(data)
        return c.read_response(head_request=head_request)
