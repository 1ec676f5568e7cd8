"""Eager start of an app instance's task, for Python 3.11 (3.12 has ``eager_start``).

``loop.create_task()`` schedules the task's first step for the loop's next iteration:
a handle, a pass through the loop, and for an HTTP app that answers at once that is
the whole request. Started eagerly, the first step runs at once, inside the call, up
to the app's first real wait (an HTTP hello: to its end).

The step must run inside a real ``asyncio.Task`` (``asyncio.current_task()``,
``asyncio.timeout()`` and anyio's cancel scopes need one), so the task is created as
usual, but while it is created the loop's class is swapped for a twin whose
``call_soon`` keeps the task's step instead of scheduling it (a C Task asks its loop's
``call_soon`` by name); then the step is run here, in the task's context, exactly as
the loop would have run it. Only the worker's own loops (``eager_loop_class``) can be
swapped, and only outside a running task (a task's step inside another's is refused
by asyncio): otherwise ``start_task`` is ``loop.create_task``.

With the native module, ``wire.start_task`` is ``_native.start_task`` (native/eager.cpp):
the same steps in one call, with a native ``call_soon`` on the capturing twin
(``_capturing_native``), instead of two Python frames per connection.
"""

import asyncio

try:
    from . import _native
except ImportError:  # not built: start_task below only
    _native = None

_captured = []  # the first callback the twin's call_soon got: the task's first step


def eager_loop_class(base):
    """A subclass of the event loop class `base` whose loops can start tasks eagerly."""

    class EagerLoop(base):
        __slots__ = ()

    class CapturingLoop(base):  # the same layout, so that __class__ may switch
        __slots__ = ()

        def call_soon(self, callback, *args, context=None):
            if _captured:  # not the task's first step: scheduled as usual
                return base.call_soon(self, callback, *args, context=context)
            _captured.append((callback, args, context))
            return None

    EagerLoop._capturing = CapturingLoop
    if _native is not None:
        class NativeCapturingLoop(base):  # native/eager.cpp's twin
            __slots__ = ()
            call_soon = staticmethod(_native.capture_call_soon)
            _base_call_soon = base.call_soon  # for any call but the task's first step

        EagerLoop._capturing_native = NativeCapturingLoop
    EagerLoop.__name__ = EagerLoop.__qualname__ = f"Eager{base.__name__}"
    return EagerLoop


def start_task(loop, coro, context):
    """``loop.create_task(coro, context=context)``, its first step already run when
    `loop` is an eager loop and no task is running."""
    eager = type(loop)
    capturing = getattr(eager, "_capturing", None)
    if capturing is None or asyncio.current_task(loop) is not None:
        return loop.create_task(coro, context=context)
    _captured.clear()  # (left over only if a Task() raised after its call_soon)
    loop.__class__ = capturing
    try:
        task = asyncio.Task(coro, loop=loop, context=context)
    finally:
        loop.__class__ = eager
    step, args, step_context = _captured.pop()
    step_context.run(step, *args)  # as the loop's handle would have run it
    return task
