"""The room stats endpoint: staff only, zeros for a new room, viewers and their peak from presence."""

from __future__ import annotations

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Shop

pytestmark = pytest.mark.anyio


def _stats_url(shop: Shop, room_id: str | None = None) -> str:
    return f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{room_id or shop.room_id}/stats"


async def test_new_room_has_no_sales_yet(shop: Shop) -> None:
    """A room without sales reports zero orders, units and GMV, and no conversion while nobody watched."""
    async with httpx.AsyncClient() as client:
        stats = (await client.get(_stats_url(shop), headers=shop.headers(shop.moderator))).json()
    assert stats["orders"] == stats["units"] == stats["buyers"] == stats["sales"] == 0
    assert stats["gmv"] == {}
    assert stats["room_id"] == shop.room_id


async def test_stats_are_for_the_merchants_staff_only(shop: Shop) -> None:
    """Guests get 403; another merchant's room is 404; no token is 401."""
    async with httpx.AsyncClient() as client:
        assert (await client.get(_stats_url(shop), headers=shop.headers(shop.guest()))).status_code == 403
        assert (await client.get(_stats_url(shop))).status_code == 401
        missing = await client.get(_stats_url(shop, "nosuchroom"), headers=shop.headers(shop.host))
        assert missing.status_code == 404


async def test_viewers_and_peak_follow_presence(shop: Shop) -> None:
    """Viewers now comes from presence; the peak stays at the highest count seen."""
    async with httpx.AsyncClient() as client:

        async def stats() -> dict[str, object]:
            return (await client.get(_stats_url(shop), headers=shop.headers(shop.host))).json()  # type: ignore[no-any-return]

        one = await RoomClient.connect(shop.room_url(shop.guest()))
        two = await RoomClient.connect(shop.room_url(shop.guest()))
        async with one, two:
            await one.wait_event("viewers", count=2)
            await two.wait_event("viewers", count=2)
            assert (await stats())["viewers"] == 2
        seen = await stats()
        assert seen["peak_viewers"] == 2
        assert seen["viewers"] in (0, 2)  # presence lapses within seconds
