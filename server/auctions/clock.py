"""The auctions' clock, one per process, every AUCTION_CLOCK_MS (docs/auctions.md): the bid logs copied to the
record, auctions closed at their end (an extension moves the visit), the win offered as an award sale with a payment
hold, each offer settled when its order is paid or lapses (the next bidder, or the host), the winners' notices, and
the keys of settled auctions dropped from Redis.

Every step is safe to repeat and to run on several processes at once: closing is a script that rechecks the end,
bids are unique per (auction, seq), an offer per (auction, round), its sale id is derived from both and its hold
is reserved with a key derived from both; settling changes an offer once (`outcome IS NULL`)."""

from __future__ import annotations

import logging
from typing import Any

from server.access.accounts import Accounts
from server.access.codes import Messenger
from server.auctions.desk import AuctionDesk
from server.auctions.rules import Auction, award_sale_id, money
from server.live.personal import to_user
from server.protocol import event, now_ms
from server.sales.records import Terms as SaleTerms
from server.sales.store import Sales
from server.tasks import Tasks

log = logging.getLogger("livecart.auctions")

AWARD_SALE_SLACK_MS = 60_000  # an award sale stays open this long past its hold


class AuctionClock:
    def __init__(
        self, desk: AuctionDesk, sales: Sales, accounts: Accounts, messenger: Messenger, clock_ms: int
    ) -> None:
        self.desk = desk
        self.sales = sales
        self.accounts = accounts
        self.messenger = messenger
        self.clock_ms = clock_ms
        self.tasks = Tasks("auctions")

    def start(self) -> None:
        self.tasks.every(self.clock_ms / 1000, self.tick, "clock")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def tick(self) -> None:
        record, store = self.desk.record, self.desk.store
        for auction in await record.in_states("open"):
            await self.save_bids(auction)
            if not await store.exists(auction.room_id, auction.id):
                await self._close_lost(auction)
        for room_id, auction_id in await store.due(now_ms()):
            await self._close(room_id, auction_id)
        for auction in await record.in_states("closed", "awarded"):
            await self._settle(auction)
        for offer in await record.to_notify():
            await self._notify(offer)

    async def save_bids(self, auction: Auction) -> None:
        """Copy the auction's bid log to the record, then empty it (a bid copied twice is written once)."""
        store = self.desk.store
        while entries := await store.unsaved_bids(auction.room_id, auction.id):
            await self.desk.record.save_bids(auction.id, [fields for _, fields in entries])
            await store.saved_bids(auction.room_id, auction.id, [entry_id for entry_id, _ in entries])

    async def _close(self, room_id: str, auction_id: str) -> None:
        store, record = self.desk.store, self.desk.record
        verdict, final = await store.close(room_id, auction_id)
        if verdict == "not_due":
            await store.come_back(room_id, auction_id, final["ends_at"])
            return
        recorded = await record.get(auction_id)
        if verdict == "unknown" or recorded is None:
            await store.come_back(room_id, auction_id, None)
            return
        await self.save_bids(recorded)
        closed = await record.closed(auction_id, final)
        await store.come_back(room_id, auction_id, None)
        if verdict == "closed":
            log.info("auction %s closed: %d bids, price %s", auction_id, closed.bids, closed.price)
        await self.desk.publish(closed)
        if closed.state == "unsold":  # no bid
            await store.drop(room_id, auction_id)

    async def _close_lost(self, auction: Auction) -> None:
        """Redis lost a running auction's keys (its bids since the last copy with them): it closes on the bids the
        record has, so the win is still offered and nothing waits forever."""
        log.warning("auction %s: its Redis keys are gone; closed on the bids recorded", auction.id)
        await self.desk.store.come_back(auction.room_id, auction.id, None)
        closed = await self.desk.record.closed(auction.id, await self.desk.record.final_from_bids(auction))
        await self.desk.publish(closed)

    async def _settle(self, auction: Auction) -> None:
        """Offer the win, or settle the current offer by its order's state."""
        record = self.desk.record
        offer = await record.current_award(auction.id)
        if offer is None or (offer["outcome"] == "unpaid" and auction.terms.unpaid == "next_bidder"):
            await self._offer_next(auction, 1 if offer is None else offer["round"] + 1)
            return
        if offer["order_id"] is None:  # the process making it died midway: make it again (the same sale and key)
            await self._offer(auction, offer["round"], offer["user_id"], offer["name"], offer["price"])
            return
        order, _ = await self.sales.order(offer["order_id"])
        if order.status == "paid":
            await record.settle(auction.id, offer["round"], "paid", "sold")
        elif order.status in ("expired", "cancelled"):
            last = auction.terms.unpaid == "host"
            await record.settle(auction.id, offer["round"], "unpaid", "unsold" if last else None)
            log.info("auction %s: round %d unpaid", auction.id, offer["round"])
            if not last:
                await self._offer_next(auction, offer["round"] + 1)
                return
        else:
            return  # held: waiting for the payment
        settled = await record.get(auction.id)
        assert settled is not None
        await self.desk.publish(settled)
        if settled.state in ("sold", "unsold"):
            await self.desk.store.drop(auction.room_id, auction.id)

    async def _offer_next(self, auction: Auction, round_: int) -> None:
        """The win to the highest bidder not offered it yet; nobody left: unsold."""
        if round_ == 1:
            candidate = (auction.leader, auction.leader_name, auction.price) if auction.leader else None
        else:
            candidate = await self.desk.record.next_bidder(auction.id)
        if candidate is None:
            await self.desk.record.settle_unsold(auction.id)
            unsold = await self.desk.record.get(auction.id)
            assert unsold is not None
            await self.desk.publish(unsold)
            await self.desk.store.drop(auction.room_id, auction.id)
            return
        await self._offer(auction, round_, *candidate)

    async def _offer(self, auction: Auction, round_: int, user_id: str, name: str, price: int) -> None:
        """An award sale of one unit at `price` only `user_id` may hold, and their hold on it."""
        sale_id = award_sale_id(auction.id, round_)
        record = self.desk.record
        if not await record.offer(auction.id, round_, user_id, name, price, sale_id):
            return
        terms = auction.terms
        sale = await self.sales.create(
            SaleTerms(
                merchant_id=auction.merchant_id,
                room_id=auction.room_id,
                product=terms.product,
                price=price,
                currency=terms.currency,
                quantity=1,
                per_user_limit=1,
                buyers="signed_in",
                starts_at=0,
                countdown_ms=0,
                duration_ms=terms.pay_ms + AWARD_SALE_SLACK_MS,
                hold_ms=terms.pay_ms,
                auction_id=auction.id,
                winner=user_id,
            ),
            sale_id=sale_id,
        )
        outcome = await self.sales.reserve(sale.id, user_id, f"award-{auction.id}-{round_}", 1)
        await record.held(auction.id, round_, outcome.order.id)
        offered = await record.get(auction.id)
        assert offered is not None
        await self.desk.publish(offered)
        await self.desk.delivery.send(
            [
                (
                    to_user(user_id),
                    event(
                        "auction.won",
                        auction_id=auction.id,
                        room_id=auction.room_id,
                        order_id=outcome.order.id,
                        price=price,
                        currency=terms.currency,
                        pay_by=outcome.order.hold_expires_at,
                    ),
                )
            ]
        )

    async def _notify(self, offer: dict[str, Any]) -> None:
        destination = await self.accounts.destination_of(offer["user_id"])
        if destination is None:
            return
        auction = await self.desk.record.get(offer["auction_id"])
        if auction is None:
            return
        text = (
            f"You won {auction.terms.product['title']} in a live auction at "
            f"{money(offer['price'], auction.terms.currency)}. Pay to keep it: "
            f"/room.html?room={auction.room_id}&order={offer['order_id']}"
        )
        try:
            await self.messenger.send(destination, text)
        except Exception as error:  # the messenger failed: give the notice back for the next tick
            log.warning("auction %s: notice of round %s failed: %r", auction.id, offer["round"], error)
            await self.desk.record.notice_failed(auction.id, offer["round"])
