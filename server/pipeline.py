"""Script calls batched per event-loop turn: the calls that concurrent requests make in one turn go to Redis together.

At thousands of purchases a second, the cost is not Redis running a script but this process
sending one command and waiting for its reply. Collecting every call made in one turn of the
event loop and sending them as one pipeline (no MULTI: each script is atomic on its own) pays
that cost once per turn instead of once per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

Call = tuple[AsyncScript, Sequence[str], Sequence[str | int], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Run Lua scripts (EVALSHA) for many callers, one round trip per event-loop turn.

    Contract: each caller gets its own script's reply, or its own ResponseError. A call refused with
    NOSCRIPT (Redis restarted and forgot its scripts) did not run: the script is loaded and the call
    sent again. A connection error fails every call of its batch, and each of those may or may not
    have run: callers must be safe to retry (ours are: idempotency keys and status checks).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> asyncio.Future[Any]:
        """Queue one script call for this turn's batch; await the result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._send)
        self._pending.append((script, keys, args, future))
        return future

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[Call]) -> None:
        try:
            replies = await self._execute(batch)
            missing = [call for call, reply in zip(batch, replies, strict=True) if isinstance(reply, NoScriptError)]
            if missing:
                for script in {id(call[0]): call[0] for call in missing}.values():
                    await self.redis.script_load(script.script)
                retried = dict(zip(map(id, missing), await self._execute(missing), strict=True))
                replies = [retried.get(id(call), reply) for call, reply in zip(batch, replies, strict=True)]
        except BaseException as error:  # the connection failed (or we are shutting down): every call fails
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else asyncio.CancelledError())
            if not isinstance(error, Exception):
                raise
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller went away
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, batch: list[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)
