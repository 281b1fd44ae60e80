"""Reconnect catch-up: a returning viewer gets exactly what it missed, or a fresh snapshot and a flag saying so."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from server import keys
from server.protocol import event
from tests.client import RoomClient
from tests.conftest import Shop

pytestmark = pytest.mark.anyio


async def _chat(host: RoomClient, *texts: str) -> None:
    for text in texts:
        assert (await host.request("chat.send", text=text))["type"] == "ack"


async def test_returning_viewer_gets_exactly_what_it_missed(shop: Shop) -> None:
    """Back with its last offset and epoch, a viewer receives the missed events in order, once, then live ones."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        await _chat(host, "before")
        viewer = await RoomClient.connect(shop.room_url(shop.guest()))
        assert viewer.first is not None

        def last_offset() -> int:
            return max([viewer.first["offset"], *(e["offset"] for e in viewer.events if "offset" in e)])

        await viewer.wait(lambda: last_offset() == 1)  # "before", in the snapshot or just after it
        offset, epoch = last_offset(), viewer.first["epoch"]
        await viewer.close()

        await _chat(host, "missed 1", "missed 2")
        assert (await host.request("product.pin", product_id=shop.products[2]))["type"] == "ack"

        back = await RoomClient.connect(shop.room_url(shop.guest(), since=offset, epoch=epoch))
        try:
            assert back.first is not None and back.first["type"] == "recovered"
            await _chat(host, "live again")
            await back.wait_event("chat.message", offset=offset + 4)
            # what it missed comes in the recovery frame or in the batches right after it: once each, in order
            durable = [e for e in back.events if "offset" in e]
            assert [e["offset"] for e in durable] == [offset + 1, offset + 2, offset + 3, offset + 4]
            assert [e["type"] for e in durable] == ["chat.message", "chat.message", "product.pinned", "chat.message"]
            assert [e["message"]["text"] for e in durable if e["type"] == "chat.message"] == [
                "missed 1",
                "missed 2",
                "live again",
            ]
        finally:
            await back.close()


async def test_viewer_up_to_date_recovers_nothing(shop: Shop) -> None:
    """Returning with the current offset gives an empty recovery, not a snapshot."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as first:
        assert first.first is not None
        offset, epoch = first.first["offset"], first.first["epoch"]
    async with await RoomClient.connect(shop.room_url(shop.guest(), since=offset, epoch=epoch)) as back:
        assert back.first is not None
        assert back.first["type"] == "recovered" and back.first["events"] == []


async def test_wrong_epoch_gets_a_fresh_snapshot_flagged_not_recovered(shop: Shop) -> None:
    """After a history reset (another epoch) the viewer gets a snapshot with recovered: false."""
    async with await RoomClient.connect(shop.room_url(shop.guest(), since=0, epoch="other")) as back:
        assert back.first is not None
        assert back.first["type"] == "snapshot" and back.first["recovered"] is False


async def test_too_old_offset_gets_a_fresh_snapshot(shop: Shop, redis_url: str) -> None:
    """When the missed events are no longer in the history, the viewer gets a snapshot flagged recovered: false."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        assert host.first is not None
        epoch = host.first["epoch"]
        await _chat(host, "one", "two", "three")
        await host.wait_event("chat.message", offset=3)
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await redis.xtrim(keys.history(shop.room_id), maxlen=1, approximate=False)  # as if the history had rolled over
    finally:
        await redis.aclose()
    async with await RoomClient.connect(shop.room_url(shop.guest(), since=0, epoch=epoch)) as back:
        assert back.first is not None
        assert back.first["type"] == "snapshot" and back.first["recovered"] is False
        assert back.first["offset"] == 3
        assert [m["text"] for m in back.first["chat"]] == ["one", "two", "three"]


async def test_event_lost_on_pubsub_is_read_back_from_history(shop: Shop, redis_url: str) -> None:
    """A durable event that never came over pub/sub still reaches viewers, from the history, within seconds."""
    from server.protocol import encode
    from server.rooms import record
    from server.store import scripts

    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            publish = scripts.register(redis, record.__file__, "room_publish")
            lost = event(
                "chat.message", message={"id": "lost", "user_id": "u", "name": "U", "role": "viewer", "text": "hi"}
            )
            # published to a channel nobody listens on (in the room's slot, as a script must on a Redis Cluster):
            # stored in the history, never delivered by pub/sub
            nowhere = keys.channel(shop.room_id) + ":nowhere"
            await publish(keys=[keys.room(shop.room_id), keys.history(shop.room_id)], args=[nowhere, encode(lost), 100])
        finally:
            await redis.aclose()
        found = await viewer.wait_event("chat.message", timeout=5)
        assert found["message"]["id"] == "lost" and found["offset"] == 1
