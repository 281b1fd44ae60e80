"""The live room over real WebSockets to a real server on real Redis: snapshot, events, batching, counters."""

from __future__ import annotations

import asyncio

import pytest

from server.protocol import event
from tests.client import RoomClient
from tests.conftest import Shop, publish_direct

pytestmark = pytest.mark.anyio


async def test_joining_viewer_gets_one_snapshot_then_events(shop: Shop) -> None:
    """A viewer's first frame is the room snapshot; a host's pin then reaches it as an event."""
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
    ):
        assert viewer.first is not None and viewer.first["type"] == "snapshot"
        assert viewer.first["room"]["id"] == shop.room_id
        assert viewer.first["pinned"] is None
        reply = await host.request("product.pin", product_id=shop.products[0])
        assert reply["type"] == "ack"
        pinned = await viewer.wait_event("product.pinned")
        assert pinned["product"]["title"] == "Red scarf"
        assert pinned["offset"] == viewer.first["offset"] + 1
        assert isinstance(pinned["ts"], int)


async def test_snapshot_shows_pinned_product_bag_status_and_recent_chat(shop: Shop) -> None:
    """A viewer who joins late sees the room as it is: pinned card, bag, status and the last chat messages."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        assert (await host.request("bag.set", product_ids=shop.products))["type"] == "ack"
        assert (await host.request("product.pin", product_id=shop.products[1]))["type"] == "ack"
        assert (await host.request("room.status", status="live"))["type"] == "ack"
        assert (await host.request("chat.send", text="welcome everyone"))["type"] == "ack"
        await host.wait_event("chat.message")
    async with await RoomClient.connect(shop.room_url(shop.guest())) as late:
        snapshot = late.first
        assert snapshot is not None
        assert snapshot["pinned"]["id"] == shop.products[1]
        assert [item["id"] for item in snapshot["bag"]] == shop.products
        assert snapshot["room"]["status"] == "live"
        assert snapshot["chat"][-1]["text"] == "welcome everyone"
        assert snapshot["offset"] == 4


async def test_events_within_one_tick_travel_in_one_frame(shop: Shop, redis_url: str) -> None:
    """Thirty chat events published at once reach a viewer in a few frames, not thirty."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        messages = [
            event(
                "chat.message", message={"id": f"m{i}", "user_id": "u", "name": "U", "role": "viewer", "text": str(i)}
            )
            for i in range(30)
        ]
        await publish_direct(redis_url, shop.room_id, messages)
        await viewer.wait(lambda: sum(1 for e in viewer.events if e["type"] == "chat.message") == 30)
        batches = [frame for frame in viewer.frames if frame["type"] == "batch"]
        assert len(batches) <= 3
        texts = [e["message"]["text"] for e in viewer.events if e["type"] == "chat.message"]
        assert texts == [str(i) for i in range(30)]


async def test_viewer_gets_at_most_about_ten_frames_a_second(shop: Shop, redis_url: str) -> None:
    """Under 200 events/s for one second a viewer receives about ten frames, with every event."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        for burst in range(20):
            await publish_direct(
                redis_url,
                shop.room_id,
                [
                    event(
                        "chat.message",
                        message={"id": f"{burst}-{i}", "user_id": "u", "name": "U", "role": "viewer", "text": "x"},
                    )
                    for i in range(10)
                ],
            )
            await asyncio.sleep(0.05)
        await viewer.wait(lambda: sum(1 for e in viewer.events if e["type"] == "chat.message") == 200)
        batches = [frame for frame in viewer.frames if frame["type"] == "batch"]
        span_ms = batches[-1]["ts"] - batches[0]["ts"]
        assert len(batches) <= span_ms / 100 + 2


async def test_stock_like_updates_are_coalesced_to_the_latest_value(shop: Shop, redis_url: str) -> None:
    """Fifty stock updates in a burst reach the viewer as a handful, ending at the final value."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        updates = [event("stock", sale_id="s1", available=100 - i, version=i + 1) for i in range(50)]
        await publish_direct(redis_url, shop.room_id, updates, durable=False)
        # A room's events arrive in order: once this later one is seen, every update above has been handled.
        marker = event("stock", sale_id="s2", available=7, version=1)
        await publish_direct(redis_url, shop.room_id, [marker], durable=False)
        await viewer.wait_event("stock", sale_id="s2")
        seen = [e["available"] for e in viewer.events if e["type"] == "stock" and e["sale_id"] == "s1"]
        assert seen[-1] == 51
        assert len(seen) < 10


async def test_viewer_count_reaches_everyone(shop: Shop) -> None:
    """Three connections make the room's viewer count 3 on every screen."""
    clients = [await RoomClient.connect(shop.room_url(shop.guest())) for _ in range(3)]
    try:
        for client in clients:
            await client.wait_event("viewers", count=3, timeout=5)
    finally:
        for client in clients:
            await client.close()


async def test_likes_are_aggregated_into_totals(shop: Shop) -> None:
    """Twenty taps from two viewers arrive as a few like totals that end at the sum."""
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as first,
        await RoomClient.connect(shop.room_url(shop.guest())) as second,
    ):
        for _ in range(5):
            await first.send_raw('{"type":"like","count":2}')
            await second.send_raw('{"type":"like","count":2}')
        final = await first.wait_event("likes", total=20)
        assert final["total"] == 20
        assert len([e for e in first.events if e["type"] == "likes"]) < 10
        await second.wait_event("likes", total=20)


async def test_host_of_another_merchant_is_only_a_viewer_here(shop: Shop, server: object, redis_url: str) -> None:
    """A host token of merchant B cannot pin products in merchant A's room."""
    from tests.conftest import make_shop

    other = make_shop(shop.base_url, shop.ws_url, redis_url)
    async with await RoomClient.connect(shop.room_url(other.host)) as intruder:
        reply = await intruder.request("product.pin", product_id=shop.products[0])
        assert reply["type"] == "error" and reply["code"] == "forbidden"


async def test_pinning_an_unknown_product_is_refused(shop: Shop) -> None:
    """Pinning a product the shop does not have answers not_found and changes nothing."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        reply = await host.request("product.pin", product_id="no-such-thing")
        assert reply == {**reply, "type": "error", "code": "not_found"}
        assert "no-such-thing" in reply["message"]
        assert (await host.request("bag.set", product_ids=[shop.products[0], "ghost"]))["code"] == "not_found"
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        assert viewer.first is not None
        assert viewer.first["pinned"] is None and viewer.first["bag"] == [] and viewer.first["offset"] == 0
