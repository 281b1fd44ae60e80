"""Which server process holds each room's video, and calls to that process from the others, over Redis.

A room's publisher and its viewers' peers live in one process, the room's owner: the process whose
WHIP POST succeeded. It claims the room in Redis (a lease it renews while its relay holds the
room). A process that gets a WHEP POST or a DELETE for a room it does not hold forwards the call
to the owner on the owner's channel and returns the owner's answer; media then flows between the
viewer and the owner directly. So any number of workers or machines can take the HTTP requests.

Contract: at most one process holds a room (SET NX); a lease not renewed for VIDEO_LEASE_MS lapses
(a process that died frees its rooms); a call to a process that is gone fails as host_offline.
When the host's stream ends here (the host left, its media stopped, or this process is shutting
down: the relay ends every peer first), the lease is given up before the room hears `offline`, so
the host's next WHIP offer can be taken at once by any process: the room's video moves there.
A process that died says nothing: once its lease has lapsed, the next WHEP offer for the room,
which the room still calls online, tells the room `offline` (viewers' players retry WHEP while
it is online, so they find out within VIDEO_LEASE_MS and a retry or two).
Calls and replies ride the process's one broker (server.live.broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import keys
from server.config import Settings
from server.errors import Conflict, DomainError, Forbidden, NotFound, Unavailable
from server.live.broker import Broker
from server.store import scripts
from server.tasks import Tasks
from streaming.offers import parse_offer
from streaming.peers import Side
from streaming.relay import Relay, StreamCallback

log = logging.getLogger("livecart.streaming.owners")


class Owners:
    """Claim rooms for this process's relay; forward video calls to the process that holds a room."""

    def __init__(
        self, process_id: str, redis: Redis, broker: Broker, relay: Relay, settings: Settings, on_stream: StreamCallback
    ) -> None:
        self.id = process_id
        self.redis = redis
        self.broker = broker
        self.relay = relay
        self.settings = settings
        self._on_stream = on_stream
        self._lease = scripts.register(redis, __file__, "video_lease")
        self._claimed: set[str] = set()
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.tasks = Tasks("video-owners")

    async def start(self) -> None:
        await self.broker.subscribe(keys.video_calls(self.id), self._receive)
        self.tasks.every(self.settings.video_renew_ms / 1000, self._renew, "renew")

    async def stop(self, timeout: float) -> None:
        await self.tasks.stop(timeout / 2)
        with contextlib.suppress(RedisError, OSError):
            for room_id in list(self._claimed):
                await self._release(room_id)

    async def stream_changed(self, room_id: str, online: bool) -> None:
        """The relay's `on_stream`: a room gone offline here is released first (unless a new publisher already took
        it here), then the room is told."""
        if not online and room_id in self._claimed and not self.relay.holds(room_id):
            with contextlib.suppress(RedisError, OSError):  # then the lease lapses by itself
                await self._release(room_id)
        await self._on_stream(room_id, online)

    async def claim(self, room_id: str) -> bool:
        """Hold the room's video in this process; False when another process holds it."""
        key = keys.video_owner(room_id)
        lease = self.settings.video_lease_ms
        if await self.redis.set(key, self.id, nx=True, px=lease) or await self.redis.get(key) == self.id:
            self._claimed.add(room_id)
            return True
        return False

    async def orphaned(self, room_id: str) -> None:
        """A WHEP offer found no stream for a room that says it is online: when no process holds the room's video
        (its owner died and the lease lapsed), tell the room `offline`."""
        if not self.relay.holds(room_id) and await self.redis.get(keys.video_owner(room_id)) is None:
            log.warning("room %s: its video owner is gone without a word; telling the room 'offline'", room_id)
            await self._on_stream(room_id, False)

    async def owner(self, room_id: str) -> str | None:
        """The process holding the room's video, when it is another one than this."""
        holder = await self.redis.get(keys.video_owner(room_id))
        return None if holder in (None, self.id) else str(holder)

    async def call(self, owner: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a video call on the owner; its reply, or its error raised here as the same DomainError."""
        call_id = secrets.token_hex(8)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = reply
        try:
            message = orjson.dumps({"call": call_id, "from": self.id, **request})
            if not await self.redis.spublish(keys.video_calls(owner), message):
                raise Conflict("the host's stream is gone: wait for the room's next 'online' event", "host_offline")
            answer = await asyncio.wait_for(reply, self.settings.video_call_seconds)
        except TimeoutError:
            raise Unavailable("the server holding this room's video did not answer; try again") from None
        finally:
            self._calls.pop(call_id, None)
        if "error" in answer:
            status, code, text = answer["error"]
            raise DomainError(text, code, status)
        return answer

    async def run(self, room_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a video call ("watch" or "end") on the process that holds the room: this one, or by a call."""
        owner = await self.owner(room_id)
        return await self.serve(request) if owner is None else await self.call(owner, request)

    async def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """A video call, run on this process's relay."""
        if request["op"] == "watch":
            offer = parse_offer(request["offer"], sending=False)
            peer, answer = await self.relay.watch(
                request["room"], request["user"], offer, request.get("sid", ""), request.get("address", "")
            )
            return {"session": peer.id, "answer": answer}
        found = self.relay.find(Side(request["side"]), request["room"], request["session"])
        if found is None:
            raise NotFound("no such session (it may have ended already)")
        if request["user"] != found.user_id and not request["staff"]:
            raise Forbidden("only the session's owner or the merchant's staff may end it")
        await self.relay.end(found, "ended by DELETE")
        return {}

    async def _answer(self, request: dict[str, Any]) -> None:
        try:
            reply = await self.serve(request)
        except DomainError as problem:
            reply = {"error": [problem.status, problem.code, problem.message]}
        except Exception:
            log.exception("video call %s failed", request.get("op"))
            reply = {"error": [500, "internal", "the video call failed on the server holding the room"]}
        with contextlib.suppress(RedisError, OSError):
            await self.redis.spublish(
                keys.video_calls(request["from"]), orjson.dumps({"reply": request["call"], **reply})
            )

    async def _receive(self, raw: str) -> None:
        """A message on this process's video channel: a reply to one of its calls, or a call to run."""
        body = orjson.loads(raw)
        if "reply" in body:
            waiting = self._calls.get(body.pop("reply"))
            if waiting is not None and not waiting.done():
                waiting.set_result(body)
        else:
            self.tasks.spawn(self._answer(body), name="video-call")

    async def _release(self, room_id: str) -> None:
        self._claimed.discard(room_id)
        await self._lease(keys=[keys.video_owner(room_id)], args=[self.id, "release"])

    async def _renew(self) -> None:
        """Renew the lease of every room the relay still holds; give up the others."""
        for room_id in list(self._claimed):
            held = self.relay.holds(room_id)
            try:
                kept = await self._lease(
                    keys=[keys.video_owner(room_id)],
                    args=[self.id, self.settings.video_lease_ms if held else "release"],
                )
            except (RedisError, OSError) as problem:
                log.warning("video lease of room %s not renewed: %s", room_id, problem)
                continue
            if not held or not kept:
                self._claimed.discard(room_id)
