"""Presence: each process reports its viewers per room; a room's count is the sum over live reports; its peak is kept.

The presence hash of a room (process id -> "<count>:<expires ms>") and its peak (sorted set,
member "viewers") are written and read only here.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from server import keys
from server.metrics import redis_timer
from server.protocol import now_ms


def _live_total(entries: dict[str, str], now: int) -> tuple[int, list[str]]:
    """The sum of the reports that have not expired, and the processes whose report has."""
    total, stale = 0, []
    for process, value in entries.items():
        count, _, expires = value.partition(":")
        if int(expires) < now:
            stale.append(process)
        else:
            total += int(count)
    return total, stale


class Presence:
    """Viewer counts across processes.

    Contract: a process calls refresh() every few hundred ms with its local counts and gets back
    every room's total over the processes that reported within `ttl_ms`; a process that stops
    reporting drops out of the count after that long.
    """

    def __init__(self, redis: Redis, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms

    async def refresh(self, process_id: str, counts: dict[str, int]) -> dict[str, int]:
        now = now_ms()
        with redis_timer("presence"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, count in counts.items():
                    pipe.hset(keys.presence(room_id), process_id, f"{count}:{now + self.ttl_ms}")
                    pipe.hgetall(keys.presence(room_id))
                replies = await pipe.execute()
        totals: dict[str, int] = {}
        stale: list[tuple[str, str]] = []
        for index, room_id in enumerate(counts):
            totals[room_id], gone = _live_total(replies[index * 2 + 1], now)
            stale.extend((room_id, process) for process in gone)
        if stale:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, process in stale:
                    pipe.hdel(keys.presence(room_id), process)
                await pipe.execute()
        return totals

    async def clear(self, process_id: str, room_ids: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hdel(keys.presence(room_id), process_id)
            await pipe.execute()

    async def count(self, room_id: str) -> tuple[int, int]:
        """The room's viewers now and the highest count seen since its show opened (raised here, atomically)."""
        entries = cast(dict[str, str], await self.redis.hgetall(keys.presence(room_id)))
        viewers, _ = _live_total(entries, now_ms())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.room_peak(room_id), {"viewers": viewers}, gt=True)
            pipe.zscore(keys.room_peak(room_id), "viewers")
            _, peak = await pipe.execute()
        return viewers, int(peak or 0)

    async def reset_peak(self, room_id: str) -> None:
        """Start the room's peak afresh (a show opened: server.rooms.shows)."""
        await self.redis.delete(keys.room_peak(room_id))
