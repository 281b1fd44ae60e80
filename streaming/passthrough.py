"""Pass-through receiving for aiortc: a receiver whose track yields the sender's encoded frames, undecoded.

aiortc always decodes what an `RTCRtpReceiver` receives: the receiver reassembles each frame in
its jitter buffer and puts `(codec, JitterFrame)` on a `queue.Queue` that its decoder thread
reads. `install(receiver)` gives one receiver, before it starts, a stand-in for that queue which
turns each reassembled frame into an `av.Packet` (pts in the codec's clock, `is_keyframe` set)
and puts it straight on the receiver's track. An `RTCRtpSender` whose track yields such packets
only packetizes and encrypts them (`Encoder.pack`), so one host's media can be forwarded to many
viewers without an encoder per viewer. Only the receivers passed to `install` change; every other
peer connection in the process decodes as usual.

The decoder thread still starts (aiortc starts it unconditionally); it idles on the stand-in
until the receiver stops, then ends the track exactly as aiortc does.

This module is the only place that touches aiortc internals: the receiver's decoder queue, its
track's frame queue, its PLI sender and its RTP handler (`count_only`, for load generators), and a
sender's keyframe hook (`on_keyframe_request`).
They are those of the pinned version (aiortc==1.16.0); `install` fails loudly if they are missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiortc
import av
from aiortc import RTCRtpReceiver, RTCRtpSender

log = logging.getLogger("livecart.streaming")

TESTED_AIORTC = "1.16.0"

_QUEUE = "_RTCRtpReceiver__decoder_queue"
_STARTED = "_RTCRtpReceiver__started"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"

if aiortc.__version__ != TESTED_AIORTC:  # pragma: no cover - depends on the installed version
    log.warning("streaming.passthrough is tested with aiortc %s, found %s", TESTED_AIORTC, aiortc.__version__)


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own (audio frames always can)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame.
        return bool(data) and not data[0] & 0x01
    if mime == "video/h264":
        # Annex B from aiortc's depayloader: an IDR slice (NAL type 5) makes a keyframe.
        start = data.find(b"\x00\x00\x01")
        while start != -1 and start + 3 < len(data):
            if data[start + 3] & 0x1F == 5:
                return True
            start = data.find(b"\x00\x00\x01", start + 3)
        return False
    return not mime.startswith("video/")


class _PacketSink:
    """Stands in for a receiver's decoder queue: frames become packets on the track, not decoder input."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._stopped = threading.Event()
        self._time_bases: dict[int, Fraction] = {}

    def put(self, item: tuple[Any, Any] | None) -> None:
        """Called on the event loop: `(codec, JitterFrame)` for each frame, None when the receiver stops."""
        if item is None:
            self._stopped.set()
            return
        codec, frame = item
        time_base = self._time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self._time_bases[codec.clockRate] = Fraction(1, codec.clockRate)
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = time_base
        packet.is_keyframe = is_keyframe(codec.mimeType, frame.data)
        track = self._receiver._track
        assert track is not None  # set before any frame can arrive
        track._queue.put_nowait(packet)

    def get(self) -> None:
        """Called by the idle decoder thread: returns None (end of track) once the receiver stops."""
        self._stopped.wait()


def install(receiver: RTCRtpReceiver) -> None:
    """Make this receiver's track yield `av.Packet`s instead of decoded frames; call before it starts."""
    if not hasattr(receiver, _QUEUE) or not hasattr(receiver, _STARTED):
        raise RuntimeError(f"streaming.passthrough does not support aiortc {aiortc.__version__}; pin {TESTED_AIORTC}")
    if getattr(receiver, _STARTED):
        raise RuntimeError("install the pass-through before the receiver starts (before negotiation completes)")
    setattr(receiver, _QUEUE, _PacketSink(receiver))


def is_installed(receiver: RTCRtpReceiver) -> bool:
    return isinstance(getattr(receiver, _QUEUE, None), _PacketSink)


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Send a Picture Loss Indication to the remote sender of each media SSRC this receiver hears."""
    rtx = getattr(receiver, _RTX_SSRC, {})
    for source in receiver.getSynchronizationSources():
        if source.source not in rtx:
            await receiver._send_rtcp_pli(source.source)


def count_only(receiver: RTCRtpReceiver, kind: str, counted: Callable[[], None]) -> None:
    """Make a receiver count what arrives and do nothing else: `counted()` once per video frame (an
    RTP packet with the marker bit ends one) or audio packet. No jitter buffer, NACKs, reassembly or
    decoding: the lightest viewer there is, so a load generator can run hundreds beside the server."""
    video = kind == "video"

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        if packet.marker or not video:
            counted()

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` whenever the remote peer asks this sender for a keyframe (RTCP PLI or FIR).

    aiortc answers a PLI or FIR by setting a flag that only its encoder reads; a sender that forwards
    packets has no encoder, so the request must go to whoever produces the packets.
    """
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
