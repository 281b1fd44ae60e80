"""One-time sign-in codes: made, sent through the messenger, checked once; the sandbox messenger and its outbox
(`sandbox_messages`, its one writer), which the dev inbox page shows.

A code is six digits, valid CODE_TTL_SECONDS, for at most CODE_ATTEMPTS tries; only its digest is
stored (Redis, one key per destination; a new code replaces the old). Sending is rate-limited per
destination and per client address (server/access/routes.py), so nobody can flood a phone or try
every code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Protocol

from redis.asyncio import Redis

from server import keys
from server.access.accounts import Destination
from server.errors import BadRequest
from server.ledger.client import Database, ms
from server.store import scripts

CODE_ATTEMPTS = 5


class Messenger(Protocol):
    """Delivers a short text to an email address or phone number (a real one: an email or SMS provider)."""

    async def send(self, destination: Destination, text: str) -> None: ...


class SandboxMessenger:
    """Delivers nothing: keeps each message in PostgreSQL for the dev inbox (development and tests)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def send(self, destination: Destination, text: str) -> None:
        await self.db.pool.execute(
            "INSERT INTO sandbox_messages (destination, body) VALUES ($1, $2)", destination.key, text
        )

    async def inbox(self, destination: Destination, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT body, sent_at FROM sandbox_messages WHERE destination = $1 ORDER BY message_id DESC LIMIT $2",
            destination.key,
            limit,
        )
        return [{"text": row["body"], "sent_at": ms(row["sent_at"])} for row in rows]


class Codes:
    def __init__(self, redis: Redis, messenger: Messenger, secret_key: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.messenger = messenger
        self._key = secret_key.encode()
        self.ttl_seconds = ttl_seconds
        self._check = scripts.register(redis, __file__, "code_check")

    def _digest(self, destination: Destination, code: str) -> str:
        return hmac.new(self._key, f"{destination.key}:{code}".encode(), hashlib.sha256).hexdigest()

    async def send(self, destination: Destination) -> None:
        code = f"{secrets.randbelow(1_000_000):06d}"
        key = keys.code(destination.key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"digest": self._digest(destination, code), "attempts": 0})
            pipe.expire(key, self.ttl_seconds)
            await pipe.execute()
        minutes = max(1, self.ttl_seconds // 60)
        await self.messenger.send(destination, f"Your livecart code is {code}. It expires in {minutes} minutes.")

    async def check(self, destination: Destination, code: object) -> None:
        """The code is right (and now used up), or BadRequest saying why not."""
        if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) != 6:
            raise BadRequest("'code' must be the 6 digits we sent you", "bad_code")
        verdict = await self._check(
            keys=[keys.code(destination.key)], args=[self._digest(destination, code), CODE_ATTEMPTS]
        )
        if verdict == "ok":
            return
        if verdict == "none":
            raise BadRequest("this code has expired or was used: ask for a new one", "bad_code")
        if verdict == "exhausted":
            raise BadRequest("too many wrong codes: ask for a new one", "bad_code")
        raise BadRequest(f"that code isn't right; {verdict.partition(':')[2]} tries left", "bad_code")
