"""THE addresses: the shipping address a person gave last, remembered for their next order (`addresses`, PostgreSQL,
its one writer); and what an address is (a giveaway's claim and an order's shipping check theirs here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.errors import BadRequest
from server.ledger.client import Database, at
from server.protocol import now_ms
from server.rooms.text import text_field

MAX_NAME, MAX_ADDRESS, MAX_PHONE = 100, 500, 30


@dataclass(frozen=True)
class Address:
    name: str
    address: str
    phone: str | None

    def public(self) -> dict[str, Any]:
        return asdict(self)


def address_from(body: object) -> Address:
    """A name, an address and maybe a phone, cleaned as chat is (control and bidi characters out)."""
    if not isinstance(body, dict):
        raise BadRequest("an address must be an object: {name, address, phone?}")
    name, address = text_field(body, "name", MAX_NAME), text_field(body, "address", MAX_ADDRESS)
    assert name is not None and address is not None
    return Address(name, address, text_field(body, "phone", MAX_PHONE, required=False))


class Addresses:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> Address | None:
        row = await self.db.pool.fetchrow("SELECT name, address, phone FROM addresses WHERE user_id = $1", user_id)
        return None if row is None else Address(row["name"], row["address"], row["phone"])

    async def save(self, user_id: str, address: Address) -> None:
        await self.db.pool.execute(
            "INSERT INTO addresses (user_id, name, address, phone, updated_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id) DO UPDATE SET name = $2, address = $3, phone = $4, updated_at = $5",
            user_id,
            address.name,
            address.address,
            address.phone,
            at(now_ms()),
        )
