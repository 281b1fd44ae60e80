"""Refunds of paid orders: the one writer of `refunds`. A paid order is refunded in full, once: the gateway's
refund (idempotent) and its payments row first, then the refund's row (unique per order). Staff refund a paid
order; a group that failed has each paid member's order refunded by the sale clock (docs/group-buys.md)."""

from __future__ import annotations

import logging
from typing import Any

from server.access.tokens import Actor
from server.errors import BadRequest, Conflict
from server.ledger.audit import AuditLog
from server.ledger.client import Database, ms
from server.sales.payments import PaymentError, PaymentProvider
from server.sales.records import Order, Refusal, Sale, refused
from server.sales.store import Sales

log = logging.getLogger("livecart.orders")

MAX_REASON = 500
GROUP_FAILED = "group did not fill"  # the reason of a failed group's refunds
BY_GROUP = "group"  # who refunded them


class Refunds:
    def __init__(self, db: Database, sales: Sales, provider: PaymentProvider, audit: AuditLog) -> None:
        self.db = db
        self.sales = sales
        self.provider = provider
        self.audit = audit

    async def refund(self, actor: Actor, order_id: str, reason: object) -> tuple[dict[str, Any], bool]:
        """Refund the merchant's paid order in full; the refund made before, if any. True when new."""
        if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= MAX_REASON:
            raise BadRequest(f"'reason' must say why, in up to {MAX_REASON} characters")
        before = await self.get(order_id)
        if before is not None:
            if before["merchant_id"] != actor.merchant_id:
                raise refused(Refusal.UNKNOWN_ORDER)
            return before, False
        order, sale = await self.sales.order(order_id)  # Redis while the sale is there: the newest state
        if sale.merchant_id != actor.merchant_id:
            raise refused(Refusal.UNKNOWN_ORDER)
        if order.status not in ("paid", "refunded") or not order.payment_ref:
            raise Conflict("only a paid order can be refunded", "not_paid")
        async with self.audit.change(actor, "order.refunded", order_id) as entry:
            try:
                await self.provider.refund(order.payment_ref)
            except PaymentError:
                raise Conflict(
                    "the payment is not captured yet (the reconciler finishes it); try again in a minute",
                    "not_captured",
                ) from None
            await self._record(order, sale, "refund", reason.strip(), actor.user_id)
            entry.after = await self.get(order_id)
        assert entry.after is not None
        return entry.after, True

    async def refund_failed_group(self, order_id: str) -> None:
        """Give a failed group's member their money back (the order is `refunded` in Redis), once however often it is
        asked: a captured payment is refunded, one not captured yet is voided (the buyer was never charged). Raises
        PaymentError when neither can be done yet (the clock tries again after its lease)."""
        if await self.get(order_id) is not None:
            return
        order, sale = await self.sales.order(order_id)
        if order.status != "refunded" or not order.payment_ref:
            raise ValueError(f"order {order_id} is {order.status}, not refunded")
        try:
            await self.provider.refund(order.payment_ref)
            kind = "refund"
        except PaymentError:  # not captured: voided instead, unless it was already (the reconciler)
            states = {found.id: found.state for found in await self.provider.lookup(order_id)}
            if states.get(order.payment_ref) == "authorized":
                await self.provider.void(order.payment_ref)
            elif states.get(order.payment_ref) not in ("voided", "refunded"):
                raise
            kind = "void"
        await self._record(order, sale, kind, GROUP_FAILED, BY_GROUP)

    async def _record(self, order: Order, sale: Sale, kind: str, reason: str, by: str) -> None:
        """The payments row of the gateway's move, then the refund's row (each once)."""
        amount = order.amount(sale)
        assert order.payment_ref is not None
        await self.sales.ledger.record_payment(
            order.payment_ref, kind, order.id, sale.merchant_id, amount, sale.currency
        )
        await self.db.pool.execute(
            "INSERT INTO refunds (order_id, merchant_id, amount, currency, reason, refunded_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            order.id,
            sale.merchant_id,
            amount,
            sale.currency,
            reason,
            by,
        )

    async def get(self, order_id: str) -> dict[str, Any] | None:
        row = await self.db.pool.fetchrow("SELECT * FROM refunds WHERE order_id = $1", order_id)
        if row is None:
            return None
        return {**dict(row), "at": ms(row["at"])}
