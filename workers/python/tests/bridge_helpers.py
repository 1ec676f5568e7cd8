"""Helpers shared by the worker's tests (a plain module: conftest names can clash)."""

import asyncio


def run(coro, timeout=10):
    """Run a coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
