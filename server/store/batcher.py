"""Script calls batched per event-loop turn: the calls that concurrent requests make in one turn go to Redis together.

At thousands of purchases a second, the cost is not Redis running a script but this process
sending one command and waiting for its reply. Collecting every call made in one turn of the
event loop and writing them as one pipeline (no MULTI: each script is atomic on its own) pays
that cost once per turn instead of once per call. The EVALSHA commands are written in RESP here
and sent on a pooled connection: redis-py's Pipeline costs more per command than Redis does.

Durable acknowledgement (DURABLE_ACK): the batch ends with WAITAOF 1 0, so its callers hear back
only once Redis has written their changes to its AOF on disk; one fsync wait for the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

Call = tuple[AsyncScript, bytes, "asyncio.Future[Any]"]


def _bulk(value: str | int) -> bytes:
    data = value.encode() if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def command(*parts: str | int) -> bytes:
    """Any command, in RESP."""
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(part) for part in parts)


def evalsha(script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> bytes:
    """EVALSHA of the script with these keys and arguments, in RESP."""
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args)), _bulk(script.sha), _bulk(len(keys))]
    parts.extend(_bulk(item) for item in keys)
    parts.extend(_bulk(item) for item in args)
    return b"".join(parts)


class NotDurable(RedisError):
    """Redis did not confirm the batch on disk in time: it may or may not survive a crash (callers retry)."""


class ScriptBatcher:
    """Run Lua scripts (EVALSHA) for many callers, one round trip per event-loop turn.

    Contract: each caller gets its own script's reply, or its own ResponseError. A call refused with
    NOSCRIPT (Redis restarted and forgot its scripts) did not run: the script is loaded and the call
    sent again. A connection error fails every call of its batch, and each of those may or may not
    have run: callers must be safe to retry (ours are: idempotency keys and status checks).
    """

    def __init__(self, redis: Redis, durable_timeout_ms: int | None = None) -> None:
        self.redis = redis
        self._wait = None if durable_timeout_ms is None else command("WAITAOF", 1, 0, durable_timeout_ms)
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> asyncio.Future[Any]:
        """Queue one script call for this turn's batch; await the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send)
        self._pending.append((script, evalsha(script, keys, args), future))
        return future

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[Call]) -> None:
        try:
            replies = await self._execute([packed for _, packed, _ in batch])
            missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                for script in {id(batch[index][0]): batch[index][0] for index in missing}.values():
                    await self.redis.script_load(script.script)
                retried = await self._execute([batch[index][1] for index in missing])
                for index, reply in zip(missing, retried, strict=True):
                    replies[index] = reply
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

    async def _execute(self, commands: list[bytes]) -> list[Any]:
        """Write the commands at once on one pooled connection; read every reply (errors as values).

        A connection that fails before any reply came (it died while idle in the pool: Redis
        restarted) is replaced and the batch written once more on a fresh one.
        """
        pool = self.redis.connection_pool
        if self._wait is not None:
            commands = [*commands, self._wait]
        for attempt in (1, 2):
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            replies: list[Any] = []
            try:
                await connection.send_packed_command(b"".join(commands), check_health=False)
                for _ in commands:
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as error:
                        replies.append(error)
                break
            except (RedisConnectionError, OSError):
                await connection.disconnect()
                if replies or attempt == 2:
                    raise
            except BaseException:
                await connection.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                await pool.release(connection)
        if self._wait is not None:
            durable = replies.pop()
            if isinstance(durable, Exception) or int(durable[0]) < 1:
                raise NotDurable(f"Redis did not write the changes to its AOF in time: {durable!r}")
        return replies
