"""LL-HLS over HTTP, from any server process (the media is in Redis: streaming.hls_store), cacheable by any CDN.

GET /hls/{room_id}/live.m3u8                          the playlist; `?_HLS_msn=N[&_HLS_part=P]` blocks until it
                                                      lists that part (or segment N whole), 503 after a while
GET /hls/{room_id}/{stream}/init-{g}.mp4              the init section (ftyp+moov)
GET /hls/{room_id}/{stream}/{msn}.{part}.m4s          a part (moof+mdat); the preload hint's part waits until made
GET /hls/{room_id}/{stream}/{msn}.m4s                 a segment (its parts)

The first request for a live room's playlist starts its packaging (on the process holding the
host's stream) and is held until the first segment is made (about 1-2 s). No token: the stream is
as public as the room page, and a CDN must be able to share one answer between everyone.
Cache-Control: media `immutable` (a stream's names are never reused), a blocking reload's answer
30 s (its query names a part: any later answer lists it too), the bare playlist 1 s, refusals
`no-store`.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import BadRequest, DomainError, NotFound, Unavailable
from server.http import node_of, refusal

IMMUTABLE = "public, max-age=31536000, immutable"
BLOCKING = "public, max-age=30"
LIVE = "public, max-age=1"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_NAME = re.compile(r"init-(\d+)\.mp4|(\d+)\.(\d+)\.m4s|(\d+)\.m4s")
STREAM_NAME = re.compile(r"[0-9a-f]{8}")
WAIT_SECONDS = 3.0  # a blocking reload or a preload hint's part is held this long at most
FIRST_SECONDS = 5.0  # the first request for a live room's HLS waits this long for packaging to start


def _headers(cache: str) -> dict[str, str]:
    return {"Cache-Control": cache, "Access-Control-Allow-Origin": "*"}


def _refused(error: DomainError) -> Response:
    status, body, headers = refusal(error)
    response = Response(body, status_code=status, media_type="application/json", headers=_headers("no-store"))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _number(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest(f"{name} must be a whole number", "bad_request")
    return int(value)


async def playlist(request: Request) -> Response:
    """GET /hls/{room_id}/live.m3u8: the room's LL-HLS playlist, blocking on `_HLS_msn`/`_HLS_part`."""
    room_id = request.path_params["room_id"]
    node = node_of(request)
    store = node.hls.store
    try:
        msn, part = _number(request, "_HLS_msn"), _number(request, "_HLS_part")
        if part is not None and msn is None:
            raise BadRequest("_HLS_part needs _HLS_msn", "bad_request")
        await store.want(room_id)
        found = await store.playlist(room_id)
        if found is None:  # the first viewer: packaging starts now (within a second), the playlist follows
            room = await node.catalog.get_room(room_id)
            if room is not None and room.stream == "online" and await store.wait(room_id, 0, None, FIRST_SECONDS):
                found = await store.playlist(room_id)
        if found is None:
            raise NotFound("this room is not streaming over HLS now", "host_offline")
        edge, text = found
        if msn is not None and not edge.holds(msn, part):
            if msn > edge.msn + 2:
                raise BadRequest("_HLS_msn is more than two segments ahead of the playlist", "bad_request")
            if not await store.wait(room_id, msn, part, WAIT_SECONDS):
                raise Unavailable("the stream did not reach that part in time; reload", "unavailable")
            found = await store.playlist(room_id)
            if found is None:
                raise NotFound("this room is not streaming over HLS now", "host_offline")
            edge, text = found
    except DomainError as error:
        return _refused(error)
    cache = BLOCKING if msn is not None else LIVE
    return Response(text, media_type=PLAYLIST_TYPE, headers=_headers(cache))


async def media(request: Request) -> Response:
    """GET /hls/{room_id}/{stream}/{name}: an init section, a part or a segment."""
    room_id, stream, name = (request.path_params[key] for key in ("room_id", "stream", "name"))
    store = node_of(request).hls.store
    match = MEDIA_NAME.fullmatch(name)
    try:
        if match is None or STREAM_NAME.fullmatch(stream) is None:
            raise NotFound(f"no HLS resource '{stream}/{name}'")
        data = await store.media(room_id, stream, name)
        if data is None and match[2] is not None:  # a part not made yet (the preload hint): wait for it
            found = await store.playlist(room_id)
            msn, part = int(match[2]), int(match[3])
            if found is not None and found[0].msn <= msn and await store.wait(room_id, msn, part, WAIT_SECONDS):
                data = await store.media(room_id, stream, name)
        if data is None:
            raise NotFound(f"no HLS resource '{stream}/{name}' (the window moved on, or the stream ended)")
    except DomainError as error:
        return _refused(error)
    kind = "video/mp4" if name.endswith(".mp4") else "video/iso.segment"
    return Response(data, media_type=kind, headers=_headers(IMMUTABLE))


routes = [
    Route("/hls/{room_id}/live.m3u8", playlist, methods=["GET"]),
    Route("/hls/{room_id}/{stream}/{name}", media, methods=["GET"]),
]
