"""The hub: this process's rooms and viewers, and the tick that fans each room's events out to them.

Events reach the hub from the broker (every process gets every event of its rooms, and every personal event:
those go to their person's or merchant staff's sockets here at once, whatever the room). A room
flushes at most once per tick: it applies what arrived to its state, builds one frame for all of
it, encodes it once and offers it to every viewer (server.live.outbox), which sends it at once or,
when its socket is full, keeps it in a bounded outbox. Nothing waits for a slow viewer. A big room's
viewers are offered the frame FAN_OUT_SLICE at a time, the process's other work (commands, Redis
replies) let in between, so a command never waits behind a whole fan-out.

A room's tick starts at TICK_MS and widens (up to TICK_MAX_MS) while its flushes do not fit in it,
fewer and larger frames, then narrows again (server.live.pacing.Tick). When viewers chat faster than
CHAT_SHOWN_PER_SECOND, the room's non-staff viewers get a second frame with a sample of that chat
(pacing.ChatSample); staff get everything, and a chatter left out of the sample gets their own message.
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
from server.errors import STORE_ERRORS, DomainError
from server.live.broker import Broker
from server.live.history import History
from server.live.outbox import Batch, Viewer
from server.live.pacing import ChatSample, Tick
from server.live.replay import Replay
from server.protocol import STAFF, CloseCode, coalesce_key, event
from server.rooms.presence import Presence
from server.rooms.record import RoomRecords, UnknownRoom
from server.rooms.state import RoomState
from server.tasks import Tasks

log = logging.getLogger("livecart.hub")

FAN_OUT_SLICE = 1000  # viewers offered a frame in one go (a few ms): between slices the process reads its sockets

Loader = Callable[[str], Awaitable[RoomState | None]]


class TooManyConnections(DomainError):
    """This user or address already holds as many room sockets on this process as it may."""


class LocalRoom:
    """A room with viewers on this process: its state, viewers and the events waiting for the next tick."""

    def __init__(self, room_id: str, tick: Tick, chat_sample: ChatSample) -> None:
        self.id = room_id
        self.tick = tick
        self.chat_sample = chat_sample
        self.state: RoomState | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.viewers: set[Viewer] = set()
        self.users: dict[str, set[Viewer]] = {}  # user id -> sockets: the room's viewers are people, not sockets
        self.incoming: list[tuple[dict[str, Any], str, int]] = []  # (event, as clients see it, offset or 0)
        self.received_offset = 0
        self.likes_pending = 0
        self.last_flush = 0.0  # loop time of the last frame sent to the room's viewers
        self.flush_timer: asyncio.TimerHandle | None = None
        self.fanning: asyncio.Handle | None = None  # the next slice of a fan-out under way (Hub._fan_out)
        self.flush_due = 0.0  # loop time the flush timer is set for
        self.shown_offset = 0  # the last durable event the room's viewers were shown (the sample may leave out chat)
        self.empty_since: float | None = None
        self.catch_up = asyncio.Lock()
        self.replay: Replay | None = None  # what returning viewers missed, read once for all (server.live.replay)
        self._snapshot: str | None = None

    def audience(self) -> int:
        """The people watching: not the staff of the room's merchant (the host is not a viewer)."""
        assert self.state is not None
        merchant_id = self.state.merchant_id
        return sum(1 for sockets in self.users.values() if merchant_id not in next(iter(sockets)).identity.roles)

    def reset(self, state: RoomState) -> None:
        """The room's state read afresh (it started over): its replay and its cached snapshot no longer count."""
        self.state = state
        self.received_offset = self.shown_offset = state.offset
        self.replay = None
        self._snapshot = None

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

    def flush(self, now: float) -> tuple[Batch, Batch, list[tuple[str, str]]] | None:
        """Apply what arrived since the last tick; the batches for its viewers: all of it (for staff), and what the
        others are shown, with the viewers' chat sampled when it runs faster than the room shows (`chat_sample`; the
        same batch when nothing was left out). None when nothing arrived.

        Also returns the chat messages left out of the sample, as (author's user id, the message without its
        offset): the hub hands each to its author's sockets.
        """
        if not self.incoming or self.state is None:
            return None
        incoming, self.incoming = self.incoming, []
        durable: list[str] = []
        offsets: list[int] = []
        chat: list[tuple[int, dict[str, Any]]] = []  # viewers' chat messages (those a sample may leave out), by index
        latest: dict[str, tuple[int, str]] = {}  # key -> (version, event): the newest version wins
        for message, raw, offset in incoming:
            if offset:
                if offset <= self.state.offset:
                    continue  # already in the state (loaded after it was published)
                if message["type"] == "chat.message" and message["message"].get("role") not in STAFF:
                    chat.append((len(durable), message))
                durable.append(raw)
                offsets.append(offset)
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
        values = {key: raw for key, (_, raw) in latest.items()}
        kept = {chat[index][0] for index in self.chat_sample.shown(len(chat), now)}
        left_out = {index: message for index, message in chat if index not in kept}
        sampled: list[str] = []  # what the viewers are shown: `after` where chat was left out before an event
        for index, raw in enumerate(durable):
            if index not in left_out:
                after, self.shown_offset = self.shown_offset, offsets[index]
                sampled.append(raw if self.shown_offset == after + 1 else protocol.with_after(after, raw))
        everything = Batch(durable, values)
        shown = everything if sampled == durable else Batch(sampled, values)  # nothing left out: one batch for all
        return (
            everything,
            shown,
            [(message["message"].get("user_id", ""), protocol.encode(message)) for message in left_out.values()],
        )


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
            for handle in (room.flush_timer, room.fanning):
                if handle is not None:
                    handle.cancel()
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
            loop = asyncio.get_running_loop()
            tick = Tick(self.settings.tick_ms / 1000, self.settings.tick_max_ms / 1000)
            room = self.rooms[room_id] = LocalRoom(
                room_id, tick, ChatSample(self.settings.chat_shown_per_second, loop.time())
            )
            metrics.ROOMS.inc()
            try:
                await self.broker.subscribe(keys.channel(room_id), partial(self.deliver, room_id))
                state = await self.load(room_id)
                if state is None:
                    raise UnknownRoom(room_id)
                room.state = state
                room.received_offset = max(room.received_offset, state.offset)
                room.shown_offset = state.offset
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
        """The frame with what a returning viewer missed, or None when only a fresh snapshot will do. The room's
        returning viewers share its replay (server.live.replay): one history read and one encoding for all alike."""
        assert room.state is not None
        if epoch != room.state.epoch or since > until:
            return None
        if room.replay is None or room.replay.epoch != epoch:
            room.replay = Replay(self.history, room.id, epoch, self.settings.history_size)
        try:
            missed = await room.replay.missed(since, until)
        except STORE_ERRORS:
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
        if user_id in room.users:
            self._offer_to_user(room, user_id, Batch([], {coalesce_key(orjson.loads(encoded)) or "private": encoded}))

    def _offer_to_user(self, room: LocalRoom, user_id: str, batch: Batch) -> None:
        """A batch of the user's own to their sockets in the room."""
        for viewer in [viewer for viewer in room.users.get(user_id, ()) if not viewer.offer(batch)]:
            self._drop_lagging(viewer)

    async def _catch_up(self, room: LocalRoom, until: int) -> None:
        async with room.catch_up:
            after = room.received_offset
            if until <= after:
                return
            missed = await self.history.between(room.id, after, until)
            if missed is None:  # older than the history keeps: start the room over from Redis
                log.warning("room %s missed events %d..%d beyond its history; reloading", room.id, after + 1, until)
                await self._reload(room, CloseCode.TOO_SLOW)
                return
            log.info("room %s caught up on events %d..%d", room.id, after + 1, until)
            for raw in missed:
                message = orjson.loads(raw)
                self._enqueue(room, message, raw, message["offset"])

    async def _start_over(self, room: LocalRoom) -> None:
        """The room's record went back (Redis lost its newest writes: a failover to a replica that lacked them), so
        its next offsets name other events than those its viewers have: a new epoch, the room reloaded, its viewers
        told to come back (1012); returning with the old epoch, they get a fresh snapshot."""
        assert room.state is not None
        log.warning("room %s went back below offset %d (Redis lost writes); starting it over", room.id,
                    room.received_offset)  # fmt: skip
        await self.records.start_over(room.id, room.received_offset, room.state.epoch)
        await self._reload(room, CloseCode.SERVER_RESTARTING)

    async def _reload(self, room: LocalRoom, code: CloseCode) -> None:
        """The room's state read afresh from Redis; its viewers closed with `code` (they come back for a snapshot)."""
        state = await self.load(room.id)
        if state is None:
            return
        room.reset(state)
        for viewer in list(room.viewers):
            viewer.stop(code)

    # --- the tick: at most one frame per room per TICK_MS ----------------------------------

    def _enqueue(self, room: LocalRoom, message: dict[str, Any], raw: str, offset: int = 0) -> None:
        room.receive(message, raw, offset)
        self._schedule(room)

    def like(self, room: LocalRoom, count: int) -> None:
        room.likes_pending += count
        self._schedule(room)

    def _schedule(self, room: LocalRoom) -> None:
        """Flush the room now if its last frame is a tick old, else once it is: a quiet room's event
        goes out at once, a busy room's events travel together, one frame per tick. Not while a fan-out is under
        way: its end schedules the next."""
        if room.flush_timer is not None or room.fanning is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(room.last_flush + room.tick.width - loop.time(), 0.0)
        room.flush_due = loop.time() + delay
        room.flush_timer = loop.call_later(delay, self._flush, room)

    def _flush(self, room: LocalRoom) -> None:
        """Build the room's frames from its pending events and start their fan-out; hand chatters their messages
        left out of the sample; send likes on."""
        started = time.perf_counter()
        room.flush_timer = None
        room.last_flush = now = asyncio.get_running_loop().time()
        lag = now - room.flush_due
        try:
            flushed = room.flush(now)
        except Exception:
            log.exception("room %s: flush failed", room.id)
            return
        if room.likes_pending:
            self.tasks.spawn(self._publish_likes(room.id, room.likes_pending))
            room.likes_pending = 0
        if flushed is None:
            return
        everything, shown, left_out = flushed
        for user_id, encoded in left_out:
            self._offer_to_user(room, user_id, Batch([encoded], {}))
        metrics.FRAMES_OUT.inc(len(room.viewers))
        self._fan_out(room, list(room.viewers), everything, shown, 0, time.perf_counter() - started, lag)

    def _fan_out(
        self,
        room: LocalRoom,
        viewers: list[Viewer],
        everything: Batch,
        shown: Batch,
        start: int,
        busy: float,
        lag: float,
    ) -> None:
        """Offer a flush's batches to its viewers FAN_OUT_SLICE at a time, the process's other work (commands,
        Redis replies, other rooms) let in between; close viewers that fell behind. At the end, the time the
        fan-out took (its slices' together) and the flush's lag set the room's next tick."""
        started = time.perf_counter()
        end = start + FAN_OUT_SLICE
        for viewer in viewers[start:end]:
            if not viewer.offer(everything if viewer.is_staff else shown):
                self._drop_lagging(viewer)
        busy += time.perf_counter() - started
        if end < len(viewers):
            room.fanning = asyncio.get_running_loop().call_soon(
                self._fan_out, room, viewers, everything, shown, end, busy, lag
            )
            return
        room.fanning = None
        width = room.tick.width
        room.tick.observe(busy, lag)
        metrics.TICK_LAG.observe(lag)
        if room.tick.width != width:
            log.info("room %s: tick %.0f ms (was %.0f ms)", room.id, room.tick.width * 1000, width * 1000)
        if room.incoming or room.likes_pending:
            self._schedule(room)

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
        unload idle rooms, note the widest tick."""
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
        metrics.TICK_WIDEST.set(max((room.tick.width for room in self.rooms.values()), default=0.0))
        loaded = [room for room in self.rooms.values() if room.state is not None]
        if not loaded:
            return
        counts = {room.id: room.audience() for room in loaded}
        seen = {room.id: room.received_offset for room in loaded}  # before the read: events keep coming meanwhile
        totals = await self.presence.refresh(self.process_id, counts)
        offsets = await self.records.offsets(list(counts))
        for room in loaded:
            assert room.state is not None
            if totals[room.id] != room.state.viewers:
                message = event("viewers", count=totals[room.id])
                self._enqueue(room, message, protocol.encode(message))
            if offsets[room.id] < seen[room.id]:
                await self._start_over(room)
            elif offsets[room.id] > room.received_offset:
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
