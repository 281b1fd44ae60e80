"""A room's replay: returning viewers get what they missed from one history read and one encoding, each exactly once."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server import keys
from server.live.history import History
from server.live.replay import Replay
from server.protocol import encode, event, with_offset
from server.rooms.record import RoomRecords
from tests.client import RoomClient
from tests.conftest import Shop
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def _history(redis: Redis, room_id: str, first: int, last: int) -> list[str]:
    """Events first..last appended to the room's history as room_publish.lua appends them; as clients see them."""
    events = []
    for offset in range(first, last + 1):
        encoded = encode(event("chat.deleted", message_id=f"m{offset}"))
        await redis.xadd(keys.history(room_id), {"e": encoded}, id=f"{offset}-1")
        events.append(with_offset(offset, encoded))
    return events


async def test_concurrent_recoveries_of_one_range_read_the_history_once(redis: Redis) -> None:
    """Fifty viewers back from the same offset at once: one history read, and the same events text for each."""
    room_id = "r" + secrets.token_hex(4)
    events = await _history(redis, room_id, 1, 10)
    replay = Replay(History(redis), room_id, "ep", 100)
    parts = await asyncio.gather(*(replay.missed(0, 10) for _ in range(50)))
    assert set(parts) == {",".join(events)}
    assert replay.reads == 1


async def test_each_since_gets_its_slice_and_only_what_is_lacking_is_read(redis: Redis) -> None:
    """Viewers back from nearby offsets take their slices of what was read; only older or newer events cost a read."""
    room_id = "r" + secrets.token_hex(4)
    events = await _history(redis, room_id, 1, 10)
    replay = Replay(History(redis), room_id, "ep", 100)
    assert await replay.missed(4, 10) == ",".join(events[4:10])
    assert await replay.missed(7, 10) == ",".join(events[7:10])
    assert await replay.missed(9, 10) == events[9]
    assert replay.reads == 1
    assert await replay.missed(1, 10) == ",".join(events[1:10])  # from further behind: the events below, read once
    assert replay.reads == 2
    events += await _history(redis, room_id, 11, 12)
    assert await replay.missed(5, 12) == ",".join(events[5:12])  # the room moved on: only the new events are read
    assert replay.reads == 3
    assert await replay.missed(12, 12) == ""
    assert replay.reads == 3


async def test_events_the_history_no_longer_has_give_no_replay(redis: Redis) -> None:
    """Missed events older than the history keeps give None (the viewer gets a snapshot); newer ones still replay."""
    room_id = "r" + secrets.token_hex(4)
    events = await _history(redis, room_id, 1, 10)
    await redis.xtrim(keys.history(room_id), maxlen=4, approximate=False)
    replay = Replay(History(redis), room_id, "ep", 100)
    assert await replay.missed(2, 10) is None
    assert await replay.missed(6, 10) == ",".join(events[6:10])


async def test_the_run_keeps_no_more_than_the_history_size(redis: Redis) -> None:
    """As the room moves on, the replay drops its oldest events beyond the history's size (never what was asked)."""
    room_id = "r" + secrets.token_hex(4)
    events = await _history(redis, room_id, 1, 10)
    replay = Replay(History(redis), room_id, "ep", 5)
    assert await replay.missed(5, 10) == ",".join(events[5:10])
    events += await _history(redis, room_id, 11, 13)
    assert await replay.missed(10, 13) == ",".join(events[10:13])
    assert (replay.first, replay.last) == (9, 13)
    assert await replay.missed(1, 13) == ",".join(events[1:13])  # asked for more than it keeps: all of it, this once


async def test_viewers_reconnecting_together_while_events_flow_miss_nothing_and_get_nothing_twice(
    shop: Shop, redis_url: str
) -> None:
    """Twenty viewers drop at once and come back with since/epoch while events keep coming: each recovers, then has
    every durable event after its offset exactly once, in order."""
    viewers = [await RoomClient.connect(shop.room_url(shop.guest())) for _ in range(20)]
    redis = Redis.from_url(redis_url, decode_responses=True)
    records = RoomRecords(redis)
    flowing = asyncio.Event()
    stop = asyncio.Event()
    published: list[int] = []

    async def publish() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            published.append(await records.publish(shop.room_id, event("chat.deleted", message_id=f"m{number}")))
            if number == 10:
                flowing.set()
            await asyncio.sleep(0.02)

    def last(client: RoomClient) -> int:
        assert client.first is not None
        return int(max([client.first["offset"], *(e["offset"] for e in client.events if "offset" in e)]))

    publisher = asyncio.create_task(publish())
    try:
        await asyncio.wait_for(flowing.wait(), seconds(10))
        for viewer in viewers:
            await viewer.wait(lambda viewer=viewer: last(viewer) >= 5)
        await asyncio.gather(*(viewer.close() for viewer in viewers))
        left = [(last(viewer), viewer.first["epoch"]) for viewer in viewers if viewer.first is not None]
        back = await asyncio.gather(
            *(RoomClient.connect(shop.room_url(shop.guest(), since=since, epoch=epoch)) for since, epoch in left)
        )
        recovered = len(published)
        await until(lambda: len(published) >= recovered + 10, what="ten events after the recoveries")
    finally:
        stop.set()
        await publisher
        await redis.aclose()
    try:
        final = published[-1]
        for client, (since, _) in zip(back, left, strict=True):
            assert client.first is not None and client.first["type"] == "recovered"
            await client.wait(lambda client=client: last(client) >= final)
            assert [e["offset"] for e in client.events if "offset" in e] == list(range(since + 1, final + 1))
    finally:
        await asyncio.gather(*(client.close() for client in back))
