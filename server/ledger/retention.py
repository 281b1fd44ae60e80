"""Retention: records older than ORDER_RETENTION_DAYS (three years by default) leave PostgreSQL, hourly, one process.

Commerce law in the main markets asks for transaction records kept complete for at least three
years; past the retention period a sale (with its orders, their changes and payments), the audit
entries, the sessions that ended, the customer-service threads last written, the giveaways and settled
auctions that ended that long ago, and orders' shipping addresses and waits for a product made that long ago are
removed, each by the module that owns them. One process purges at a time (an advisory lock); the others skip the
hour.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from server.access.sessions import Sessions
from server.auctions.record import AuctionRecord
from server.giveaways.record import Giveaways
from server.ledger.audit import AuditLog
from server.ledger.client import Database
from server.sales.ledger import SalesLedger
from server.sales.shipping import Shipping
from server.sales.waitlist import Waitlist
from server.service.threads import Threads
from server.tasks import Tasks

log = logging.getLogger("livecart.retention")

_LOCK = 0x72657431  # the advisory lock of the purge ("ret1")
INTERVAL_SECONDS = 3600.0


class Retention:
    def __init__(
        self,
        db: Database,
        sales: SalesLedger,
        audit: AuditLog,
        sessions: Sessions,
        threads: Threads,
        giveaways: Giveaways,
        auctions: AuctionRecord,
        shipping: Shipping,
        waitlist: Waitlist,
        days: int,
    ) -> None:
        self.db = db
        self.sales = sales
        self.audit = audit
        self.sessions = sessions
        self.threads = threads
        self.giveaways = giveaways
        self.auctions = auctions
        self.shipping = shipping
        self.waitlist = waitlist
        self.days = days
        self.tasks = Tasks("retention")

    def start(self) -> None:
        self.tasks.every(INTERVAL_SECONDS, self.purge, "purge")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def purge(self) -> tuple[int, ...] | None:
        """Remove what is past the retention period: (sales, audit entries, sessions, threads, giveaways, auctions),
        or None when another process is at it."""
        before = datetime.now(UTC) - timedelta(days=self.days)
        async with self.db.pool.acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
                return None
            try:
                purged = (
                    await self.sales.purge(before),
                    await self.audit.purge(before),
                    await self.sessions.purge(before),
                    await self.threads.purge(before),
                    await self.giveaways.purge(before),
                    await self.auctions.purge(before),
                    await self.shipping.purge(before),
                    await self.waitlist.purge(before),
                )
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK)
        if any(purged):
            log.info(
                "retention: removed %d sales, %d audit entries, %d sessions, %d threads, %d giveaways, %d auctions,"
                " %d orders' shipping and %d waits older than %s",
                *purged,
                before.date(),
            )
        return purged
