"""A small HTTP/2 client over a raw socket (python3-h2 frames it): for the
scope checks, flow control and the attacks that client libraries hide
(resets, floods, windows left shut). Bounded: every wait has a deadline."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Optional

import h2.config
import h2.connection
import h2.events
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class StreamResult:
    def __init__(self):
        self.status: Optional[int] = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.informational: list[int] = []
        self.body = bytearray()
        self.trailers: list[tuple[bytes, bytes]] = []
        self.ended = False
        self.reset: Optional[int] = None  # RST_STREAM error code

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> Optional[bytes]:
        return next((v for n, v in self.headers if n == name), None)


class H2Client:
    """One HTTP/2 connection. `read_body=False` leaves the windows shut (a client that stops reading);
    `validate=False` sends header blocks as given, malformed ones included."""

    def __init__(self, port: int, *, tls: Optional[ssl.SSLContext] = None, settings: Optional[dict] = None,
                 timeout: float = 10.0, read_body: bool = True, validate: bool = True):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                           validate_outbound_headers=validate,
                                           normalize_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.read_body = read_body
        self.streams: dict[int, StreamResult] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.closed = False
        self.flush()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers=(), body: Optional[bytes] = None,
                end: bool = True, authority: str = "localhost") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        head = [(":method", method), (":path", path), (":scheme", "http"), (":authority", authority), *headers]
        self.conn.send_headers(stream_id, head, end_stream=end and body is None)
        self.streams[stream_id] = StreamResult()
        self.flush()
        if body is not None:
            self.send_body(stream_id, body, end=end)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True, timeout: float = 20.0):
        """Sends as the server's windows allow, reading its frames meanwhile."""
        deadline = time.monotonic() + timeout
        view = memoryview(body)
        while view:
            if self.streams[stream_id].done or self.closed:
                return  # answered early (413) or reset: the rest is not wanted
            room = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if room <= 0:
                assert time.monotonic() < deadline, "the server's window stayed shut"
                self.pump(0.2)
                continue
            self.conn.send_data(stream_id, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end and not self.streams[stream_id].done:
            self.conn.end_stream(stream_id)
            self.flush()

    def pump(self, timeout: float) -> bool:
        """Reads what arrives within `timeout`; False once the connection is closed."""
        if self.closed:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.on_event(event)
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def on_event(self, event):
        stream = self.streams.get(getattr(event, "stream_id", None) or 0)
        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = list(event.headers)
            stream.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            stream.informational.append(int(dict(event.headers)[b":status"]))
        elif isinstance(event, h2.events.DataReceived):
            stream.body += event.data
            if self.read_body:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            if event.error_code == 0:
                # python3-h2 closes on any GOAWAY; a graceful one lets the streams up to
                # last_stream_id finish (RFC 9113 §6.8): keep reading them.
                self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN

    def wait(self, stream_ids, timeout: float = 15.0) -> list[StreamResult]:
        deadline = time.monotonic() + timeout
        while not all(self.streams[s].done for s in stream_ids):
            assert time.monotonic() < deadline, f"streams {stream_ids} not done in {timeout} s"
            if not self.pump(0.5):
                break
        return [self.streams[s] for s in stream_ids]

    def wait_closed(self, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while self.pump(0.5):
            assert time.monotonic() < deadline, f"connection still open after {timeout} s"

    def get(self, path: str, **kwargs) -> StreamResult:
        return self.wait([self.request(path, **kwargs)])[0]
