"""A viewer's side of the fan-out: one room connection, and its bounded outbox of batches (no awaiting in the hub)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, cast

from starlette.types import Message, Send
from starlette.websockets import WebSocket

from server.access.tokens import Identity
from server.live import eager
from server.protocol import STAFF, CloseCode, Role
from server.protocol import batch as encode_batch


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
        "address",
        "closing",
        "identity",
        "log_prefix",
        "role",
        "room_id",
        "websocket",
    )

    def __init__(
        self, websocket: WebSocket, send: Send, identity: Identity, role: Role, room_id: str, limit: int, address: str
    ) -> None:
        self.websocket = websocket
        self.address = address
        # the server's ASGI send (a coroutine function): the hot path skips Starlette's per-call checks
        self._send = cast(Callable[[Message], Coroutine[Any, Any, None]], send)
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
