"""Lifespan (ASGI lifespan spec 2.0) and app loading."""

import logging

import pytest

from asgi_bridge.errors import UnexpectedMessage
from asgi_bridge.lifespan import Lifespan
from asgi_bridge.loader import ASGI2Adapter, AppLoadError, is_asgi2, load_app
from bridge_helpers import run


def lifespan_app(startup="complete", shutdown="complete", calls=None):
    calls = [] if calls is None else calls

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        assert scope["asgi"]["spec_version"] == "2.0"
        while True:
            message = await receive()
            calls.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "connected"
                reply = {"type": f"lifespan.startup.{startup}"}
                if startup == "failed":
                    reply["message"] = "database unreachable"
                await send(reply)
            else:
                reply = {"type": f"lifespan.shutdown.{shutdown}"}
                if shutdown == "failed":
                    reply["message"] = "could not flush"
                await send(reply)
                return
    return app


def test_startup_and_shutdown_complete():
    async def main():
        calls = []
        lifespan = Lifespan(lifespan_app(calls=calls), "auto")
        assert await lifespan.startup() is True
        assert lifespan.supported and lifespan.state == {"db": "connected"}
        assert await lifespan.shutdown(1) is True
        assert calls == ["lifespan.startup", "lifespan.shutdown"]
    run(main())


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_is_fatal_with_the_app_message(mode, caplog):
    async def main():
        lifespan = Lifespan(lifespan_app(startup="failed"), mode)
        assert await lifespan.startup() is False
        assert lifespan.failure == "database unreachable"
    run(main())
    assert "database unreachable" in caplog.text


def test_shutdown_failed():
    async def main():
        lifespan = Lifespan(lifespan_app(shutdown="failed"), "on")
        assert await lifespan.startup() is True
        assert await lifespan.shutdown(1) is False
        assert lifespan.failure == "could not flush"
    run(main())


async def no_lifespan_app(scope, receive, send):
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']}")  # e.g. Django


def test_auto_continues_without_lifespan_when_the_app_raises(caplog):
    async def main():
        lifespan = Lifespan(no_lifespan_app, "auto")
        with caplog.at_level(logging.INFO):
            assert await lifespan.startup() is True
        assert lifespan.supported is False
        assert await lifespan.shutdown(1) is True  # nothing to do
    run(main())
    assert "appears unsupported" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_on_makes_a_raising_app_fatal(caplog):
    async def main():
        lifespan = Lifespan(no_lifespan_app, "on")
        assert await lifespan.startup() is False
        assert "ValueError: unsupported scope type lifespan" in lifespan.failure
    run(main())
    assert "Traceback" in caplog.text


def test_app_returning_during_startup():
    async def app(scope, receive, send):
        await receive()

    async def main():
        auto = Lifespan(app, "auto")
        assert await auto.startup() is True and auto.supported is False
        on = Lifespan(app, "on")
        assert await on.startup() is False
        assert on.failure == "application returned during lifespan startup"
    run(main())


def test_wrong_lifespan_event_raises_in_the_app():
    caught = []

    async def app(scope, receive, send):
        await receive()
        try:
            await send({"type": "lifespan.shutdown.complete"})
        except UnexpectedMessage as exc:
            caught.append(exc)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main():
        lifespan = Lifespan(app, "on")
        assert await lifespan.startup() is True
        assert await lifespan.shutdown(1) is True
    run(main())
    assert "unexpected lifespan event 'lifespan.shutdown.complete' during startup" in str(caught[0])


def test_shutdown_timeout():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        import asyncio
        await asyncio.sleep(10)

    async def main():
        lifespan = Lifespan(app, "on")
        assert await lifespan.startup() is True
        assert await lifespan.shutdown(0.05) is False
    run(main())


# --- loading ---------------------------------------------------------------------------------

class ASGI2Class:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await send({"scope": self.scope["type"]})


class ASGI3Instance:
    async def __call__(self, scope, receive, send):
        pass


def asgi2_function(scope):
    async def instance(receive, send):
        await send({"scope": scope["type"]})
    return instance


async def asgi3_function(scope, receive, send):
    pass


def test_asgi_version_detection():
    assert is_asgi2(ASGI2Class) and is_asgi2(asgi2_function)
    assert not is_asgi2(ASGI3Instance()) and not is_asgi2(asgi3_function)
    assert not is_asgi2(lambda scope, receive, send: asgi3_function(scope, receive, send))


def test_asgi2_adapter_runs_the_two_step_call():
    sent = []

    async def send(message):
        sent.append(message)

    async def main():
        await ASGI2Adapter(ASGI2Class)({"type": "http"}, None, send)
        await ASGI2Adapter(asgi2_function)({"type": "websocket"}, None, send)
    run(main())
    assert sent == [{"scope": "http"}, {"scope": "websocket"}]


def test_load_app(tmp_path):
    (tmp_path / "myapp_mod.py").write_text(
        "class Holder:\n"
        "    async def app(self, scope, receive, send): pass\n"
        "holder = Holder()\n"
        "def legacy(scope):\n"
        "    async def instance(receive, send): pass\n"
        "    return instance\n")
    assert load_app("myapp_mod:holder.app", str(tmp_path)).__name__ == "app"
    assert isinstance(load_app("myapp_mod:legacy", str(tmp_path)), ASGI2Adapter)
    with pytest.raises(AppLoadError, match="MODULE:ATTRIBUTE"):
        load_app("myapp_mod", str(tmp_path))
    with pytest.raises(AppLoadError, match="could not import module 'no_such_mod_x'"):
        load_app("no_such_mod_x:app", str(tmp_path))
    with pytest.raises(AppLoadError, match="attribute 'nope' not found"):
        load_app("myapp_mod:nope", str(tmp_path))
