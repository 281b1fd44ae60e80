"""The ASGI application: the routes, the edge's error handlers, and one Node started and stopped with the app."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server import config, http, metrics, webserver
from server.access import routes as access_routes
from server.auctions import routes as auctions_routes
from server.config import Settings
from server.errors import STORE_ERRORS
from server.giveaways import routes as giveaways_routes
from server.ledger import routes as ledger_routes
from server.live.transport import room_socket
from server.node import Node
from server.referrals import routes as referrals_routes
from server.rooms import routes as rooms_routes
from server.sales import group_routes, shop_routes
from server.sales import routes as sales_routes
from server.service import routes as service_routes
from streaming import routes as streaming_routes
from streaming.ice import IceServers

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
GC_YOUNG_OBJECTS = 10_000  # see create_app


async def healthz(request: Request) -> Response:
    """The process is up."""
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """The process can serve: it reaches Redis (the hot path). PostgreSQL out of reach is reported but keeps it
    ready: rooms and purchases go on (the backup catches up later); payments and staff actions answer 503."""
    node = http.node_of(request)
    try:
        with metrics.redis_timer("ping"):
            await node.redis.ping()
    except STORE_ERRORS as problem:
        return JSONResponse({"ready": False, "error": f"redis unreachable: {problem}"}, status_code=503)
    try:
        await node.db.pool.fetchval("SELECT 1")
    except STORE_ERRORS as problem:
        return JSONResponse({"ready": True, "degraded": f"postgresql unreachable: {problem}"})
    return JSONResponse({"ready": True})


class Pages(StaticFiles):
    """The pages and their files (static/), each with the headers a document needs (server.webserver)."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        super().__init__(directory=STATIC_DIR, html=True, check_dir=False)
        self.extra_headers = dict(headers)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self.extra_headers)
        return response


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
            match = sales_routes.PURCHASE_PATH.fullmatch(scope["path"])
            if match is not None:  # a flash sale's hot path, thousands a second: no Starlette layers either
                scope["app"] = self.app
                scope["path_params"] = {"sale_id": match[1]}
                await sales_routes.purchase_endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> LiveCart:
    settings = settings or config.load()
    if not (settings.redis_url or settings.redis_sentinels) or not settings.database_url:
        raise SystemExit(
            "REDIS_URL or DATABASE_URL is not set: start the server with `python -m server`, which runs both for you"
        )
    try:
        ice = IceServers(settings.ice_servers, settings.turn_secret)
    except ValueError as problem:  # e.g. a TURN URL without TURN_SECRET
        raise SystemExit(str(problem)) from None

    # The cyclic garbage collector runs after every GC_YOUNG_OBJECTS container allocations (Python's default: 700). A
    # reconnect storm allocates thousands a connection, and the collector took a fifth of the process's CPU; every
    # room socket's objects live for hours, so fewer, larger young collections cost less (docs/benchmarks.md).
    gc.set_threshold(GC_YOUNG_OBJECTS, 10, 100)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = Node(settings, ice)
        app.state.node = node
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        *access_routes.routes,
        *rooms_routes.routes,
        *sales_routes.routes,
        *group_routes.routes,
        *shop_routes.routes,
        *ledger_routes.routes,
        *referrals_routes.routes,
        *service_routes.routes,
        *giveaways_routes.routes,
        *auctions_routes.routes,
        *streaming_routes.routes,
        Mount("/", Pages(webserver.page_headers(settings)), name="static"),
    ]
    return LiveCart(Starlette(routes=routes, lifespan=lifespan, exception_handlers=dict(http.HANDLERS)))
