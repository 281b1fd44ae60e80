"""Sessions: a signed-in browser's access and refresh tokens, refreshing, signing out, single-use login links, and
the revocations every process refuses at once; the one writer of `sessions` and of the Redis revocation set.

An access token lives ACCESS_TOKEN_SECONDS; the session behind it until it is revoked or its
lifetime ends. Revoking a session writes it to PostgreSQL, adds it to the Redis set of revoked
sessions (kept as long as one of its access tokens can still be valid) and publishes it: each
process's `Revocations` refuses its tokens from then on, and tells the hub and the relay, which
close the session's sockets and video sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from server import keys
from server.access.accounts import Accounts, User
from server.access.tokens import Identity, InvalidToken, Tokens
from server.config import Settings
from server.errors import BadRequest, NotFound
from server.ledger.client import Database, ms
from server.live.broker import Broker

log = logging.getLogger("livecart.sessions")

MAX_LINK_MINUTES = 60


@dataclass(frozen=True)
class Issued:
    """What a sign-in or a refresh hands the client."""

    token: str
    refresh_token: str
    identity: Identity

    def public(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "refresh_token": self.refresh_token,
            "expires_at": self.identity.expires,
            "user": self.identity.public(),
        }


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Sessions:
    """Sessions in PostgreSQL, tokens signed for them, revocations told to every process."""

    def __init__(self, db: Database, redis: Redis, tokens: Tokens, accounts: Accounts, settings: Settings) -> None:
        self.db = db
        self.redis = redis
        self.tokens = tokens
        self.accounts = accounts
        self.settings = settings

    def _lifetime_days(self, user: User) -> int:
        return self.settings.staff_session_days if user.roles else self.settings.session_days

    async def start(self, user: User, address: str | None, agent: str | None) -> Issued:
        """A new session for the user (just signed in, or a new guest)."""
        session_id = "ses_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        await self.db.pool.execute(
            "INSERT INTO sessions (session_id, user_id, refresh_hash, expires_at, address, user_agent)"
            " VALUES ($1, $2, $3, now() + make_interval(days => $4), $5, $6)",
            session_id,
            user.id,
            _hash(secret),
            self._lifetime_days(user),
            address,
            (agent or "")[:200],
        )
        return self._issue(user, session_id, secret)

    def _issue(self, user: User, session_id: str, secret: str) -> Issued:
        identity = Identity(
            user_id=user.id,
            name=user.name,
            session_id=session_id,
            expires=int(time.time()) + self.settings.access_token_seconds,
            guest=user.guest,
            phone_verified=user.phone_verified,
            roles=user.roles,
            aliases=user.aliases,
            device_id=user.device_id,
        )
        return Issued(self.tokens.issue(identity), f"{session_id}.{secret}", identity)

    async def refresh(self, refresh_token: object) -> Issued:
        """New tokens for a live session; the refresh token rotates. The one before it used again (a copy in
        other hands) signs the session out."""
        if not isinstance(refresh_token, str) or "." not in refresh_token or len(refresh_token) > 200:
            raise InvalidToken("'refresh_token' is not valid")
        session_id, _, secret = refresh_token.partition(".")
        fresh = secrets.token_urlsafe(32)
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT user_id, refresh_hash, previous_hash, revoked_at, expires_at < now() AS ended"
                " FROM sessions WHERE session_id = $1 FOR UPDATE",
                session_id,
            )
            if row is None or row["revoked_at"] is not None or row["ended"]:
                raise InvalidToken("the session has ended: sign in again")
            if row["previous_hash"] is not None and hmac.compare_digest(row["previous_hash"], _hash(secret)):
                stolen = True
            elif hmac.compare_digest(row["refresh_hash"], _hash(secret)):
                stolen = False
                await connection.execute(
                    "UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = $2, refreshed_at = now()"
                    " WHERE session_id = $1",
                    session_id,
                    _hash(fresh),
                )
                user = await self.accounts.user(row["user_id"], connection)
            else:
                raise InvalidToken("'refresh_token' is not valid")
        if stolen:
            log.warning("session %s: an old refresh token was used again; signing the session out", session_id)
            await self.revoke([session_id], "refresh token reused")
            raise InvalidToken("this refresh token was already used: the session is signed out, sign in again")
        return self._issue(user, session_id, fresh)

    async def revoke(self, session_ids: list[str], reason: str) -> list[str]:
        """Sign these sessions out everywhere; returns those that were live."""
        rows = await self.db.pool.fetch(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2"
            " WHERE session_id = ANY($1) AND revoked_at IS NULL RETURNING session_id",
            session_ids,
            reason,
        )
        revoked = [row["session_id"] for row in rows]
        await self._tell(revoked or session_ids)
        return revoked

    async def revoke_user(self, user_id: str, reason: str) -> list[str]:
        """Sign every session of the user out."""
        ids = [
            row["session_id"]
            for row in await self.db.pool.fetch(
                "SELECT session_id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL", user_id
            )
        ]
        return await self.revoke(ids, reason) if ids else []

    async def _tell(self, session_ids: list[str]) -> None:
        if not session_ids:
            return
        until = (int(time.time()) + self.settings.access_token_seconds + 60) * 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.revoked_sessions(), dict.fromkeys(session_ids, until))
            pipe.spublish(keys.revoked_channel(), " ".join(session_ids))
            await pipe.execute()

    async def of_users(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """The live sessions of these users, newest first."""
        rows = await self.db.pool.fetch(
            "SELECT s.session_id, s.user_id, u.name, s.created_at, s.refreshed_at, s.expires_at, s.address,"
            " s.user_agent FROM sessions s JOIN users u USING (user_id)"
            " WHERE s.user_id = ANY($1) AND s.revoked_at IS NULL AND s.expires_at > now()"
            " ORDER BY s.refreshed_at DESC",
            user_ids,
        )
        return [
            {
                "session_id": row["session_id"],
                "user_id": row["user_id"],
                "name": row["name"],
                "created_at": ms(row["created_at"]),
                "last_active_at": ms(row["refreshed_at"]),
                "expires_at": ms(row["expires_at"]),
                "address": row["address"],
                "user_agent": row["user_agent"],
            }
            for row in rows
        ]

    async def purge(self, before: datetime) -> int:
        """Remove the sessions that ended (lapsed or signed out) before `before` (the retention purge); how many."""
        status = await self.db.pool.execute("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1", before)
        return int(status.split()[-1])  # "DELETE <n>"

    async def owner(self, session_id: str) -> str:
        user_id = await self.db.pool.fetchval("SELECT user_id FROM sessions WHERE session_id = $1", session_id)
        if user_id is None:
            raise NotFound("no such session")
        return cast(str, user_id)

    # --- single-use login links -----------------------------------------------------------

    async def login_link(self, user_id: str, minutes: int) -> str:
        """A ticket that signs the user in once, within `minutes`."""
        if not 1 <= minutes <= MAX_LINK_MINUTES:
            raise BadRequest(f"a login link lasts 1 to {MAX_LINK_MINUTES} minutes")
        await self.accounts.user(user_id)
        ticket = secrets.token_urlsafe(24)
        await self.redis.set(keys.login_link(ticket), user_id, ex=minutes * 60)
        return ticket

    async def redeem(self, ticket: object, address: str | None, agent: str | None) -> Issued:
        if not isinstance(ticket, str) or not 10 <= len(ticket) <= 100:
            raise InvalidToken("this login link is not valid")
        user_id = cast(str | None, await self.redis.getdel(keys.login_link(ticket)))
        if user_id is None:
            raise InvalidToken("this login link was used already or has expired: ask for a new one")
        return await self.start(await self.accounts.user(user_id), address, agent)


class Revocations:
    """The sessions signed out, mirrored in this process: their tokens are refused without a round trip.

    Heard at once on the revocation channel; read whole from Redis at start and every
    REVOCATION_SYNC_MS, so one missed while the pub/sub connection was down is caught up then.
    Listeners (the hub, the relay) are told of each newly revoked session.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._revoked: dict[str, int] = {}  # session id -> until, ms
        self._listeners: list[Callable[[set[str]], None]] = []

    def on_revoked(self, listener: Callable[[set[str]], None]) -> None:
        self._listeners.append(listener)

    def check(self, identity: Identity) -> Identity:
        if identity.session_id in self._revoked:
            raise InvalidToken("you were signed out: sign in again")
        return identity

    async def start(self, broker: Broker) -> None:
        await broker.subscribe(keys.revoked_channel(), self._heard)
        await self.sync()

    async def _heard(self, message: str) -> None:
        until = (int(time.time()) + 24 * 3600) * 1000  # a sync puts the real time (a day is past any token's)
        self._add({session_id: until for session_id in message.split()})

    async def sync(self) -> None:
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.revoked_sessions(), "-inf", now)
            pipe.zrange(keys.revoked_sessions(), 0, -1, withscores=True)
            _, entries = await pipe.execute()
        self._add({session_id: int(score) for session_id, score in entries})
        # Only what has lapsed goes: one heard while this read was on its way is not in it, and stays.
        self._revoked = {session_id: until for session_id, until in self._revoked.items() if until > now}

    def _add(self, revoked: dict[str, int]) -> None:
        new = {session_id for session_id in revoked if session_id not in self._revoked}
        self._revoked.update(revoked)
        if new:
            for listener in self._listeners:
                listener(new)
