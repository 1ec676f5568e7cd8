"""Issue 12, item 8: a response head the HTTP grammar forbids never reaches
the client. The gateway checks the app's http.response.start (and a
WebSocket's denial response and accept headers) before writing any of it:
an invalid one is answered 500 with a log line naming the problem and the
worker, and the next request is served as usual. Unusual but valid heads
still pass.

The apps are in apps/bad_heads_app.py, one route per head.
"""

import pytest

from .harness import Bridge, RawConnection, free_port, request, wait_until
from .wsraw import RawWebSocket

# case -> what the gateway's log line names (the problem it found).
GATEWAY_CASES = {
    "cl-abc-chunked": 'content-length "abc" is not a decimal number',
    "cl-two-values": "two different content-length values (5 and 6)",
    "cl-negative": 'content-length "-1" is not a decimal number',
    "cl-overflow": 'content-length "99999999999999999999" is not a decimal number',
    "status-101": "status 101 is not a final status",
    "status-100": "status 100 is not a final status",
    "status-199": "status 199 is not a final status",
    "te-gzip": 'transfer-encoding "gzip"',
    "value-ctl": 'header "x-bad" has a control character in its value "a\\x01b"',
    "value-del": 'header "x-bad" has a control character in its value "a\\x7fb"',
}

# Refused by the Python worker before they reach the bus: the app's send
# raises, and the gateway answers 500 for the application error.
WORKER_CASES = ["name-space", "name-colon", "value-crlf", "value-nul"]


@pytest.fixture(scope="module")
def heads(tmp_path_factory, gateway_path):
    """One gateway and worker for the whole module: every case must leave them serving."""
    b = Bridge(f"zmq://127.0.0.1:{free_port()}", tmp_path_factory.mktemp("heads"), "bad_heads_app:app")
    b.start_gateway()
    b.start_worker()
    b.wait_ready()
    yield b
    b.close()


def raw_get(port: int, path: str, ask_closed: bool = True):
    """The response, and whether the gateway then closed the connection (a kept-alive one
    is seen only at the keep-alive timeout: ask_closed=False skips that wait)."""
    with RawConnection(port) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        r = c.read_response()
        closed = c.at_eof() if ask_closed else None
    return r, closed


@pytest.mark.parametrize("case", GATEWAY_CASES)
def test_invalid_head_gives_500_and_a_log_line(heads, case):
    r, closed = raw_get(heads.port, f"/head/{case}")
    assert r.status == 500, r
    assert r.complete and b"hello" not in r.body, f"the app's body went out: {r}"
    assert r.header("x-bad") is None and r.header("upgrade") is None, r
    assert closed, "the connection stayed open after a refused response"
    problem = GATEWAY_CASES[case]
    wait_until(lambda: problem in heads.gateway.log(), 10, f"a log line naming {problem!r}")
    line = next(l for l in heads.gateway.log().splitlines() if problem in l)
    assert "invalid http.response.start from worker wk-" in line, line
    # The next request, on a fresh connection, is served.
    assert request(heads.port, "GET", "/").status == 200


@pytest.mark.parametrize("case", WORKER_CASES)
def test_head_the_worker_refuses_gives_500(heads, case):
    r, _ = raw_get(heads.port, f"/head/{case}")
    assert r.status == 500, r
    assert r.header("x-injected") is None and b"hello" not in r.body, r
    assert request(heads.port, "GET", "/").status == 200


def raw_get_open(port: int, path: str):
    return raw_get(port, path, ask_closed=False)


def test_valid_unusual_heads_pass(heads):
    r, _ = raw_get_open(heads.port, "/ok/cl-repeated-same")
    assert (r.status, r.body) == (200, b"hello"), r
    assert [v for k, v in r.headers if k.lower() == "content-length"] == ["5"], r.headers

    r, _ = raw_get_open(heads.port, "/ok/cl-leading-zeros")
    assert (r.status, r.body) == (200, b"hello"), r

    # The app's own "chunked" is dropped: the gateway frames the body (once).
    r, _ = raw_get_open(heads.port, "/ok/te-chunked-from-app")
    assert (r.status, r.body, r.chunked) == (200, b"hello", True), r
    assert [v for k, v in r.headers if k.lower() == "transfer-encoding"] == ["chunked"], r.headers

    r, _ = raw_get_open(heads.port, "/ok/status-599")
    assert (r.status, r.body) == (599, b"hello"), r
    r, _ = raw_get_open(heads.port, "/ok/status-299")
    assert (r.status, r.body) == (299, b"hello"), r

    with RawConnection(heads.port) as c:
        c.send(b"GET /ok/odd-but-valid HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = c.read_until(b"\r\n\r\n")
    assert b"x-tchars!#$%&'*+-.^_`|~: tab\there, obs-text \xe9\xff\r\n" in raw, raw
    assert b"x-empty: \r\n" in raw, raw


# Few cases per rule: the gateway's log lines are rate limited per worker and
# rule (5 in 10 s), and the HTTP cases above use most of content-length's.
@pytest.mark.parametrize("case", ["status-101", "te-gzip", "value-ctl"])
def test_invalid_websocket_denial_gives_500(heads, case):
    with RawWebSocket(heads.port, f"/ws/deny/{case}") as ws:
        r = ws.read_handshake()
    assert r.status == 500, r
    assert b"hello" not in r.body, r
    problem = GATEWAY_CASES[case]
    wait_until(lambda: problem in heads.gateway.log(), 10, f"a log line naming {problem!r}")


def test_valid_websocket_denial_passes(heads):
    with RawWebSocket(heads.port, "/ws/deny/cl-repeated-same") as ws:
        r = ws.read_handshake()
    assert (r.status, r.body) == (200, b"hello"), r


def test_invalid_websocket_accept_header_gives_500(heads):
    with RawWebSocket(heads.port, "/ws/accept-bad") as ws:
        r = ws.read_handshake()
    assert r.status == 500, r
    assert r.header("x-bad") is None, r
    wait_until(lambda: "invalid handshake response from worker" in heads.gateway.log(), 10,
               "a log line for the accept")
    with RawWebSocket(heads.port, "/ws/accept-ok") as ws:
        r = ws.read_handshake()
    assert r.status == 101 and r.header("x-fine") == "tab\tok", r
