"""Flash sales as a host and the room see them: create, countdown, open, live stock, toasts, sold out, end."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop, make_shop
from tests.sale_helpers import (
    GOOD_CARD,
    assert_error,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    post_sale,
    viewer_token,
)
from tests.timing import seconds

pytestmark = pytest.mark.anyio


async def _buy_async(client: httpx.AsyncClient, sale_id: str, token: str, quantity: int = 1) -> httpx.Response:
    return await client.post(
        f"/api/sales/{sale_id}/purchases",
        json={"quantity": quantity},
        headers={**auth(token), "Idempotency-Key": token[-12:]},
    )


async def test_room_sees_the_countdown_then_the_sale_open(shop: Shop) -> None:
    """A sale starting in a moment is announced as scheduled, then as live when its start time comes."""
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as viewer:
        starts_at = int(time.time() * 1000) + int(seconds(1.5) * 1000)
        sale = create_sale(shop, starts_at=starts_at, quantity=5)
        assert sale["status"] == "scheduled"
        created = await viewer.wait_event("sale.created")
        assert created["sale"]["id"] == sale["id"]
        assert created["sale"]["status"] == "scheduled"
        assert created["sale"]["starts_at"] == starts_at
        assert created["sale"]["price"] == 500 and created["sale"]["product"]["id"] == shop.products[0]
        started = await viewer.wait_event("sale.started", timeout=5)
        assert started["sale"]["status"] == "live"
        assert started["ts"] >= starts_at
        assert started["offset"] == created["offset"] + 1


async def test_countdown_start_opens_the_sale_that_many_seconds_later(shop: Shop) -> None:
    """'countdown_seconds' (10-300) sets the start from the server's clock: the sale is scheduled until then."""
    before = int(time.time() * 1000)
    sale = create_sale(shop, starts_at=None, countdown_seconds=10)
    assert before + 10_000 - 50 <= sale["starts_at"] <= int(time.time() * 1000) + 10_000 + 50
    assert sale["status"] == "scheduled"
    assert sale["ends_at"] == sale["starts_at"] + 600_000
    refused = buy(shop.base_url, shop.buyer(), sale["id"])
    assert "opens in 10 seconds" in assert_error(refused, 409, "not_started")


async def test_stock_reaches_viewers_coalesced_with_a_server_timestamp(shop: Shop) -> None:
    """60 purchases in a burst reach viewers as a few stock events, at least 100 ms apart, ending at the true stock."""
    sale = create_sale(shop, quantity=100, per_user_limit=1)
    async with (
        await RoomClient.connect(shop.room_url(shop.buyer())) as viewer,
        httpx.AsyncClient(base_url=shop.base_url, timeout=seconds(10)) as client,
    ):
        started = time.monotonic()
        replies = await asyncio.gather(*(_buy_async(client, sale["id"], viewer_token()) for _ in range(60)))
        assert all(reply.status_code == 201 for reply in replies)
        last = await viewer.wait_event("stock", sale_id=sale["id"], available=40)
        elapsed = time.monotonic() - started
        stock = [item for item in viewer.events if item["type"] == "stock"]
        assert len(stock) <= elapsed * 10 + 2
        stamps = [item["ts"] for item in stock]
        assert all(later - earlier >= 100 for earlier, later in itertools.pairwise(stamps))
        assert [item["version"] for item in stock] == sorted(item["version"] for item in stock)
        assert last["held"] == 60 and last["sold"] == 0 and last["quantity"] == 100
        assert abs(last["ts"] - time.time() * 1000) < seconds(5) * 1000


async def test_paid_orders_make_sampled_toasts(shop: Shop) -> None:
    """Five payments in a row reach the room as one or two 'someone just bought' toasts counting them all."""
    sale = create_sale(shop, quantity=10, per_user_limit=1)
    async with (
        await RoomClient.connect(shop.room_url(shop.buyer())) as viewer,
        httpx.AsyncClient(base_url=shop.base_url, timeout=seconds(10)) as client,
    ):
        for _ in range(5):
            token = viewer_token()
            order = (await _buy_async(client, sale["id"], token)).json()
            paid = await client.post(
                f"/api/orders/{order['order_id']}/payment",
                json={"card_number": GOOD_CARD},
                headers={**auth(token), "Idempotency-Key": f"pay-{order['order_id']}"},
            )
            assert paid.status_code == 200

        def sampled() -> list[dict[str, Any]]:
            return [item for item in viewer.events if item["type"] == "sale.toast"]

        # Until the toasts count all five orders: the last toast may come a sampling interval after the first.
        await viewer.wait(lambda: sum(item["orders"] for item in sampled()) >= 5, timeout=10)
        toasts = sampled()
        assert 1 <= len(toasts) <= 2
        assert sum(item["orders"] for item in toasts) == 5
        assert sum(item["quantity"] for item in toasts) == 5
        assert all("user_id" not in item and "name" not in item for item in toasts)


async def test_selling_every_unit_announces_sold_out(shop: Shop) -> None:
    """When the last held unit is paid the room hears sale.sold_out; the sale reads sold_out."""
    sale = create_sale(shop, quantity=2, per_user_limit=2)
    token = viewer_token()
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as viewer:
        order = buy(shop.base_url, token, sale["id"], quantity=2).json()
        assert (await viewer.wait_event("stock", sale_id=sale["id"], available=0))["held"] == 2
        assert pay(shop.base_url, token, order["order_id"]).is_success
        sold_out = await viewer.wait_event("sale.sold_out", timeout=5)
        assert sold_out["sale"]["status"] == "sold_out" and sold_out["sale"]["sold"] == 2
    assert httpx.get(f"{shop.base_url}/api/sales/{sale['id']}").json()["status"] == "sold_out"


async def test_host_ends_a_sale_early_and_held_orders_stay_payable(shop: Shop) -> None:
    """After the host ends the sale the room hears sale.ended and buying is refused; a hold taken before still pays."""
    sale = create_sale(shop, quantity=5)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as viewer:
        ended = httpx.post(
            f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/end", headers=auth(shop.host)
        )
        assert ended.status_code == 200 and ended.json()["status"] == "ended"
        event = await viewer.wait_event("sale.ended")
        assert event["sale"]["status"] == "ended"
        assert_error(buy(shop.base_url, viewer_token(), sale["id"]), 409, "ended")
        again = httpx.post(
            f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/end", headers=auth(shop.host)
        )
        assert again.json()["ends_at"] == ended.json()["ends_at"]
    paid = pay(shop.base_url, token, order["order_id"])
    assert paid.status_code == 200 and paid.json()["status"] == "paid"


async def test_sale_ends_by_itself_at_its_end_time(shop: Shop) -> None:
    """A one-second sale is announced ended by the sale clock without anyone touching it."""
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as viewer:
        sale = create_sale(shop, duration_seconds=1)
        await viewer.wait_event("sale.started")
        ended = await viewer.wait_event("sale.ended", timeout=5)
        assert ended["sale"]["id"] == sale["id"]
        assert ended["ts"] >= sale["ends_at"]


async def test_joining_viewers_see_current_sales_and_stock(shop: Shop, server_factory: Any) -> None:
    """A viewer joining on a process that already has the room, and one on a fresh process, both see live stock."""
    sale = create_sale(shop, quantity=10, per_user_limit=3)
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as early:
        buy(shop.base_url, viewer_token(), sale["id"], quantity=3)
        await early.wait_event("stock", sale_id=sale["id"], available=7)
        async with await RoomClient.connect(shop.room_url(shop.buyer())) as late:
            assert late.first is not None
            [seen] = [item for item in late.first["sales"] if item["id"] == sale["id"]]
            assert (seen["status"], seen["available"], seen["held"], seen["sold"]) == ("live", 7, 3, 0)
    fresh: ServerProcess = server_factory()
    buy(shop.base_url, viewer_token(), sale["id"], quantity=2)  # no flush needed: a fresh process reads the stock
    async with await RoomClient.connect(f"{fresh.ws_url}/ws/rooms/{shop.room_id}?token={shop.buyer()}") as other:
        assert other.first is not None
        [seen] = [item for item in other.first["sales"] if item["id"] == sale["id"]]
        assert (seen["status"], seen["available"], seen["held"]) == ("live", 5, 5)
        assert seen["price"] == 500 and seen["per_user_limit"] == 3 and seen["starts_at"] == sale["starts_at"]


def test_anyone_reads_a_sale_with_its_live_stock(shop: Shop) -> None:
    """GET /api/sales/{id} needs no token and shows terms, status and stock; an unknown sale is unknown_sale."""
    sale = create_sale(shop, quantity=4)
    buy(shop.base_url, viewer_token(), sale["id"], quantity=2)
    read = httpx.get(f"{shop.base_url}/api/sales/{sale['id']}").json()
    assert (read["status"], read["available"], read["held"], read["sold"], read["quantity"]) == ("live", 2, 2, 0, 4)
    assert isinstance(read["server_time"], int)
    assert_error(httpx.get(f"{shop.base_url}/api/sales/s_0000000000"), 404, "unknown_sale")
    assert_error(httpx.get(f"{shop.base_url}/api/sales/not-a-sale"), 404, "unknown_sale")


def test_merchant_lists_its_sales_and_reads_the_invariant(shop: Shop) -> None:
    """Staff list their sales newest first; the invariant endpoint reports quantity = available + held + paid."""
    first = create_sale(shop, quantity=3)
    second = create_sale(shop, quantity=7)
    buy(shop.base_url, viewer_token(), second["id"], quantity=2)
    listed = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales", headers=auth(shop.moderator))
    assert [item["id"] for item in listed.json()] == [second["id"], first["id"]]
    body = invariant(shop, second["id"])
    assert (body["quantity"], body["available"], body["held"], body["paid"]) == (7, 5, 2, 0)


BAD_TERMS: list[tuple[dict[str, Any], str]] = [
    ({"price": -1}, "'price'"),
    ({"price": "5"}, "'price'"),
    ({"quantity": 0}, "'quantity'"),
    ({"quantity": 10**7}, "'quantity'"),
    ({"per_user_limit": 0}, "'per_user_limit'"),
    ({"quantity": 3, "per_user_limit": 4}, "'per_user_limit'"),
    ({"duration_seconds": 0}, "'duration_seconds'"),
    ({"duration_seconds": 86_401}, "'duration_seconds'"),
    ({"hold_seconds": 0}, "'hold_seconds'"),
    ({"starts_at": None, "countdown_seconds": 5}, "'countdown_seconds'"),
    ({"starts_at": None, "countdown_seconds": 301}, "'countdown_seconds'"),
    ({"countdown_seconds": 30}, "either"),
    ({"starts_at": None}, "either"),
    ({"starts_at": 1000}, "'starts_at'"),
    ({"product_id": "no-such-product"}, "'product_id'"),
]


@pytest.mark.parametrize(("terms", "message"), BAD_TERMS)
def test_bad_sale_terms_are_refused_saying_why(shop: Shop, terms: dict[str, Any], message: str) -> None:
    """Each bad term of a new sale is a 400 bad_request naming the field; no sale is created."""
    response = post_sale(shop, **{"per_user_limit": None, "duration_seconds": 60, **terms})
    assert message in assert_error(response, 400, "bad_request")
    assert httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales", headers=auth(shop.host)).json() == []


def test_only_the_merchants_hosts_and_admins_run_sales(shop: Shop, server: ServerProcess, redis_url: str) -> None:
    """Viewers, moderators and another merchant's host may not create or end sales, nor read the invariant."""
    other = make_shop(server.base_url, server.ws_url, redis_url)
    url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/sales"
    body = {"product_id": shop.products[0], "price": 1, "quantity": 1, "countdown_seconds": 10, "duration_seconds": 9}
    for token in (shop.buyer(), shop.moderator, other.host, other.admin):
        assert_error(httpx.post(url, json=body, headers=auth(token)), 403, "forbidden")
    assert_error(httpx.post(url, json=body), 401, "invalid_token")
    sale = create_sale(shop)
    end_url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/end"
    for token in (shop.buyer(), shop.moderator, other.host):
        assert httpx.post(end_url, headers=auth(token)).status_code == 403
    # another merchant cannot reach this sale through its own merchant path either
    foreign = f"{shop.base_url}/api/merchants/{other.merchant_id}/sales/{sale['id']}"
    assert_error(httpx.post(f"{foreign}/end", headers=auth(other.host)), 404, "unknown_sale")
    assert_error(httpx.get(f"{foreign}/invariant", headers=auth(other.admin)), 404, "unknown_sale")
    assert httpx.get(f"{shop.base_url}/api/sales/{sale['id']}").json()["status"] == "live"


def test_a_sale_needs_a_room_of_the_merchant(shop: Shop, server: ServerProcess, redis_url: str) -> None:
    """Creating a sale in another merchant's room, or in no room, is 404 not_found."""
    other = make_shop(server.base_url, server.ws_url, redis_url)
    body = {"product_id": shop.products[0], "price": 1, "quantity": 1, "countdown_seconds": 10, "duration_seconds": 9}
    for room_id in (other.room_id, "no-such-room"):
        url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{room_id}/sales"
        assert_error(httpx.post(url, json=body, headers=auth(shop.host)), 404, "not_found")
