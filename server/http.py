"""The HTTP edge: one body reader, who is calling, JSON answers, and the one mapping of errors to responses.

Domain code raises server.errors.DomainError (with its code and status); a store that cannot be
reached surfaces as a Redis or socket error. Both become `{"error": {"code", "message"}}` here,
for every route (the exception handlers) and for the routes served ahead of Starlette
(`error_response`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Send

from server.access.tokens import Actor, Identity, InvalidToken
from server.errors import (
    STORE_ERRORS,
    BadRequest,
    DomainError,
    Forbidden,
    RateLimited,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from server.protocol import PRESENTERS, STAFF, Role

if TYPE_CHECKING:
    from server.node import Node
    from server.rooms.catalog import Product

log = logging.getLogger("livecart.http")

MAX_BODY = 64 * 1024
UNAVAILABLE = (
    "We couldn't reach the store just now; nothing you can't repeat happened. Try again: retrying a purchase "
    "with the same Idempotency-Key never buys twice."
)


def node_of(connection: HTTPConnection) -> Node:
    return cast("Node", connection.app.state.node)


def bearer(connection: HTTPConnection) -> str | None:
    """The token from 'Authorization: Bearer …' (only there: a token in a URL ends up in logs and histories)."""
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def client_address(connection: HTTPConnection) -> str:
    """The caller's address (uvicorn takes it from X-Forwarded-For only behind FORWARDED_ALLOW_IPS)."""
    return connection.client.host if connection.client else "unknown"


def verify(connection: HTTPConnection, token: str | None) -> Identity:
    """The identity a token carries, refused when forged, expired or signed out."""
    node = node_of(connection)
    try:
        return node.revocations.check(node.tokens.verify(token))
    except InvalidToken as problem:
        raise Unauthorized(str(problem)) from None


def identify(connection: HTTPConnection) -> Identity:
    return verify(connection, bearer(connection))


def require(connection: HTTPConnection, merchant_id: str, roles: frozenset[Role] = STAFF) -> Actor:
    """The caller acting as staff of this merchant, in one of these roles (the role they have for it)."""
    identity = identify(connection)
    role = identity.role_in(merchant_id)
    if role not in roles:
        raise Forbidden("you may not do that for this merchant")
    return Actor(identity, merchant_id, role)


async def read_body(request: Request, media_type: str, limit: int = MAX_BODY, *, required: bool = False) -> bytes:
    """The request body, at most `limit` bytes (never more is buffered): 413 past it, 415 for another
    Content-Type (a missing one is taken as `media_type` unless `required`). A body that does not come
    within BODY_TIMEOUT_MS is the HTTP protocol's to answer (408) and close (server/webserver.py)."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (given or required) and given != media_type:
        raise UnsupportedMediaType(f"send the body with Content-Type: {media_type}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the body is limited to {limit} bytes")
    return body


async def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body ({} for none when `optional`). Whole numbers too big for orjson still parse."""
    raw = await read_body(request, "application/json")
    if optional and not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(raw)  # orjson refuses integers past 64 bits: say what is wrong with the number instead
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack (orjson stops at 1024)
            raise BadRequest("the body is not valid JSON", "bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@dataclass(frozen=True)
class Offer:
    """A host's request to put a product on offer in one of the merchant's rooms: a sale, a giveaway, an auction."""

    actor: Actor
    room_id: str
    body: dict[str, Any]
    product: Product


async def offer(request: Request) -> Offer:
    """POST /api/merchants/{merchant_id}/rooms/{room_id}/... by the merchant's host or admin, naming `product_id`."""
    merchant_id, room_id = request.path_params["merchant_id"], request.path_params["room_id"]
    actor = require(request, merchant_id, PRESENTERS)
    body = await json_body(request)
    product = await node_of(request).catalog.offer(merchant_id, room_id, body.get("product_id"))
    return Offer(actor, room_id, body, product)


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def send_json(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """A JSON answer written straight to the ASGI server: the purchase hot path's (no Response object to build)."""
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if headers:
        head.extend((name.lower().encode(), value.encode()) for name, value in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def refusal(exc: DomainError) -> tuple[int, bytes, dict[str, str] | None]:
    """A domain error as the API answers it: status, `{"error": {"code", "message", ...its details}}`, headers."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return exc.status, orjson.dumps({"error": {"code": exc.code, "message": exc.message, **exc.details}}), headers


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status, body, headers = refusal(exc)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def store_error(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: store unavailable: %r", request.method, request.url.path, exc)
    return _error(503, "unavailable", UNAVAILABLE, {"Retry-After": "1"})


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: still the documented JSON body under /api/ (Starlette logs the traceback after this)."""
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse("Internal Server Error", status_code=500)
    return _error(500, "internal", "the server failed to answer this request; try again in a moment")


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up mid-request: nobody to answer (and nothing worth a traceback)."""
    log.debug("%s %s: the client hung up before its body was read", request.method, request.url.path)
    return Response(status_code=400)


async def http_error(request: Request, exc: Exception) -> Response:
    """404s and 405s: JSON under /api/, plain text elsewhere (static pages)."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no API endpoint {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
    return _error(exc.status_code, code, message, exc.headers)


Handler = Callable[[Request, Exception], Awaitable[Response]]
HANDLERS: dict[type[Exception], Handler] = {
    DomainError: domain_error,
    **dict.fromkeys(STORE_ERRORS, store_error),
    ClientDisconnect: client_gone,
    HTTPException: http_error,
    Exception: internal_error,  # Starlette runs this one in its outermost middleware, then re-raises
}


async def error_response(request: Request, exc: Exception) -> Response:
    """The answer for an error raised by a route served ahead of Starlette (same mapping as HANDLERS)."""
    handler = next(HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS)
    if handler is internal_error:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return await handler(request, exc)
