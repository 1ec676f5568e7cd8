"""--access-log (issue 17): one line per HTTP exchange, the gateway's own answers
included, and two per WebSocket (the handshake answered, the close), in the combined
and Daphne formats and, under --log-format json, every field as its own key. The lines
are parsed field by field."""

from __future__ import annotations

import json
import re

import pytest

from .harness import RawConnection, request, wait_for_log
from .wsraw import CLOSE, TEXT, RawWebSocket, close_payload

# The combined line after spdlog's "TIME info [access] " prefix.
COMBINED = re.compile(
    r'\[access\] (?P<client>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d+) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" '
    r'rt=(?P<rt>\d+\.\d{6}) worker=(?P<worker>\S+)(?P<extra>.*)$', re.M)
DAPHNE = re.compile(
    r'\[access\] (?P<client>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d)\] '
    r'"(?P<request>[^"]*)" (?P<status>\S+) (?P<length>\S+)$', re.M)


def extras(line: re.Match) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line["extra"].split())


def combined_line(log: str, request_line: str) -> re.Match:
    lines = [m for m in COMBINED.finditer(log) if m["request"] == request_line]
    assert lines, f"no access line for {request_line!r} in:\n{log}"
    return lines[-1]


def json_access(log: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in log.splitlines() if line.startswith("{"))
            if e["logger"] == "access"]


@pytest.fixture
def logged(bridge_factory):
    def start(*args, workers=1, app="ws_app:app"):
        return bridge_factory(app, workers=workers, ready=workers > 0,
                              gateway_args=["--access-log", *args])
    return start


def test_http_exchange_combined_with_the_client_the_proxy_named(logged):
    b = logged("--proxy-headers")
    with RawConnection(b.port) as c:
        c.send(b"GET /echo?x=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n"
               b"Referer: http://ref.example/a\r\nUser-Agent: probe \"1\"\r\nConnection: close\r\n\r\n")
        received = c.read_to_eof()
    assert received.startswith(b"HTTP/1.1 200")
    line = combined_line(wait_for_log(b.gateway, '"GET /echo?x=1 HTTP/1.1"'), "GET /echo?x=1 HTTP/1.1")
    assert line["client"] == "203.0.113.7"  # resolved, not the TCP peer
    assert line["status"] == "200"
    assert int(line["bytes"]) == len(received)  # head and body, as sent
    assert line["referer"] == "http://ref.example/a"
    assert line["agent"] == "probe \\x221\\x22"  # a quote cannot end the field
    assert line["worker"] != "-"
    assert float(line["rt"]) < 10
    assert extras(line) == {"origin": "app"}


def test_gateway_made_responses_say_so_and_why(logged):
    b = logged("--max-body-size", "10", "--max-header-size", "1024", "--http-timeout", "1")
    with RawConnection(b.port) as c:
        c.send(b"GARBAGE \"x\r\n\r\n")
        assert c.read_response().status == 400
    with RawConnection(b.port) as c:
        c.send(b"GET /big-head HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
        assert c.read_response().status == 431
    assert request(b.port, "POST", "/echo", body=b"x" * 100).status == 413
    assert request(b.port, "GET", "/wait-disconnect?id=al").status == 504

    log = wait_for_log(b.gateway, '"GET /wait-disconnect?id=al HTTP/1.1" 504')
    bad = [m for m in COMBINED.finditer(log) if m["status"] == "400"]
    assert bad and bad[-1]["request"] == "GARBAGE \\x22x"  # the raw first line, escaped
    assert extras(bad[-1]) == {"origin": "gateway", "reason": "bad_request"}
    big = [m for m in COMBINED.finditer(log) if m["status"] == "431"]
    assert big and big[-1]["request"].startswith("GET /big-head HTTP/1.1")
    assert extras(big[-1])["reason"] == "limit"
    too_large = combined_line(log, "POST /echo HTTP/1.1")
    assert (too_large["status"], extras(too_large)) == ("413", {"origin": "gateway", "reason": "limit"})
    timeout = combined_line(log, "GET /wait-disconnect?id=al HTTP/1.1")
    assert extras(timeout) == {"origin": "gateway", "reason": "app_timeout"}
    assert 1 <= float(timeout["rt"]) < 10


def test_no_worker_is_a_gateway_503(logged):
    b = logged("--dispatch-timeout", "0.2", workers=0)
    assert request(b.port, "GET", "/nobody").status == 503
    line = combined_line(wait_for_log(b.gateway, '"GET /nobody HTTP/1.1" 503'), "GET /nobody HTTP/1.1")
    assert extras(line) == {"origin": "gateway", "reason": "no_worker"}
    assert line["worker"] == "-"


def test_websocket_handshake_and_close_lines(logged):
    b = logged()
    ws = RawWebSocket(b.port, "/ws?id=a", headers=[("User-Agent", "wsprobe")])
    assert ws.read_handshake().status == 101
    for text in (b"hello", b"world!"):
        ws.send_frame(TEXT, text)
        assert ws.read_message() == (TEXT, text)
    ws.send_frame(CLOSE, close_payload(1000))
    assert ws.read_close()[0] == 1000
    ws.close()
    refused = RawWebSocket(b.port, "/ws-refuse?id=r")
    assert refused.read_handshake().status == 403
    refused.close()
    app_closed = RawWebSocket(b.port, "/ws?id=c")
    assert app_closed.read_handshake().status == 101
    app_closed.send_frame(TEXT, b"close:4001")
    assert app_closed.read_close()[0] == 4001
    app_closed.send_frame(CLOSE, close_payload(4001))
    app_closed.close()

    log = wait_for_log(b.gateway, '"WSDISCONNECT /ws?id=c" 4001')
    opened = combined_line(log, "GET /ws?id=a HTTP/1.1")
    assert (opened["status"], opened["agent"]) == ("101", "wsprobe")
    assert extras(opened) == {"origin": "app", "ws": "handshake"}
    closed = combined_line(log, "WSDISCONNECT /ws?id=a")
    assert closed["status"] == "1000"
    assert extras(closed) == {"closed_by": "client", "msgs_in": "2", "bytes_in": "11", "msgs_out": "2",
                              "bytes_out": "11"}
    assert int(closed["bytes"]) == 11
    refusal = combined_line(log, "GET /ws-refuse?id=r HTTP/1.1")
    assert refusal["status"] == "403" and extras(refusal)["origin"] == "app"
    by_app = combined_line(log, "WSDISCONNECT /ws?id=c")
    assert extras(by_app)["closed_by"] == "app"


def test_daphne_format(logged):
    b = logged("--access-log-format", "daphne")
    assert request(b.port, "GET", "/echo?d=1").status == 200
    ws = RawWebSocket(b.port, "/ws?id=d")
    assert ws.read_handshake().status == 101
    ws.send_frame(CLOSE, close_payload(1000))
    ws.read_close()
    ws.close()
    refused = RawWebSocket(b.port, "/ws-refuse?id=dr")
    assert refused.read_handshake().status == 403
    refused.close()

    log = wait_for_log(b.gateway, '"WSREJECT /ws-refuse?id=dr"')
    lines = {m["request"]: m for m in DAPHNE.finditer(log)}
    assert lines["GET /echo?d=1"]["client"] == "127.0.0.1"
    assert lines["GET /echo?d=1"]["status"] == "200" and int(lines["GET /echo?d=1"]["length"]) > 0
    for request_line in ("WSCONNECT /ws?id=d", "WSDISCONNECT /ws?id=d", "WSREJECT /ws-refuse?id=dr"):
        assert (lines[request_line]["status"], lines[request_line]["length"]) == ("-", "-"), request_line


def test_json_has_every_field_as_a_key(logged):
    b = logged("--log-format", "json", "--proxy-headers")
    assert request(b.port, "GET", "/echo?j=1", headers={"X-Forwarded-For": "198.51.100.2"}).status == 200
    with RawConnection(b.port) as c:
        c.send(b"BAD\r\n\r\n")
        assert c.read_response().status == 400
    ws = RawWebSocket(b.port, "/ws?id=j")
    assert ws.read_handshake().status == 101
    ws.send_frame(TEXT, b"abc")
    ws.read_message()
    ws.send_frame(CLOSE, close_payload(1001))
    ws.read_close()
    ws.close()

    entries = json_access(wait_for_log(b.gateway, "WSDISCONNECT /ws?id=j"))
    assert all(list(e)[:4] == ["time", "level", "logger", "message"] for e in entries)
    http = next(e for e in entries if e["type"] == "http" and e.get("target") == "/echo?j=1")
    assert http["client"] == "198.51.100.2" and isinstance(http["client_port"], int)
    assert (http["method"], http["http_version"], http["status"], http["origin"]) == ("GET", "1.1", 200, "app")
    assert http["reason"] is None and http["worker"]
    assert http["bytes_sent"] > 0 and http["bytes_received"] > 0 and 0 <= http["duration"] < 10
    assert http["message"].startswith("198.51.100.2 - - [")
    bad = next(e for e in entries if e["type"] == "http" and e["status"] == 400)
    assert (bad["request_line"], bad["origin"], bad["reason"]) == ("BAD", "gateway", "bad_request")
    hello = next(e for e in entries if e["type"] == "websocket.handshake" and e["target"] == "/ws?id=j")
    assert (hello["status"], hello["origin"]) == (101, "app")
    bye = next(e for e in entries if e["type"] == "websocket.close" and e["target"] == "/ws?id=j")
    assert (bye["close_code"], bye["closed_by"]) == (1001, "client")
    assert (bye["messages_received"], bye["messages_sent"], bye["bytes_received"], bye["bytes_sent"]) == (1, 1, 3, 3)


def test_no_access_line_without_the_option(bridge_factory):
    b = bridge_factory("basic_app:app")
    assert request(b.port, "GET", "/echo?quiet=1").status == 200
    with RawConnection(b.port) as c:  # a gateway-made answer, logged with the option
        c.send(b"BAD\r\n\r\n")
        assert c.read_response().status == 400
    # The 400's warning is written after the first request's access line would have been.
    log = wait_for_log(b.gateway, "bad request (400)")
    assert "[access]" not in log


def test_websocket_closed_by_the_gateway_when_its_worker_dies(logged):
    b = logged()
    ws = RawWebSocket(b.port, "/ws-hang?id=k")
    assert ws.read_handshake().status == 101
    b.state.wait_for("started-k")
    b.workers[0].kill()
    assert ws.read_close()[0] == 1011
    ws.send_frame(CLOSE, close_payload(1011))
    ws.close()
    line = combined_line(wait_for_log(b.gateway, '"WSDISCONNECT /ws-hang?id=k" 1011'), "WSDISCONNECT /ws-hang?id=k")
    assert extras(line)["closed_by"] == "gateway"
