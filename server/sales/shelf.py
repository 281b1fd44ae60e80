"""THE shelves: a product's units at its regular price, bought through the flash sales' hold-and-pay path.

A shelf is a sale of no room (`room_id` ""): the product's regular price, its units, a per-buyer limit, running
SHELF_DAYS. Rooms never hear of it (no announcements, stock events or toasts: server.sales.feed); a room's bag reads
each product's shelf when a viewer opens it. Adding units restocks the running shelf (sale_adjust.lua); once a shelf
has ended, the next units open a new one. The merchant's `shelves` hash (product id -> sale id) is written only
here, through shelf_claim.lua, so two hosts opening the same product's shelf at once end with one shelf.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis

from server import keys
from server.protocol import now_ms
from server.rooms.catalog import Product
from server.sales.records import Sale, Terms
from server.sales.store import Sales
from server.store import scripts

SHELF_DAYS = 365
DEFAULT_PER_USER_LIMIT = 10


def shelf_public(sale: Sale | None, now: int) -> dict[str, Any] | None:
    """What a buyer sees of a product's shelf: null when it has none running."""
    if sale is None or now >= sale.ends_at:
        return None
    return {
        "sale_id": sale.id,
        "price": sale.price,
        "currency": sale.currency,
        "available": sale.available,
        "held": sale.held,
        "sold": sale.paid,
        "per_user_limit": sale.per_user_limit,
        "status": "live" if sale.available > 0 else "sold_out",
    }


class Shelves:
    """The merchants' shelves (see the module docstring)."""

    def __init__(self, redis: Redis, sales: Sales, hold_ms: int) -> None:
        self.redis = redis
        self.sales = sales
        self.hold_ms = hold_ms
        self._claim = scripts.register(redis, __file__, "shelf_claim")

    async def of(self, merchant_id: str, product_ids: list[str]) -> dict[str, Sale | None]:
        """Each product's running shelf, or None."""
        if not product_ids:
            return {}
        sale_ids = cast(list[str | None], await self.redis.hmget(keys.shelves(merchant_id), product_ids))
        now = now_ms()
        found: dict[str, Sale | None] = {}
        for product_id, sale_id in zip(product_ids, sale_ids, strict=True):
            sale = None if sale_id is None else await self.sales.get(sale_id)
            found[product_id] = sale if sale is not None and now < sale.ends_at else None
        return found

    async def stock(self, product: Product, units: int, per_user_limit: int) -> Sale:
        """Put `units` of the product on its shelf: a restock of the running one, or a new shelf."""
        while True:
            known = cast(str | None, await self.redis.hget(keys.shelves(product.merchant_id), product.id))
            running = None if known is None else await self.sales.get(known)
            if running is not None and now_ms() < running.ends_at:
                return await self.sales.adjust(running.id, "restock", units)
            opened = await self.sales.create(self._terms(product, units, per_user_limit))
            claimed = await self._claim(
                keys=[keys.shelves(product.merchant_id)], args=[product.id, known or "", opened.id]
            )
            if claimed == 1:
                return opened
            await self.sales.end(opened.id)  # another host opened it a moment ago (nobody knows this one): theirs

    def _terms(self, product: Product, units: int, per_user_limit: int) -> Terms:
        card = {key: value for key, value in product.public().items() if key != "merchant_id"}
        return Terms(
            merchant_id=product.merchant_id,
            room_id="",
            product=card,
            price=product.price,
            currency=product.currency,
            quantity=units,
            per_user_limit=min(per_user_limit, units),
            buyers="signed_in",
            starts_at=0,
            countdown_ms=0,
            duration_ms=SHELF_DAYS * 86_400_000,
            hold_ms=self.hold_ms,
        )
