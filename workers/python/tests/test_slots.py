"""asgi_bridge.slots.Slots: the worker's request and WebSocket slots."""

import asyncio

from bridge_helpers import run

from asgi_bridge.slots import Slots


def test_free_slots_are_taken_without_waiting_then_waiters_go_in_order():
    async def main():
        slots = Slots(2)
        assert slots.take_nowait() and slots.take_nowait()
        assert not slots.take_nowait() and slots.free == 0
        order = []

        async def wait(name):
            await slots.take()
            order.append(name)
        tasks = [asyncio.ensure_future(wait(n)) for n in ("a", "b")]
        await asyncio.sleep(0)
        assert not slots.take_nowait()  # a waiter comes first, even with a slot free
        slots.give()
        slots.give()
        await asyncio.gather(*tasks)
        assert order == ["a", "b"] and slots.free == 0
        slots.give()
        assert slots.free == 1
    run(main())


def test_a_cancelled_waiter_neither_keeps_nor_loses_a_slot():
    async def main():
        slots = Slots(1)
        assert slots.take_nowait()
        waiting = asyncio.ensure_future(slots.take())
        handed = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled while waiting: leaves the queue
        await asyncio.sleep(0)
        slots.give()      # goes to the next waiter...
        handed.cancel()   # ...cancelled before it ran: passes the slot on
        await asyncio.gather(waiting, handed, return_exceptions=True)
        assert slots.free == 1 and slots.take_nowait()
    run(main())
