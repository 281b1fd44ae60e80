"""The room wire format: every frame and event, its fields, who may send each command, error and close codes.

docs/protocol.md describes the same thing for people; this module enforces it, and
static/js/protocol.js mirrors it (tests/test_protocol.py runs it in Node and compares the two wire()s).
Client messages are parsed into a `Command`; every frame the server sends is built here, each
event encoded once with orjson; Lua scripts only join an offset to bytes encoded here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from server.errors import DomainError


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
    TOO_MANY_CONNECTIONS = 4030
    INVALID_TOKEN = 4500
    FORBIDDEN_ORIGIN = 4501
    SIGNED_OUT = 4503
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
    CloseCode.TOO_MANY_CONNECTIONS: "too many room connections from you; close one, then reconnect",
    CloseCode.INVALID_TOKEN: "missing, invalid or expired token",
    CloseCode.FORBIDDEN_ORIGIN: "origin not allowed",
    CloseCode.SIGNED_OUT: "you were signed out: sign in again",
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


class ProtocolError(DomainError):
    """A refusal of a room command, answered with an error frame of this code; nothing changes."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message, code.value)
        self.code = code
        self.request_id = request_id


# --- client -> server -------------------------------------------------------------

AUTH = "auth"  # the first frame a client sends: {"type": "auth", "token": "<access token>"}
MAX_TOKEN_LENGTH = 4096


def parse_auth(raw: str | bytes) -> str:
    """The access token of a client's first frame; ProtocolError when it is not an auth frame."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        message = None
    token = message.get("token") if isinstance(message, dict) and message.get("type") == AUTH else None
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise ProtocolError(ErrorCode.BAD_REQUEST, 'the first frame must be {"type": "auth", "token": "…"}')
    return token


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
        return Command(str(message.get("type")), _fields(message, role), request_id)
    except ProtocolError as problem:
        problem.request_id = request_id
        raise


def _fields(message: dict[str, Any], role: Role) -> dict[str, Any]:
    kind = message.get("type")
    spec = COMMANDS.get(kind) if isinstance(kind, str) else None
    if spec is None or not isinstance(kind, str):
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

# A sale's lifecycle, in order: each event carries the whole public sale, and the sale's status after it.
SALE_EVENTS = ("sale.created", "sale.started", "sale.sold_out", "sale.ended")
SALE_STATUSES = ("scheduled", "live", "sold_out", "ended")

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
        *SALE_EVENTS,
        "sale.updated",  # a host started a sale now, restocked or extended it: the whole public sale
    }
)

# Latest-value events carry no offset; within a tick only the newest per key is sent.
LATEST_VALUE_KEYS: dict[str, str | None] = {
    "viewers": None,
    "likes": None,
    "stock": "sale_id",
    "sale.toast": "sale_id",
    "sharers": None,  # the room's top sharers (docs/referrals.md)
    "earnings": "merchant_id",  # a sharer's own numbers: private
    "groups": "sale_id",  # a group-buy offer's open groups and counts (docs/group-buys.md)
    "group": "id",  # a member's own group: private
    "giveaway": "id",  # a giveaway's public card (docs/giveaways.md)
    "auction": "id",  # an auction's card: a higher `version` replaces a lower (docs/auctions.md)
}

# Latest-value events addressed to one user: only that user's sockets in the room get them.
PRIVATE_EVENTS = frozenset({"earnings", "group"})

# Personal events (docs/customer-service.md): addressed to one person, or to one merchant's staff, on any room
# socket they have open, in any room; never in a room's history or state. The key a newer one replaces an older
# one under within a tick, or None for one never replaced.
PERSONAL_EVENTS: dict[str, str | None] = {
    "service.message": None,
    "service.thread": "thread_id",
    "service.typing": "thread_id",
    "giveaway.won": None,  # docs/giveaways.md
    "auction.outbid": "auction_id",  # docs/auctions.md
    "auction.won": None,
    "product.back": None,  # a product someone waited for has units again (docs/sales.md)
}

FRAMES = ("snapshot", "recovered", "batch", "ack", "error")


def now_ms() -> int:
    return int(time.time() * 1000)


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event with its server timestamp (ms since the epoch)."""
    if kind not in DURABLE_EVENTS and kind not in LATEST_VALUE_KEYS and kind not in PERSONAL_EVENTS:
        raise ValueError(f"unknown event type {kind!r}")
    return {"type": kind, "ts": now_ms(), **fields}


def stock(sale_id: str, available: int, held: int, sold: int, quantity: int, version: int) -> dict[str, Any]:
    """The live stock of a sale (a latest-value event: a newer `version` replaces an older one)."""
    return event(
        "stock", sale_id=sale_id, available=available, held=held, sold=sold, quantity=quantity, version=version
    )


def coalesce_key(message: dict[str, Any]) -> str | None:
    """The key under which a latest-value event replaces older ones; None for durable events."""
    kind = message["type"]
    if kind not in LATEST_VALUE_KEYS:
        return None
    field = LATEST_VALUE_KEYS[kind]
    return kind if field is None else f"{kind}:{message.get(field)}"


def encode(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def with_offset(offset: int, encoded: str) -> str:
    """A durable event as clients see it: its offset first, then the event as it was encoded."""
    return '{"offset":%d,%s' % (offset, encoded[1:])


def with_after(after: int, event: str) -> str:
    """A durable event (with its offset) in a sampled chat stream, where the event before it is not the offset
    before: `after` is the offset of the one before it in that stream (docs/protocol.md, "Sampled chat")."""
    offset, _, rest = event.partition(",")
    return '%s,"after":%d,%s' % (offset, after, rest)


# Between processes (Redis pub/sub) a room's message is "<offset> <event JSON>", offset 0 for a
# latest-value event, or "@<user id> <event JSON>" for a private one (PRIVATE_EVENTS). Lua scripts only join
# the offset they assign to the event Python encoded.


def bus_message(encoded: str, offset: int = 0) -> str:
    return f"{offset} {encoded}"


def bus_private(user_id: str, encoded: str) -> str:
    """A private event for one user's sockets in the room."""
    return f"@{user_id} {encoded}"


def bus_staff(merchant_id: str, encoded: str) -> str:
    """A personal event for the staff of one merchant (on the personal channel)."""
    return f"%{merchant_id} {encoded}"


def parse_personal(raw: str) -> tuple[str, str, str]:
    """A personal event's audience ("@": a user, "%": a merchant's staff), its id, and the event JSON."""
    head, _, encoded = raw.partition(" ")
    return head[:1], head[1:], encoded


def personal_key(message: dict[str, Any]) -> str | None:
    """The key under which a personal event replaces an older one; None for a message (never replaced)."""
    field = PERSONAL_EVENTS[message["type"]]
    return None if field is None else f"{message['type']}:{message.get(field)}"


def parse_bus_message(raw: str) -> tuple[int, str, str | None]:
    """The offset (0: latest-value), the event JSON and the user it is for (None: everyone) of a message
    between processes."""
    head, _, encoded = raw.partition(" ")
    if head.startswith("@"):
        return 0, encoded, head[1:]
    return int(head), encoded, None


def snapshot(state: dict[str, Any]) -> str:
    """The first frame a joining viewer gets: the whole room."""
    return orjson.dumps({"type": "snapshot", "ts": now_ms(), "recovered": False, **state}).decode()


def recovered(offset: int, epoch: str, viewers: int, likes: int, events: str) -> str:
    """The first frame of a viewer that came back: every durable event it missed, already encoded (with offsets)
    and joined by commas (server.live.replay shares one such text among the viewers that missed the same)."""
    head = orjson.dumps(
        {"type": "recovered", "ts": now_ms(), "offset": offset, "epoch": epoch, "viewers": viewers, "likes": likes}
    )
    return '%s,"events":[%s]}' % (head[:-1].decode(), events)


def batch(events: list[str]) -> str:
    """One frame carrying the events of one tick, built from their already-encoded JSON."""
    return '{"type":"batch","ts":%d,"events":[%s]}' % (now_ms(), ",".join(events))


def error(code: ErrorCode, message: str, request_id: str | int | None = None) -> str:
    body: dict[str, Any] = {"type": "error", "code": code.value, "message": message, "ts": now_ms()}
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body).decode()


def ack(request_id: str | int | None, **fields: Any) -> str:
    return orjson.dumps({"type": "ack", "id": request_id, "ts": now_ms(), **fields}).decode()


def wire() -> dict[str, Any]:
    """The protocol's names and numbers, as static/js/protocol.js's wire() must give them (a test compares)."""
    return {
        "events": {
            "durable": sorted(DURABLE_EVENTS),
            "latest": dict(LATEST_VALUE_KEYS),
            "private": sorted(PRIVATE_EVENTS),
            "personal": dict(PERSONAL_EVENTS),
        },
        "sale_events": list(SALE_EVENTS),
        "sale_statuses": list(SALE_STATUSES),
        "auth": AUTH,
        "commands": sorted(COMMANDS),
        "error_codes": sorted(code.value for code in ErrorCode),
        "close_codes": {code.name: code.value for code in CloseCode},
        "room_statuses": list(ROOM_STATUSES),
        "limits": {"max_likes_per_message": MAX_LIKES_PER_MESSAGE},
    }
