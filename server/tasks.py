"""Background tasks: periodic loops that stop when cancelled, and a group that stops them in bounded time."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from server.errors import STORE_ERRORS

log = logging.getLogger("livecart.tasks")

Step = Callable[[], Awaitable[object]]


def cancelling() -> bool:
    """This task has been asked to stop (an error raised meanwhile may be that cancellation in disguise)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def every(seconds: float, step: Step, name: str) -> None:
    """Run `step` every `seconds` until cancelled; a failing step is logged and tried again next time.

    A cancellation always stops the loop, even when the client library turned it into a
    connection error on the way out (redis-py does): the loop never swallows its own stop.
    """
    await asyncio.sleep(random.uniform(0, seconds))  # processes started together do not tick together
    while True:
        try:
            await step()
        except STORE_ERRORS as error:
            if cancelling():
                raise asyncio.CancelledError from error
            log.warning("%s failed, store unavailable: %s", name, error)
        except Exception:
            if cancelling():
                raise asyncio.CancelledError from None
            log.exception("%s failed", name)
        await asyncio.sleep(seconds)


class Tasks:
    """The background tasks of one owner; `stop()` cancels them all and waits a bounded time."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def every(self, seconds: float, step: Step, name: str) -> asyncio.Task[Any]:
        return self.spawn(every(seconds, step, f"{self.owner} {name}"), name=f"{self.owner}-{name}")

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self.owner, task.get_name(), exc_info=task.exception())

    async def stop(self, timeout: float = 2.0) -> None:
        """Cancel every task; wait at most `timeout` seconds for them to end (a stuck one is left, logged)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=timeout)
        for task in stuck:
            log.warning("%s task %s did not stop within %.1f s", self.owner, task.get_name(), timeout)

    def __len__(self) -> int:
        return len(self._tasks)
