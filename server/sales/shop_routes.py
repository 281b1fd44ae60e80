"""REST around the sales that buyers and sellers expect: a product's shelf (its units at the regular price) and a
room's bag with the shelves, the waitlist ("tell me when it's back"), a buyer's shipping address, and the studio's
live orders of the show (docs/sales.md)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.addresses import address_from
from server.errors import BadRequest, NotFound
from server.http import identify, json_body, node_of, ok, require
from server.live.personal import to_user
from server.protocol import PRESENTERS, event, now_ms
from server.rooms.catalog import Product
from server.sales.records import MAX_QUANTITY, MAX_UNITS, Refusal, SaleRefused, int_field
from server.sales.shelf import DEFAULT_PER_USER_LIMIT, shelf_public

log = logging.getLogger("livecart.sales")

MAX_ROOM_ORDERS = 200


async def _product(request: Request) -> Product:
    merchant_id, product_id = request.path_params["merchant_id"], request.path_params["product_id"]
    product = await node_of(request).catalog.get_product(merchant_id, product_id)
    if product is None:
        raise NotFound(f"no product '{product_id}' in this shop")
    return product


async def shelf(request: Request) -> Response:
    """GET /api/merchants/{m}/products/{p}/shelf: the product, its shelf (or null) and whether the caller waits for
    it. POST {units, per_user_limit?} (admin or host): units on the shelf; everyone waiting is told."""
    node, product = node_of(request), await _product(request)
    if request.method == "GET":
        found = (await node.shelves.of(product.merchant_id, [product.id]))[product.id]
        identity = identify(request) if "authorization" in request.headers else None
        asked = identity is not None and await node.waitlist.has(product.merchant_id, product.id, identity.user_id)
        return ok({"product": product.public(), "shelf": shelf_public(found, now_ms()), "waitlisted": asked})
    staff = require(request, product.merchant_id, PRESENTERS)
    body = await json_body(request)
    units = int_field(body, "units", 1, MAX_QUANTITY)
    limit = int_field(body, "per_user_limit", 1, MAX_UNITS, DEFAULT_PER_USER_LIMIT)
    async with node.audit.change(staff, "shelf.stocked", f"product:{product.id}") as entry:
        stocked = await node.shelves.stock(product, units, limit)
        entry.after = stocked.public(stocked.status(now_ms()))
    public = shelf_public(stocked, now_ms())
    waiting = await node.waitlist.take(product.merchant_id, product.id)
    if waiting:
        back = {"merchant_id": product.merchant_id, "product": product.public(), "shelf": public}
        await node.delivery.send(
            [(to_user(person.user_id), event("product.back", room_id=person.room_id, **back)) for person in waiting]
        )
        await _notify(request, product, [person.user_id for person in waiting])
    return ok({"product_id": product.id, "shelf": public, "told": len(waiting)})


async def _notify(request: Request, product: Product, user_ids: list[str]) -> None:
    """The messenger's notice to each person who waited (best effort: the personal event went out already)."""
    node = node_of(request)
    for user_id in user_ids:
        destination = await node.accounts.destination_of(user_id)
        if destination is None:
            continue
        try:
            await node.messenger.send(destination, f"{product.title} is back: buy it in the shop's live room.")
        except Exception as error:  # the messenger failed: the page's event was the first notice
            log.warning("product %s: back-in-stock notice failed: %r", product.id, error)


async def bag(request: Request) -> Response:
    """GET /api/rooms/{r}/bag: the room's bag, each product with its shelf (or null)."""
    node, room_id = node_of(request), request.path_params["room_id"]
    record = await node.records.get(room_id)
    if record is None:
        raise NotFound(f"no room '{room_id}'")
    cards = record.bag
    shelves = await node.shelves.of(record.room.merchant_id, [card["id"] for card in cards])
    now = now_ms()
    products = [{**card, "shelf": shelf_public(shelves[card["id"]], now)} for card in cards]
    return ok({"products": products, "server_time": now})


async def waitlist(request: Request) -> Response:
    """PUT {room_id?}: tell the caller (a member) when the product is back; DELETE: don't."""
    identity, product, node = identify(request), await _product(request), node_of(request)
    if identity.guest:
        raise SaleRefused(Refusal.SIGN_IN_REQUIRED, "Sign in so we can tell you when it's back.")
    if request.method == "DELETE":
        await node.waitlist.leave(product.merchant_id, product.id, identity.user_id)
        return ok({"waitlisted": False})
    room_id = (await json_body(request, optional=True)).get("room_id")
    if room_id is not None and (not isinstance(room_id, str) or len(room_id) > 48):
        raise BadRequest("'room_id' must be a room id")
    await node.waitlist.join(product.merchant_id, product.id, identity.user_id, room_id)
    return ok({"waitlisted": True})


async def address(request: Request) -> Response:
    """GET /api/me/address: the shipping address the caller gave last (or null); PUT {name, address, phone?}."""
    identity, addresses = identify(request), node_of(request).addresses
    if request.method == "PUT":
        await addresses.save(identity.user_id, address_from(await json_body(request)))
    saved = await addresses.get(identity.user_id)
    return ok({"address": None if saved is None else saved.public()})


async def room_orders(request: Request) -> Response:
    """GET /api/merchants/{m}/rooms/{r}/orders?limit=50 (staff): the current show's orders, newest first."""
    merchant_id, room_id = request.path_params["merchant_id"], request.path_params["room_id"]
    require(request, merchant_id)
    raw = request.query_params.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ROOM_ORDERS:
        raise BadRequest(f"'limit' must be a whole number from 1 to {MAX_ROOM_ORDERS}")
    node = node_of(request)
    room = await node.catalog.get_room(room_id)
    if room is None or room.merchant_id != merchant_id:
        raise NotFound(f"no room '{room_id}' in this shop")
    show = await node.shows.current(room_id)
    orders = [] if show is None else await node.sales.ledger.of_show(show.id, merchant_id, show.started_at, int(raw))
    return ok({"orders": orders, "show_id": None if show is None else show.id, "server_time": now_ms()})


_P = "/api/merchants/{merchant_id}/products/{product_id}"
routes = [
    Route(f"{_P}/shelf", shelf, methods=["GET", "POST"]),
    Route(f"{_P}/waitlist", waitlist, methods=["PUT", "DELETE"]),
    Route("/api/rooms/{room_id}/bag", bag),
    Route("/api/me/address", address, methods=["GET", "PUT"]),
    Route("/api/merchants/{merchant_id}/rooms/{room_id}/orders", room_orders),
]
