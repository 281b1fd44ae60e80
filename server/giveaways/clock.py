"""The giveaways' clock, one per process, every GIVEAWAY_CLOCK_MS (docs/giveaways.md): watch time credited to the
people in this process's rooms, live entrant counts, the draw of giveaways past their end, redraws of unclaimed
prizes, and the winners' messenger notices. Draws and redraws lock their rows (`SKIP LOCKED`): whichever process
comes first does each, once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from server.access.accounts import Accounts
from server.access.codes import Messenger
from server.giveaways.desk import GiveawayDesk
from server.giveaways.rules import Giveaway, Winner
from server.protocol import now_ms
from server.tasks import Tasks

log = logging.getLogger("livecart.giveaways")

PresentUsers = Callable[[str], list[str]]  # room id -> the people with a room socket open on this process


class GiveawayClock:
    def __init__(
        self, desk: GiveawayDesk, present: PresentUsers, accounts: Accounts, messenger: Messenger, clock_ms: int
    ) -> None:
        self.desk = desk
        self.present = present
        self.accounts = accounts
        self.messenger = messenger
        self.clock_ms = clock_ms
        self._counts: dict[str, int] = {}  # giveaway id -> the entrant count this process last published
        self._last_watch = 0
        self.tasks = Tasks("giveaways")

    def start(self) -> None:
        self.tasks.every(self.clock_ms / 1000, self.tick, "clock")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)

    async def tick(self) -> None:
        record = self.desk.record
        open_ones = await record.open_ones()
        self.desk.open_in_room = {giveaway.room_id: giveaway for giveaway in open_ones}
        await self._credit_watchers(open_ones)
        for giveaway in open_ones:
            if self._counts.get(giveaway.id) != giveaway.entrants:
                self._counts[giveaway.id] = giveaway.entrants
                await self.desk.publish(giveaway)
        for giveaway in await record.draw_due():
            self._counts.pop(giveaway.id, None)
            log.info(
                "giveaway %s drawn: %d entrants, %d winners", giveaway.id, giveaway.entrants, len(giveaway.winners)
            )
            await self.desk.publish(giveaway)
            await self.desk.tell_winners(giveaway, giveaway.winners)
        for giveaway, winner in await record.redraw_due():
            await self.desk.publish(giveaway)
            if winner is not None:
                await self.desk.tell_winners(giveaway, [winner])
        for giveaway, winner in await record.to_notify():
            await self._notify(giveaway, winner)

    async def _credit_watchers(self, open_ones: list[Giveaway]) -> None:
        """One slot to everyone present, for giveaways with a watch condition (the script credits each slot once)."""
        now = now_ms()
        if now - self._last_watch < self.desk.watch.slot_ms / 2:
            return
        self._last_watch = now
        for giveaway in open_ones:
            if giveaway.conditions.watch_seconds and now < giveaway.ends_at:
                await self.desk.watch.credit(
                    giveaway.room_id, giveaway.id, giveaway.ends_at, self.present(giveaway.room_id)
                )

    async def _notify(self, giveaway: Giveaway, winner: Winner) -> None:
        destination = await self.accounts.destination_of(winner.user_id)
        if destination is None:
            return
        text = (
            f"You won {giveaway.product['title']} in a live giveaway (ticket {winner.ticket})! "
            "Claim it in the room by giving a shipping address: "
            f"/room.html?room={giveaway.room_id}&giveaway={giveaway.id}"
        )
        try:
            await self.messenger.send(destination, text)
        except Exception as error:  # the messenger failed: give the notice back for the next tick
            log.warning("giveaway %s: notice to rank %d failed: %r", giveaway.id, winner.rank, error)
            await self.desk.record.notice_failed(giveaway.id, winner.rank)
