"""A room's replay: what returning viewers missed, read from the history once and encoded once for all of them.

A reconnect storm brings thousands of a room's viewers back within seconds, most of them from the same few offsets.
Reading and encoding what each one missed (an XRANGE of a hundred events or more, per viewer) was a quarter of the
server's time in such a storm. A Replay keeps a run of the room's recent durable events as clients see them (offsets
`first`..`last`, none missing) and reads from the history (server.live.history) only what the run lacks: the events
above it as the room moves on, those below it when a viewer comes back from further behind. One read at a time:
recoveries that arrive while one is under way wait for it, then take their slice of the run. A slice joined (a
recovery frame's `events`) is kept for the last (since, until) asked, so the viewers that come back from the same
offset within one tick share one string.

Bounded: the run holds about the room's history size (HISTORY_SIZE, the newest events); the joined slices, PARTS of
them and PARTS_CHARS characters together at most. A replay is of one epoch of one room: the hub keeps it on the room
(it goes when the room unloads) and starts another when the epoch changes.
"""

from __future__ import annotations

import asyncio

from server.live.history import History

PARTS = 32  # joined slices kept, the newest asked ...
PARTS_CHARS = 4 * 1024 * 1024  # ... and their characters at most, together


class Replay:
    """One room's recent durable events, for the viewers that come back (see the module docstring)."""

    def __init__(self, history: History, room_id: str, epoch: str, keep: int) -> None:
        self.history = history
        self.room_id = room_id
        self.epoch = epoch
        self.keep = keep
        self.first = 1  # the offset of events[0]
        self.events: list[str] = []  # as clients see them, offset first
        self.reads = 0  # history reads made (concurrent recoveries of one range share one)
        self._reading = asyncio.Lock()
        self._parts: dict[tuple[int, int], str] = {}  # (since, until) -> the events text, oldest asked first
        self._parts_chars = 0

    @property
    def last(self) -> int:
        return self.first + len(self.events) - 1

    async def missed(self, since: int, until: int) -> str | None:
        """The durable events after `since` up to `until`, in order, joined by commas (a recovery frame's events);
        None when the history no longer has some of them. A RedisError (or another store error) when it cannot be
        read."""
        if since >= until:
            return ""
        part = self._parts.get((since, until))
        if part is not None:
            return part
        if not self._holds(since, until):
            async with self._reading:
                if not self._holds(since, until) and not await self._read(since, until):
                    return None
        part = self._parts[since, until] = ",".join(self.events[since + 1 - self.first : until + 1 - self.first])
        self._parts_chars += len(part)
        while len(self._parts) > PARTS or self._parts_chars > PARTS_CHARS:
            self._parts_chars -= len(self._parts.pop(next(iter(self._parts))))
        return part

    def _holds(self, since: int, until: int) -> bool:
        return self.first <= since + 1 and until <= self.last

    async def _read(self, since: int, until: int) -> bool:
        """Read what the run lacks of since+1..until (a run apart from it is replaced); False when the history does
        not have it all."""
        if not self.events or since > self.last or until < self.first - 1:
            events = await self._between(since, until)
            if events is None:
                return False
            self.first, self.events = since + 1, events
        else:
            if until > self.last:
                newer = await self._between(self.last, until)
                if newer is None:
                    return False
                self.events += newer
            if since + 1 < self.first:
                older = await self._between(since, self.first - 1)
                if older is None:
                    return False
                self.first, self.events = since + 1, older + self.events
        excess = min(len(self.events) - self.keep, since + 1 - self.first)  # never what was asked for
        if excess > 0:
            del self.events[:excess]
            self.first += excess
        return True

    async def _between(self, after: int, until: int) -> list[str] | None:
        self.reads += 1
        return await self.history.between(self.room_id, after, until)
