"""A room's live numbers for its host: viewers now and at peak, paid orders, units, GMV, buyers and conversion.

GET /api/merchants/{merchant_id}/rooms/{room_id}/stats (staff of the merchant).

Orders, units, GMV and buyers count paid orders of the room's flash sales. A sale's figures are
recounted from its orders only when its version changed since this process last counted them
(an ended sale is never read twice). The peak is the highest viewer count seen by any call of
this endpoint (kept in Redis, raised atomically with ZADD GT), so it covers the time a studio
was open; the studio also keeps the highest count its socket saw.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import keys
from server.api import ApiError, ok, require, services_of
from server.protocol import now_ms
from server.sales import Sales

_CACHE_SIZE = 1024  # sales whose figures a process keeps


@dataclass
class SaleFigures:
    version: int
    orders: int = 0
    units: int = 0
    buyers: set[str] = field(default_factory=set)


_figures: OrderedDict[str, SaleFigures] = OrderedDict()


async def _sale_figures(sales: Sales, sale_id: str, version: int) -> SaleFigures:
    """The paid orders of one sale, recounted only when the sale changed."""
    cached = _figures.get(sale_id)
    if cached is not None and cached.version == version:
        _figures.move_to_end(sale_id)
        return cached
    figures = SaleFigures(version=version)
    for order in await sales.orders(sale_id):
        if order.status == "paid":
            figures.orders += 1
            figures.units += order.quantity
            figures.buyers.add(order.user_id)
    _figures[sale_id] = figures
    if len(_figures) > _CACHE_SIZE:
        _figures.popitem(last=False)
    return figures


async def room_stats(request: Request) -> Response:
    """The room's live numbers (see the module docstring)."""
    merchant_id, room_id = request.path_params["merchant_id"], request.path_params["room_id"]
    require(request, merchant_id)
    services = services_of(request)
    room = await services.catalog.get_room(room_id)
    if room is None or room.merchant_id != merchant_id:
        raise ApiError(404, "not_found", f"no room '{room_id}' in this shop")
    now = now_ms()
    viewers = 0
    for value in (await services.redis.hgetall(keys.presence(room_id))).values():
        count, _, expires = value.partition(":")
        if int(expires) >= now:
            viewers += int(count)
    await services.redis.zadd(keys.room_peak(room_id), {"viewers": viewers}, gt=True)
    peak = int(await services.redis.zscore(keys.room_peak(room_id), "viewers") or 0)

    orders = units = 0
    gmv: dict[str, int] = {}
    buyers: set[str] = set()
    sales = [sale for sale in await services.sales.list(merchant_id) if sale.room_id == room_id]
    for sale in sales:
        figures = await _sale_figures(services.sales, sale.id, sale.version)
        orders += figures.orders
        units += figures.units
        gmv[sale.currency] = gmv.get(sale.currency, 0) + figures.units * sale.price
        buyers |= figures.buyers
    return ok(
        {
            "room_id": room_id,
            "viewers": viewers,
            "peak_viewers": peak,
            "orders": orders,
            "units": units,
            "gmv": gmv,
            "buyers": len(buyers),
            "conversion": round(min(1.0, len(buyers) / peak), 4) if peak else None,
            "sales": len(sales),
            "server_time": now,
        }
    )


routes = [Route("/api/merchants/{merchant_id}/rooms/{room_id}/stats", room_stats)]
