"""Run a coroutine eagerly: its first steps now, and only the rest (if it has to wait) in a task.

Under uvicorn a WebSocket send finishes without waiting unless that socket's buffer is full. The
hub sends one frame to thousands of viewers per tick; a task per send would cost more than the
send itself. Python 3.12's eager tasks do the same thing; this is that idea for 3.11, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run the coroutine until it first waits. None when it finished; else a task that finishes it.

    An exception raised before the first wait is raised here.
    """
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    task = asyncio.ensure_future(_finish(coroutine, waiting_on))
    task.add_done_callback(lambda _: coroutine.close())  # cancelled mid-way: its own clean-up runs
    return task


async def _finish(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    try:
        while True:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:
                # the coroutine yielded this future to its task; as a task would, take it over
                waiting_on._asyncio_future_blocking = False
                await waiting_on
            waiting_on = coroutine.send(None)
    except StopIteration:
        return
