"""Card payments behind one small interface, and the built-in sandbox provider (a gateway's test mode, offline)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from server.ledger.client import Database, Record


@dataclass(frozen=True)
class Authorization:
    """The gateway's record of an authorization: approved with an id, or declined with a reason code."""

    id: str
    approved: bool
    decline_code: str | None = None  # card_declined, insufficient_funds, expired_card, incorrect_number
    reference: str = ""  # our order id
    amount: int = 0
    currency: str = ""
    state: str = ""  # declined, authorized, captured, voided, refunded
    changed_at: datetime | None = field(default=None, compare=False)  # when its state last changed (gateway's clock)


class PaymentError(Exception):
    """The gateway refused a capture, void or refund (e.g. capturing a voided authorization)."""


class PaymentProvider(Protocol):
    """A card gateway, seen from checkout and the reconciler: authorize first, then capture (the order is paid)
    or void; refund a capture.

    Contract: authorize() is idempotent per (reference, key, card) while the authorization is
    open or captured: asking again returns it, so a retry after a timeout never holds the card
    twice. capture(), void() and refund() are idempotent. `lookup` and `open_before` are the
    gateway's search (a real gateway lists authorizations by metadata and state).
    """

    async def authorize(
        self, *, reference: str, key: str, amount: int, currency: str, card_number: str
    ) -> Authorization: ...

    async def capture(self, authorization_id: str) -> None: ...

    async def void(self, authorization_id: str) -> None: ...

    async def refund(self, authorization_id: str) -> None: ...

    async def lookup(self, reference: str) -> list[Authorization]: ...

    async def open_before(self, before: datetime, limit: int) -> list[Authorization]: ...

    async def captured_between(self, since: datetime, before: datetime, limit: int) -> list[Authorization]: ...


# The sandbox's test cards (like a gateway's test mode): number -> decline code (None: approved).
TEST_CARDS: dict[str, str | None] = {
    "4242424242424242": None,
    "5555555555554444": None,
    "4000000000000077": None,  # approved after SANDBOX_SLOW_CARD_MS, like a gateway having a slow moment
    "4000000000000341": None,  # approved; its capture takes SANDBOX_SLOW_CARD_MS (a crash test's window)
    "4000000000005209": None,  # approved; its refund takes SANDBOX_SLOW_CARD_MS (a refunder's crash window)
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}
SLOW_CARD = "4000000000000077"
SLOW_CAPTURE_CARD = "4000000000000341"
SLOW_REFUND_CARD = "4000000000005209"

_MOVES = {"capture": ("authorized", "captured"), "void": ("authorized", "voided"), "refund": ("captured", "refunded")}


def card_digits(card_number: str) -> str:
    """The digits of a card number as people type it (spaces and dashes allowed)."""
    return card_number.replace(" ", "").replace("-", "")


class SandboxProvider:
    """Deterministic test cards, no network: 4242 4242 4242 4242 is approved, 4000 0000 0000 0002 declined.

    Any other number is declined (incorrect_number when it is not a card number at all). Its book
    (authorizations and their state, never the card number) is the table sandbox_authorizations,
    written only here: like a real gateway's, it outlives a loss of our Redis.
    """

    def __init__(self, db: Database, slow_card_ms: int = 2000) -> None:
        self.db = db
        self.slow_seconds = slow_card_ms / 1000

    async def authorize(
        self, *, reference: str, key: str, amount: int, currency: str, card_number: str
    ) -> Authorization:
        digits = card_digits(card_number)
        if not (digits.isascii() and digits.isdigit() and 12 <= len(digits) <= 19 and _luhn(digits)):  # "²" is a digit
            return Authorization("", False, "incorrect_number", reference, amount, currency, "declined")
        if digits == SLOW_CARD:
            await asyncio.sleep(self.slow_seconds)
        decline = TEST_CARDS.get(digits, "card_declined")
        fingerprint = hashlib.sha256(f"{reference}\n{key}\n{digits}".encode()).hexdigest()[:32]
        # One live authorization per fingerprint (a unique index): of two calls at once, one inserts and
        # both read the same row.
        await self.db.pool.execute(
            "INSERT INTO sandbox_authorizations"
            " (authorization_id, fingerprint, reference, amount, currency, last4, state, decline_code)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (fingerprint) WHERE state IN ('declined', 'authorized', 'captured') DO NOTHING",
            "auth_" + secrets.token_hex(10),
            fingerprint,
            reference,
            amount,
            currency,
            digits[-4:],
            "declined" if decline else "authorized",
            decline,
        )
        row = await self.db.pool.fetchrow(
            "SELECT * FROM sandbox_authorizations WHERE fingerprint = $1"
            " AND state IN ('declined', 'authorized', 'captured')",
            fingerprint,
        )
        assert row is not None  # (a void between the two statements: the caller retries the payment)
        return _authorization(row)

    async def capture(self, authorization_id: str) -> None:
        if await self._card(authorization_id) == SLOW_CAPTURE_CARD[-4:]:
            await asyncio.sleep(self.slow_seconds)
        await self._move(authorization_id, "capture")

    async def void(self, authorization_id: str) -> None:
        await self._move(authorization_id, "void")

    async def refund(self, authorization_id: str) -> None:
        if await self._card(authorization_id) == SLOW_REFUND_CARD[-4:]:
            await asyncio.sleep(self.slow_seconds)
        await self._move(authorization_id, "refund")

    async def lookup(self, reference: str) -> list[Authorization]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM sandbox_authorizations WHERE reference = $1 ORDER BY created_at", reference
        )
        return [_authorization(row) for row in rows]

    async def open_before(self, before: datetime, limit: int) -> list[Authorization]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM sandbox_authorizations WHERE state = 'authorized' AND created_at < $1"
            " ORDER BY created_at LIMIT $2",
            before,
            limit,
        )
        return [_authorization(row) for row in rows]

    async def captured_between(self, since: datetime, before: datetime, limit: int) -> list[Authorization]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM sandbox_authorizations WHERE state = 'captured' AND updated_at >= $1 AND updated_at < $2"
            " ORDER BY updated_at LIMIT $3",
            since,
            before,
            limit,
        )
        return [_authorization(row) for row in rows]

    async def _card(self, authorization_id: str) -> str | None:
        last4: str | None = await self.db.pool.fetchval(
            "SELECT last4 FROM sandbox_authorizations WHERE authorization_id = $1", authorization_id
        )
        return last4

    async def _move(self, authorization_id: str, move: str) -> None:
        source, target = _MOVES[move]
        state = await self.db.pool.fetchval(
            "UPDATE sandbox_authorizations SET state = CASE WHEN state = $2 THEN $3 ELSE state END,"
            " updated_at = CASE WHEN state = $2 THEN now() ELSE updated_at END"
            " WHERE authorization_id = $1 RETURNING state",
            authorization_id,
            source,
            target,
        )
        if state is None:
            raise PaymentError(f"no authorization {authorization_id}")
        if state != target:
            raise PaymentError(f"authorization {authorization_id} is {state}: it cannot be {target}")


def _authorization(row: Record) -> Authorization:
    return Authorization(
        id=row["authorization_id"],
        approved=row["state"] != "declined",
        decline_code=row["decline_code"],
        reference=row["reference"],
        amount=row["amount"],
        currency=row["currency"],
        state=row["state"],
        changed_at=row["updated_at"],
    )


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0
