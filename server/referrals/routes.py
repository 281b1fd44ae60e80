"""REST of share and earn (docs/referrals.md): share links, their QR codes and visits, a sharer's earnings and
withdrawals; a merchant's programme, rules, sharers, flagged commissions, withdrawals, refunds; the payout
provider's callback."""

from __future__ import annotations

import csv
import io
from dataclasses import fields

import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.limits import Rule
from server.access.tokens import Identity
from server.errors import BadRequest, Forbidden, NotFound
from server.http import client_address, identify, json_body, node_of, ok, read_body, require
from server.protocol import STAFF, Role
from server.referrals.earnings import STATES
from server.referrals.payouts import STATES as PAYOUT_STATES
from server.referrals.rules import SCOPES, Program, rates_from
from server.sales.records import check_idempotency_key

ADMINS = frozenset({Role.ADMIN})
SETTINGS = frozenset(field.name for field in fields(Program)) - {"merchant_id", "saved"} | {"default"}  # a PUT's
CSV_FIELDS = ("entry_id", "at", "sharer_id", "sharer_name", "order_id", "level", "buyer_id", "room_id", "base",
              "amount", "currency", "state", "flag", "review", "note", "available_at")  # fmt: skip


def _member(request: Request) -> Identity:
    identity = identify(request)
    if identity.guest:
        raise Forbidden("sign in to share and earn: commissions are paid to people, not to guests", "sign_in_required")
    return identity


# --- sharers ---------------------------------------------------------------------------------


async def make_share(request: Request) -> Response:
    """POST /api/merchants/{m}/shares {room_id, product_id?}: the caller's link to the room or product."""
    node = node_of(request)
    merchant_id = request.path_params["merchant_id"]
    sharer = _member(request)
    body = await json_body(request)
    room_id, product_id = body.get("room_id"), body.get("product_id") or ""
    if not isinstance(room_id, str) or not isinstance(product_id, str):
        raise BadRequest("'room_id' (and 'product_id', if given) must be strings")
    room = await node.catalog.get_room(room_id)
    if room is None or room.merchant_id != merchant_id:
        raise NotFound(f"no room '{room_id}' of this merchant", "unknown_room")
    if product_id and await node.catalog.get_product(merchant_id, product_id) is None:
        raise NotFound(f"no product '{product_id}' of this merchant", "unknown_product")
    if not (await node.programs.get(merchant_id)).enabled:
        raise Forbidden("this shop does not pay for shares", "referrals_disabled")
    await node.limits.take("too many share links made", (Rule("shares", *node.settings.limit_shares), sharer.user_id))
    share, created = await node.shares.link(merchant_id, sharer, room_id, product_id, client_address(request))
    return ok(share.public(), 201 if created else 200)


async def share(request: Request) -> Response:
    """GET /api/shares/{code}: the link's merchant, room, product and sharer's name (public)."""
    return ok((await node_of(request).shares.get(request.path_params["code"])).public())


async def share_qr(request: Request) -> Response:
    """GET /api/shares/{code}/qr.svg: the link as a QR code (public)."""
    found = await node_of(request).shares.get(request.path_params["code"])
    url = f"{request.base_url}".rstrip("/") + found.public()["url"]
    svg = io.BytesIO()
    segno.make(url, error="m").save(svg, kind="svg", scale=6, border=2, xmldecl=False, title="Share link")
    return Response(svg.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


async def visit(request: Request) -> Response:
    """POST /api/shares/{code}/visits: the caller opened the link (bound to its sharer by the merchant's mode)."""
    node = node_of(request)
    visitor = identify(request)
    address = client_address(request)
    await node.limits.take(
        "too many share links opened", (Rule("share-visits", *node.settings.limit_share_visits), address)
    )
    opened = await node.shares.visit(request.path_params["code"], visitor, address)
    found = opened.share
    await node.referrals_feed.changed([(found.merchant_id, found.sharer_id, found.room_id)])
    return ok(opened.public())


async def earnings(request: Request) -> Response:
    """GET /api/merchants/{m}/earnings: the caller's numbers with the merchant."""
    identity = identify(request)
    return ok(await node_of(request).earnings.summary(request.path_params["merchant_id"], identity.user_id))


async def my_earnings(request: Request) -> Response:
    """GET /api/me/earnings: per merchant the caller shares for, the summary, links, commissions, withdrawals."""
    node = node_of(request)
    identity = identify(request)
    merchants = await node.earnings.mine(identity.user_id)
    for merchant in merchants:
        merchant_id = merchant["summary"]["merchant_id"]
        shop = await node.catalog.get_merchant(merchant_id)
        merchant["merchant_id"], merchant["name"] = merchant_id, (shop or {}).get("name", merchant_id)
        merchant["program"] = (await node.programs.get(merchant_id)).public()
        merchant["withdrawals"] = await node.payouts.of_sharer(identity.user_id, merchant_id)
    return ok({"merchants": merchants})


async def withdraw(request: Request) -> Response:
    """POST /api/merchants/{m}/withdrawals {amount, recipient} with an Idempotency-Key: a payout asked for."""
    sharer = _member(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    body = await json_body(request)
    payout, created = await node_of(request).payouts.request(
        request.path_params["merchant_id"], sharer, body.get("amount"), body.get("recipient"), key
    )
    return ok(payout, 201 if created else 200)


# --- merchants -------------------------------------------------------------------------------


async def program(request: Request) -> Response:
    """GET (staff) or PUT (admins) /api/merchants/{m}/referrals: the programme and its default rates."""
    node = node_of(request)
    merchant_id = request.path_params["merchant_id"]
    if request.method == "GET":
        require(request, merchant_id, STAFF)
        return ok(await node.programs.public(merchant_id))
    actor = require(request, merchant_id, ADMINS)
    if not await node.catalog.merchant_exists(merchant_id):
        raise NotFound(f"no merchant '{merchant_id}'", "unknown_merchant")
    body = await json_body(request)
    unknown = set(body) - SETTINGS
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    current = await node.programs.get(merchant_id)
    if not current.saved and "currency" not in body:  # a first programme pays in the currency the shop sells in
        products = await node.catalog.list_products(merchant_id)
        body = {**body, "currency": products[0].currency} if products else body
    changed = current.changed(body)
    default = rates_from(body["default"]) if "default" in body else None
    return ok(await node.programs.save(actor, changed, default))


async def rule(request: Request) -> Response:
    """PUT or DELETE /api/merchants/{m}/referrals/rules/{scope}/{id}: a product's or sale's rates (admins)."""
    node = node_of(request)
    merchant_id = request.path_params["merchant_id"]
    actor = require(request, merchant_id, ADMINS)
    scope, scope_id = request.path_params["scope"], request.path_params["scope_id"]
    if scope not in SCOPES:
        raise NotFound(f"rules are per {' or '.join(SCOPES)}", "unknown_scope")
    if request.method == "DELETE":
        if not await node.programs.remove_rule(actor, scope, scope_id):
            raise NotFound("no rule there", "unknown_rule")
        return Response(status_code=204)
    if scope == "product" and await node.catalog.get_product(merchant_id, scope_id) is None:
        raise NotFound(f"no product '{scope_id}' of this merchant", "unknown_product")
    if scope == "sale":
        sale = await node.sales.get(scope_id) or await node.sales.ledger.sale(scope_id)
        if sale is None or sale.merchant_id != merchant_id:
            raise NotFound(f"no sale '{scope_id}' of this merchant", "unknown_sale")
    return ok(await node.programs.set_rule(actor, scope, scope_id, rates_from(await json_body(request))))


async def sharers(request: Request) -> Response:
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, STAFF)
    return ok(await node_of(request).earnings.sharers(merchant_id))


def _filters(request: Request) -> tuple[str | None, str | None]:
    state, sharer_id = request.query_params.get("state"), request.query_params.get("sharer")
    if state is not None and state not in STATES:
        raise BadRequest(f"'state' must be one of {', '.join(STATES)}")
    return state, sharer_id


async def commissions(request: Request) -> Response:
    """GET /api/merchants/{m}/referrals/commissions[?state=][&sharer=][&before=]: newest first, 500 a page (staff);
    the next page is `before` the last entry_id."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, STAFF)
    state, sharer_id = _filters(request)
    before = request.query_params.get("before")
    if before is not None and not before.isdigit():
        raise BadRequest("'before' must be the entry_id the previous page ended with")
    found = await node_of(request).earnings.commissions(
        merchant_id, sharer_id=sharer_id, state=state, before=None if before is None else int(before)
    )
    return ok(found)


async def commissions_csv(request: Request) -> Response:
    """GET /api/merchants/{m}/referrals/commissions.csv: every commission (admins; audited)."""
    node = node_of(request)
    merchant_id = request.path_params["merchant_id"]
    actor = require(request, merchant_id, ADMINS)
    state, sharer_id = _filters(request)
    await node.audit.record(actor, "referrals.exported", f"commissions:{merchant_id}", after={"format": "csv"})
    rows = await node.earnings.commissions(merchant_id, sharer_id=sharer_id, state=state, limit=1_000_000)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="commissions-{merchant_id}.csv"'},
    )


async def review(request: Request) -> Response:
    """POST /api/merchants/{m}/referrals/commissions/{entry_id}/approve | reject (admins)."""
    actor = require(request, request.path_params["merchant_id"], ADMINS)
    decision = request.path_params["decision"]
    if decision not in ("approve", "reject"):
        raise NotFound("approve or reject", "not_found")
    approve = decision == "approve"
    return ok(await node_of(request).earnings.review(actor, request.path_params["entry_id"], approve))


async def withdrawals(request: Request) -> Response:
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, STAFF)
    state = request.query_params.get("state")
    if state is not None and state not in PAYOUT_STATES:
        raise BadRequest(f"'state' must be one of {', '.join(PAYOUT_STATES)}")
    return ok(await node_of(request).payouts.of_merchant(merchant_id, state))


async def move_withdrawal(request: Request) -> Response:
    """POST /api/merchants/{m}/withdrawals/{payout_id}/approve | refuse | retry (admins)."""
    actor = require(request, request.path_params["merchant_id"], ADMINS)
    payouts = node_of(request).payouts
    steps = {"approve": payouts.approve, "refuse": payouts.refuse, "retry": payouts.retry}
    step = steps.get(request.path_params["step"])
    if step is None:
        raise NotFound("approve, refuse or retry", "not_found")
    return ok(await step(actor, request.path_params["payout_id"]))


async def refund(request: Request) -> Response:
    """POST /api/merchants/{m}/orders/{order_id}/refund {reason}: a paid order refunded in full, once (admins)."""
    actor = require(request, request.path_params["merchant_id"], ADMINS)
    body = await json_body(request)
    done, created = await node_of(request).refunds.refund(actor, request.path_params["order_id"], body.get("reason"))
    return ok(done, 201 if created else 200)


async def payout_callback(request: Request) -> Response:
    """POST /api/payouts/callback: the payout provider's signed word on a transfer."""
    body = await read_body(request, "application/json")
    signature = request.headers.get("x-payout-signature", "")
    return ok(await node_of(request).payouts.callback(body, signature))


_M = "/api/merchants/{merchant_id}"
routes = [
    Route(f"{_M}/shares", make_share, methods=["POST"]),
    Route("/api/shares/{code}", share),
    Route("/api/shares/{code}/qr.svg", share_qr),
    Route("/api/shares/{code}/visits", visit, methods=["POST"]),
    Route(f"{_M}/earnings", earnings),
    Route("/api/me/earnings", my_earnings),
    Route(f"{_M}/withdrawals", withdraw, methods=["POST"]),
    Route(f"{_M}/withdrawals", withdrawals),
    Route(f"{_M}/withdrawals/{{payout_id}}/{{step:str}}", move_withdrawal, methods=["POST"]),
    Route(f"{_M}/referrals", program, methods=["GET", "PUT"]),
    Route(f"{_M}/referrals/rules/{{scope}}/{{scope_id}}", rule, methods=["PUT", "DELETE"]),
    Route(f"{_M}/referrals/sharers", sharers),
    Route(f"{_M}/referrals/commissions", commissions),
    Route(f"{_M}/referrals/commissions.csv", commissions_csv),
    Route(f"{_M}/referrals/commissions/{{entry_id:int}}/{{decision}}", review, methods=["POST"]),
    Route(f"{_M}/orders/{{order_id}}/refund", refund, methods=["POST"]),
    Route("/api/payouts/callback", payout_callback, methods=["POST"]),
]
