"""The tests' one timeout factor, as the websockets library's tests have one.

Every timeout and deadline in the tests is a nominal value passed through `seconds()`. On a slow
or busy machine, set LIVECART_TEST_TIMEOUT_FACTOR (default 1) to a larger number, e.g.
`LIVECART_TEST_TIMEOUT_FACTOR=3 scripts/test`, and every wait allows that many times longer.
Tests never sleep a fixed time for something to happen: they wait for the condition itself
(`until`, `RoomClient.wait`, `sale_helpers.wait_until`), bounded by a scaled deadline.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

FACTOR = float(os.environ.get("LIVECART_TEST_TIMEOUT_FACTOR", "1"))


def seconds(value: float) -> float:
    """A nominal timeout in seconds, scaled by LIVECART_TEST_TIMEOUT_FACTOR."""
    return value * FACTOR


async def until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Return once `predicate()` is true; fail after `timeout` nominal seconds (scaled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds(timeout):g} s waiting for {what}")
        await asyncio.sleep(0.02)
