"""The ASGI lifespan protocol (spec 2.0), run once per worker process.

``startup()`` returns whether the worker may serve: with ``--lifespan auto`` an app that
raises (or returns) before completing startup is taken as not supporting lifespan and
the worker goes on without it; with ``on`` that is fatal. ``lifespan.startup.failed``
is fatal in both modes. ``state`` is the dict the app may fill during startup; the
worker gives every connection scope a shallow copy of it.
"""

import asyncio
import logging

from .errors import UnexpectedMessage

logger = logging.getLogger("asgi_bridge.lifespan")


class Lifespan:
    def __init__(self, app, mode="auto"):
        self.app = app
        self.mode = mode
        self.state = {}
        self.supported = True      # False once auto mode found the app does not do lifespan
        self.failure = None        # why startup or shutdown failed, for the log and exit
        self._inbox = asyncio.Queue()
        self._phase = "startup"
        self._done = asyncio.Event()  # the current phase got its answer (or the app ended)
        self._task = None

    async def startup(self):
        """Run startup; True if the worker may serve."""
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        await self._done.wait()
        if self._phase == "startup-failed":
            logger.error("application startup failed: %s", self.failure)
            return False
        if self._phase == "startup":  # the app ended without answering
            if self.mode == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported (%s); "
                            "continuing without it", self.failure)
                self.supported = False
                return True
            logger.error("application startup failed: %s", self.failure)
            return False
        logger.info("application startup complete")
        return True

    async def shutdown(self, timeout=None):
        """Run shutdown; True unless the app reported or caused a failure."""
        if not self.supported or self._task is None:
            return True
        if self._task.done():
            return self.failure is None
        self._phase, self.failure = "shutdown", None
        self._done.clear()
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError:
            logger.error("application shutdown did not complete within %ss", timeout)
            self._task.cancel()
            return False
        if self._phase != "shutdown-complete":
            logger.error("application shutdown failed: %s", self.failure)
            return False
        logger.info("application shutdown complete")
        return True

    async def _main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._phase == "startup" and self.mode == "auto":
                logger.debug("lifespan raised", exc_info=True)  # expected from such apps
            else:
                logger.exception("exception in lifespan (%s)", self._phase)
            self.failure = self.failure or f"{type(exc).__name__}: {exc}"
        else:
            if self._phase in ("startup", "shutdown"):
                self.failure = f"application returned during lifespan {self._phase}"
        finally:
            self._done.set()

    async def receive(self):
        return await self._inbox.get()

    async def send(self, message):
        etype = message.get("type") if isinstance(message, dict) else None
        expected = f"lifespan.{self._phase}."
        if not isinstance(etype, str) or not etype.startswith(expected) or \
                etype[len(expected):] not in ("complete", "failed"):
            raise UnexpectedMessage(f"unexpected lifespan event {etype!r} during {self._phase}")
        if etype.endswith(".failed"):
            self.failure = str(message.get("message") or "no message given")
            self._phase += "-failed"
        else:
            self._phase += "-complete"
        self._done.set()
