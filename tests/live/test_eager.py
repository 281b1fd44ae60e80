"""server.eager: a coroutine's first steps run at once; only a coroutine that has to wait gets a task."""

from __future__ import annotations

import asyncio

import pytest

from server.live import eager

pytestmark = pytest.mark.anyio


async def test_coroutine_that_never_waits_finishes_inside_start() -> None:
    """start() runs a coroutine that does not wait to its end and returns no task."""
    done: list[str] = []

    async def work() -> None:
        done.append("sent")

    assert eager.start(work()) is None
    assert done == ["sent"]


async def test_coroutine_that_waits_is_finished_by_a_task() -> None:
    """A coroutine blocked on a future continues in a task once the future is done, through later waits too."""
    gate = asyncio.Event()
    steps: list[str] = []

    async def work() -> None:
        steps.append("before")
        await gate.wait()
        steps.append("after gate")
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        steps.append("end")

    task = eager.start(work())
    assert task is not None and steps == ["before"]
    gate.set()
    await asyncio.wait_for(task, 2)
    assert steps == ["before", "after gate", "end"]


async def test_error_before_the_first_wait_is_raised_by_start() -> None:
    """An exception the coroutine raises before waiting comes out of start() itself."""

    async def broken() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        eager.start(broken())


async def test_cancelling_the_task_runs_the_coroutines_clean_up() -> None:
    """Cancelled while waiting (even before its task ran), the coroutine's finally blocks run."""
    gate = asyncio.Event()
    cleaned: list[int] = []

    async def work(number: int) -> None:
        try:
            await gate.wait()
        finally:
            cleaned.append(number)

    first = eager.start(work(1))
    second = eager.start(work(2))
    assert first is not None and second is not None
    first.cancel()
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert sorted(cleaned) == [1, 2]
    assert not gate._waiters  # type: ignore[attr-defined]
