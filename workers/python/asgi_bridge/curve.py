"""ZeroMQ CURVE for the worker's DEALERs (docs/security.md).

The worker holds its own key pair (``--bus-secret-key``) and the gateway's public key
(``--bus-server-key``), in ZeroMQ's certificate files (``zmq.auth``'s format, which the
gateway's ``asgi-bridge keygen`` writes too). ZeroMQ retries a refused handshake silently,
or gives up on it, so each DEALER is watched through a socket monitor that logs why the
gateway refused us and connects again. A worker without CURVE is watched too: a gateway that
requires CURVE refuses it with a protocol error, after which libzmq would stay silent for good.
"""

import logging
import os
import time

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

logger = logging.getLogger("asgi_bridge.transport")

_MECHANISM_MISMATCH = 0x11000002  # ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
# Without CURVE: a CURVE gateway refuses us with a mechanism mismatch (libzmq then gives up),
# or hangs up first when it sees the mismatch before we do (libzmq reconnects by itself).
_PLAIN_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                 | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
REPEAT_LOG = 30.0  # seconds before the same failure is logged again
RETRY = 1.0        # seconds before connecting again after a refusal


def keygen(base):
    """Write BASE.key (public) and BASE.key_secret (the pair, mode 0600, never readable
    by others, not even for a moment); return both paths."""
    directory, name = os.path.split(base)
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(directory or ".", name)
    finally:
        os.umask(old)
    os.chmod(public, 0o644)
    return public, secret


class CurveKeys:
    """The worker's key pair and the gateway's public key, read from their files.
    ValueError naming the file when one is missing or malformed."""

    def __init__(self, server_key_file, secret_key_file):
        self.server_public = self._load(server_key_file, "--bus-server-key", secret=False)[0]
        self.public, self.secret = self._load(secret_key_file, "--bus-secret-key", secret=True)

    @staticmethod
    def _load(path, option, secret):
        try:
            public, secret_key = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{option} {path}: {exc}") from None
        if secret and not secret_key:
            raise ValueError(f"{option} {path}: no secret-key (give the NAME.key_secret file)")
        return public, secret_key

    def apply(self, sock):
        """Make `sock` a CURVE client of the gateway; before connect()."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


class HandshakeWatcher:
    """Logs, on the event loop, why the gateway refused our handshakes on one socket, and
    connects again after a refusal: libzmq gives up on an endpoint whose handshake failed
    with an authentication or protocol error (a key not yet on the gateway's allow-list
    must start working once it is added). `curve`: whether the socket uses CURVE."""

    def __init__(self, loop, sock, url, endpoint, curve=True):
        self._loop = loop
        self._curve = curve
        self._what = "CURVE handshake" if curve else "handshake"
        self._url = url
        self._sock = sock
        self._endpoint = endpoint
        self._retry = None      # the TimerHandle of a pending reconnect
        self._monitor = sock.get_monitor_socket(_EVENTS if curve else _PLAIN_EVENTS)
        self._last = None       # the failure logged last, until a success
        self._logged_at = 0.0
        loop.add_reader(self._monitor.getsockopt(zmq.FD), self._drain)
        self._drain()  # the FD is edge-triggered: take what is already there

    def close(self):
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._monitor.getsockopt(zmq.FD))
        self._monitor.close(linger=0)

    def _reconnect(self):
        self._retry = None
        if self._sock.closed:
            return
        try:
            self._sock.disconnect(self._endpoint)
        except zmq.ZMQError:
            pass  # already forgotten by libzmq
        self._sock.connect(self._endpoint)

    def _drain(self):
        while not self._monitor.closed:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_event(event["event"], event["value"])

    def _on_event(self, event, value):
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self._last is not None:
                logger.info("bus %s: %s succeeded", self._url, self._what)
            self._last = None
            return
        if event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._retry is None:
            self._retry = self._loop.call_later(RETRY, self._reconnect)
        reason = self._reason(event, value)
        now = time.monotonic()
        if reason == self._last and now - self._logged_at < REPEAT_LOG:
            logger.debug("bus %s: %s failed again: %s", self._url, self._what, reason)
            return
        logger.error("bus %s: %s failed: %s; retrying", self._url, self._what, reason)
        self._last, self._logged_at = reason, now

    def _reason(self, event, value):
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if value == 400:
                return ("the gateway refused our public key: is it in the gateway's "
                        "--bus-authorized-keys?")
            return f"the gateway refused us (ZAP status {value})"
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and not self._curve:
            return ("the gateway closed the connection during the handshake: does it require "
                    "CURVE (--bus-secret-key)?")
        if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            return ("the gateway closed the connection during the CURVE handshake: is "
                    "--bus-server-key the gateway's public key?")
        if value == _MECHANISM_MISMATCH and not self._curve:
            return ("the gateway requires CURVE (it has --bus-secret-key): give this worker "
                    "--bus-server-key and --bus-secret-key")
        if value == _MECHANISM_MISMATCH:
            return "the gateway does not use CURVE (it has no --bus-secret-key)"
        return f"handshake protocol error {value:#x}"
