"""THE order shipping: where each paid-for order goes (`order_shipping`, PostgreSQL, its one writer).

At payment the buyer gives a name and an address, or the one they gave last (server.access.addresses) is used;
what was given is remembered for their next order. The row is written before the card is charged, so a paid order
never lacks the address it was paid with; paying again with another address replaces it while the order is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.access.addresses import Address, Addresses
from server.ledger.client import Database, at
from server.protocol import now_ms


class Shipping:
    def __init__(self, db: Database, addresses: Addresses) -> None:
        self.db = db
        self.addresses = addresses

    async def ship(self, order_id: str, merchant_id: str, user_id: str, given: Address | None) -> Address | None:
        """The order ships to `given` (remembered for the person's next order) or to their saved address; None
        when they have neither."""
        if given is not None:
            await self.addresses.save(user_id, given)
        address = given or await self.addresses.get(user_id)
        if address is None:
            return None
        await self.db.pool.execute(
            "INSERT INTO order_shipping (order_id, merchant_id, user_id, name, address, phone, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (order_id) DO UPDATE SET name = $4, address = $5, phone = $6",
            order_id,
            merchant_id,
            user_id,
            address.name,
            address.address,
            address.phone,
            at(now_ms()),
        )
        return address

    async def of(self, order_ids: Sequence[str]) -> dict[str, Address]:
        """Where each of these orders ships (those that have an address)."""
        rows = await self.db.pool.fetch(
            "SELECT order_id, name, address, phone FROM order_shipping WHERE order_id = ANY($1::text[])",
            list(order_ids),
        )
        return {row["order_id"]: Address(row["name"], row["address"], row["phone"]) for row in rows}

    async def of_merchant(self, merchant_id: str) -> dict[str, Address]:
        """Where each of the merchant's orders ships (for the export)."""
        rows = await self.db.pool.fetch(
            "SELECT order_id, name, address, phone FROM order_shipping WHERE merchant_id = $1", merchant_id
        )
        return {row["order_id"]: Address(row["name"], row["address"], row["phone"]) for row in rows}

    async def purge(self, before: datetime) -> int:
        """Remove the rows made before `before` (the retention purge); how many."""
        done = await self.db.pool.execute("DELETE FROM order_shipping WHERE created_at < $1", before)
        return int(done.split()[-1])
