"""Exceptions of the Python worker.

Three families, because an app (and its tests) must be able to tell them apart:

* ``ProtocolError`` — a bus message that breaks docs/protocol.md (a peer's bug).
* ``InvalidEvent`` — an event the *app* passed to ``send`` has a wrong type or value
  (a str header name, a status that is not an int…). It is a ``TypeError`` and a
  ``ValueError`` so that code written for either (as other servers raise) catches it.
* ``UnexpectedMessage`` — the app broke the ASGI state machine (a body before the
  response start, ``websocket.send`` before accept…).
* ``ClientDisconnected`` — ``send`` on a connection that is over, either because the
  client left or because the app already finished its response. ASGI www spec 2.4
  asks for an ``OSError`` subclass here.
"""


class ProtocolError(ValueError):
    """A message that does not follow docs/protocol.md; the text names the field.

    ``kind``, ``gateway`` and ``conn`` are filled in when they could be read from the
    message, so that the worker can log them and end the affected connection.
    """

    def __init__(self, message, kind=None, gateway=None, conn=None):
        super().__init__(message)
        self.kind = kind
        self.gateway = gateway
        self.conn = conn


class InvalidEvent(ProtocolError, TypeError):
    """An app-sent event with a wrong field type or value; raised out of ``send``."""


class UnexpectedMessage(RuntimeError):
    """An app-sent event that is not allowed in the connection's current state."""


class ClientDisconnected(OSError):
    """``send`` on a connection that is already over (ASGI www spec 2.4)."""
