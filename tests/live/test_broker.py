"""Several server processes serve one room: events cross processes through Redis pub/sub."""

from __future__ import annotations

from typing import Any

import pytest

from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop

pytestmark = pytest.mark.anyio


async def test_viewers_on_two_processes_see_the_same_events(shop: Shop, server_factory: Any) -> None:
    """A pin on process A and chat on process B reach viewers on both, with the same offsets, and both count the 3
    viewers (the host is staff, not a viewer)."""
    second: ServerProcess = server_factory()
    on_b = f"{second.ws_url}/ws/rooms/{shop.room_id}"
    async with (
        await RoomClient.connect(shop.room_url(shop.host)) as host_a,
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer_a,
        await RoomClient.connect(f"{on_b}?token={shop.guest()}") as viewer_b,
        await RoomClient.connect(f"{on_b}?token={shop.guest()}") as chatter_b,
    ):
        assert (await host_a.request("product.pin", product_id=shop.products[0]))["type"] == "ack"
        assert (await chatter_b.request("chat.send", text="from process B"))["type"] == "ack"
        for viewer in (viewer_a, viewer_b):
            pinned = await viewer.wait_event("product.pinned")
            chat = await viewer.wait_event("chat.message")
            assert (pinned["offset"], chat["offset"]) == (1, 2)
            assert chat["message"]["text"] == "from process B"
            await viewer.wait_event("viewers", count=3, timeout=6)
