"""Refunds of paid orders: the one writer of `refunds`. A paid order is refunded in full, once: the gateway's
refund (idempotent) and its payments row first, then the refund's row (unique per order)."""

from __future__ import annotations

import logging
from typing import Any

from server.access.tokens import Actor
from server.errors import BadRequest, Conflict
from server.ledger.audit import AuditLog
from server.ledger.client import Database, ms
from server.sales.payments import PaymentError, PaymentProvider
from server.sales.records import Refusal, refused
from server.sales.store import Sales

log = logging.getLogger("livecart.orders")

MAX_REASON = 500


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
        if order.status != "paid" or not order.payment_ref:
            raise Conflict("only a paid order can be refunded", "not_paid")
        amount, payment_ref = sale.price * order.quantity, order.payment_ref
        async with self.audit.change(actor, "order.refunded", order_id) as entry:
            try:
                await self.provider.refund(payment_ref)
            except PaymentError:
                raise Conflict(
                    "the payment is not captured yet (the reconciler finishes it); try again in a minute",
                    "not_captured",
                ) from None
            await self.sales.ledger.record_payment(
                payment_ref, "refund", order_id, actor.merchant_id, amount, sale.currency
            )
            await self.db.pool.execute(
                "INSERT INTO refunds (order_id, merchant_id, amount, currency, reason, refunded_by)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                order_id,
                actor.merchant_id,
                amount,
                sale.currency,
                reason.strip(),
                actor.user_id,
            )
            entry.after = await self.get(order_id)
        assert entry.after is not None
        return entry.after, True

    async def get(self, order_id: str) -> dict[str, Any] | None:
        row = await self.db.pool.fetchrow("SELECT * FROM refunds WHERE order_id = $1", order_id)
        if row is None:
            return None
        return {**dict(row), "at": ms(row["at"])}
