"""Where a room's LL-HLS lives, so that any server process can answer for it: Redis, and the node's broker.

Contract:
- the packager (in the process holding the host's stream) writes each part, the segment it
  completes, and the playlist that lists it in one transaction, then says so on the room's HLS
  channel; a reader that sees a playlist can read every part and segment it names;
- media keys live `MEDIA_TTL_MS` (a player far behind that falls off the window); the playlist
  lives as long after its last update (a stream that stopped without a word ages out);
- `wait(room, msn, part)` returns once the playlist holds that part (or the segment after it),
  or False at the timeout: blocking playlist reload and preload hints, answered by whatever
  process the request reached (at most once delivery: a lost notice costs one timeout).
- packaging starts when somebody asks for a room's HLS (`want`, from any process; the holder polls
  `wanted`) and lasts as long as the stream: a room nobody watches over HLS costs nothing;
- WebRTC viewers are counted per room across processes: each process refreshes its viewers'
  session ids (`VIEWER_TTL_MS`), so a viewer that left stops counting within that time.

Keys share the room's `{hash tag}` (a Redis Cluster keeps them on one node):
`room:{id}:hls` (the playlist record, and the notice channel), `room:{id}:hls:<stream>:<name>`
(init sections, parts, segments), `room:{id}:webrtc` (sorted set: session id -> expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.exceptions import RedisError

from server import keys
from server.live.broker import Broker
from server.tasks import Tasks

log = logging.getLogger("livecart.streaming.hls")

MEDIA_TTL_MS = 60_000
VIEWER_TTL_MS = 3_000
WANTED_MS = 60_000
IDLE_SUBSCRIPTION_SECONDS = 30.0


@dataclass(frozen=True)
class Edge:
    """The newest part a playlist lists: segment `msn`, part `part`; `ended` after EXT-X-ENDLIST."""

    msn: int
    part: int
    ended: bool = False

    def holds(self, msn: int, part: int | None) -> bool:
        """Whether a playlist at this edge answers a blocking reload for (msn, part): it lists that part, or that
        segment whole (part None), or the stream ended."""
        if self.ended or self.msn > msn:
            return True
        return part is not None and self.msn == msn and self.part >= part

    def encode(self) -> str:
        return f"{self.msn} {self.part} {int(self.ended)}"

    @classmethod
    def decode(cls, text: str) -> Edge:
        msn, part, ended = text.split()
        return cls(int(msn), int(part), ended == "1")


class HlsStore:
    """A room's LL-HLS in Redis (see the module contract)."""

    def __init__(self, redis: Redis, broker: Broker) -> None:
        self.redis = redis
        self.broker = broker
        self._waiters: dict[str, set[tuple[int, int | None, asyncio.Future[None]]]] = {}
        self._subscribed: dict[str, float] = {}  # room -> when its last waiter left (0 while it has some)
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._wanted: dict[str, float] = {}  # room -> when this process last said so
        self.tasks = Tasks("hls-store")

    def start(self) -> None:
        self.tasks.every(5.0, self._sweep, "hls-unsubscribe")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout)
        for waiters in self._waiters.values():
            for _, _, future in waiters:
                future.cancel()

    # --- the packager's side ---------------------------------------------------------------

    async def put(
        self,
        room_id: str,
        stream: str,
        media: dict[str, bytes],
        edge: Edge,
        playlist: str,
        keep: Iterable[str] = (),
    ) -> None:
        """Write media (name -> bytes) and the playlist that names it, atomically; then notify waiters. `keep`: media
        names whose expiry is renewed (the init section, while the stream lasts)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, data in media.items():
                pipe.set(keys.hls_media(room_id, stream, name), data, px=MEDIA_TTL_MS)
            for name in keep:
                pipe.pexpire(keys.hls_media(room_id, stream, name), MEDIA_TTL_MS)
            pipe.set(keys.hls_playlist(room_id), edge.encode() + "\n" + playlist, px=MEDIA_TTL_MS)
            pipe.spublish(keys.hls_playlist(room_id), edge.encode())
            await pipe.execute()

    # --- any process's side ------------------------------------------------------------------

    async def playlist(self, room_id: str) -> tuple[Edge, str] | None:
        record = await self.redis.get(keys.hls_playlist(room_id))
        if record is None:
            return None
        head, _, text = str(record).partition("\n")
        return Edge.decode(head), text

    async def media(self, room_id: str, stream: str, name: str) -> bytes | None:
        data = await self.redis.execute_command(  # type: ignore[no-untyped-call]
            "GET", keys.hls_media(room_id, stream, name), **{NEVER_DECODE: True}
        )
        return None if data is None else bytes(data)

    async def wait(self, room_id: str, msn: int, part: int | None, timeout: float) -> bool:
        """Until the room's playlist holds (msn, part): True, or False after `timeout` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (msn, part, future)
        self._waiters.setdefault(room_id, set()).add(waiter)
        try:
            await self._subscribe(room_id)
            found = await self.playlist(room_id)  # after subscribing: a notice sent meanwhile is not missed
            if found is not None and found[0].holds(msn, part):
                return True
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                return False
            return True
        finally:
            waiters = self._waiters.get(room_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(room_id, None)
                self._subscribed[room_id] = time.monotonic()

    async def _subscribe(self, room_id: str) -> None:
        if self._subscribed.get(room_id) is not None:
            self._subscribed[room_id] = 0.0
            return
        task = self._subscribing.get(room_id)
        if task is None:

            async def subscribe() -> None:
                await self.broker.subscribe(keys.hls_playlist(room_id), lambda raw: self._notice(room_id, raw))
                self._subscribed[room_id] = 0.0

            task = self._subscribing[room_id] = asyncio.ensure_future(subscribe())
            task.add_done_callback(lambda _: self._subscribing.pop(room_id, None))
        await asyncio.shield(task)

    async def _notice(self, room_id: str, raw: str) -> None:
        edge = Edge.decode(raw)
        for msn, part, future in list(self._waiters.get(room_id, ())):
            if edge.holds(msn, part) and not future.done():
                future.set_result(None)

    async def _sweep(self) -> None:
        """Leave the channels of rooms nobody here has waited on for a while."""
        now = time.monotonic()
        for room_id, since in list(self._subscribed.items()):
            if since and now - since > IDLE_SUBSCRIPTION_SECONDS and room_id not in self._waiters:
                del self._subscribed[room_id]
                with contextlib.suppress(RedisError, OSError):
                    await self.broker.unsubscribe(keys.hls_playlist(room_id))

    async def want(self, room_id: str) -> None:
        """A request for the room's HLS: keep it packaged for WANTED_MS more (written at most once a second here)."""
        now = time.monotonic()
        if now - self._wanted.get(room_id, -math.inf) < 1.0:
            return
        self._wanted[room_id] = now
        if len(self._wanted) > 10_000:
            self._wanted.clear()
        await self.redis.set(keys.hls_wanted(room_id), "1", px=WANTED_MS)

    async def wanted(self, room_ids: list[str]) -> list[str]:
        """Which of these rooms somebody asked HLS of lately."""
        if not room_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id in room_ids:
                pipe.exists(keys.hls_wanted(room_id))
            found = await pipe.execute()
        return [room_id for room_id, exists in zip(room_ids, found, strict=True) if exists]

    # --- WebRTC viewers per room, across processes -------------------------------------------

    async def count_viewers(self, room_id: str) -> int:
        key = keys.webrtc_viewers(room_id)
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
            _, count = await pipe.execute()
        return int(count)

    async def add_viewers(self, viewers: dict[str, list[str]]) -> None:
        """These viewer sessions (room -> session ids) are watching over WebRTC now."""
        expiry = int(time.time() * 1000) + VIEWER_TTL_MS
        async with self.redis.pipeline(transaction=False) as pipe:
            for room_id, sessions in viewers.items():
                if sessions:
                    pipe.zadd(keys.webrtc_viewers(room_id), dict.fromkeys(sessions, expiry))
                    pipe.pexpire(keys.webrtc_viewers(room_id), VIEWER_TTL_MS * 2)
            await pipe.execute()
