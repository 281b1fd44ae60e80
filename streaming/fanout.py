"""Fan-out: one of the host's pass-through tracks sent to every viewer, and keyframe requests to the host.

Data flow: host's RTCRtpReceiver (pass-through) -> its track -> `Fanout.run`, which packetizes each
frame once and, in the same loop, seals and sends it to every viewer (streaming.passthrough.RtpOutput:
the viewer's SRTP session and ICE pair); each viewer's RTCRtpSender only sends RTCP and hears the
viewer's RTCP: a NACK is answered from the fan-out's shared history, a PLI/FIR goes to
`KeyframeRequests`, which sends the host at most one PLI per interval (as does a viewer's join).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCRtpCodecParameters, RTCRtpSender, clock
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streaming import passthrough
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


HISTORY = 1024  # packets a fan-out keeps for retransmission (about 8 s of 1 Mbit/s video, 20 s of Opus)


class Fanout:
    """Reads one of the host's pass-through tracks and sends each frame to every viewer, packetized once.

    Contract: each frame is packetized once (one RTP timestamp origin for all viewers); each group of viewers
    that negotiated alike gets it serialized once; each viewer's copy then only differs by sequence number and
    SSRC, is encrypted with that viewer's SRTP session and sent on its ICE pair, in this loop: no task, queue or
    wake-up per viewer, and nobody waits for a slow viewer (a packet its socket cannot take is lost, and comes
    back by NACK from the shared history of the last `history` packets). A video viewer starts at a keyframe,
    asking the host for one. `add_tap` functions see every packet of the host's track, after the viewers.
    """

    def __init__(
        self,
        source: MediaStreamTrack,
        codec: RTCRtpCodecParameters,
        keyframes: KeyframeRequests | None,
        on_packet: Callable[[], None],
        history: int = HISTORY,
    ) -> None:
        self.kind = source.kind
        self.codec = codec
        self.keyframes = keyframes
        self.packets = 0
        self._source = source
        self._on_packet = on_packet
        self._packetizer = get_encoder(codec)  # only its `pack`: the host's frames are encoded already
        self._origin = random.getrandbits(32)
        self._history: list[passthrough.Stored | None] = [None] * history
        self._next = 0  # the number of the next packet
        self._outputs: dict[ForwardTrack, passthrough.RtpOutput] = {}
        self._groups: dict[tuple[object, ...], passthrough.HeaderGroup] = {}
        self._waiting: list[passthrough.RtpOutput] = []  # connected, waiting for a keyframe to start
        self._taps: list[Callable[[av.Packet[Any]], None]] = []

    def add_tap(self, tap: Callable[[av.Packet[Any]], None]) -> None:
        """Call `tap` with every packet of the host's track from now on (after the viewers have theirs)."""
        self._taps.append(tap)

    def remove_tap(self, tap: Callable[[av.Packet[Any]], None]) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    @property
    def viewers(self) -> list[passthrough.RtpOutput]:
        """Every bound viewer's output (started or not)."""
        return list(self._outputs.values())

    def subscribe(self) -> ForwardTrack:
        """A new viewer track for `pc.addTransceiver(track, direction="sendonly")`; then `bind` its sender."""
        return ForwardTrack(self.kind, self._ready)

    def bind(self, track: ForwardTrack, sender: RTCRtpSender) -> None:
        """The viewer's sender of `track` (after addTransceiver, before negotiation completes): this fan-out sends
        its packets and answers its NACKs; its keyframe requests (PLI/FIR) reach the host."""
        output = passthrough.RtpOutput(sender, self._lookup)
        output.attach()
        self._outputs[track] = output
        if self.keyframes is not None:
            passthrough.on_keyframe_request(sender, self.keyframes.request)

    def unsubscribe(self, track: ForwardTrack) -> None:
        output = self._outputs.pop(track, None)
        if output is not None:
            if output in self._waiting:
                self._waiting.remove(output)
            group = output.group
            if group is not None and output in group.outputs:
                group.outputs.remove(output)
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
            self._forward(packet)
            for tap in self._taps:
                tap(packet)

    def close(self) -> None:
        for track in self._outputs:
            track.stop()
        self._outputs.clear()
        self._groups.clear()
        self._waiting.clear()
        if self.keyframes is not None:
            self.keyframes.close()

    def _ready(self, track: ForwardTrack) -> None:
        """The viewer's sender has started (its transport is up): it starts at the next keyframe."""
        output = self._outputs.get(track)
        if output is None or output.parameters is None:
            log.warning("a %s viewer track started without a bound sender: it gets nothing", self.kind)
            return
        key = passthrough.HeaderGroup.key(output.parameters)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = passthrough.HeaderGroup(output.parameters, output.extensions())
        output.group = group
        self._waiting.append(output)
        if self.keyframes is not None:
            self.keyframes.request()

    def _lookup(self, index: int) -> passthrough.Stored | None:
        stored = self._history[index % len(self._history)]
        return stored if stored is not None and stored.index == index else None

    def _forward(self, packet: av.Packet[Any]) -> None:
        payloads, timestamp = self._packetizer.pack(packet)
        if not payloads:
            return
        timestamp = (self._origin + timestamp) & 0xFFFFFFFF
        index = self._next
        self._next += len(payloads)
        last = len(payloads) - 1
        frame = [
            passthrough.Stored(index + number, payload, number == last, timestamp)
            for number, payload in enumerate(payloads)
        ]
        size = len(self._history)
        for stored in frame:
            self._history[stored.index % size] = stored
        if self._waiting and (packet.is_keyframe or self.kind != "video"):
            for output in self._waiting:
                output.start(index)
                assert output.group is not None
                output.group.outputs.append(output)
            self._waiting.clear()
        ntp = clock.current_ntp_time()
        octets = sum(len(payload) for payload in payloads)
        failed = []
        for group in self._groups.values():
            if not group.outputs:
                continue
            datagrams = group.datagrams(frame, ntp)
            for output in group.outputs:
                try:
                    output.send(datagrams, index, timestamp, ntp, octets)
                except Exception:  # one viewer's failure must not stop the others: that viewer gets no more
                    log.exception("could not send to a %s viewer: it gets nothing more", self.kind)
                    failed.append(output)
        for output in failed:
            assert output.group is not None
            output.group.outputs.remove(output)
