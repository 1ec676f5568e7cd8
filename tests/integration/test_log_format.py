"""--log-format json: every line the gateway writes is one JSON object (time,
level, logger, message), the bus library's lines and the access log included,
even when a message quotes what a client sent."""

from __future__ import annotations

import json

from .harness import RawConnection, request, wait_for_log


def json_lines(log: str) -> list[dict]:
    # The harness writes the command line first, as "$ argv".
    return [json.loads(line) for line in log.splitlines() if line and not line.startswith("$ ")]


def test_every_gateway_line_is_json(bridge_factory):
    b = bridge_factory(gateway_args=["--log-format", "json", "--access-log"])
    assert request(b.port, "GET", '/quoted"path?x=\\').status == 404  # no such path in basic_app
    with RawConnection(b.port) as c:  # a bad request, logged with what the client sent
        c.send(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 400

    wait_for_log(b.gateway, "bad request (400)")
    # The access line: its own fields as keys (test_access_log.py), the target as sent.
    entries = json_lines(wait_for_log(b.gateway, '"target":"/quoted\\"path?x=\\\\"'))
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert list(entries[0])[:4] == ["time", "level", "logger", "message"]
    loggers = {e["logger"] for e in entries}
    assert {"server", "bus", "access"} <= loggers, loggers
    access = [e for e in entries if e["logger"] == "access"]
    assert any(e.get("target") == '/quoted"path?x=\\' and e["status"] == 404 for e in access), access
    assert any("bad request (400)" in e["message"] for e in entries)


def test_python_worker_writes_json_lines(bridge_factory):
    b = bridge_factory(worker_args=["--log-format", "json"])
    assert request(b.port, "GET", "/").status == 200
    log = wait_for_log(b.workers[0], '"logger": "asgi_bridge')
    entries = json_lines(log)
    assert entries, log
    assert all(list(e)[:4] == ["time", "level", "logger", "message"] for e in entries), entries
    assert all(isinstance(e["process"], int) for e in entries)
