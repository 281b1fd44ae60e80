"""The hub: this process's rooms and viewers, and the tick that fans each room's events out to them.

Events reach the hub from the broker (every process gets every event of its rooms). A room
flushes at most once per tick (TICK_MS): it applies what arrived to its state, builds one frame
for all of it, encodes it once and offers it to every viewer, which sends it at once or, when its
socket is full, keeps it in a bounded outbox. Nothing waits for a slow viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Send
from starlette.websockets import WebSocket

from server import eager, metrics
from server.auth import Identity
from server.broker import Broker
from server.config import Settings
from server.history import History, UnknownRoom
from server.presence import Presence
from server.protocol import STAFF, CloseCode, Role, coalesce_key, event, now_ms
from server.protocol import batch as encode_batch
from server.room import RoomState

log = logging.getLogger("livecart.hub")


class Batch:
    """One tick's events of one room: the shared frame, and its parts for merging when a viewer lags."""

    __slots__ = ("durable", "latest", "message")

    def __init__(self, durable: list[str], latest: dict[str, str]) -> None:
        self.durable = durable
        self.latest = latest
        # the ASGI send message, built once and handed to every viewer's socket
        self.message = {"type": "websocket.send", "text": encode_batch(durable + list(latest.values()))}


class Viewer:
    """One room connection: who it is, its socket, and its bounded outbox of batches.

    A batch is sent at once when the socket can take it (see server.eager); while a send waits on
    a full socket buffer, newer batches queue and go out merged as one frame when it is done.
    """

    __slots__ = (
        "_held",
        "_limit",
        "_queue",
        "_queued_events",
        "_send",
        "_sending",
        "closing",
        "identity",
        "log_prefix",
        "role",
        "room_id",
        "websocket",
    )

    def __init__(
        self, websocket: WebSocket, send: Send, identity: Identity, role: Role, room_id: str, limit: int
    ) -> None:
        self.websocket = websocket
        self._send = send  # the server's ASGI send: the hot path skips Starlette's per-call checks
        self.identity = identity
        self.role = role  # the identity's role in this room: staff of another merchant are viewers here
        self.room_id = room_id
        self.log_prefix = f"[{room_id}/{identity.user_id}/{secrets.token_hex(2)}]"
        self._queue: list[Batch] = []
        self._queued_events = 0
        self._limit = limit
        self._held = True  # until the first frame (snapshot or recovery) is out
        self._sending: asyncio.Task[None] | None = None  # a send or close waiting on the socket
        self.closing: CloseCode | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    def offer(self, batch: Batch) -> bool:
        """Send or queue a batch without waiting; False when the viewer is past its bound and must go.

        The bound is on the backlog: events still unsent from earlier ticks plus this one. A viewer
        that took everything since the last tick is never refused, however large the batch.
        """
        if self.closing is not None:
            return True
        if not (self._held or self._sending is not None or self._queue):
            self._write(batch)
            return True
        behind = bool(self._queue)
        self._queue.append(batch)
        self._queued_events += len(batch.durable)
        return not (behind and self._queued_events > self._limit)

    def release(self) -> None:
        """The first frame is out: send what queued meanwhile, and from now on send at once."""
        self._held = False
        self._drain()

    def stop(self, code: CloseCode) -> None:
        """Close the connection with this code once any send under way is done; send nothing more."""
        if self.closing is not None:
            return
        self.closing = code
        self._queue.clear()
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._close())

    async def detach(self, timeout: float = 5.0) -> None:
        """The connection is over: let a close under way finish, abandon a send."""
        task = self._sending
        if task is None:
            return
        if self.closing is None:
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()

    def _drain(self) -> None:
        if self._queue and self._sending is None and not self._held and self.closing is None:
            batches, self._queue, self._queued_events = self._queue, [], 0
            self._write(batches[0] if len(batches) == 1 else _merge(batches))

    def _write(self, batch: Batch) -> None:
        try:
            pending = eager.start(self._send(batch.message))
        except (OSError, RuntimeError):  # the client is gone; its reader ends the connection
            self.closing = CloseCode.NORMAL
            return
        if pending is not None:
            self._sending = pending
            pending.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending = None
        if task.cancelled() or task.exception() is not None:
            self.closing = self.closing or CloseCode.NORMAL
            return
        if self.closing is not None:
            self._sending = asyncio.ensure_future(self._close())
        else:
            self._drain()

    async def _close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self.websocket.close(self.closing or CloseCode.NORMAL, (self.closing or CloseCode.NORMAL).reason)


def _merge(batches: list[Batch]) -> Batch:
    """Several pending batches as one: every durable event in order, latest values coalesced."""
    durable: list[str] = []
    latest: dict[str, str] = {}
    for item in batches:
        durable.extend(item.durable)
        latest.update(item.latest)
    return Batch(durable, latest)


class LocalRoom:
    """A room with viewers on this process: its state, viewers and the events waiting for the next tick."""

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.state: RoomState | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.viewers: set[Viewer] = set()
        self.incoming: list[tuple[dict[str, Any], str]] = []
        self.received_offset = 0
        self.likes_pending = 0
        self.last_flush = 0.0  # loop time of the last frame sent to the room's viewers
        self.flush_timer: asyncio.TimerHandle | None = None
        self.empty_since: float | None = None
        self.catch_up = asyncio.Lock()
        self._snapshot: str | None = None

    def receive(self, message: dict[str, Any], raw: str) -> None:
        """Queue an event for the next frame (the hub schedules that frame)."""
        self.incoming.append((message, raw))
        if "offset" in message:
            self.received_offset = max(self.received_offset, message["offset"])

    def snapshot_frame(self) -> str:
        """The snapshot a joining viewer gets, encoded once until the room changes."""
        assert self.state is not None
        if self._snapshot is None:
            body = {"type": "snapshot", "ts": now_ms(), "recovered": False, **self.state.snapshot()}
            self._snapshot = orjson.dumps(body).decode()
        return self._snapshot

    def flush(self) -> tuple[Batch, list[Viewer]] | None:
        """Apply what arrived since the last tick; offer it to every viewer as one batch.

        Returns the batch and the viewers that fell past their bound, or None when nothing arrived.
        """
        if not self.incoming or self.state is None:
            return None
        incoming, self.incoming = self.incoming, []
        durable: list[str] = []
        latest: dict[str, str] = {}
        for message, raw in incoming:
            offset = message.get("offset")
            if offset is not None:
                if offset <= self.state.offset:
                    continue  # already in the state (loaded after it was published)
                durable.append(raw)
            else:
                key = coalesce_key(message)
                if key is None:
                    continue
                latest[key] = raw
            self.state.apply(message)
        if not durable and not latest:
            return None
        self._snapshot = None
        batch = Batch(durable, latest)
        lagging = [viewer for viewer in self.viewers if not viewer.offer(batch)]
        metrics.FRAMES_OUT.inc(len(self.viewers))
        return batch, lagging


class Hub:
    """This process's rooms: join and leave, the tick, presence and catching up on missed events."""

    def __init__(self, settings: Settings, history: History, presence: Presence, pubsub_redis: Redis) -> None:
        self.settings = settings
        self.history = history
        self.presence = presence
        self.broker = Broker(pubsub_redis, self.deliver)
        self.rooms: dict[str, LocalRoom] = {}
        self.process_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._presence_loop(), name="hub-presence")]

    async def stop(self) -> None:
        for room in self.rooms.values():
            if room.flush_timer is not None:
                room.flush_timer.cancel()
        for task in self._tasks + list(self._background):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        for room in self.rooms.values():
            for viewer in room.viewers:
                viewer.stop(CloseCode.SERVER_RESTARTING)
        with contextlib.suppress(RedisError):
            await self.presence.clear(self.process_id, list(self.rooms))
        await self.broker.stop()

    # --- joining and leaving ---------------------------------------------------------

    async def open_room(self, room_id: str) -> LocalRoom:
        """This process's copy of the room, subscribing and loading it if it is new here."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = LocalRoom(room_id)
            metrics.ROOMS.inc()
            try:
                await self.broker.subscribe(room_id)
                fields, recent = await self.history.load(room_id, self.settings.history_size)
                if not fields:
                    raise UnknownRoom(room_id)
                room.state = RoomState.load(fields, recent, self.settings.chat_recent)
                room.received_offset = max(room.received_offset, room.state.offset)
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
        """Register a viewer; return the snapshot and the offset it starts from (no await inside)."""
        assert room.state is not None
        room.viewers.add(viewer)
        room.empty_since = None
        metrics.CONNECTIONS.inc()
        return room.snapshot_frame(), room.state.offset

    def remove(self, viewer: Viewer) -> None:
        room = self.rooms.get(viewer.room_id)
        if room is not None and viewer in room.viewers:
            room.viewers.discard(viewer)
            metrics.CONNECTIONS.dec()
            if not room.viewers:
                room.empty_since = time.monotonic()

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
        return '{"type":"recovered","ts":%d,"offset":%d,"epoch":%s,"viewers":%d,"likes":%d,"events":[%s]}' % (
            now_ms(),
            until,
            orjson.dumps(epoch).decode(),
            room.state.viewers,
            room.state.likes,
            ",".join(missed),
        )

    # --- events from the broker --------------------------------------------------------

    async def deliver(self, room_id: str, raw: str) -> None:
        """One message from the broker, in publish order."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        message = orjson.loads(raw)
        metrics.EVENTS_PUBLISHED.inc()
        offset = message.get("offset")
        if offset is not None and room.state is not None and offset > room.received_offset + 1:
            await self._catch_up(room, offset - 1)  # a message was lost: read the gap from the history
        if offset is None or offset > room.received_offset:
            self._enqueue(room, message, raw)

    async def _catch_up(self, room: LocalRoom, until: int) -> None:
        async with room.catch_up:
            after = room.received_offset
            if until <= after:
                return
            missed = await self.history.between(room.id, after, until)
            if missed is None:  # older than the history keeps: start the room over from Redis
                log.warning("room %s missed events %d..%d beyond its history; reloading", room.id, after + 1, until)
                fields, recent = await self.history.load(room.id, self.settings.history_size)
                if fields:
                    room.state = RoomState.load(fields, recent, self.settings.chat_recent)
                    room.received_offset = room.state.offset
                    for viewer in list(room.viewers):
                        viewer.stop(CloseCode.TOO_SLOW)  # they reconnect and get a fresh snapshot
                return
            log.info("room %s caught up on events %d..%d", room.id, after + 1, until)
            for raw in missed:
                self._enqueue(room, orjson.loads(raw), raw)

    # --- the tick: at most one frame per room per TICK_MS ----------------------------------

    def _enqueue(self, room: LocalRoom, message: dict[str, Any], raw: str) -> None:
        room.receive(message, raw)
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
                self._drop_lagging(room, viewer)
        if room.likes_pending:
            self._spawn(self._publish_likes(room.id, room.likes_pending))
            room.likes_pending = 0

    def _drop_lagging(self, room: LocalRoom, viewer: Viewer) -> None:
        log.info("%s closed: could not keep up", viewer.log_prefix)
        metrics.CLOSED_SLOW.inc()
        self.remove(viewer)
        viewer.stop(CloseCode.TOO_SLOW)

    async def _publish_likes(self, room_id: str, count: int) -> None:
        try:
            total = await self.presence.add_likes(room_id, count)
            await self.history.publish_latest(room_id, event("likes", total=total))
        except RedisError as error:
            log.warning("room %s: %d likes not published: %s", room_id, count, error)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- presence, catching up, unloading -----------------------------------------------

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.refresh()
            except RedisError as error:
                log.warning("presence refresh failed: %s", error)
            except Exception:
                log.exception("presence refresh failed")

    async def refresh(self) -> None:
        """Publish local viewer counts, read the totals, catch up rooms that missed events, unload idle rooms."""
        now = time.monotonic()
        idle = [room for room in self.rooms.values() if room.empty_since is not None and now - room.empty_since > 10]
        for room in idle:
            del self.rooms[room.id]
            metrics.ROOMS.dec()
        for room in idle:
            await self._unsubscribe_quietly(room.id)
            if room.id in self.rooms:  # a viewer came back meanwhile: its subscribe may have gone first
                await self.broker.subscribe(room.id)
        if idle:
            await self.presence.clear(self.process_id, [room.id for room in idle])
        loaded = [room for room in self.rooms.values() if room.state is not None]
        if not loaded:
            return
        counts = {room.id: len(room.viewers) for room in loaded}
        totals, offsets = await self.presence.refresh(self.process_id, counts)
        for room in loaded:
            assert room.state is not None
            if totals[room.id] != room.state.viewers:
                message = event("viewers", count=totals[room.id])
                self._enqueue(room, message, orjson.dumps(message).decode())
            if offsets[room.id] > room.received_offset:
                await self._catch_up(room, offsets[room.id])

    async def _unsubscribe_quietly(self, room_id: str) -> None:
        try:
            await self.broker.unsubscribe(room_id)
        except RedisError as error:
            log.warning("unsubscribe from %s failed: %s", room_id, error)
