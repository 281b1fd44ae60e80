"""What a giveaway counts in Redis: each person's watch time (credited from the room sockets each process holds) and
who typed the keyword in chat (docs/giveaways.md). Kept until an hour after the giveaway ends."""

from __future__ import annotations

from redis.asyncio import Redis

from server import keys
from server.store import scripts

KEEP_MS = 3_600_000  # after the giveaway's end


class Watch:
    def __init__(self, redis: Redis, slot_ms: int) -> None:
        self.redis = redis
        self.slot_ms = slot_ms
        self._credit = scripts.register(redis, __file__, "giveaway_watch")

    async def credit(self, room_id: str, giveaway_id: str, ends_at: int, user_ids: list[str]) -> int:
        """One slot for each of these people (present on this process now), unless already credited this slot."""
        if not user_ids:
            return 0
        return int(
            await self._credit(
                keys=[keys.giveaway_watch(room_id, giveaway_id), keys.giveaway_slot(room_id, giveaway_id)],
                args=[self.slot_ms, ends_at + KEEP_MS, *user_ids],
            )
        )

    async def watched_ms(self, room_id: str, giveaway_id: str, user_id: str) -> int:
        return int(await self.redis.hget(keys.giveaway_watch(room_id, giveaway_id), user_id) or 0)

    async def heard(self, room_id: str, giveaway_id: str, ends_at: int, user_id: str) -> None:
        """The person typed the keyword in the room's chat."""
        key = keys.giveaway_said(room_id, giveaway_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, user_id)
            pipe.pexpireat(key, ends_at + KEEP_MS)
            await pipe.execute()

    async def said(self, room_id: str, giveaway_id: str, user_id: str) -> bool:
        return bool(await self.redis.sismember(keys.giveaway_said(room_id, giveaway_id), user_id))
