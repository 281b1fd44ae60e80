"""Routes that hand out identities: a guest token, who a token is, staff tokens minted by a merchant's admin."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.tokens import Identity
from server.errors import BadRequest
from server.http import identify, json_body, node_of, ok, require
from server.protocol import Role
from server.rooms.catalog import new_id


def _user(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.user_id,
        "name": identity.name,
        "role": identity.role.value,
        "merchant_id": identity.merchant_id,
    }


async def guest(request: Request) -> Response:
    """POST /api/guest: a signed identity for an anonymous viewer."""
    node = node_of(request)
    token, identity = node.tokens.guest(node.settings.guest_token_days * 86400)
    return ok({"token": token, "user": _user(identity)}, 201)


async def me(request: Request) -> Response:
    return ok(_user(identify(request)))


async def mint_token(request: Request) -> Response:
    """POST /api/merchants/{merchant_id}/tokens {role, name}: an admin mints a host or moderator token."""
    merchant_id = request.path_params["merchant_id"]
    admin = require(request, merchant_id, frozenset({Role.ADMIN}))
    body = await json_body(request)
    try:
        role = Role(str(body.get("role")))
    except ValueError:
        raise BadRequest("'role' must be admin, host or moderator") from None
    name = body.get("name")
    if role is Role.VIEWER or not isinstance(name, str) or not 1 <= len(name) <= 60:
        raise BadRequest("'role' must be admin, host or moderator and 'name' 1-60 characters")
    node = node_of(request)
    user_id = str(body.get("user_id") or new_id("u_"))
    token = node.tokens.mint(
        user_id=user_id,
        name=name,
        role=role,
        merchant_id=merchant_id,
        ttl_seconds=node.settings.staff_token_days * 86400,
    )
    issued = node.tokens.verify(token)
    await node.audit.record(
        admin, "token.issued", f"user:{user_id}", after={**_user(issued), "expires": issued.expires}
    )
    return ok({"token": token, "user": _user(issued)}, 201)


routes = [
    Route("/api/guest", guest, methods=["POST"]),
    Route("/api/me", me),
    Route("/api/merchants/{merchant_id}/tokens", mint_token, methods=["POST"]),
]
