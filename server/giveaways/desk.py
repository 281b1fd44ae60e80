"""What each giveaway request does (docs/giveaways.md): start (audited), enter (every condition checked), a
viewer's progress, claim; the room's card and the winners' personal events. The clock (server.giveaways.clock) draws.
"""

from __future__ import annotations

import logging
from typing import Any

from server import metrics
from server.access.addresses import Address
from server.access.limits import Limits, Rule
from server.access.tokens import Actor, Identity
from server.config import Settings
from server.errors import STORE_ERRORS
from server.giveaways.record import Giveaways
from server.giveaways.rules import Giveaway, GiveawayRefused, Refusal, Terms, Winner
from server.giveaways.watch import Watch
from server.ledger.audit import AuditLog
from server.live.personal import Delivery, to_user
from server.protocol import event
from server.rooms.chat import Chat
from server.rooms.record import RoomRecords

log = logging.getLogger("livecart.giveaways")


class GiveawayDesk:
    def __init__(
        self,
        record: Giveaways,
        watch: Watch,
        chat: Chat,
        records: RoomRecords,
        delivery: Delivery,
        limits: Limits,
        audit: AuditLog,
        settings: Settings,
    ) -> None:
        self.record = record
        self.watch = watch
        self.chat = chat
        self.records = records
        self.delivery = delivery
        self.limits = limits
        self.audit = audit
        self.settings = settings
        self.open_in_room: dict[str, Giveaway] = {}  # room id -> its open giveaway, as the clock last read them

    async def start(self, actor: Actor, room_id: str, terms: Terms) -> Giveaway:
        async with self.audit.change(actor, "giveaway.started") as entry:
            giveaway = await self.record.start(actor.merchant_id, room_id, terms, actor.user_id)
            entry.subject, entry.after = f"giveaway:{giveaway.id}", _terms_of(giveaway)
        self.open_in_room[room_id] = giveaway
        await self.records.forget_moments(room_id, await self.record.previous_in_room(room_id, giveaway.id), [])
        await self.publish(giveaway)
        return giveaway

    async def get(self, giveaway_id: str) -> Giveaway:
        giveaway = await self.record.get(giveaway_id)
        if giveaway is None:
            raise GiveawayRefused(Refusal.UNKNOWN_GIVEAWAY)
        return giveaway

    async def heard(self, room_id: str, user_id: str, text: str) -> None:
        """A chat message was posted: note the person if it has the room's giveaway keyword."""
        giveaway = self.open_in_room.get(room_id)
        if giveaway is not None and giveaway.conditions.said(text):
            await self.watch.heard(room_id, giveaway.id, giveaway.ends_at, user_id)

    async def progress(self, giveaway: Giveaway, person: Identity) -> dict[str, Any]:
        """Where the person stands: each condition, their entry, their win."""
        entry = await self.record.entry(giveaway.id, person.user_id)
        won = next((winner for winner in giveaway.winners if winner.user_id == person.user_id), None)
        return {
            "giveaway_id": giveaway.id,
            "entered": entry is not None,
            "ticket": None if entry is None else entry["ticket"],
            "signed_in": not person.guest,
            "keyword_said": await self.watch.said(giveaway.room_id, giveaway.id, person.user_id),
            "watched_seconds": await self.watch.watched_ms(giveaway.room_id, giveaway.id, person.user_id) // 1000,
            "banned": await self.chat.is_banned(giveaway.room_id, person),
            "won": None
            if won is None
            else {"rank": won.rank, "claim_by": won.claim_by, "claimed": won.state == "claimed"},
        }

    async def enter(self, giveaway_id: str, person: Identity) -> tuple[dict[str, Any], bool]:
        """Enter the person if every condition holds; their earlier entry if they entered already."""
        await self.limits.take(
            "too many tries: wait a moment",
            (Rule("giveaway-entries", *self.settings.limit_giveaway_entries), person.user_id),
        )
        giveaway = await self.get(giveaway_id)
        entry = await self.record.entry(giveaway.id, person.user_id)
        if entry is not None:
            return entry, False
        if giveaway.state != "open":
            raise GiveawayRefused(Refusal.GIVEAWAY_CLOSED)
        conditions = giveaway.conditions
        if conditions.signed_in and person.guest:
            raise GiveawayRefused(Refusal.SIGN_IN_REQUIRED)
        if await self.chat.is_banned(giveaway.room_id, person):
            raise GiveawayRefused(Refusal.BANNED)
        if conditions.keyword is not None and not await self.watch.said(giveaway.room_id, giveaway.id, person.user_id):
            raise GiveawayRefused(
                Refusal.KEYWORD_REQUIRED, f"Type the keyword “{conditions.keyword}” in the chat first, then enter."
            )
        watched = await self.watch.watched_ms(giveaway.room_id, giveaway.id, person.user_id) // 1000
        if watched < conditions.watch_seconds:
            left = conditions.watch_seconds - watched
            raise GiveawayRefused(
                Refusal.WATCH_MORE, f"Keep watching: you can enter after {left} more seconds in the room."
            )
        entry, created = await self.record.enter(giveaway.id, person.user_id, person.name)
        if created:
            metrics.GIVEAWAY_ENTRIES.inc()
        return entry, created

    async def claim(self, giveaway_id: str, person: Identity, address: Address) -> tuple[dict[str, Any], bool]:
        giveaway = await self.get(giveaway_id)
        claim, created = await self.record.claim(giveaway.id, person.user_id, address)
        if created:
            await self.publish(await self.get(giveaway_id))
        return claim, created

    async def staff_view(self, giveaway: Giveaway) -> dict[str, Any]:
        """A giveaway as its merchant's staff see it: the card, every entrant, the claims with their addresses."""
        return {
            **giveaway.card(),
            "entrants_list": await self.record.entrants(giveaway.id),
            "claims": await self.record.claims(giveaway.id),
        }

    # --- telling people --------------------------------------------------------------------------

    async def publish(self, giveaway: Giveaway) -> None:
        """The card to the room (kept in its record for joining viewers). Redis away: the next change tells it."""
        try:
            await self.records.publish_giveaway(giveaway.room_id, giveaway.card())
        except STORE_ERRORS as error:
            log.warning("giveaway %s: card not published: %r", giveaway.id, error)

    async def tell_winners(self, giveaway: Giveaway, winners: list[Winner]) -> None:
        await self.delivery.send(
            [
                (
                    to_user(winner.user_id),
                    event(
                        "giveaway.won",
                        giveaway_id=giveaway.id,
                        room_id=giveaway.room_id,
                        product=giveaway.product,
                        ticket=winner.ticket,
                        claim_by=winner.claim_by,
                    ),
                )
                for winner in winners
            ]
        )


def _terms_of(giveaway: Giveaway) -> dict[str, Any]:
    card = giveaway.card()
    return {name: card[name] for name in ("room_id", "product", "winners_count", "conditions", "ends_at", "commitment")}
