"""Access tokens for load tests and tests, signed with a server's SECRET_KEY as that server signs its own: the
thousands of buyers and viewers a run needs, without a sign-in each (tests/access signs people in for real)."""

from __future__ import annotations

import secrets
import time
from functools import cache

from server.access.tokens import Identity, Tokens
from server.protocol import Role

TTL_SECONDS = 3600


def issue(secret: str, user_id: str, name: str, *, guest: bool = False, roles: dict[str, Role] | None = None) -> str:
    """A token of a session of its own: a member (signed in) unless `guest`, staff where `roles` says."""
    session = "ses_" + secrets.token_hex(8)
    expires = int(time.time()) + TTL_SECONDS
    return _signer(secret).issue(Identity(user_id, name, session, expires, guest=guest, roles=roles or {}))


@cache
def _signer(secret: str) -> Tokens:
    return Tokens(secret)


def staff(secret: str, merchant_id: str, role: Role, name: str = "Staff") -> str:
    return issue(secret, f"u_{role.value}_{secrets.token_hex(3)}", name, roles={merchant_id: role})


def buyer(secret: str, user_id: str | None = None, name: str = "Buyer") -> str:
    """A signed-in shopper (flash sales admit signed-in buyers by default)."""
    return issue(secret, user_id or f"u_{secrets.token_hex(6)}", name)


def guest(secret: str) -> str:
    return issue(secret, f"g_{secrets.token_hex(6)}", "Guest", guest=True)
