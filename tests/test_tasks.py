"""server.tasks: a periodic loop always stops when cancelled, and a task group stops in bounded time."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from server.tasks import Tasks, every
from tests.timing import seconds

pytestmark = pytest.mark.anyio


async def test_a_loop_stops_when_its_cancellation_surfaces_as_a_redis_error() -> None:
    """A step that turns its cancellation into a connection error (as redis-py does) still ends the loop."""
    started = asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a Redis call that never answers
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server") from None

    loop = asyncio.create_task(every(0.001, step, "test"))
    await asyncio.wait_for(started.wait(), seconds(5))
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop, seconds(5))


async def test_a_failing_step_is_tried_again_on_the_next_turn() -> None:
    """A step that fails with a store error is logged and run again; the loop keeps going."""
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("Redis is restarting")

    tasks = Tasks("test")
    tasks.every(0.001, step, "flaky")
    deadline = asyncio.get_running_loop().time() + seconds(5)
    while calls < 3:
        assert asyncio.get_running_loop().time() < deadline, f"only {calls} calls"
        await asyncio.sleep(0.001)
    await tasks.stop(seconds(1))
    assert len(tasks) == 0


async def test_stop_returns_in_bounded_time_even_when_a_task_will_not_end() -> None:
    """A task that ignores its cancellation is left behind after the timeout; stop() itself returns."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    tasks = Tasks("test")
    task = tasks.spawn(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.stop(0.05), seconds(2))
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, seconds(2))
