"""Redis key names. Every key of a merchant or a room shares one {hash tag}, so each works on Redis Cluster."""

from __future__ import annotations


def merchant(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}"


def products(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:products"


def merchant_rooms(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:rooms"


def blocklist(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:blocklist"


def room(room_id: str) -> str:
    return f"room:{{{room_id}}}"


def history(room_id: str) -> str:
    return f"room:{{{room_id}}}:history"


def presence(room_id: str) -> str:
    return f"room:{{{room_id}}}:presence"


def banned(room_id: str) -> str:
    return f"room:{{{room_id}}}:banned"


def muted(room_id: str) -> str:
    return f"room:{{{room_id}}}:muted"


def chat_rate(room_id: str, user_id: str) -> str:
    return f"room:{{{room_id}}}:rate:{user_id}"


def chat_slow(room_id: str, user_id: str) -> str:
    return f"room:{{{room_id}}}:slow:{user_id}"


def channel(room_id: str) -> str:
    """The pub/sub channel that carries a room's events between server processes."""
    return f"room:{{{room_id}}}:events"
