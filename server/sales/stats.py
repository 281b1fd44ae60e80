"""A room's numbers for its host: viewers now, the current show's numbers, and its past shows.

A show is a room's go-live to end (server.rooms.shows, PostgreSQL). The top-level numbers (peak
viewers, likes, orders, units, GMV, buyers, conversion, sales) are the current show's, zeros while the
room is not live; `show` is the current show (or null) and `shows` its past shows, newest first,
each with the same numbers. Viewers now come from presence (staff of the room's merchant are not viewers);
reading the stats also raises the room's peak (server.rooms.presence), which is the open show's peak.
"""

from __future__ import annotations

from typing import Any

from server.protocol import now_ms
from server.rooms.presence import Presence
from server.rooms.shows import Numbers, Shows

PAST_SHOWS = 20  # past shows listed unless asked for another number
MAX_PAST_SHOWS = 100


class RoomStats:
    """The numbers of rooms (see the module docstring)."""

    def __init__(self, shows: Shows, presence: Presence) -> None:
        self.shows = shows
        self.presence = presence

    async def room(self, room_id: str, past: int = PAST_SHOWS) -> dict[str, Any]:
        viewers, peak = await self.presence.count(room_id)
        current = await self.shows.current(room_id)
        ended = await self.shows.of_room(room_id, past) if past > 0 else []
        numbers = await self.shows.numbers([show.id for show in (current, *ended) if show is not None])
        now = Numbers() if current is None else numbers[current.id]
        peak_now = 0 if current is None else max(current.peak_viewers, peak)
        room_likes = await self.shows.records.likes(room_id)
        return {
            "room_id": room_id,
            "viewers": viewers,
            "peak_viewers": peak_now,
            "likes": 0 if current is None else current.likes_now(room_likes),
            **now.public(peak_now),
            "show": None if current is None else current.public(now, peak, room_likes),
            "shows": [past_show.public(numbers[past_show.id]) for past_show in ended],
            "server_time": now_ms(),
        }
