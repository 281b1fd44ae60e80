"""Loss recovery for an aiortc video receiver: NACKs repeated until the packet comes, a keyframe when it will not.

aiortc's receiver sends one NACK when it notices a gap, and names a missing packet again only when a new gap
appears. A retransmission that is lost too (at 5% loss, one in twenty) then waits for the next loss: at 30
packets per second that is about 0.7 s, sometimes several seconds, and its jitter buffer holds every later frame
until then (viewers freeze). And a packet that never comes (the sender's history is gone, or it does not
retransmit) holds them until 512 packets have passed. `install(receiver)` adds a task that every
`interval` seconds NACKs again each packet missing for at least that long, and after `give_up` seconds drops
the frames that waited for it and asks the sender for a keyframe (RTCP PLI), so the stream moves on.

It touches aiortc internals (the receiver's NACK generator, jitter buffer, RTCP senders and `stop`): those of
the pinned version (aiortc==1.16.0); `install` fails loudly when they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiortc
from aiortc import RTCRtpReceiver
from aiortc.utils import uint16_add

log = logging.getLogger("livecart.streaming")

TESTED_AIORTC = "1.16.0"
INTERVAL = 0.1  # seconds between NACKs for a packet still missing (a round trip on most links)
GIVE_UP = 0.5  # seconds a packet may stay missing before its frames are dropped and a keyframe asked for

_GENERATOR = "_RTCRtpReceiver__nack_generator"
_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_RTX = "_RTCRtpReceiver__rtx_ssrc"


class Recovery:
    """One receiver's NACK repeats and give-ups (see the module docstring)."""

    def __init__(self, receiver: RTCRtpReceiver, interval: float, give_up: float) -> None:
        self.receiver = receiver
        self.interval = interval
        self.give_up = give_up
        self.repeated = 0  # NACKs sent again
        self.abandoned = 0  # packets given up (each followed by a keyframe request)
        self._since: dict[int, float] = {}  # missing sequence number -> when it was first seen missing

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.tick(time.monotonic())

    async def tick(self, now: float) -> None:
        generator = getattr(self.receiver, _GENERATOR)
        if generator is None or not generator.missing:
            self._since.clear()
            return
        missing: set[int] = generator.missing
        for sequence in list(self._since):
            if sequence not in missing:
                del self._since[sequence]
        for sequence in missing:
            self._since.setdefault(sequence, now)
        ssrc = self._media_ssrc()
        if ssrc is None:
            return
        lost = [s for s, since in self._since.items() if now - since >= self.give_up]
        if lost:
            self._abandon(lost)
            self.abandoned += len(lost)
            await self.receiver._send_rtcp_pli(ssrc)
        again = sorted(s for s, since in self._since.items() if now - since >= self.interval)
        if again:
            self.repeated += 1
            await self.receiver._send_rtcp_nack(ssrc, again)

    def _abandon(self, lost: list[int]) -> None:
        """Forget these packets and drop the frames in the jitter buffer that waited for them."""
        generator, buffer = getattr(self.receiver, _GENERATOR), getattr(self.receiver, _BUFFER)
        for sequence in lost:
            generator.missing.discard(sequence)
            del self._since[sequence]
        if buffer._origin is None:
            return
        ahead = [uint16_add(sequence, -buffer._origin) for sequence in lost]
        count = max((delta for delta in ahead if delta < buffer.capacity), default=-1) + 1
        if count:
            buffer.smart_remove(count)
        log.info("gave up on %d lost packet(s) after %g s; asked for a keyframe", len(lost), self.give_up)

    def _media_ssrc(self) -> int | None:
        rtx = getattr(self.receiver, _RTX, {})
        for source in self.receiver.getSynchronizationSources():
            if source.source not in rtx:
                return int(source.source)
        return None


def install(receiver: RTCRtpReceiver, interval: float = INTERVAL, give_up: float = GIVE_UP) -> Recovery:
    """Repeat NACKs and give up on lost packets for this (video) receiver until it stops; call before it starts."""
    if not all(hasattr(receiver, name) for name in (_GENERATOR, _BUFFER, _RTX, "_send_rtcp_nack", "_send_rtcp_pli")):
        raise RuntimeError(f"streaming.nack does not support aiortc {aiortc.__version__}; pin {TESTED_AIORTC}")
    recovery = Recovery(receiver, interval, give_up)
    task = asyncio.ensure_future(recovery.run())
    original = receiver.stop

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await original()

    receiver.stop = stop  # type: ignore[method-assign]
    return recovery
