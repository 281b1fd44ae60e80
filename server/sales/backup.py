"""The real-time backup: every order change, from its sale's order log in Redis to the record in PostgreSQL.

Each sale's order log (a stream the sale scripts append to, in the same step as the change) has
the consumer group "ledger"; every server process is one consumer in it, named by its node id.
Every LEDGER_INTERVAL_MS a pass takes, per sale, the entries given to this consumer and not yet
confirmed (a write that failed), those another consumer left idle past LEDGER_CLAIM_MS (it died:
they become ours), then new ones; writes them all to PostgreSQL in one transaction
(server.sales.ledger: a change is keyed (order, version), so a second delivery writes nothing);
then confirms and deletes them from the log. So every change is in Redis until it is in
PostgreSQL (at least once), and in PostgreSQL once. The lag, from the change in Redis to its row
committed, is measured on every entry (`livecart_ledger_lag_seconds`).
"""

from __future__ import annotations

import logging
import time
from collections import deque

from server import metrics
from server.config import Settings
from server.sales.ledger import OrderChange
from server.sales.records import Order
from server.sales.store import Sales
from server.tasks import Tasks

log = logging.getLogger("livecart.ledger")

LAG_WINDOW_SECONDS = 10.0  # the p99 gauge covers the changes written in this window
GAUGE_EVERY_SECONDS = 0.5  # and is recomputed at most this often


class Backup:
    """This process's consumer of the order logs (see the module docstring)."""

    def __init__(self, consumer: str, sales: Sales, settings: Settings) -> None:
        self.consumer = consumer
        self.sales = sales
        self.ledger = sales.ledger
        self.settings = settings
        self.tasks = Tasks("ledger")
        self._lags: deque[tuple[float, float]] = deque()  # (written at, lag seconds)
        self._gauge_at = 0.0

    def start(self) -> None:
        self.tasks.every(self.settings.ledger_interval_ms / 1000, self.drain, "backup")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def drain(self) -> int:
        """Passes until the logs hold nothing more for this consumer; the number of changes written."""
        total = 0
        while (written := await self.step()) > 0:
            total += written
            if written < self.settings.ledger_batch:
                break
        return total

    async def step(self) -> int:
        """One pass: read, write to PostgreSQL in one transaction, confirm; the number of changes written."""
        batch = self.settings.ledger_batch
        unsaved = await self.sales.unsaved(self.consumer, batch, self.settings.ledger_claim_ms)
        if not unsaved:
            return 0
        changes: list[OrderChange] = []
        for sale_id, entries in unsaved.items():
            sale, _ = await self.sales.terms(sale_id)
            for entry_id, fields in entries:
                order = Order.from_json(fields["data"])
                changes.append(OrderChange(entry_id, fields["change"], order, sale))
        for diverged in await self.ledger.apply(changes):
            metrics.LEDGER_DIVERGED.inc()
            log.error(
                "order %s v%d is %s in Redis but another change in the record: Redis lost writes; "
                "run `python -m server.cli repair-sale %s`",
                diverged.order.id,
                diverged.order.version,
                diverged.change,
                diverged.sale.id,
            )
        await self.sales.saved({sale_id: [entry_id for entry_id, _ in entries] for sale_id, entries in unsaved.items()})
        self._observe([change.at_ms for change in changes])
        return len(changes)

    def _observe(self, changed_at_ms: list[int]) -> None:
        """Record the lag of each change just written; keep the window's p99 on the gauge."""
        now = time.time()
        for at_ms in changed_at_ms:
            lag = max(now - at_ms / 1000, 0.0)
            metrics.LEDGER_LAG.observe(lag)
            self._lags.append((now, lag))
        metrics.LEDGER_CHANGES.inc(len(changed_at_ms))
        if now - self._gauge_at < GAUGE_EVERY_SECONDS:
            return
        self._gauge_at = now
        while self._lags and self._lags[0][0] < now - LAG_WINDOW_SECONDS:
            self._lags.popleft()
        ordered = sorted(lag for _, lag in self._lags)
        metrics.LEDGER_LAG_P99.set(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0)
