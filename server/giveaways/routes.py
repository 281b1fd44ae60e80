"""REST of giveaways (docs/giveaways.md): a host starts one; anyone reads its card and its published draw; a viewer
sees their progress, enters and, having won, claims; staff read the entrants and the claims."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.addresses import address_from
from server.giveaways.desk import GiveawayDesk
from server.giveaways.rules import GiveawayRefused, Refusal, terms_from
from server.http import identify, json_body, node_of, offer, ok, require
from server.protocol import now_ms


def _desk(request: Request) -> GiveawayDesk:
    return node_of(request).giveaways


async def start(request: Request) -> Response:
    """POST /api/merchants/{m}/rooms/{r}/giveaways {product_id, winners, duration_seconds, conditions, claim_seconds?}
    (host or admin): entries open now."""
    asked = await offer(request)
    settings = node_of(request).settings
    terms = terms_from(
        asked.body,
        asked.product.public(),
        settings.giveaway_min_seconds,
        settings.giveaway_watch_margin_seconds,
        settings.giveaway_claim_min_seconds,
    )
    giveaway = await _desk(request).start(asked.actor, asked.room_id, terms)
    return ok({**giveaway.card(), "server_time": now_ms()}, 201)


async def merchant_giveaways(request: Request) -> Response:
    """GET /api/merchants/{m}/giveaways: the merchant's giveaways, newest first (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    return ok([giveaway.card() for giveaway in await _desk(request).record.of_merchant(merchant_id)])


async def merchant_giveaway(request: Request) -> Response:
    """GET /api/merchants/{m}/giveaways/{g}: one with its entrants and claims (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    desk = _desk(request)
    giveaway = await desk.get(request.path_params["giveaway_id"])
    if giveaway.merchant_id != merchant_id:
        raise GiveawayRefused(Refusal.UNKNOWN_GIVEAWAY)
    return ok(await desk.staff_view(giveaway))


async def card(request: Request) -> Response:
    """GET /api/giveaways/{g}: the public card."""
    giveaway = await _desk(request).get(request.path_params["giveaway_id"])
    return ok({**giveaway.card(), "server_time": now_ms()})


async def progress(request: Request) -> Response:
    """GET /api/giveaways/{g}/me: the caller's progress on each condition, their entry, their win."""
    person = identify(request)
    desk = _desk(request)
    return ok(await desk.progress(await desk.get(request.path_params["giveaway_id"]), person))


async def enter(request: Request) -> Response:
    """POST /api/giveaways/{g}/entries: enter (201), or the earlier entry (200)."""
    entry, created = await _desk(request).enter(request.path_params["giveaway_id"], identify(request))
    return ok(entry, 201 if created else 200)


async def published(request: Request) -> Response:
    """GET /api/giveaways/{g}/draw: the published draw, once drawn."""
    return ok(await _desk(request).record.published(request.path_params["giveaway_id"]))


async def claim(request: Request) -> Response:
    """POST /api/giveaways/{g}/claim {name, address, phone?}: a winner claims (201), or their claim again (200)."""
    person = identify(request)
    address = address_from(await json_body(request))
    found, created = await _desk(request).claim(request.path_params["giveaway_id"], person, address)
    return ok(found, 201 if created else 200)


_G = "/api/giveaways/{giveaway_id}"
routes = [
    Route("/api/merchants/{merchant_id}/rooms/{room_id}/giveaways", start, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/giveaways", merchant_giveaways),
    Route("/api/merchants/{merchant_id}/giveaways/{giveaway_id}", merchant_giveaway),
    Route(_G, card),
    Route(f"{_G}/me", progress),
    Route(f"{_G}/entries", enter, methods=["POST"]),
    Route(f"{_G}/draw", published),
    Route(f"{_G}/claim", claim, methods=["POST"]),
]
