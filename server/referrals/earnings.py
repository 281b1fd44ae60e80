"""The sharers' ledger: the one writer of `commissions` (and of the commission pass's `referral_cursor`).

Every movement is a row: a `commission` per paid order and level, its `reversal` when the order is
refunded (or the merchant rejects a flagged one), a `withdrawal` debit and its `withdrawal_refund`
when a withdrawal is refused. Exactly once is the table's unique indexes, not a check here. A
balance is a sum of rows, bucketed by the state of the commission each row belongs to (frozen until
the refund window passes, in review while flagged and undecided, else withdrawable).

The commission pass (`run`, one process at a time) reads the orders the ledger's projection wrote as
paid since its cursor, attributes each to the binding in effect when it was placed
(server.referrals.shares), computes each level's commission (server.referrals.rules), flags shared
devices, addresses and cards, applies the daily cap, and reverses the commissions of new refunds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from server.access.tokens import Actor
from server.errors import Conflict
from server.ledger.audit import AuditLog
from server.ledger.client import Connection, Database, Record, at, ms
from server.referrals.program import MERCHANT, Programs
from server.referrals.rules import Program, Rate, split
from server.referrals.shares import Share, binding_at, sharer_name

log = logging.getLogger("livecart.referrals")

BATCH = 500  # paid orders per pass step
PAGE = 500  # commission rows per page of the merchant's list
_LOCK = 0x72656631  # the commission pass, one process at a time ("ref1")
REFUND_SLACK = timedelta(minutes=10)  # a refund's row commits within this of its time: the pass looks that far back
STATES = ("frozen", "withdrawable", "review", "reversed", "rejected")

# A row's bucket: by the state of the commission it belongs to (a reversal shares its commission's review).
_BUCKETED = """
SELECT x.sharer_id, x.amount, x.kind, CASE
    WHEN x.kind IN ('withdrawal', 'withdrawal_refund') THEN 'withdrawable'
    WHEN c.flag IS NOT NULL AND c.review IS NULL THEN 'review'
    WHEN x.available_at > now() THEN 'frozen'
    ELSE 'withdrawable' END AS bucket
FROM commissions x
LEFT JOIN commissions c ON c.order_id = x.order_id AND c.level = x.level AND c.kind = 'commission'
WHERE x.merchant_id = $1 AND ($2::text IS NULL OR x.sharer_id = $2)
"""

# Each sharer's balances with a merchant (one sharer's, or every sharer's when $2 is NULL).
_BALANCES = f"""
SELECT sharer_id, coalesce(sum(amount) FILTER (WHERE bucket = 'frozen'), 0)::bigint AS frozen,
       coalesce(sum(amount) FILTER (WHERE bucket = 'withdrawable'), 0)::bigint AS withdrawable,
       coalesce(sum(amount) FILTER (WHERE bucket = 'review'), 0)::bigint AS review,
       coalesce(-sum(amount) FILTER (WHERE kind IN ('withdrawal', 'withdrawal_refund')), 0)::bigint AS withdrawn
FROM ({_BUCKETED}) AS e GROUP BY sharer_id
"""
NO_BALANCES = {"frozen": 0, "withdrawable": 0, "review": 0, "withdrawn": 0}

_STATE = """CASE
    WHEN c.review = 'rejected' THEN 'rejected'
    WHEN r.entry_id IS NOT NULL THEN 'reversed'
    WHEN c.flag IS NOT NULL AND c.review IS NULL THEN 'review'
    WHEN c.available_at > now() THEN 'frozen'
    ELSE 'withdrawable' END"""

_COMMISSIONS = f"""
SELECT c.entry_id, c.sharer_id, {sharer_name("c")} AS sharer_name, c.order_id, c.level, c.buyer_id, c.room_id,
       c.base, c.amount,
       c.currency, c.at, c.available_at, c.flag, c.review, c.note, {_STATE} AS state
FROM commissions c
LEFT JOIN commissions r ON r.order_id = c.order_id AND r.level = c.level AND r.kind = 'reversal'
WHERE c.merchant_id = $1 AND c.kind = 'commission' AND ($2::text IS NULL OR c.sharer_id = $2)
"""

# The paid orders projected since the cursor, with what attribution needs: the buyer's ids (with the guests merged
# into them), the binding in effect when the order was placed, whether the buyer is a sharer, whether refunded.
_PAID = f"""
SELECT c.seq, o.order_id, o.merchant_id, o.user_id, o.quantity, o.quantity * o.unit_price AS base, o.currency,
       o.created_at, o.paid_at, s.room_id, s.sale_id, s.product->>'id' AS product_id, ids.buyer_ids,
       bound.sharer_id AS bound_to,
       EXISTS (SELECT 1 FROM shares sh WHERE sh.merchant_id = o.merchant_id AND sh.sharer_id = o.user_id) AS is_sharer,
       EXISTS (SELECT 1 FROM refunds f WHERE f.order_id = o.order_id) AS refunded
FROM order_changes c
JOIN orders o USING (order_id)
JOIN referral_programs p ON p.merchant_id = o.merchant_id AND p.enabled
JOIN sales s ON s.sale_id = o.sale_id
CROSS JOIN LATERAL (SELECT ARRAY(SELECT o.user_id UNION SELECT alias FROM user_aliases WHERE user_id = o.user_id)
                    AS buyer_ids) AS ids
LEFT JOIN LATERAL ({binding_at("o.merchant_id", "ids.buyer_ids", "o.created_at")}) AS bound ON true
WHERE c.seq > $1 AND c.seq <= $2 AND c.change = 'paid' AND o.status = 'paid'
ORDER BY c.seq
"""

# Where a step of the pass ends: BATCH paid changes on (of every merchant: most have no programme).
_UPTO = (
    "SELECT max(seq) AS upto, count(*) AS n"
    " FROM (SELECT seq FROM order_changes WHERE seq > $1 AND change = 'paid' ORDER BY seq LIMIT $2) b"
)

# The upline of each (merchant, sharer) at a moment: level 2.
_UPLINES = f"""
SELECT q.i, up.sharer_id AS upline
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS q (merchant_id, sharer_id, at, i)
LEFT JOIN LATERAL ({binding_at("q.merchant_id", "ARRAY[q.sharer_id]", "q.at")}) AS up ON true
"""

_NOT_LOOPBACK = "{col} IS NOT NULL AND {col} NOT LIKE '127.%' AND {col} NOT IN ('::1', 'unknown', 'localhost')"


def _devices(user: str) -> str:
    return (
        f"SELECT device_id FROM users WHERE user_id = {user} AND device_id IS NOT NULL"
        f" UNION SELECT device_id FROM shares WHERE sharer_id = {user} AND device_id IS NOT NULL"
        f" UNION SELECT device_id FROM share_visits WHERE visitor_id = {user} AND device_id IS NOT NULL"
    )


def _addresses(user: str) -> str:
    return (
        f"SELECT address FROM sessions WHERE user_id = {user} AND revoked_at IS NULL"
        f" AND {_NOT_LOOPBACK.format(col='address')}"
        f" UNION SELECT address FROM shares WHERE sharer_id = {user} AND {_NOT_LOOPBACK.format(col='address')}"
        f" UNION SELECT address FROM share_visits WHERE visitor_id = {user} AND {_NOT_LOOPBACK.format(col='address')}"
    )


# Why a commission waits for the merchant: its sharer and buyer share a device, an address or a card.
_FLAGS = f"""
SELECT q.i, CASE
    WHEN EXISTS (({_devices("q.buyer_id")}) INTERSECT ({_devices("q.sharer_id")})) THEN 'same_device'
    WHEN EXISTS (({_addresses("q.buyer_id")}) INTERSECT ({_addresses("q.sharer_id")})) THEN 'same_address'
    WHEN EXISTS ((SELECT p.card FROM payments p WHERE p.order_id = q.order_id AND p.card IS NOT NULL)
                 INTERSECT (SELECT p.card FROM orders o JOIN payments p USING (order_id)
                 WHERE o.user_id = q.sharer_id AND o.status = 'paid' AND p.card IS NOT NULL)) THEN 'same_card'
    END AS flag
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q (buyer_id, sharer_id, order_id, i)
"""

_INSERT = """
INSERT INTO commissions (merchant_id, sharer_id, kind, amount, currency, order_id, level, buyer_id, room_id, base,
                         available_at, flag, note)
VALUES ($1, $2, 'commission', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT DO NOTHING
"""

# The commissions of refunded orders, reversed (once per order and level, whenever the refund came).
_REVERSE = """
INSERT INTO commissions (merchant_id, sharer_id, kind, amount, currency, order_id, level, buyer_id, room_id, base,
                         available_at, note)
SELECT c.merchant_id, c.sharer_id, 'reversal', -c.amount, c.currency, c.order_id, c.level, c.buyer_id, c.room_id,
       c.base, greatest(c.available_at, r.at), 'refunded'
FROM refunds r JOIN commissions c ON c.order_id = r.order_id AND c.kind = 'commission'
WHERE (r.at >= $1 OR r.order_id = ANY($2::text[])) AND c.review IS DISTINCT FROM 'rejected'
ON CONFLICT DO NOTHING
RETURNING merchant_id, sharer_id, room_id
"""


@dataclass(frozen=True)
class Touched:
    """Who the pass changed: (merchant, sharer, room) for the sharers' live numbers."""

    entries: set[tuple[str, str, str]] = field(default_factory=set)
    changes: int = 0  # paid changes the pass went past (of any merchant)


class Earnings:
    def __init__(self, db: Database, programs: Programs, audit: AuditLog) -> None:
        self.db = db
        self.programs = programs
        self.audit = audit

    # --- the commission pass -------------------------------------------------------------

    async def run(self) -> Touched:
        """One pass: the paid orders since the cursor (up to BATCH) and the new refunds, unless another process
        is at it."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
                return Touched()
            touched: set[tuple[str, str, str]] = set()
            changes, refunded = await self._earn(connection, touched)
            await self._reverse(connection, touched, refunded)
            return Touched(touched, changes)

    async def run_all(self, most: int = 1_000_000) -> set[tuple[str, str, str]]:
        """Pass until nothing is left (or `most` steps); who was touched."""
        touched: set[tuple[str, str, str]] = set()
        for _ in range(most):
            step = await self.run()
            touched |= step.entries
            if step.changes < BATCH:
                break
        return touched

    async def _earn(self, connection: Connection, touched: set[tuple[str, str, str]]) -> tuple[int, list[str]]:
        """Commissions of the next BATCH paid changes after the cursor; how far it went (sequence numbers), and
        the orders already refunded."""
        cursor = await connection.fetchval("SELECT position FROM referral_cursor WHERE name = 'paid'") or 0
        step = await connection.fetchrow(_UPTO, cursor, BATCH)
        assert step is not None
        upto = step["upto"]
        if upto is None:
            return 0, []
        rows = await connection.fetch(_PAID, cursor, upto)
        programs: dict[str, Program] = {}
        rules: dict[str, dict[tuple[str, str], dict[int, Rate]]] = {}
        earning: list[tuple[Record, Program, str]] = []  # (order, programme, level-1 sharer)
        for row in rows:
            merchant_id = row["merchant_id"]
            if merchant_id not in programs:
                programs[merchant_id] = await self.programs.get(merchant_id, connection)
                rules[merchant_id] = await self.programs.rules(merchant_id, connection)
            program = programs[merchant_id]
            if not program.enabled:
                continue
            sharer = row["user_id"] if program.self_purchase and row["is_sharer"] else row["bound_to"]
            if sharer is not None:
                earning.append((row, program, sharer))
        lines = await self._lines(connection, earning, rules)
        await connection.executemany(_INSERT, lines)
        for line in lines:
            touched.add((line[0], line[1], line[7]))
        await connection.execute(
            "INSERT INTO referral_cursor (name, position) VALUES ('paid', $1)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            upto,
        )
        return step["n"], [row["order_id"] for row in rows if row["refunded"]]

    async def _lines(
        self,
        connection: Connection,
        earning: list[tuple[Record, Program, str]],
        rules: dict[str, dict[tuple[str, str], dict[int, Rate]]],
    ) -> list[tuple[Any, ...]]:
        """The commission rows of these orders: each level's amount, flag, cap."""
        if not earning:
            return []
        uplines = await connection.fetch(
            _UPLINES,
            [row["merchant_id"] for row, _, _ in earning],
            [sharer for _, _, sharer in earning],
            [row["created_at"] for row, _, _ in earning],
        )
        upline_of = {r["i"]: r["upline"] for r in uplines}
        wanted: list[tuple[Record, Program, int, str, int]] = []  # (order, programme, level, sharer, amount)
        for i, (row, program, sharer) in enumerate(earning, start=1):
            merchant_rules = rules[row["merchant_id"]]
            rates = (
                merchant_rules.get(("sale", row["sale_id"]))
                or merchant_rules.get(("product", row["product_id"] or ""))
                or merchant_rules.get((MERCHANT, ""), {})
            )
            amounts = split(row["base"], row["quantity"], rates, program.levels)
            wanted.append((row, program, 1, sharer, amounts.level1))
            upline = upline_of.get(i)
            if program.levels == 2 and upline is not None and upline not in row["buyer_ids"] and upline != sharer:
                wanted.append((row, program, 2, upline, amounts.level2))
        wanted = [item for item in wanted if item[4] > 0 or item[1].daily_cap is not None]
        if not wanted:
            return []
        flags = await connection.fetch(
            _FLAGS,
            [row["user_id"] for row, *_ in wanted],
            [sharer for _, _, _, sharer, _ in wanted],
            [row["order_id"] for row, *_ in wanted],
        )
        flag_of = {r["i"]: r["flag"] for r in flags}
        earned_today = await self._earned_today(connection, {(row["merchant_id"], s) for row, _, _, s, _ in wanted})
        lines = []
        for i, (row, program, level, sharer, amount) in enumerate(wanted, start=1):
            note = None
            if program.daily_cap is not None:
                left = max(program.daily_cap - earned_today[(row["merchant_id"], sharer)], 0)
                if amount > left:
                    amount, note = left, f"daily cap {program.daily_cap} reached"
                earned_today[(row["merchant_id"], sharer)] += amount
            available_at = row["paid_at"] + timedelta(days=program.refund_days)
            lines.append((
                row["merchant_id"], sharer, amount, row["currency"], row["order_id"], level, row["user_id"],
                row["room_id"], row["base"], available_at, flag_of.get(i), note,
            ))  # fmt: skip
        return lines

    @staticmethod
    async def _earned_today(connection: Connection, sharers: set[tuple[str, str]]) -> defaultdict[tuple[str, str], int]:
        earned: defaultdict[tuple[str, str], int] = defaultdict(int)
        if not sharers:
            return earned
        merchants, ids = zip(*sharers, strict=True)
        rows = await connection.fetch(
            "SELECT c.merchant_id, c.sharer_id, sum(c.amount) AS amount FROM commissions c"
            " JOIN unnest($1::text[], $2::text[]) AS q (merchant_id, sharer_id) USING (merchant_id, sharer_id)"
            " WHERE c.kind = 'commission' AND c.at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            " GROUP BY 1, 2",
            list(merchants),
            list(ids),
        )
        for row in rows:
            earned[(row["merchant_id"], row["sharer_id"])] = int(row["amount"])
        return earned

    async def _reverse(self, connection: Connection, touched: set[tuple[str, str, str]], refunded: list[str]) -> None:
        """Reverse the commissions of refunds since the last pass looked (REFUND_SLACK back: a refund's row is
        committed within it), and of the `refunded` orders, whose commission the earn step just wrote."""
        last = await connection.fetchval("SELECT position FROM referral_cursor WHERE name = 'refunds'")
        now = await connection.fetchval("SELECT now()")
        since = at(0) if last is None else at(last) - REFUND_SLACK  # type: ignore[operator]
        for row in await connection.fetch(_REVERSE, since, refunded):
            touched.add((row["merchant_id"], row["sharer_id"], row["room_id"]))
        await connection.execute(
            "INSERT INTO referral_cursor (name, position) VALUES ('refunds', $1)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            ms(now),
        )

    # --- reading ---------------------------------------------------------------------------

    async def summary(self, merchant_id: str, sharer_id: str, connection: Connection | None = None) -> dict[str, Any]:
        """A sharer's numbers with a merchant: the `earnings` event's fields (docs/referrals.md)."""
        db = connection or self.db.pool
        balances = (await self._balances(db, merchant_id, sharer_id)).get(sharer_id, NO_BALANCES)
        people = await db.fetchrow(
            "SELECT (SELECT count(DISTINCT visitor_id) FROM share_visits WHERE merchant_id = $1 AND sharer_id = $2)"
            " AS visitors, count(DISTINCT buyer_id) AS buyers, count(*) AS orders FROM commissions"
            " WHERE merchant_id = $1 AND sharer_id = $2 AND kind = 'commission' AND level = 1",
            merchant_id,
            sharer_id,
        )
        assert people is not None
        program = await self.programs.get(merchant_id, connection)
        return {"merchant_id": merchant_id, "currency": program.currency, **dict(people), **balances}

    async def withdrawable(self, connection: Connection, merchant_id: str, sharer_id: str) -> int:
        return (await self._balances(connection, merchant_id, sharer_id)).get(sharer_id, NO_BALANCES)["withdrawable"]

    @staticmethod
    async def _balances(
        db: Connection | asyncpg.Pool, merchant_id: str, sharer_id: str | None
    ) -> dict[str, dict[str, int]]:
        """Sharer id -> balances with the merchant (one sharer's, or every sharer's); a sharer without rows is
        missing (NO_BALANCES)."""
        rows = await db.fetch(_BALANCES, merchant_id, sharer_id)
        return {row["sharer_id"]: {name: int(row[name]) for name in NO_BALANCES} for row in rows}

    async def commissions(
        self,
        merchant_id: str,
        *,
        sharer_id: str | None = None,
        state: str | None = None,
        before: int | None = None,
        limit: int = PAGE,
    ) -> list[dict[str, Any]]:
        """Commission rows, newest first, with their state (optionally of one sharer, or one state; those older
        than the entry `before`)."""
        rows = await self.db.pool.fetch(
            f"SELECT * FROM ({_COMMISSIONS}) AS c WHERE ($3::text IS NULL OR state = $3)"
            " AND ($5::bigint IS NULL OR entry_id < $5) ORDER BY entry_id DESC LIMIT $4",
            merchant_id,
            sharer_id,
            state,
            limit,
            before,
        )
        return [_commission(row) for row in rows]

    async def sharers(self, merchant_id: str) -> list[dict[str, Any]]:
        """Every sharer of the merchant with their results, the most buyers first."""
        rows = await self.db.pool.fetch(
            "SELECT s.sharer_id, s.name,"
            " (SELECT count(*) FROM share_visits v WHERE v.merchant_id = $1 AND v.sharer_id = s.sharer_id) AS clicks,"
            " count(DISTINCT c.buyer_id) FILTER (WHERE c.level = 1) AS buyers,"
            " count(c.*) FILTER (WHERE c.level = 1) AS orders,"
            " coalesce(sum(c.base) FILTER (WHERE c.level = 1), 0)::bigint AS brought,"
            " coalesce(sum(c.amount), 0)::bigint AS earned,"
            " count(c.*) FILTER (WHERE c.flag IS NOT NULL AND c.review IS NULL) AS flagged"
            " FROM (SELECT DISTINCT ON (sharer_id) sharer_id, sharer_name AS name FROM shares WHERE merchant_id = $1)"
            " AS s"
            " LEFT JOIN commissions c ON c.merchant_id = $1 AND c.sharer_id = s.sharer_id AND c.kind = 'commission'"
            " GROUP BY s.sharer_id, s.name ORDER BY buyers DESC, earned DESC, s.sharer_id",
            merchant_id,
        )
        balances = await self._balances(self.db.pool, merchant_id, None)
        return [{**dict(row), **balances.get(row["sharer_id"], NO_BALANCES)} for row in rows]

    async def top(self, room_id: str, count: int = 5) -> list[dict[str, Any]]:
        """The room's top sharers by buyers brought to its sales (names only: what they earn is theirs)."""
        rows = await self.db.pool.fetch(
            f"SELECT {sharer_name('c')} AS name, count(DISTINCT c.buyer_id) AS buyers, count(*) AS orders"
            " FROM commissions c WHERE c.room_id = $1 AND c.kind = 'commission' AND c.level = 1"
            " GROUP BY c.merchant_id, c.sharer_id ORDER BY buyers DESC, orders DESC, min(c.entry_id) LIMIT $2",
            room_id,
            count,
        )
        return [dict(row) for row in rows]

    async def mine(self, sharer_id: str) -> list[dict[str, Any]]:
        """The "My earnings" page: per merchant the sharer has links with, summary, links, newest commissions."""
        merchants = [
            row["merchant_id"]
            for row in await self.db.pool.fetch(
                "SELECT merchant_id FROM shares WHERE sharer_id = $1 GROUP BY merchant_id ORDER BY min(created_at)",
                sharer_id,
            )
        ]
        found = []
        for merchant_id in merchants:
            links = await self.db.pool.fetch(
                "SELECT s.*,"
                " (SELECT count(*) FROM share_visits v WHERE v.code = s.code) AS clicks,"
                " (SELECT count(DISTINCT b.buyer_id) FROM referral_bindings b WHERE b.code = s.code) AS bound"
                " FROM shares s WHERE s.merchant_id = $1 AND s.sharer_id = $2 ORDER BY s.created_at",
                merchant_id,
                sharer_id,
            )
            found.append({
                "summary": await self.summary(merchant_id, sharer_id),
                "links": [
                    {**Share.parse(link).public(), "clicks": link["clicks"], "bound": link["bound"],
                     "created_at": ms(link["created_at"])}
                    for link in links
                ],
                "commissions": await self.commissions(merchant_id, sharer_id=sharer_id, limit=100),
            })  # fmt: skip
        return found

    # --- the merchant's decisions and withdrawals -------------------------------------------------

    async def review(self, actor: Actor, entry_id: int, approve: bool) -> dict[str, Any]:
        """Approve a flagged commission for payment, or reject it (reversed); Conflict when not waiting."""
        action = "commission.approved" if approve else "commission.rejected"
        async with self.audit.change(actor, action, str(entry_id)) as entry:
            async with self.db.pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(
                    "UPDATE commissions SET review = $3, reviewed_by = $4 WHERE entry_id = $1 AND merchant_id = $2"
                    " AND kind = 'commission' AND flag IS NOT NULL AND review IS NULL RETURNING *",
                    entry_id,
                    actor.merchant_id,
                    "approved" if approve else "rejected",
                    actor.user_id,
                )
                if row is None:
                    raise Conflict("no flagged commission waits for a decision under that id", "not_in_review")
                if not approve:
                    await connection.execute(
                        "INSERT INTO commissions (merchant_id, sharer_id, kind, amount, currency, order_id, level,"
                        " buyer_id, room_id, base, available_at, note)"
                        " SELECT merchant_id, sharer_id, 'reversal', -amount, currency, order_id, level, buyer_id,"
                        " room_id, base, available_at, 'rejected' FROM commissions WHERE entry_id = $1"
                        " ON CONFLICT DO NOTHING",
                        entry_id,
                    )
            found = await self.commissions(actor.merchant_id, sharer_id=row["sharer_id"], limit=1_000_000)
            entry.after = after = next(item for item in found if item["entry_id"] == entry_id)
        return after

    @staticmethod
    async def debit(connection: Connection, merchant_id: str, sharer_id: str, payout_id: str, amount: int,
                    currency: str) -> None:  # fmt: skip
        """A withdrawal's debit (in the caller's transaction, under its lock)."""
        await connection.execute(
            "INSERT INTO commissions (merchant_id, sharer_id, kind, amount, currency, payout_id)"
            " VALUES ($1, $2, 'withdrawal', $3, $4, $5)",
            merchant_id,
            sharer_id,
            -amount,
            currency,
            payout_id,
        )

    @staticmethod
    async def credit_back(connection: Connection, payout_id: str) -> None:
        """A refused withdrawal's amount back to its sharer (once)."""
        await connection.execute(
            "INSERT INTO commissions (merchant_id, sharer_id, kind, amount, currency, payout_id)"
            " SELECT merchant_id, sharer_id, 'withdrawal_refund', -amount, currency, payout_id FROM commissions"
            " WHERE payout_id = $1 AND kind = 'withdrawal' ON CONFLICT DO NOTHING",
            payout_id,
        )


def _commission(row: Record) -> dict[str, Any]:
    return {
        **{name: row[name] for name in ("entry_id", "sharer_id", "sharer_name", "order_id", "level", "buyer_id",
                                        "room_id", "base", "amount", "currency", "flag", "review", "note", "state")},
        "at": ms(row["at"]),
        "available_at": ms(row["available_at"]),
    }  # fmt: skip
