"""REST of auctions (docs/auctions.md): a host starts one; anyone reads its card and bids; a signed-in viewer bids;
staff read the merchant's auctions and bidders; an admin bars and unbars."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auctions.desk import AuctionDesk
from server.auctions.rules import AuctionRefused, Refusal, check_amount, terms_from
from server.http import identify, json_body, node_of, offer, ok, require
from server.protocol import Role, now_ms
from server.sales.records import valid_idempotency_key


def _desk(request: Request) -> AuctionDesk:
    return node_of(request).auctions


async def start(request: Request) -> Response:
    """POST /api/merchants/{m}/rooms/{r}/auctions {product_id, starting_bid, duration_seconds, mode, extend_seconds?,
    increments?, unpaid?, pay_seconds?} (host or admin): bidding opens now."""
    asked = await offer(request)
    settings = node_of(request).settings
    terms = terms_from(
        asked.body,
        asked.product.public(),
        settings.auction_min_seconds,
        settings.auction_pay_seconds,
        settings.auction_pay_min_seconds,
    )
    auction = await _desk(request).start(asked.actor, asked.room_id, terms)
    return ok({**auction.card(), "server_time": now_ms()}, 201)


async def card(request: Request) -> Response:
    """GET /api/auctions/{a}: the card."""
    auction = await _desk(request).get(request.path_params["auction_id"])
    return ok({**auction.card(), "server_time": now_ms()})


async def bids(request: Request) -> Response:
    """GET /api/auctions/{a}/bids: the newest 50 bids (those copied to the record: at most AUCTION_CLOCK_MS old)."""
    desk = _desk(request)
    auction = await desk.get(request.path_params["auction_id"])
    return ok(await desk.record.bids(auction.id))


async def bid(request: Request) -> Response:
    """POST /api/auctions/{a}/bids {amount, max?} with an Idempotency-Key: 201 {outcome, auction}, 200 for the key's
    earlier answer."""
    bidder = identify(request)
    key = request.headers.get("idempotency-key")
    if key is None or not valid_idempotency_key(key):
        raise AuctionRefused(Refusal.IDEMPOTENCY_KEY)
    body = await json_body(request)
    amount = check_amount(body.get("amount"), "amount")
    max_ = None if body.get("max") is None else check_amount(body.get("max"), "max")
    outcome, found, new = await _desk(request).bid(request.path_params["auction_id"], bidder, key, amount, max_)
    return ok({"outcome": outcome, "auction": found, "server_time": now_ms()}, 201 if new else 200)


async def merchant_auctions(request: Request) -> Response:
    """GET /api/merchants/{m}/auctions: the merchant's auctions, newest first, each with its offers (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    record = _desk(request).record
    return ok(
        [
            {**auction.card(), "awards": await record.awards(auction.id)}
            for auction in await record.of_merchant(merchant_id)
        ]
    )


async def bidders(request: Request) -> Response:
    """GET /api/merchants/{m}/bidders: bidders with unpaid wins, and the barred (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    return ok(await _desk(request).record.bidders(merchant_id))


async def bar(request: Request) -> Response:
    """PUT /api/merchants/{m}/bidders/{user}/bar (admin): bar from every auction of the merchant; DELETE: let back."""
    actor = require(request, request.path_params["merchant_id"], frozenset({Role.ADMIN}))
    barred = request.method == "PUT"
    await _desk(request).bar(actor, request.path_params["user_id"], barred)
    return ok({"user_id": request.path_params["user_id"], "barred": barred})


_A = "/api/auctions/{auction_id}"
routes = [
    Route("/api/merchants/{merchant_id}/rooms/{room_id}/auctions", start, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/auctions", merchant_auctions),
    Route("/api/merchants/{merchant_id}/bidders", bidders),
    Route("/api/merchants/{merchant_id}/bidders/{user_id}/bar", bar, methods=["PUT", "DELETE"]),
    Route(_A, card),
    Route(f"{_A}/bids", bids, methods=["GET"]),
    Route(f"{_A}/bids", bid, methods=["POST"]),
]
