"""Domain errors: what a request may be refused for, with a stable code. The edge (server.http) maps them once.
And the errors that mean a store (Redis or PostgreSQL) could not be reached: every route answers them 503."""

from __future__ import annotations

from typing import Any

import asyncpg
from redis.exceptions import RedisError

# A store could not be reached or went away mid-call. EOFError: a socket closed mid-reply
# (asyncio.IncompleteReadError); asyncpg's: the server shut down, refused, or the connection broke.
STORE_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    OSError,
    EOFError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)


class DomainError(Exception):
    """A refusal with a stable `code`, a message for people, and the HTTP status that goes with it.

    Domain code raises these (or subclasses); it never picks an HTTP response itself. Nothing
    changed when one is raised.
    """

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, code: str | None = None, status: int | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}  # more for the client beside code and message (a bid's next_bid)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class Unauthorized(DomainError):
    status, code = 401, "invalid_token"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    """The request is valid but the state says no (the id exists, the host is offline...)."""

    status, code = 409, "conflict"


class TooLarge(DomainError):
    status, code = 413, "too_large"


class UnsupportedMediaType(DomainError):
    status, code = 415, "unsupported_media_type"


class Unavailable(DomainError):
    """A dependency (Redis, the process holding a room's video) cannot be reached: try again."""

    status, code = 503, "unavailable"


class RateLimited(DomainError):
    """Too many of these requests from this person, address or order: wait `retry_after` seconds."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
