"""The Starlette application: routes, and the start-up and shut-down of one server process's services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from server import api, config, metrics
from server.config import Settings
from server.services import Services
from server.transport import room_socket

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


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or config.load()
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set: start the server with `python -m server`, which runs Redis for you")
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url, decode_responses=True, max_connections=256)
        pubsub_redis = Redis.from_url(redis_url, decode_responses=True, health_check_interval=15)
        services = Services.build(settings, redis, pubsub_redis)
        app.state.services = services
        await services.hub.start()
        try:
            yield
        finally:
            await services.hub.stop()
            await pubsub_redis.aclose()
            await redis.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        *api.routes,
        WebSocketRoute("/ws/rooms/{room_id}", room_socket),
        Mount("/", StaticFiles(directory=STATIC_DIR, html=True, check_dir=False), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={api.ApiError: api.api_error})
