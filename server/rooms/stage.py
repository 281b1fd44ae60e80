"""The stage: what hosts change in a room (the pinned product, the bag, the room's status and show, the stream's)."""

from __future__ import annotations

from server.protocol import ErrorCode, ProtocolError, event
from server.rooms import record
from server.rooms.catalog import Catalog, Product
from server.rooms.record import RoomRecords
from server.rooms.shows import Shows


class Stage:
    """Change a room and tell every viewer, one durable event per change (see server.rooms.record)."""

    def __init__(self, catalog: Catalog, records: RoomRecords, shows: Shows) -> None:
        self.catalog = catalog
        self.records = records
        self.shows = shows

    async def _product(self, merchant_id: str, product_id: str) -> Product:
        product = await self.catalog.get_product(merchant_id, product_id)
        if product is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no product '{product_id}' in this shop")
        return product

    async def pin(self, room_id: str, merchant_id: str, product_id: str) -> None:
        card = (await self._product(merchant_id, product_id)).public()
        await self.records.publish(room_id, event("product.pinned", product=card), record.pinned(card))

    async def unpin(self, room_id: str) -> None:
        await self.records.publish(room_id, event("product.unpinned"), record.pinned(None))

    async def set_bag(self, room_id: str, merchant_id: str, product_ids: list[str]) -> None:
        cards = [(await self._product(merchant_id, product_id)).public() for product_id in dict.fromkeys(product_ids)]
        await self.records.publish(room_id, event("bag.changed", products=cards), record.bag(cards))

    async def set_status(self, room_id: str, status: str) -> None:
        """Going live opens the room's show, any other status closes it (server.rooms.shows); then viewers hear.

        The show changes first, so when the publish fails the host's retry finishes the change
        (opening and closing are idempotent), and viewers never see a live room with no show.
        A room leaving `ended` (a new show) clears its chat: the event says `chat_cleared`.
        """
        room = await self.catalog.get_room(room_id)
        if room is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no room '{room_id}'")
        if status == "live":
            await self.shows.start(room)
        else:
            await self.shows.end(room_id)
        fresh = {"chat_cleared": True} if room.status == "ended" and status != "ended" else {}
        await self.records.publish(room_id, event("room.status", status=status, **fresh), record.status(status))

    async def set_stream(self, room_id: str, online: bool) -> None:
        """The host's video started (online) or stopped (offline)."""
        change = record.stream(online)
        await self.records.publish(room_id, event("stream.state", state=change["stream"]), change)
