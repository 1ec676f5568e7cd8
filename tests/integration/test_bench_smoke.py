"""Smoke test of the benchmarks: ``bench/run --quick`` runs to the end.

It starts every server of the comparison (asgi-bridge with the C++ and the
Python worker, uvicorn, daphne, raw Beast) and every quick workload for about
a second each, and prints Markdown tables. Only the shape of the output is
checked: exit status 0, the table header, a row per server in every table,
and the bus variants' rows (CURVE, Redis, Redis over TLS: the run starts its own
redis-server and makes its own keys and certificate) in the two tables that have them,
and the cluster rows (HAProxy → 1 + 1 and 2 + 2) in HTTP hello; the gateway's and the
worker's CPU µs per request of every asgi-bridge row: there, and a positive number.
No timing assertion: the figures depend on the machine and its load.

Needs the bench tools (built with the rest: asgi-bridge-raw-beast and
asgi-bridge-wsload in build/bin or build-bench/bin), wrk, taskset, uvicorn
and daphne.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .harness import REPO

RUN = REPO / "bench" / "run"
SERVER_ROWS = ["asgi-bridge + C++ worker", "asgi-bridge + Python worker",
               "uvicorn (httptools, uvloop)", "daphne", "raw Beast (ceiling)"]
BUS_ROWS = ["asgi-bridge + C++ worker, CURVE bus", "asgi-bridge + C++ worker, Redis bus",
            "asgi-bridge + Python worker, CURVE bus", "asgi-bridge + Python worker, Redis bus",
            "asgi-bridge + C++ worker, Redis over TLS bus",
            "asgi-bridge + Python worker, Redis over TLS bus"]
# HTTP hello only: HAProxy in front of 1 + 1 and 2 + 2 (the latter a ratio to the former).
CLUSTER_ROWS = ["HAProxy → 1 gateway → 1 C++ worker",
                "HAProxy → 2 gateways → 2 C++ workers (each on both)",
                "HAProxy → 1 gateway → Redis → 1 C++ worker",
                "HAProxy → 2 gateways → Redis → 2 C++ workers"]
BUS_TABLES = ["HTTP hello", "WebSocket echo 32 B, 64 connections"]
TABLE_HEADER = "| server | throughput /s | p50 µs | p99 µs | server CPU-s | per CPU-s |"
SPLIT_COLUMNS = ("gateway CPU µs per req", "worker CPU µs per req")
HOLD_HEADER = "| server | held sockets | handshake p50 µs, fresh | p99 µs, fresh | handshake p50 µs, warm |"
QUICK_TIMEOUT = 240  # bench/run --quick takes under a minute on an idle machine


def test_bench_run_quick(tmp_path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["/usr/bin/python3", str(RUN), "--quick", "--logs", str(tmp_path),
         "--json", str(tmp_path / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT)
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    out = result.stdout
    assert TABLE_HEADER in out, report
    assert HOLD_HEADER in out, report
    tables = [t for t in out.split("### ")[1:]]
    assert len(tables) >= 6, report  # hello, POST, WS 1, WS 64, handshakes, hold
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        for server in SERVER_ROWS:
            assert any(row.startswith(f"| {server} |") for row in rows), (
                f"no row for {server!r} in table {table.splitlines()[0]!r}\n{report}")
        if table.startswith(tuple(BUS_TABLES)):
            for bus_row in BUS_ROWS:
                # measured, not an error cell: the ×zmq bus column holds two ratios
                row = next((r for r in rows if r.startswith(f"| {bus_row} |")), None)
                assert row is not None and row.count("×") >= 2, (
                    f"no measured row for {bus_row!r} in {table.splitlines()[0]!r}\n{report}")
    assert "×zmq bus" in out and "rediss rows are Redis over TLS" in out, report
    assert "cluster row" in out, report
    hello = next(t for t in tables if t.startswith("HTTP hello"))
    for cluster_row in CLUSTER_ROWS:
        row = next((r for r in hello.splitlines() if r.startswith(f"| {cluster_row} |")), None)
        assert row is not None and "exited" not in row and "| – | – | – |" not in row, (
            f"{cluster_row!r}: {row}\n{report}")
    for table in tables:
        if "| server | throughput /s |" in table:
            check_cpu_split(table, report)
    saved = json.loads((tmp_path / "results.json").read_text())
    for key in ("bridge-cpp/hello", "bridge-py/post64k", "bridge-cpp/ws64"):
        for field in ("gateway_cpu_us_per_req", "worker_cpu_us_per_req"):
            assert saved[key].get(field, 0) > 0, f"{key} {field}: {saved[key]}"

    # --report-from renders the same tables from the saved results.
    again = subprocess.run(
        ["/usr/bin/python3", str(RUN), "--report-from", str(tmp_path / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() in out, again.stdout


def check_cpu_split(table: str, report: str) -> None:
    """The per-request CPU split columns: a positive number in every asgi-bridge row
    (one gateway and one worker, or a cluster's gateways and workers)."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    columns = [header.index(name) for name in SPLIT_COLUMNS]
    for row in lines[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if not cells[0].startswith(("asgi-bridge", "HAProxy")) or cells[1] == "–":  # an error row
            continue
        for column in columns:
            value = float(cells[column].replace(",", ""))
            assert value > 0, f"{header[column]} in {row!r}\n{report}"


BROADCAST_ROWS = ["asgi-bridge broadcast (asgi_bridge.publish), 1 gateway",
                  "asgi-bridge broadcast (asgi_bridge.publish), 2 gateways",
                  "asgi-bridge groups (asgi_bridge.groups, per-socket sends), 1 gateway",
                  "Django Channels group_send, channels_redis, uvicorn"]


def test_bench_run_broadcast_small(tmp_path):
    """The broadcast workload (not in --quick) with 40 subscribers and 10 messages: every
    row measured, every member connected and every message delivered to each of them; the
    gateway rows have their fan-out figures; --json keeps the table and --report-from
    renders it again."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["/usr/bin/python3", str(RUN), "--workloads", "broadcast", "--servers", "raw-beast",
         "--idle", "40", "--broadcast-messages", "10", "--logs", str(tmp_path),
         "--json", str(tmp_path / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT)
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for title in BROADCAST_ROWS:
        row = next((r for r in rows if r.startswith(f"| {title} |")), None)
        assert row is not None, f"no row for {title!r}\n{report}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "40" and cells[10] == "0", f"{title!r}: {row}\n{report}"
        if "asgi-bridge broadcast" in title:  # ten publishes per gateway, timed by it
            assert cells[11] != "–" and cells[12].endswith("%"), f"{title!r}: {row}\n{report}"
    table = result.stdout[result.stdout.index("### Broadcast"):result.stdout.index("\nTotal ")]

    again = subprocess.run(
        ["/usr/bin/python3", str(RUN), "--report-from", str(tmp_path / "results.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert table.strip() in again.stdout, f"{again.stdout}\n---\n{table}"


if __name__ == "__main__":
    sys.exit(subprocess.call(["/usr/bin/python3", "-m", "pytest", "-q", __file__]))
