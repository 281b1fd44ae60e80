"""THE auctions, their bids, awards and the merchants' barred bidders in PostgreSQL (docs/auctions.md): their one
writer. Bids arrive from the Redis bid log (unique per auction and sequence: copied once however often); an award
is unique per auction and round and per auction and bidder (a win is offered to each bidder at most once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from server.auctions.rules import Auction, AuctionRefused, Refusal, Terms, terms_json, terms_of
from server.ledger.client import Database, at, ms

_SELECT = (
    "SELECT a.*, (SELECT row_to_json(w) FROM (SELECT round, outcome FROM auction_awards x"
    " WHERE x.auction_id = a.auction_id ORDER BY round DESC LIMIT 1) w) AS award FROM auctions a"
)


def _auction(row: asyncpg.Record) -> Auction:
    award = None if row["award"] is None else orjson.loads(row["award"])
    return Auction(
        id=row["auction_id"],
        merchant_id=row["merchant_id"],
        room_id=row["room_id"],
        terms=terms_of(row["terms"]),
        state=row["state"],
        price=row["price"] or 0,
        leader=row["winner_id"] or "",
        leader_name=row["winner_name"] or "",
        bids=row["bids"],
        starts_at=ms(row["starts_at"]) or 0,
        ends_at=ms(row["ends_at"]) or 0,
        extensions=row["extensions"],
        version=row["version"],
        award=None if award is None else {"round": award["round"], "state": award["outcome"] or "offered"},
    )


class AuctionRecord:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(
        self, auction_id: str, merchant_id: str, room_id: str, terms: Terms, host_id: str, starts_at: int, ends_at: int
    ) -> None:
        """The new auction (auction_running when the room has one open: nothing written)."""
        try:
            await self.db.pool.execute(
                "INSERT INTO auctions (auction_id, merchant_id, room_id, terms, starts_at, ends_at, created_by, state,"
                " version) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, 'open', 1)",
                auction_id,
                merchant_id,
                room_id,
                terms_json(terms),
                at(starts_at),
                at(ends_at),
                host_id,
            )
        except asyncpg.UniqueViolationError:
            raise AuctionRefused(Refusal.AUCTION_RUNNING) from None

    async def get(self, auction_id: str) -> Auction | None:
        row = await self.db.pool.fetchrow(f"{_SELECT} WHERE a.auction_id = $1", auction_id)
        return None if row is None else _auction(row)

    async def in_states(self, *states: str) -> list[Auction]:
        rows = await self.db.pool.fetch(f"{_SELECT} WHERE a.state = ANY($1::text[])", list(states))
        return [_auction(row) for row in rows]

    async def of_merchant(self, merchant_id: str, limit: int = 50) -> list[Auction]:
        rows = await self.db.pool.fetch(
            f"{_SELECT} WHERE a.merchant_id = $1 ORDER BY a.starts_at DESC LIMIT $2", merchant_id, limit
        )
        return [_auction(row) for row in rows]

    async def previous_in_room(self, room_id: str, auction_id: str) -> list[str]:
        rows = await self.db.pool.fetch(
            "SELECT auction_id FROM auctions WHERE room_id = $1 AND auction_id <> $2", room_id, auction_id
        )
        return [row["auction_id"] for row in rows]

    async def purge(self, before: datetime) -> int:
        """Remove the settled auctions (with their bids and awards) that ended before `before`."""
        status = await self.db.pool.execute(
            "DELETE FROM auctions WHERE ends_at < $1 AND state IN ('sold', 'unsold')", before
        )
        return int(status.split()[-1])

    # --- bids --------------------------------------------------------------------------------

    async def save_bids(self, auction_id: str, bids: list[dict[str, str]]) -> None:
        """Bids from the log (a repeat changes nothing)."""
        await self.db.pool.executemany(
            "INSERT INTO auction_bids (auction_id, seq, user_id, name, amount, proxy, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (
                    auction_id,
                    int(bid["seq"]),
                    bid["user"],
                    bid["name"],
                    int(bid["amount"]),
                    bid["proxy"] == "1",
                    at(int(bid["at"])),
                )
                for bid in bids
            ],
        )

    async def bids(self, auction_id: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT seq, name, amount, proxy, at FROM auction_bids WHERE auction_id = $1 ORDER BY seq DESC LIMIT $2",
            auction_id,
            limit,
        )
        return [{**dict(row), "at": ms(row["at"])} for row in rows]

    # --- the result ----------------------------------------------------------------------------

    async def closed(self, auction_id: str, final: dict[str, Any]) -> Auction:
        """The bidding closed with these final fields (auction_close.lua's): `closed`, or `unsold` with no bid."""
        await self.db.pool.execute(
            "UPDATE auctions SET state = CASE WHEN $2 = '' THEN 'unsold' ELSE 'closed' END, winner_id = nullif($2, ''),"
            " winner_name = nullif($3, ''), price = nullif($4, 0), bids = $5, ends_at = $6, extensions = $7,"
            " version = greatest(version, $8), closed_at = now() WHERE auction_id = $1 AND state = 'open'",
            auction_id,
            final["leader"],
            final["leader_name"],
            final["price"],
            final["bids"],
            at(final["ends_at"]),
            final["extensions"],
            final["version"],
        )
        auction = await self.get(auction_id)
        assert auction is not None
        return auction

    async def final_from_bids(self, auction: Auction) -> dict[str, Any]:
        """An auction's final fields as its recorded bids say (Redis lost its keys): the highest bid, earlier first."""
        top = await self.db.pool.fetchrow(
            "SELECT user_id, name, amount, (SELECT count(*) FROM auction_bids WHERE auction_id = $1) AS bids"
            " FROM auction_bids WHERE auction_id = $1 ORDER BY amount DESC, seq LIMIT 1",
            auction.id,
        )
        return {
            "leader": "" if top is None else top["user_id"],
            "leader_name": "" if top is None else top["name"],
            "price": 0 if top is None else top["amount"],
            "bids": 0 if top is None else top["bids"],
            "ends_at": auction.ends_at,
            "extensions": auction.extensions,
            "version": auction.version + 1,
        }

    async def next_bidder(self, auction_id: str) -> tuple[str, str, int] | None:
        """The highest bidder not offered the win yet, at their own highest bid (an earlier bid first at equal
        amounts): (user id, name, price)."""
        row = await self.db.pool.fetchrow(
            "SELECT user_id, name, amount FROM (SELECT DISTINCT ON (user_id) user_id, name, amount, seq"
            " FROM auction_bids b WHERE auction_id = $1 AND NOT EXISTS (SELECT 1 FROM auction_awards x"
            " WHERE x.auction_id = b.auction_id AND x.user_id = b.user_id)"
            " ORDER BY user_id, amount DESC, seq) best ORDER BY amount DESC, seq LIMIT 1",
            auction_id,
        )
        return None if row is None else (row["user_id"], row["name"], row["amount"])

    async def offer(self, auction_id: str, round_: int, user_id: str, name: str, price: int, sale_id: str) -> bool:
        """Offer the win to a bidder (a repeat changes nothing): the auction is `awarded`. False when the auction was
        settled meanwhile (another process came first): nothing is offered."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            state = await connection.fetchval("SELECT state FROM auctions WHERE auction_id = $1 FOR UPDATE", auction_id)
            if state not in ("closed", "awarded"):
                return False
            offered = await connection.execute(
                "INSERT INTO auction_awards (auction_id, round, user_id, name, price, sale_id, offered_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT DO NOTHING",
                auction_id,
                round_,
                user_id,
                name,
                price,
                sale_id,
            )
            if offered == "INSERT 0 1":
                await connection.execute(
                    "UPDATE auctions SET state = 'awarded', winner_id = $2, winner_name = $3, price = $4,"
                    " version = version + 1 WHERE auction_id = $1",
                    auction_id,
                    user_id,
                    name,
                    price,
                )
                return True
            holder = await connection.fetchval(
                "SELECT user_id FROM auction_awards WHERE auction_id = $1 AND round = $2 AND outcome IS NULL",
                auction_id,
                round_,
            )
            return bool(holder == user_id)

    async def held(self, auction_id: str, round_: int, order_id: str) -> None:
        await self.db.pool.execute(
            "UPDATE auction_awards SET order_id = $3 WHERE auction_id = $1 AND round = $2 AND order_id IS NULL",
            auction_id,
            round_,
            order_id,
        )

    async def awards(self, auction_id: str) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT round, user_id, name, price, sale_id, order_id, offered_at, outcome, settled_at"
            " FROM auction_awards WHERE auction_id = $1 ORDER BY round",
            auction_id,
        )
        return [{**dict(row), "offered_at": ms(row["offered_at"]), "settled_at": ms(row["settled_at"])} for row in rows]

    async def current_award(self, auction_id: str) -> dict[str, Any] | None:
        awards = await self.awards(auction_id)
        return awards[-1] if awards else None

    async def settle(self, auction_id: str, round_: int, outcome: str, final_state: str | None) -> None:
        """The offer of `round_` was paid or not; the auction's state after it (sold, unsold), or None: still
        awarded (the win goes on to the next bidder)."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            settled = await connection.execute(
                "UPDATE auction_awards SET outcome = $3, settled_at = now()"
                " WHERE auction_id = $1 AND round = $2 AND outcome IS NULL",
                auction_id,
                round_,
                outcome,
            )
            if settled == "UPDATE 1" and final_state is not None:
                await connection.execute(
                    "UPDATE auctions SET state = $2, version = version + 1 WHERE auction_id = $1",
                    auction_id,
                    final_state,
                )

    async def settle_unsold(self, auction_id: str) -> None:
        """Nobody (left) to offer the win to."""
        await self.db.pool.execute(
            "UPDATE auctions SET state = 'unsold', version = version + 1 WHERE auction_id = $1"
            " AND state IN ('closed', 'awarded')",
            auction_id,
        )

    async def to_notify(self, limit: int = 50) -> list[dict[str, Any]]:
        """Offers not told by messenger yet, claimed for this process (`notice_failed` gives one back)."""
        rows = await self.db.pool.fetch(
            "UPDATE auction_awards SET notified_at = now() WHERE (auction_id, round) IN (SELECT auction_id, round"
            " FROM auction_awards WHERE notified_at IS NULL AND order_id IS NOT NULL AND outcome IS NULL LIMIT $1"
            " FOR UPDATE SKIP LOCKED) RETURNING auction_id, round, user_id, price, order_id",
            limit,
        )
        return [dict(row) for row in rows]

    async def notice_failed(self, auction_id: str, round_: int) -> None:
        await self.db.pool.execute(
            "UPDATE auction_awards SET notified_at = NULL WHERE auction_id = $1 AND round = $2", auction_id, round_
        )

    # --- barred bidders --------------------------------------------------------------------------

    async def bar(self, merchant_id: str, user_id: str, by: str) -> bool:
        """Bar a bidder from the merchant's auctions; False if they were already."""
        done = await self.db.pool.execute(
            "INSERT INTO auction_bars (merchant_id, user_id, barred_by, barred_at) VALUES ($1, $2, $3, now())"
            " ON CONFLICT DO NOTHING",
            merchant_id,
            user_id,
            by,
        )
        return bool(done == "INSERT 0 1")

    async def unbar(self, merchant_id: str, user_id: str) -> bool:
        done = await self.db.pool.execute(
            "DELETE FROM auction_bars WHERE merchant_id = $1 AND user_id = $2", merchant_id, user_id
        )
        return bool(done == "DELETE 1")

    async def barred(self, merchant_id: str) -> list[str]:
        rows = await self.db.pool.fetch("SELECT user_id FROM auction_bars WHERE merchant_id = $1", merchant_id)
        return [row["user_id"] for row in rows]

    async def bidders(self, merchant_id: str) -> list[dict[str, Any]]:
        """Bidders with unpaid wins (strikes) or barred, most strikes first."""
        rows = await self.db.pool.fetch(
            "SELECT user_id, coalesce(max(name), (SELECT u.name FROM users u WHERE u.user_id = b.user_id)) AS name,"
            " count(*) FILTER (WHERE outcome = 'unpaid') AS strikes,"
            " count(*) FILTER (WHERE outcome = 'paid') AS paid, bool_or(barred) AS barred FROM ("
            " SELECT x.user_id, x.name, x.outcome, false AS barred FROM auction_awards x JOIN auctions a"
            " USING (auction_id) WHERE a.merchant_id = $1"
            " UNION ALL SELECT user_id, NULL, NULL, true FROM auction_bars WHERE merchant_id = $1) b"
            " GROUP BY user_id HAVING count(*) FILTER (WHERE outcome = 'unpaid') > 0 OR bool_or(barred)"
            " ORDER BY strikes DESC, user_id",
            merchant_id,
        )
        return [dict(row) for row in rows]
