"""Bad purchases and order requests: each is a clear error with a stable code, and nothing about the sale changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from server import keys
from tests.conftest import Shop
from tests.sale_helpers import (
    GOOD_CARD,
    assert_error,
    auth,
    buy,
    create_sale,
    pay,
    query,
    viewer_token,
    wait_for_server_time,
)

FEED_FIELDS = {"stock_version", "stock_at", "announced", "announcing"}  # the room feed's bookkeeping, not state


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def sale_state(store: redis.Redis, sale_id: str) -> dict[str, Any]:
    """Everything a refused request must leave as it was: counters, version, orders, holds, log, users, keys.

    The log is known by the last entry ever appended to it (and how many were): the ledger backup deletes
    entries once they are in PostgreSQL, so its length changes behind the test's back, but not these.
    """
    log = store.xinfo_stream(keys.sale_log(sale_id))
    return {
        "sale": {name: value for name, value in store.hgetall(keys.sale(sale_id)).items() if name not in FEED_FIELDS},
        "orders": store.hgetall(keys.sale_orders(sale_id)),
        "users": store.hgetall(keys.sale_users(sale_id)),
        "keys": store.hgetall(keys.sale_keys(sale_id)),
        "holds": store.zrange(keys.sale_holds(sale_id), 0, -1, withscores=True),
        "log": (log["last-generated-id"], log["entries-added"]),
    }


def authorizations(database_url: str, order_id: str) -> list[str]:
    """The states of the sandbox gateway's authorizations for this order (none: the card was never asked)."""
    rows = query(
        database_url, "SELECT state FROM sandbox_authorizations WHERE reference = $1 ORDER BY created_at", order_id
    )
    return [row["state"] for row in rows]


def test_buying_before_the_start_is_not_started(shop: Shop, store: redis.Redis) -> None:
    """A purchase before the start time is refused with not_started, saying when it opens."""
    sale = create_sale(shop, starts_at=int(time.time() * 1000) + 60_000)
    before = sale_state(store, sale["id"])
    message = assert_error(buy(shop.base_url, viewer_token(), sale["id"]), 409, "not_started")
    assert "opens in" in message and "seconds" in message
    assert sale_state(store, sale["id"]) == before


def test_buying_after_the_end_is_ended(shop: Shop, store: redis.Redis) -> None:
    """A purchase after the sale's end time is refused with ended."""
    sale = create_sale(shop, duration_seconds=1)
    wait_for_server_time(shop, sale["id"], sale["ends_at"])
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, viewer_token(), sale["id"]), 409, "ended")
    assert sale_state(store, sale["id"]) == before


def test_buying_beyond_the_per_user_limit_is_limit_reached(shop: Shop, store: redis.Redis) -> None:
    """With a limit of 2: buying 3 at once, or 1 more after 2, is limit_reached; other buyers are not affected."""
    sale = create_sale(shop, quantity=10, per_user_limit=2)
    token = viewer_token()
    before = sale_state(store, sale["id"])
    assert "at most 2" in assert_error(buy(shop.base_url, token, sale["id"], quantity=3), 409, "limit_reached")
    assert sale_state(store, sale["id"]) == before
    assert buy(shop.base_url, token, sale["id"], quantity=2).status_code == 201
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, token, sale["id"]), 409, "limit_reached")
    assert sale_state(store, sale["id"]) == before
    assert buy(shop.base_url, viewer_token(), sale["id"]).status_code == 201


def test_buying_a_sold_out_item_is_sold_out(shop: Shop, store: redis.Redis) -> None:
    """Once every unit is held, a purchase is sold_out; asking for more than is left says how many are left."""
    sale = create_sale(shop, quantity=3, per_user_limit=3)
    assert buy(shop.base_url, viewer_token(), sale["id"], quantity=2).status_code == 201
    before = sale_state(store, sale["id"])
    assert "Only 1 left" in assert_error(buy(shop.base_url, viewer_token(), sale["id"], quantity=2), 409, "sold_out")
    assert sale_state(store, sale["id"]) == before
    assert buy(shop.base_url, viewer_token(), sale["id"]).status_code == 201
    before = sale_state(store, sale["id"])
    assert "Sold out" in assert_error(buy(shop.base_url, viewer_token(), sale["id"]), 409, "sold_out")
    assert sale_state(store, sale["id"]) == before


@pytest.mark.parametrize(
    "body",
    [
        b'{"quantity": 0}',
        b'{"quantity": -1}',
        b'{"quantity": -99999999999}',
        b'{"quantity": 1001}',
        b'{"quantity": 99999999999999999999999999999}',
        b'{"quantity": 1.5}',
        b'{"quantity": "2"}',
        b'{"quantity": true}',
        b'{"quantity": null}',
        b'{"quantity": [1]}',
    ],
)
def test_a_negative_huge_or_non_whole_quantity_is_bad_quantity(shop: Shop, store: redis.Redis, body: bytes) -> None:
    """Quantities outside 1..1000 or not whole numbers are bad_quantity (400)."""
    sale = create_sale(shop)
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, viewer_token(), sale["id"], body=body), 400, "bad_quantity")
    assert sale_state(store, sale["id"]) == before


@pytest.mark.parametrize(("body", "code"), [(b"{nope", "bad_json"), (b"[1]", "bad_request")])
def test_a_body_that_is_not_a_json_object_is_refused(shop: Shop, store: redis.Redis, body: bytes, code: str) -> None:
    """A purchase body that is not JSON, or not an object, is refused (400) and changes nothing."""
    sale = create_sale(shop)
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, viewer_token(), sale["id"], body=body), 400, code)
    assert sale_state(store, sale["id"]) == before


def test_a_purchase_without_a_body_buys_one(shop: Shop) -> None:
    """No body means a quantity of 1."""
    sale = create_sale(shop)
    assert buy(shop.base_url, viewer_token(), sale["id"], body=b"").json()["quantity"] == 1


@pytest.mark.parametrize("sale_id", ["s_0000000000", "s_zzzzzzzzzz", "nope", "s_" + "a" * 100])
def test_buying_from_an_unknown_sale_is_unknown_sale(shop: Shop, sale_id: str) -> None:
    """A purchase from a sale that does not exist is 404 unknown_sale."""
    assert_error(buy(shop.base_url, viewer_token(), sale_id), 404, "unknown_sale")


@pytest.mark.parametrize("key", [b"", b"x" * 65, b"has space", b"tab\there", "\u00fcn\u00ef".encode()])
def test_a_purchase_needs_a_valid_idempotency_key(shop: Shop, store: redis.Redis, key: bytes) -> None:
    """A missing or malformed Idempotency-Key is 400 idempotency_key: without it a retry could buy twice."""
    sale = create_sale(shop)
    before = sale_state(store, sale["id"])
    headers = [(b"Authorization", f"Bearer {viewer_token()}".encode())]
    if key:
        headers.append((b"Idempotency-Key", key))
    response = httpx.post(f"{shop.base_url}/api/sales/{sale['id']}/purchases", json={"quantity": 1}, headers=headers)
    assert "Idempotency-Key" in assert_error(response, 400, "idempotency_key")
    assert sale_state(store, sale["id"]) == before


def test_reusing_a_key_for_another_quantity_is_refused(shop: Shop, store: redis.Redis) -> None:
    """The same key with a different quantity is not a retry: 400 idempotency_key, and the first order stands."""
    sale = create_sale(shop, per_user_limit=3)
    token = viewer_token()
    first = buy(shop.base_url, token, sale["id"], quantity=1, key="k-1")
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, token, sale["id"], quantity=2, key="k-1"), 400, "idempotency_key")
    assert sale_state(store, sale["id"]) == before
    assert buy(shop.base_url, token, sale["id"], quantity=1, key="k-1").json()["order_id"] == first.json()["order_id"]


def test_another_users_order_is_not_theirs_to_read_pay_or_cancel(
    shop: Shop, store: redis.Redis, database_url: str
) -> None:
    """Reading, paying or cancelling someone else's order is 403 not_your_order, the order is untouched and no card
    was asked."""
    sale = create_sale(shop)
    owner, stranger = viewer_token(), viewer_token()
    order = buy(shop.base_url, owner, sale["id"]).json()
    before = sale_state(store, sale["id"])
    url = f"{shop.base_url}/api/orders/{order['order_id']}"
    assert_error(httpx.get(url, headers=auth(stranger)), 403, "not_your_order")
    assert_error(pay(shop.base_url, stranger, order["order_id"]), 403, "not_your_order")
    assert_error(httpx.post(f"{url}/cancel", headers=auth(stranger)), 403, "not_your_order")
    assert_error(httpx.get(url, headers=auth(shop.admin)), 403, "not_your_order")
    assert sale_state(store, sale["id"]) == before
    assert authorizations(database_url, order["order_id"]) == []
    assert httpx.get(url, headers=auth(owner)).json()["status"] == "held"


@pytest.mark.parametrize("order_id", ["nope", "s_0000000000.000000000000", "s_0000000000", "x.y.z"])
def test_an_unknown_order_is_unknown_order(shop: Shop, order_id: str) -> None:
    """An order id that does not exist is 404 unknown_order, for reading, paying and cancelling."""
    token = viewer_token()
    url = f"{shop.base_url}/api/orders/{order_id}"
    assert_error(httpx.get(url, headers=auth(token)), 404, "unknown_order")
    assert_error(pay(shop.base_url, token, order_id), 404, "unknown_order")
    assert_error(httpx.post(f"{url}/cancel", headers=auth(token)), 404, "unknown_order")


def test_an_unknown_order_of_a_real_sale_is_unknown_order(shop: Shop) -> None:
    """A made-up order id under an existing sale is 404 unknown_order too."""
    sale = create_sale(shop)
    made_up = f"{sale['id']}.0123456789ab"
    assert_error(httpx.get(f"{shop.base_url}/api/orders/{made_up}", headers=auth(viewer_token())), 404, "unknown_order")


def test_a_forged_token_is_invalid_token_everywhere(shop: Shop, store: redis.Redis) -> None:
    """A token with a forged signature is 401 invalid_token for buying, reading, paying and cancelling."""
    sale = create_sale(shop)
    owner = viewer_token()
    order = buy(shop.base_url, owner, sale["id"]).json()
    forged = owner[:-3] + ("AAA" if not owner.endswith("AAA") else "BBB")
    before = sale_state(store, sale["id"])
    assert_error(buy(shop.base_url, forged, sale["id"]), 401, "invalid_token")
    no_token = httpx.post(f"{shop.base_url}/api/sales/{sale['id']}/purchases", headers={"Idempotency-Key": "k"})
    assert_error(no_token, 401, "invalid_token")
    url = f"{shop.base_url}/api/orders/{order['order_id']}"
    assert_error(httpx.get(url, headers=auth(forged)), 401, "invalid_token")
    assert_error(pay(shop.base_url, forged, order["order_id"]), 401, "invalid_token")
    assert_error(httpx.post(f"{url}/cancel", headers=auth(forged)), 401, "invalid_token")
    assert sale_state(store, sale["id"]) == before


@pytest.mark.parametrize("body", [{}, {"card_number": 4242424242424242}, {"card_number": "4" * 41}])
def test_a_payment_without_a_card_number_is_bad_request(
    shop: Shop, store: redis.Redis, database_url: str, body: dict[str, Any]
) -> None:
    """A payment body without a card number string is 400 bad_request, the hold is untouched, no card asked."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    before = sale_state(store, sale["id"])
    response = httpx.post(
        f"{shop.base_url}/api/orders/{order['order_id']}/payment",
        json=body,
        headers={**auth(token), "Idempotency-Key": "pay-1"},
    )
    assert_error(response, 400, "bad_request")
    assert sale_state(store, sale["id"]) == before
    assert authorizations(database_url, order["order_id"]) == []


@pytest.mark.parametrize("key", [b"", b"x" * 65, b"has space", b"tab\there", "\u00fcn\u00ef".encode()])
def test_a_payment_needs_a_valid_idempotency_key(shop: Shop, store: redis.Redis, database_url: str, key: bytes) -> None:
    """A payment without a valid Idempotency-Key is 400 idempotency_key before the card is asked: without it, a
    retry after a lost reply could not be told from a second payment."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    before = sale_state(store, sale["id"])
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    if key:
        headers.append((b"Idempotency-Key", key))
    url = f"{shop.base_url}/api/orders/{order['order_id']}/payment"
    response = httpx.post(url, json={"card_number": GOOD_CARD}, headers=headers)
    assert "Idempotency-Key" in assert_error(response, 400, "idempotency_key")
    assert sale_state(store, sale["id"]) == before
    assert authorizations(database_url, order["order_id"]) == []
    assert pay(shop.base_url, token, order["order_id"], key="x" * 64).json()["status"] == "paid"  # 64 is fine
