"""Auctions in Redis, the hot path (docs/auctions.md): open, bid, close, bar; the bid log read and emptied for the
record; the keys dropped once settled.

Contract: every change is one Lua script (server/auctions/lua/auction_*.lua) on the auction's keys, which share the
room's {hash tag} (the bid script reads the room's bans). A bid is checked against the Redis clock and applied, with
every price it sets appended to the bid log, all at once or not at all; the same idempotency key answers the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from server import keys
from server.auctions.rules import Auction, Terms, terms_json, terms_of
from server.store import scripts
from server.store.batcher import ScriptBatcher

LOG_BATCH = 1000


def _keys(room_id: str, auction_id: str) -> list[str]:
    """The bid script's keys, in its order."""
    return [
        keys.auction(room_id, auction_id),
        keys.auction_bidders(room_id, auction_id),
        keys.auction_keys(room_id, auction_id),
        keys.auction_log(room_id, auction_id),
        keys.auction_barred(room_id, auction_id),
        keys.banned(room_id),
    ]


@dataclass(frozen=True)
class Bid:
    """A bid script's answer."""

    verdict: str  # leading, outbid, raised, existing, or a refusal (docs/auctions.md)
    answer: dict[str, Any]


class AuctionStore:
    def __init__(self, redis: Redis, batcher: ScriptBatcher) -> None:
        self.redis = redis
        self.batcher = batcher
        self._create = scripts.register(redis, __file__, "auction_create")
        self._bid = scripts.register(redis, __file__, "auction_bid")
        self._close = scripts.register(redis, __file__, "auction_close")
        self._bar = scripts.register(redis, __file__, "auction_bar")

    async def open(
        self, auction_id: str, merchant_id: str, room_id: str, terms: Terms, barred: list[str]
    ) -> tuple[int, int]:
        """Bidding open from now (the Redis clock) for the terms' duration: (starts_at, ends_at)."""
        fields = {
            "id": auction_id,
            "merchant_id": merchant_id,
            "room_id": room_id,
            "terms": terms_json(terms),
            "starting_bid": terms.starting_bid,
            "increments": orjson.dumps(terms.increments).decode(),
            "mode": terms.mode,
            "extend_ms": terms.extend_ms,
        }
        starts, ends = await self._create(
            keys=[keys.auction(room_id, auction_id), keys.auction_barred(room_id, auction_id)],
            args=[orjson.dumps(fields).decode(), terms.duration_ms, *barred],
        )
        await self.redis.zadd(keys.auctions_due(), {f"{room_id} {auction_id}": int(ends)})
        return int(starts), int(ends)

    async def get(self, room_id: str, auction_id: str) -> Auction | None:
        fields = cast(dict[str, str], await self.redis.hgetall(keys.auction(room_id, auction_id)))
        if not fields:
            return None
        return Auction(
            id=auction_id,
            merchant_id=fields["merchant_id"],
            room_id=room_id,
            terms=terms_of(fields["terms"]),
            state=fields["state"],
            price=int(fields["price"]),
            leader=fields["leader"],
            leader_name=fields["leader_name"],
            bids=int(fields["bids"]),
            starts_at=int(fields["starts_at"]),
            ends_at=int(fields["ends_at"]),
            extensions=int(fields["extensions"]),
            version=int(fields["version"]),
        )

    async def exists(self, room_id: str, auction_id: str) -> bool:
        return bool(await self.redis.exists(keys.auction(room_id, auction_id)))

    async def bid(
        self, room_id: str, auction_id: str, user_id: str, device_id: str | None, key: str, amount: int, max_: int,
        name: str,
    ) -> Bid:  # fmt: skip
        verdict, raw = await self.batcher.call(
            self._bid, _keys(room_id, auction_id), [user_id, device_id or "", key, amount, max_, name]
        )
        return Bid(verdict, orjson.loads(raw) if raw else {})

    async def close(self, room_id: str, auction_id: str) -> tuple[str, dict[str, Any]]:
        """Close it if its end has come: (closed | already | not_due | unknown, its final fields)."""
        verdict, raw = await self._close(keys=[keys.auction(room_id, auction_id)])
        return verdict, orjson.loads(raw) if raw else {}

    async def due(self, now: int, limit: int = 100) -> list[tuple[str, str]]:
        """Auctions whose end (as last scheduled) has come: (room id, auction id)."""
        members = cast(list[str], await self.redis.zrangebyscore(keys.auctions_due(), 0, now, start=0, num=limit))
        return [(room_id, auction_id) for room_id, _, auction_id in (member.partition(" ") for member in members)]

    async def come_back(self, room_id: str, auction_id: str, at_ms: int | None) -> None:
        """Visit again at `at_ms` (an extension moved the end), or never (None: closed and recorded)."""
        member = f"{room_id} {auction_id}"
        if at_ms is None:
            await self.redis.zrem(keys.auctions_due(), member)
        else:
            await self.redis.zadd(keys.auctions_due(), {member: at_ms})

    async def bar(self, room_id: str, auction_id: str, user_id: str, barred: bool) -> None:
        await self._bar(
            keys=[keys.auction(room_id, auction_id), keys.auction_barred(room_id, auction_id)],
            args=[user_id, "bar" if barred else "unbar"],
        )

    async def unsaved_bids(self, room_id: str, auction_id: str) -> list[tuple[str, dict[str, str]]]:
        """Bids of the log not yet in the record, oldest first (stream id, fields)."""
        entries = await self.redis.xrange(keys.auction_log(room_id, auction_id), count=LOG_BATCH)
        return cast(list[tuple[str, dict[str, str]]], entries)

    async def saved_bids(self, room_id: str, auction_id: str, entry_ids: list[str]) -> None:
        if entry_ids:
            await self.redis.xdel(keys.auction_log(room_id, auction_id), *entry_ids)

    async def drop(self, room_id: str, auction_id: str) -> None:
        """The auction is settled and its log is in the record: its keys leave Redis."""
        bidding = _keys(room_id, auction_id)
        await self.redis.delete(*(key for key in bidding if key != keys.banned(room_id)))  # the room's bans stay
