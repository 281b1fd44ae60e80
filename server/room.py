"""A room's live state in memory, built from its Redis hash and kept current by applying its events (no I/O)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson


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
    extra: dict[str, Any] = field(default_factory=dict)

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
            "offset": self.offset,
            "epoch": self.epoch,
            **self.extra,
        }
