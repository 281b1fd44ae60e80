"""Access tokens: who is calling (an Identity), signed by the server, short-lived; their session can be revoked.

A token is the session's signed claims (itsdangerous, HMAC over compact JSON): the user, the
session, what the user is (a guest, a member, a verified phone), their staff role per merchant,
the guest ids merged into their account, and an expiry. It is never stored; the session is
(server/access/sessions.py), and a revoked session's tokens are refused everywhere
(`Revocations`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from itsdangerous import BadSignature, URLSafeSerializer

from server.protocol import STAFF, Role

_SALT = "livecart.access.v2"  # v1 tokens (30-day, unrevocable) are refused
_DEVICE_SALT = "livecart.device.v1"


_NO_ROLES: Mapping[str, Role] = MappingProxyType({})


class Identity(NamedTuple):
    """Who is calling (a tuple: one is made for every request, the purchase hot path's too)."""

    user_id: str
    name: str
    session_id: str
    expires: int  # unix seconds
    guest: bool = True  # no email or phone signed in yet
    phone_verified: bool = False
    roles: Mapping[str, Role] = _NO_ROLES  # merchant id -> the user's staff role there
    aliases: tuple[str, ...] = ()  # guest ids merged into this account: their orders are the account's
    device_id: str | None = None  # a guest's browser, kept across guest identities (bans follow it)

    def role_in(self, merchant_id: str) -> Role:
        """The user's role for this merchant: a staff role, or viewer."""
        return self.roles.get(merchant_id, Role.VIEWER)

    def can_manage(self, merchant_id: str, roles: frozenset[Role] = STAFF) -> bool:
        return self.role_in(merchant_id) in roles

    def owns(self, user_id: str) -> bool:
        """An order of `user_id` is this user's (their own id, or a guest id they signed in from)."""
        return user_id == self.user_id or user_id in self.aliases

    def public(self) -> dict[str, object]:
        return {
            "id": self.user_id,
            "name": self.name,
            "guest": self.guest,
            "phone_verified": self.phone_verified,
            "roles": {merchant: role.value for merchant, role in self.roles.items()},
            "expires": self.expires,
        }


@dataclass(frozen=True)
class Actor:
    """Someone acting as staff of one merchant, in the role they have there (what the audit log records)."""

    identity: Identity
    merchant_id: str
    role: Role

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    @property
    def name(self) -> str:
        return self.identity.name


class InvalidToken(Exception):
    """The token is missing, forged, malformed, expired or of a signed-out session."""


class Tokens:
    """Signs and verifies access tokens."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)
        self._devices = URLSafeSerializer(secret_key, salt=_DEVICE_SALT)

    def device(self, signed: object) -> tuple[str, str]:
        """A browser's device id and its signed form: the one it kept from an earlier guest, else a new one."""
        if isinstance(signed, str) and len(signed) < 200:
            try:
                return str(self._devices.loads(signed)), signed
            except BadSignature:
                pass
        device_id = "d_" + secrets.token_hex(8)
        return device_id, self._devices.dumps(device_id)

    def issue(self, identity: Identity) -> str:
        claims: dict[str, object] = {
            "sub": identity.user_id,
            "name": identity.name,
            "sid": identity.session_id,
            "exp": identity.expires,
        }
        if not identity.guest:
            claims["member"] = 1
        if identity.phone_verified:
            claims["phone"] = 1
        if identity.roles:
            claims["roles"] = {merchant: role.value for merchant, role in identity.roles.items()}
        if identity.aliases:
            claims["aka"] = list(identity.aliases)
        if identity.device_id:
            claims["dev"] = identity.device_id
        return self._serializer.dumps(claims)

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise InvalidToken("a token is required")
        try:
            claims = self._serializer.loads(token)
        except BadSignature:
            raise InvalidToken("the token is not valid (bad signature)") from None
        try:
            identity = Identity(
                str(claims["sub"]),
                str(claims["name"]),
                str(claims["sid"]),
                int(claims["exp"]),
                "member" not in claims,
                "phone" in claims,
                {str(merchant): Role(role) for merchant, role in claims["roles"].items()}
                if "roles" in claims
                else _NO_ROLES,
                tuple(str(alias) for alias in claims["aka"]) if "aka" in claims else (),
                claims.get("dev"),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidToken("the token is not valid (malformed)") from None
        if identity.expires < time.time():
            raise InvalidToken("the token has expired")
        return identity
