"""Room events in Redis: durable events (history with offset and epoch, then pub/sub) and latest-value events."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server import keys, lua
from server.metrics import redis_timer
from server.protocol import encode


class UnknownRoom(Exception):
    """The room does not exist (or no longer does)."""


class History:
    """Publish room events to every server process; read what a returning viewer missed.

    Contract: a durable event is given the next offset of its room, stored in the room's bounded
    history and published, all atomically with the room-state fields that change with it. A
    latest-value event is only published (at most once delivery) and never stored.
    """

    def __init__(self, redis: Redis, size: int) -> None:
        self.redis = redis
        self.size = size
        self._publish = lua.register(redis, "history_publish")

    async def publish(self, room_id: str, event: dict[str, Any], state: dict[str, str | int] | None = None) -> int:
        """Publish a durable event; return its offset."""
        args: list[str | int] = [keys.channel(room_id), encode(event), self.size]
        for field, value in (state or {}).items():
            args += [field, value]
        try:
            with redis_timer("publish"):
                return int(await self._publish(keys=[keys.room(room_id), keys.history(room_id)], args=args))
        except ResponseError as error:
            if str(error).startswith("NOROOM"):
                raise UnknownRoom(room_id) from None
            raise

    async def publish_latest(self, room_id: str, event: dict[str, Any]) -> None:
        """Publish a latest-value event (viewer count, likes, stock) to every process."""
        await self.redis.publish(keys.channel(room_id), encode(event))

    async def load(self, room_id: str, tail: int) -> tuple[dict[str, str], list[str]]:
        """The room hash and its newest `tail` history events (oldest first), read in one transaction.

        The room's sales (hash fields "sale:<id>", as last announced) come with the live stock of
        those not ended, read just after (fields "stock:<id>", JSON): a viewer must see stock now.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.room(room_id))
            pipe.xrevrange(keys.history(room_id), count=tail)
            fields, entries = await pipe.execute()
        live = [name[5:] for name, raw in fields.items() if name.startswith("sale:") and '"status":"ended"' not in raw]
        if live:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sale_id in live:
                    pipe.hmget(keys.sale(sale_id), ["available", "held", "paid", "version"])
                counters = await pipe.execute()
            for sale_id, (available, held, paid, version) in zip(live, counters, strict=True):
                if version is not None:
                    stock = {"available": int(available), "held": int(held), "sold": int(paid), "version": int(version)}
                    fields[f"stock:{sale_id}"] = orjson.dumps(stock).decode()
        return fields, [entry[1]["e"] for entry in reversed(entries)]

    async def between(self, room_id: str, after: int, until: int) -> list[str] | None:
        """Events with offsets after+1..until, or None when some of them are no longer kept."""
        if until <= after:
            return []
        entries = await self.redis.xrange(keys.history(room_id), min=f"{after + 1}-1", max=f"{until}-1")
        if len(entries) != until - after:
            return None
        return [entry[1]["e"] for entry in entries]

    async def last_offset(self, room_ids: list[str]) -> dict[str, int]:
        """Each room's newest offset, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hget(keys.room(room_id), "offset")
            values = await pipe.execute()
        return {room_id: int(value or 0) for room_id, value in zip(room_ids, values, strict=False)}
