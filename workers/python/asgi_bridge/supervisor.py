"""``--processes N`` (or ``--max-requests``): fork N workers before any event loop exists,
keep N running, forward signals.

A worker that exits on its own after it served is replaced: at once when it exited 0 (it was
recycled by ``--max-requests``), after a backoff when it crashed (0.5 s, doubling with each
crash in a row of that slot, at most 30 s; a worker that lived 30 s resets its slot). A worker
that fails before it served (app import, lifespan startup, bus refused) is not restarted: it
would fail again. The supervisor then stops the others and exits 1, as gunicorn does.

Each child imports the app itself (no pre-loading), so app import-time state is per process.
A child tells the supervisor it serves by writing one byte to a pipe: no timing is involved.
"""

import logging
import os
import select
import signal
import sys
import time
import traceback

logger = logging.getLogger("asgi_bridge.supervisor")

BACKOFF_FIRST = 0.5   # seconds before the first restart of a crashed worker
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0   # a worker that lived this long resets its slot's backoff


class _Child:
    __slots__ = ("pid", "slot", "ready_fd", "started")

    def __init__(self, pid, slot, ready_fd):
        self.pid, self.slot, self.ready_fd = pid, slot, ready_fd
        self.started = time.monotonic()

    def served(self):
        """Whether it wrote its ready byte (it is gone: read never blocks)."""
        try:
            return os.read(self.ready_fd, 1) == b"1"
        finally:
            os.close(self.ready_fd)


def supervise(processes, child_main):
    """Run `child_main(ready)` in `processes` children until stopped; return the exit code.
    `ready()` is for the child to call once it serves."""
    return _Supervisor(processes, child_main).run()


class _Supervisor:
    def __init__(self, processes, child_main):
        self.processes = processes
        self.child_main = child_main
        self.parent = os.getpid()
        self.children = {}              # pid -> _Child
        self.pending = {}               # slot -> monotonic time of its restart
        self.crashes = [0] * processes  # crashes in a row, per slot
        self.stopping = False
        self.failed = False
        self._wake = None

    def run(self):
        self._wake = os.pipe()
        for fd in self._wake:
            os.set_blocking(fd, False)
        # Signals only write to the wake pipe; the loop below does the work.
        signal.set_wakeup_fd(self._wake[1])
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        for slot in range(self.processes):
            self._spawn(slot)
        logger.info("supervisor %d: started %d workers: %s", os.getpid(), self.processes,
                    " ".join(map(str, self.children)))
        while self.children or (self.pending and not self.stopping):
            select.select([self._wake[0]], [], [], self._timeout())
            self._drain_wake_pipe()
            self._reap()
            self._restart_due()
        return 1 if self.failed else 0

    def _timeout(self):
        if self.stopping or not self.pending:
            return None
        return max(0.0, min(self.pending.values()) - time.monotonic())

    def _drain_wake_pipe(self):
        try:
            while os.read(self._wake[0], 512):
                pass
        except BlockingIOError:
            pass

    def _on_stop(self, signum, _frame):
        if os.getpid() != self.parent:  # a child before it reset its handlers
            os._exit(0)
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _spawn(self, slot):
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self._in_child(ready_r, ready_w)  # never returns
        os.close(ready_w)
        self.children[pid] = _Child(pid, slot, ready_r)
        return pid

    def _in_child(self, ready_r, ready_w):
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for fd in (ready_r, *self._wake, *(c.ready_fd for c in self.children.values())):
            os.close(fd)

        def ready():
            os.write(ready_w, b"1")
            os.close(ready_w)
        _child(lambda: self.child_main(ready), self.parent)

    def _reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._exited(child, os.waitstatus_to_exitcode(status))

    def _exited(self, child, code):
        served = child.served()
        if self.stopping:
            (logger.info if code == 0 else logger.error)(
                "worker process %d exited with %d", child.pid, code)
            self.failed = self.failed or code != 0
            return
        if not served:
            logger.error("worker process %d exited with %d before it served: not restarting "
                         "it (it would fail again); stopping the others", child.pid, code)
            self.failed = True
            self._on_stop(signal.SIGTERM, None)
            return
        if code == 0:  # recycled (--max-requests): replace at once
            logger.info("worker process %d recycled", child.pid)
            self.pending[child.slot] = time.monotonic()
            return
        if time.monotonic() - child.started >= STABLE_AFTER:
            self.crashes[child.slot] = 0
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** self.crashes[child.slot])
        self.crashes[child.slot] += 1
        logger.error("worker process %d died (exit %d): restarting it in %.1f s",
                     child.pid, code, delay)
        self.pending[child.slot] = time.monotonic() + delay

    def _restart_due(self):
        if self.stopping:
            return
        now = time.monotonic()
        for slot in [s for s, when in self.pending.items() if when <= now]:
            del self.pending[slot]
            pid = self._spawn(slot)
            logger.info("worker process %d started in place of slot %d's", pid, slot)


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
