"""Withdrawals: the one writer of `payouts`, the payout provider contract, and the sandbox provider (its book,
`sandbox_payouts`).

A sharer asks for a payout (at least the merchant's minimum, at most their withdrawable balance):
the balance is debited at once (server.referrals.earnings), under a lock per sharer so that two
requests never spend the same money. The merchant approves (the provider is asked to pay), or
refuses (the amount is credited back). The provider answers through a signed callback, idempotent,
checked against the payout's amount, currency and recipient; a failed payout may be retried (a new
attempt, a new reference) or refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from server.access.tokens import Actor, Identity
from server.errors import BadRequest, Conflict, Forbidden, NotFound
from server.ledger.audit import AuditLog
from server.ledger.client import Connection, Database, Record, ms
from server.referrals.earnings import Earnings
from server.referrals.program import Programs
from server.referrals.shares import sharer_name
from server.tasks import Tasks

log = logging.getLogger("livecart.payouts")

STATES = ("requested", "approved", "paid", "failed", "refused")
MAX_RECIPIENT = 200


@dataclass(frozen=True)
class Transfer:
    """What the provider is asked to pay: `reference` is ours (payout id and attempt), its idempotency key."""

    reference: str
    recipient: str
    amount: int
    currency: str


class PayoutProvider(Protocol):
    """Pays sharers. `send` is idempotent per reference; the outcome comes later, through the callback (a signed
    body, `verify`), as a real provider's webhook does."""

    async def send(self, transfer: Transfer) -> None: ...

    def verify(self, body: bytes, signature: str) -> bool: ...


class SandboxPayouts:
    """The built-in provider: pays any recipient except `…@fail.example` (always fails) and `…@flaky.example`
    (the first attempt fails). Its callback is delivered to `deliver` (the same path as the HTTP webhook)."""

    def __init__(self, db: Database, secret: str) -> None:
        self.db = db
        self._key = hashlib.sha256(f"payouts:{secret}".encode()).digest()
        self.deliver: Callable[[bytes, str], Coroutine[Any, Any, object]] | None = None
        self.tasks = Tasks("sandbox payouts")

    def sign(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(body), signature)

    async def send(self, transfer: Transfer) -> None:
        payout_id, _, attempt = transfer.reference.rpartition(":")
        domain = transfer.recipient.rpartition("@")[2].lower()
        failed = domain == "fail.example" or (domain == "flaky.example" and attempt == "1")
        provider_ref = "sbp_" + secrets.token_hex(8)
        row = await self.db.pool.fetchrow(
            "INSERT INTO sandbox_payouts (provider_ref, payout_id, attempt, recipient, amount, currency, state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (payout_id, attempt) DO UPDATE SET state = sandbox_payouts.state"
            " RETURNING provider_ref, state",
            provider_ref,
            payout_id,
            int(attempt),
            transfer.recipient,
            transfer.amount,
            transfer.currency,
            "failed" if failed else "paid",
        )
        assert row is not None
        body = orjson.dumps({
            "reference": transfer.reference, "provider_ref": row["provider_ref"], "status": row["state"],
            "amount": transfer.amount, "currency": transfer.currency, "recipient": transfer.recipient,
            "failure": "the recipient's account refused the transfer" if row["state"] == "failed" else None,
        })  # fmt: skip
        if self.deliver is not None:  # after the caller saved its side: a webhook arrives on its own time
            self.tasks.spawn(self.deliver(body, self.sign(body)))

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)


class Payouts:
    def __init__(
        self, db: Database, earnings: Earnings, programs: Programs, provider: PayoutProvider, audit: AuditLog
    ) -> None:
        self.db = db
        self.earnings = earnings
        self.programs = programs
        self.provider = provider
        self.audit = audit

    async def request(self, merchant_id: str, sharer: Identity, amount: object, recipient: object, key: str
                      ) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """A withdrawal asked for (debited at once); the one this key made before, if any. True when new."""
        if not isinstance(recipient, str) or not 3 <= len(recipient.strip()) <= MAX_RECIPIENT:
            raise BadRequest("'recipient' must say where to pay you (an account or email, up to 200 characters)")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise BadRequest("'amount' must be a whole number of minor units (cents), above 0")
        async with self.db.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"payout:{merchant_id}:{sharer.user_id}"
            )
            before = await connection.fetchrow(
                "SELECT * FROM payouts WHERE merchant_id = $1 AND sharer_id = $2 AND idempotency_key = $3",
                merchant_id,
                sharer.user_id,
                key,
            )
            if before is not None:
                return _payout(before), False
            program = await self.programs.get(merchant_id, connection)
            if amount < program.min_withdrawal:
                raise BadRequest(f"the least you can withdraw is {program.min_withdrawal}", "below_minimum")
            available = await self.earnings.withdrawable(connection, merchant_id, sharer.user_id)
            if amount > available:
                raise Conflict(f"you can withdraw at most {max(available, 0)} now", "insufficient_balance")
            payout_id = "po_" + secrets.token_hex(8)
            row = await connection.fetchrow(
                "INSERT INTO payouts (payout_id, merchant_id, sharer_id, amount, currency, recipient, state,"
                " idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7) RETURNING *",
                payout_id,
                merchant_id,
                sharer.user_id,
                amount,
                program.currency,
                recipient.strip(),
                key,
            )
            await self.earnings.debit(connection, merchant_id, sharer.user_id, payout_id, amount, program.currency)
        assert row is not None
        return _payout(row), True

    async def approve(self, actor: Actor, payout_id: str) -> dict[str, Any]:
        """A requested withdrawal approved: the provider is asked to pay it."""
        return await self._send(actor, payout_id, "requested", "withdrawal.approved")

    async def retry(self, actor: Actor, payout_id: str) -> dict[str, Any]:
        """A failed withdrawal sent again (a new attempt)."""
        return await self._send(actor, payout_id, "failed", "withdrawal.retried")

    async def _send(self, actor: Actor, payout_id: str, from_state: str, action: str) -> dict[str, Any]:
        async with self.audit.change(actor, action, payout_id) as entry:
            row = await self._move(
                actor.merchant_id, payout_id, (from_state,),
                "state = 'approved', attempts = attempts + 1, failure = NULL",
            )  # fmt: skip
            transfer = Transfer(f"{payout_id}:{row['attempts']}", row["recipient"], row["amount"], row["currency"])
            try:
                await self.provider.send(transfer)
            except Exception as problem:  # the provider unreachable: the payout failed, a retry sends it again
                log.warning("payout %s: the provider failed: %r", payout_id, problem)
                await self.db.pool.execute(
                    "UPDATE payouts SET state = 'failed', failure = $2, updated_at = now()"
                    " WHERE payout_id = $1 AND state = 'approved'",
                    payout_id,
                    "the payout provider could not be reached",
                )
            entry.after = after = await self.get(actor.merchant_id, payout_id)
        return after

    async def refuse(self, actor: Actor, payout_id: str) -> dict[str, Any]:
        """A requested or failed withdrawal refused: its amount goes back to the sharer's balance."""
        async with self.audit.change(actor, "withdrawal.refused", payout_id) as entry:
            async with self.db.pool.acquire() as connection, connection.transaction():
                await self._move(actor.merchant_id, payout_id, ("requested", "failed"), "state = 'refused'", connection)
                await self.earnings.credit_back(connection, payout_id)
            entry.after = after = await self.get(actor.merchant_id, payout_id)
        return after

    async def _move(self, merchant_id: str, payout_id: str, states: tuple[str, ...], change: str,
                    connection: Connection | None = None) -> Record:  # fmt: skip
        row = await (connection or self.db.pool).fetchrow(
            f"UPDATE payouts SET {change}, updated_at = now() WHERE payout_id = $1 AND merchant_id = $2"
            " AND state = ANY($3::text[]) RETURNING *",
            payout_id,
            merchant_id,
            list(states),
        )
        if row is None:
            await self.get(merchant_id, payout_id)  # NotFound when there is none
            raise Conflict(f"only a withdrawal that is {' or '.join(states)} can do that", "wrong_state")
        return row

    async def callback(self, body: bytes, signature: str) -> dict[str, Any]:
        """The provider's word on a transfer: the payout paid or failed. Idempotent; refused when the signature,
        the amount, the currency or the recipient does not match."""
        if not self.provider.verify(body, signature):
            raise Forbidden("the callback's signature is not the provider's", "bad_signature")
        try:
            data = orjson.loads(body)
            payout_id, _, attempt = str(data["reference"]).rpartition(":")
            status, amount = data["status"], data["amount"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise BadRequest("the callback is not a payout notification") from None
        if status not in ("paid", "failed"):
            raise BadRequest("'status' must be paid or failed")
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow("SELECT * FROM payouts WHERE payout_id = $1 FOR UPDATE", payout_id)
            if row is None:
                raise NotFound("no such payout", "unknown_payout")
            given = (amount, data.get("currency"), data.get("recipient"))
            if given != (row["amount"], row["currency"], row["recipient"]):
                log.warning("payout %s: a callback that does not match it (%s)", payout_id, data)
                raise Conflict("the callback's amount, currency or recipient is not the payout's", "mismatch")
            if str(row["attempts"]) != attempt or row["state"] != "approved":
                return _payout(row)  # an answer seen before, or about an attempt before this one: nothing changes
            row = await connection.fetchrow(
                "UPDATE payouts SET state = $2, provider_ref = $3, failure = $4, updated_at = now()"
                " WHERE payout_id = $1 RETURNING *",
                payout_id,
                status,
                data.get("provider_ref"),
                data.get("failure") if status == "failed" else None,
            )
        assert row is not None
        return _payout(row)

    async def get(self, merchant_id: str, payout_id: str) -> dict[str, Any]:
        row = await self.db.pool.fetchrow(
            "SELECT * FROM payouts WHERE payout_id = $1 AND merchant_id = $2", payout_id, merchant_id
        )
        if row is None:
            raise NotFound("no such withdrawal", "unknown_payout")
        return _payout(row)

    async def of_merchant(self, merchant_id: str, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            f"SELECT p.*, {sharer_name('p')} AS sharer_name FROM payouts p"
            " WHERE p.merchant_id = $1 AND ($2::text IS NULL OR p.state = $2) ORDER BY p.requested_at DESC LIMIT $3",
            merchant_id,
            state,
            limit,
        )
        return [{**_payout(row), "sharer_name": row["sharer_name"]} for row in rows]

    async def of_sharer(self, sharer_id: str, merchant_id: str) -> list[dict[str, Any]]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM payouts WHERE sharer_id = $1 AND merchant_id = $2 ORDER BY requested_at DESC",
            sharer_id,
            merchant_id,
        )
        return [_payout(row) for row in rows]


def _payout(row: Record) -> dict[str, Any]:
    return {
        **{name: row[name] for name in ("payout_id", "merchant_id", "sharer_id", "amount", "currency", "recipient",
                                        "state", "attempts", "provider_ref", "failure")},
        "requested_at": ms(row["requested_at"]),
        "updated_at": ms(row["updated_at"]),
    }  # fmt: skip
