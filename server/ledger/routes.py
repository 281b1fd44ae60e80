"""REST of the record: a merchant's audit log, read by its admins (nothing in the API edits or deletes it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import BadRequest
from server.http import node_of, ok, require
from server.ledger.audit import MAX_PAGE
from server.protocol import Role

ADMINS = frozenset({Role.ADMIN})


def _whole(request: Request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
        raise BadRequest(f"'{name}' must be a whole number from {low} to {high}")
    return int(raw)


async def audit(request: Request) -> Response:
    """GET /api/merchants/{m}/audit[?before=<id>&limit=<n>]: entries newest first, and the `before` of the next page."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, ADMINS)
    before = _whole(request, "before", 1, 2**63 - 1)
    limit = _whole(request, "limit", 1, MAX_PAGE) or 100
    page = await node_of(request).audit.entries(merchant_id, before, limit)
    return ok(page.public())


routes = [
    Route("/api/merchants/{merchant_id}/audit", audit, methods=["GET"]),
]
