"""A product's shelf (docs/sales.md, Regular price): its units bought at the regular price through the hold-and-pay
path, the room's bag with the shelves, restocks, and the waitlist told when units come back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Person, Shop
from tests.sale_helpers import assert_error, auth, buy, invariant, pay
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def stock(shop: Shop, product_id: str, units: int, token: str | None = None, **more: Any) -> httpx.Response:
    return httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{product_id}/shelf",
        json={"units": units, **more},
        headers=auth(token or shop.host),
        timeout=seconds(10),
    )


def shelf_of(shop: Shop, product_id: str, token: str | None = None) -> dict[str, Any]:
    response = httpx.get(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{product_id}/shelf",
        headers={} if token is None else auth(token),
        timeout=seconds(10),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bag(shop: Shop) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{shop.base_url}/api/rooms/{shop.room_id}/bag", timeout=seconds(10))
    assert response.status_code == 200, response.text
    return {product["id"]: product for product in response.json()["products"]}


def wait_for(shop: Shop, product_id: str, token: str, room_id: str | None = None) -> httpx.Response:
    return httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{product_id}/waitlist",
        json={} if room_id is None else {"room_id": room_id},
        headers=auth(token),
        timeout=seconds(10),
    )


async def test_a_bag_product_is_bought_at_its_regular_price_from_its_shelf(shop: Shop) -> None:
    """The bag lists each product with its shelf (null until stocked); a buyer holds and pays a shelf's units at the
    product's price with the per-buyer limit; a restock adds to the same shelf; the room never hears of the shelf
    (no sale events, not in the snapshot); only hosts and admins stock."""
    scarf, mug = shop.products[0], shop.products[1]
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        assert (await host.request("bag.set", product_ids=[scarf, mug]))["type"] == "ack"
        assert {product_id: item["shelf"] for product_id, item in bag(shop).items()} == {scarf: None, mug: None}
        assert_error(stock(shop, mug, 3, Person().token), 403, "forbidden")
        assert_error(stock(shop, mug, 0), 400, "bad_request")
        assert_error(stock(shop, "nope", 3), 404, "not_found")

        stocked = stock(shop, mug, 3, per_user_limit=2)
        assert stocked.status_code == 200, stocked.text
        shelf = stocked.json()["shelf"]
        assert shelf["price"] == 1001 and shelf["available"] == 3 and shelf["per_user_limit"] == 2
        assert bag(shop)[mug]["shelf"]["sale_id"] == shelf["sale_id"] and bag(shop)[scarf]["shelf"] is None

        ada, bob = Person("Ada"), Person("Bob")
        held = buy(shop.base_url, ada.token, shelf["sale_id"], 2)
        assert held.status_code == 201, held.text
        assert held.json()["unit_price"] == 1001 and held.json()["amount"] == 2002
        assert_error(buy(shop.base_url, ada.token, shelf["sale_id"], 1), 409, "limit_reached")
        assert pay(shop.base_url, ada.token, held.json()["order_id"]).json()["status"] == "paid"
        assert_error(buy(shop.base_url, bob.token, shelf["sale_id"], 2), 409, "sold_out")
        assert bag(shop)[mug]["shelf"] | {"sold": 2, "available": 1} == bag(shop)[mug]["shelf"]

        restocked = stock(shop, mug, 5).json()["shelf"]
        assert restocked["sale_id"] == shelf["sale_id"] and restocked["available"] == 6
        assert buy(shop.base_url, bob.token, shelf["sale_id"], 2).status_code == 201
        assert invariant(shop, shelf["sale_id"])["quantity"] == 8

        async with await RoomClient.connect(shop.room_url(Person().token)) as late:
            assert late.first is not None and shelf["sale_id"] not in {sale["id"] for sale in late.first["sales"]}
        heard = [event for event in host.events if event.get("sale_id") == shelf["sale_id"] or "sale" in event]
        assert heard == []
    public = httpx.get(f"{shop.base_url}/api/sales/{shelf['sale_id']}").json()
    assert public["shelf"] is True and public["room_id"] == ""


async def test_waiting_members_are_told_once_when_units_go_on_the_shelf(shop: Shop) -> None:
    """A member asks to be told (a guest is asked to sign in); when the host puts units on the shelf, the member's
    sockets get `product.back` with the shelf and they leave the list, so a second restock tells nobody; a member may
    stop waiting."""
    tea = shop.products[2]
    ada, bob = Person("Ada"), Person("Bob")
    assert_error(wait_for(shop, tea, shop.guest()), 403, "sign_in_required")
    assert wait_for(shop, tea, ada.token, shop.room_id).json() == {"waitlisted": True}
    assert wait_for(shop, tea, ada.token, shop.room_id).json() == {"waitlisted": True}  # once is enough
    assert wait_for(shop, tea, bob.token).json() == {"waitlisted": True}
    assert shelf_of(shop, tea, ada.token)["waitlisted"] is True and shelf_of(shop, tea)["waitlisted"] is False
    left = httpx.delete(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{tea}/waitlist", headers=auth(bob.token)
    )
    assert left.json() == {"waitlisted": False}

    async with await RoomClient.connect(shop.room_url(ada.token)) as phone:
        first = stock(shop, tea, 4)
        assert first.json()["told"] == 1
        back = await phone.wait_event("product.back")
        assert back["product"]["id"] == tea and back["room_id"] == shop.room_id
        assert back["shelf"]["available"] == 4 and back["shelf"]["sale_id"] == first.json()["shelf"]["sale_id"]
        assert stock(shop, tea, 1).json()["told"] == 0
    assert shelf_of(shop, tea, ada.token)["waitlisted"] is False
