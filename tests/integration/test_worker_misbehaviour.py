"""design.md section 5 rows about a worker that misbehaves or dies, driven by
a scripted worker (fakeworker.py) talking the wire protocol directly."""

import time

import msgpack
import pytest
import zmq

from .fakeworker import body, start
from .harness import Background, RawConnection, request


def test_first_event_carries_scope_and_window(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "GET", "/p?q=1", timeout=20)
    msg = fake.next_event(type_="http.request")
    assert msg["v"] == 1
    assert msg["s"] == 0
    assert isinstance(msg["c"], int)
    assert msg["g"]
    assert msg["window"] > 0
    scope = msg["scope"]
    assert scope["type"] == "http"
    assert scope["path"] == "/p"
    assert scope["query_string"] == b"q=1"
    assert msg["event"] == {"type": "http.request", "body": b"", "more_body": False}
    fake.reply(msg["c"], start(201))
    fake.reply(msg["c"], body(b"from the fake"))
    r = pending.result()
    assert (r.status, r.body) == (201, b"from the fake")


def test_invalid_event_before_start_gives_502(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=20)
    msg = fake.next_event(type_="http.request")
    fake.reply(msg["c"], {"type": "http.response.start", "status": 999, "headers": []})
    assert pending.result().status == 502


def test_out_of_order_event_gives_502(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=20)
    msg = fake.next_event(type_="http.request")
    fake.reply(msg["c"], start(200), seq=1)  # the first event must be s=0
    assert pending.result().status == 502


def test_worker_error_before_start_gives_500(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=20)
    msg = fake.next_event(type_="http.request")
    fake.error(msg["c"], "the app raised")
    assert pending.result().status == 500


def start_streaming(fake, c):
    """A GET on raw connection c that the fake answers with a started,
    unfinished chunked response; returns the connection id."""
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    msg = fake.next_event(type_="http.request")
    fake.reply(msg["c"], start(200))
    fake.reply(msg["c"], body(b"some", more=True))
    assert c.read_head().status == 200
    assert c.read_chunk() == b"some"
    return msg["c"]


def test_worker_error_after_start_aborts(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawConnection(fake_bridge.port, timeout=15) as c:
        conn = start_streaming(fake, c)
        fake.error(conn, "the app raised after start")
        with pytest.raises(EOFError):
            c.read_chunk()


def test_invalid_event_after_start_aborts(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawConnection(fake_bridge.port, timeout=15) as c:
        conn = start_streaming(fake, c)
        fake.reply(conn, start(200))  # a second start: invalid
        with pytest.raises(EOFError):
            c.read_chunk()


def test_worker_bye_before_answer_gives_502(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=20)
    fake.next_event(type_="http.request")
    fake.bye()
    assert pending.result().status == 502


def test_silent_worker_is_dead_and_gives_502(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=30)
    fake.next_event(type_="http.request")
    fake.heartbeats = False
    silent_at = time.monotonic()
    assert pending.result().status == 502
    assert pending.finished_at - silent_at < 8, "a silent worker was not declared dead in time"


def test_unacknowledged_get_is_redispatched_once(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=30)
    fake.next_event(type_="http.request")
    # A real worker comes; the fake leaves without having sent anything for
    # the connection: the GET goes to the real worker.
    fake_bridge.start_worker("basic_app:app")
    fake.bye()
    r = pending.result()
    assert (r.status, r.body) == (200, b"hello")


def test_acknowledged_get_is_not_redispatched(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=30)
    msg = fake.next_event(type_="http.request")
    fake.send({"v": 1, "k": "credit", "g": fake.gateway_id, "w": fake.id,
               "c": msg["c"], "events": 1})
    fake_bridge.start_worker("basic_app:app")
    fake.bye()
    assert pending.result().status == 502


def test_unacknowledged_post_is_not_redispatched(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/echo", body=b"x", timeout=30)
    fake.next_event(type_="http.request")
    fake_bridge.start_worker("basic_app:app")
    fake.bye()
    assert pending.result().status == 502


def test_gateway_survives_garbage_on_the_bus(fake_bridge):
    fake = fake_bridge.add_fake()
    # A stranger on the bus sends things that are not valid messages.
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect("tcp://" + fake_bridge.bus_url[len("zmq://"):])
    for junk in (b"", b"\xc1", b"not msgpack at all", msgpack.packb([1, 2, 3]),
                 msgpack.packb({"v": 2, "k": "ready"}),
                 msgpack.packb({"v": 1, "k": "from-the-future", "w": "x"})):
        sock.send(junk)
    time.sleep(0.5)
    sock.close(0)
    ctx.term()
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=20)
    msg = fake.next_event(type_="http.request")
    fake.reply(msg["c"], start(200))
    fake.reply(msg["c"], body(b"still fine"))
    assert pending.result().body == b"still fine"
    assert fake_bridge.gateway.alive()
