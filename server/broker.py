"""Redis pub/sub between server processes: one connection per process, one channel per room with local viewers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import keys

log = logging.getLogger("livecart.broker")

Handler = Callable[[str, str], Awaitable[None]]


class Broker:
    """Subscribe this process to rooms and hand each message to one handler, in order.

    Contract: at most once delivery, in publish order per room. Messages published while the
    connection is down are lost here; durable events carry offsets so the hub notices and reads
    them back from the history.
    """

    def __init__(self, redis: Redis, handler: Handler) -> None:
        self._pubsub = redis.pubsub()
        self._handler = handler
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._pubsub.aclose()

    async def subscribe(self, room_id: str, timeout: float = 5.0) -> None:
        """Subscribe to a room; return once Redis has confirmed, so nothing published after is missed."""
        channel = keys.channel(room_id)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            await self._pubsub.subscribe(channel)
            if self._reader is None:  # the pub/sub connection exists from the first subscribe on
                self._reader = asyncio.create_task(self._read(), name="broker-reader")
            await asyncio.wait_for(confirmed, timeout)
        finally:
            self._confirmations.pop(channel, None)

    async def unsubscribe(self, room_id: str) -> None:
        await self._pubsub.unsubscribe(keys.channel(room_id))

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as error:
                log.warning("pub/sub connection lost (%s); reconnecting", error)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message["channel"]
            if message["type"] == "subscribe":
                confirmed = self._confirmations.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif message["type"] == "message":
                room_id = channel[channel.index("{") + 1 : channel.index("}")]
                try:
                    await self._handler(room_id, message["data"])
                except Exception:
                    log.exception("handling a message of room %s failed", room_id)
