"""WHIP (RFC 9725) and WHEP signalling: an SDP offer in, 201 with the answer and a session URL out; DELETE ends it.

POST   /whip/{room_id}               the host publishes (token of an admin or host of the room's merchant)
DELETE /whip/{room_id}/{session_id}  the host stops
POST   /whep/{room_id}               anyone with a token watches (guest tokens come from POST /api/guest)
DELETE /whep/{room_id}/{session_id}  the viewer leaves

Errors are JSON, {"error": {"code", "message"}}, like the REST API. PATCH (trickle ICE, ICE
restart) is not supported: 405, as RFC 9725 requires; clients send every candidate in the offer.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.tokens import Identity
from server.errors import BadRequest, Conflict, Forbidden, NotFound
from server.http import client_address, identify, node_of, read_body
from server.protocol import PRESENTERS
from server.rooms.record import Room
from streaming.offers import MAX_OFFER_BYTES, Offer, parse_offer
from streaming.peers import Side


async def _room(request: Request) -> Room:
    room_id = request.path_params["room_id"]
    room = await node_of(request).catalog.get_room(room_id)
    if room is None:
        raise NotFound(f"no room '{room_id}'")
    return room


async def _offer(request: Request, *, sending: bool) -> Offer:
    body = await read_body(request, "application/sdp", MAX_OFFER_BYTES, required=True)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the SDP offer is not UTF-8 text", "bad_offer") from None
    return parse_offer(text, sending=sending)


def _created(request: Request, side: Side, room_id: str, session_id: str, answer: str, identity: Identity) -> Response:
    """201 with the answer, the session URL in Location and the ICE servers in Link headers."""
    name = "whip_session" if side is Side.PUBLISHER else "whep_session"
    node = node_of(request)
    public_url = node.settings.public_url
    if public_url:
        location = public_url + request.app.url_path_for(name, room_id=room_id, session_id=session_id)
    else:
        location = str(request.url_for(name, room_id=room_id, session_id=session_id))
    response = Response(answer, status_code=201, media_type="application/sdp", headers={"Location": location})
    for link in node.relay.ice.link_headers(identity.user_id):
        response.headers.append("Link", link)
    return response


async def publish(request: Request) -> Response:
    """POST /whip/{room_id}: the host's offer; 201 with the answer."""
    identity = identify(request)
    room = await _room(request)
    if not identity.can_manage(room.merchant_id, PRESENTERS):
        raise Forbidden("only an admin or host of this room's merchant may publish")
    offer = await _offer(request, sending=True)
    node = node_of(request)
    if not await node.owners.claim(room.id):
        raise Conflict("this room already has a host stream; end it (DELETE) first", "already_publishing")
    peer, answer = await node.relay.publish(
        room.id, identity.user_id, offer, identity.session_id, client_address(request)
    )
    return _created(request, Side.PUBLISHER, room.id, peer.id, answer, identity)


async def watch(request: Request) -> Response:
    """POST /whep/{room_id}: a viewer's offer; 201 with the answer, 409 while the host is offline."""
    identity = identify(request)
    room = await _room(request)
    offer = await _offer(request, sending=False)
    call = {
        "op": "watch",
        "room": room.id,
        "user": identity.user_id,
        "sid": identity.session_id,
        "address": client_address(request),
        "offer": offer.sdp,
    }
    owners = node_of(request).owners
    try:
        reply = await owners.run(room.id, call)
    except Conflict as problem:
        if problem.code == "host_offline" and room.stream == "online":
            await owners.orphaned(room.id)
        raise
    return _created(request, Side.VIEWER, room.id, reply["session"], reply["answer"], identity)


async def _end(request: Request, side: Side) -> Response:
    identity = identify(request)
    room = await _room(request)
    call = {
        "op": "end",
        "side": side.value,
        "room": room.id,
        "session": request.path_params["session_id"],
        "user": identity.user_id,
        "staff": identity.can_manage(room.merchant_id),
    }
    await node_of(request).owners.run(room.id, call)
    return Response(status_code=200)


async def stop_publishing(request: Request) -> Response:
    """DELETE /whip/{room_id}/{session_id}: the host stops; the room goes offline."""
    return await _end(request, Side.PUBLISHER)


async def stop_watching(request: Request) -> Response:
    """DELETE /whep/{room_id}/{session_id}: the viewer leaves."""
    return await _end(request, Side.VIEWER)


routes = [
    Route("/whip/{room_id}", publish, methods=["POST"]),
    Route("/whip/{room_id}/{session_id}", stop_publishing, methods=["DELETE"], name="whip_session"),
    Route("/whep/{room_id}", watch, methods=["POST"]),
    Route("/whep/{room_id}/{session_id}", stop_watching, methods=["DELETE"], name="whep_session"),
]
