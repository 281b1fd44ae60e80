"""Personal events on their way (docs/protocol.md, Events: customer service, giveaway wins, auction news): each
addressed to one person or to one merchant's staff, published on the personal channel that every process's hub
reads (server.live.hub)."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from server import keys, protocol
from server.errors import STORE_ERRORS

log = logging.getLogger("livecart.personal")

Audience = tuple[str, str]  # ("user", user id) or ("staff", merchant id)


def to_user(user_id: str) -> Audience:
    return ("user", user_id)


def to_staff(merchant_id: str) -> Audience:
    return ("staff", merchant_id)


class Delivery:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def send(self, events: list[tuple[Audience, dict[str, Any]]]) -> None:
        """Publish the events in one round trip. They are live news of what is stored already: Redis away, they are
        lost (logged), and the pages fetch the threads again when their socket comes back."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (kind, target), event in events:
                    encoded = protocol.encode(event)
                    message = (
                        protocol.bus_private(target, encoded) if kind == "user" else protocol.bus_staff(target, encoded)
                    )
                    pipe.spublish(keys.personal_channel(), message)
                await pipe.execute()
        except STORE_ERRORS as error:
            log.warning("%d personal events not published: %r", len(events), error)
