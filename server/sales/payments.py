"""Card payments behind one small interface, and the built-in sandbox provider (a gateway's test mode, offline)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Protocol

import orjson
from redis.asyncio import Redis

from server import keys
from server.protocol import now_ms


@dataclass(frozen=True)
class Authorization:
    """The provider's answer to an authorization: approved with an id, or declined with a reason code."""

    id: str
    approved: bool
    decline_code: str | None = None  # card_declined, insufficient_funds, expired_card, incorrect_number


class PaymentProvider(Protocol):
    """A card gateway, seen from checkout: authorize first, then capture (the order is paid) or void.

    Contract: authorize() is idempotent per (reference, card): asking again returns the same
    authorization, so a retry after a timeout never holds the card twice. capture() and void()
    are idempotent. An approved authorization that is neither captured nor voided lapses at the
    gateway without charging the card.
    """

    async def authorize(self, *, reference: str, amount: int, currency: str, card_number: str) -> Authorization: ...

    async def capture(self, authorization_id: str) -> None: ...

    async def void(self, authorization_id: str) -> None: ...


# The sandbox's test cards (like a gateway's test mode): number -> decline code (None: approved).
TEST_CARDS: dict[str, str | None] = {
    "4242424242424242": None,
    "5555555555554444": None,
    "4000000000000077": None,  # approved after SANDBOX_SLOW_CARD_MS, like a gateway having a slow moment
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}
SLOW_CARD = "4000000000000077"


def card_digits(card_number: str) -> str:
    """The digits of a card number as people type it (spaces and dashes allowed)."""
    return card_number.replace(" ", "").replace("-", "")


class SandboxProvider:
    """Deterministic test cards, no network: 4242 4242 4242 4242 is approved, 4000 0000 0000 0002 declined.

    Any other number is declined (incorrect_number when it is not a card number at all). Its
    ledger (authorizations with their state: authorized, captured or voided, never the card
    number) lives in Redis, so every server process and the tests see the same one.
    """

    def __init__(self, redis: Redis, slow_card_ms: int = 2000) -> None:
        self.redis = redis
        self.slow_seconds = slow_card_ms / 1000

    async def authorize(self, *, reference: str, amount: int, currency: str, card_number: str) -> Authorization:
        digits = card_digits(card_number)
        if not (digits.isdigit() and 12 <= len(digits) <= 19 and _luhn(digits)):
            return Authorization("", False, "incorrect_number")
        if digits == SLOW_CARD:
            await asyncio.sleep(self.slow_seconds)
        decline = TEST_CARDS.get(digits, "card_declined")
        auth_id = "auth_" + hashlib.sha256(f"{reference}\n{digits}".encode()).hexdigest()[:20]
        record = {
            "id": auth_id,
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "last4": digits[-4:],
            "state": "declined" if decline else "authorized",
            "decline_code": decline,
            "at": now_ms(),
        }
        await self.redis.hsetnx(keys.sandbox_payments(), auth_id, orjson.dumps(record))
        return Authorization(auth_id, decline is None, decline)

    async def capture(self, authorization_id: str) -> None:
        await self._move(authorization_id, "authorized", "captured")

    async def void(self, authorization_id: str) -> None:
        await self._move(authorization_id, "authorized", "voided")

    async def ledger(self) -> list[dict[str, object]]:
        """Every authorization the sandbox has seen."""
        return [orjson.loads(raw) for raw in await self.redis.hvals(keys.sandbox_payments())]

    async def _move(self, authorization_id: str, source: str, target: str) -> None:
        key = keys.sandbox_payments()
        raw = await self.redis.hget(key, authorization_id)
        if raw is None:
            raise LookupError(f"no authorization {authorization_id}")
        record = orjson.loads(raw)
        if record["state"] == source:
            record["state"] = target
            await self.redis.hset(key, authorization_id, orjson.dumps(record))
        elif record["state"] != target:
            raise ValueError(f"authorization {authorization_id} is {record['state']}, cannot become {target}")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0
