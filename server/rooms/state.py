"""A room's live state in memory, built from its record and kept current by applying its events (no I/O)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from server.protocol import SALE_EVENTS
from server.rooms.record import RoomRecord

SALE_STOCK = ("available", "held", "sold", "version")
MAX_SALES = 20  # the newest sales (by start time) a room keeps in its snapshot
MAX_CARDS = 3  # the newest giveaways and auctions (by start time, each kind) a room keeps


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
    sharers: list[dict[str, Any]] = field(default_factory=list)  # the room's top sharers (docs/referrals.md)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # sale id -> an offer's board (group-buys.md)
    giveaways: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> card (docs/giveaways.md)
    auctions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> card (docs/auctions.md)

    @classmethod
    def load(
        cls, record: RoomRecord, recent: list[dict[str, Any]], stocks: dict[str, dict[str, Any]], chat_size: int
    ) -> RoomState:
        """Build from the room's record, its recent durable events (oldest first, none newer than the
        record) and the live stock of its sales (sale id -> stock event fields)."""
        room = record.room
        state = cls(
            id=room.id,
            merchant_id=room.merchant_id,
            title=room.title,
            status=room.status,
            stream=room.stream,
            pinned=record.pinned,
            bag=record.bag,
            slow_mode=record.slow_mode,
            offset=record.offset,
            epoch=record.epoch,
            likes=record.likes,
            chat=deque(maxlen=chat_size),
            sharers=record.sharers,
            groups=record.groups,
            giveaways=record.giveaways,
            auctions=record.auctions,
        )
        for sale in record.sales.values():
            state._apply_sale(sale)
        for stock in stocks.values():
            state._apply_stock(stock)
        for message in recent:
            if message.get("chat_cleared"):  # a new show after an ended one
                state.chat.clear()
            elif message["type"] in ("chat.message", "chat.deleted"):
                state._apply_chat(message)
        return state

    def apply(self, message: dict[str, Any], offset: int = 0) -> None:
        """Apply one event (a durable one with its offset); the room record already holds its effect."""
        kind = message["type"]
        if offset:
            self.offset = offset
        if kind == "room.status":
            self.status = message["status"]
            if message.get("chat_cleared"):  # a new show after an ended one starts with an empty chat
                self.chat.clear()
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
        elif kind in SALE_EVENTS or kind == "sale.updated":
            self._apply_sale(message["sale"])
        elif kind == "stock":
            self._apply_stock(message)
        elif kind == "sharers":
            self.sharers = message["top"]
        elif kind == "groups":
            self._apply_groups(message)
        elif kind in ("giveaway", "auction"):
            self._apply_card(self.giveaways if kind == "giveaway" else self.auctions, message)

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

    def _apply_groups(self, message: dict[str, Any]) -> None:
        """An offer's board, unless an older one (processes publish out of order); only while the room lists it."""
        known = self.groups.get(message["sale_id"])
        if message["sale_id"] in self.sales and (known is None or message["version"] >= known["version"]):
            self.groups[message["sale_id"]] = {
                name: value for name, value in message.items() if name not in ("type", "ts")
            }

    @staticmethod
    def _apply_card(cards: dict[str, dict[str, Any]], message: dict[str, Any]) -> None:
        """A giveaway's or auction's card, unless an older one (processes publish out of order)."""
        known = cards.get(message["id"])
        if known is None or message["version"] >= known["version"]:
            cards[message["id"]] = {name: value for name, value in message.items() if name not in ("type", "ts")}
        if len(cards) > MAX_CARDS:
            del cards[min(cards.values(), key=lambda card: card["starts_at"])["id"]]

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
            "sharers": self.sharers,
            "groups": {sale_id: board for sale_id, board in self.groups.items() if sale_id in self.sales},
            "giveaways": self.giveaways,
            "auctions": self.auctions,
            "offset": self.offset,
            "epoch": self.epoch,
        }
