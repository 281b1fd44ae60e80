"""Paying for holds through the sandbox provider: declines, final payments, expiry, and late payments refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from redis.asyncio import Redis

from server import keys
from server.sales.payments import SLOW_CARD, SandboxProvider
from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop
from tests.sale_helpers import (
    DECLINED_CARD,
    assert_error,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    viewer_token,
    wait_for_server_time,
    wait_until,
)
from tests.timing import seconds


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def ledger(store: redis.Redis, order_id: str) -> list[dict[str, Any]]:
    """The sandbox's authorizations for one order."""
    records = [orjson.loads(raw) for raw in store.hvals(keys.sandbox_payments())]
    return [record for record in records if record["reference"] == order_id]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("card", "approved", "decline"),
    [
        ("4242424242424242", True, None),
        ("4242 4242 4242 4242", True, None),
        ("5555-5555-5555-4444", True, None),
        ("4000000000000002", False, "card_declined"),
        ("4000000000009995", False, "insufficient_funds"),
        ("4000000000000069", False, "expired_card"),
        ("4111111111111111", False, "card_declined"),  # a real-looking card is not a test card
        ("4242424242424241", False, "incorrect_number"),
        ("1234", False, "incorrect_number"),
        ("", False, "incorrect_number"),
    ],
)
async def test_sandbox_cards_are_deterministic(redis_url: str, card: str, approved: bool, decline: str | None) -> None:
    """Each test card always gives the same answer; authorizing twice returns the same authorization."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        provider = SandboxProvider(client)
        first = await provider.authorize(reference="ref-" + card, amount=100, currency="USD", card_number=card)
        again = await provider.authorize(reference="ref-" + card, amount=100, currency="USD", card_number=card)
        assert (first.approved, first.decline_code) == (approved, decline)
        assert again == first
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_sandbox_capture_and_void_are_final_and_idempotent(redis_url: str) -> None:
    """A captured authorization cannot be voided and the other way round; repeating either is fine."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        provider = SandboxProvider(client)
        one = await provider.authorize(reference="cap", amount=1, currency="USD", card_number="4242424242424242")
        two = await provider.authorize(reference="void", amount=1, currency="USD", card_number="4242424242424242")
        await provider.capture(one.id)
        await provider.capture(one.id)
        await provider.void(two.id)
        await provider.void(two.id)
        with pytest.raises(ValueError):
            await provider.void(one.id)
        with pytest.raises(ValueError):
            await provider.capture(two.id)
        states = {record["id"]: record["state"] for record in await provider.ledger()}
        assert (states[one.id], states[two.id]) == ("captured", "voided")
        assert all("card" not in record for record in await provider.ledger())
    finally:
        await client.aclose()


def test_a_declined_card_keeps_the_hold_and_another_card_pays(shop: Shop, store: redis.Redis) -> None:
    """A decline is 402 payment_declined with nothing moved; a good card then pays, captured at the provider."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    message = assert_error(pay(shop.base_url, token, order["order_id"], DECLINED_CARD), 402, "payment_declined")
    assert "declined" in message
    assert "insufficient funds" in assert_error(
        pay(shop.base_url, token, order["order_id"], "4000000000009995"), 402, "payment_declined"
    )
    assert httpx.get(f"{shop.base_url}/api/orders/{order['order_id']}", headers=auth(token)).json()["status"] == "held"
    assert invariant(shop, sale["id"])["held"] == 1
    paid = pay(shop.base_url, token, order["order_id"])
    assert paid.status_code == 200
    assert paid.json()["status"] == "paid" and paid.json()["paid_at"] >= order["created_at"]
    body = invariant(shop, sale["id"])
    assert (body["held"], body["paid"]) == (0, 1)
    states = sorted(record["state"] for record in ledger(store, order["order_id"]))
    assert states == ["captured", "declined", "declined"]


def test_a_paid_order_is_final(shop: Shop, store: redis.Redis) -> None:
    """Paying again is already_paid (nothing charged again); cancelling is already_paid; it never expires."""
    sale = create_sale(shop, hold_seconds=1)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    assert pay(shop.base_url, token, order["order_id"]).status_code == 200
    assert_error(pay(shop.base_url, token, order["order_id"]), 409, "already_paid")
    assert_error(pay(shop.base_url, token, order["order_id"], "5555555555554444"), 409, "already_paid")
    cancel = httpx.post(f"{shop.base_url}/api/orders/{order['order_id']}/cancel", headers=auth(token))
    assert_error(cancel, 409, "already_paid")
    # Past the hold: a held order taken after this one has expired (the sale clock has been by), this one has not.
    witness = viewer_token()
    unpaid = buy(shop.base_url, witness, sale["id"]).json()
    wait_for_server_time(shop, sale["id"], unpaid["hold_expires_at"])
    wait_until(
        lambda: (
            httpx.get(f"{shop.base_url}/api/orders/{unpaid['order_id']}", headers=auth(witness)).json()["status"]
            == "expired"
        )
    )
    assert httpx.get(f"{shop.base_url}/api/orders/{order['order_id']}", headers=auth(token)).json()["status"] == "paid"
    assert invariant(shop, sale["id"])["paid"] == 1
    assert [record["state"] for record in ledger(store, order["order_id"])] == ["captured"]


def test_payment_after_the_hold_expired_is_refused_and_nothing_is_charged(shop: Shop, store: redis.Redis) -> None:
    """After the hold's deadline, payment is 409 hold_expired, the card is not charged, and the units are back."""
    sale = create_sale(shop, quantity=1, per_user_limit=1, hold_seconds=1)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    assert order["hold_expires_at"] == order["created_at"] + 1000
    wait_for_server_time(shop, sale["id"], order["hold_expires_at"])
    message = assert_error(pay(shop.base_url, token, order["order_id"]), 409, "hold_expired")
    assert "not charged" in message
    assert all(record["state"] != "captured" for record in ledger(store, order["order_id"]))
    wait_until(lambda: invariant(shop, sale["id"])["available"] == 1)
    read = httpx.get(f"{shop.base_url}/api/orders/{order['order_id']}", headers=auth(token)).json()
    assert read["status"] == "expired" and read["closed_at"] >= order["hold_expires_at"]
    assert buy(shop.base_url, viewer_token(), sale["id"]).status_code == 201  # back on sale for someone else


def test_a_payment_that_outlives_the_hold_is_voided_not_oversold(shop: Shop, store: redis.Redis) -> None:
    """The seckill bug: the gateway answers after the hold expired and the unit went to someone else.

    The order is refused hold_expired, its authorization voided (not captured), and the unit sold once.
    """
    sale = create_sale(shop, quantity=1, per_user_limit=1, hold_seconds=1)
    slow_buyer, next_buyer = viewer_token(), viewer_token()
    order = buy(shop.base_url, slow_buyer, sale["id"]).json()
    with httpx.Client(timeout=seconds(10)) as client:
        started = time.monotonic()
        late = client.post(
            f"{shop.base_url}/api/orders/{order['order_id']}/payment",
            json={"card_number": SLOW_CARD},  # approved, but the sandbox takes 2 s to say so
            headers=auth(slow_buyer),
        )
    assert time.monotonic() - started >= 2
    assert_error(late, 409, "hold_expired")
    assert [record["state"] for record in ledger(store, order["order_id"])] == ["voided"]
    wait_until(lambda: invariant(shop, sale["id"])["available"] == 1)
    other = buy(shop.base_url, next_buyer, sale["id"]).json()
    assert pay(shop.base_url, next_buyer, other["order_id"]).status_code == 200
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"], body["paid"]) == (0, 0, 1)


@pytest.mark.anyio
async def test_expired_holds_go_back_on_sale_exactly_once(shop: Shop, server_factory: Any, store: redis.Redis) -> None:
    """Two processes run the sale clock; each expired hold is released once, and viewers see the stock come back."""
    second: ServerProcess = server_factory()
    sale = create_sale(shop, quantity=6, per_user_limit=2, hold_seconds=1)
    async with await RoomClient.connect(f"{second.ws_url}/ws/rooms/{shop.room_id}?token={shop.guest()}") as viewer:
        orders = [buy(base, viewer_token(), sale["id"], quantity=2).json() for base in (shop.base_url, second.base_url)]
        await viewer.wait_event("stock", sale_id=sale["id"], available=2)
        back = await viewer.wait_event("stock", sale_id=sale["id"], available=6, timeout=5)
        assert back["held"] == 0
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"], body["paid"]) == (6, 0, 0)
    log = store.xrange(keys.sale_log(sale["id"]))
    expired = [entry["order"] for _, entry in log if entry["change"] == "expired"]
    assert sorted(expired) == sorted(order["order_id"] for order in orders)
