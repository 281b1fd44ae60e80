"""The JSON REST API under /api/: guests, staff tokens, products, rooms and block lists, per merchant."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from server.auth import Identity, InvalidToken, bearer
from server.catalog import CatalogError, check_id, new_id, product_from
from server.protocol import PRESENTERS, STAFF, Role
from server.services import Services

MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def identify(request: Request) -> Identity:
    try:
        return services_of(request).tokens.verify(bearer(request))
    except InvalidToken as problem:
        raise ApiError(401, "invalid_token", str(problem)) from None


def require(request: Request, merchant_id: str, roles: frozenset[Role] = STAFF) -> Identity:
    """The caller, who must be staff of this merchant in one of these roles."""
    identity = identify(request)
    if identity.merchant_id != merchant_id or identity.role not in roles:
        raise ApiError(403, "forbidden", "this token may not do that for this merchant")
    return identity


async def json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():  # stop at the limit: never buffer more than MAX_BODY of a request
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", f"the body is limited to {MAX_BODY} bytes")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return data


def ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def guest(request: Request) -> Response:
    """POST /api/guest: a signed identity for an anonymous viewer."""
    services = services_of(request)
    token, identity = services.tokens.guest(services.settings.guest_token_days * 86400)
    return ok({"token": token, "user": _user(identity)}, 201)


def _user(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.user_id,
        "name": identity.name,
        "role": identity.role.value,
        "merchant_id": identity.merchant_id,
    }


async def me(request: Request) -> Response:
    return ok(_user(identify(request)))


async def mint_token(request: Request) -> Response:
    """POST /api/merchants/{merchant_id}/tokens {role, name}: an admin mints a host or moderator token."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, frozenset({Role.ADMIN}))
    body = await json_body(request)
    try:
        role = Role(body.get("role"))
    except ValueError:
        raise ApiError(400, "bad_request", "'role' must be admin, host or moderator") from None
    name = body.get("name")
    if role is Role.VIEWER or not isinstance(name, str) or not 1 <= len(name) <= 60:
        raise ApiError(400, "bad_request", "'role' must be admin, host or moderator and 'name' 1-60 characters")
    services = services_of(request)
    user_id = str(body.get("user_id") or new_id("u_"))
    token = services.tokens.mint(
        user_id=user_id,
        name=name,
        role=role,
        merchant_id=merchant_id,
        ttl_seconds=services.settings.staff_token_days * 86400,
    )
    return ok(
        {"token": token, "user": {"id": user_id, "name": name, "role": role.value, "merchant_id": merchant_id}}, 201
    )


async def merchant(request: Request) -> Response:
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    data = await services_of(request).catalog.get_merchant(merchant_id)
    if data is None:
        raise ApiError(404, "not_found", f"no merchant '{merchant_id}'")
    return ok(data)


async def products(request: Request) -> Response:
    """GET: the merchant's products. POST: add one (admin or host)."""
    merchant_id = request.path_params["merchant_id"]
    catalog = services_of(request).catalog
    if request.method == "GET":
        require(request, merchant_id)
        return ok([product.public() for product in await catalog.list_products(merchant_id)])
    require(request, merchant_id, PRESENTERS)
    body = await json_body(request)
    try:
        product_id = check_id(body["id"], "product id") if "id" in body else new_id("p_")
        product = product_from(merchant_id, product_id, body)
    except CatalogError as problem:
        raise ApiError(400, "bad_request", str(problem)) from None
    if not await catalog.add_product(product):
        raise ApiError(409, "exists", f"product '{product_id}' exists; PUT to change it")
    return ok(product.public(), 201)


async def product(request: Request) -> Response:
    """GET, PUT or DELETE one product of the merchant."""
    merchant_id = request.path_params["merchant_id"]
    product_id = request.path_params["product_id"]
    catalog = services_of(request).catalog
    require(request, merchant_id, STAFF if request.method == "GET" else PRESENTERS)
    existing = await catalog.get_product(merchant_id, product_id)
    if existing is None:
        raise ApiError(404, "not_found", f"no product '{product_id}'")
    if request.method == "GET":
        return ok(existing.public())
    if request.method == "DELETE":
        await catalog.delete_product(merchant_id, product_id)
        return Response(status_code=204)
    try:
        changed = product_from(merchant_id, product_id, {**existing.public(), **await json_body(request)})
    except CatalogError as problem:
        raise ApiError(400, "bad_request", str(problem)) from None
    await catalog.put_product(changed)
    return ok(changed.public())


async def rooms(request: Request) -> Response:
    """GET: the merchant's rooms. POST {id?, title}: create one (admin or host)."""
    merchant_id = request.path_params["merchant_id"]
    catalog = services_of(request).catalog
    if request.method == "GET":
        require(request, merchant_id)
        return ok([room.public() for room in await catalog.list_rooms(merchant_id)])
    require(request, merchant_id, PRESENTERS)
    body = await json_body(request)
    title = body.get("title")
    if not isinstance(title, str):
        raise ApiError(400, "bad_request", "'title' must be a string")
    try:
        room = await catalog.create_room(merchant_id, body.get("id") or new_id("r_"), title)
    except CatalogError as problem:
        status = 409 if "exists" in str(problem) else 400
        raise ApiError(status, "exists" if status == 409 else "bad_request", str(problem)) from None
    return ok(room.public(), 201)


async def room(request: Request) -> Response:
    """GET /api/rooms/{room_id}: what anyone may know of a room (to render its page)."""
    room_id = request.path_params["room_id"]
    found = await services_of(request).catalog.get_room(room_id)
    if found is None:
        raise ApiError(404, "not_found", f"no room '{room_id}'")
    return ok(found.public())


async def blocklist(request: Request) -> Response:
    """GET or PUT {words: [...]} the merchant's chat block list (staff)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id)
    catalog = services_of(request).catalog
    if request.method == "PUT":
        words = (await json_body(request)).get("words")
        if (
            not isinstance(words, list)
            or len(words) > 500
            or not all(isinstance(w, str) and 0 < len(w) <= 50 for w in words)
        ):
            raise ApiError(400, "bad_request", "'words' must be a list of up to 500 strings of 1-50 characters")
        await catalog.set_blocklist(merchant_id, [word.strip().casefold() for word in words if word.strip()])
    return ok({"words": await catalog.get_blocklist(merchant_id)})


async def http_error(request: Request, exc: Exception) -> Response:
    """404s and 405s: JSON under /api/, plain text elsewhere (static pages)."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no API endpoint {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=exc.status_code, headers=exc.headers)


routes = [
    Route("/api/guest", guest, methods=["POST"]),
    Route("/api/me", me),
    Route("/api/rooms/{room_id}", room),
    Route("/api/merchants/{merchant_id}", merchant),
    Route("/api/merchants/{merchant_id}/tokens", mint_token, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/products", products, methods=["GET", "POST"]),
    Route("/api/merchants/{merchant_id}/products/{product_id}", product, methods=["GET", "PUT", "DELETE"]),
    Route("/api/merchants/{merchant_id}/rooms", rooms, methods=["GET", "POST"]),
    Route("/api/merchants/{merchant_id}/blocklist", blocklist, methods=["GET", "PUT"]),
]
