"""THE giveaways, their entries, winners and claims in PostgreSQL (docs/giveaways.md): their one writer.

Times are PostgreSQL's clock: an entry and the draw lock the giveaway's row, so nothing enters after `ends_at` and
the entrant list the draw publishes is the whole list. The draw and each redraw are one transaction each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import orjson

from server.access.addresses import Address
from server.giveaways import draw
from server.giveaways.rules import (
    Conditions,
    Giveaway,
    GiveawayRefused,
    Refusal,
    Terms,
    Winner,
    new_id,
    new_ticket,
)
from server.ledger.client import Connection, Database, Record, ms

DUE_BATCH = 20

_SELECT = (
    "SELECT g.*, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS version,"
    " coalesce(g.entrants_count, (SELECT count(*) FROM giveaway_entries e WHERE e.giveaway_id = g.giveaway_id))"
    " AS entrants FROM giveaways g"
)
_WINNERS = (
    "SELECT w.*, e.name FROM giveaway_winners w JOIN giveaway_entries e USING (giveaway_id, user_id)"
    " WHERE w.giveaway_id = $1 ORDER BY w.rank"
)


def _conditions(raw: str) -> Conditions:
    data = orjson.loads(raw)
    return Conditions(data["signed_in"], data["keyword"], data["watch_seconds"])


def _giveaway(row: Record, winners: list[Winner]) -> Giveaway:
    return Giveaway(
        id=row["giveaway_id"],
        merchant_id=row["merchant_id"],
        room_id=row["room_id"],
        product=orjson.loads(row["product"]),
        winners_count=row["winners_count"],
        conditions=_conditions(row["conditions"]),
        claim_seconds=row["claim_seconds"],
        starts_at=ms(row["starts_at"]) or 0,
        ends_at=ms(row["ends_at"]) or 0,
        state=row["state"],
        commitment=row["commitment"],
        seed=row["seed"],
        entrants=row["entrants"],
        entrants_hash=row["entrants_hash"],
        version=row["version"],
        winners=winners,
    )


def _winner(row: Record) -> Winner:
    return Winner(
        rank=row["rank"],
        user_id=row["user_id"],
        name=row["name"],
        ticket=row["ticket"],
        claim_by=ms(row["claim_by"]) or 0,
        outcome=row["outcome"],
    )


class Giveaways:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, merchant_id: str, room_id: str, terms: Terms, host_id: str) -> Giveaway:
        """A new giveaway, open for entries from now (giveaway_running when the room has one open)."""
        giveaway_id, seed = new_id(), draw.new_seed()
        try:
            await self.db.pool.execute(
                "INSERT INTO giveaways (giveaway_id, merchant_id, room_id, product, winners_count, conditions,"
                " claim_seconds, starts_at, ends_at, created_by, seed, commitment, state)"
                " VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $7, now(), now() + $8 * interval '1 millisecond',"
                " $9, $10, $11, 'open')",
                giveaway_id,
                merchant_id,
                room_id,
                orjson.dumps(terms.product).decode(),
                terms.winners,
                orjson.dumps(terms.conditions.public()).decode(),
                terms.claim_seconds,
                terms.duration_ms,
                host_id,
                seed,
                draw.commitment(seed),
            )
        except asyncpg.UniqueViolationError:
            raise GiveawayRefused(Refusal.GIVEAWAY_RUNNING) from None
        started = await self.get(giveaway_id)
        assert started is not None
        return started

    async def get(self, giveaway_id: str) -> Giveaway | None:
        async with self.db.pool.acquire() as connection:
            return await _read(connection, giveaway_id)

    async def open_ones(self) -> list[Giveaway]:
        """Every giveaway taking entries now, or due to be drawn."""
        rows = await self.db.pool.fetch(f"{_SELECT} WHERE g.state = 'open'")
        return [_giveaway(row, []) for row in rows]

    async def of_merchant(self, merchant_id: str, limit: int = 50) -> list[Giveaway]:
        ids = await self.db.pool.fetch(
            "SELECT giveaway_id FROM giveaways WHERE merchant_id = $1 ORDER BY starts_at DESC LIMIT $2",
            merchant_id,
            limit,
        )
        found = [await self.get(row["giveaway_id"]) for row in ids]
        return [item for item in found if item is not None]

    async def previous_in_room(self, room_id: str, giveaway_id: str) -> list[str]:
        """The room's other giveaways (their cards leave the room when a new one starts)."""
        rows = await self.db.pool.fetch(
            "SELECT giveaway_id FROM giveaways WHERE room_id = $1 AND giveaway_id <> $2", room_id, giveaway_id
        )
        return [row["giveaway_id"] for row in rows]

    async def purge(self, before: datetime) -> int:
        """Remove the giveaways (with their entries, winners and claims) that ended before `before`."""
        status = await self.db.pool.execute("DELETE FROM giveaways WHERE ends_at < $1 AND state = 'drawn'", before)
        return int(status.split()[-1])

    # --- entries ---------------------------------------------------------------------------

    async def enter(self, giveaway_id: str, user_id: str, name: str) -> tuple[dict[str, Any], bool]:
        """The person's entry, made now if the giveaway is open by the database's clock: (entry, new?)."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            existing = await _entry(connection, giveaway_id, user_id)
            if existing is not None:
                return existing, False
            is_open = await connection.fetchval(
                "SELECT state = 'open' AND now() < ends_at FROM giveaways WHERE giveaway_id = $1 FOR SHARE",
                giveaway_id,
            )
            if is_open is None:
                raise GiveawayRefused(Refusal.UNKNOWN_GIVEAWAY)
            if not is_open:
                raise GiveawayRefused(Refusal.GIVEAWAY_CLOSED)
            while True:
                row = await connection.fetchrow(
                    "INSERT INTO giveaway_entries (giveaway_id, user_id, name, ticket, entered_at)"
                    " VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING RETURNING ticket, entered_at",
                    giveaway_id,
                    user_id,
                    name,
                    new_ticket(),
                )
                if row is not None:
                    return {"ticket": row["ticket"], "entered_at": ms(row["entered_at"])}, True
                existing = await _entry(connection, giveaway_id, user_id)
                if existing is not None:  # the same person's other request came first
                    return existing, False
                # else the ticket was someone else's (one in 2^50): another

    async def entry(self, giveaway_id: str, user_id: str) -> dict[str, Any] | None:
        async with self.db.pool.acquire() as connection:
            return await _entry(connection, giveaway_id, user_id)

    async def entrants(self, giveaway_id: str) -> list[dict[str, Any]]:
        """Every entry, oldest first (staff)."""
        rows = await self.db.pool.fetch(
            "SELECT user_id, name, ticket, entered_at FROM giveaway_entries WHERE giveaway_id = $1 ORDER BY entered_at",
            giveaway_id,
        )
        return [{**dict(row), "entered_at": ms(row["entered_at"])} for row in rows]

    # --- the draw ----------------------------------------------------------------------------

    async def draw_due(self) -> list[Giveaway]:
        """Close and draw every giveaway past its end that no other process is drawing; each in one transaction."""
        drawn = []
        for _ in range(DUE_BATCH):
            async with self.db.pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(
                    "SELECT giveaway_id, seed, winners_count, claim_seconds FROM giveaways"
                    " WHERE state = 'open' AND ends_at <= now() ORDER BY ends_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
                if row is None:
                    break
                giveaway_id = row["giveaway_id"]
                entries = await connection.fetch(
                    "SELECT ticket, user_id FROM giveaway_entries WHERE giveaway_id = $1", giveaway_id
                )
                tickets = [entry["ticket"] for entry in entries]
                owner = {entry["ticket"]: entry["user_id"] for entry in entries}
                await connection.execute(
                    "UPDATE giveaways SET state = 'drawn', entrants_hash = $2, entrants_count = $3, drawn_at = now()"
                    " WHERE giveaway_id = $1",
                    giveaway_id,
                    draw.entrants_hash(tickets),
                    len(tickets),
                )
                ranked = draw.ranking(row["seed"], tickets)[: row["winners_count"]]
                await connection.executemany(
                    "INSERT INTO giveaway_winners (giveaway_id, rank, user_id, ticket, drawn_at, claim_by)"
                    " VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 second')",
                    [
                        (giveaway_id, rank, owner[ticket], ticket, row["claim_seconds"])
                        for rank, ticket in enumerate(ranked, 1)
                    ],
                )
                found = await _read(connection, giveaway_id)
                assert found is not None
                drawn.append(found)
        return drawn

    async def redraw_due(self) -> list[tuple[Giveaway, Winner | None]]:
        """Every winner past `claim_by` without a claim forfeits; the prize goes to the next in the ranking (None:
        nobody left). Each in one transaction, the giveaway's row locked (one redraw at a time)."""
        redrawn: list[tuple[Giveaway, Winner | None]] = []
        for _ in range(DUE_BATCH):
            async with self.db.pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(
                    "SELECT giveaway_id, rank FROM giveaway_winners WHERE outcome IS NULL AND claim_by <= now()"
                    " ORDER BY claim_by LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
                if row is None:
                    break
                giveaway_id = row["giveaway_id"]
                giveaway = await _locked(connection, giveaway_id)
                await connection.execute(
                    "UPDATE giveaway_winners SET outcome = 'forfeited', settled_at = now()"
                    " WHERE giveaway_id = $1 AND rank = $2",
                    giveaway_id,
                    row["rank"],
                )
                entries = await connection.fetch(
                    "SELECT ticket, user_id FROM giveaway_entries WHERE giveaway_id = $1", giveaway_id
                )
                ranked = draw.ranking(giveaway["seed"], [entry["ticket"] for entry in entries])
                owner = {entry["ticket"]: entry["user_id"] for entry in entries}
                last = await connection.fetchval(
                    "SELECT max(rank) FROM giveaway_winners WHERE giveaway_id = $1", giveaway_id
                )
                if last < len(ranked):
                    ticket = ranked[last]
                    await connection.execute(
                        "INSERT INTO giveaway_winners (giveaway_id, rank, user_id, ticket, drawn_at, claim_by)"
                        " VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 second')",
                        giveaway_id,
                        last + 1,
                        owner[ticket],
                        ticket,
                        giveaway["claim_seconds"],
                    )
                found = await _read(connection, giveaway_id)
                assert found is not None
                redrawn.append((found, found.winners[-1] if last < len(ranked) else None))
        return redrawn

    async def published(self, giveaway_id: str) -> dict[str, Any]:
        """The published draw (docs/giveaways.md, "The draw"); not_drawn while open."""
        giveaway = await self.get(giveaway_id)
        if giveaway is None:
            raise GiveawayRefused(Refusal.UNKNOWN_GIVEAWAY)
        if giveaway.state != "drawn":
            raise GiveawayRefused(Refusal.NOT_DRAWN)
        tickets = await self.db.pool.fetch(
            'SELECT ticket FROM giveaway_entries WHERE giveaway_id = $1 ORDER BY ticket COLLATE "C"', giveaway_id
        )
        return {
            "giveaway_id": giveaway.id,
            "commitment": giveaway.commitment,
            "seed": giveaway.seed,
            "entrants": [row["ticket"] for row in tickets],
            "entrants_hash": giveaway.entrants_hash,
            "winners_count": giveaway.winners_count,
            "winners": [winner.public() for winner in giveaway.winners],
        }

    # --- claims and notices ------------------------------------------------------------------

    async def claim(self, giveaway_id: str, user_id: str, address: Address) -> tuple[dict[str, Any], bool]:
        """A winner's claim with where to send the prize, before `claim_by`: (claim, new?)."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            winner = await connection.fetchrow(
                "SELECT rank, outcome IS NULL AND claim_by > now() AS in_time FROM giveaway_winners"
                " WHERE giveaway_id = $1 AND user_id = $2 FOR UPDATE",
                giveaway_id,
                user_id,
            )
            if winner is None:
                raise GiveawayRefused(Refusal.NOT_A_WINNER)
            existing = await connection.fetchrow(
                "SELECT * FROM giveaway_claims WHERE giveaway_id = $1 AND rank = $2", giveaway_id, winner["rank"]
            )
            if existing is not None:
                return _claim(existing), False
            if not winner["in_time"]:
                raise GiveawayRefused(Refusal.CLAIM_EXPIRED)
            row = await _one(
                connection,
                "INSERT INTO giveaway_claims (giveaway_id, rank, user_id, name, address, phone, claimed_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, now()) RETURNING *",
                giveaway_id,
                winner["rank"],
                user_id,
                address.name,
                address.address,
                address.phone,
            )
            await connection.execute(
                "UPDATE giveaway_winners SET outcome = 'claimed', settled_at = now()"
                " WHERE giveaway_id = $1 AND rank = $2",
                giveaway_id,
                winner["rank"],
            )
            return _claim(row), True

    async def claims(self, giveaway_id: str) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM giveaway_claims WHERE giveaway_id = $1 ORDER BY rank", giveaway_id
        )
        return [_claim(row) for row in rows]

    async def to_notify(self, limit: int = 50) -> list[tuple[Giveaway, Winner]]:
        """Winners not told by messenger yet, each claimed for this process (`notified` gives it back on failure)."""
        rows = await self.db.pool.fetch(
            "UPDATE giveaway_winners SET notified_at = now() WHERE (giveaway_id, rank) IN (SELECT giveaway_id, rank"
            " FROM giveaway_winners WHERE notified_at IS NULL AND outcome IS NULL LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " RETURNING giveaway_id, rank",
            limit,
        )
        told = []
        for row in rows:
            giveaway = await self.get(row["giveaway_id"])
            if giveaway is not None:
                told += [(giveaway, winner) for winner in giveaway.winners if winner.rank == row["rank"]]
        return told

    async def notice_failed(self, giveaway_id: str, rank: int) -> None:
        await self.db.pool.execute(
            "UPDATE giveaway_winners SET notified_at = NULL WHERE giveaway_id = $1 AND rank = $2", giveaway_id, rank
        )


async def _one(connection: Connection, query: str, *args: object) -> Record:
    row = await connection.fetchrow(query, *args)
    assert row is not None
    return row


async def _locked(connection: Connection, giveaway_id: str) -> Record:
    """The giveaway's row, locked until the transaction ends (one redraw at a time)."""
    return await _one(
        connection, "SELECT seed, claim_seconds FROM giveaways WHERE giveaway_id = $1 FOR UPDATE", giveaway_id
    )


async def _read(connection: Connection, giveaway_id: str) -> Giveaway | None:
    row = await connection.fetchrow(f"{_SELECT} WHERE g.giveaway_id = $1", giveaway_id)
    if row is None:
        return None
    return _giveaway(row, [_winner(item) for item in await connection.fetch(_WINNERS, giveaway_id)])


async def _entry(connection: Connection, giveaway_id: str, user_id: str) -> dict[str, Any] | None:
    row = await connection.fetchrow(
        "SELECT ticket, entered_at FROM giveaway_entries WHERE giveaway_id = $1 AND user_id = $2", giveaway_id, user_id
    )
    return None if row is None else {"ticket": row["ticket"], "entered_at": ms(row["entered_at"])}


def _claim(row: Record) -> dict[str, Any]:
    return {
        "rank": row["rank"],
        "user_id": row["user_id"],
        "name": row["name"],
        "address": row["address"],
        "phone": row["phone"],
        "claimed_at": ms(row["claimed_at"]),
    }
