"""A viewer's side of the fan-out: one room connection, and its bounded outbox of batches (no awaiting in the hub)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from server import metrics
from server.access.tokens import Identity
from server.protocol import STAFF, CloseCode, Role
from server.protocol import batch as encode_batch
from server.webserver import RoomSocket, text_frame

log = logging.getLogger("livecart.outbox")


class Batch:
    """One tick's events of one room: the shared frame, and its parts for merging when a viewer lags."""

    __slots__ = ("durable", "frame", "latest")

    def __init__(self, durable: list[str], latest: dict[str, str]) -> None:
        self.durable = durable
        self.latest = latest
        # the WebSocket frame, encoded once and written to every viewer's socket as it is
        self.frame = text_frame(encode_batch(durable + list(latest.values())).encode())


class Viewer:
    """One room connection: who it is, its socket, and its bounded outbox of batches.

    A batch is written to the socket at once while the socket's transport takes writes
    (server.webserver.RoomSocket); while its buffer is over the high mark, batches queue and go out
    merged as one frame when it drains. What waits for the viewer, the queued batches and the
    transport's buffer, is bounded in bytes (OUTBOX_MAX_BYTES); a viewer past it must go.
    """

    __slots__ = (
        "_closing",
        "_held",
        "_limit",
        "_queue",
        "_queued_bytes",
        "address",
        "closing",
        "identity",
        "log_prefix",
        "role",
        "room_id",
        "socket",
    )

    def __init__(
        self, socket: RoomSocket, identity: Identity, role: Role, room_id: str, limit: int, address: str
    ) -> None:
        self.socket = socket
        self.socket.on_writable = self._drain
        self.socket.on_stalled = self._stalled
        self.address = address
        self.identity = identity
        self.role = role  # the identity's role in this room: staff of another merchant are viewers here
        self.room_id = room_id
        self.log_prefix = f"[{room_id}/{identity.user_id}/{secrets.token_hex(2)}]"
        self._queue: list[Batch] = []
        self._queued_bytes = 0
        self._limit = limit
        self._held = True  # until the first frame (snapshot or recovery) is out
        self._closing: asyncio.Task[None] | None = None  # a close sent through ASGI
        self.closing: CloseCode | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    def offer(self, batch: Batch) -> bool:
        """Write or queue a batch without waiting; False when the viewer is past its bound and must go.

        The bound is on what waits for the viewer, in bytes: the queued batches plus what its socket's
        transport still holds.
        """
        if self.closing is not None:
            return True
        if self._held or self._queue or not self.socket.writable.is_set():
            self._queue.append(batch)
            self._queued_bytes += len(batch.frame)
        else:
            self.socket.write(batch.frame)
        return self._queued_bytes + self.socket.buffered() <= self._limit

    def release(self) -> None:
        """The first frame is out: write what queued meanwhile, and from now on write at once."""
        self._held = False
        self._drain()

    def stop(self, code: CloseCode) -> None:
        """Close the connection with this code; send nothing more.

        Too slow: the close frame goes after what the socket holds, at once (its reader may have
        stopped: RoomSocket.close_now). Any other code: through ASGI, after any send under way.
        """
        if self.closing is not None:
            return
        self.closing = code
        self._queue.clear()
        self._queued_bytes = 0
        if code is CloseCode.TOO_SLOW:
            self.socket.close_now(code, code.reason)
        else:
            self._closing = asyncio.ensure_future(self._close(code))

    async def detach(self, timeout: float = 5.0) -> None:
        """The connection is over: let a close under way finish, within `timeout`."""
        self.socket.on_writable = self.socket.on_stalled = None
        task = self._closing
        if task is None:
            return
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()

    def _drain(self) -> None:
        if self._queue and not self._held and self.closing is None and self.socket.writable.is_set():
            batches, self._queue, self._queued_bytes = self._queue, [], 0
            self.socket.write((batches[0] if len(batches) == 1 else _merge(batches)).frame)

    def _stalled(self) -> None:
        """A ping went unanswered for SLOW_VIEWER_MS: the socket closes itself with 4000; the reader ends the rest."""
        log.info("%s closed: stopped reading (a ping unanswered)", self.log_prefix)
        metrics.CLOSED_SLOW.inc()
        self.closing = CloseCode.TOO_SLOW
        self._queue.clear()
        self._queued_bytes = 0

    async def _close(self, code: CloseCode) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self.socket.send({"type": "websocket.close", "code": code, "reason": code.reason})


def _merge(batches: list[Batch]) -> Batch:
    """Several pending batches as one: every durable event in order, latest values coalesced."""
    durable: list[str] = []
    latest: dict[str, str] = {}
    for item in batches:
        durable.extend(item.durable)
        latest.update(item.latest)
    return Batch(durable, latest)
