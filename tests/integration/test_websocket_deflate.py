"""WebSocket permessage-deflate (RFC 7692, issue 18): negotiated when the client offers it
(python3-websockets does by default), the app sees and sends uncompressed messages, raw
frames with RSV1 set, RSV1 without the extension (1002), --ws-per-message-deflate false,
the window and context takeover options, an app's own Sec-WebSocket-Extensions header
dropped, and a zip bomb closed 1009 at --max-message-size with the gateway's memory bounded.
"""

from __future__ import annotations

import asyncio
import os
import zlib

import pytest
import websockets

from .harness import wait_for_log
from .wsraw import (BINARY, CLOSE, CONTINUATION, PING, TEXT, RawWebSocket, close_payload, deflate,
                    inflate)

APP = "ws_routes:app"
MiB = 1024 * 1024
# What Chrome, Firefox's newer releases and python3-websockets offer.
OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
# Beast's answer with the default options (docs/decisions.md).
DEFAULT_ANSWER = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def opened(port: int, path: str, headers=(OFFER,)) -> tuple[RawWebSocket, str | None]:
    """A raw connection past its 101, and the 101's Sec-WebSocket-Extensions."""
    c = RawWebSocket(port, path, headers=headers)
    r = c.read_handshake()
    assert r.status == 101, r
    return c, r.header("sec-websocket-extensions")


def read_compressed(c: RawWebSocket, context) -> tuple[int, bytes]:
    """(opcode, message) of the next data message, which must be compressed: RSV1 on its
    first frame only (RFC 7692 §6), the frames' payloads inflated together."""
    fin, rsv1, opcode, payload = c.read_frame_rsv1()
    assert opcode in (TEXT, BINARY) and rsv1, (opcode, rsv1)
    parts = [payload]
    while not fin:
        fin, rsv1, op, payload = c.read_frame_rsv1()
        assert op == CONTINUATION and not rsv1
        parts.append(payload)
    return opcode, inflate(b"".join(parts), context)


def vm_hwm(pid: int) -> int:
    """The process's peak resident memory in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


# -- negotiated --------------------------------------------------------------------------------


def test_websockets_client_negotiates_and_messages_round_trip(bridge_factory):
    """python3-websockets offers permessage-deflate; the 101 answers it and text, binary,
    empty, large and incompressible messages echo unchanged through the app, which sees
    them uncompressed (a compressed payload echoed would come back compressed twice)."""
    b = bridge_factory(APP)
    messages = ["hello", "", "ünïcödé ✓" * 100, b"\x00\x01\xff", b"", "t" * 70_000,
                b"b" * (2 * MiB + 3), os.urandom(300_000), "after the large ones"]

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/echo?id=ws", max_size=None) as ws:
            echoed = []
            for message in messages:
                await ws.send(message)
                echoed.append(await ws.recv())
            return ws.response_headers.get("Sec-WebSocket-Extensions"), [e.name for e in ws.extensions], echoed

    header, extensions, echoed = run(client())
    assert header == DEFAULT_ANSWER
    assert extensions == ["permessage-deflate"]
    assert [type(e) for e in echoed] == [type(m) for m in messages]
    assert echoed == messages
    assert b.state.wait_for("ws-ws").startswith("disconnect 1000")


def test_raw_compressed_frames_round_trip(bridge_factory):
    """Frames compressed by hand (zlib raw deflate, the 4-byte tail stripped): a text
    message, a binary one in three fragments with RSV1 on the first only, an uncompressed
    message on the same connection; the gateway's answers carry RSV1 and inflate to the
    messages, one inflater across them (the server keeps its context by default)."""
    b = bridge_factory(APP)
    c, extensions = opened(b.port, "/echo?id=raw")
    with c:
        assert extensions == DEFAULT_ANSWER
        server_context = zlib.decompressobj(-15)
        text = "compressed ✓ " * 200
        c.send_frame(TEXT, deflate(text.encode(), 12), rsv1=True)
        assert read_compressed(c, server_context) == (TEXT, text.encode())

        data = bytes(range(256)) * 400
        payload = deflate(data, 12)
        third = len(payload) // 3
        c.send_frame(BINARY, payload[:third], fin=False, rsv1=True)
        c.send_frame(PING, b"between fragments")
        c.send_frame(CONTINUATION, payload[third:2 * third], fin=False)
        c.send_frame(CONTINUATION, payload[2 * third:], fin=True)
        fin, rsv1, opcode, pong = c.read_frame_rsv1()
        assert (opcode, pong, rsv1) == (0xA, b"between fragments", False)
        assert read_compressed(c, server_context) == (BINARY, data)

        c.send_frame(TEXT, b"not compressed")  # RSV1 clear: allowed per message
        assert read_compressed(c, server_context) == (TEXT, b"not compressed")

        c.send_frame(CLOSE, close_payload(1000))
        assert c.read_close() == (1000, "")
    assert b.state.wait_for("ws-raw").startswith("disconnect 1000")


def test_an_offer_on_a_later_extensions_line_is_taken(bridge_factory):
    """RFC 9110 §5.3: Sec-WebSocket-Extensions lines form one list; the offer on the
    second line is negotiated as if it came alone."""
    b = bridge_factory(APP)
    c, extensions = opened(b.port, "/echo?id=lines",
                           headers=(("Sec-WebSocket-Extensions", "x-unknown"), OFFER))
    with c:
        assert extensions == DEFAULT_ANSWER
        c.send_frame(TEXT, deflate(b"second line", 12), rsv1=True)
        assert read_compressed(c, zlib.decompressobj(-15)) == (TEXT, b"second line")


def test_invalid_utf8_inside_a_compressed_text_closes_1007(bridge_factory):
    """UTF-8 is checked on the inflated text, as on an uncompressed one."""
    b = bridge_factory(APP)
    c, _ = opened(b.port, "/echo?id=utf8")
    with c:
        c.send_frame(TEXT, deflate("ok ✓".encode() + b"\xff\xfe", 12), rsv1=True)
        assert c.read_close()[0] == 1007
    assert b.state.wait_for("ws-utf8").startswith("disconnect 1007")


@pytest.mark.parametrize("case", ["not offered", "option off"])
def test_rsv1_without_the_extension_closes_1002(bridge_factory, case):
    """RSV1 set on a connection that did not agree on permessage-deflate (the client did not
    offer it, or the gateway runs with --ws-per-message-deflate false): the 101 names no
    extension, and the compressed frame fails the connection with 1002 for the client and
    the app, with a log line."""
    args = ["--ws-per-message-deflate", "false"] if case == "option off" else []
    b = bridge_factory(APP, gateway_args=args)
    c, extensions = opened(b.port, "/echo?id=rsv1", headers=[OFFER] if case == "option off" else [])
    with c:
        assert extensions is None
        c.send_frame(TEXT, b"plain")
        assert c.read_message() == (TEXT, b"plain")
        c.send_frame(TEXT, deflate(b"compressed"), rsv1=True)
        assert c.read_close()[0] == 1002
    assert b.state.wait_for("ws-rsv1").startswith("disconnect 1002")
    wait_for_log(b.gateway, "client broke the WebSocket protocol")


def test_option_off_websockets_client_gets_no_extension(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--ws-per-message-deflate", "false"])

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/echo?id=off", max_size=None) as ws:
            await ws.send("x" * 100_000)
            echoed = await ws.recv()
            return ws.response_headers.get("Sec-WebSocket-Extensions"), ws.extensions, echoed

    assert run(client()) == (None, [], "x" * 100_000)


def test_window_and_context_takeover_options(bridge_factory):
    """The options reach the 101: the client's window only when its offer names
    client_max_window_bits (else the full window, rather than no compression at all), and
    with server_no_context_takeover each message the gateway sends inflates on its own."""
    b = bridge_factory(APP, gateway_args=["--ws-deflate-server-window-bits", "15",
                                          "--ws-deflate-client-window-bits", "10",
                                          "--ws-deflate-server-no-context-takeover",
                                          "--ws-deflate-client-no-context-takeover"])
    c, extensions = opened(b.port, "/echo?id=opts")
    with c:
        assert extensions == ("permessage-deflate; server_no_context_takeover; "
                              "client_no_context_takeover; client_max_window_bits=10")
        message = b"the same message twice " * 50
        for _ in range(2):
            c.send_frame(BINARY, deflate(message, 10), rsv1=True)
            assert read_compressed(c, zlib.decompressobj(-15)) == (BINARY, message)
    c, extensions = opened(b.port, "/echo?id=opts2", headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    with c:
        assert extensions == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        c.send_frame(TEXT, deflate(b"full window", 15), rsv1=True)
        assert read_compressed(c, None) == (TEXT, b"full window")


@pytest.mark.parametrize("deflate_on", [True, False])
def test_app_cannot_claim_an_extension(bridge_factory, deflate_on):
    """A Sec-WebSocket-Extensions header in the app's websocket.accept is dropped: only the
    gateway, which frames the messages, answers the client's offer."""
    args = [] if deflate_on else ["--ws-per-message-deflate", "false"]
    b = bridge_factory(APP, gateway_args=args)
    c, extensions = opened(b.port, "/scope?id=claim&ext=permessage-deflate")
    with c:
        assert extensions == (DEFAULT_ANSWER if deflate_on else None)
        c.send_frame(TEXT, b"hello")
        if deflate_on:
            assert read_compressed(c, None) == (TEXT, b"hello")
        else:
            assert c.read_frame_rsv1() == (True, False, TEXT, b"hello")


# -- limits ------------------------------------------------------------------------------------


def test_zip_bomb_closes_1009_with_memory_bounded(bridge_factory):
    """100 KiB of compressed zeros that inflate to 100 MiB, against --max-message-size
    1 MiB: Beast checks the limit after each inflated chunk, so the connection is closed
    1009 once 1 MiB is out; the gateway's peak RSS grows by a few MiB, not 100. A small
    frame (1 KiB, 1 MiB inflated) is closed the same way, and the gateway serves on."""
    b = bridge_factory(APP, gateway_args=["--max-message-size", str(MiB)])
    # After the first MiB the compressor's state repeats, and so does its output for each
    # further MiB of zeros: 100 MiB compressed in a tenth of the time.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    first = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    unit = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = (first + unit * 99)[:-4]
    assert len(bomb) < 110 * 1024

    c, _ = opened(b.port, "/echo?id=warm")  # the gateway's heap as one connection leaves it
    with c:
        c.send_frame(TEXT, deflate(b"warm " * 1000, 12), rsv1=True)
        read_compressed(c, zlib.decompressobj(-15))
    before = vm_hwm(b.gateway.pid)
    c, _ = opened(b.port, "/echo?id=bomb")
    with c:
        c.send_frame(BINARY, bomb, rsv1=True)
        assert c.read_close()[0] == 1009
    assert b.state.wait_for("ws-bomb").startswith("disconnect 1009")
    grown = vm_hwm(b.gateway.pid) - before
    assert grown < 16 * MiB, f"peak RSS grew {grown / MiB:.1f} MiB for a 100 MiB bomb"

    small = deflate(bytes(MiB + 1), 12)
    assert len(small) < 1100
    c, _ = opened(b.port, "/echo?id=small")
    with c:
        c.send_frame(TEXT, small, rsv1=True)
        assert c.read_close()[0] == 1009
    assert b.state.wait_for("ws-small").startswith("disconnect 1009")

    c, _ = opened(b.port, "/echo?id=after")
    with c:
        c.send_frame(TEXT, deflate(b"still served", 12), rsv1=True)
        assert read_compressed(c, None) == (TEXT, b"still served")
