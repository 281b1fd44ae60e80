"""Identities and signed tokens: who is calling, for which merchant, in which role."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from server.protocol import Role

_SALT = "livecart.token.v1"


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str
    role: Role
    merchant_id: str | None  # None for guests and viewers: they belong to no merchant
    expires: int  # unix seconds

    @property
    def is_staff(self) -> bool:
        return self.role is not Role.VIEWER

    def can_manage(self, merchant_id: str) -> bool:
        """Staff of this merchant (admin, host or moderator)."""
        return self.is_staff and self.merchant_id == merchant_id


class InvalidToken(Exception):
    """The token is missing, forged, malformed or expired."""


class Tokens:
    """Signs and verifies bearer tokens (itsdangerous, HMAC-SHA1 over a JSON payload)."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)

    def mint(self, *, user_id: str, name: str, role: Role, merchant_id: str | None, ttl_seconds: int) -> str:
        payload = {
            "sub": user_id,
            "name": name,
            "role": role.value,
            "mid": merchant_id,
            "exp": int(time.time()) + ttl_seconds,
        }
        return self._serializer.dumps(payload)

    def guest(self, ttl_seconds: int) -> tuple[str, Identity]:
        """A signed identity for an anonymous viewer."""
        user_id = "g_" + secrets.token_hex(6)
        name = f"Guest {user_id[-4:].upper()}"
        token = self.mint(user_id=user_id, name=name, role=Role.VIEWER, merchant_id=None, ttl_seconds=ttl_seconds)
        return token, self.verify(token)

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise InvalidToken("a token is required")
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            raise InvalidToken("the token is not valid (bad signature)") from None
        try:
            identity = Identity(
                user_id=str(payload["sub"]),
                name=str(payload["name"]),
                role=Role(payload["role"]),
                merchant_id=payload["mid"],
                expires=int(payload["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("the token is not valid (malformed)") from None
        if identity.expires < time.time():
            raise InvalidToken("the token has expired")
        return identity
