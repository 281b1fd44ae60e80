"""WHIP (RFC 9725) and WHEP signalling: an SDP offer in, 201 with the answer and a session URL out; DELETE ends it.

POST   /whip/{room_id}               the host publishes (token of an admin or host of the room's merchant)
DELETE /whip/{room_id}/{session_id}  the host stops
POST   /whep/{room_id}               anyone with a token watches (guest tokens come from POST /api/guest); served by the
                                     process the request reaches, wherever the host is (streaming.cascade)
DELETE /whep/{room_id}/{session_id}  the viewer leaves
PATCH  /whip|whep/{room_id}/{session_id}  trickle ICE or ICE restart (RFC 9725 section 4.3), by the session's owner
       or the merchant's staff; Content-Type: application/trickle-ice-sdpfrag (RFC 8840). Candidates for the
       current ICE session (If-Match: its ETag) answer 204; new ice-ufrag/ice-pwd (If-Match: "*") restart ICE under
       the same DTLS session and answer 200 with the server's new credentials and candidates and the new ETag; an
       If-Match naming an earlier ICE session answers 412. Run on the process holding the session
       (streaming.ice_restart).

Errors are JSON, {"error": {"code", "message"}}, like the REST API. A 201 carries the ICE session's `ETag` and
`Accept-Patch: application/trickle-ice-sdpfrag`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.tokens import Identity
from server.errors import BadRequest, Conflict, Forbidden, NotFound
from server.http import client_address, identify, node_of, read_body
from server.protocol import PRESENTERS
from server.rooms.record import Room
from streaming import hls_routes, ice_restart
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
    headers = {"Location": location, "ETag": ice_restart.answer_etag(answer), "Accept-Patch": ice_restart.MEDIA_TYPE}
    response = Response(answer, status_code=201, media_type="application/sdp", headers=headers)
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
    node = node_of(request)
    await node.hls.admit(room.id)  # 409 webrtc_full past WEBRTC_VIEWERS_PER_ROOM: watch over HLS (streaming.hls)
    try:  # served here, wherever the host is (a room whose host is elsewhere is piped here: streaming.cascade)
        peer, answer = await node.relay.watch(
            room.id, identity.user_id, offer, identity.session_id, client_address(request)
        )
    except Conflict as problem:
        if problem.code == "host_offline" and room.stream == "online":
            await node.owners.orphaned(room.id)
        raise
    await node.hls.counted(room.id, peer.id)
    return _created(request, Side.VIEWER, room.id, peer.id, answer, identity)


async def _session_call(request: Request, op: str, side: Side, **more: Any) -> dict[str, Any]:
    """Run a call on a session (its owner or the merchant's staff), on the process holding it; its reply."""
    identity = identify(request)
    room = await _room(request)
    session_id = request.path_params["session_id"]
    call = {
        "op": op,
        "side": side.value,
        "room": room.id,
        "session": session_id,
        "user": identity.user_id,
        "staff": identity.can_manage(room.merchant_id),
        **more,
    }
    return await node_of(request).owners.run_session(session_id, call)


async def _end(request: Request, side: Side) -> Response:
    await _session_call(request, "end", side)
    return Response(status_code=200)


async def stop_publishing(request: Request) -> Response:
    """DELETE /whip/{room_id}/{session_id}: the host stops; the room goes offline."""
    return await _end(request, Side.PUBLISHER)


async def stop_watching(request: Request) -> Response:
    """DELETE /whep/{room_id}/{session_id}: the viewer leaves."""
    return await _end(request, Side.VIEWER)


async def _patch(request: Request, side: Side) -> Response:
    """Trickle ICE (204) or an ICE restart (200 with the server's fragment), with the ICE session's ETag."""
    identify(request)  # 401 before reading the body
    body = await read_body(request, ice_restart.MEDIA_TYPE, MAX_OFFER_BYTES, required=True)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the SDP fragment is not UTF-8 text", "bad_fragment") from None
    ice_restart.parse_fragment(text)  # a bad body is refused here, before any call
    reply = await _session_call(request, "patch", side, fragment=text, if_match=request.headers.get("if-match"))
    if reply.get("fragment") is None:
        return Response(status_code=204, headers={"ETag": reply["etag"]})
    return Response(reply["fragment"], media_type=ice_restart.MEDIA_TYPE, headers={"ETag": reply["etag"]})


async def patch_publishing(request: Request) -> Response:
    """PATCH /whip/{room_id}/{session_id}: the host's trickled candidates or ICE restart."""
    return await _patch(request, Side.PUBLISHER)


async def patch_watching(request: Request) -> Response:
    """PATCH /whep/{room_id}/{session_id}: a viewer's trickled candidates or ICE restart."""
    return await _patch(request, Side.VIEWER)


routes = [
    Route("/whip/{room_id}", publish, methods=["POST"]),
    Route("/whip/{room_id}/{session_id}", stop_publishing, methods=["DELETE"], name="whip_session"),
    Route("/whip/{room_id}/{session_id}", patch_publishing, methods=["PATCH"]),
    Route("/whep/{room_id}", watch, methods=["POST"]),
    Route("/whep/{room_id}/{session_id}", stop_watching, methods=["DELETE"], name="whep_session"),
    Route("/whep/{room_id}/{session_id}", patch_watching, methods=["PATCH"]),
    *hls_routes.routes,
]
