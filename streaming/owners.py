"""Which server process holds each room's host stream, and calls between processes over Redis.

A room's publisher lives in one process, the room's owner: the process whose WHIP POST succeeded.
It claims the room in Redis (a lease it renews while its relay holds the room). Viewers are served
by whichever process their WHEP POST reaches: a process without the host pipes the room's media
from the owner once (streaming.cascade; the pipe's offer rides a "pipe" call to the owner) and
serves all its viewers of the room from that copy. A session lives where it was created, and its id
names that process (`<process id>.<token>`): a DELETE (or PATCH) reaching another process is run
there by a call (`run_session`). So any number of workers or machines can take the HTTP requests,
and a room's viewers spread over all of them.

Contract: at most one process holds a room (SET NX); a lease not renewed for VIDEO_LEASE_MS lapses
(a process that died frees its rooms); a call to a process that is gone fails as host_offline
(a pipe) or not_found (a session).
When the host's stream ends here (the host left, its media stopped, or this process is shutting
down: the relay ends every peer first, pipes to other processes included, which end their
viewers), the lease is given up before the room hears `offline`, so the host's next WHIP offer can
be taken at once by any process: the room's video moves there.
A process that died says nothing: once its lease has lapsed, the next WHEP offer for the room,
which the room still calls online, tells the room `offline` (viewers' players retry WHEP while
it is online, so they find out within VIDEO_LEASE_MS and a retry or two).
Calls and replies ride the process's one broker (server.live.broker). `serve` runs a call by its
"op" from `ops`: "pipe", "end", "patch" (trickle ICE, ICE restart: streaming.ice_restart), and whatever another
module adds with `handle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import keys
from server.config import Settings
from server.errors import BadRequest, Conflict, DomainError, Forbidden, NotFound, Unavailable
from server.live.broker import Broker
from server.store import scripts
from server.tasks import Tasks
from streaming import ice_restart
from streaming.offers import parse_offer
from streaming.peers import Peer, Side
from streaming.relay import Relay, StreamCallback

log = logging.getLogger("livecart.streaming.owners")

Op = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_PROCESS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Owners:
    """Claim rooms for this process's relay; run video calls on the process that holds a room or a session."""

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
        self.ops: dict[str, Op] = {"pipe": self._pipe, "end": self._end, "patch": self._patch}

    def handle(self, op: str, run: Op) -> None:
        """Run calls of this op with `run(request) -> reply` (raising DomainErrors), on the process holding the
        session (`run_session`) or the room."""
        self.ops[op] = run

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

    async def call(self, owner: str, request: dict[str, Any], gone: DomainError | None = None) -> dict[str, Any]:
        """Run a video call on another process; its reply, or its error raised here as the same DomainError.
        `gone`: the error when that process is not there (default: the host's stream is gone)."""
        call_id = secrets.token_hex(8)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = reply
        try:
            message = orjson.dumps({"call": call_id, "from": self.id, **request})
            if not await self.redis.spublish(keys.video_calls(owner), message):
                raise gone or Conflict(
                    "the host's stream is gone: wait for the room's next 'online' event", "host_offline"
                )
            answer = await asyncio.wait_for(reply, self.settings.video_call_seconds)
        except TimeoutError:
            raise Unavailable("the server holding this room's video did not answer; try again") from None
        finally:
            self._calls.pop(call_id, None)
        if "error" in answer:
            status, code, text = answer["error"]
            raise DomainError(text, code, status)
        return answer

    async def upstream(self, room_id: str, offer: str) -> str:
        """The relay's `upstream` (streaming.cascade): a pipe's offer for a room, answered by the process holding
        its host; Conflict (host_offline) when none does."""
        owner = await self.owner(room_id)
        if owner is None:  # nobody, or this process (whose relay would have the host's broadcast if it were live)
            raise Conflict("the host is not streaming: wait for the room's stream.state 'online' event", "host_offline")
        reply = await self.call(owner, {"op": "pipe", "room": room_id, "offer": offer})
        return str(reply["answer"])

    async def run_session(self, session_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a call about one session (its id in `request["session"]`: "end", "patch") on the process holding it,
        which the id names: this one, or by a call; NotFound when that process is not there."""
        process, dot, _ = session_id.rpartition(".")
        if not dot or process == self.id:
            return await self.serve(request)
        if not _PROCESS_ID.fullmatch(process):
            raise NotFound("no such session (it may have ended already)")
        return await self.call(process, request, NotFound("no such session (its server is gone)"))

    async def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """A video call, run on this process's relay (by its op: see `ops`)."""
        op = self.ops.get(str(request.get("op")))
        if op is None:
            raise BadRequest(f"no video call {request.get('op')!r}")
        return await op(request)

    def session(self, request: dict[str, Any]) -> Peer:
        """The session a call names ("side", "room", "session"), if the caller ("user", "staff") may act on it:
        its owner or the merchant's staff. NotFound, Forbidden."""
        found = self.relay.find(Side(request["side"]), request["room"], request["session"])
        if found is None:
            raise NotFound("no such session (it may have ended already)")
        if request["user"] != found.user_id and not request["staff"]:
            raise Forbidden("only the session's owner or the merchant's staff may end or change it")
        return found

    async def _pipe(self, request: dict[str, Any]) -> dict[str, Any]:
        offer = parse_offer(request["offer"], sending=False)
        peer, answer = await self.relay.feed(request["room"], offer)
        return {"session": peer.id, "answer": answer}

    async def _end(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.relay.end(self.session(request), "ended by DELETE")
        return {}

    async def _patch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Trickle ICE or an ICE restart for a session (streaming.ice_restart): its ETag, and the server's fragment
        after a restart."""
        fragment = ice_restart.parse_fragment(request["fragment"])
        patched = await ice_restart.patch(self.session(request).pc, fragment, request.get("if_match"))
        return {"etag": patched.etag, "fragment": patched.fragment}

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
