"""A room's live state in memory, built from its Redis hash and kept current by applying its events (no I/O)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

SALE_EVENTS = frozenset({"sale.created", "sale.started", "sale.sold_out", "sale.ended"})
SALE_STOCK = ("available", "held", "sold", "version")
MAX_SALES = 20  # the newest sales (by start time) a room keeps in its snapshot


@dataclass
class RoomState:
    id: str
    merchant_id: str
    title: str
    status: str
    stream: str
    pinned: dict[str, Any] | None
    bag: list[dict[str, Any]]
    slow_mode: int
    offset: int
    epoch: str
    likes: int
    chat: deque[dict[str, Any]]
    viewers: int = 0
    sales: dict[str, dict[str, Any]] = field(default_factory=dict)  # sale id -> public sale with live stock

    @classmethod
    def load(cls, fields: dict[str, str], recent: list[str], chat_size: int) -> RoomState:
        """Build from the room hash and its recent history (oldest first)."""
        state = cls(
            id=fields["id"],
            merchant_id=fields["merchant_id"],
            title=fields["title"],
            status=fields["status"],
            stream=fields.get("stream", "offline"),
            pinned=orjson.loads(fields["pinned"]) if fields.get("pinned") else None,
            bag=orjson.loads(fields.get("bag") or "[]"),
            slow_mode=int(fields.get("slow_mode", 0)),
            offset=int(fields.get("offset", 0)),
            epoch=fields["epoch"],
            likes=int(fields.get("likes", 0)),
            chat=deque(maxlen=chat_size),
        )
        for name, raw in fields.items():
            if name.startswith("sale:"):
                state._apply_sale(orjson.loads(raw))
        for name, raw in fields.items():
            if name.startswith("stock:"):
                state._apply_stock({"sale_id": name[6:], **orjson.loads(raw)})
        for raw in recent:
            message = orjson.loads(raw)
            if message["type"] in ("chat.message", "chat.deleted"):
                state._apply_chat(message)
        return state

    def apply(self, message: dict[str, Any]) -> None:
        """Apply one durable event; the room hash already holds its effect in Redis."""
        kind = message["type"]
        if "offset" in message:
            self.offset = message["offset"]
        if kind == "room.status":
            self.status = message["status"]
        elif kind == "stream.state":
            self.stream = message["state"]
        elif kind == "product.pinned":
            self.pinned = message["product"]
        elif kind == "product.unpinned":
            self.pinned = None
        elif kind == "bag.changed":
            self.bag = message["products"]
        elif kind == "chat.slow_mode":
            self.slow_mode = message["seconds"]
        elif kind in ("chat.message", "chat.deleted"):
            self._apply_chat(message)
        elif kind == "likes":
            self.likes = max(self.likes, message["total"])
        elif kind == "viewers":
            self.viewers = message["count"]
        elif kind in SALE_EVENTS:
            self._apply_sale(message["sale"])
        elif kind == "stock":
            self._apply_stock(message)

    def _apply_sale(self, sale: dict[str, Any]) -> None:
        """A sale's new terms and status; its stock unless the stock already known is newer."""
        known = self.sales.get(sale["id"])
        if known is not None and known["version"] > sale["version"]:
            sale = {**sale, **{name: known[name] for name in SALE_STOCK}}
        self.sales[sale["id"]] = sale
        if len(self.sales) > MAX_SALES:
            oldest = min(self.sales.values(), key=lambda item: item["starts_at"])
            del self.sales[oldest["id"]]

    def _apply_stock(self, stock: dict[str, Any]) -> None:
        """Live stock of a known sale, unless it is older than what is known (processes publish out of order)."""
        known = self.sales.get(stock["sale_id"])
        if known is not None and stock["version"] > known["version"]:
            self.sales[stock["sale_id"]] = {**known, **{name: stock[name] for name in SALE_STOCK}}

    def _apply_chat(self, message: dict[str, Any]) -> None:
        if message["type"] == "chat.message":
            self.chat.append(message["message"])
        else:
            gone = message["message_id"]
            kept = [item for item in self.chat if item["id"] != gone]
            if len(kept) != len(self.chat):
                self.chat.clear()
                self.chat.extend(kept)

    def snapshot(self) -> dict[str, Any]:
        """What a joining viewer sees first (without type and timestamp)."""
        return {
            "room": {
                "id": self.id,
                "merchant_id": self.merchant_id,
                "title": self.title,
                "status": self.status,
                "stream": self.stream,
            },
            "pinned": self.pinned,
            "bag": self.bag,
            "chat": list(self.chat),
            "slow_mode": self.slow_mode,
            "viewers": self.viewers,
            "likes": self.likes,
            "sales": sorted(self.sales.values(), key=lambda sale: sale["starts_at"]),
            "offset": self.offset,
            "epoch": self.epoch,
        }
