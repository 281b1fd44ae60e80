"""Shows: each go-live to end of a room is a show in PostgreSQL, with its own peak viewers and numbers."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.ledger.client import Database
from server.rooms.presence import Presence
from server.rooms.record import Room, RoomRecords
from server.rooms.shows import Numbers, Shows
from tests.client import RoomClient
from tests.conftest import Shop
from tests.sale_helpers import GOOD_CARD, auth, viewer_token
from tests.timing import seconds

pytestmark = pytest.mark.anyio


async def _stats(client: httpx.AsyncClient, shop: Shop, **params: Any) -> dict[str, Any]:
    response = await client.get(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/stats",
        params=params,
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _set_status(host: RoomClient, status: str) -> None:
    reply = await host.request("room.status", status=status)
    assert reply["type"] == "ack", reply


async def _sale(client: httpx.AsyncClient, shop: Shop, price: int, currency: str = "USD") -> str:
    """A sale of the shop's first product, open now, at this price (the product's currency)."""
    response = await client.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/sales",
        json={
            "product_id": shop.products[0],
            "price": price,
            "quantity": 10,
            "per_user_limit": 3,
            "starts_at": int(time.time() * 1000),
            "duration_seconds": 600,
        },
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _buy(client: httpx.AsyncClient, base_url: str, sale_id: str, buyer: str, quantity: int, paid: bool) -> None:
    """`buyer` takes `quantity` units of the sale, and pays for them when `paid`."""
    bought = await client.post(
        f"{base_url}/api/sales/{sale_id}/purchases",
        json={"quantity": quantity},
        headers={**auth(buyer), "Idempotency-Key": secrets.token_hex(8)},
        timeout=seconds(10),
    )
    assert bought.status_code == 201, bought.text
    if paid:
        payment = await client.post(
            f"{base_url}/api/orders/{bought.json()['order_id']}/payment",
            json={"card_number": GOOD_CARD},
            headers={**auth(buyer), "Idempotency-Key": secrets.token_hex(8)},
            timeout=seconds(10),
        )
        assert payment.status_code == 200, payment.text


async def _settled(client: httpx.AsyncClient, shop: Shop, check: Any, what: str) -> dict[str, Any]:
    """The stats once `check(stats)` holds (orders reach PostgreSQL within about a second), read every 50 ms."""
    deadline = time.monotonic() + seconds(10)
    while True:
        stats = await _stats(client, shop)
        if check(stats):
            return stats
        assert time.monotonic() < deadline, f"timed out after {seconds(10):g} s waiting for {what}: {stats}"
        await asyncio.sleep(0.05)


async def test_going_live_opens_a_show_and_ending_closes_it(shop: Shop) -> None:
    """Live opens a show (live twice keeps it), ended closes it, the next go-live is a new show; newest first."""
    async with httpx.AsyncClient() as client, await RoomClient.connect(shop.room_url(shop.host)) as host:
        before = await _stats(client, shop)
        assert before["show"] is None and before["shows"] == []

        await _set_status(host, "live")
        first = (await _stats(client, shop))["show"]
        assert first is not None and first["ended_at"] is None
        assert first["title"] == "Test show" and first["room_id"] == shop.room_id
        await _set_status(host, "live")
        assert (await _stats(client, shop))["show"]["show_id"] == first["show_id"]

        await _set_status(host, "ended")
        after = await _stats(client, shop)
        assert after["show"] is None
        assert [show["show_id"] for show in after["shows"]] == [first["show_id"]]
        ended = after["shows"][0]
        assert ended["ended_at"] >= ended["started_at"] == first["started_at"]
        assert after["orders"] == after["units"] == after["peak_viewers"] == 0

        await _set_status(host, "live")
        second = (await _stats(client, shop))["show"]
        assert second["show_id"] != first["show_id"]
        await _set_status(host, "scheduled")  # leaving live in any way ends the show
        listed = await _stats(client, shop)
        assert listed["show"] is None
        assert [show["show_id"] for show in listed["shows"]] == [second["show_id"], first["show_id"]]
        assert [show["show_id"] for show in (await _stats(client, shop, past=1))["shows"]] == [second["show_id"]]


async def test_a_shows_peak_counts_from_its_go_live(shop: Shop) -> None:
    """Viewers before the go-live do not count to the show's peak, nor does the host (staff are not viewers); the
    ended show keeps its peak."""
    async with httpx.AsyncClient() as client, await RoomClient.connect(shop.room_url(shop.host)) as host:
        one = await RoomClient.connect(shop.room_url(shop.guest()))
        two = await RoomClient.connect(shop.room_url(shop.guest()))
        async with one, two:
            await host.wait_event("viewers", count=2)
            assert (await _stats(client, shop))["viewers"] == 2  # the room's peak is now 2
        await _settled(client, shop, lambda stats: stats["viewers"] == 0, "the guests to leave")

        await _set_status(host, "live")
        live = await _stats(client, shop)
        assert live["show"]["peak_viewers"] == live["peak_viewers"] == 0
        async with await RoomClient.connect(shop.room_url(shop.guest())):
            await _settled(client, shop, lambda stats: stats["peak_viewers"] == 1, "a viewer in the show")
        await _set_status(host, "ended")
        assert (await _stats(client, shop))["shows"][0]["peak_viewers"] == 1


async def test_a_shows_numbers_count_only_its_own_paid_orders(shop: Shop) -> None:
    """Orders, units, GMV, buyers and conversion of a show count the paid orders of its sales, no other show's."""
    async with (
        httpx.AsyncClient() as client,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
        await RoomClient.connect(shop.room_url(shop.guest())),
    ):
        base = shop.base_url
        await _settled(client, shop, lambda stats: stats["viewers"] == 1, "the viewer's socket to count")
        before = await _sale(client, shop, 100)  # made while the room is not live: in no show
        await _buy(client, base, before, viewer_token(), 1, paid=True)

        await _set_status(host, "live")
        first_sale = await _sale(client, shop, 500)
        alice, bob = viewer_token(), viewer_token()
        await _buy(client, base, first_sale, alice, 2, paid=True)
        await _buy(client, base, first_sale, alice, 1, paid=True)
        await _buy(client, base, first_sale, bob, 1, paid=False)  # held, never paid: not counted
        first = await _settled(client, shop, lambda stats: stats["orders"] == 2, "the first show's orders")
        assert (first["orders"], first["units"], first["gmv"], first["buyers"], first["sales"]) == (
            2,
            3,
            {"USD": 1500},
            1,
            1,
        )
        assert first["peak_viewers"] == 1  # the viewer's socket (the host is not a viewer)
        assert first["conversion"] == 1.0
        assert first["show"]["orders"] == 2
        await _set_status(host, "ended")

        await _set_status(host, "live")
        second_sale = await _sale(client, shop, 700)
        await _buy(client, base, second_sale, bob, 1, paid=True)
        second = await _settled(client, shop, lambda stats: stats["orders"] == 1, "the second show's orders")
        assert (second["units"], second["gmv"], second["buyers"]) == (1, {"USD": 700}, 1)
        await _set_status(host, "ended")

        shows = (await _stats(client, shop))["shows"]
        assert [(show["orders"], show["units"], show["gmv"]) for show in shows] == [
            (1, 1, {"USD": 700}),
            (2, 3, {"USD": 1500}),
        ]
        assert shows[1]["show_id"] == first["show"]["show_id"]


async def test_numbers_sum_paid_orders_per_currency_over_a_shows_sales(database_url: str, redis_url: str) -> None:
    """GMV is per currency (quantity x unit price); unpaid orders and other shows' sales are left out."""
    db = Database(database_url, pool_size=2)
    await db.open()
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        shows = Shows(db, Presence(redis, 1000), RoomRecords(redis))
        room = Room(f"r_{secrets.token_hex(4)}", "m", "Numbers", "live", "offline")
        other = (await shows.start(room)).id
        await shows.end(room.id)
        show = await shows.start(room)
        now = datetime.now(UTC)
        sales = [(show.id, "USD", 500), (show.id, "EUR", 900), (show.id, "USD", 200), (other, "USD", 100)]
        for index, (show_id, currency, price) in enumerate(sales):
            await db.pool.execute(
                "INSERT INTO sales (sale_id, merchant_id, room_id, show_id, product, price, currency, quantity,"
                " per_user_limit, hold_ms, starts_at, ends_at, created_at)"
                " VALUES ($1, 'm', $2, $3, '{}', $4, $5, 10, 5, 60000, $6, $6, $6)",
                f"{show_id}-s{index}",
                room.id,
                show_id,
                price,
                currency,
                now,
            )
        orders = [  # sale index, buyer, quantity, status
            (0, "alice", 2, "paid"),
            (0, "bob", 1, "paid"),
            (1, "alice", 1, "paid"),
            (0, "carol", 3, "held"),
            (1, "dave", 1, "expired"),
            (0, "erin", 1, "cancelled"),
            (3, "frank", 4, "paid"),
        ]
        for index, (sale, buyer, quantity, status) in enumerate(orders):
            show_id, currency, price = sales[sale]
            await db.pool.execute(
                "INSERT INTO orders (order_id, sale_id, merchant_id, user_id, quantity, unit_price, currency,"
                " status, version, idempotency_key, created_at, hold_expires_at)"
                " VALUES ($1, $2, 'm', $3, $4, $5, $6, $7, 1, $1, $8, $8)",
                f"{show.id}-o{index}",
                f"{show_id}-s{sale}",
                buyer,
                quantity,
                price,
                currency,
                status,
                now,
            )

        numbers = await shows.numbers([show.id, other, "sh_none"])
        assert numbers[show.id] == Numbers(sales=3, orders=3, units=4, gmv={"USD": 1500, "EUR": 900}, buyers=2)
        assert numbers[other] == Numbers(sales=1, orders=1, units=4, gmv={"USD": 400}, buyers=1)
        assert numbers["sh_none"] == Numbers()
        assert numbers[show.id].public(peak_viewers=4)["conversion"] == 0.5
        assert numbers[show.id].public(peak_viewers=0)["conversion"] == 0
        assert numbers[show.id].public(peak_viewers=1)["conversion"] == 1  # the peak is sampled: never above 1
        await shows.end(room.id)
    finally:
        await redis.aclose()
        await db.close()


async def test_go_lives_at_once_open_one_show(database_url: str, redis_url: str) -> None:
    """Many processes or hosts going live together get one and the same open show (the unique partial index)."""
    db = Database(database_url, pool_size=8)
    await db.open()
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        shows = Shows(db, Presence(redis, 1000), RoomRecords(redis))
        room = Room(f"r_{secrets.token_hex(4)}", "m", "Together", "live", "offline")
        opened = await asyncio.gather(*(shows.start(room) for _ in range(20)))
        assert len({show.id for show in opened}) == 1
        current = await shows.current(room.id)
        assert current is not None and current.id == opened[0].id
        ended = await shows.end(room.id)
        assert ended is not None and ended.id == current.id and ended.ended_at is not None
        assert await shows.end(room.id) is None  # ending again changes nothing
        assert [show.id for show in await shows.of_room(room.id, 10)] == [current.id]
    finally:
        await redis.aclose()
        await db.close()


async def test_each_show_starts_afresh_its_likes_its_chat_and_its_orders(shop: Shop) -> None:
    """A show's likes count from its go-live and are kept when it ends; the next show after an ended one starts with
    an empty chat (the status event says `chat_cleared`, so a joining viewer's snapshot has none) and no likes or
    orders; the studio's orders list holds the show's orders (flash and shelf), newest first, with buyer and status."""
    orders_url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/orders"
    async with (
        httpx.AsyncClient() as client,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
        await RoomClient.connect(shop.room_url(viewer_token())) as fan,
    ):
        await fan.send_raw('{"type":"like","count":5}')  # before the show: not the show's
        await host.wait_event("likes", total=5)
        assert (await client.get(orders_url, headers=auth(shop.host))).json()["orders"] == []
        await _set_status(host, "live")
        assert (await _stats(client, shop))["likes"] == 0
        await fan.send_raw('{"type":"like","count":3}')
        await _settled(client, shop, lambda stats: stats["likes"] == 3, "the show's likes")
        assert (await fan.request("chat.send", text="first show!"))["type"] == "ack"

        sale = await _sale(client, shop, 500)
        alice = viewer_token()
        await _buy(client, shop.base_url, sale, alice, 2, paid=True)
        shelf = await client.post(
            f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{shop.products[1]}/shelf",
            json={"units": 5},
            headers=auth(shop.host),
        )
        await _buy(client, shop.base_url, shelf.json()["shelf"]["sale_id"], alice, 1, paid=False)
        deadline = time.monotonic() + seconds(10)
        while len(listed := (await client.get(orders_url, headers=auth(shop.host))).json()["orders"]) < 2:
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.05)
        assert [(order["kind"], order["status"], order["amount"]) for order in listed] == [
            ("shelf", "held", 1001),
            ("flash", "paid", 1000),
        ]
        assert listed[0]["buyer"]["id"] == listed[1]["buyer"]["id"] and listed[0]["product"]["id"] == shop.products[1]
        assert (await client.get(orders_url, headers=auth(viewer_token()))).status_code == 403

        await _set_status(host, "ended")
        assert (await _stats(client, shop))["shows"][0]["likes"] == 3
        await _set_status(host, "live")
        changed = await fan.wait_event("room.status", status="live", chat_cleared=True)
        assert changed["chat_cleared"] is True
        fresh = await _stats(client, shop)
        assert fresh["likes"] == 0 and fresh["orders"] == 0 and fresh["show"]["likes"] == 0
        assert (await client.get(orders_url, headers=auth(shop.host))).json()["orders"] == []
        async with await RoomClient.connect(shop.room_url(viewer_token())) as late:
            assert late.first is not None and late.first["chat"] == []
