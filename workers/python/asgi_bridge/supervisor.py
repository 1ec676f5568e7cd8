"""``--processes N``: fork N workers before any event loop exists, forward signals.

No child is restarted: the supervisor exits when all have, non-zero if any failed. Each
child imports the app itself (no pre-loading), so app import-time state is per process.
"""

import logging
import os
import signal
import sys
import traceback

logger = logging.getLogger("asgi_bridge.supervisor")


def supervise(processes, child_main):
    children = {}
    parent = os.getpid()
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            _child(child_main, parent)  # never returns
        children[pid] = None
    logger.info("supervisor %d: started %d workers: %s", os.getpid(), processes,
                " ".join(map(str, children)))

    def forward(signum, _frame):
        for pid, status in children.items():
            if status is None:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    while any(status is None for status in children.values()):
        pid, status = os.wait()
        if pid in children:
            code = os.waitstatus_to_exitcode(status)
            children[pid] = code
            log = logger.info if code == 0 else logger.error
            log("worker process %d exited with %d", pid, code)
    return 0 if all(code == 0 for code in children.values()) else 1


def _die_with_parent(parent):
    """Linux: get SIGTERM if the supervisor dies (even by SIGKILL), so none is orphaned."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's signal forwarding is all there is
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child(child_main, parent):
    code = 1
    try:
        _die_with_parent(parent)
        code = child_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
