"""Which server process holds each room's video, and calls to that process from the others, over Redis.

A room's publisher and its viewers' peers live in one process, the room's owner: the process whose
WHIP POST succeeded. It claims the room in Redis (a lease it renews while its relay holds the
room). A process that gets a WHEP POST or a DELETE for a room it does not hold forwards the call
to the owner on the owner's channel and returns the owner's answer; media then flows between the
viewer and the owner directly. So any number of workers or machines can take the HTTP requests.

Contract: at most one process holds a room (SET NX); a lease not renewed for LEASE_MS lapses (a
process that died frees its rooms); a call to a process that is gone fails as host_offline.
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

from server import keys, lua
from server.api import ApiError
from streaming.offers import parse_offer
from streaming.peers import Side
from streaming.relay import Relay

log = logging.getLogger("livecart.streaming.owners")

LEASE_MS = 10_000
RENEW_SECONDS = 1.0
CALL_SECONDS = 20.0


class Owners:
    """Claim rooms for this process's relay; forward video calls to the process that holds a room."""

    def __init__(self, redis: Redis, relay: Relay) -> None:
        self.id = secrets.token_hex(6)
        self.redis = redis
        self.relay = relay
        self._lease = lua.register(redis, "video_release")
        self._claimed: set[str] = set()
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pubsub = redis.pubsub()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._pubsub.subscribe(keys.video_calls(self.id))
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._renew())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            for room_id in list(self._claimed):
                await self._lease(keys=[keys.video_owner(room_id)], args=[self.id, "release"])
        await self._pubsub.aclose()

    async def claim(self, room_id: str) -> bool:
        """Hold the room's video in this process; False when another process holds it."""
        key = keys.video_owner(room_id)
        if await self.redis.set(key, self.id, nx=True, px=LEASE_MS) or await self.redis.get(key) == self.id:
            self._claimed.add(room_id)
            return True
        return False

    async def owner(self, room_id: str) -> str | None:
        """The process holding the room's video, when it is another one than this."""
        holder = await self.redis.get(keys.video_owner(room_id))
        return None if holder in (None, self.id) else str(holder)

    async def call(self, owner: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a video call on the owner; its reply, or its error raised here as the same ApiError."""
        call_id = secrets.token_hex(8)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = reply
        try:
            message = orjson.dumps({"call": call_id, "from": self.id, **request})
            if not await self.redis.publish(keys.video_calls(owner), message):
                raise ApiError(
                    409, "host_offline", "the host's stream is gone: wait for the room's next 'online' event"
                )
            answer = await asyncio.wait_for(reply, CALL_SECONDS)
        except TimeoutError:
            raise ApiError(
                503, "unavailable", "the server holding this room's video did not answer; try again"
            ) from None
        finally:
            self._calls.pop(call_id, None)
        if "error" in answer:
            raise ApiError(*answer["error"])
        return answer

    async def run(self, room_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a video call ("watch" or "end") on the process that holds the room: this one, or by a call."""
        owner = await self.owner(room_id)
        return await self.serve(request) if owner is None else await self.call(owner, request)

    async def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """A video call, run on this process's relay."""
        if request["op"] == "watch":
            offer = parse_offer(request["offer"], sending=False)
            peer, answer = await self.relay.watch(request["room"], request["user"], offer)
            return {"session": peer.id, "answer": answer}
        peer = self.relay.find(Side(request["side"]), request["room"], request["session"])
        if peer is None:
            raise ApiError(404, "not_found", "no such session (it may have ended already)")
        if request["user"] != peer.user_id and not request["staff"]:
            raise ApiError(403, "forbidden", "only the session's owner or the merchant's staff may end it")
        await self.relay.end(peer, "ended by DELETE")
        return {}

    async def _answer(self, request: dict[str, Any]) -> None:
        try:
            reply = await self.serve(request)
        except ApiError as problem:
            reply = {"error": [problem.status, problem.code, problem.message]}
        except Exception:
            log.exception("video call %s failed", request.get("op"))
            reply = {"error": [500, "internal", "the video call failed on the server holding the room"]}
        with contextlib.suppress(RedisError, OSError):
            await self.redis.publish(
                keys.video_calls(request["from"]), orjson.dumps({"reply": request["call"], **reply})
            )

    async def _listen(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as problem:
                log.warning("video calls: pub/sub lost (%s); reconnecting", problem)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            body = orjson.loads(message["data"])
            if "reply" in body:
                waiting = self._calls.get(body.pop("reply"))
                if waiting is not None and not waiting.done():
                    waiting.set_result(body)
            else:
                task = asyncio.create_task(self._answer(body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _renew(self) -> None:
        """Renew the lease of every room the relay still holds; give up the others."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for room_id in list(self._claimed):
                held = self.relay.holds(room_id)
                try:
                    kept = await self._lease(
                        keys=[keys.video_owner(room_id)], args=[self.id, LEASE_MS if held else "release"]
                    )
                except (RedisError, OSError) as problem:
                    log.warning("video lease of room %s not renewed: %s", room_id, problem)
                    continue
                if not held or not kept:
                    self._claimed.discard(room_id)
