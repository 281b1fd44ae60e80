"""The audit log: what each merchant's staff did (who, when, what, before and after); the one writer of `audit_log`.

Contract: an entry is appended once the action it records has succeeded, and is never changed or
removed through the application (the table's trigger refuses UPDATE and DELETE; only the
retention purge may delete). No action is done unaudited while PostgreSQL is down:

- an action that changes a store runs inside `AuditLog.change`: PostgreSQL is asked first
  (down: the caller answers 503 and nothing changed), the entry is inserted once the change
  succeeded; a refused change leaves no entry;
- an action that stores nothing (a token minted, an export) is recorded with `AuditLog.record`
  before its result is handed out.

Only PostgreSQL lost (or the process killed) between the change and its entry, a few
milliseconds, leaves an action unaudited (and answered 503). No connection is held while the
change runs: the change may itself write PostgreSQL (a sale, a show) through the same pool, and
holding one there would let as many concurrent staff actions as the pool has connections wait for
each other. Entries hold public forms only: never a token, a card number or a payment key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from server.access.tokens import Actor
from server.ledger.client import Database, Record, ms

# Every action, by its stable dotted name. A new kind of staff action is added here first.
ACTIONS: dict[str, str] = {
    "staff.added": "a person was given a staff role, or a new one (after: the staff member)",
    "staff.removed": "a staff member was removed; their sessions were signed out (before: the staff member)",
    "session.revoked": "an admin signed a staff member's session out (before: the session, never its tokens)",
    "login_link.issued": "an admin made a single-use login link for a staff member (after: {user_id, minutes})",
    "product.created": "a product was added (after: the product)",
    "product.updated": "a product or its price changed (before and after: the product)",
    "product.deleted": "a product was removed (before: the product)",
    "room.created": "a room was created (after: its public card)",
    "room.status_changed": "a room was scheduled, went live or ended (before and after: {status})",
    "blocklist.changed": "the chat block list was replaced (before and after: {words})",
    "sale.created": "a flash sale was created (after: the sale)",
    "sale.ended": "a flash sale was ended early (before and after: the sale)",
    "sale.started_now": "a scheduled sale was started at once (before and after: the sale)",
    "sale.restocked": "units were added to a running sale (before and after: the sale)",
    "sale.extended": "a running sale was given more time (before and after: the sale)",
    "shelf.stocked": "units of a product were put on its shelf at the regular price (after: the shelf's sale)",
    "orders.exported": "orders were exported (after: {format, status})",
    "chat.message_deleted": "a chat message was deleted (before: the message when the room still had it)",
    "chat.muted": "a user was muted in a room (after: {room_id, user_id, seconds})",
    "chat.banned": "a user was banned from a room's chat (after: {room_id, user_id})",
    "chat.unbanned": "a user's ban and mute in a room were lifted (after: {room_id, user_id})",
    "chat.slow_mode_changed": "a room's slow mode changed (before and after: {room_id, slow_mode})",
    "referrals.changed": "the share-and-earn programme or its default rates changed (before and after)",
    "referrals.rule_set": "a product's or sale's commission rates were set (before and after: the rates)",
    "referrals.rule_removed": "a product's or sale's commission rates were removed (before: the rates)",
    "referrals.exported": "the commissions were exported (after: {format})",
    "commission.approved": "a flagged commission was approved for payment (after: the commission)",
    "commission.rejected": "a flagged commission was rejected and reversed (after: the commission)",
    "withdrawal.approved": "a sharer's withdrawal was approved and sent (after: the withdrawal)",
    "withdrawal.refused": "a sharer's withdrawal was refused, its amount credited back (after: the withdrawal)",
    "withdrawal.retried": "a failed withdrawal was sent again (after: the withdrawal)",
    "order.refunded": "a paid order was refunded in full (after: the refund)",
    "service.replied": "a staff member answered a buyer's thread (after: the message)",
    "service.public_asked": "a staff member asked a buyer to answer their question in the room's chat (after: the "
    "message)",
    "service.state_changed": "a thread's state was set (before and after: {state})",
    "service.assigned": "a thread was assigned, or unassigned (before and after: {assignee})",
    "service.read": "a staff member opened a thread, reading its messages (after: {read}, the newest read)",
    "service.reply_saved": "a canned reply was added or changed (before and after: the reply)",
    "service.reply_removed": "a canned reply was removed (before: the reply)",
    "giveaway.started": "a giveaway was started: entries open (after: its terms and the draw's commitment)",
    "auction.started": "an auction was started: bidding open (after: its card)",
    "bidder.barred": "a bidder was barred from the merchant's auctions (after: {user_id, barred, changed})",
    "bidder.unbarred": "a bidder was let back into the merchant's auctions (after: {user_id, barred, changed})",
}

MAX_PAGE = 500
PURGE_BATCH = 10_000


@dataclass(frozen=True)
class Entry:
    """One audit entry as stored."""

    id: int
    merchant_id: str
    at: int  # ms since the epoch
    actor_id: str
    actor_name: str
    actor_role: str
    action: str
    subject: str
    before: Any
    after: Any

    @classmethod
    def parse(cls, row: Record) -> Entry:
        return cls(
            id=row["audit_id"],
            merchant_id=row["merchant_id"],
            at=ms(row["at"]) or 0,
            actor_id=row["actor_id"],
            actor_name=row["actor_name"],
            actor_role=row["actor_role"],
            action=row["action"],
            subject=row["subject"],
            before=None if row["before"] is None else orjson.loads(row["before"]),
            after=None if row["after"] is None else orjson.loads(row["after"]),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": {"id": self.actor_id, "name": self.actor_name, "role": self.actor_role},
            "action": self.action,
            "subject": self.subject,
            "before": self.before,
            "after": self.after,
        }


@dataclass(frozen=True)
class Page:
    """Entries newest first; `next` is the `before` that reads the page after this one (None: no more)."""

    entries: list[Entry]
    next: int | None

    def public(self) -> dict[str, Any]:
        return {"entries": [entry.public() for entry in self.entries], "next": self.next}


@dataclass
class Pending:
    """An entry being written by `AuditLog.change`: set what is only known after the change."""

    subject: str
    before: Any = None
    after: Any = None


class AuditLog:
    """Append and read a merchant's audit entries (see the module contract)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, actor: Actor, action: str, subject: str, before: Any = None, after: Any = None) -> int:
        """Append an entry now, for the actor's merchant; return its id."""
        return await _insert(self.db.pool, actor, action, Pending(subject, before, after))

    @asynccontextmanager
    async def change(
        self, actor: Actor, action: str, subject: str = "", before: Any = None, after: Any = None
    ) -> AsyncIterator[Pending]:
        """Run a change with its entry: PostgreSQL is asked before the body runs; the entry is written
        (with the body's `subject`, `before`, `after` as they are then) only if the body succeeds."""
        _check(action)
        pending = Pending(subject, before, after)
        await self.db.pool.fetchval("SELECT 1")
        yield pending
        await _insert(self.db.pool, actor, action, pending)

    async def entries(self, merchant_id: str, before_id: int | None = None, limit: int = 100) -> Page:
        """The merchant's entries newest first, those older than `before_id` when given; at most `limit`."""
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self.db.pool.fetch(
            "SELECT * FROM audit_log WHERE merchant_id = $1 AND ($2::bigint IS NULL OR audit_id < $2)"
            " ORDER BY audit_id DESC LIMIT $3",
            merchant_id,
            before_id,
            limit + 1,
        )
        entries = [Entry.parse(row) for row in rows[:limit]]
        return Page(entries, entries[-1].id if len(rows) > limit else None)

    async def purge(self, before: datetime) -> int:
        """Remove the entries older than `before`, in batches; return how many. The retention purge is the one
        delete the table's trigger lets through (`livecart.retention`, set for its own transaction only)."""
        removed = 0
        while True:
            async with self.db.pool.acquire() as connection, connection.transaction():
                await connection.execute("SET LOCAL livecart.retention = 'on'")
                status = await connection.execute(
                    "DELETE FROM audit_log WHERE audit_id IN"
                    " (SELECT audit_id FROM audit_log WHERE at < $1 ORDER BY audit_id LIMIT $2)",
                    before,
                    PURGE_BATCH,
                )
            count = int(status.split()[-1])  # "DELETE <n>"
            removed += count
            if count < PURGE_BATCH:
                return removed


def _check(action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to server.ledger.audit.ACTIONS")


async def _insert(pool: asyncpg.Pool, actor: Actor, action: str, pending: Pending) -> int:
    _check(action)
    if not pending.subject:
        raise ValueError(f"the {action} entry needs a subject")
    audit_id: int = await pool.fetchval(
        "INSERT INTO audit_log (merchant_id, at, actor_id, actor_name, actor_role, action, subject, before, after)"
        " VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb) RETURNING audit_id",
        actor.merchant_id,
        actor.user_id,
        actor.name,
        actor.role.value,
        action,
        pending.subject,
        _json(pending.before),
        _json(pending.after),
    )
    return audit_id


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
