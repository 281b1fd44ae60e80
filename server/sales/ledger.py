"""The sales record in PostgreSQL: sales, the order log, orders, every order change, payments. The one writer
of those tables.

Redis decides (stock, holds, the order's state, in the sale scripts); this module keeps what was
decided, in two steps. `log` appends the order changes the backup copied, as they are (one row per
sale and copy, no per-change index: cheap while a storm is on); `project` then moves them into
order_changes, a row keyed (order id, version), written once however often it was copied, and
orders, replaced only by a newer version. A payment movement (authorization, capture, void,
refund) is a row keyed (authorization id, kind): exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from server.ledger.client import Connection, Database, Record, at, ms
from server.sales.groups import Group, GroupTerms
from server.sales.records import Audit, Order, Sale

PAYMENT_KINDS = ("authorization", "capture", "void", "refund")


@dataclass(frozen=True)
class LogBatch:
    """Entries of one sale's order log, as copied: each change's log entry id (its first part is the Redis clock,
    ms, of the change), change (held, paid, expired or cancelled) and order after it (JSON, with its version)."""

    sale: Sale  # the sale's terms
    stream_ids: list[str]
    changes: list[str]
    entries: list[str]


@dataclass(frozen=True)
class Contradiction:
    """An order change in Redis that the record has as another change (Redis lost writes)."""

    order_id: str
    version: int
    change: str
    sale_id: str


@dataclass(frozen=True)
class Projected:
    changes: int  # changes taken from the log (each written once, however often it was copied)
    contradictions: list[Contradiction]


@dataclass(frozen=True)
class Payment:
    authorization_id: str
    kind: str
    order_id: str
    amount: int
    currency: str
    at: int
    by_reconciler: bool


@dataclass(frozen=True)
class PaidOrder:
    """A paid order as the reconciler needs it."""

    order_id: str
    merchant_id: str
    authorization_id: str
    amount: int
    currency: str


_ORDER_COLUMNS = (
    "order_id, sale_id, merchant_id, user_id, quantity, unit_price, currency, status, version, idempotency_key,"
    " created_at, hold_expires_at, paid_at, closed_at, payment_ref, payment_key, group_id"
)
_GROUP_COLUMNS = (
    "group_id, sale_id, merchant_id, leader_id, size, state, members, created_at, opened_at, expires_at, closed_at,"
    " version"
)


def _at(ms_text: str) -> str:
    """SQL: the time of a text holding milliseconds since the epoch (NULL stays NULL), exact to the ms."""
    return f"to_timestamp(({ms_text})::bigint / 1000.0)"


class SalesLedger:
    """Sales, orders and payments in PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sales -----------------------------------------------------------------------------

    async def record_sale(self, sale: Sale, show_id: str | None) -> None:
        """A new sale's terms (a repeat changes nothing)."""
        await self.db.pool.execute(_INSERT_SALE, *_sale_values(sale, show_id))

    async def changed(self, sale: Sale) -> None:
        """The sale's units or times changed (its host started it now, restocked, extended or ended it; or it ended
        on time)."""
        await self.db.pool.execute(
            "UPDATE sales SET quantity = $2, starts_at = $3, ends_at = $4 WHERE sale_id = $1",
            sale.id,
            sale.quantity,
            at(sale.starts_at),
            at(sale.ends_at),
        )

    async def archived(self, sale_id: str) -> None:
        """The sale's Redis keys are gone: from now on it is read from here."""
        await self.db.pool.execute(
            "UPDATE sales SET archived_at = now() WHERE sale_id = $1 AND archived_at IS NULL", sale_id
        )

    async def sale(self, sale_id: str) -> Sale | None:
        """The sale as the record has it, its counters recounted from its orders."""
        row = await self.db.pool.fetchrow(
            "SELECT s.*,"
            " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'held'), 0) AS held,"
            " coalesce(sum(o.quantity) FILTER (WHERE o.status = 'paid'), 0) AS paid,"
            " (SELECT count(*) FROM order_changes c WHERE c.sale_id = s.sale_id) AS changes,"
            " (SELECT count(*) FROM group_buys g WHERE g.sale_id = s.sale_id AND g.state = 'filled') AS filled,"
            " (SELECT count(*) FROM group_buys g WHERE g.sale_id = s.sale_id AND g.state = 'failed') AS failed"
            " FROM sales s LEFT JOIN orders o USING (sale_id) WHERE s.sale_id = $1 GROUP BY s.sale_id",
            sale_id,
        )
        return None if row is None else _sale(row)

    async def audit(self, sale_id: str) -> Audit | None:
        """The invariant of a sale as the record has it (an archived sale: nothing held)."""
        sale = await self.sale(sale_id)
        if sale is None:
            return None
        max_user_units = await self.db.pool.fetchval(
            "SELECT coalesce(max(units), 0) FROM (SELECT sum(quantity) AS units FROM orders"
            " WHERE sale_id = $1 AND status IN ('held', 'paid') GROUP BY user_id) AS per_user",
            sale_id,
        )
        max_group_members = await self.db.pool.fetchval(
            "SELECT coalesce(max(jsonb_array_length(members)), 0) FROM group_buys WHERE sale_id = $1", sale_id
        )
        return Audit(
            quantity=sale.quantity,
            available=sale.available,
            held=sale.held,
            paid=sale.paid,
            orders_held=sale.held,
            orders_paid=sale.paid,
            users_units=sale.held + sale.paid,
            max_user_units=int(max_user_units),
            per_user_limit=sale.per_user_limit,
            group_size=0 if sale.group is None else sale.group.size,
            max_group_members=int(max_group_members),
        )

    async def merchant_of(self, sale_id: str) -> str | None:
        """Whose sale it is (None: no such sale in the record)."""
        merchant_id: str | None = await self.db.pool.fetchval(
            "SELECT merchant_id FROM sales WHERE sale_id = $1", sale_id
        )
        return merchant_id

    async def sale_ids(self, merchant_id: str) -> list[str]:
        """The merchant's sales, newest first."""
        rows = await self.db.pool.fetch(
            "SELECT sale_id FROM sales WHERE merchant_id = $1 ORDER BY created_at DESC, sale_id", merchant_id
        )
        return [row["sale_id"] for row in rows]

    # --- orders ------------------------------------------------------------------------------

    async def log(self, batches: list[LogBatch]) -> None:
        """Append order changes to the log, in one transaction (executemany's): one row per sale, the orders as the
        sale scripts wrote them (JSON, not parsed here). Durable from here on; `project` makes them orders."""
        if not batches:
            return
        # One statement per sale: its row is there since its creation, unless the database was restored to an
        # earlier point; then its terms (from Redis) make it again, and the backup goes on.
        await self.db.pool.executemany(
            f"WITH sale AS ({_INSERT_SALE}) INSERT INTO order_log (sale_id, stream_ids, changes, entries)"
            " VALUES ($1, $18, $19, $20)",
            [(*_sale_values(b.sale, None), b.stream_ids, b.changes, b.entries) for b in batches],
        )

    async def project(self, rows: int) -> Projected:
        """Move up to `rows` rows of the log into order_changes and orders, unless another process is at it
        (see `project_log`)."""
        async with self.db.pool.acquire() as connection:
            return await project_log(connection, rows)

    async def project_all(self) -> None:
        """Project the whole log (before reading orders that must be complete: an export, a repair)."""
        async with self.db.pool.acquire() as connection:
            await project_whole_log(connection)

    async def unprojected(self, sale_id: str | None = None) -> float | None:
        """How long the oldest row of the log (of one sale, or any) has waited for the projection, in seconds;
        None when there is none."""
        waited: float | None = await self.db.pool.fetchval(
            "SELECT extract(epoch FROM now() - min(logged_at))::float8 FROM order_log"
            " WHERE $1::text IS NULL OR sale_id = $1",
            sale_id,
        )
        return waited

    async def order(self, order_id: str) -> Order | None:
        row = await self.db.pool.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = $1", order_id)
        return None if row is None else _order(row)

    async def order_by_key(self, sale_id: str, user_id: str, key: str) -> Order | None:
        """The order a buyer's purchase idempotency key made in the sale."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE sale_id = $1 AND user_id = $2 AND idempotency_key = $3",
            sale_id,
            user_id,
            key,
        )
        return None if row is None else _order(row)

    async def orders(self, sale_id: str) -> list[Order]:
        """Every order of the sale, oldest first."""
        rows = await self.db.pool.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE sale_id = $1 ORDER BY created_at, order_id", sale_id
        )
        return [_order(row) for row in rows]

    async def orders_of(self, user_ids: Sequence[str], merchant_id: str | None, limit: int) -> list[tuple[Order, Sale]]:
        """A buyer's orders under any of their ids (an account's and the guest ids merged into it), newest first,
        of one merchant when given: as far as the order log is copied (a hold of the last moment may be missing)."""
        rows = await self.db.pool.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE user_id = ANY($1::text[])"
            " AND ($2::text IS NULL OR merchant_id = $2) ORDER BY created_at DESC, order_id LIMIT $3",
            list(user_ids),
            merchant_id,
            limit,
        )
        orders = [_order(row) for row in rows]
        sales = {sale_id: await self.sale(sale_id) for sale_id in {order.sale_id for order in orders}}
        return [(order, sale) for order in orders if (sale := sales[order.sale_id]) is not None]

    async def of_show(self, show_id: str, merchant_id: str, since: int, limit: int) -> list[dict[str, Any]]:
        """A show's orders for its studio, newest first: those of the sales made during it and the merchant's shelf
        orders since it opened (`since`), with each buyer's name; as far as the order log is copied."""
        rows = await self.db.pool.fetch(_OF_SHOW, show_id, merchant_id, at(since), limit)
        found = []
        for row in rows:
            product = orjson.loads(row["product"])
            found.append(
                {
                    "order_id": row["order_id"],
                    "buyer": {"id": row["user_id"], "name": row["name"]},
                    "product": {"id": product["id"], "title": product["title"]},
                    "quantity": row["quantity"],
                    "amount": row["quantity"] * row["unit_price"],
                    "currency": row["currency"],
                    "status": row["status"],
                    "created_at": ms(row["created_at"]),
                    "paid_at": ms(row["paid_at"]),
                    "kind": row["kind"],
                }
            )
        return found

    async def export(self, merchant_id: str, status: str | None) -> AsyncIterator[tuple[Order, Sale]]:
        """The merchant's orders (optionally of one status), sale by sale (newest sale first), oldest order first;
        the log projected first, so every change copied so far is in."""
        await self.project_all()
        for sale_id in await self.sale_ids(merchant_id):
            sale = await self.sale(sale_id)
            assert sale is not None
            for order in await self.orders(sale_id):
                if status is None or order.status == status:
                    yield order, sale

    async def group(self, group_id: str) -> Group | None:
        row = await self.db.pool.fetchrow(f"SELECT {_GROUP_COLUMNS} FROM group_buys WHERE group_id = $1", group_id)
        return None if row is None else _group(row)

    async def groups(self, sale_id: str) -> list[Group]:
        """Every group of the offer, newest first."""
        rows = await self.db.pool.fetch(
            f"SELECT {_GROUP_COLUMNS} FROM group_buys WHERE sale_id = $1 ORDER BY created_at DESC, group_id", sale_id
        )
        return [_group(row) for row in rows]

    async def unrefunded(self, sale_id: str) -> list[str]:
        """The offer's refunded orders whose refund is not written yet (a failed group's money still to go back)."""
        rows = await self.db.pool.fetch(
            "SELECT order_id FROM orders o WHERE sale_id = $1 AND status = 'refunded'"
            " AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = o.order_id)",
            sale_id,
        )
        return [row["order_id"] for row in rows]

    # --- payments ----------------------------------------------------------------------------

    async def record_payment(
        self,
        authorization_id: str,
        kind: str,
        order_id: str,
        merchant_id: str,
        amount: int,
        currency: str,
        *,
        by_reconciler: bool = False,
        card: str | None = None,
    ) -> bool:
        """A money movement at the gateway, once; False when it was already recorded. `card`: a keyed hash of the
        card an authorization was made with (share and earn flags a sharer paying for their own referrals)."""
        assert kind in PAYMENT_KINDS
        done = await self.db.pool.execute(
            "INSERT INTO payments (authorization_id, kind, order_id, merchant_id, amount, currency, by_reconciler,"
            " card) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            authorization_id,
            kind,
            order_id,
            merchant_id,
            amount,
            currency,
            by_reconciler,
            card,
        )
        return done.endswith(" 1")

    async def payments(self, order_id: str) -> list[Payment]:
        rows = await self.db.pool.fetch(
            "SELECT authorization_id, kind, order_id, amount, currency, at, by_reconciler FROM payments"
            " WHERE order_id = $1 ORDER BY payment_id",
            order_id,
        )
        return [
            Payment(
                row["authorization_id"],
                row["kind"],
                row["order_id"],
                row["amount"],
                row["currency"],
                ms(row["at"]) or 0,
                row["by_reconciler"],
            )
            for row in rows
        ]

    async def paid_without_capture(self, paid_before: datetime, since: datetime, limit: int) -> list[PaidOrder]:
        """Orders paid in [since, paid_before) whose capture is not recorded."""
        rows = await self.db.pool.fetch(
            "SELECT o.order_id, o.merchant_id, o.payment_ref, o.quantity * o.unit_price AS amount, o.currency"
            " FROM orders o WHERE o.status = 'paid' AND o.paid_at >= $1 AND o.paid_at < $2"
            " AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.authorization_id = o.payment_ref AND p.kind = 'capture')"
            " ORDER BY o.paid_at LIMIT $3",
            since,
            paid_before,
            limit,
        )
        return [
            PaidOrder(row["order_id"], row["merchant_id"], row["payment_ref"], row["amount"], row["currency"])
            for row in rows
        ]

    # --- retention ---------------------------------------------------------------------------

    async def purge(self, before: datetime) -> int:
        """Remove sales that ended before `before`, with their orders, changes and payments; the count of sales."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            ids = [
                row["sale_id"]
                for row in await connection.fetch(
                    "SELECT sale_id FROM sales WHERE ends_at < $1 AND archived_at IS NOT NULL", before
                )
            ]
            if not ids:
                return 0
            await connection.execute(
                "DELETE FROM payments WHERE order_id IN (SELECT order_id FROM orders WHERE sale_id = ANY($1))", ids
            )
            await connection.execute("DELETE FROM order_changes WHERE sale_id = ANY($1)", ids)
            await connection.execute("DELETE FROM group_buys WHERE sale_id = ANY($1)", ids)
            await connection.execute("DELETE FROM orders WHERE sale_id = ANY($1)", ids)
            await connection.execute("DELETE FROM sales WHERE sale_id = ANY($1)", ids)
            return len(ids)


_OF_SHOW = """
SELECT o.order_id, o.user_id, coalesce(u.name, '') AS name, s.product, o.quantity, o.unit_price, o.currency, o.status,
       o.created_at, o.paid_at,
       CASE WHEN s.room_id = '' THEN 'shelf' WHEN s.auction_id IS NOT NULL THEN 'auction'
            WHEN s.group_terms IS NOT NULL THEN 'group' ELSE 'flash' END AS kind
FROM orders o JOIN sales s ON s.sale_id = o.sale_id LEFT JOIN users u ON u.user_id = o.user_id
WHERE s.show_id = $1 OR (s.room_id = '' AND s.merchant_id = $2 AND o.created_at >= $3)
ORDER BY o.created_at DESC, o.order_id LIMIT $4
"""

_INSERT_SALE = (
    "INSERT INTO sales (sale_id, merchant_id, room_id, show_id, product, price, currency, quantity,"
    " per_user_limit, hold_ms, starts_at, ends_at, created_at, buyers, group_terms, auction_id, winner_id)"
    " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb, $16, $17)"
    " ON CONFLICT DO NOTHING"
)


# Rows of the order log into order_changes and orders, oldest first: each (order, version) once; each order's
# row replaced only by a newer version, its fields read from the order's JSON and its sale's row. Returns the
# count of changes taken (on every row), and the changes already written (a second delivery), which
# _CONTRADICTED then compares: the common case (none) costs no lookup.
_PROJECT = f"""
WITH taken AS (
    DELETE FROM order_log WHERE batch_id IN (SELECT batch_id FROM order_log ORDER BY batch_id LIMIT $1)
    RETURNING sale_id, stream_ids, changes, entries
), incoming AS (
    SELECT d->>'id' AS order_id, (d->>'version')::int AS version, sale_id, change, stream_id, d FROM (
        SELECT t.sale_id, e.stream_id, e.change, e.entry::jsonb AS d
        FROM taken t, unnest(t.stream_ids, t.changes, t.entries) AS e (stream_id, change, entry)
    ) AS parsed
), inserted AS (
    INSERT INTO order_changes (order_id, version, sale_id, change, at, stream_id)
    SELECT order_id, version, sale_id, change, {_at("split_part(stream_id, '-', 1)")}, stream_id FROM incoming
    WHERE change <> 'group'
    ON CONFLICT DO NOTHING RETURNING order_id, version
), upserted AS (
    INSERT INTO orders ({_ORDER_COLUMNS})
    SELECT DISTINCT ON (i.order_id) i.order_id, i.sale_id, s.merchant_id, d->>'user_id', (d->>'quantity')::int,
        coalesce((d->>'price')::bigint, s.price), s.currency, d->>'status', i.version, d->>'idempotency_key',
        {_at("d->>'created_at'")}, {_at("d->>'hold_expires_at'")}, {_at("d->>'paid_at'")}, {_at("d->>'closed_at'")},
        d->>'payment_ref', d->>'payment_key', d->>'group_id'
    FROM incoming i JOIN sales s USING (sale_id)
    WHERE i.change <> 'group'
    ORDER BY i.order_id, i.version DESC
    ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, version = excluded.version,
        paid_at = excluded.paid_at, closed_at = excluded.closed_at, payment_ref = excluded.payment_ref,
        payment_key = excluded.payment_key
    WHERE orders.version < excluded.version
    RETURNING 1
), grouped AS (
    INSERT INTO group_buys ({_GROUP_COLUMNS})
    SELECT DISTINCT ON (i.order_id) i.order_id, i.sale_id, s.merchant_id, d->>'leader', (d->>'size')::int,
        d->>'state', d->'members', {_at("d->>'created_at'")}, {_at("d->>'opened_at'")}, {_at("d->>'expires_at'")},
        {_at("d->>'closed_at'")}, i.version
    FROM incoming i JOIN sales s USING (sale_id)
    WHERE i.change = 'group'
    ORDER BY i.order_id, i.version DESC
    ON CONFLICT (group_id) DO UPDATE SET state = excluded.state, members = excluded.members,
        opened_at = excluded.opened_at, expires_at = excluded.expires_at, closed_at = excluded.closed_at,
        version = excluded.version
    WHERE group_buys.version < excluded.version
    RETURNING 1
), again AS (
    SELECT i.order_id, i.version, i.change, i.sale_id FROM incoming i
    WHERE i.change <> 'group'
        AND NOT EXISTS (SELECT 1 FROM inserted n WHERE (n.order_id, n.version) = (i.order_id, i.version))
)
SELECT (SELECT count(*) FROM incoming) AS total, again.* FROM (SELECT 1) AS one LEFT JOIN again ON true
"""

# Of the changes already written (copied again), those written as another change.
_CONTRADICTED = """
SELECT i.order_id, i.version, i.change, i.sale_id
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS i (order_id, version, change, sale_id)
JOIN order_changes c USING (order_id, version) WHERE c.change <> i.change
"""
_PROJECTION_LOCK = 0x70726F31  # the advisory lock of the projection, one at a time ("pro1")
_PROJECT_ROWS = 100  # log rows per projection statement when projecting all


async def project_log(connection: Connection, rows: int, *, wait: bool = False) -> Projected:
    """Move up to `rows` rows of the order log into order_changes and orders, oldest first, in one transaction:
    each change once, each order at its newest version. One process at a time: when another is at it,
    nothing (or, with `wait`, after it).

    Reports the changes that contradict the record: the same (order, version) already written as another
    change. That happens only when Redis lost acknowledged writes the backup had already copied (an AOF
    window, a failover): the sale needs `repair-sale`.
    """
    async with connection.transaction():
        if wait:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _PROJECTION_LOCK)
        elif not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PROJECTION_LOCK):
            return Projected(0, [])
        again = await connection.fetch(_PROJECT, rows)
        total = again[0]["total"] if again else 0
        again = [row for row in again if row["order_id"] is not None]
        contradicted = (
            await connection.fetch(
                _CONTRADICTED,
                *zip(*((r["order_id"], r["version"], r["change"], r["sale_id"]) for r in again), strict=True),
            )
            if again
            else []
        )
    return Projected(total, [Contradiction(**dict(row)) for row in contradicted])


async def project_whole_log(connection: Connection) -> None:
    """Project the whole order log, waiting for a projection under way."""
    while (await project_log(connection, _PROJECT_ROWS, wait=True)).changes:
        pass


def _sale_values(sale: Sale, show_id: str | None) -> tuple[Any, ...]:
    return (
        sale.id,
        sale.merchant_id,
        sale.room_id,
        show_id,
        orjson.dumps(sale.product).decode(),
        sale.price,
        sale.currency,
        sale.quantity,
        sale.per_user_limit,
        sale.hold_ms,
        at(sale.starts_at),
        at(sale.ends_at),
        at(sale.created_at),
        sale.buyers,
        None if sale.group is None else sale.group.to_json(),
        sale.auction_id,
        sale.winner,
    )


def _order(row: Record) -> Order:
    return Order(
        id=row["order_id"],
        sale_id=row["sale_id"],
        user_id=row["user_id"],
        quantity=row["quantity"],
        status=row["status"],
        created_at=ms(row["created_at"]) or 0,
        hold_expires_at=ms(row["hold_expires_at"]) or 0,
        idempotency_key=row["idempotency_key"],
        paid_at=ms(row["paid_at"]),
        closed_at=ms(row["closed_at"]),
        payment_ref=row["payment_ref"],
        payment_key=row["payment_key"],
        version=row["version"],
        group_id=row["group_id"],
        price=row["unit_price"] if row["group_id"] is not None else None,  # as the scripts keep it: group orders'
    )


def _sale(row: Record) -> Sale:
    held, paid = int(row["held"]), int(row["paid"])
    return Sale(
        id=row["sale_id"],
        merchant_id=row["merchant_id"],
        room_id=row["room_id"],
        product=orjson.loads(row["product"]),
        price=row["price"],
        currency=row["currency"],
        quantity=row["quantity"],
        per_user_limit=row["per_user_limit"],
        buyers=row["buyers"],
        starts_at=ms(row["starts_at"]) or 0,
        ends_at=ms(row["ends_at"]) or 0,
        hold_ms=row["hold_ms"],
        created_at=ms(row["created_at"]) or 0,
        available=row["quantity"] - held - paid,
        held=held,
        paid=paid,
        version=int(row["changes"]),
        announced=3 if row["archived_at"] is not None else -1,
        group=None if row["group_terms"] is None else GroupTerms.from_json(row["group_terms"]),
        filled=int(row["filled"]),
        failed=int(row["failed"]),
        auction_id=row["auction_id"],
        winner=row["winner_id"],
    )


def _group(row: Record) -> Group:
    return Group.from_dict(
        {
            "id": row["group_id"],
            "leader": row["leader_id"],
            "size": row["size"],
            "state": row["state"],
            "members": orjson.loads(row["members"]),
            "created_at": ms(row["created_at"]),
            "opened_at": ms(row["opened_at"]),
            "expires_at": ms(row["expires_at"]),
            "closed_at": ms(row["closed_at"]),
            "version": row["version"],
        }
    )
