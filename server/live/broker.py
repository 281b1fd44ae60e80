"""Redis pub/sub between server processes: one connection and one read loop per process, one handler per channel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.tasks import cancelling

log = logging.getLogger("livecart.broker")

Handler = Callable[[str], Awaitable[None]]


class Broker:
    """Subscribe this process to channels and hand each channel's messages to its handler, in order.

    Contract: at most once delivery, in publish order per channel. Messages published while the
    connection is down are lost here; room events carry offsets so the hub notices and reads
    them back from the history, and video calls time out and are answered as unavailable.
    """

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub()
        self._handlers: dict[str, Handler] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def subscribe(self, channel: str, handler: Handler, timeout: float = 5.0) -> None:
        """Subscribe; return once Redis has confirmed, so nothing published after is missed."""
        self._handlers[channel] = handler
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            await self._pubsub.subscribe(channel)
            if self._reader is None:  # the pub/sub connection exists from the first subscribe on
                self._reader = asyncio.create_task(self._read(), name="broker-reader")
            await asyncio.wait_for(confirmed, timeout)
        except BaseException:
            self._handlers.pop(channel, None)
            raise
        finally:
            self._confirmations.pop(channel, None)

    async def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)
        await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as error:
                if cancelling():
                    raise asyncio.CancelledError from error
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
                handler = self._handlers.get(channel)
                if handler is None:
                    continue
                try:
                    await handler(message["data"])
                except Exception:
                    log.exception("handling a message on %s failed", channel)
