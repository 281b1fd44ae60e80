"""Redis pub/sub between server processes: one subscriber connection per Redis node, one read loop each, one handler
per channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from server.store import client
from server.tasks import cancelling

log = logging.getLogger("livecart.broker")

Handler = Callable[[str], Awaitable[None]]
MAIN = "main"  # the one line of a single server


class _Line:
    """One subscriber connection (to one Redis node) and its read loop."""

    def __init__(self, name: str, pubsub: PubSub, owner: Redis | None) -> None:
        self.name = name
        self.pubsub = pubsub
        self.owner = owner  # the per-node client made for this line (cluster), closed with it
        self.channels: set[str] = set()
        self.reader: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
            if self.owner is not None:
                await self.owner.aclose()


class Broker:
    """Subscribe this process to channels and hand each channel's messages to its handler, in order.

    Contract: at most once delivery, in publish order per channel. Messages published while the
    connection is down are lost here; room events carry offsets so the hub notices and reads
    them back from the history, and video calls time out and are answered as unavailable.

    Every channel is a shard channel (SSUBSCRIBE; publishers SPUBLISH): on a single server one
    connection reads them all; on a Redis Cluster each is read from the primary that owns its slot
    (one connection per primary), so a message goes only to its shard. When a read fails or a node
    drops a channel (its slot moved), the slot map is read again and each channel moves to its
    new owner.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cluster = client.cluster_of(redis)
        self._handlers: dict[str, Handler] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._lines: dict[str, _Line] = {}
        self._routes: dict[str, str] = {}  # channel -> the name of the line it is read on
        self._rerouting: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._rerouting is not None:
            self._rerouting.cancel()
            await asyncio.gather(self._rerouting, return_exceptions=True)
        for line in list(self._lines.values()):
            await line.close()
        self._lines.clear()

    async def subscribe(self, channel: str, handler: Handler, timeout: float = 5.0) -> None:
        """Subscribe; return once Redis has confirmed, so nothing published after is missed."""
        self._handlers[channel] = handler
        try:
            if self._cluster is not None:
                await self._cluster.initialize()  # reads the slot map on its first call only
            await self._listen(self._line_for(channel), channel, timeout)
        except BaseException:
            self._handlers.pop(channel, None)
            raise

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        line = self._lines.get(self._routes.pop(channel, ""))
        if line is None:
            return
        line.channels.discard(channel)
        await line.pubsub.sunsubscribe(channel)

    def _home(self, cluster: RedisCluster, channel: str) -> str:
        """The node a channel is read from on a cluster: the primary owning its slot."""
        node = cluster.get_node_from_key(channel)
        assert node is not None  # a primary, never a replica (read_from_replicas is off)
        return str(node.name)

    def _line_for(self, channel: str) -> _Line:
        name = MAIN if self._cluster is None else self._home(self._cluster, channel)
        line = self._lines.get(name)
        if line is None:
            if self._cluster is None:
                line = _Line(name, self._redis.pubsub(), None)
            else:
                node = self._cluster.get_node(node_name=name)
                assert node is not None
                settings = self._cluster.nodes_manager.connection_kwargs
                owner = Redis(
                    host=node.host,
                    port=int(node.port),
                    username=settings.get("username"),
                    password=settings.get("password"),
                    decode_responses=True,
                    health_check_interval=15,
                )
                line = _Line(name, owner.pubsub(), owner)
            self._lines[name] = line
        return line

    async def _listen(self, line: _Line, channel: str, timeout: float) -> None:
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            await line.pubsub.ssubscribe(channel)
            line.channels.add(channel)
            self._routes[channel] = line.name
            if line.reader is None:  # the line's connection exists from its first subscribe on
                line.reader = asyncio.create_task(self._read(line), name=f"broker-reader-{line.name}")
            await asyncio.wait_for(confirmed, timeout)
        finally:
            self._confirmations.pop(channel, None)

    async def _read(self, line: _Line) -> None:
        while True:
            try:
                message: dict[str, Any] | None = await line.pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as error:
                if cancelling():
                    raise asyncio.CancelledError from error
                log.warning("pub/sub connection %s lost (%s); reconnecting", line.name, error)
                self._reroute_soon()
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "smessage":
                handler = self._handlers.get(channel)
                if handler is None:
                    continue
                try:
                    await handler(message["data"])
                except Exception:
                    log.exception("handling a message on %s failed", channel)
            elif kind == "ssubscribe":
                confirmed = self._confirmations.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind == "sunsubscribe" and self._routes.get(channel) == line.name:
                self._reroute_soon()  # the node dropped a channel we still want: its slot moved

    def _reroute_soon(self) -> None:
        if self._cluster is not None and (self._rerouting is None or self._rerouting.done()):
            self._rerouting = asyncio.create_task(self._reroute(self._cluster), name="broker-reroute")

    async def _reroute(self, cluster: RedisCluster) -> None:
        """Read the cluster's slot map again; move each channel to the line of its home node; close lines on nodes
        that are no longer primaries."""
        try:
            await cluster.nodes_manager.initialize()
            homes = {channel: self._home(cluster, channel) for channel in list(self._handlers)}
        except (RedisError, OSError) as error:
            log.warning("pub/sub: cannot read the cluster's slot map (%s); trying again", error)
            return  # the next failed read asks again
        primaries = {node.name for node in cluster.get_primaries()}
        for channel, home in homes.items():
            current = self._routes.get(channel)
            if current == home:
                continue
            old = self._lines.get(current or "")
            if old is not None:
                old.channels.discard(channel)
                if old.name in primaries:
                    with contextlib.suppress(RedisError, OSError):
                        await old.pubsub.sunsubscribe(channel)
            try:
                await self._listen(self._line_for(channel), channel, 5.0)
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("pub/sub: cannot move %s to %s (%s); trying again", channel, home, error)
                self._routes.pop(channel, None)
                self._reroute_later()
        for name, line in list(self._lines.items()):
            if name not in primaries and not line.channels:
                del self._lines[name]
                await line.close()
        log.info("pub/sub: %d channels on %d nodes after reading the slot map", len(self._routes), len(self._lines))

    def _reroute_later(self) -> None:
        asyncio.get_running_loop().call_later(0.5, self._reroute_soon)
