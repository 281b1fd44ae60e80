"""Shows: each go-live to end of a room is a show, a row of the `shows` table; its numbers come from the ledger.

This module is the only writer of the `shows` table. A show opens when its room goes live and
closes when the room leaves live (ended, or back to scheduled): `server.rooms.stage` calls
`start` and `end`. A room has at most one open show (the unique partial index
`shows_one_live_per_room`), so going live twice keeps the one show; the next go-live after an
end is a new show.

Likes: the room's likes are counted for ever (server.rooms.record); a show keeps the count when it opened and its own
likes when it closes, so an open show's likes are the room's now minus that.

Peak viewers: the room's peak (`server.rooms.presence`, raised by every stats read) is reset when
a show opens, so while it is open the room's peak is the show's; `end` raises it once more with
the viewers at that moment and keeps it on the show's row.

Numbers: the paid orders of the sales made during the show (`sales.show_id`, which the sales
ledger sets from `current()` when a sale is created): orders, units, GMV per currency (quantity
times unit price), distinct buyers, and conversion = buyers / peak viewers (0 with no viewers,
at most 1). They are read from the `sales` and `orders` tables (written by server.sales.ledger)
at each call, so an order held during a show and paid after it ended still counts to that show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.ledger.client import Database, Record, at, ms
from server.protocol import now_ms
from server.rooms.catalog import new_id
from server.rooms.presence import Presence
from server.rooms.record import Room, RoomRecords


@dataclass(frozen=True)
class Numbers:
    """What a show sold: its sales, and over their paid orders the orders, units, GMV and buyers."""

    sales: int = 0
    orders: int = 0
    units: int = 0
    gmv: dict[str, int] = field(default_factory=dict)  # currency -> amount in minor units
    buyers: int = 0

    def public(self, peak_viewers: int) -> dict[str, Any]:
        return {
            "sales": self.sales,
            "orders": self.orders,
            "units": self.units,
            "gmv": self.gmv,
            "buyers": self.buyers,
            "conversion": conversion(self.buyers, peak_viewers),
        }


def conversion(buyers: int, peak_viewers: int) -> float:
    """Buyers per peak viewer, at most 1 (the peak is sampled, buyers are counted), 0 with no viewers."""
    return round(min(1.0, buyers / peak_viewers), 4) if peak_viewers > 0 else 0.0


@dataclass(frozen=True)
class Show:
    id: str
    merchant_id: str
    room_id: str
    title: str
    started_at: int  # ms since the epoch
    ended_at: int | None
    peak_viewers: int
    likes_at_start: int
    likes: int | None  # kept when it closes

    @classmethod
    def parse(cls, row: Record) -> Show:
        started_at = ms(row["started_at"])
        assert started_at is not None
        return cls(
            row["show_id"],
            row["merchant_id"],
            row["room_id"],
            row["title"],
            started_at,
            ms(row["ended_at"]),
            row["peak_viewers"],
            row["likes_at_start"],
            row["likes"],
        )

    def public(
        self, numbers: Numbers, peak_viewers: int | None = None, room_likes: int | None = None
    ) -> dict[str, Any]:
        """The show and its numbers; `peak_viewers` is the live peak of an open show (its row keeps the last one),
        `room_likes` the room's likes now (an open show's likes are counted from them)."""
        peak = max(self.peak_viewers, peak_viewers or 0)
        return {
            "show_id": self.id,
            "room_id": self.room_id,
            "title": self.title,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "peak_viewers": peak,
            "likes": self.likes_now(room_likes),
            **numbers.public(peak),
        }

    def likes_now(self, room_likes: int | None) -> int:
        """The show's likes: kept when it closed, else the room's now since it opened."""
        if self.likes is not None:
            return self.likes
        return max(0, (room_likes or 0) - self.likes_at_start)


_COLUMNS = "show_id, merchant_id, room_id, title, started_at, ended_at, peak_viewers, likes_at_start, likes"

# Per show: one row of totals (GROUPING(currency) = 1) and one per currency of its paid orders.
_NUMBERS = """
SELECT s.show_id, o.currency, GROUPING(o.currency) AS total,
       count(DISTINCT s.sale_id) AS sales,
       count(o.order_id) AS orders,
       coalesce(sum(o.quantity), 0)::bigint AS units,
       coalesce(sum(o.quantity::bigint * o.unit_price), 0)::bigint AS gmv,
       count(DISTINCT o.user_id) AS buyers
FROM sales s LEFT JOIN orders o ON o.sale_id = s.sale_id AND o.status = 'paid'
WHERE s.show_id = ANY($1::text[])
GROUP BY GROUPING SETS ((s.show_id), (s.show_id, o.currency))
"""


class Shows:
    """A room's shows (see the module docstring). Every call is one or two statements on the pool."""

    def __init__(self, db: Database, presence: Presence, records: RoomRecords) -> None:
        self.db = db
        self.presence = presence
        self.records = records

    async def start(self, room: Room) -> Show:
        """The room's open show, opened now (with a fresh peak) unless one is open already."""
        while True:
            row = await self.db.pool.fetchrow(
                "INSERT INTO shows (show_id, merchant_id, room_id, title, started_at, likes_at_start)"
                f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id) WHERE ended_at IS NULL DO NOTHING"
                f" RETURNING {_COLUMNS}",
                new_id("sh_"),
                room.merchant_id,
                room.id,
                room.title,
                at(now_ms()),
                await self.records.likes(room.id),
            )
            if row is not None:
                await self.presence.reset_peak(room.id)
                return Show.parse(row)
            current = await self.current(room.id)
            if current is not None:
                return current
            # the open show ended between the two statements: open a new one

    async def end(self, room_id: str) -> Show | None:
        """Close the room's open show, keeping its peak viewers and likes; None when none was open."""
        _, peak = await self.presence.count(room_id)
        row = await self.db.pool.fetchrow(
            "UPDATE shows SET ended_at = $2, peak_viewers = GREATEST(peak_viewers, $3),"
            " likes = GREATEST(0, $4 - likes_at_start)"
            f" WHERE room_id = $1 AND ended_at IS NULL RETURNING {_COLUMNS}",
            room_id,
            at(now_ms()),
            peak,
            await self.records.likes(room_id),
        )
        return None if row is None else Show.parse(row)

    async def current(self, room_id: str) -> Show | None:
        """The room's open show: the one a sale created now belongs to."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM shows WHERE room_id = $1 AND ended_at IS NULL", room_id
        )
        return None if row is None else Show.parse(row)

    async def of_room(self, room_id: str, limit: int) -> list[Show]:
        """The room's ended shows, newest first, at most `limit`."""
        rows = await self.db.pool.fetch(
            f"SELECT {_COLUMNS} FROM shows WHERE room_id = $1 AND ended_at IS NOT NULL"
            " ORDER BY started_at DESC LIMIT $2",
            room_id,
            limit,
        )
        return [Show.parse(row) for row in rows]

    async def numbers(self, show_ids: Sequence[str]) -> dict[str, Numbers]:
        """The numbers of each of these shows (one query); a show without sales gets zeros."""
        found = {show_id: Numbers() for show_id in show_ids}
        if not show_ids:
            return found
        totals: dict[str, Record] = {}
        gmv: dict[str, dict[str, int]] = {show_id: {} for show_id in show_ids}
        for row in await self.db.pool.fetch(_NUMBERS, list(show_ids)):
            if row["total"]:
                totals[row["show_id"]] = row
            elif row["currency"] is not None:  # (a sale with no paid order groups under a null currency)
                gmv[row["show_id"]][row["currency"]] = row["gmv"]
        for show_id, row in totals.items():
            found[show_id] = Numbers(row["sales"], row["orders"], row["units"], gmv[show_id], row["buyers"])
        return found
