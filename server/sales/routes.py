"""The REST API of flash sales and orders: hosts create and end sales, viewers buy and pay, merchants audit and export.

Every refusal is {"error": {"code", "message"}} with a stable code (server.sales.records.Refusal,
plus invalid_token, forbidden, bad_json, too_large and unavailable) and a message for shoppers.
When Redis cannot be reached the answer is 503 unavailable: a purchase may or may not have been
recorded, and retrying it with the same Idempotency-Key is always safe.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.access.addresses import address_from
from server.errors import STORE_ERRORS, BadRequest, DomainError, NotFound
from server.http import (
    client_address,
    error_response,
    identify,
    json_body,
    node_of,
    offer,
    ok,
    refusal,
    require,
    send_json,
)
from server.protocol import PRESENTERS, STAFF, Role, now_ms
from server.sales.checkout import EXPORT_FIELDS, ORDER_STATUSES
from server.sales.groups import Group
from server.sales.records import (
    MAX_QUANTITY,
    Outcome,
    Refusal,
    Sale,
    check_idempotency_key,
    check_quantity,
    int_field,
    refused,
    terms_from,
)
from server.sales.stats import MAX_PAST_SHOWS, PAST_SHOWS

log = logging.getLogger("livecart.sales")


async def merchant_sale(request: Request, roles: frozenset[Role] = STAFF) -> Sale:
    """The sale in the path, which must be the merchant's (else unknown_sale: others' sales are not revealed)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, roles)
    sale = await node_of(request).sales.get(request.path_params["sale_id"])
    if sale is None or sale.merchant_id != merchant_id:
        raise refused(Refusal.UNKNOWN_SALE)
    return sale


async def _announce(request: Request, sale_id: str) -> None:
    """Tell the room now; if the store fails here, the sale clock tells it a moment later (the change is made)."""
    try:
        await node_of(request).sales_feed.announce(sale_id)
    except STORE_ERRORS as problem:
        log.warning("sale %s: announcing deferred to the clock: %s", sale_id, problem)


def _sale_body(sale: Sale) -> dict[str, Any]:
    now = now_ms()
    return {**sale.public(sale.status(now)), "server_time": now}


# --- hosts ------------------------------------------------------------------------------------


async def create_sale(request: Request) -> Response:
    """POST /api/merchants/{m}/rooms/{r}/sales {product_id, price, quantity, per_user_limit,
    starts_at | countdown_seconds, duration_seconds, hold_seconds?, group?} (admin or host); with `group`
    ({size, window_seconds, leader_price?}) a group-buy offer (docs/group-buys.md)."""
    asked = await offer(request)
    staff, room_id, node = asked.actor, asked.room_id, node_of(request)
    card = {key: value for key, value in asked.product.public().items() if key != "merchant_id"}
    settings = node.settings
    terms = terms_from(
        asked.body, staff.merchant_id, room_id, card, settings.hold_seconds, now_ms(), settings.group_window_min_seconds
    )
    show = await node.shows.current(room_id)
    async with node.audit.change(staff, "sale.created") as entry:
        sale = await node.sales.create(terms, None if show is None else show.id)
        entry.subject, entry.after = f"sale:{sale.id}", sale.public(sale.status(now_ms()))
    await _announce(request, sale.id)
    return ok(_sale_body(sale), 201)


async def list_sales(request: Request) -> Response:
    """GET /api/merchants/{m}/sales: the merchant's sales with live stock, newest first (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    return ok([_sale_body(sale) for sale in await node_of(request).sales.of_merchant(merchant_id)])


async def end_sale(request: Request) -> Response:
    """POST /api/merchants/{m}/sales/{sale_id}/end: end it now (admin or host); holds stay payable until they expire."""
    staff = require(request, request.path_params["merchant_id"], PRESENTERS)
    sale = await merchant_sale(request, PRESENTERS)
    before = sale.public(sale.status(now_ms()))
    async with node_of(request).audit.change(staff, "sale.ended", f"sale:{sale.id}", before=before) as entry:
        ended = await node_of(request).sales.end(sale.id)
        entry.after = ended.public(ended.status(now_ms()))
    await _announce(request, sale.id)
    return ok(_sale_body(ended))


_ADJUSTMENTS = {"start": "sale.started_now", "restock": "sale.restocked", "extend": "sale.extended"}
MAX_EXTEND_SECONDS = 3600  # one extension


async def adjust_sale(request: Request) -> Response:
    """POST /api/merchants/{m}/sales/{sale_id}/start | restock {units} | extend {seconds} (admin or host): a scheduled
    sale starts now, a running one gets more units or more time; the room hears `sale.updated`."""
    staff = require(request, request.path_params["merchant_id"], PRESENTERS)
    sale = await merchant_sale(request, PRESENTERS)
    what = request.url.path.rsplit("/", 1)[1]
    if sale.auction_id is not None or sale.shelf:
        raise BadRequest("an auction's win and a product's shelf are not changed here")
    body = await json_body(request, optional=True)
    amount = 0
    if what == "restock":
        amount = int_field(body, "units", 1, MAX_QUANTITY)
    elif what == "extend":
        amount = int_field(body, "seconds", 1, MAX_EXTEND_SECONDS) * 1000
    node = node_of(request)
    before = sale.public(sale.status(now_ms()))
    async with node.audit.change(staff, _ADJUSTMENTS[what], f"sale:{sale.id}", before=before) as entry:
        changed = await node.sales.adjust(sale.id, what, amount)
        entry.after = changed.public(changed.status(now_ms()))
    await node.sales_feed.updated(changed)
    await _announce(request, sale.id)
    return ok(_sale_body(changed))


async def invariant(request: Request) -> Response:
    """GET /api/merchants/{m}/sales/{sale_id}/invariant: quantity = available + held + paid, checked (staff)."""
    sale = await merchant_sale(request)
    audit = await node_of(request).sales.audit(sale.id)
    if audit is None:
        raise refused(Refusal.UNKNOWN_SALE)
    return ok({"sale_id": sale.id, **audit.public(), "checked_at": now_ms()})


async def export_csv(request: Request) -> Response:
    """GET /api/merchants/{m}/orders.csv[?status=paid]: the merchant's orders, one row each (admin or host)."""
    return await _export(request, "csv")


async def export_jsonl(request: Request) -> Response:
    """GET /api/merchants/{m}/orders.jsonl[?status=paid]: the merchant's orders, one JSON object a line."""
    return await _export(request, "jsonl")


async def _export(request: Request, kind: str) -> Response:
    merchant_id = request.path_params["merchant_id"]
    staff = require(request, merchant_id, PRESENTERS)
    status = request.query_params.get("status")
    if status is not None and status not in ORDER_STATUSES:
        raise BadRequest(f"'status' must be one of {', '.join(ORDER_STATUSES)}")
    exported = {"format": kind, "status": status}
    await node_of(request).audit.record(staff, "orders.exported", f"orders:{merchant_id}", after=exported)
    rows = node_of(request).checkout.export(merchant_id, status)
    body: AsyncIterator[str] | AsyncIterator[bytes]
    if kind == "csv":
        body, media_type = _csv_lines(rows), "text/csv; charset=utf-8"
    else:
        body, media_type = _json_lines(rows), "application/x-ndjson"
    filename = f"orders-{merchant_id}.{kind}"
    return StreamingResponse(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


async def _json_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield orjson.dumps(row) + b"\n"


async def _csv_lines(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    async for row in rows:
        writer.writerow([_cell(row[name]) for name in EXPORT_FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


# --- viewers ----------------------------------------------------------------------------------


async def sale(request: Request) -> Response:
    """GET /api/sales/{sale_id}: the sale's terms, status and live stock (anyone)."""
    found = await node_of(request).sales.get(request.path_params["sale_id"])
    if found is None:
        raise refused(Refusal.UNKNOWN_SALE)
    return ok(_sale_body(found))


PURCHASE_PATH = re.compile(r"/api/sales/([^/]+)/purchases")


async def purchase_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The purchase as a bare ASGI app, the hot path of a flash sale: no middleware, no route scan.

    The caller (server.app) matched PURCHASE_PATH for a POST and set scope["app"] and
    scope["path_params"]; errors are answered as everywhere else in the API (server.http).
    """
    request = Request(scope, receive)
    headers = None
    try:
        status, body = await purchase(request)
    except DomainError as problem:  # sold_out, limit_reached...: most answers of a storm
        status, body, headers = refusal(problem)
    except Exception as problem:
        response = await error_response(request, problem)
        await response(scope, receive, send)
        return
    await send_json(send, status, body, headers)


async def purchase(request: Request) -> tuple[int, bytes]:
    """POST /api/sales/{sale_id}/purchases {quantity?=1} with Idempotency-Key: 201 a new hold, 200 the key's order."""
    identity = identify(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    quantity = check_quantity((await json_body(request, optional=True)).get("quantity", 1))
    outcome = await node_of(request).checkout.buy(request.path_params["sale_id"], identity, key, quantity)
    return 201 if outcome.created else 200, orjson.dumps(outcome.order.public(outcome.sale, outcome.now))


async def order_public(request: Request, outcome: Outcome) -> dict[str, Any]:
    """The order as its buyer sees it, with where it ships; a group buy's with its group as it is now."""
    public = outcome.order.public(outcome.sale, outcome.now)
    ship = (await node_of(request).shipping.of([outcome.order.id])).get(outcome.order.id)
    public["shipping"] = None if ship is None else ship.public()
    if outcome.group is not None:  # the group as the change left it
        public["group"] = Group.from_json(outcome.group).public()
    elif outcome.order.group_id is not None:
        group = await node_of(request).sales.group(outcome.order.group_id)
        public["group"] = None if group is None else group.public()
    return public


async def order(request: Request) -> Response:
    """GET /api/orders/{order_id}: the caller's own order, with its refund when it was refunded and its group when
    it is a group buy's."""
    identity = identify(request)
    node = node_of(request)
    found, sale_terms = await node.checkout.get(request.path_params["order_id"], identity)
    refund = await node.refunds.get(found.id) if found.status in ("paid", "refunded") else None
    public = await order_public(request, Outcome(found, sale_terms, now_ms()))
    if refund is not None:
        public["refund"] = {name: refund[name] for name in ("amount", "currency", "reason", "at")}
    return ok(public)


async def pay(request: Request) -> Response:
    """POST /api/orders/{order_id}/payment {card_number} with an Idempotency-Key: paid (final), or refused with
    nothing charged; the same key again returns the paid order."""
    identity = identify(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    body = await json_body(request, optional=True)
    card = body.get("card_number")
    if not isinstance(card, str) or len(card) > 40:
        raise BadRequest("'card_number' must be the card number as a string")
    ship_to = None if body.get("shipping") is None else address_from(body["shipping"])
    order_id = request.path_params["order_id"]
    outcome = await node_of(request).checkout.pay(order_id, identity, card, key, client_address(request), ship_to)
    return ok(await order_public(request, outcome))


async def cancel(request: Request) -> Response:
    """POST /api/orders/{order_id}/cancel: give a held order up; its units go back on sale."""
    identity = identify(request)
    outcome = await node_of(request).checkout.cancel(request.path_params["order_id"], identity)
    return ok(await order_public(request, outcome))


# POST /api/sales/{sale_id}/purchases is served by purchase_endpoint, ahead of these (see server.app).
async def room_stats(request: Request) -> Response:
    """GET /api/merchants/{m}/rooms/{r}/stats[?past=N]: viewers now, the current show's numbers, past shows (staff)."""
    merchant_id, room_id = request.path_params["merchant_id"], request.path_params["room_id"]
    require(request, merchant_id)
    past = request.query_params.get("past", str(PAST_SHOWS))
    if not (past.isascii() and past.isdigit()) or int(past) > MAX_PAST_SHOWS:  # "²".isdigit(), but int() refuses it
        raise BadRequest(f"'past' must be a whole number from 0 to {MAX_PAST_SHOWS}")
    node = node_of(request)
    room = await node.catalog.get_room(room_id)
    if room is None or room.merchant_id != merchant_id:
        raise NotFound(f"no room '{room_id}' in this shop")
    return ok(await node.stats.room(room_id, int(past)))


routes = [
    Route("/api/merchants/{merchant_id}/rooms/{room_id}/sales", create_sale, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/rooms/{room_id}/stats", room_stats),
    Route("/api/merchants/{merchant_id}/sales", list_sales),
    Route("/api/merchants/{merchant_id}/sales/{sale_id}/end", end_sale, methods=["POST"]),
    *(
        Route(f"/api/merchants/{{merchant_id}}/sales/{{sale_id}}/{what}", adjust_sale, methods=["POST"])
        for what in _ADJUSTMENTS
    ),
    Route("/api/merchants/{merchant_id}/sales/{sale_id}/invariant", invariant),
    Route("/api/merchants/{merchant_id}/orders.csv", export_csv),
    Route("/api/merchants/{merchant_id}/orders.jsonl", export_jsonl),
    Route("/api/sales/{sale_id}", sale),
    Route("/api/orders/{order_id}", order),
    Route("/api/orders/{order_id}/payment", pay, methods=["POST"]),
    Route("/api/orders/{order_id}/cancel", cancel, methods=["POST"]),
]
