"""The yardstick for the relay: aiortc's stock way to relay, its examples/server as WHIP/WHEP with `MediaRelay`.

Run by relay_bench under loadtests.support.loopback. POST /whip/{room} takes the publisher's offer,
POST /whep/{room} a viewer's (no auth, one stream); each viewer gets
`MediaRelay.subscribe(track, buffered=False)`, so the server decodes the host's video once and each
viewer's sender encodes it again. GET /readyz answers 200 for the launcher.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def app() -> Starlette:
    """The stock relay: one publisher's tracks, relayed to every viewer; every peer closed at shutdown."""
    publisher: dict[str, MediaStreamTrack] = {}
    relay = MediaRelay()
    peers: set[RTCPeerConnection] = set()

    async def offer(request: Request) -> Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.add(pc)
        if request.url.path.startswith("/whip"):
            pc.on("track", lambda track: publisher.__setitem__(track.kind, track))
        else:
            for track in publisher.values():
                pc.addTrack(relay.subscribe(track, buffered=False))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return Response(pc.localDescription.sdp, 201, {"Location": f"/session/{id(pc)}"}, "application/sdp")

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.gather(*(pc.close() for pc in peers))

    routes = [
        Route("/whip/{room}", offer, methods=["POST"]),
        Route("/whep/{room}", offer, methods=["POST"]),
        Route("/readyz", ready),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(app(), host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
