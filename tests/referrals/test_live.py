"""What the room shows of share and earn: a sharer's private numbers, the top sharers board, the QR code."""

from __future__ import annotations

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Shop
from tests.referrals.conftest import Person, buy_and_pay, new_sale, share, visit

pytestmark = pytest.mark.anyio


async def test_a_sharer_sees_their_numbers_live_and_nobody_else_does(shop: Shop) -> None:
    """The sharer's sockets get `earnings` when a visitor comes and when a buyer pays; another viewer's socket gets
    neither, and everyone gets the `sharers` board, which a joining viewer's snapshot carries."""
    ana, bob, eve = Person("Ana"), Person("Bob"), Person("Eve")
    code = share(shop, ana)["code"]
    async with (
        await RoomClient.connect(shop.room_url(ana.token)) as sharer,
        await RoomClient.connect(shop.room_url(eve.token)) as other,
    ):
        visit(shop, code, bob)
        seen = await sharer.wait_event("earnings", visitors=1)
        assert (seen["merchant_id"], seen["buyers"], seen["withdrawable"]) == (shop.merchant_id, 0, 0)
        buy_and_pay(shop, new_sale(shop), bob, 3)
        seen = await sharer.wait_event("earnings", buyers=1, timeout=10)
        assert (seen["orders"], seen["withdrawable"], seen["currency"]) == (1, 300, "USD")
        top = [{"name": "Ana", "buyers": 1, "orders": 1}]
        assert (await other.wait_event("sharers", timeout=10, top=top))["top"] == top
        assert not [event for event in other.events if event["type"] == "earnings"]
    async with await RoomClient.connect(shop.room_url(eve.token)) as joining:
        assert joining.first is not None and joining.first["sharers"] == top


def test_a_link_has_a_public_card_and_a_qr_code(shop: Shop) -> None:
    """GET /api/shares/{code} says whose link it is; its QR code is an SVG of the link's full URL."""
    link = share(shop, Person("Ana"), shop.products[1])
    assert link["url"] == f"/room.html?room={shop.room_id}&ref={link['code']}&product={shop.products[1]}"
    card = httpx.get(f"{shop.base_url}/api/shares/{link['code']}")
    assert card.status_code == 200 and card.json()["sharer"] == {"name": "Ana"}
    qr = httpx.get(f"{shop.base_url}{link['qr_url']}")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith("<svg") and "<path" in qr.text
    again = share(shop, Person("Ana2"))
    assert again["code"] != link["code"]
