"""A room's live numbers for its host: viewers now and at peak, paid orders, units, GMV, buyers and conversion.

Orders, units, GMV and buyers count paid orders of the room's flash sales. A sale's figures are
recounted from its orders only when its version changed since this process last counted them
(an ended sale is never read twice). The peak is the highest viewer count seen by any call
(server.rooms.presence), so it covers the time a studio was open; the studio also keeps the
highest count its socket saw.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from server.protocol import now_ms
from server.rooms.presence import Presence
from server.sales.store import Sales

CACHE_SIZE = 1024  # sales whose figures a process keeps


@dataclass
class SaleFigures:
    version: int
    orders: int = 0
    units: int = 0
    buyers: set[str] = field(default_factory=set)


class RoomStats:
    """The live numbers of rooms (see the module docstring)."""

    def __init__(self, sales: Sales, presence: Presence) -> None:
        self.sales = sales
        self.presence = presence
        self._figures: OrderedDict[str, SaleFigures] = OrderedDict()

    async def _sale_figures(self, sale_id: str, version: int) -> SaleFigures:
        """The paid orders of one sale, recounted only when the sale changed."""
        cached = self._figures.get(sale_id)
        if cached is not None and cached.version == version:
            self._figures.move_to_end(sale_id)
            return cached
        figures = SaleFigures(version=version)
        for order in await self.sales.orders(sale_id):
            if order.status == "paid":
                figures.orders += 1
                figures.units += order.quantity
                figures.buyers.add(order.user_id)
        self._figures[sale_id] = figures
        if len(self._figures) > CACHE_SIZE:
            self._figures.popitem(last=False)
        return figures

    async def room(self, merchant_id: str, room_id: str) -> dict[str, Any]:
        viewers, peak = await self.presence.count(room_id)
        orders = units = 0
        gmv: dict[str, int] = {}
        buyers: set[str] = set()
        sales = [sale for sale in await self.sales.of_merchant(merchant_id) if sale.room_id == room_id]
        for sale in sales:
            figures = await self._sale_figures(sale.id, sale.version)
            orders += figures.orders
            units += figures.units
            gmv[sale.currency] = gmv.get(sale.currency, 0) + figures.units * sale.price
            buyers |= figures.buyers
        return {
            "room_id": room_id,
            "viewers": viewers,
            "peak_viewers": peak,
            "orders": orders,
            "units": units,
            "gmv": gmv,
            "buyers": len(buyers),
            "conversion": round(min(1.0, len(buyers) / peak), 4) if peak else None,
            "sales": len(sales),
            "server_time": now_ms(),
        }
