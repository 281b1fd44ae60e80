"""Share links, their clicks, and who is bound to whom: the one writer of `shares`, `share_visits` and
`referral_bindings`.

A viewer who opens a link is bound to its sharer by the merchant's mode (first touch, last touch,
new buyers only), never to themselves nor to someone they brought (A→B→A). Bindings are rows with a
start and an end: an order earns for the binding in effect when it was placed (server.referrals.earnings).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from server.access.tokens import Identity
from server.errors import NotFound
from server.ledger.client import Connection, Database, Record
from server.referrals.program import Programs
from server.referrals.rules import Program

# What opening a link did (share_visits.outcome; the visit's `reason`).
BOUND, REBOUND, ALREADY = "bound", "rebound", "already"
KEPT, SELF, LOOP, NOT_NEW, DISABLED = "kept", "self", "loop", "not_new", "disabled"


def binding_at(merchant: str, buyers: str, moment: str) -> str:
    """SQL: the binding (binding_id, sharer_id) in effect at `moment` of any of the buyer ids `buyers` (a text[]
    expression: a member and the guests merged into them) to `merchant`."""
    return (
        f"SELECT b.binding_id, b.sharer_id FROM referral_bindings b WHERE b.merchant_id = {merchant}"
        f" AND b.buyer_id = ANY({buyers}) AND b.bound_at <= {moment} AND {moment} < coalesce(b.ended_at, b.expires_at)"
        " ORDER BY b.bound_at DESC LIMIT 1"
    )


def sharer_name(row: str) -> str:
    """SQL: the name a sharer shares under, of the row alias `row` (with merchant_id and sharer_id)."""
    return (
        f"(SELECT sharer_name FROM shares WHERE merchant_id = {row}.merchant_id AND sharer_id = {row}.sharer_id"
        " LIMIT 1)"
    )


_BINDING = binding_at("$1", "$2::text[]", "$3")


@dataclass(frozen=True)
class Share:
    code: str
    merchant_id: str
    sharer_id: str
    sharer_name: str
    room_id: str
    product_id: str

    @classmethod
    def parse(cls, row: Record) -> Share:
        return cls(
            row["code"], row["merchant_id"], row["sharer_id"], row["sharer_name"], row["room_id"], row["product_id"]
        )

    def public(self) -> dict[str, Any]:
        link = f"/room.html?room={self.room_id}&ref={self.code}"
        if self.product_id:
            link += f"&product={self.product_id}"
        return {
            "code": self.code,
            "merchant_id": self.merchant_id,
            "room_id": self.room_id,
            "product_id": self.product_id or None,
            "sharer": {"name": self.sharer_name},
            "url": link,
            "qr_url": f"/api/shares/{self.code}/qr.svg",
        }


@dataclass(frozen=True)
class Visit:
    reason: str
    share: Share

    @property
    def bound(self) -> bool:
        return self.reason in (BOUND, REBOUND, ALREADY)

    def public(self) -> dict[str, Any]:
        return {"bound": self.bound, "reason": self.reason, "sharer": {"name": self.share.sharer_name}}


class Shares:
    def __init__(self, db: Database, programs: Programs) -> None:
        self.db = db
        self.programs = programs

    async def link(
        self, merchant_id: str, sharer: Identity, room_id: str, product_id: str, address: str
    ) -> tuple[Share, bool]:
        """The sharer's link to the room (or a product in it): made once, the same one after; True when new."""
        row = await self.db.pool.fetchrow(
            "INSERT INTO shares (code, merchant_id, sharer_id, sharer_name, room_id, product_id, device_id, address)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (merchant_id, sharer_id, room_id, product_id) DO UPDATE SET code = shares.code"
            " RETURNING code, (xmax = 0) AS created",
            secrets.token_urlsafe(6),
            merchant_id,
            sharer.user_id,
            sharer.name,
            room_id,
            product_id,
            sharer.device_id,
            address,
        )
        assert row is not None
        return Share(row["code"], merchant_id, sharer.user_id, sharer.name, room_id, product_id), row["created"]

    async def get(self, code: str, connection: Connection | None = None) -> Share:
        row = await (connection or self.db.pool).fetchrow("SELECT * FROM shares WHERE code = $1", code)
        if row is None:
            raise NotFound("no such share link", "unknown_share")
        return Share.parse(row)

    async def visit(self, code: str, visitor: Identity, address: str) -> Visit:
        """The visitor opened the link: recorded, and bound by the merchant's mode (see the module docstring)."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            share = await self.get(code, connection)
            # One visit of a person to a merchant at a time: the checks below and the binding are one step.
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"bind:{share.merchant_id}:{visitor.user_id}"
            )
            program = await self.programs.get(share.merchant_id, connection)
            reason = await _bind(connection, program, share, visitor)
            await connection.execute(
                "INSERT INTO share_visits (code, merchant_id, sharer_id, visitor_id, device_id, address, outcome)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                code,
                share.merchant_id,
                share.sharer_id,
                visitor.user_id,
                visitor.device_id,
                address,
                reason,
            )
        return Visit(reason, share)


async def _bind(connection: Connection, program: Program, share: Share, visitor: Identity) -> str:
    if not program.enabled:
        return DISABLED
    ids = [visitor.user_id, *visitor.aliases]
    if share.sharer_id in ids:
        return SELF
    merchant_id = share.merchant_id
    now = await connection.fetchval("SELECT now()")
    upline = await connection.fetchrow(_BINDING, merchant_id, [share.sharer_id], now)
    if upline is not None and upline["sharer_id"] in ids:
        return LOOP  # the sharer was brought by this visitor: A→B→A
    current = await connection.fetchrow(_BINDING, merchant_id, ids, now)
    if current is not None and current["sharer_id"] == share.sharer_id:
        return ALREADY
    if current is not None and program.binding != "last_touch":
        return KEPT
    if current is None and program.binding == "new_buyers":
        paid_before = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = ANY($1::text[]) AND status = 'paid'"
            " AND merchant_id = $2)",
            ids,
            merchant_id,
        )
        if paid_before:
            return NOT_NEW
    if current is not None:
        await connection.execute(
            "UPDATE referral_bindings SET ended_at = $2 WHERE binding_id = $1", current["binding_id"], now
        )
    await connection.execute(
        "INSERT INTO referral_bindings (merchant_id, buyer_id, sharer_id, code, bound_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz + make_interval(days => $6))",
        merchant_id,
        visitor.user_id,
        share.sharer_id,
        share.code,
        now,
        program.binding_days,
    )
    return REBOUND if current is not None else BOUND
