"""Fan-out: one of the host's pass-through tracks copied to every viewer, and keyframe requests to the host.

Data flow: host's RTCRtpReceiver (pass-through) -> its track -> `Fanout.run` -> each viewer's
`ForwardTrack.push` -> that viewer's RTCRtpSender, which only packetizes and encrypts.
Viewers' keyframe requests (on join, after a drop, or an RTCP PLI/FIR from the viewer) go to
`KeyframeRequests`, which sends the host at most one PLI per interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCRtpCodecParameters
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming.tracks import ForwardTrack

log = logging.getLogger("livecart.streaming")


class KeyframeRequests:
    """Asks the host for a keyframe at most once per `interval` seconds.

    A request inside the interval is not lost: one PLI goes out when the interval ends, unless a
    keyframe arrived in the meantime (which satisfies every request made before it).
    """

    def __init__(self, send: Callable[[], Awaitable[None]], interval: float) -> None:
        self.sent = 0
        self._send = send
        self._interval = interval
        self._last = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last + self._interval - loop.time()
        if delay <= 0:
            self._fire()
        else:
            self._timer = loop.call_later(delay, self._fire)

    def keyframe_arrived(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.keyframe_arrived()
        for task in self._inflight:
            task.cancel()

    def _fire(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        self.sent += 1
        task = asyncio.ensure_future(self._send())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)


def _no_keyframes() -> None:
    """Audio needs no keyframes: every Opus packet decodes on its own."""


class Fanout:
    """Reads one of the host's pass-through tracks and pushes each packet to every subscribed viewer track."""

    def __init__(
        self,
        source: MediaStreamTrack,
        codec: RTCRtpCodecParameters,
        capacity: int,
        keyframes: KeyframeRequests | None,
        on_packet: Callable[[], None],
    ) -> None:
        self.kind = source.kind
        self.codec = codec
        self.keyframes = keyframes
        self.packets = 0
        self._source = source
        self._capacity = capacity
        self._on_packet = on_packet
        self._viewers: set[ForwardTrack] = set()

    def subscribe(self) -> ForwardTrack:
        """A new viewer track; it receives packets from the first keyframe after its sender starts reading."""
        want = self.keyframes.request if self.keyframes is not None else _no_keyframes
        track = ForwardTrack(self.kind, self._capacity, want)
        self._viewers.add(track)
        return track

    def unsubscribe(self, track: ForwardTrack) -> None:
        self._viewers.discard(track)
        track.stop()

    async def run(self) -> None:
        """Forward packets until the host's track ends."""
        while True:
            try:
                packet = await self._source.recv()
            except MediaStreamError:
                return
            self.packets += 1
            self._on_packet()
            assert isinstance(packet, av.Packet)  # the pass-through receiver yields packets, never frames
            if self.keyframes is not None and packet.is_keyframe:
                self.keyframes.keyframe_arrived()
            for viewer in self._viewers:
                viewer.push(packet)

    def close(self) -> None:
        for track in self._viewers:
            track.stop()
        self._viewers.clear()
        if self.keyframes is not None:
            self.keyframes.close()
