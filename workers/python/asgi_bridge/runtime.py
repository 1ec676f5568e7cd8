"""One worker process: event loop, lifespan, bus, worker, signals, graceful stop."""

import asyncio
import logging
import random
import signal

from . import wire
from .eager import eager_loop_class
from .lifespan import Lifespan
from .loader import AppLoadError, load_app
from .transport import BusError, make_transport
from .worker import Worker, new_worker_id

logger = logging.getLogger("asgi_bridge")


def choose_loop(name="auto"):
    """Return (loop factory, name). uvloop when asked for, or in auto when importable.
    The loop's class is the eager twin of uvloop's or asyncio's (eager.py): app
    instances start at once, not at the loop's next iteration."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            return eager_loop_class(uvloop.Loop), "uvloop"
    return eager_loop_class(asyncio.SelectorEventLoop), "asyncio"


def run(args, ready=None):
    """Run one worker until it is stopped; return the process exit code. `ready()` is
    called once it serves (the supervisor's sign that it booted)."""
    factory, loop_name = choose_loop(args.loop)
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(serve(args, loop_name, ready))
    finally:
        _cancel_leftovers(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def _cancel_leftovers(loop):
    # App tasks it spawned itself, the lifespan task…: cancel and let them unwind.
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))


async def serve(args, loop_name="asyncio", ready=None):
    worker_id = new_worker_id()
    codec_path = wire.select(not getattr(args, "no_native", False))
    logger.info("worker %s starting (event loop: %s, codec: %s)", worker_id, loop_name,
                codec_path)
    try:
        app = load_app(args.app, args.app_dir)
    except AppLoadError as exc:
        logger.error("%s", exc)
        return 1
    try:
        # Before lifespan: Redis refusing our credentials must not cost a startup.
        transport = make_transport(args.bus, worker_id, args.bus_prefix, args.curve, args.redis_tls,
                                   args.bus_shared_memory)
    except BusError as exc:
        logger.error("%s", exc)
        return 1
    stop = _stop_on_signals()

    lifespan = Lifespan(app, args.lifespan) if args.lifespan != "off" else None
    if lifespan is not None:
        started = await _unless_stopped(lifespan.startup(), stop)
        if started is None:
            logger.info("stopped during lifespan startup")
            return 0
        if not started:
            return 1
    state = lifespan.state if lifespan is not None and lifespan.supported else None

    worker = Worker(app, transport, worker_id, concurrency=args.concurrency,
                    heartbeat_interval=args.heartbeat_interval, state=state,
                    websocket_capacity=args.websocket_capacity,
                    max_requests=_max_requests(args), on_max_requests=stop.set,
                    health_file=getattr(args, "health_file", None))
    worker.start()
    if ready is not None:
        ready()
    await stop.wait()

    logger.info("stopping: draining connections")
    await worker.drain(args.graceful_timeout)
    ok = True
    if lifespan is not None:
        ok = await lifespan.shutdown(args.graceful_timeout)
    await worker.close()
    logger.info("worker %s stopped", worker_id)
    return 0 if ok else 1


def _max_requests(args):
    """This process's limit: --max-requests plus up to --max-requests-jitter (random per
    process, so a pool's workers do not all recycle at once); 0 = none."""
    limit = getattr(args, "max_requests", 0)
    if not limit:
        return 0
    return limit + random.randint(0, getattr(args, "max_requests_jitter", 0))


def _stop_on_signals():
    """An event set by the first SIGTERM/SIGINT; later ones are only logged."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum):
        if stop.is_set():
            logger.info("%s: already stopping", signal.Signals(signum).name)
        else:
            logger.info("%s: stopping", signal.Signals(signum).name)
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop


async def _unless_stopped(coro, stop):
    """Await `coro` unless `stop` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None
