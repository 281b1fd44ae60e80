"""Script calls batched per event-loop turn: the calls that concurrent requests make in one turn go to Redis together.

At thousands of purchases a second, the cost is not Redis running a script but this process
sending one command and waiting for its reply. Collecting every call made in one turn of the
event loop and writing them as one pipeline (no MULTI: each script is atomic on its own) pays
that cost once per turn instead of once per call. The EVALSHA commands are written in RESP here
and sent on a pooled connection: redis-py's Pipeline costs more per command than Redis does.

Durable acknowledgement (DURABLE_ACK): the batch ends with WAITAOF 1 0, so its callers hear back
only once Redis has written their changes to its AOF on disk; one fsync wait for the whole batch.
Replicated acknowledgement (REDIS_WAIT_REPLICAS=n): the batch ends with WAIT n, so its callers hear
back only once n replicas have their changes (a failover to one of them loses none); with both, both.

On a Redis Cluster a turn's calls are grouped by the primary that owns each call's slot (the slot
of its first key: every key of one call shares its {hash tag}) and each primary gets its own
batch, at once. A call answered MOVED (its slot moved: resharding, a failover) or CLUSTERDOWN /
TRYAGAIN did not run: the slot map is read again and the call sent to the new owner; one answered
ASK is sent to the node named, after ASKING.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from server.store import client

Call = tuple[AsyncScript, bytes, "asyncio.Future[Any]", int]  # script, EVALSHA in RESP, its caller, its slot
ASKING = b"*1\r\n$6\r\nASKING\r\n"
REDIRECTS = 5  # how often one call may be sent elsewhere (MOVED, ASK, CLUSTERDOWN) before it fails


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


def _fail(calls: list[Call], error: Exception) -> None:
    for _, _, future, _ in calls:
        if not future.done():
            future.set_exception(error)


class NotDurable(RedisError):
    """Redis did not confirm the batch on disk (or on its replicas) in time: it may or may not survive a crash or a
    failover (callers retry)."""


class ScriptBatcher:
    """Run Lua scripts (EVALSHA) for many callers, one round trip per event-loop turn.

    Contract: each caller gets its own script's reply, or its own ResponseError. A call refused with
    NOSCRIPT (Redis restarted and forgot its scripts) did not run: the script is loaded and the call
    sent again. A connection error fails every call of its batch, and each of those may or may not
    have run: callers must be safe to retry (ours are: idempotency keys and status checks).
    """

    def __init__(
        self, redis: Redis, durable_timeout_ms: int | None = None, replicas: int = 0, replicas_timeout_ms: int = 1000
    ) -> None:
        self.redis = redis
        self._cluster = client.cluster_of(redis)
        self._wait = None if durable_timeout_ms is None else command("WAITAOF", 1, 0, durable_timeout_ms)
        self._replicas = replicas
        self._wait_replicas = command("WAIT", replicas, replicas_timeout_ms) if replicas else None
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> asyncio.Future[Any]:
        """Queue one script call for this turn's batch; await the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send)
        slot = 0 if self._cluster is None else self._cluster.keyslot(keys[0])
        self._pending.append((script, evalsha(script, keys, args), future, slot))
        return future

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        self._spawn(self._run(batch) if self._cluster is None else self._run_cluster(batch))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, batch: list[Call], node: ClusterNode | None = None, asking: bool = False
    ) -> list[tuple[Call, Exception]]:
        """Run the batch on one server (the single server, or one primary of a cluster; `asking`: one call, after
        ASKING); answer each caller, except the calls a cluster sent elsewhere (MOVED, ASK, CLUSTERDOWN, TRYAGAIN),
        returned with their reply."""
        try:
            replies = await self._execute(node, [packed for _, packed, *_ in batch], asking)
            missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:  # the server forgot its scripts (restarted, or a replica promoted): load them, send again
                scripts = {id(batch[index][0]): batch[index][0] for index in missing}.values()
                loads = [command("SCRIPT", "LOAD", cast(str, script.script)) for script in scripts]
                retried = await self._execute(node, [*loads, *(batch[index][1] for index in missing)], asking)
                for index, reply in zip(missing, retried[len(loads) :], strict=True):
                    replies[index] = reply
        except BaseException as error:  # the connection failed (or we are shutting down): every call fails
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else asyncio.CancelledError())
            if not isinstance(error, Exception):
                raise
            if self._cluster is not None and isinstance(error, RedisConnectionError | OSError):
                self._spawn(self._refresh())  # the node may be gone: read the slot map again
            return []
        redirected: list[tuple[Call, Exception]] = []
        for call, reply in zip(batch, replies, strict=True):
            future = call[2]
            if future.done():
                continue  # the caller went away
            if node is not None and isinstance(reply, AskError | ClusterDownError | TryAgainError):
                redirected.append((call, reply))  # MovedError is an AskError
            elif isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        return redirected

    async def _run_cluster(self, batch: list[Call]) -> None:
        """Each primary's share of the batch, at once; the calls sent elsewhere, again, up to REDIRECTS times."""
        assert self._cluster is not None
        try:
            await self._cluster.initialize()  # reads the slot map on its first call only
        except (RedisError, OSError) as error:
            _fail(batch, error)
            return
        manager = self._cluster.nodes_manager
        asked: list[tuple[ClusterNode, Call]] = []
        for _ in range(REDIRECTS):
            groups: dict[ClusterNode, list[Call]] = {}
            for call in batch:
                try:
                    groups.setdefault(manager.get_node_from_slot(call[3]), []).append(call)
                except RedisError as error:  # no node serves the slot now (a failover under way)
                    _fail([call], error)
            runs = [self._run(calls, node) for node, calls in groups.items()]
            runs += [self._run([call], node, asking=True) for node, call in asked]
            redirected = [item for done in await asyncio.gather(*runs) for item in done]
            if not redirected:
                return
            batch, asked = [], []
            for call, reply in redirected:
                target = None
                if isinstance(reply, AskError) and not isinstance(reply, MovedError):
                    target = manager.get_node(host=reply.host, port=reply.port)
                if target is None:
                    batch.append(call)
                else:
                    asked.append((target, call))
            if any(isinstance(reply, MovedError) for _, reply in redirected):
                await self._refresh()  # read the slot map again (once, however many callers ask)
            elif batch:
                await asyncio.sleep(0.05)  # CLUSTERDOWN / TRYAGAIN: a failover or a migration is under way
        for call, reply in redirected:
            _fail([call], reply)

    async def _refresh(self) -> None:
        assert self._cluster is not None
        with contextlib.suppress(RedisError, OSError):  # no node answers: the next failed batch asks again
            await self._cluster.nodes_manager.initialize()

    async def _execute(self, node: ClusterNode | None, commands: list[bytes], asking: bool = False) -> list[Any]:
        """Write the commands at once on one pooled connection (to `node`, on a cluster; `asking`: ASKING before the
        last one, which lets it run on a node importing its slot); read every reply (errors as values).

        A connection that fails before any reply came (it died while idle in the pool: Redis
        restarted) is replaced and the batch written once more on a fresh one.
        """
        last = len(commands) - 1
        if asking:
            commands = [*commands[:last], ASKING, commands[last]]
        commands = [*commands, *(tail for tail in (self._wait, self._wait_replicas) if tail is not None)]
        for attempt in (1, 2):
            connection = await self._connection(node)
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
                await self._release(node, connection)
        if asking:
            del replies[last]  # ASKING's OK
        if self._wait_replicas is not None:
            copies = replies.pop()
            if isinstance(copies, Exception) or int(copies) < self._replicas:
                raise NotDurable(f"fewer than {self._replicas} replica(s) had the changes in time: {copies!r}")
        if self._wait is not None:
            durable = replies.pop()
            if isinstance(durable, Exception) or int(durable[0]) < 1:
                raise NotDurable(f"Redis did not write the changes to its AOF in time: {durable!r}")
        return replies

    async def _connection(self, node: ClusterNode | None) -> Connection:
        if node is None:
            return await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call,no-any-return]
        return node.acquire_connection()

    async def _release(self, node: ClusterNode | None, connection: Connection) -> None:
        if node is None:
            await self.redis.connection_pool.release(connection)
        else:
            node.release(connection)
