"""What rooms hear of their sales, and the sale clock: announcements, coalesced stock, sampled toasts, expired holds.

Every server process runs one feed. Nothing here decides anything about stock or orders (the sale
scripts do); it tells rooms what happened and makes time pass for sales nobody is buying from:

- Announcements (durable room events sale.created / started / sold_out / ended) are claimed
  per sale in Redis before publishing, so one process tells each step (at least once: a process
  that dies mid-way leaves a claim that lapses, and another tells it again; applying a step
  twice changes nothing).
- Stock reaches the room at most every STOCK_INTERVAL_MS per sale, whatever the purchase rate:
  the sales this process changed (server.sales.changes) are flushed that often; a script reads
  the counters and claims the publish, only if no process published in the interval.
- Toasts ("someone just bought") are sampled: one per sale per TOAST_INTERVAL_MS per process.
- A group-buy offer's board (its open groups, `groups`) goes out with its stock; each group that
  changed here is told to its members (the private `group` event).
- The clock visits each sale when something is due (the start, the end, the first hold to
  expire, a group's window end, a refund to retry; a live sale at least every LIVE_REVISIT_MS),
  releases expired holds, fails the groups whose window passed and refunds their members, and
  announces; a sale over for SALE_ARCHIVE_GRACE_MS, with no hold, group or refund left and every
  change in the record, is archived (its keys leave Redis).
"""

from __future__ import annotations

import logging
import time

from server import metrics
from server.config import Settings
from server.protocol import SALE_EVENTS, SALE_STATUSES, event, now_ms
from server.rooms import record
from server.rooms.record import RoomRecords, UnknownRoom
from server.sales.groups import FORMING, Group
from server.sales.payments import PaymentError
from server.sales.records import Sale
from server.sales.refunds import Refunds
from server.sales.store import Sales
from server.tasks import Tasks

log = logging.getLogger("livecart.sales")

DUE_BATCH = 100
GROUP_BATCH = 100  # groups failed and refunds made in one visit of an offer at most


class SalesFeed:
    """This process's announcer, stock and toast publisher, and sale clock (see the module docstring)."""

    def __init__(
        self, process_id: str, sales: Sales, records: RoomRecords, refunds: Refunds, settings: Settings
    ) -> None:
        self.sales = sales
        self.changes = sales.changes
        self.records = records
        self.refunds = refunds
        self.settings = settings
        self.process_id = process_id  # who holds an announcement claim
        self._last_toast: dict[str, float] = {}
        self.tasks = Tasks("sales")

    def start(self) -> None:
        self.tasks.every(self.settings.stock_interval_ms / 1000, self.flush, "stock")
        self.tasks.every(self.settings.sale_clock_ms / 1000, self.tick, "clock")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    # --- announcements -----------------------------------------------------------------------

    async def announce(self, sale_id: str) -> int:
        """Tell the sale's room every step that is due and unclaimed; return the last step told (-1: none)."""
        told = -1
        claim_ms = self.settings.announce_claim_ms
        while (step := await self.sales.claim_announcement(sale_id, self.process_id, claim_ms)) >= 0:
            sale = await self.sales.get(sale_id)
            if sale is None:
                return told
            public = sale.public(SALE_STATUSES[step])
            try:
                # An auction's award sale is the auction card's news, not a sale's; a shelf is in no room.
                if sale.auction_id is None and not sale.shelf:
                    await self.records.publish(sale.room_id, event(SALE_EVENTS[step], sale=public), record.sale(public))
            except UnknownRoom:
                log.warning("sale %s: room %s is gone; not announcing %s", sale_id, sale.room_id, SALE_EVENTS[step])
            await self.sales.announced(sale_id, self.process_id, step)
            told = step
        return told

    async def updated(self, sale: Sale) -> None:
        """A host changed a running sale (started it now, restocked, extended): the room hears the whole sale."""
        public = sale.public(sale.status(now_ms()))
        await self.records.publish(sale.room_id, event("sale.updated", sale=public), record.sale(public))

    # --- stock and toasts --------------------------------------------------------------------

    async def flush(self) -> None:
        """Publish the stock (and an offer's board) of the sales this process changed, each changed group to its
        members, and a toast where one is due."""
        pending = self.changes.take_stock()
        try:
            for sale_id, room_id in list(pending.items()):
                too_soon, stock = await self.sales.stock_to_publish(sale_id, self.settings.stock_interval_ms)
                if stock is not None:
                    await self.records.publish_latest(room_id, stock.event())
                    if (await self.sales.terms(sale_id))[0].group is not None:
                        await self.records.publish_groups(room_id, sale_id, await self.sales.board(sale_id))
                if not too_soon:  # too soon: another process published a moment ago; next time
                    del pending[sale_id]
        finally:
            for sale_id, room_id in pending.items():
                self.changes.put_back(sale_id, room_id)
        await self._tell_members()
        await self._toast()

    async def _tell_members(self) -> None:
        """Each group that changed here, to its members (one round trip for all)."""
        messages = []
        for room_id, raw in self.changes.take_groups():
            group = Group.from_json(raw)
            if group.state not in FORMING:
                metrics.GROUPS_CLOSED.labels(group.state).inc()
            members = sorted({member.user_id for member in group.members})
            messages.append((room_id, members, event("group", **group.public())))
        if messages:
            await self.records.publish_privately(messages)

    async def _toast(self) -> None:
        now, every = time.monotonic(), self.settings.toast_interval_ms / 1000
        bought = self.changes.bought_since()
        for sale_id, (orders, units) in bought.items():
            if now - self._last_toast.get(sale_id, 0.0) < every:
                continue
            self.changes.toasted(sale_id)
            self._last_toast[sale_id] = now
            sale, _ = await self.sales.terms(sale_id)
            if sale.shelf:
                continue
            await self.records.publish_latest(
                sale.room_id, event("sale.toast", sale_id=sale_id, orders=orders, quantity=units)
            )
        for sale_id, at in list(self._last_toast.items()):
            if now - at > every and sale_id not in bought:
                del self._last_toast[sale_id]

    # --- the clock -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Visit every sale whose next moment has come."""
        for sale_id in await self.sales.due(DUE_BATCH):
            await self.visit(sale_id)

    async def visit(self, sale_id: str) -> None:
        """Release the sale's expired holds, announce what is due, and note when to come back (or never)."""
        released = await self.sales.release_expired(sale_id)
        if released is None:
            await self.sales.come_back(sale_id, None)
            return
        moments = [] if released.next_hold_expiry is None else [released.next_hold_expiry]
        if (await self.sales.terms(sale_id))[0].group is not None:
            moments += await self._groups(sale_id)
        announced = max(released.announced, await self.announce(sale_id))
        now = released.now
        if now < released.starts_at and released.starts_at < released.ends_at:
            moments.append(released.starts_at)
        elif now < released.ends_at:
            moments.append(min(released.ends_at, now + self.settings.live_revisit_ms))
        elif announced < len(SALE_EVENTS) - 1:
            moments.append(now + self.settings.announce_claim_ms)  # another process holds the claim to announce the end
        if not moments:  # over: once the grace has passed and the record has all of it, it leaves Redis
            grace = self.settings.sale_archive_grace_ms
            if now >= released.ends_at + grace:
                sale, _ = await self.sales.terms(sale_id)
                if await self.sales.archive(sale_id, grace):
                    if not sale.shelf:
                        await self.records.forget_sale(sale.room_id, sale_id)
                    return
            moments.append(max(released.ends_at + grace, now + self.settings.live_revisit_ms))
        await self.sales.come_back(sale_id, min(moments))

    async def _groups(self, sale_id: str) -> list[int]:
        """Fail the offer's groups whose window passed and give their members' money back; when to come back."""
        clock = await self.sales.clock_groups(sale_id, GROUP_BATCH, self.settings.group_refund_lease_ms)
        if clock is None:
            return []
        for order_id in clock.refunds:
            try:
                await self.refunds.refund_failed_group(order_id)
            except PaymentError as problem:  # the gateway cannot yet: the claim lapses and the clock tries again
                log.warning("order %s: refund of its failed group deferred: %s", order_id, problem)
                metrics.GROUP_REFUNDS.labels("deferred").inc()
                continue
            await self.sales.refund_done(order_id)
            metrics.GROUP_REFUNDS.labels("made").inc()
        moments = [moment for moment in (clock.next_window_end, clock.next_refund) if moment is not None]
        if clock.failed == GROUP_BATCH or len(clock.refunds) == GROUP_BATCH:
            moments.append(clock.now)  # more are due: at once
        return moments
