"""Presence and room counters across processes: each process reports its viewers per room; totals are summed."""

from __future__ import annotations

from redis.asyncio import Redis

from server import keys
from server.metrics import redis_timer
from server.protocol import now_ms

TTL_MS = 5000  # a process that stops reporting drops out of the count after this long


class Presence:
    """Viewer counts and like totals.

    Contract: a process calls refresh() about once a second with its local counts and gets back
    every room's total over the processes that reported within TTL_MS, with each room's newest
    event offset (so the hub can tell whether it missed any).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def refresh(self, process_id: str, counts: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        now = now_ms()
        with redis_timer("presence"):
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, count in counts.items():
                    pipe.hset(keys.presence(room_id), process_id, f"{count}:{now + TTL_MS}")
                    pipe.hgetall(keys.presence(room_id))
                    pipe.hget(keys.room(room_id), "offset")
                replies = await pipe.execute()
        totals: dict[str, int] = {}
        offsets: dict[str, int] = {}
        stale: list[tuple[str, str]] = []
        for index, room_id in enumerate(counts):
            entries, offset = replies[index * 3 + 1], replies[index * 3 + 2]
            total = 0
            for process, value in entries.items():
                count, _, expires = value.partition(":")
                if int(expires) < now:
                    stale.append((room_id, process))
                else:
                    total += int(count)
            totals[room_id] = total
            offsets[room_id] = int(offset or 0)
        if stale:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, process in stale:
                    pipe.hdel(keys.presence(room_id), process)
                await pipe.execute()
        return totals, offsets

    async def clear(self, process_id: str, room_ids: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hdel(keys.presence(room_id), process_id)
            await pipe.execute()

    async def add_likes(self, room_id: str, count: int) -> int:
        """Add likes to a room; return its new total."""
        return int(await self.redis.hincrby(keys.room(room_id), "likes", count))
