"""Shipping (docs/sales.md, Shipping): the buyer's name and address given at payment, remembered for the next order,
on the order, in the merchant's export; a bad address refused before any charge."""

from __future__ import annotations

import csv
import io
import secrets

import httpx
import pytest

from tests.conftest import Person, Shop
from tests.sale_helpers import GOOD_CARD, assert_error, auth, buy, create_sale, wait_recorded
from tests.timing import seconds

pytestmark = pytest.mark.anyio

HOME = {"name": "Ada Lovelace", "address": "12 St James's Square, London SW1Y 4JH", "phone": "+44 20 7946 0018"}


def pay_to(shop: Shop, token: str, order_id: str, shipping: object = None) -> httpx.Response:
    body: dict[str, object] = {"card_number": GOOD_CARD}
    if shipping is not None:
        body["shipping"] = shipping
    return httpx.post(
        f"{shop.base_url}/api/orders/{order_id}/payment",
        json=body,
        headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
        timeout=seconds(10),
    )


async def test_the_address_is_given_once_and_remembered_for_the_next_order(shop: Shop, database_url: str) -> None:
    """No address at first; one given with a payment ships that order and is saved to the account; the next order paid
    without one ships to it; a new one replaces it; the export carries each order's address; a bad address is refused
    with the order still held and nothing charged."""
    ada = Person("Ada")
    me = f"{shop.base_url}/api/me/address"
    assert httpx.get(me, headers=auth(ada.token)).json() == {"address": None}
    sale = create_sale(shop, quantity=10, per_user_limit=5)

    first = buy(shop.base_url, ada.token, sale["id"]).json()["order_id"]
    assert_error(pay_to(shop, ada.token, first, {"name": "", "address": "x"}), 400, "bad_request")
    assert_error(pay_to(shop, ada.token, first, "12 Main St"), 400, "bad_request")
    held = httpx.get(f"{shop.base_url}/api/orders/{first}", headers=auth(ada.token)).json()
    assert held["status"] == "held" and held["shipping"] is None
    paid = pay_to(shop, ada.token, first, HOME)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid" and paid.json()["shipping"] == HOME
    assert httpx.get(me, headers=auth(ada.token)).json() == {"address": HOME}

    second = buy(shop.base_url, ada.token, sale["id"]).json()["order_id"]
    assert pay_to(shop, ada.token, second).json()["shipping"] == HOME

    moved = {"name": "Ada King", "address": "Horsley Towers, Surrey"}
    saved = httpx.put(me, json=moved, headers=auth(ada.token))
    assert saved.json() == {"address": moved | {"phone": None}}
    assert_error(httpx.put(me, json={"name": "Ada"}, headers=auth(ada.token)), 400, "bad_request")
    third = buy(shop.base_url, ada.token, sale["id"]).json()["order_id"]
    assert pay_to(shop, ada.token, third).json()["shipping"] == moved | {"phone": None}

    wait_recorded(database_url, {first: "paid", second: "paid", third: "paid"})  # the export reads the ledger
    exported = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/orders.csv", headers=auth(shop.admin))
    rows = {row["order_id"]: row for row in csv.DictReader(io.StringIO(exported.text))}
    assert rows[first]["ship_address"] == HOME["address"]
    assert rows[first]["ship_phone"] == "'" + HOME["phone"]  # a cell a spreadsheet would run as a formula, defused
    assert rows[third]["ship_name"] == "Ada King"
    assert httpx.get(me, headers=auth(Person().token)).json() == {"address": None}  # one's own only
