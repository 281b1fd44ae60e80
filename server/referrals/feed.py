"""What sharers and rooms see live, and the commission pass's clock.

Every process runs one feed. Every REFERRAL_PASS_MS it runs the commission pass (one process at a
time gets to: server.referrals.earnings) and publishes what changed since the last time: each
touched sharer's numbers to their own sockets in the room it concerns (the private `earnings`
event), and each touched room's top sharers (`sharers`). A change is noted in a Redis set (a visit
in any process, the pass's new rows) and popped by one process: a sharer is published at most once
per interval, however many orders came, and a room's board at most once per interval whatever the
processes (a claim in Redis; a process that finds it taken puts the room back for the next tick).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis

from server import keys
from server.config import Settings
from server.protocol import event
from server.referrals.earnings import Earnings
from server.rooms.record import RoomRecords
from server.tasks import Tasks

log = logging.getLogger("livecart.referrals")

PUBLISH_BATCH = 1000
PASS_STEPS = 20  # commission pass steps per tick at most (a storm's paid orders are caught up over a few ticks)


class ReferralsFeed:
    def __init__(self, redis: Redis, earnings: Earnings, records: RoomRecords, settings: Settings) -> None:
        self.redis = redis
        self.earnings = earnings
        self.records = records
        self.settings = settings
        self.tasks = Tasks("referrals")

    def start(self) -> None:
        self.tasks.every(self.settings.referral_pass_ms / 1000, self.tick, "pass")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def tick(self) -> None:
        await self.changed(await self.earnings.run_all(PASS_STEPS))
        await self.publish()

    async def changed(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Sharers (merchant, sharer, room) whose numbers changed: published at the next tick."""
        members = [f"{merchant} {sharer} {room}" for merchant, sharer, room in items]
        if members:
            await self.redis.sadd(keys.referrals_changed(), *members)

    async def publish(self) -> None:
        popped = cast(list[str] | None, await self.redis.spop(keys.referrals_changed(), PUBLISH_BATCH))
        if not popped:
            return
        rooms_of: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        for member in popped:
            merchant_id, sharer_id, room_id = member.split(" ")
            rooms_of[(merchant_id, sharer_id)].add(room_id)
        messages = []
        for (merchant_id, sharer_id), rooms in rooms_of.items():
            numbers = event("earnings", **await self.earnings.summary(merchant_id, sharer_id))
            messages += [(room_id, [sharer_id], numbers) for room_id in rooms]
        await self.records.publish_privately(messages)
        interval = max(self.settings.referral_pass_ms * 9 // 10, 1)  # a tick later, this process may publish again
        for room_id, items in _by_room(rooms_of).items():
            if await self.redis.set(keys.sharers_claim(room_id), "1", px=interval, nx=True):
                await self.records.publish_sharers(room_id, await self.earnings.top(room_id))
            else:  # another process published this room's board a moment ago: next time
                await self.changed(items)


def _by_room(rooms_of: dict[tuple[str, str], set[str]]) -> dict[str, list[tuple[str, str, str]]]:
    """The changed (merchant, sharer, room) items of each room."""
    found: defaultdict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for (merchant_id, sharer_id), rooms in rooms_of.items():
        for room_id in rooms:
            found[room_id].append((merchant_id, sharer_id, room_id))
    return found
