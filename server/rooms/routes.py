"""The REST API of a merchant's shop: the merchant, products, rooms and the chat block list; a room's public card."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import BadRequest, Conflict, NotFound
from server.http import json_body, node_of, ok, require
from server.protocol import PRESENTERS, STAFF
from server.rooms.catalog import check_id, new_id, product_from


async def merchant(request: Request) -> Response:
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    data = await node_of(request).catalog.get_merchant(merchant_id)
    if data is None:
        raise NotFound(f"no merchant '{merchant_id}'")
    return ok(data)


async def products(request: Request) -> Response:
    """GET: the merchant's products. POST: add one (admin or host)."""
    merchant_id = request.path_params["merchant_id"]
    catalog = node_of(request).catalog
    if request.method == "GET":
        require(request, merchant_id)
        return ok([product.public() for product in await catalog.list_products(merchant_id)])
    staff = require(request, merchant_id, PRESENTERS)
    body = await json_body(request)
    product_id = check_id(body["id"], "product id") if "id" in body else new_id("p_")
    product = product_from(merchant_id, product_id, body)
    async with node_of(request).audit.change(staff, "product.created", f"product:{product_id}", after=product.public()):
        if not await catalog.add_product(product):
            raise Conflict(f"product '{product_id}' exists; PUT to change it", "exists")
    return ok(product.public(), 201)


async def product(request: Request) -> Response:
    """GET, PUT or DELETE one product of the merchant."""
    merchant_id = request.path_params["merchant_id"]
    product_id = request.path_params["product_id"]
    catalog = node_of(request).catalog
    staff = require(request, merchant_id, STAFF if request.method == "GET" else PRESENTERS)
    audit = node_of(request).audit
    existing = await catalog.get_product(merchant_id, product_id)
    if existing is None:
        raise NotFound(f"no product '{product_id}'")
    if request.method == "GET":
        return ok(existing.public())
    subject = f"product:{product_id}"
    if request.method == "DELETE":
        async with audit.change(staff, "product.deleted", subject, before=existing.public()):
            await catalog.delete_product(merchant_id, product_id)
        return Response(status_code=204)
    changed = product_from(merchant_id, product_id, {**existing.public(), **await json_body(request)})
    async with audit.change(staff, "product.updated", subject, before=existing.public(), after=changed.public()):
        await catalog.put_product(changed)
    return ok(changed.public())


async def rooms(request: Request) -> Response:
    """GET: the merchant's rooms. POST {title}: create one (admin or host), under an id the server picks: room ids are
    one namespace for every merchant, so a chosen id could squat another shop's name (400 when one is sent)."""
    merchant_id = request.path_params["merchant_id"]
    catalog = node_of(request).catalog
    if request.method == "GET":
        require(request, merchant_id)
        return ok([room.public() for room in await catalog.list_rooms(merchant_id)])
    staff = require(request, merchant_id, PRESENTERS)
    body = await json_body(request)
    if "id" in body:
        raise BadRequest("a room's 'id' is chosen by the server: leave it out")
    title = body.get("title")
    if not isinstance(title, str):
        raise BadRequest("'title' must be a string")
    async with node_of(request).audit.change(staff, "room.created") as entry:
        room = await catalog.create_room(merchant_id, new_id("r_"), title)
        entry.subject, entry.after = f"room:{room.id}", room.public()
    return ok(room.public(), 201)


async def room(request: Request) -> Response:
    """GET /api/rooms/{room_id}: what anyone may know of a room (to render its page)."""
    room_id = request.path_params["room_id"]
    found = await node_of(request).catalog.get_room(room_id)
    if found is None:
        raise NotFound(f"no room '{room_id}'")
    return ok(found.public())


async def blocklist(request: Request) -> Response:
    """GET or PUT {words: [...]} the merchant's chat block list (staff)."""
    merchant_id = request.path_params["merchant_id"]
    staff = require(request, merchant_id)
    node = node_of(request)
    if request.method == "GET":
        return ok({"words": await node.catalog.get_blocklist(merchant_id)})
    words = (await json_body(request)).get("words")
    if (
        not isinstance(words, list)
        or len(words) > 500
        or not all(isinstance(w, str) and 0 < len(w) <= 50 for w in words)
    ):
        raise BadRequest("'words' must be a list of up to 500 strings of 1-50 characters")
    before = {"words": await node.catalog.get_blocklist(merchant_id)}
    async with node.audit.change(staff, "blocklist.changed", f"blocklist:{merchant_id}", before=before) as entry:
        entry.after = {"words": await node.chat.set_blocklist(merchant_id, words)}
    return ok(entry.after)


routes = [
    Route("/api/rooms/{room_id}", room),
    Route("/api/merchants/{merchant_id}", merchant),
    Route("/api/merchants/{merchant_id}/products", products, methods=["GET", "POST"]),
    Route("/api/merchants/{merchant_id}/products/{product_id}", product, methods=["GET", "PUT", "DELETE"]),
    Route("/api/merchants/{merchant_id}/rooms", rooms, methods=["GET", "POST"]),
    Route("/api/merchants/{merchant_id}/blocklist", blocklist, methods=["GET", "PUT"]),
]
