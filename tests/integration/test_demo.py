"""The README's main command: scripts/run-demo serves the example app (HTTP
and WebSocket echo) and stops both processes cleanly on Ctrl-C (SIGINT)."""

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import websockets

from .harness import REPO, Proc, free_port, gateway_binary, request, wait_until


def test_run_demo_serves_and_stops_on_ctrl_c(tmp_path):
    build_dir = gateway_binary().parent.parent
    assert (build_dir / "CMakeCache.txt").is_file(), (
        f"run-demo needs the build folder of {gateway_binary()}, and {build_dir} is none")
    port, bus = free_port(), free_port()
    env = dict(os.environ, DEMO_BIND=f"127.0.0.1:{port}",
               DEMO_BUS=f"zmq://127.0.0.1:{bus}", ASGI_BRIDGE_BUILD_DIR=str(build_dir))
    demo = Proc("run-demo", ["bash", str(REPO / "scripts" / "run-demo")],
                tmp_path / "run-demo.log", env=env)
    children = []
    try:
        # Generous: the script may still have to configure and build.
        ready = wait_until(lambda: not demo.alive() or re.search(
            r"gateway pid (\d+), worker pid (\d+)", demo.log()), 300,
            "run-demo to report that it is ready")
        assert demo.alive(), f"run-demo exited with {demo.returncode}"
        children = [int(ready.group(1)), int(ready.group(2))]

        r = request(port, "GET", "/")
        assert r.status == 200
        assert r.body.startswith(b"Hello from asgi-bridge!")
        r = request(port, "POST", "/echo", body=b"demo body",
                    headers={"Content-Type": "text/plain"})
        assert (r.status, r.body) == (200, b"demo body")
        r = request(port, "GET", "/nowhere")
        assert r.status == 404
        out = subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/"],
                             capture_output=True, timeout=20)
        assert out.stdout.startswith(b"Hello from asgi-bridge!"), out
        assert asyncio.run(asyncio.wait_for(ws_echo(port), 15)) == ["hi", b"\x00\xff"]

        demo.signal(signal.SIGINT)  # what Ctrl-C sends
        assert demo.wait(30) == 0, demo.log()
        assert "run-demo: stopped" in demo.log()
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), \
                f"process {pid} still running after run-demo stopped"
    finally:
        demo.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def ws_echo(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        got = []
        for message in ("hi", b"\x00\xff"):
            await ws.send(message)
            got.append(await ws.recv())
        return got


def _is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
