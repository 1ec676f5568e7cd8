"""A raw WebSocket client over a plain socket, for what client libraries hide:
the HTTP answer to a handshake that was not accepted, frames fragmented by hand,
invalid UTF-8, pings left unanswered, a client that never reads.

Frames are written masked (RFC 6455 §5.3: a client must mask) and read unmasked.
RSV1 marks a compressed message (permessage-deflate, RFC 7692): `deflate` and
`inflate` make and read such payloads.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from typing import Iterable, Optional

from .harness import RawConnection, RawResponse

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def handshake(path: str, port: int, headers: Iterable[tuple[str, str]] = (),
              connection: Iterable[str] = ("Upgrade",)) -> bytes:
    """The upgrade request; `connection`: the Connection field lines, one per item."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             *(f"Connection: {value}" for value in connection),
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + masked_payload(payload, mask)


def masked_payload(payload: bytes, mask: bytes) -> bytes:
    """payload XOR the repeated mask, as one big-integer XOR (fast for MiB payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def deflate(data: bytes, window_bits: int = 15) -> bytes:
    """A permessage-deflate payload: raw deflate, flushed, without the flush's
    0x00 0x00 0xff 0xff tail (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -window_bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(payload: bytes, context=None) -> bytes:
    """The message of a compressed payload (its tail put back, RFC 7692 §7.2.2).
    context: the connection's zlib.decompressobj(-15), for a sender that keeps its
    context from message to message; None: a fresh one."""
    context = context or zlib.decompressobj(-15)
    return context.decompress(payload + b"\x00\x00\xff\xff")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


class RawWebSocket(RawConnection):
    """A socket that sends one handshake and then speaks frames by hand."""

    def __init__(self, port: int, path: str, headers: Iterable[tuple[str, str]] = (),
                 timeout: float = 10.0, rcvbuf: Optional[int] = None,
                 connection: Iterable[str] = ("Upgrade",), early: bytes = b""):
        super().__init__(port, timeout)
        if rcvbuf is not None:
            # Small and fixed: a client that stops reading pushes back sooner.
            import socket
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.send(handshake(path, port, headers, connection) + early)  # early: frames in the same write

    def read_handshake(self) -> RawResponse:
        """The 101 head, or (when refused) the whole HTTP response."""
        head = self.read_head()
        if head.status == 101:
            head.complete = True
            return head
        try:
            length = head.header("content-length")
            head.body = self.read_exact(int(length)) if length is not None else self.read_to_eof()
            head.complete = True
        except EOFError:
            head.body = self.buf
        return head

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> None:
        self.send(frame(opcode, payload, fin, rsv1))

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame; EOFError if the peer closed."""
        fin, _, opcode, payload = self.read_frame_rsv1()
        return fin, opcode, payload

    def read_frame_rsv1(self) -> tuple[bool, bool, int, bytes]:
        """(fin, rsv1, opcode, payload) of the next server frame."""
        b0, b1 = self.read_exact(2)
        if b1 & 0x80:
            raise AssertionError("a server frame must not be masked")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self.read_exact(n)

    def read_message(self, answer_pings: bool = True) -> tuple[int, bytes]:
        """(opcode, payload) of the next data or close frame, answering pings on the way
        and joining a fragmented message (the gateway may fragment what it writes)."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.read_frame()
            if op == PING:
                if answer_pings:
                    self.send_frame(PONG, payload)
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                assert opcode is None, "a close frame inside a fragmented message"
                return op, payload
            if opcode is None:
                assert op != CONTINUATION, "a continuation frame without a start"
                opcode = op
            else:
                assert op == CONTINUATION, "a new message inside a fragmented one"
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def read_close(self) -> tuple[Optional[int], str]:
        """Skips data frames until the close frame: (code or None, reason)."""
        while True:
            opcode, payload = self.read_message()
            if opcode == CLOSE:
                if len(payload) < 2:
                    return None, ""
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

