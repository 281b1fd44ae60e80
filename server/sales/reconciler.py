"""The payments reconciler: finish what a crash or an outage left half done between the gateway and the record.

A periodic pass (RECONCILE_INTERVAL_MS) with one owner across processes (a PostgreSQL advisory
lock; a process that finds it taken skips the pass). It looks only at what is older than
RECONCILE_GRACE_MS, so a payment in flight is never touched, and repairs, idempotently:

- an order paid (in the record) whose capture never happened: capture it;
- an authorization left open at the gateway: capture it when its order is paid with it, else void
  it (the order expired, was cancelled, or was paid with another card);
- a capture whose order is not paid with it (Redis lost the payment): refund it. Captures are read a
  page at a time, each pass going on from where the last one stopped, and those it could not decide
  yet are looked at again at every pass, so every capture of the last LOOKBACK is, however many.

Each decision comes from one read of the order in the record (two reads could straddle the order
becoming paid, and void or refund a good payment).

Each repair is a payments row (by_reconciler), so what it did is on the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from server.config import Settings
from server.ledger.client import Database
from server.sales.ledger import SalesLedger
from server.sales.payments import Authorization, PaymentError, PaymentProvider
from server.tasks import Tasks

log = logging.getLogger("livecart.reconciler")


class Verdict(Enum):
    """What the record says of an authorization (Reconciler._verdict)."""

    OWN = "own"
    ELSEWHERE = "elsewhere"
    UNKNOWN = "unknown"


_LOCK = 0x72656331  # the advisory lock of the reconciler's pass ("rec1")
LOOKBACK = timedelta(days=7)  # how far back a pass looks for captures and paid orders
OVERLAP = timedelta(seconds=5)  # a pass reads captures again from this long before where the last one got to
BATCH = 500


@dataclass
class Repairs:
    """What one pass did."""

    captured: int = 0
    voided: int = 0
    refunded: int = 0
    skipped: bool = False  # another process holds the pass

    @property
    def total(self) -> int:
        return self.captured + self.voided + self.refunded


class Reconciler:
    """See the module docstring."""

    def __init__(self, db: Database, ledger: SalesLedger, provider: PaymentProvider, settings: Settings) -> None:
        self.db = db
        self.ledger = ledger
        self.provider = provider
        self.settings = settings
        self._captures_from: datetime | None = None  # where this process's look at the gateway's captures goes on
        self._undecided: dict[str, Authorization] = {}  # captures looked at whose order the record could not tell
        self.tasks = Tasks("reconciler")

    def start(self) -> None:
        self.tasks.every(self.settings.reconcile_interval_ms / 1000, self.run, "pass")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def run(self) -> Repairs:
        """One pass, if no other process is running one."""
        async with self.db.pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
                return Repairs(skipped=True)
            try:
                repairs = await self._pass()
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK)
        if repairs.total:
            log.warning("reconciled payments: %s", repairs)
        return repairs

    async def _pass(self) -> Repairs:
        repairs = Repairs()
        now = datetime.now(UTC)
        settled = now - timedelta(milliseconds=self.settings.reconcile_grace_ms)
        for paid in await self.ledger.paid_without_capture(settled, now - LOOKBACK, BATCH):
            try:
                await self.provider.capture(paid.authorization_id)
            except PaymentError as problem:  # one order the gateway refuses must not hold up the others
                log.error(
                    "order %s is paid but %s cannot be captured: %s", paid.order_id, paid.authorization_id, problem
                )
                continue
            await self.ledger.record_payment(
                paid.authorization_id,
                "capture",
                paid.order_id,
                paid.merchant_id,
                paid.amount,
                paid.currency,
                by_reconciler=True,
            )
            repairs.captured += 1
        for authorization in await self.provider.open_before(settled, BATCH):
            try:
                verdict = await self._verdict(authorization)
                if verdict is Verdict.OWN:
                    await self.provider.capture(authorization.id)
                    await self._record(authorization, "capture")
                    repairs.captured += 1
                elif verdict is Verdict.ELSEWHERE:
                    await self.provider.void(authorization.id)
                    await self._record(authorization, "void")
                    repairs.voided += 1
            except PaymentError as problem:  # moved meanwhile (a checkout finishing): the next pass sees it
                log.warning("cannot settle %s: %s", authorization.id, problem)
        await self._captures(max(self._captures_from or now - LOOKBACK, now - LOOKBACK), settled, repairs)
        return repairs

    async def _captures(self, since: datetime, settled: datetime, repairs: Repairs) -> None:
        """Captures the record lacks or should not have: a page at a time, each pass going on from where the last
        one stopped (a little before, for a capture committed late), and with them every capture not decided yet
        (its order not in the record yet, a refund the gateway refused), until it is."""
        captures = await self.provider.captured_between(since, settled, BATCH)
        for authorization in [*{a.id: a for a in [*self._undecided.values(), *captures]}.values()]:
            verdict = await self._verdict(authorization)
            if verdict is Verdict.OWN:
                await self._record(authorization, "capture")  # a capture the record missed (or has: nothing)
            elif verdict is Verdict.ELSEWHERE:
                try:
                    await self.provider.refund(authorization.id)
                except PaymentError as problem:
                    log.warning("cannot refund %s: %s", authorization.id, problem)
                    self._undecided[authorization.id] = authorization
                    continue
                await self._record(authorization, "refund")
                repairs.refunded += 1
            else:
                self._undecided[authorization.id] = authorization
                continue
            self._undecided.pop(authorization.id, None)
        for stale in [a for a in self._undecided.values() if (a.changed_at or settled) < settled - LOOKBACK]:
            log.warning("capture %s of %s: its order never reached the record", stale.id, stale.reference)
            del self._undecided[stale.id]
        self._captures_from = captures[-1].changed_at if len(captures) == BATCH else settled - OVERLAP

    async def _verdict(self, authorization: Authorization) -> Verdict:
        """What the record says of the authorization's order, from one read (two reads could straddle the order
        becoming paid with it, and undo a good payment): OWN, paid with it; ELSEWHERE, it will never be paid with
        it (expired, cancelled, refunded, or paid with another), so it may be undone; UNKNOWN, not in the record yet
        (the backup's lag) or still held: a later pass looks again."""
        order = await self.ledger.order(authorization.reference)
        if order is None or order.status == "held":
            return Verdict.UNKNOWN
        if order.status == "paid" and order.payment_ref == authorization.id:
            return Verdict.OWN
        return Verdict.ELSEWHERE

    async def _record(self, authorization: Authorization, kind: str) -> None:
        merchant_id = await self.ledger.merchant_of(authorization.reference.partition(".")[0]) or ""
        await self.ledger.record_payment(
            authorization.id,
            kind,
            authorization.reference,
            merchant_id,
            authorization.amount,
            authorization.currency,
            by_reconciler=True,
        )
