"""The room message protocol: every message type, its fields, who may send it, error and close codes.

docs/protocol.md describes the same thing for people; this module enforces it. Client
messages are parsed into a `Command`; server events are encoded once with orjson.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson


class Role(StrEnum):
    ADMIN = "admin"  # merchant admin: everything for the merchant's rooms and products
    HOST = "host"
    MODERATOR = "moderator"
    VIEWER = "viewer"


STAFF = frozenset({Role.ADMIN, Role.HOST, Role.MODERATOR})
PRESENTERS = frozenset({Role.ADMIN, Role.HOST})


class CloseCode(IntEnum):
    """WebSocket close codes. 4000-4499: reconnect (with backoff); 4500-4999: do not."""

    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    SERVER_RESTARTING = 1012
    TRY_AGAIN_LATER = 1013
    TOO_SLOW = 4000
    FLOODING = 4029
    INVALID_TOKEN = 4500
    FORBIDDEN_ORIGIN = 4501
    UNKNOWN_ROOM = 4504

    @property
    def reason(self) -> str:
        return _CLOSE_REASONS[self]


_CLOSE_REASONS = {
    CloseCode.NORMAL: "bye",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.SERVER_RESTARTING: "server restarting; reconnect",
    CloseCode.TRY_AGAIN_LATER: "the server cannot reach its store; reconnect later",
    CloseCode.TOO_SLOW: "too slow: you fell behind the room; reconnect with your last offset",
    CloseCode.FLOODING: "too many messages; reconnect later",
    CloseCode.INVALID_TOKEN: "missing, invalid or expired token",
    CloseCode.FORBIDDEN_ORIGIN: "origin not allowed",
    CloseCode.UNKNOWN_ROOM: "no such room",
}


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SLOW_MODE = "slow_mode"
    MUTED = "muted"
    BANNED = "banned"
    BLOCKED_WORD = "blocked_word"
    TOO_LONG = "too_long"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A client mistake: answered with an error message; nothing changes."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# --- client -> server -------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    fields: dict[str, type]
    roles: frozenset[Role]


_ANYONE = frozenset(Role)
_MODERATORS = STAFF

COMMANDS: dict[str, Spec] = {
    "chat.send": Spec({"text": str}, _ANYONE),
    "like": Spec({"count": int}, _ANYONE),
    "product.pin": Spec({"product_id": str}, PRESENTERS),
    "product.unpin": Spec({}, PRESENTERS),
    "bag.set": Spec({"product_ids": list}, PRESENTERS),
    "room.status": Spec({"status": str}, PRESENTERS),
    "chat.delete": Spec({"message_id": str}, _MODERATORS),
    "chat.mute": Spec({"user_id": str, "seconds": int}, _MODERATORS),
    "chat.ban": Spec({"user_id": str}, _MODERATORS),
    "chat.unban": Spec({"user_id": str}, _MODERATORS),
    "chat.slow_mode": Spec({"seconds": int}, _MODERATORS),
}

ROOM_STATUSES = ("scheduled", "live", "ended")
MAX_LIKES_PER_MESSAGE = 50
MAX_MUTE_SECONDS = 7 * 24 * 3600
MAX_SLOW_MODE_SECONDS = 3600
MAX_BAG = 100


@dataclass(frozen=True)
class Command:
    type: str
    fields: dict[str, Any]
    id: str | int | None = None


def parse_command(raw: str | bytes, role: Role) -> Command:
    """Parse and check one client frame; raise ProtocolError saying exactly what is wrong (with the frame's id)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a message must be a JSON object with a 'type'")
    request_id = message.get("id")
    if request_id is not None and (not isinstance(request_id, (str, int)) or isinstance(request_id, bool)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "'id' must be a string or a number")
    try:
        return Command(message.get("type"), _fields(message, role), request_id)
    except ProtocolError as problem:
        problem.request_id = request_id
        raise


def _fields(message: dict[str, Any], role: Role) -> dict[str, Any]:
    kind = message.get("type")
    spec = COMMANDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}")
    if role not in spec.roles:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"'{kind}' is not allowed for role {role.value}")
    fields: dict[str, Any] = {}
    for name, expected in spec.fields.items():
        value = message.get(name)
        if value is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{kind}' needs the field '{name}'")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"'{name}' must be {_type_name(expected)}")
        fields[name] = value
    _check_ranges(kind, fields)
    return fields


def _type_name(expected: type) -> str:
    return {str: "a string", int: "a whole number", list: "a list"}.get(expected, expected.__name__)


def _check_ranges(kind: str, fields: dict[str, Any]) -> None:
    if kind == "like" and not 1 <= fields["count"] <= MAX_LIKES_PER_MESSAGE:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'count' must be 1 to {MAX_LIKES_PER_MESSAGE}")
    if kind == "room.status" and fields["status"] not in ROOM_STATUSES:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'status' must be one of {', '.join(ROOM_STATUSES)}")
    if kind == "chat.mute" and not 1 <= fields["seconds"] <= MAX_MUTE_SECONDS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'seconds' must be 1 to {MAX_MUTE_SECONDS}")
    if kind == "chat.slow_mode" and not 0 <= fields["seconds"] <= MAX_SLOW_MODE_SECONDS:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"'seconds' must be 0 to {MAX_SLOW_MODE_SECONDS}")
    if kind == "bag.set":
        ids = fields["product_ids"]
        if len(ids) > MAX_BAG or not all(isinstance(item, str) for item in ids):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"'product_ids' must be up to {MAX_BAG} strings")


# --- server -> client -------------------------------------------------------------

# Durable events enter the room history with an offset and are replayed after a reconnect.
DURABLE_EVENTS = frozenset(
    {
        "room.status",
        "stream.state",
        "product.pinned",
        "product.unpinned",
        "bag.changed",
        "chat.message",
        "chat.deleted",
        "chat.slow_mode",
        "sale.created",
        "sale.started",
        "sale.sold_out",
        "sale.ended",
    }
)

# Latest-value events carry no offset; within a tick only the newest per key is sent.
LATEST_VALUE_KEYS: dict[str, str | None] = {
    "viewers": None,
    "likes": None,
    "stock": "sale_id",
    "sale.toast": "sale_id",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event with its server timestamp (ms since the epoch)."""
    if kind not in DURABLE_EVENTS and kind not in LATEST_VALUE_KEYS:
        raise ValueError(f"unknown event type {kind!r}")
    return {"type": kind, "ts": now_ms(), **fields}


def coalesce_key(message: dict[str, Any]) -> str | None:
    """The key under which a latest-value event replaces older ones; None for durable events."""
    kind = message["type"]
    if kind not in LATEST_VALUE_KEYS:
        return None
    field = LATEST_VALUE_KEYS[kind]
    return kind if field is None else f"{kind}:{message.get(field)}"


def encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def error(code: ErrorCode, message: str, request_id: str | int | None = None) -> str:
    body: dict[str, Any] = {"type": "error", "code": code.value, "message": message, "ts": now_ms()}
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body).decode()


def ack(request_id: str | int | None, **fields: Any) -> str:
    return orjson.dumps({"type": "ack", "id": request_id, "ts": now_ms(), **fields}).decode()


def batch(events: list[str]) -> str:
    """One frame carrying the events of one tick, built from their already-encoded JSON."""
    return '{"type":"batch","ts":%d,"events":[%s]}' % (now_ms(), ",".join(events))
