"""eager.py: an app instance's task started at once, as a real task, on the worker's loops."""

import asyncio
import contextvars

import pytest

from asgi_bridge import eager, runtime, wire
from asgi_bridge.worker import Worker
from bridge_helpers import FakeTransport

LOOPS = ["asyncio"]
try:
    import uvloop  # noqa: F401
    LOOPS.append("uvloop")
except ImportError:
    pass

var = contextvars.ContextVar("var", default="unset")

STARTERS = [pytest.param(eager.start_task, id="python")]
if wire._native is not None:  # native/eager.cpp: the same steps in one call
    STARTERS.append(pytest.param(wire._native.start_task, id="native"))


@pytest.fixture(params=STARTERS)
def start_task(request):
    return request.param


def run_on(loop_name, main):
    loop = runtime.choose_loop(loop_name)[0]()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        loop.close()


async def from_callback(fn):
    """fn() from a loop callback (outside any task), as the bus delivers messages."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def callback():
        try:
            done.set_result(fn())
        except BaseException as exc:  # noqa: B902 (handed to the test)
            done.set_exception(exc)
    loop.call_soon(callback)
    return await done


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_coroutine_that_does_not_wait_is_done_on_return_inside_a_real_task(loop_name, start_task):
    seen = []

    async def app():
        task = asyncio.current_task()
        async with asyncio.timeout(1):  # needs a current task
            seen.append((task, var.get()))
        var.set("inside")
        return 42

    async def main():
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        task = await from_callback(lambda: start_task(loop, app(), ctx))
        assert task.done() and task.result() == 42
        assert seen == [(task, "given")]
        assert var.get() == "unset" and ctx[var] == "inside"  # the task's context only
        assert type(loop).__name__.startswith("Eager")  # the class is back
    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_coroutine_that_waits_goes_on_as_a_task_and_can_be_cancelled(loop_name, start_task):
    async def main():
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        steps = []

        async def app():
            steps.append("first")
            value = await gate
            steps.append(value)
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        task = await from_callback(lambda: start_task(loop, app(), contextvars.copy_context()))
        assert steps == ["first"] and not task.done()
        gate.set_result("woken")
        await asyncio.sleep(0.01)
        assert steps == ["first", "woken"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == ["first", "woken", "cancelled"] and task.cancelled()
    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_an_exception_in_the_first_step_stays_in_the_task(loop_name, start_task):
    async def app():
        raise ValueError("boom")

    async def main():
        loop = asyncio.get_running_loop()
        task = await from_callback(lambda: start_task(loop, app(), contextvars.copy_context()))
        assert isinstance(task.exception(), ValueError)
    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_inside_a_task_or_on_another_loop_it_is_create_task(loop_name, start_task):
    started = []

    async def app():
        started.append(True)

    async def main():
        loop = asyncio.get_running_loop()
        task = start_task(loop, app(), contextvars.copy_context())  # inside main's task
        assert started == [] and not task.done()
        await task
        assert started == [True]
        with pytest.raises(TypeError):  # not a coroutine: refused, the class restored
            await from_callback(lambda: start_task(loop, None, contextvars.copy_context()))
        assert type(loop).__name__.startswith("Eager")
    run_on(loop_name, main)

    async def plain():
        def start():
            task = start_task(asyncio.get_running_loop(), app(), contextvars.copy_context())
            return task, task.done()
        task, done = await from_callback(start)
        assert not done  # a loop of asyncio.run: scheduled as usual
        await task
    asyncio.run(plain())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_the_worker_answers_a_request_within_the_message_that_opened_it(loop_name):
    async def app(scope, receive, send):
        assert asyncio.current_task() is not None
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"hi"})

    async def main():
        bus = FakeTransport()
        worker = Worker(app, bus, "wk-test")
        worker.start()
        first = {"k": "event", "g": "gw-1", "c": 7, "s": 0, "window": 1 << 20,
                 "scope": {"type": "http", "method": "GET", "path": "/", "headers": []},
                 "event": {"type": "http.request", "body": b"", "more_body": False}}

        def deliver():
            bus.deliver(first)
            return [m["event"]["type"] for m in bus.of_kind("event")], dict(worker.conns)
        events, conns = await from_callback(deliver)
        assert events == ["http.response.start", "http.response.body"]
        assert conns == {} and worker._tasks == {}
        await worker.close()
    run_on(loop_name, main)
