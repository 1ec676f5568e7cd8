"""An ASGI 3 app with lifespan: startup fills the state, shutdown is recorded.

LIFESPAN_FAIL=1 in the environment makes startup fail with a message.
"""

import json
import os
from pathlib import Path

STATE = Path(os.environ.get("IT_STATE_DIR", "/tmp"))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.environ.get("LIFESPAN_FAIL"):
                    await send({"type": "lifespan.startup.failed",
                                "message": "database unreachable (on purpose)"})
                    return
                if "state" in scope:
                    scope["state"]["greeting"] = "set at startup"
                (STATE / f"startup-{os.getpid()}").write_text("done")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                (STATE / f"shutdown-{os.getpid()}").write_text("done")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    state = scope.get("state")
    body = json.dumps({"pid": os.getpid(),
                       "state": dict(state) if state is not None else None}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
