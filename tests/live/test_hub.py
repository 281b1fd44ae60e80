"""The live room over real WebSockets to a real server on real Redis: snapshot, events, batching, counters, the
adaptive tick and sampled chat."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from server.live.pacing import NARROW_AFTER, ChatSample, Tick
from server.protocol import event
from tests.client import RoomClient
from tests.conftest import Person, Shop, make_shop, publish_direct, start_server
from tests.timing import until

pytestmark = pytest.mark.anyio


def chat(user_id: str, text: str, role: str = "viewer") -> dict[str, Any]:
    """A chat.message event as server.rooms.chat publishes it."""
    return event("chat.message", message={"id": text, "user_id": user_id, "name": "U", "role": role, "text": text})


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
    """Thirty chat events published at once reach a viewer in a few frames, not thirty (staff chat: all shown)."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        messages = [chat("u", str(i), role="moderator") for i in range(30)]  # staff chat: never sampled
        await publish_direct(redis_url, shop.room_id, messages)
        await viewer.wait(lambda: sum(1 for e in viewer.events if e["type"] == "chat.message") == 30)
        batches = [frame for frame in viewer.frames if frame["type"] == "batch"]
        assert len(batches) <= 3
        texts = [e["message"]["text"] for e in viewer.events if e["type"] == "chat.message"]
        assert texts == [str(i) for i in range(30)]


async def test_viewer_gets_at_most_about_ten_frames_a_second(shop: Shop, redis_url: str) -> None:
    """Under 200 events/s for one second a viewer receives about ten frames, with every event (staff chat)."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        for burst in range(20):
            await publish_direct(
                redis_url,
                shop.room_id,
                [chat("u", f"{burst}-{i}", role="host") for i in range(10)],  # staff chat: never sampled
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


# --- the adaptive tick and sampled chat ------------------------------------------------------------------------


def test_tick_widens_while_flushes_do_not_fit_and_narrows_once_they_fit_again() -> None:
    """Flushes that take the whole tick (fan-out plus lag) widen it 1.5x at a time up to the widest, once their
    running average passes 75% (one late flush alone does not); flushes that take almost nothing narrow it 1.5x at a
    time, NARROW_AFTER flushes apart, down to the narrowest; a steady load between 35% and 75% keeps it."""
    late = Tick(0.1, 0.3)
    late.observe(busy=0.02, lag=0.08)  # one flush that took the whole tick
    late.observe(busy=0.01, lag=0.0)
    assert late.width == pytest.approx(0.1)
    tick = Tick(0.1, 0.3)
    flushes = 0
    while tick.width == pytest.approx(0.1):
        tick.observe(busy=0.06, lag=0.06)  # more than the tick
        flushes += 1
    assert flushes == 7 and tick.width == pytest.approx(0.15)
    for _ in range(20):
        tick.observe(busy=0.5, lag=0.0)
    assert tick.width == pytest.approx(0.3)  # the widest
    for _ in range(100):
        tick.observe(busy=0.15, lag=0.0)  # half the tick: kept
    assert tick.width == pytest.approx(0.3)
    widths = [0.3]
    for _ in range(3 * NARROW_AFTER):
        tick.observe(busy=0.0, lag=0.0)
        widths.append(round(tick.width, 3))
    narrowed = [i for i in range(1, len(widths)) if widths[i] < widths[i - 1]]
    assert [widths[i] for i in narrowed] == [0.2, 0.133, 0.1]
    assert narrowed[1] - narrowed[0] == narrowed[2] - narrowed[1] == NARROW_AFTER
    assert widths[-1] == 0.1  # the narrowest


def test_chat_sample_spends_a_budget_per_second_carried_over_between_flushes() -> None:
    """Of 50 messages a flush, a 20/s sample shows the second saved up (20, evenly spread), then 2.5 per 125 ms: the
    half a message left over carries to the next flush; 0 shows everything."""
    sample = ChatSample(20, now=0.0)
    first = sample.shown(50, now=0.0)
    assert len(first) == 20 and first[0] == 1 and first[-1] == 48
    assert all(later - earlier in (2, 3) for earlier, later in itertools.pairwise(first))
    assert sample.shown(50, now=0.125) == [12, 37]  # 2.5 messages' worth: 2 shown, half a message saved
    assert sample.shown(50, now=0.125) == []
    assert sample.shown(50, now=0.25) == [8, 25, 41]  # 2.5 more and the half saved: 3
    assert sample.shown(3, now=10.0) == [0, 1, 2]  # slower than the budget: everything
    assert ChatSample(0, now=0.0).shown(500, now=0.0) == list(range(500))


@pytest.fixture(scope="module")
def sampling(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose rooms show viewers one viewer chat message a second (CHAT_SHOWN_PER_SECOND=1)."""
    started = start_server(tmp_path_factory.mktemp("sampling"), {**stores, "CHAT_SHOWN_PER_SECOND": "1"})
    yield started
    started.stop()


def chain(start: int, events: list[dict[str, Any]]) -> list[int]:
    """The durable offsets a client applies after its snapshot's `start`, each checked against the one before it:
    the next offset, or `after` (chat left out between) the one before."""
    applied = [start]
    for item in events:
        if "offset" in item:
            assert item.get("after", item["offset"] - 1) == applied[-1], (item, applied[-1])
            applied.append(item["offset"])
    return applied[1:]


async def test_busy_chat_reaches_viewers_sampled_and_staff_whole(sampling: ServerProcess, redis_url: str) -> None:
    """With chat faster than CHAT_SHOWN_PER_SECOND, a viewer is shown that many viewer messages a second and every
    host message and other event; a moderator gets everything, in order; a chatter whose message was left out gets
    it all the same (without an offset); every offset a viewer skips is announced by `after`."""
    shop = make_shop(sampling.base_url, sampling.ws_url, redis_url)
    chatter = Person("Chatter")
    crowd = [chat("u_crowd", f"crowd {i}") for i in range(60)]
    for i in range(0, 60, 10):
        crowd[i + 5] = chat("u_host", f"host {i}", role="host")
    crowd[30] = event("bag.changed", products=[])
    crowd.append(chat(chatter.user_id, "mine"))
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
        await RoomClient.connect(shop.room_url(shop.moderator)) as moderator,
        await RoomClient.connect(shop.room_url(chatter.token)) as author,
    ):
        assert viewer.first is not None and moderator.first is not None and author.first is not None
        start = viewer.first["offset"]
        began = time.monotonic()
        await publish_direct(redis_url, shop.room_id, crowd)
        published = time.monotonic() - began
        await publish_direct(redis_url, shop.room_id, [event("stock", sale_id="s1", available=3)], durable=False)
        await publish_direct(redis_url, shop.room_id, [event("room.status", status="live")])
        last = start + len(crowd) + 1
        for client in (viewer, moderator, author):
            await client.wait(lambda c=client: any(e.get("offset") == last for e in c.events))
            await client.wait_event("stock", sale_id="s1")

        durable = [e for e in moderator.events if "offset" in e]
        assert [e["offset"] for e in durable] == list(range(start + 1, last + 1))
        assert not any("after" in e for e in durable)
        texts = [e["message"]["text"] for e in viewer.events if e["type"] == "chat.message"]
        assert [text for text in texts if text.startswith("host")] == [f"host {i}" for i in range(0, 60, 10)]
        assert len([text for text in texts if text.startswith("crowd")]) <= 1 + published + 1
        assert len(texts) < len(crowd) / 2 and "mine" not in texts
        assert [e["type"] for e in viewer.events if e["type"] in ("bag.changed", "room.status")] == [
            "bag.changed",
            "room.status",
        ]
        assert chain(start, viewer.events)[-1] == last
        mine = [e for e in author.events if e["type"] == "chat.message" and e["message"]["text"] == "mine"]
        assert len(mine) == 1 and "offset" not in mine[0]
        assert chain(start, author.events)[-1] == last


async def test_shown_chat_keeps_to_its_budget_per_second(sampling: ServerProcess, redis_url: str) -> None:
    """Chat kept up for seconds (a message each few ms) reaches a viewer at CHAT_SHOWN_PER_SECOND (1/s here, and
    one second saved up at the start), while a moderator gets all of it."""
    shop = make_shop(sampling.base_url, sampling.ws_url, redis_url)
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
        await RoomClient.connect(shop.room_url(shop.moderator)) as moderator,
    ):

        def shown() -> list[dict[str, Any]]:
            return [e for e in viewer.events if e["type"] == "chat.message"]

        sent = 0
        began = time.monotonic()
        while len(shown()) < 3:  # each round waits for the moderator to have it: the server's pace, no sleep
            await publish_direct(redis_url, shop.room_id, [chat("u", f"m{sent + i}") for i in range(5)])
            sent += 5
            await moderator.wait(lambda n=sent: sum(1 for e in moderator.events if e["type"] == "chat.message") == n)
        seconds = time.monotonic() - began
        assert sent > 3 * len(shown())
        assert len(shown()) <= 1 + seconds + 1
        frames = [
            f for f in viewer.frames if f["type"] == "batch" and any(e["type"] == "chat.message" for e in f["events"])
        ]
        assert (frames[-1]["ts"] - frames[0]["ts"]) / 1000 >= len(shown()) - 1 - 0.2  # one more per second, ~a tick


async def test_metrics_show_the_tick_lag_and_the_widest_tick(sampling: ServerProcess, redis_url: str) -> None:
    """/metrics counts each flush's lag in livecart_tick_lag_seconds and gives the widest tick of the rooms here
    (TICK_MS, 100 ms, for a room that keeps up)."""
    shop = make_shop(sampling.base_url, sampling.ws_url, redis_url)
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        await publish_direct(redis_url, shop.room_id, [event("room.status", status="live")])
        await viewer.wait_event("room.status")

        def scraped() -> dict[str, float]:
            text = httpx.get(f"{sampling.base_url}/metrics", headers=sampling.metrics_headers).text
            pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
            return {name: float(value) for name, value in pairs}

        await until(lambda: scraped().get("livecart_tick_widest_seconds", 0) > 0, what="the widest tick")
        figures = scraped()
        assert figures["livecart_tick_widest_seconds"] == pytest.approx(0.1)
        assert figures["livecart_tick_lag_seconds_count"] >= 1
        assert 'livecart_tick_lag_seconds_bucket{le="0.001"}' in figures
