"""What each auction request does (docs/auctions.md): start (audited), bid, bar and unbar (audited); the card to
the room after every change, the personal events to the bidder who lost the lead. The clock (server.auctions.clock)
closes, awards and settles."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from server import metrics
from server.access.limits import Limits, Rule
from server.access.tokens import Actor, Identity
from server.auctions.record import AuctionRecord
from server.auctions.rules import Auction, AuctionRefused, Refusal, Terms, money, new_id, step
from server.auctions.store import AuctionStore
from server.config import Settings
from server.errors import STORE_ERRORS
from server.ledger.audit import AuditLog
from server.live.personal import Delivery, to_user
from server.protocol import event
from server.rooms.record import RoomRecords

log = logging.getLogger("livecart.auctions")

_KNOWN = 4096  # auctions whose terms a process keeps

_OUTCOMES = {"unknown_auction": "closed", "auction_closed": "closed", "banned": "barred"}  # as the metric counts
_REFUSALS = {
    "unknown_auction": Refusal.AUCTION_CLOSED,  # its keys left Redis: it closed and settled
    "auction_closed": Refusal.AUCTION_CLOSED,
    "barred": Refusal.BARRED,
    "banned": Refusal.BANNED,
}


class AuctionDesk:
    def __init__(
        self,
        store: AuctionStore,
        record: AuctionRecord,
        records: RoomRecords,
        delivery: Delivery,
        limits: Limits,
        audit: AuditLog,
        settings: Settings,
    ) -> None:
        self.store = store
        self.record = record
        self.records = records
        self.delivery = delivery
        self.limits = limits
        self.audit = audit
        self.settings = settings
        self._auctions: dict[str, Auction] = {}  # auction id -> as first read here (room and terms never change)
        self._pending: dict[str, dict[str, Any]] = {}  # auction id -> the newest card waiting to be published
        self._publishing: dict[str, asyncio.Task[None]] = {}

    async def start(self, actor: Actor, room_id: str, terms: Terms) -> Auction:
        auction_id = new_id()
        async with self.audit.change(actor, "auction.started", f"auction:{auction_id}") as entry:
            barred = await self.record.barred(actor.merchant_id)
            starts, ends = await self.store.open(auction_id, actor.merchant_id, room_id, terms, barred)
            try:
                await self.record.start(auction_id, actor.merchant_id, room_id, terms, actor.user_id, starts, ends)
            except BaseException:
                await self.store.come_back(room_id, auction_id, None)
                await self.store.drop(room_id, auction_id)
                raise
            auction = await self.store.get(room_id, auction_id)
            assert auction is not None
            entry.after = auction.card()
        await self.records.forget_moments(room_id, [], await self.record.previous_in_room(room_id, auction_id))
        await self.publish(auction)
        return auction

    async def get(self, auction_id: str) -> Auction:
        """The auction as it stands: Redis while it runs and until it settles, the record after."""
        known = await self._known(auction_id)
        if known.state == "open":
            live = await self.store.get(known.room_id, auction_id)
            if live is not None and live.state == "open":
                return live
        recorded = await self.record.get(auction_id)
        assert recorded is not None
        return recorded

    async def _known(self, auction_id: str) -> Auction:
        """The auction as this process first read it: its room and terms never change."""
        known = self._auctions.get(auction_id)
        if known is None:
            known = await self.record.get(auction_id)
            if known is None:
                raise AuctionRefused(Refusal.UNKNOWN_AUCTION)
            if len(self._auctions) >= _KNOWN:
                del self._auctions[next(iter(self._auctions))]
            self._auctions[auction_id] = known
        return known

    async def bid(
        self, auction_id: str, bidder: Identity, key: str, amount: int, max_: int | None
    ) -> tuple[str, dict[str, Any], bool]:
        """Bid (or raise one's maximum): (outcome, the card after it, new?). A refusal says what to do instead."""
        if bidder.guest:
            raise AuctionRefused(Refusal.SIGN_IN_REQUIRED)
        await self.limits.take(
            "you are bidding too fast", (Rule("bids", *self.settings.limit_bids), bidder.user_id), attempt=f"bid:{key}"
        )
        known = await self._known(auction_id)
        done = await self.store.bid(
            known.room_id, auction_id, bidder.user_id, bidder.device_id, key, amount, max_ or 0, bidder.name
        )
        if done.verdict != "existing":  # a retry was counted the first time
            metrics.BIDS.labels(_OUTCOMES.get(done.verdict, done.verdict)).inc()
        if done.verdict == "too_low":
            next_bid = done.answer["next_bid"]
            if done.answer.get("leading"):
                raise AuctionRefused(
                    Refusal.TOO_LOW, "You're already in the lead: to raise your maximum, give one above it.",
                    next_bid=next_bid,
                )  # fmt: skip
            raise AuctionRefused(
                Refusal.TOO_LOW,
                f"Someone bid first: the next bid is at least {money(next_bid, known.terms.currency)}.",
                next_bid=next_bid,
            )
        if done.verdict in _REFUSALS:
            raise AuctionRefused(_REFUSALS[done.verdict])
        answer = done.answer
        auction = replace(
            known,
            state="open",
            price=answer["price"],
            leader=answer["leader"],
            leader_name=answer["leader_name"],
            bids=answer["bids"],
            ends_at=answer["ends_at"],
            extensions=answer["extensions"],
            version=answer["version"],
        )
        card = auction.card()
        if done.verdict != "existing":
            self._publish_soon(auction.room_id, card)
            if answer["lost"] and answer["lost"] != bidder.user_id:
                await self._tell_outbid(auction, answer["lost"])
        return answer["outcome"], card, done.verdict != "existing"

    async def _tell_outbid(self, auction: Auction, user_id: str) -> None:
        await self.delivery.send(
            [
                (
                    to_user(user_id),
                    event(
                        "auction.outbid",
                        auction_id=auction.id,
                        room_id=auction.room_id,
                        price=auction.price,
                        next_bid=auction.price + step(auction.terms.increments, auction.price),
                    ),
                )
            ]
        )

    async def bar(self, actor: Actor, user_id: str, barred: bool) -> None:
        """Bar a bidder from the merchant's auctions, or let them back; every running auction hears at once."""
        action = "bidder.barred" if barred else "bidder.unbarred"
        async with self.audit.change(actor, action, f"user:{user_id}") as entry:
            changed = await (
                self.record.bar(actor.merchant_id, user_id, actor.user_id)
                if barred
                else self.record.unbar(actor.merchant_id, user_id)
            )
            entry.after = {"user_id": user_id, "barred": barred, "changed": changed}
        for auction in await self.record.in_states("open"):
            if auction.merchant_id == actor.merchant_id:
                await self.store.bar(auction.room_id, auction.id, user_id, barred)

    # --- the card ----------------------------------------------------------------------------

    async def publish(self, auction: Auction) -> None:
        """The card to the room now (kept in its record for joining viewers)."""
        try:
            await self.records.publish_auction(auction.room_id, auction.card())
        except STORE_ERRORS as error:
            log.warning("auction %s: card not published: %r", auction.id, error)

    def _publish_soon(self, room_id: str, card: dict[str, Any]) -> None:
        """The newest card goes out as soon as the one being published is: a storm of bids costs one publish per
        round trip, not one per bid, and the last one always goes out."""
        known = self._pending.get(card["id"])
        if known is None or known["version"] < card["version"]:
            self._pending[card["id"]] = card
        if card["id"] not in self._publishing:
            self._publishing[card["id"]] = asyncio.get_running_loop().create_task(self._drain(room_id, card["id"]))

    async def _drain(self, room_id: str, auction_id: str) -> None:
        try:
            while (card := self._pending.pop(auction_id, None)) is not None:
                try:
                    await self.records.publish_auction(room_id, card)
                except STORE_ERRORS as error:
                    log.warning("auction %s: card not published: %r", auction_id, error)
        finally:
            del self._publishing[auction_id]
