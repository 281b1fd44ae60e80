"""The Starlette application: routes, and the start-up and shut-down of one server process's services."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server import api, config, metrics, sales_api, stats
from server.config import Settings
from server.services import Services
from server.transport import room_socket
from streaming import routes as streaming_routes
from streaming.ice import IceServers
from streaming.owners import Owners
from streaming.relay import Relay

log = logging.getLogger("livecart.app")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def healthz(request: Request) -> Response:
    """The process is up."""
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """The process can reach Redis."""
    services: Services = request.app.state.services
    try:
        with metrics.redis_timer("ping"):
            await services.redis.ping()
    except (RedisError, OSError) as problem:
        return JSONResponse({"ready": False, "error": f"redis unreachable: {problem}"}, status_code=503)
    return JSONResponse({"ready": True})


ROOM_SOCKET = re.compile(r"/ws/rooms/([^/]+)")


class LiveCart:
    """The ASGI entry point. Room sockets go straight to the transport: a connection lives for
    hours, and every Starlette layer it passed through would stay in memory with it (about 5 KiB
    a viewer). Purchases go straight to their handler: at flash-sale rates, Starlette's middleware
    and route scan cost more than the purchase. Everything else is the Starlette app."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match = ROOM_SOCKET.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self.app
                scope["path_params"] = {"room_id": match[1]}
                await room_socket(scope, receive, send)
                return
        elif scope["type"] == "http" and scope["method"] == "POST":
            match = sales_api.PURCHASE_PATH.fullmatch(scope["path"])
            if match is not None:  # a flash sale's hot path, thousands a second: no Starlette layers either
                scope["app"] = self.app
                scope["path_params"] = {"sale_id": match[1]}
                await sales_api.purchase_endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> LiveCart:
    settings = settings or config.load()
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set: start the server with `python -m server`, which runs Redis for you")
    redis_url = settings.redis_url
    try:
        ice = IceServers(settings.ice_servers, settings.turn_secret)
    except ValueError as problem:  # e.g. a TURN URL without TURN_SECRET
        raise SystemExit(str(problem)) from None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url, decode_responses=True, max_connections=256)
        pubsub_redis = Redis.from_url(redis_url, decode_responses=True, health_check_interval=15)
        services = Services.build(settings, redis, pubsub_redis)
        app.state.services = services
        await services.hub.start()
        await services.sales_feed.start()
        app.state.relay = Relay(ice, on_stream=services.rooms.set_stream)
        app.state.owners = Owners(redis, app.state.relay)
        await app.state.owners.start()
        try:
            yield
        finally:
            await app.state.relay.close()  # first: rooms still hear that their stream went offline
            await app.state.owners.stop()
            await services.sales_feed.stop()
            await services.hub.stop()
            await pubsub_redis.aclose()
            await redis.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        *api.routes,
        *sales_api.routes,
        *stats.routes,
        *streaming_routes.routes,
        Mount("/", StaticFiles(directory=STATIC_DIR, html=True, check_dir=False), name="static"),
    ]
    return LiveCart(
        Starlette(
            routes=routes,
            lifespan=lifespan,
            exception_handlers={api.ApiError: api.api_error, HTTPException: api.http_error},
        )
    )
