"""Repair after Redis lost data: rebuild a sale's keys (counters, orders, per-user units, holds; a group-buy offer's
groups, reserve and refunds still to make) from the record and the gateway.

Redis can lose acknowledged changes (the AOF `everysec` window, a failover to a replica that lagged).
The record has every change the backup copied (all but the last moments); the gateway has every
authorization. A held order the gateway holds an authorization or capture for was paid: it is
rebuilt paid, and that change goes into the log for the record. What neither knows (a hold taken in
the last moments before the loss) is gone: its buyer's retry makes a new one. A retry can also make a second order
with the key of one the record has (the first was lost after the backup copied it): one order per key is kept
(`one_per_key`). A group is as its members' orders say (server.sales.groups.rebuilt): one whose window passed
meanwhile fails at the clock's next visit.
"""

from __future__ import annotations

from dataclasses import replace

from server.protocol import now_ms
from server.sales.groups import Group, rebuilt
from server.sales.payments import PaymentProvider
from server.sales.records import Audit, Order, Refusal, refused
from server.sales.store import Sales


async def repair_sale(sales: Sales, provider: PaymentProvider, sale_id: str) -> Audit:
    """Rebuild the sale in Redis from the record and the gateway; return the invariant, checked."""
    await sales.ledger.project_all()
    sale = await sales.ledger.sale(sale_id)
    if sale is None:
        raise refused(Refusal.UNKNOWN_SALE)
    orders: list[Order] = []
    changed: list[tuple[str, Order | Group]] = []
    for order in await sales.ledger.orders(sale_id):
        if order.status == "held":
            paid = [auth for auth in await provider.lookup(order.id) if auth.state in ("authorized", "captured")]
            if paid:
                order = replace(
                    order, status="paid", paid_at=now_ms(), payment_ref=paid[-1].id, version=order.version + 1
                )
                changed.append(("paid", order))
        orders.append(order)
    orders = one_per_key(orders, changed)
    if sale.group is None:
        return await sales.restore(sale, orders, changed)
    by_id = {order.id: order for order in orders}
    groups = []
    for recorded in await sales.ledger.groups(sale_id):
        group = rebuilt(recorded, by_id, sale.group.window_ms, now_ms())
        if group.version != recorded.version:
            changed.append(("group", group))
        groups.append(group)
    refunds = await sales.ledger.unrefunded(sale_id)
    return await sales.restore(sale, orders, changed, groups, refunds)


def one_per_key(orders: list[Order], changed: list[tuple[str, Order | Group]]) -> list[Order]:
    """One order per buyer's purchase key. Two share one when Redis lost the first (a failover to a replica that
    lacked it) after the backup had copied it, and the buyer's retry made another: the paid one is kept, else the
    newest (the retry's answer); another still held is cancelled, and that change goes to the record. The kept order
    of each key comes last (the rebuilt key points at it)."""
    kept: dict[tuple[str, str], Order] = {}
    for order in sorted(orders, key=lambda order: (order.status == "paid", order.created_at)):
        kept[(order.user_id, order.idempotency_key)] = order
    others = []
    for order in orders:
        if kept[(order.user_id, order.idempotency_key)] is order:
            continue
        if order.status == "held":
            order = replace(order, status="cancelled", closed_at=now_ms(), version=order.version + 1)
            changed.append(("cancelled", order))
        others.append(order)
    return [*others, *kept.values()]
