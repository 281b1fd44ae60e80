"""The real-time backup: every order change, from its sale's order log in Redis to the record in PostgreSQL.

Each sale's order log (a stream the sale scripts append to, in the same step as the change) has
the consumer group "ledger"; every server process is one consumer in it, named by its node id.
Every LEDGER_INTERVAL_MS a pass takes, per sale, the entries given to this consumer and not yet
confirmed (at start, or after a write that failed), every LEDGER_CLAIM_MS those another consumer
left idle that long (it died: they become ours), then new ones (one command reads every sale's
log); appends them to the order log in PostgreSQL, one row per sale (server.sales.ledger); then
confirms and deletes them from the stream. So every change is in Redis until it is in PostgreSQL
(at least once). The lag, from a change in Redis to its row committed, is measured on every copy,
for its oldest change (`livecart_ledger_lag_seconds`).

Every LEDGER_INTERVAL_MS too, another task projects the log into orders and order_changes (each
change once, however often it was copied; one process at a time), unless a purchase storm is on:
a pass of any process copied LEDGER_BUSY_CHANGES in the last STORM_MS. Then the projection, the
costly part (a row and its indexes per change), waits until the storm passes, or until the oldest
copied change has waited LEDGER_PROJECT_MAX_MS (`livecart_ledger_unprojected_seconds`): the
storm's CPU goes to buyers, its changes are already safe, and the orders' rows follow.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from server import keys, metrics
from server.config import Settings
from server.sales.ledger import LogBatch
from server.sales.store import Sales
from server.tasks import Tasks

log = logging.getLogger("livecart.ledger")

LAG_WINDOW_SECONDS = 10.0  # the p99 gauge covers the changes written in this window
GAUGE_EVERY_SECONDS = 0.5  # and is recomputed at most this often
PROJECT_ROWS = 20  # log rows (each one sale's changes of one pass) a projection takes at most
STORM_MS = 1000  # a storm is on this long after the last pass that copied LEDGER_BUSY_CHANGES


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
        self._mine = True  # read the entries given to this consumer and not confirmed (at start: a restart's)
        self._claimed_at = 0.0  # when entries idle at other consumers were last claimed
        self._waited_at = 0.0  # when the projection's wait was last measured

    def start(self) -> None:
        self.tasks.every(self.settings.ledger_interval_ms / 1000, self.drain, "backup")
        # Its own task: a projection that is slow (or waits on a lock) never holds up the copying.
        self.tasks.every(self.settings.ledger_interval_ms / 1000, self.project, "projection")

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
        """One pass: read, append to the log in PostgreSQL, confirm; the number of changes copied."""
        settings = self.settings
        now = time.monotonic()
        claim = now - self._claimed_at >= settings.ledger_claim_ms / 1000
        if claim:
            self._claimed_at = now
        unsaved = await self.sales.unsaved(
            self.consumer, settings.ledger_batch, mine=self._mine, claim_ms=settings.ledger_claim_ms if claim else None
        )
        self._mine = True  # until these are confirmed: should the write fail, the next pass reads them again
        batches = []
        for sale_id, entries in unsaved.entries.items():
            sale, _ = await self.sales.terms(sale_id)
            batches.append(
                LogBatch(
                    sale,
                    [entry_id for entry_id, _ in entries],
                    [fields["change"] for _, fields in entries],
                    [fields["data"] for _, fields in entries],
                )
            )
        await self.ledger.log(batches)
        copied = sum(len(batch.stream_ids) for batch in batches)
        if copied:
            await self.sales.saved(
                {sale_id: [entry_id for entry_id, _ in entries] for sale_id, entries in unsaved.entries.items()}
            )
            self._observe(min(int(batch.stream_ids[0].partition("-")[0]) for batch in batches), copied)
        self._mine = unsaved.pending
        if copied >= settings.ledger_busy_changes:
            await self.sales.redis.set(keys.ledger_storm(), self.consumer, px=STORM_MS)
        return copied

    async def project(self) -> int:
        """Project the log into orders, unless a storm is on (a pass of any process copied LEDGER_BUSY_CHANGES in
        the last STORM_MS) and the log's oldest row waited less than LEDGER_PROJECT_MAX_MS; keep how long it
        waited on the gauge. The number of changes projected."""
        now = time.monotonic()
        storm = bool(await self.sales.redis.exists(keys.ledger_storm()))
        waited = None
        if storm or now - self._waited_at >= GAUGE_EVERY_SECONDS:
            self._waited_at = now
            waited = await self.ledger.unprojected()
            metrics.LEDGER_UNPROJECTED.set(waited or 0.0)
        if storm and (waited is None or waited * 1000 < self.settings.ledger_project_max_ms):
            return 0
        projected = await self.ledger.project(PROJECT_ROWS)
        for wrong in projected.contradictions:
            metrics.LEDGER_DIVERGED.inc()
            log.error(
                "order %s v%d is %s in Redis but another change in the record: Redis lost writes; "
                "run `python -m server.cli repair-sale %s`",
                wrong.order_id,
                wrong.version,
                wrong.change,
                wrong.sale_id,
            )
        return projected.changes

    def _observe(self, oldest_ms: int, copied: int) -> None:
        """Record the lag of a write (that of its oldest change); keep the window's p99 on the gauge."""
        now = time.time()
        lag = max(now - oldest_ms / 1000, 0.0)
        metrics.LEDGER_LAG.observe(lag)
        metrics.LEDGER_CHANGES.inc(copied)
        self._lags.append((now, lag))
        if now - self._gauge_at < GAUGE_EVERY_SECONDS:
            return
        self._gauge_at = now
        while self._lags and self._lags[0][0] < now - LAG_WINDOW_SECONDS:
            self._lags.popleft()
        ordered = sorted(lag for _, lag in self._lags)
        metrics.LEDGER_LAG_P99.set(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0)
