"""Reading a room's event history (written by server.rooms.record): the recent events, and what a viewer missed.

The history is a Redis stream whose entry ids are "<offset>-1" and whose field "e" is the event
as encoded, without its offset; events come back from here as clients see them, offset first.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from server import keys
from server.protocol import with_offset

Entries = list[tuple[str, dict[str, str]]]  # (entry id, fields): replies are text (decode_responses)


def _events(entries: Entries) -> list[str]:
    return [with_offset(int(entry_id.partition("-")[0]), fields["e"]) for entry_id, fields in entries]


class History:
    """The durable events of rooms, read back (see the module docstring)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def recent(self, room_id: str, count: int, until: int) -> list[str]:
        """The newest `count` events with offsets up to `until`, oldest first."""
        if until <= 0 or count <= 0:
            return []
        entries = cast(Entries, await self.redis.xrevrange(keys.history(room_id), max=f"{until}-1", count=count))
        return _events(entries[::-1])

    async def between(self, room_id: str, after: int, until: int) -> list[str] | None:
        """Events with offsets after+1..until, or None when some of them are no longer kept."""
        if until <= after:
            return []
        entries = cast(Entries, await self.redis.xrange(keys.history(room_id), min=f"{after + 1}-1", max=f"{until}-1"))
        if len(entries) != until - after:
            return None
        return _events(entries)
