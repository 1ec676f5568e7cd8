"""A counting semaphore for the worker's request and WebSocket slots."""

import asyncio
import collections


class Slots:
    """Like ``asyncio.Semaphore``, but a free slot is taken and given back with plain
    calls: ``async with Semaphore`` costs four coroutine and method calls per
    connection (``__aenter__``, ``acquire``, ``locked``, ``__aexit__``/``release``),
    a measurable share of an HTTP request's worker time. Waiters are served in order;
    a released slot goes straight to the first waiter still waiting. The worker has
    take_nowait() and give() inline for their common case (``free`` and ``waiters``
    read directly): a Python frame each per connection."""

    __slots__ = ("free", "waiters")

    def __init__(self, count):
        self.free = count
        self.waiters = collections.deque()

    def take_nowait(self):
        """Take a slot if one is free and nobody waits for one; True if taken."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def take(self):
        """Wait for a slot (after take_nowait() said no)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just before the cancel: pass it on
            elif waiter in self.waiters:  # (give() drops cancelled ones itself)
                self.waiters.remove(waiter)
            raise

    def give(self):
        """Give a slot back: to the first waiter, or to the free count."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
