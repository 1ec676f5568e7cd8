"""asgi_bridge: the Python worker of asgi-bridge.

Runs any ASGI 3 (or ASGI 2) application behind the asgi-bridge gateway; see
docs/workers-python.md. ``python -m asgi_bridge MODULE:APP --bus zmq://HOST:PORT``.
"""

from .broadcast import publish
from .errors import ClientDisconnected, InvalidEvent, ProtocolError, UnexpectedMessage

__version__ = "0.1.0"
__all__ = ["ClientDisconnected", "InvalidEvent", "ProtocolError", "UnexpectedMessage", "publish"]
