"""THE waitlist: who asked to be told when a product is back (`waitlist`, PostgreSQL, its one writer).

A member asks from a sold-out deal or an empty shelf; when units go on the product's shelf (server.sales.shelf),
everyone waiting is taken off the list in one statement and told once: the personal event `product.back` on any
room socket they have open, and the messenger's notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.ledger.client import Database, at
from server.protocol import now_ms


@dataclass(frozen=True)
class Waiting:
    user_id: str
    room_id: str | None  # where they asked (the notice links back to it)


class Waitlist:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def join(self, merchant_id: str, product_id: str, user_id: str, room_id: str | None) -> None:
        """On the list (again: nothing changes)."""
        await self.db.pool.execute(
            "INSERT INTO waitlist (merchant_id, product_id, user_id, room_id, created_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT DO NOTHING",
            merchant_id,
            product_id,
            user_id,
            room_id,
            at(now_ms()),
        )

    async def leave(self, merchant_id: str, product_id: str, user_id: str) -> None:
        await self.db.pool.execute(
            "DELETE FROM waitlist WHERE merchant_id = $1 AND product_id = $2 AND user_id = $3",
            merchant_id,
            product_id,
            user_id,
        )

    async def has(self, merchant_id: str, product_id: str, user_id: str) -> bool:
        return bool(
            await self.db.pool.fetchval(
                "SELECT 1 FROM waitlist WHERE merchant_id = $1 AND product_id = $2 AND user_id = $3",
                merchant_id,
                product_id,
                user_id,
            )
        )

    async def take(self, merchant_id: str, product_id: str) -> list[Waiting]:
        """Everyone waiting for the product, now off the list (each taken by one caller only)."""
        rows = await self.db.pool.fetch(
            "DELETE FROM waitlist WHERE merchant_id = $1 AND product_id = $2 RETURNING user_id, room_id",
            merchant_id,
            product_id,
        )
        return [Waiting(row["user_id"], row["room_id"]) for row in rows]

    async def purge(self, before: datetime) -> int:
        """Remove the rows made before `before` (the retention purge); how many."""
        done = await self.db.pool.execute("DELETE FROM waitlist WHERE created_at < $1", before)
        return int(done.split()[-1])
