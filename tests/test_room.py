"""The live room over real WebSockets to a real server on real Redis."""

from __future__ import annotations

import pytest

from tests.client import RoomClient
from tests.conftest import Shop

pytestmark = pytest.mark.anyio


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
