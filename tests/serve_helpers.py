"""What the tests of real `prmedic serve` processes share: waiting for a condition, and serving a
simulator's aiohttp app on a port of its own."""

from __future__ import annotations

import asyncio
import inspect
import time

from aiohttp.test_utils import TestServer


async def until(predicate, what: str, timeout: float = 30.0) -> None:
    """Wait until `predicate()` (plain or async) is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def served_app(app) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server
