"""Accounts: people (guests and members), the guest ids merged into an account, and merchants' staff with their
role per merchant; the one writer of `users`, `user_aliases` and `staff`.

Every user id is made here (`new_user_id`): no request can choose one. A guest who signs in with
an email or phone nobody has yet becomes that member, under the same id; one who signs in to an
existing account is merged into it as an alias, so the guest's orders are the account's.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from server.errors import BadRequest, NotFound
from server.ledger.client import Connection, Database, Record, ms
from server.protocol import STAFF, Role

MAX_ALIASES = 20  # the newest guest ids merged into an account that its tokens carry
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class Destination:
    """Where a one-time code goes: an email address (lower-cased) or a phone number (E.164)."""

    kind: Literal["email", "phone"]
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


def destination_from(body: dict[str, Any]) -> Destination:
    """The one of 'email' or 'phone' in a request body, checked and normalized."""
    email, phone = body.get("email"), body.get("phone")
    if (email is None) == (phone is None):
        raise BadRequest("give either 'email' or 'phone'")
    if email is not None:
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise BadRequest("'email' must be an email address")
        return Destination("email", email.strip().lower())
    if not isinstance(phone, str):
        raise BadRequest("'phone' must be a phone number in international form, e.g. +14155550100")
    digits = "+" + re.sub(r"[^0-9]", "", phone)
    if not phone.strip().startswith("+") or not _PHONE.match(digits):
        raise BadRequest("'phone' must be a phone number in international form, e.g. +14155550100")
    return Destination("phone", digits)


def check_name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 60:
        raise BadRequest("'name' must be 1-60 characters")
    return value.strip()


def new_user_id(guest: bool) -> str:
    return ("g_" if guest else "u_") + secrets.token_hex(8)


@dataclass(frozen=True)
class User:
    """A person as the record has it, with what their tokens carry."""

    id: str
    name: str
    guest: bool
    phone_verified: bool
    device_id: str | None
    roles: dict[str, Role]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class StaffMember:
    user_id: str
    name: str
    role: Role
    email: str | None
    phone: str | None
    added_at: int | None

    def public(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "role": self.role.value,
            "email": self.email,
            "phone": self.phone,
            "added_at": self.added_at,
        }


class Accounts:
    """Users, aliases and staff in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_guest(self, device_id: str) -> User:
        user_id = new_user_id(guest=True)
        name = f"Guest {user_id[-4:].upper()}"
        await self.db.pool.execute(
            "INSERT INTO users (user_id, name, device_id) VALUES ($1, $2, $3)", user_id, name, device_id
        )
        return User(user_id, name, True, False, device_id, {}, ())

    async def user(self, user_id: str, connection: Connection | None = None) -> User:
        """The user with their roles and aliases as of now; NotFound when there is no such user."""
        run = connection or self.db.pool
        row = await run.fetchrow(
            "SELECT u.*,"
            " coalesce((SELECT jsonb_object_agg(merchant_id, role) FROM staff s WHERE s.user_id = u.user_id),"
            " '{}'::jsonb)::text AS roles,"
            " ARRAY(SELECT alias FROM user_aliases a WHERE a.user_id = u.user_id ORDER BY linked_at DESC"
            f" LIMIT {MAX_ALIASES}) AS aliases"
            " FROM users u WHERE u.user_id = $1",
            user_id,
        )
        if row is None:
            raise NotFound("no such user")
        return _user(row)

    async def destination_of(self, user_id: str) -> Destination | None:
        """Where a member's messages go: their email, else their phone; None for a guest or an unknown user."""
        row = await self.db.pool.fetchrow("SELECT email, phone FROM users WHERE user_id = $1", user_id)
        if row is None or (row["email"] is None and row["phone"] is None):
            return None
        return Destination("email", row["email"]) if row["email"] is not None else Destination("phone", row["phone"])

    async def device_of(self, user_id: str) -> str | None:
        """The device a guest (or a member who began as one) used: bans and mutes cover it too."""
        device_id: str | None = await self.db.pool.fetchval("SELECT device_id FROM users WHERE user_id = $1", user_id)
        return device_id

    async def by_destination(self, destination: Destination) -> User | None:
        user_id = await self.db.pool.fetchval(
            f"SELECT user_id FROM users WHERE {destination.kind} = $1", destination.value
        )
        return None if user_id is None else await self.user(user_id)

    async def sign_in(self, destination: Destination, guest_id: str | None) -> User:
        """The member who owns this destination, proven by a code just now: made if new (from the guest
        signing in, under the guest's id, when there is one), the guest merged into it otherwise."""
        column = destination.kind
        async with self.db.pool.acquire() as connection, connection.transaction():
            existing = await connection.fetchval(
                f"SELECT user_id FROM users WHERE {column} = $1 FOR UPDATE", destination.value
            )
            guest = None
            if guest_id is not None:
                guest = await connection.fetchrow(
                    "SELECT * FROM users WHERE user_id = $1 AND email IS NULL AND phone IS NULL FOR UPDATE", guest_id
                )
            if existing is not None:
                user_id = existing
                await connection.execute(
                    f"UPDATE users SET {column}_verified_at = coalesce({column}_verified_at, now()) WHERE user_id = $1",
                    user_id,
                )
                if guest is not None and guest_id != user_id:
                    await connection.execute(
                        "INSERT INTO user_aliases (alias, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        guest_id,
                        user_id,
                    )
            elif guest is not None:
                user_id = guest["user_id"]
                name = destination.value.partition("@")[0][:60] if column == "email" else guest["name"]
                await connection.execute(
                    f"UPDATE users SET {column} = $2, {column}_verified_at = now(), name = $3 WHERE user_id = $1",
                    user_id,
                    destination.value,
                    name,
                )
            else:
                user_id = await self._create_member(connection, destination, None, verified=True)
            return await self.user(user_id, connection)

    async def _create_member(
        self, connection: Connection, destination: Destination, name: str | None, *, verified: bool
    ) -> str:
        """A new member at `destination`: verified when they proved it with a code (not when staff added them)."""
        user_id = new_user_id(guest=False)
        default = destination.value.partition("@")[0][:60] if destination.kind == "email" else "Member"
        column = destination.kind
        await connection.execute(
            f"INSERT INTO users (user_id, name, {column}, {column}_verified_at)"
            " VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)",
            user_id,
            name or default,
            destination.value,
            verified,
        )
        return user_id

    # --- staff ------------------------------------------------------------------------------

    async def add_staff(
        self, merchant_id: str, destination: Destination, name: str, role: Role, added_by: str | None
    ) -> StaffMember:
        """Give the person at `destination` (an account made for them if none) this role for the merchant."""
        if role not in STAFF:
            raise BadRequest("'role' must be admin, host or moderator")
        async with self.db.pool.acquire() as connection, connection.transaction():
            user_id = await connection.fetchval(
                f"SELECT user_id FROM users WHERE {destination.kind} = $1 FOR UPDATE", destination.value
            )
            if user_id is None:
                user_id = await self._create_member(connection, destination, name, verified=False)
            await connection.execute(
                "INSERT INTO staff (merchant_id, user_id, role, added_by) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (merchant_id, user_id) DO UPDATE SET role = excluded.role",
                merchant_id,
                user_id,
                role.value,
                added_by,
            )
            return await self._member(connection, merchant_id, user_id)

    async def remove_staff(self, merchant_id: str, user_id: str) -> StaffMember:
        async with self.db.pool.acquire() as connection, connection.transaction():
            member = await self._member(connection, merchant_id, user_id)
            await connection.execute("DELETE FROM staff WHERE merchant_id = $1 AND user_id = $2", merchant_id, user_id)
            return member

    async def staff(self, merchant_id: str) -> list[StaffMember]:
        rows = await self.db.pool.fetch(_STAFF + " WHERE s.merchant_id = $1 ORDER BY s.added_at", merchant_id)
        return [_member(row) for row in rows]

    async def _member(self, connection: Connection, merchant_id: str, user_id: str) -> StaffMember:
        row = await connection.fetchrow(_STAFF + " WHERE s.merchant_id = $1 AND s.user_id = $2", merchant_id, user_id)
        if row is None:
            raise NotFound("no such staff member in this shop")
        return _member(row)


_STAFF = "SELECT s.user_id, u.name, s.role, u.email, u.phone, s.added_at FROM staff s JOIN users u USING (user_id)"


def _user(row: Record) -> User:
    return User(
        id=row["user_id"],
        name=row["name"],
        guest=row["email"] is None and row["phone"] is None,
        phone_verified=row["phone_verified_at"] is not None,
        device_id=row["device_id"],
        roles={merchant: Role(role) for merchant, role in orjson.loads(row["roles"]).items()},
        aliases=tuple(row["aliases"]),
    )


def _member(row: Record) -> StaffMember:
    return StaffMember(
        user_id=row["user_id"],
        name=row["name"],
        role=Role(row["role"]),
        email=row["email"],
        phone=row["phone"],
        added_at=ms(row["added_at"]),
    )
