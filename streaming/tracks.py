"""The track each viewer's sender reads: the host's encoded packets through a small bounded queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class ForwardTrack(MediaStreamTrack):
    """One viewer's copy of one of the host's tracks: `av.Packet`s, at most `capacity` waiting.

    Policy: the viewer starts at a keyframe (asking for one through `want_keyframe` when its sender
    first reads). A viewer that falls `capacity` packets behind loses everything queued and skips to
    the next keyframe, asking for one: live video jumps ahead, it never queues. Packets that arrive
    before the sender first reads are not kept. Audio packets all count as keyframes.
    """

    def __init__(self, kind: str, capacity: int, want_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self.capacity = capacity
        self.delivered = 0
        self.dropped = 0
        self._want_keyframe = want_keyframe
        self._queue: deque[av.Packet[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reading = False
        self._need_keyframe = True

    def push(self, packet: av.Packet[Any]) -> None:
        """Queue one packet (never blocks); called by the fan-out for every packet of the host's track."""
        if not self._reading or self.readyState != "live":
            return
        if len(self._queue) >= self.capacity:
            self.dropped += len(self._queue)
            self._queue.clear()
            self._need_keyframe = True
            self._want_keyframe()
        if self._need_keyframe:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        self._queue.append(packet)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.Packet[Any]:
        if not self._reading:
            self._reading = True
            self._want_keyframe()
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.delivered += 1
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
