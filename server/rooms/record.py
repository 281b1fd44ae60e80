"""The room record: the one module that writes and parses a room's Redis hash, and that appends to its history.

A room's hash holds: id, merchant_id, title, status (scheduled, live, ended), stream (online,
offline), pinned (the product card JSON, or ""), bag (JSON list of cards), slow_mode (seconds),
offset (of the newest durable event), epoch (changes when the history starts over), likes, and
one field "sale:<id>" per sale until the sale is archived (the public sale as last announced, JSON),
with "groups:<id>" for a group-buy offer (its board as last published, JSON; docs/group-buys.md), sharers
(the room's top sharers as last published, JSON; docs/referrals.md), and "giveaway:<id>" and "auction:<id>" for the
room's latest giveaway and auction (their cards as last published, JSON; docs/giveaways.md, docs/auctions.md).

Contract: a durable event is given the next offset of its room, stored in the room's bounded
history and published, all atomically with the record fields that change with it
(room_publish.lua). A latest-value event is only published (at most once delivery).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server import keys, protocol
from server.errors import NotFound
from server.metrics import redis_timer
from server.store import scripts

_SALE = "sale:"
_GROUPS = "groups:"
_GIVEAWAY = "giveaway:"
_AUCTION = "auction:"


class UnknownRoom(NotFound):
    """The room does not exist (or no longer does)."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"no room '{room_id}'")
        self.room_id = room_id


@dataclass(frozen=True)
class Room:
    """What anyone may know of a room (its public card)."""

    id: str
    merchant_id: str
    title: str
    status: str
    stream: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoomRecord:
    """A room's whole record, parsed."""

    room: Room
    pinned: dict[str, Any] | None
    bag: list[dict[str, Any]]
    slow_mode: int
    offset: int
    epoch: str
    likes: int
    sales: dict[str, dict[str, Any]]  # sale id -> public sale as last announced
    sharers: list[dict[str, Any]]  # the room's top sharers as last published
    groups: dict[str, dict[str, Any]]  # sale id -> a group-buy offer's board as last published
    giveaways: dict[str, dict[str, Any]]  # giveaway id -> its card as last published
    auctions: dict[str, dict[str, Any]]  # auction id -> its card as last published

    @classmethod
    def parse(cls, fields: dict[str, str]) -> RoomRecord:
        return cls(
            room=Room(fields["id"], fields["merchant_id"], fields["title"], fields["status"], fields["stream"]),
            pinned=orjson.loads(fields["pinned"]) if fields["pinned"] else None,
            bag=orjson.loads(fields["bag"]),
            slow_mode=int(fields["slow_mode"]),
            offset=int(fields["offset"]),
            epoch=fields["epoch"],
            likes=int(fields["likes"]),
            sales=_prefixed(fields, _SALE),
            sharers=orjson.loads(fields.get("sharers") or "[]"),
            groups=_prefixed(fields, _GROUPS),
            giveaways=_prefixed(fields, _GIVEAWAY),
            auctions=_prefixed(fields, _AUCTION),
        )


def _prefixed(fields: dict[str, str], prefix: str) -> dict[str, dict[str, Any]]:
    """The record's JSON fields named "<prefix><id>", by id."""
    return {name[len(prefix) :]: orjson.loads(raw) for name, raw in fields.items() if name.startswith(prefix)}


# The record fields that change with each kind of durable event (passed to RoomRecords.publish).
Change = dict[str, str | int]


def pinned(card: dict[str, Any] | None) -> Change:
    return {"pinned": orjson.dumps(card).decode() if card is not None else ""}


def bag(cards: list[dict[str, Any]]) -> Change:
    return {"bag": orjson.dumps(cards).decode()}


def status(value: str) -> Change:
    return {"status": value}


def stream(online: bool) -> Change:
    return {"stream": "online" if online else "offline"}


def slow_mode(seconds: int) -> Change:
    return {"slow_mode": seconds}


def sale(public_sale: dict[str, Any]) -> Change:
    return {f"{_SALE}{public_sale['id']}": orjson.dumps(public_sale).decode()}


class RoomRecords:
    """Create, read and change room records; publish their events (see the module contract)."""

    def __init__(self, redis: Redis, history_size: int = 1000) -> None:
        self.redis = redis
        self.history_size = history_size
        self._create = scripts.register(redis, __file__, "room_create")
        self._publish = scripts.register(redis, __file__, "room_publish")
        self._board = scripts.register(redis, __file__, "room_board")
        self._start_over = scripts.register(redis, __file__, "room_start_over")

    async def create(self, merchant_id: str, room_id: str, title: str) -> Room | None:
        """A new room, scheduled and offline; None when the id is taken."""
        fields: Change = {
            "id": room_id,
            "merchant_id": merchant_id,
            "title": title,
            "status": "scheduled",
            "stream": "offline",
            "pinned": "",
            "bag": "[]",
            "slow_mode": 0,
            "offset": 0,
            "epoch": secrets.token_hex(4),
            "likes": 0,
        }
        pairs = [item for pair in fields.items() for item in pair]
        if not await self._create(keys=[keys.room(room_id)], args=pairs):
            return None
        # Then listed (another slot on a Redis Cluster: not in the same script); a crash between leaves it unlisted.
        await self.redis.sadd(keys.merchant_rooms(merchant_id), room_id)
        return Room(room_id, merchant_id, title, "scheduled", "offline")

    async def get(self, room_id: str) -> RoomRecord | None:
        fields = cast(dict[str, str], await self.redis.hgetall(keys.room(room_id)))
        return RoomRecord.parse(fields) if fields else None

    async def card(self, room_id: str) -> Room | None:
        values = cast(
            list[str], await self.redis.hmget(keys.room(room_id), ["id", "merchant_id", "title", "status", "stream"])
        )
        return None if values[0] is None else Room(*values)

    async def cards(self, merchant_id: str) -> list[Room]:
        """The merchant's rooms, by id."""
        ids = sorted(cast(set[str], await self.redis.smembers(keys.merchant_rooms(merchant_id))))
        found = [await self.card(room_id) for room_id in ids]
        return [room for room in found if room is not None]

    async def publish(self, room_id: str, event: dict[str, Any], change: Change | None = None) -> int:
        """Publish a durable event with the record fields it changes; return its offset."""
        args: list[str | int] = [keys.channel(room_id), protocol.encode(event), self.history_size]
        for field, value in (change or {}).items():
            args += [field, value]
        try:
            with redis_timer("publish"):
                return int(await self._publish(keys=[keys.room(room_id), keys.history(room_id)], args=args))
        except ResponseError as error:
            if str(error).startswith("NOROOM"):
                raise UnknownRoom(room_id) from None
            raise

    async def forget_sale(self, room_id: str, sale_id: str) -> None:
        """The sale left Redis (archived, read from the record since): the room stops listing it."""
        await self.redis.hdel(keys.room(room_id), f"{_SALE}{sale_id}", f"{_GROUPS}{sale_id}")

    async def publish_latest(self, room_id: str, event: dict[str, Any]) -> None:
        """Publish a latest-value event (viewer count, likes, stock, toast) to every process."""
        await self.redis.spublish(keys.channel(room_id), protocol.bus_message(protocol.encode(event)))

    async def publish_privately(self, messages: list[tuple[str, list[str], dict[str, Any]]]) -> None:
        """Publish private events (protocol.PRIVATE_EVENTS), each (room id, its users, event) to those users' sockets
        in the room on every process, in one round trip however many (a storm's group changes)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, user_ids, event in messages:
                encoded = protocol.encode(event)
                for user_id in user_ids:
                    pipe.spublish(keys.channel(room_id), protocol.bus_private(user_id, encoded))
            await pipe.execute()

    async def publish_sharers(self, room_id: str, top: list[dict[str, Any]]) -> None:
        """Keep the room's top sharers in its record (a joining viewer's snapshot has them) and publish them."""
        await self._publish_board(room_id, "sharers", top, protocol.event("sharers", top=top))

    async def publish_groups(self, room_id: str, sale_id: str, board: dict[str, Any]) -> None:
        """Keep a group-buy offer's board in the room's record and publish it (the `groups` event)."""
        await self._publish_board(room_id, f"{_GROUPS}{sale_id}", board, protocol.event("groups", **board))

    async def publish_giveaway(self, room_id: str, card: dict[str, Any]) -> None:
        """Keep a giveaway's card in the room's record and publish it (the `giveaway` event)."""
        await self._publish_board(room_id, f"{_GIVEAWAY}{card['id']}", card, protocol.event("giveaway", **card))

    async def publish_auction(self, room_id: str, card: dict[str, Any]) -> None:
        """Keep an auction's card in the room's record and publish it (the `auction` event); an older `version` than
        the record's is not kept (processes publish out of order), the room's pages drop it too."""
        await self._publish_board(
            room_id, f"{_AUCTION}{card['id']}", card, protocol.event("auction", **card), card["version"]
        )

    async def forget_moments(self, room_id: str, giveaway_ids: list[str], auction_ids: list[str]) -> None:
        """The room stops showing these giveaways and auctions (a new one of the kind replaces them)."""
        fields = [f"{_GIVEAWAY}{item}" for item in giveaway_ids] + [f"{_AUCTION}{item}" for item in auction_ids]
        fields += [f"version:{field}" for field in fields]
        if fields:
            await self.redis.hdel(keys.room(room_id), *fields)

    async def _publish_board(
        self, room_id: str, field: str, board: object, event: dict[str, Any], version: int = 0
    ) -> None:
        await self._board(
            keys=[keys.room(room_id)],
            args=[
                keys.channel(room_id),
                field,
                orjson.dumps(board).decode(),
                protocol.bus_message(protocol.encode(event)),
                version,
            ],
        )

    async def likes(self, room_id: str) -> int:
        """The room's likes so far (0 for no room)."""
        return int(await self.redis.hget(keys.room(room_id), "likes") or 0)

    async def add_likes(self, room_id: str, count: int) -> int:
        """Add likes to a room; return its new total."""
        return int(await self.redis.hincrby(keys.room(room_id), "likes", count))

    async def start_over(self, room_id: str, seen: int, epoch: str) -> bool:
        """A new epoch for a room whose offset went back below `seen` (Redis lost its newest writes), unless a
        process gave it one first; True when this call did."""
        new_epoch = secrets.token_hex(4)
        return bool(await self._start_over(keys=[keys.room(room_id)], args=[seen, epoch, new_epoch]))

    async def offsets(self, room_ids: list[str]) -> dict[str, int]:
        """Each room's newest offset, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.hget(keys.room(room_id), "offset")
            values = await pipe.execute()
        return {room_id: int(value or 0) for room_id, value in zip(room_ids, values, strict=True)}
