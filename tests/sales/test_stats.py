"""The room stats endpoint: staff only, zeros and no show for a new room, viewers now and the live show's peak."""

from __future__ import annotations

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Shop

pytestmark = pytest.mark.anyio


def _stats_url(shop: Shop, room_id: str | None = None) -> str:
    return f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{room_id or shop.room_id}/stats"


async def test_new_room_has_no_show_yet(shop: Shop) -> None:
    """A room never live has no current or past show: zero orders, units, GMV, peak and conversion."""
    async with httpx.AsyncClient() as client:
        stats = (await client.get(_stats_url(shop), headers=shop.headers(shop.moderator))).json()
    assert stats["orders"] == stats["units"] == stats["buyers"] == stats["sales"] == stats["peak_viewers"] == 0
    assert stats["gmv"] == {}
    assert stats["conversion"] == 0
    assert stats["show"] is None and stats["shows"] == []
    assert stats["room_id"] == shop.room_id


async def test_stats_are_for_the_merchants_staff_only(shop: Shop) -> None:
    """Viewers get 403; another merchant's room is 404; no token is 401; a bad `past` is 400."""
    async with httpx.AsyncClient() as client:
        assert (await client.get(_stats_url(shop), headers=shop.headers(shop.buyer()))).status_code == 403
        assert (await client.get(_stats_url(shop))).status_code == 401
        missing = await client.get(_stats_url(shop, "nosuchroom"), headers=shop.headers(shop.host))
        assert missing.status_code == 404
        for past in ("-1", "many", "101"):
            bad = await client.get(_stats_url(shop), params={"past": past}, headers=shop.headers(shop.host))
            assert bad.status_code == 400, past


async def test_viewers_and_peak_follow_presence(shop: Shop) -> None:
    """Viewers now comes from presence (the host is staff, not a viewer); the live show's peak stays at the highest
    count seen."""
    async with httpx.AsyncClient() as client, await RoomClient.connect(shop.room_url(shop.host)) as host:

        async def stats() -> dict[str, object]:
            return (await client.get(_stats_url(shop), headers=shop.headers(shop.host))).json()  # type: ignore[no-any-return]

        assert (await host.request("room.status", status="live"))["type"] == "ack"
        one = await RoomClient.connect(shop.room_url(shop.buyer()))
        two = await RoomClient.connect(shop.room_url(shop.buyer()))
        async with one, two:
            await one.wait_event("viewers", count=2)
            await two.wait_event("viewers", count=2)
            assert (await stats())["viewers"] == 2
        seen = await stats()
        assert seen["peak_viewers"] == 2
        assert seen["viewers"] in (0, 2)  # presence lapses within seconds
