"""Room commands of hosts: pin and unpin products, the product bag, room and stream status; one event each."""

from __future__ import annotations

import orjson

from server.catalog import Catalog
from server.history import History
from server.protocol import ErrorCode, ProtocolError, event


class Rooms:
    """Change a room and tell every viewer, in one atomic step per change (see History.publish)."""

    def __init__(self, catalog: Catalog, history: History) -> None:
        self.catalog = catalog
        self.history = history

    async def pin(self, room_id: str, merchant_id: str, product_id: str) -> None:
        product = await self.catalog.get_product(merchant_id, product_id)
        if product is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no product '{product_id}' in this shop")
        card = product.public()
        await self.history.publish(
            room_id, event("product.pinned", product=card), {"pinned": orjson.dumps(card).decode()}
        )

    async def unpin(self, room_id: str) -> None:
        await self.history.publish(room_id, event("product.unpinned"), {"pinned": ""})

    async def set_bag(self, room_id: str, merchant_id: str, product_ids: list[str]) -> None:
        products = []
        for product_id in dict.fromkeys(product_ids):
            product = await self.catalog.get_product(merchant_id, product_id)
            if product is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no product '{product_id}' in this shop")
            products.append(product.public())
        await self.history.publish(
            room_id, event("bag.changed", products=products), {"bag": orjson.dumps(products).decode()}
        )

    async def set_status(self, room_id: str, status: str) -> None:
        await self.history.publish(room_id, event("room.status", status=status), {"status": status})

    async def set_stream(self, room_id: str, online: bool) -> None:
        """The host's video started (online) or stopped (offline)."""
        state = "online" if online else "offline"
        await self.history.publish(room_id, event("stream.state", state=state), {"stream": state})

    async def set_slow_mode(self, room_id: str, seconds: int) -> None:
        await self.history.publish(room_id, event("chat.slow_mode", seconds=seconds), {"slow_mode": seconds})
