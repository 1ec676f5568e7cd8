#!/usr/bin/python3
"""Echoes an exact number of WebSocket messages through a running server, for
per-message counts (callgrind instructions, strace system calls) taken as the
difference between two runs of different lengths, so start-up cancels out.

    bench/ws_count.py --port 8000 --connections 16 --messages 2000 [--size 32]

Each of --connections raw-socket clients sends one masked text frame, then
every connection's echo is read before the next round: the server sees
--connections messages at once, as under a load generator, but the count is
exact. Prints the messages echoed and the seconds taken.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import time


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return sock


def frame(payload: bytes) -> bytes:
    # Masked with a zero key: the payload goes out as it is.
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--messages", type=int, required=True, help="in all, over every connection")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    socks = [connect(args.port) for _ in range(args.connections)]
    payload = b"x" * args.size
    out = frame(payload)
    rounds = args.messages // args.connections
    start = time.monotonic()
    for _ in range(rounds):
        for sock in socks:
            sock.sendall(out)
        for sock in socks:
            head = read_exact(sock, 2)
            if read_exact(sock, head[1] & 0x7F) != payload:
                raise RuntimeError("bad echo")
    elapsed = time.monotonic() - start
    for sock in socks:
        sock.sendall(bytes([0x88, 0x82, 0, 0, 0, 0]) + struct.pack("!H", 1000))
        sock.close()
    print(rounds * args.connections, "messages", f"{elapsed:.2f} s")


if __name__ == "__main__":
    main()
