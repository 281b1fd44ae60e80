"""The hub: this process's rooms and viewers, and the tick that fans each room's events out to them.

Events reach the hub from the broker (every process gets every event of its rooms, and every personal event:
those go to their person's or merchant staff's sockets here at once, whatever the room). A room
flushes at most once per tick (TICK_MS): it applies what arrived to its state, builds one frame
for all of it, encodes it once and offers it to every viewer (server.live.outbox), which sends it
at once or, when its socket is full, keeps it in a bounded outbox. Nothing waits for a slow viewer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from redis.exceptions import RedisError

from server import keys, metrics, protocol
from server.config import Settings
from server.errors import DomainError
from server.live.broker import Broker
from server.live.history import History
from server.live.outbox import Batch, Viewer
from server.protocol import CloseCode, coalesce_key, event
from server.rooms.presence import Presence
from server.rooms.record import RoomRecords, UnknownRoom
from server.rooms.state import RoomState
from server.tasks import Tasks

log = logging.getLogger("livecart.hub")

Loader = Callable[[str], Awaitable[RoomState | None]]


class TooManyConnections(DomainError):
    """This user or address already holds as many room sockets on this process as it may."""


class LocalRoom:
    """A room with viewers on this process: its state, viewers and the events waiting for the next tick."""

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.state: RoomState | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.viewers: set[Viewer] = set()
        self.users: dict[str, set[Viewer]] = {}  # user id -> sockets: the room's viewers are people, not sockets
        self.incoming: list[tuple[dict[str, Any], str, int]] = []  # (event, as clients see it, offset or 0)
        self.received_offset = 0
        self.likes_pending = 0
        self.last_flush = 0.0  # loop time of the last frame sent to the room's viewers
        self.flush_timer: asyncio.TimerHandle | None = None
        self.empty_since: float | None = None
        self.catch_up = asyncio.Lock()
        self._snapshot: str | None = None

    def audience(self) -> int:
        """The people watching: not the staff of the room's merchant (the host is not a viewer)."""
        assert self.state is not None
        merchant_id = self.state.merchant_id
        return sum(1 for sockets in self.users.values() if merchant_id not in next(iter(sockets)).identity.roles)

    def receive(self, message: dict[str, Any], raw: str, offset: int = 0) -> None:
        """Queue an event for the next frame (the hub schedules that frame)."""
        self.incoming.append((message, raw, offset))
        self.received_offset = max(self.received_offset, offset)

    def snapshot_frame(self) -> str:
        """The snapshot a joining viewer gets, encoded once until the room changes."""
        assert self.state is not None
        if self._snapshot is None:
            self._snapshot = protocol.snapshot(self.state.snapshot())
        return self._snapshot

    def flush(self) -> tuple[Batch, list[Viewer]] | None:
        """Apply what arrived since the last tick; offer it to every viewer as one batch.

        Returns the batch and the viewers that fell past their bound, or None when nothing arrived.
        """
        if not self.incoming or self.state is None:
            return None
        incoming, self.incoming = self.incoming, []
        durable: list[str] = []
        latest: dict[str, tuple[int, str]] = {}  # key -> (version, event): the newest version wins
        for message, raw, offset in incoming:
            if offset:
                if offset <= self.state.offset:
                    continue  # already in the state (loaded after it was published)
                durable.append(raw)
            else:
                key = coalesce_key(message)
                if key is None:
                    continue
                version = message.get("version", 0)
                if key in latest and latest[key][0] > version:
                    continue  # processes publish stock out of order: an older count never replaces a newer one
                latest[key] = (version, raw)
            self.state.apply(message, offset)
        if not durable and not latest:
            return None
        self._snapshot = None
        batch = Batch(durable, {key: raw for key, (_, raw) in latest.items()})
        lagging = [viewer for viewer in self.viewers if not viewer.offer(batch)]
        metrics.FRAMES_OUT.inc(len(self.viewers))
        return batch, lagging


class Hub:
    """This process's rooms: join and leave, the tick, presence and catching up on missed events."""

    def __init__(
        self,
        settings: Settings,
        process_id: str,
        broker: Broker,
        loader: Loader,
        history: History,
        records: RoomRecords,
        presence: Presence,
    ) -> None:
        self.settings = settings
        self.process_id = process_id
        self.broker = broker
        self.load = loader
        self.history = history
        self.records = records
        self.presence = presence
        self.rooms: dict[str, LocalRoom] = {}
        self.tasks = Tasks("hub")
        self._sockets_of_user: dict[str, set[Viewer]] = {}  # every room's: room sockets per user, personal events
        self._staff_sockets: dict[str, set[Viewer]] = {}  # merchant id -> sockets of its staff, in any room
        self._sockets_of_address: Counter[str] = Counter()
        self._likes: dict[str, tuple[int, int]] = {}  # user id -> (second, likes taken in it)

    async def start(self) -> None:
        """Read the personal channel; refresh presence every PRESENCE_INTERVAL_MS."""
        await self.broker.subscribe(keys.personal_channel(), self.deliver_personal)
        self.tasks.every(self.settings.presence_interval_ms / 1000, self.refresh, "presence")

    async def stop(self, timeout: float) -> None:
        """Close every viewer (1012: come back soon), stop the loops, leave the presence counts."""
        for room in self.rooms.values():
            if room.flush_timer is not None:
                room.flush_timer.cancel()
            for viewer in room.viewers:
                viewer.stop(CloseCode.SERVER_RESTARTING)
        await self.tasks.stop(timeout)
        try:
            await asyncio.wait_for(self.presence.clear(self.process_id, list(self.rooms)), timeout)
        except (TimeoutError, RedisError, OSError) as error:
            log.warning("presence not cleared at shutdown (it lapses by itself): %r", error)

    # --- joining and leaving ---------------------------------------------------------

    async def open_room(self, room_id: str) -> LocalRoom:
        """This process's copy of the room, subscribing and loading it if it is new here."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = LocalRoom(room_id)
            metrics.ROOMS.inc()
            try:
                await self.broker.subscribe(keys.channel(room_id), partial(self.deliver, room_id))
                state = await self.load(room_id)
                if state is None:
                    raise UnknownRoom(room_id)
                room.state = state
                room.received_offset = max(room.received_offset, state.offset)
                room.ready.set_result(None)
            except BaseException as error:
                del self.rooms[room_id]
                metrics.ROOMS.dec()
                room.ready.set_exception(error if isinstance(error, Exception) else UnknownRoom(room_id))
                room.ready.exception()  # retrieved: waiters get it too
                await asyncio.shield(self._unsubscribe_quietly(room_id))
                raise
        else:
            await asyncio.shield(room.ready)
        return room

    def add(self, room: LocalRoom, viewer: Viewer) -> tuple[str, int]:
        """Register a viewer; return the snapshot and the offset it starts from (no await inside).
        TooManyConnections when its user or address has as many room sockets here as it may."""
        assert room.state is not None
        user, address = viewer.identity.user_id, viewer.address
        if len(self._sockets_of_user.get(user, ())) >= self.settings.room_sockets_per_user:
            raise TooManyConnections(f"you have {self.settings.room_sockets_per_user} room connections open already")
        if self._sockets_of_address[address] >= self.settings.room_sockets_per_address:
            raise TooManyConnections("too many room connections from your network")
        self._sockets_of_user.setdefault(user, set()).add(viewer)
        for merchant_id in viewer.identity.roles:
            self._staff_sockets.setdefault(merchant_id, set()).add(viewer)
        self._sockets_of_address[address] += 1
        room.viewers.add(viewer)
        room.users.setdefault(user, set()).add(viewer)
        room.empty_since = None
        metrics.CONNECTIONS.inc()
        return room.snapshot_frame(), room.state.offset

    def remove(self, viewer: Viewer) -> None:
        room = self.rooms.get(viewer.room_id)
        if room is not None and viewer in room.viewers:
            room.viewers.discard(viewer)
            sockets = room.users.get(viewer.identity.user_id)
            if sockets is not None:
                sockets.discard(viewer)
                if not sockets:
                    del room.users[viewer.identity.user_id]
            _discard(self._sockets_of_user, viewer.identity.user_id, viewer)
            for merchant_id in viewer.identity.roles:
                _discard(self._staff_sockets, merchant_id, viewer)
            _decrement(self._sockets_of_address, viewer.address)
            metrics.CONNECTIONS.dec()
            if not room.viewers:
                room.empty_since = time.monotonic()

    def sign_out(self, session_ids: set[str]) -> None:
        """Close the sockets of these sessions (signed out, or revoked by an admin or the CLI)."""
        for viewer in [v for room in self.rooms.values() for v in room.viewers if v.identity.session_id in session_ids]:
            log.info("%s closed: signed out", viewer.log_prefix)
            self.remove(viewer)
            viewer.stop(CloseCode.SIGNED_OUT)

    def people_in(self, room_id: str) -> list[str]:
        """The people with a socket open in the room on this process."""
        room = self.rooms.get(room_id)
        return [] if room is None else list(room.users)

    def take_likes(self, user_id: str, count: int) -> int:
        """How many of `count` likes the user may still add this second (LIKES_PER_SECOND, over all their sockets)."""
        second = int(time.monotonic())
        start, taken = self._likes.get(user_id, (second, 0))
        if start != second:
            taken = 0
        allowed = min(count, self.settings.likes_per_second - taken)
        self._likes[user_id] = (second, taken + max(allowed, 0))
        return max(allowed, 0)

    def _close_expired(self) -> None:
        """Close the sockets whose access token expired (4500: the client refreshes it and comes back)."""
        now = time.time()
        for viewer in [v for room in self.rooms.values() for v in room.viewers if v.identity.expires < now]:
            self.remove(viewer)
            viewer.stop(CloseCode.INVALID_TOKEN)
        second = int(time.monotonic())
        self._likes = {user: taken for user, taken in self._likes.items() if taken[0] == second}

    async def recover(self, room: LocalRoom, since: int, epoch: str, until: int) -> str | None:
        """The frame with what a returning viewer missed, or None when only a fresh snapshot will do."""
        assert room.state is not None
        if epoch != room.state.epoch or since > until:
            return None
        try:
            missed = await self.history.between(room.id, since, until)
        except RedisError:
            return None
        if missed is None:
            return None
        return protocol.recovered(until, epoch, room.state.viewers, room.state.likes, missed)

    # --- events from the broker --------------------------------------------------------

    async def deliver(self, room_id: str, raw: str) -> None:
        """One message from the broker ("<offset> <event>", see server.protocol), in publish order."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        offset, encoded, user_id = protocol.parse_bus_message(raw)
        if user_id is not None:
            self._send_private(room, user_id, encoded)
            return
        message = orjson.loads(encoded)
        metrics.EVENTS_PUBLISHED.inc()
        if offset and room.state is not None and offset > room.received_offset + 1:
            await self._catch_up(room, offset - 1)  # a message was lost: read the gap from the history
        if not offset:
            self._enqueue(room, message, encoded)
        elif offset > room.received_offset:
            self._enqueue(room, message, protocol.with_offset(offset, encoded), offset)

    async def deliver_personal(self, raw: str) -> None:
        """A personal event from the broker: to this process's sockets of its person, or of its merchant's staff,
        in whatever room, at once (no room state, no tick)."""
        audience, target, encoded = protocol.parse_personal(raw)
        sockets = (self._sockets_of_user if audience == "@" else self._staff_sockets).get(target)
        if not sockets:
            return
        key = protocol.personal_key(orjson.loads(encoded))
        personal = Batch([encoded], {}) if key is None else Batch([], {key: encoded})
        for viewer in [viewer for viewer in sockets if not viewer.offer(personal)]:
            self._drop_lagging(viewer)

    def _send_private(self, room: LocalRoom, user_id: str, encoded: str) -> None:
        """A private event to the user's sockets in the room, at once (it is theirs alone: no state, no tick)."""
        sockets = room.users.get(user_id)
        if not sockets:
            return
        private = Batch([], {coalesce_key(orjson.loads(encoded)) or "private": encoded})
        for viewer in [viewer for viewer in sockets if not viewer.offer(private)]:
            self._drop_lagging(viewer)

    async def _catch_up(self, room: LocalRoom, until: int) -> None:
        async with room.catch_up:
            after = room.received_offset
            if until <= after:
                return
            missed = await self.history.between(room.id, after, until)
            if missed is None:  # older than the history keeps: start the room over from Redis
                log.warning("room %s missed events %d..%d beyond its history; reloading", room.id, after + 1, until)
                state = await self.load(room.id)
                if state is not None:
                    room.state = state
                    room.received_offset = state.offset
                    for viewer in list(room.viewers):
                        viewer.stop(CloseCode.TOO_SLOW)  # they reconnect and get a fresh snapshot
                return
            log.info("room %s caught up on events %d..%d", room.id, after + 1, until)
            for raw in missed:
                message = orjson.loads(raw)
                self._enqueue(room, message, raw, message["offset"])

    # --- the tick: at most one frame per room per TICK_MS ----------------------------------

    def _enqueue(self, room: LocalRoom, message: dict[str, Any], raw: str, offset: int = 0) -> None:
        room.receive(message, raw, offset)
        self._schedule(room)

    def like(self, room: LocalRoom, count: int) -> None:
        room.likes_pending += count
        self._schedule(room)

    def _schedule(self, room: LocalRoom) -> None:
        """Flush the room now if its last frame is a tick old, else once it is: a quiet room's event
        goes out at once, a busy room's events travel together, one frame per tick."""
        if room.flush_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = room.last_flush + self.settings.tick_ms / 1000 - loop.time()
        room.flush_timer = loop.call_later(max(delay, 0.0), self._flush, room)

    def _flush(self, room: LocalRoom) -> None:
        """Fan out the room's pending events as one frame; close viewers that fell behind; send likes on."""
        room.flush_timer = None
        room.last_flush = asyncio.get_running_loop().time()
        try:
            flushed = room.flush()
        except Exception:
            log.exception("room %s: flush failed", room.id)
            return
        if flushed is not None:
            _batch, lagging = flushed
            for viewer in lagging:
                self._drop_lagging(viewer)
        if room.likes_pending:
            self.tasks.spawn(self._publish_likes(room.id, room.likes_pending))
            room.likes_pending = 0

    def _drop_lagging(self, viewer: Viewer) -> None:
        log.info("%s closed: could not keep up", viewer.log_prefix)
        metrics.CLOSED_SLOW.inc()
        self.remove(viewer)
        viewer.stop(CloseCode.TOO_SLOW)

    async def _publish_likes(self, room_id: str, count: int) -> None:
        try:
            total = await self.records.add_likes(room_id, count)
            await self.records.publish_latest(room_id, event("likes", total=total))
        except (RedisError, OSError) as error:
            log.warning("room %s: %d likes not published: %s", room_id, count, error)

    # --- presence, catching up, unloading -----------------------------------------------

    async def refresh(self) -> None:
        """Close expired sockets, publish local viewer counts, read the totals, catch up rooms that missed events,
        unload idle rooms."""
        self._close_expired()
        now = time.monotonic()
        idle_after = self.settings.room_idle_seconds
        idle = [r for r in self.rooms.values() if r.empty_since is not None and now - r.empty_since > idle_after]
        for room in idle:
            del self.rooms[room.id]
            metrics.ROOMS.dec()
        for room in idle:
            await self._unsubscribe_quietly(room.id)
            if room.id in self.rooms:  # a viewer came back meanwhile: its subscribe may have gone first
                await self.broker.subscribe(keys.channel(room.id), partial(self.deliver, room.id))
        if idle:
            await self.presence.clear(self.process_id, [room.id for room in idle])
        loaded = [room for room in self.rooms.values() if room.state is not None]
        if not loaded:
            return
        counts = {room.id: room.audience() for room in loaded}
        totals = await self.presence.refresh(self.process_id, counts)
        offsets = await self.records.offsets(list(counts))
        for room in loaded:
            assert room.state is not None
            if totals[room.id] != room.state.viewers:
                message = event("viewers", count=totals[room.id])
                self._enqueue(room, message, protocol.encode(message))
            if offsets[room.id] > room.received_offset:
                await self._catch_up(room, offsets[room.id])

    async def _unsubscribe_quietly(self, room_id: str) -> None:
        try:
            await self.broker.unsubscribe(keys.channel(room_id))
        except (RedisError, OSError) as error:
            log.warning("unsubscribe from %s failed: %s", room_id, error)


def _discard(index: dict[str, set[Viewer]], key: str, viewer: Viewer) -> None:
    sockets = index.get(key)
    if sockets is not None:
        sockets.discard(viewer)
        if not sockets:
            del index[key]


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
