"""The REST API of group buys (docs/group-buys.md): buyers open and join groups, anyone reads an offer's board and a
group, staff list an offer's groups. Paying, cancelling and reading an order are the flash sales' routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.http import identify, node_of, ok
from server.sales.records import Refusal, check_idempotency_key, refused
from server.sales.routes import merchant_sale, order_public


async def open_group(request: Request) -> Response:
    """POST /api/sales/{sale_id}/groups with an Idempotency-Key: lead a new group; 201 the leader's held order (with
    its group), 200 the key's earlier order."""
    identity = identify(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    node = node_of(request)
    outcome = await node.checkout.open_group(request.path_params["sale_id"], identity, key)
    return ok(await order_public(request, outcome), 201 if outcome.created else 200)


async def join_group(request: Request) -> Response:
    """POST /api/sales/{sale_id}/groups/{group_id}/join with an Idempotency-Key: take a place in an open group."""
    identity = identify(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    group_id = request.path_params["group_id"]
    if not group_id.startswith(request.path_params["sale_id"] + "."):
        raise refused(Refusal.UNKNOWN_GROUP)
    outcome = await node_of(request).checkout.join_group(group_id, identity, key)
    return ok(await order_public(request, outcome), 201 if outcome.created else 200)


async def board(request: Request) -> Response:
    """GET /api/sales/{sale_id}/groups: the offer's open groups, closest to filling first, and its counts (anyone)."""
    sales = node_of(request).sales
    sale = await sales.get(request.path_params["sale_id"])
    if sale is None:
        raise refused(Refusal.UNKNOWN_SALE)
    if sale.group is None:
        raise refused(Refusal.NOT_A_GROUP_OFFER)
    return ok(await sales.board(sale.id))


async def group(request: Request) -> Response:
    """GET /api/groups/{group_id}: one group's public form (what a group's share link opens)."""
    found = await node_of(request).sales.group(request.path_params["group_id"])
    if found is None:
        raise refused(Refusal.UNKNOWN_GROUP)
    return ok(found.public())


async def merchant_groups(request: Request) -> Response:
    """GET /api/merchants/{m}/sales/{sale_id}/groups: every group of the offer, newest first, with its members'
    orders (staff)."""
    sale = await merchant_sale(request)
    return ok([found.staff() for found in await node_of(request).sales.groups(sale.id)])


routes = [
    Route("/api/sales/{sale_id}/groups", open_group, methods=["POST"]),
    Route("/api/sales/{sale_id}/groups", board, methods=["GET"]),
    Route("/api/sales/{sale_id}/groups/{group_id}/join", join_group, methods=["POST"]),
    Route("/api/groups/{group_id}", group),
    Route("/api/merchants/{merchant_id}/sales/{sale_id}/groups", merchant_groups),
]
