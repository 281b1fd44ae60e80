"""THE notices (`service_notices`, their one writer): a staff answer that no page of the buyer received within
SERVICE_NOTIFY_AFTER_MS goes to them by the messenger, with a link back (docs/customer-service.md).

Every process runs the pass every SERVICE_PASS_MS. A thread is due once the oldest staff message its buyer's
pages have not received (and no notice covered) is SERVICE_NOTIFY_AFTER_MS old; its notice covers all of those,
so answers written together go out as one notice. It is claimed by inserting its row (the newest message's id is
the primary key) before it is sent, so two processes never both send it. A send that fails removes its claim: the
next pass tries again. A process killed between the claim and the send leaves the claim `sending`: that notice is
not sent (at most once).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from server import metrics
from server.access.accounts import Accounts
from server.access.codes import Messenger
from server.config import Settings
from server.ledger.client import Database, at
from server.protocol import now_ms
from server.rooms.catalog import Catalog
from server.tasks import Tasks

log = logging.getLogger("livecart.service")

BATCH = 100  # notices per pass at most
LOOK_BACK = timedelta(days=1)  # answers older than this are not notified (the server was down that long)
EXCERPT = 160


class Notices:
    def __init__(
        self, db: Database, accounts: Accounts, messenger: Messenger, catalog: Catalog, settings: Settings
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.messenger = messenger
        self.catalog = catalog
        self.settings = settings
        self.tasks = Tasks("service")

    def start(self) -> None:
        self.tasks.every(self.settings.service_pass_ms / 1000, self.run, "notices")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def run(self) -> int:
        """Send the notices due now; how many were sent."""
        due = at(now_ms() - self.settings.service_notify_after_ms)
        assert due is not None
        rows = await self.db.pool.fetch(
            "SELECT t.thread_id, t.merchant_id, t.user_id, max(m.message_id) AS up_to, count(*) AS unseen,"
            " (array_agg(m.body ORDER BY m.message_id DESC))[1] AS newest"
            " FROM service_messages m JOIN service_threads t ON t.thread_id = m.thread_id"
            " WHERE m.side = 'staff' AND m.created_at > $2 AND m.message_id > t.buyer_delivered"
            " AND m.message_id > COALESCE((SELECT max(n.message_id) FROM service_notices n"
            "  WHERE n.thread_id = t.thread_id), 0)"
            " AND NOT EXISTS (SELECT 1 FROM service_blocks b WHERE b.user_id = t.user_id"
            "  AND b.merchant_id = t.merchant_id)"
            " GROUP BY t.thread_id HAVING min(m.created_at) < $1 LIMIT $3",
            due,
            due - LOOK_BACK,
            BATCH,
        )
        sent = 0
        for row in rows:
            claimed = await self.db.pool.fetchval(
                "INSERT INTO service_notices (message_id, thread_id, merchant_id, outcome, at)"
                " VALUES ($1, $2, $3, 'sending', now()) ON CONFLICT DO NOTHING RETURNING message_id",
                row["up_to"],
                row["thread_id"],
                row["merchant_id"],
            )
            if claimed is None:
                continue  # another process has it
            destination = await self.accounts.destination_of(row["user_id"])
            if destination is None:
                await self._outcome(row["up_to"], "no_destination")
                metrics.SERVICE_NOTICES.labels("no_destination").inc()
                continue
            try:
                await self.messenger.send(destination, await self._text(row["merchant_id"], row["newest"],
                                                                        row["unseen"]))  # fmt: skip
            except Exception as error:
                log.warning("notice of thread %s not sent (tried again next pass): %r", row["thread_id"], error)
                await self.db.pool.execute("DELETE FROM service_notices WHERE message_id = $1", row["up_to"])
                metrics.SERVICE_NOTICES.labels("failed").inc()
                continue
            await self._outcome(row["up_to"], "sent")
            metrics.SERVICE_NOTICES.labels("sent").inc()
            sent += 1
        return sent

    async def _outcome(self, message_id: int, outcome: str) -> None:
        await self.db.pool.execute(
            "UPDATE service_notices SET outcome = $2, at = now() WHERE message_id = $1", message_id, outcome
        )

    async def _text(self, merchant_id: str, newest: str, unseen: int) -> str:
        shop = await self.catalog.get_merchant(merchant_id)
        name = (shop or {}).get("name", merchant_id)
        excerpt = newest if len(newest) <= EXCERPT else newest[: EXCERPT - 1] + "…"
        more = f" ({unseen} new messages)" if unseen > 1 else ""
        link = f"{self.settings.public_url}/messages.html?merchant={merchant_id}"
        return f"{name} answered you{more}: \u201c{excerpt}\u201d Read and reply: {link}"
