"""Loading a room into this process: its record, its recent chat and its sales' live stock, as one RoomState."""

from __future__ import annotations

import orjson

from server.live.history import History
from server.rooms.record import RoomRecords
from server.rooms.state import RoomState
from server.sales.store import Sales


class RoomLoader:
    """Build a room's live state from Redis (None when there is no such room)."""

    def __init__(self, records: RoomRecords, history: History, sales: Sales, history_size: int, chat_size: int) -> None:
        self.records = records
        self.history = history
        self.sales = sales
        self.history_size = history_size
        self.chat_size = chat_size

    async def __call__(self, room_id: str) -> RoomState | None:
        record = await self.records.get(room_id)
        if record is None:
            return None
        # Events up to the record's offset only: a newer one reaches the room through the broker.
        recent = await self.history.recent(room_id, self.history_size, record.offset)
        live = [sale_id for sale_id, sale in record.sales.items() if sale["status"] != "ended"]
        stocks = {sale_id: stock.fields() for sale_id, stock in (await self.sales.stocks(live)).items()}
        return RoomState.load(record, [orjson.loads(raw) for raw in recent], stocks, self.chat_size)
