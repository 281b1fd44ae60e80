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

Viewers' senders are bypassed the same way (`RtpOutput`): the fan-out sends their packets itself,
sealed with the viewer's SRTP session and sent on its nominated ICE pair, and answers their NACKs.

This module is the one place that touches aiortc's media internals: the receiver's decoder queue, its
track's frame queue, its PLI sender and its RTP handler (`count_only`, for load generators); a
sender's keyframe hook (`on_keyframe_request`), its `send` and `_retransmit`, its header extension
map, RTX payload type and sender-report fields; a DTLS transport's SRTP session, state and counters;
aioice's nominated pair.
They are those of the pinned version (aiortc==1.16.0); `install` and `RtpOutput` fail loudly if they are missing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any, cast

import aiortc
import av
import pylibsrtp
from aioice.ice import CandidatePair, StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, clock, rtp
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from pylibsrtp._binding import ffi, lib  # type: ignore[import-not-found]  # the C library pylibsrtp wraps

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


# --- a viewer's sender, bypassed: the fan-out sends its packets ---------------------------------------------------

_SENDER_FIELDS = (
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__rtx_payload_type",
    "_RTCRtpSender__rtx_sequence_number",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
)
_NTP, _RTP_TIMESTAMP, _PACKETS, _OCTETS = _SENDER_FIELDS[3:]
_TX_BYTES, _TX_PACKETS = "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets"
# An RTP header's first 16 bits (version, extension bit, marker, payload type), sequence number, timestamp, SSRC.
_HEAD = struct.Struct("!HHII")
_SEALED = 1500 - 16  # the largest packet sealed in place: pylibsrtp's buffer, less the longest SRTP tag
_LENGTH = ffi.new("int *")  # libsrtp's in/out packet length (one event loop thread: one will do)
MAX_UNSENT = 256 * 1024  # bytes a viewer's socket may hold unsent before its packets are dropped (it recovers by NACK)

_sending: set[asyncio.Future[None]] = set()  # sends through a TURN relay in flight


def _check_pylibsrtp() -> None:
    """`RtpOutput` seals packets in a pylibsrtp Session's own buffer (its `_srtp`, `_cdata`, `_buffer`, pylibsrtp
    1.0): one libsrtp call per packet, without pylibsrtp's three Python calls and two copies."""
    session = pylibsrtp.Session()
    if not all(hasattr(session, name) for name in ("_srtp", "_cdata", "_buffer")) or len(session._buffer) < 1500:
        raise RuntimeError("streaming.passthrough needs pylibsrtp 1.0 (the one aiortc 1.16.0 installs)")


_check_pylibsrtp()


def _send_later(protocol: Any, data: bytes, address: tuple[str, int]) -> None:
    task = asyncio.ensure_future(protocol.send_data(data, address))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


def _send_nowhere(data: bytes, address: tuple[str, int]) -> None:
    """The send function of a viewer not started yet."""


# One packet of a frame as a group of viewers is sent it: its first 16 header bits, and everything after the SSRC
# (header extensions and payload).
Datagram = tuple[int, bytes]


@dataclass(frozen=True)
class Stored:
    """One packet of the fan-out's shared history (for retransmission)."""

    index: int  # the fan-out's packet number: a viewer's sequence number is this plus its offset, modulo 2**16
    payload: bytes
    marker: int
    timestamp: int


class HeaderGroup:
    """Viewers that negotiated alike (payload type, header extension ids, mid) share the bytes of every packet but
    the sequence number and SSRC: `datagrams` serializes a frame's packets once for all of them."""

    def __init__(self, parameters: RTCRtpSendParameters, extensions: rtp.HeaderExtensionsMap) -> None:
        payload_type = parameters.codecs[0].payloadType
        assert payload_type is not None  # negotiated
        self.payload_type = payload_type
        self.mid = parameters.muxId
        self.extensions = extensions
        self.outputs: list[RtpOutput] = []

    @staticmethod
    def key(parameters: RTCRtpSendParameters) -> tuple[object, ...]:
        headers = tuple(sorted((extension.uri, extension.id) for extension in parameters.headerExtensions))
        return parameters.codecs[0].payloadType, headers, parameters.muxId

    def packet(self, stored: Stored, sequence_number: int, ssrc: int, send_time: int) -> rtp.RtpPacket:
        packet = rtp.RtpPacket(self.payload_type, stored.marker, sequence_number, stored.timestamp, ssrc)
        packet.payload = stored.payload
        packet.extensions.abs_send_time = (send_time >> 14) & 0x00FFFFFF
        packet.extensions.mid = self.mid
        return packet

    def datagrams(self, frame: list[Stored], send_time: int) -> list[Datagram]:
        """The frame's packets for this group, sequence number and SSRC left to each viewer."""
        serialized = [self.packet(stored, 0, 0, send_time).serialize(self.extensions) for stored in frame]
        return [(int.from_bytes(data[:2], "big"), data[12:]) for data in serialized]


class RtpOutput:
    """One viewer's RTCRtpSender with its packets sent by the fan-out instead of its own `_run_rtp` task.

    `attach` captures the sender's negotiated parameters when aiortc starts it (`send`) and answers its NACKs from
    the fan-out's shared history (`lookup`), as RTX when the viewer negotiated RTX. The sender's track must never
    yield (its `_run_rtp` then does no work); its RTCP task still sends sender reports, from the fields `send`
    keeps: the NTP time and RTP timestamp of the last frame, the packet and payload byte counts.

    Sequence numbers: the viewer's packet for the fan-out's packet number `index` has sequence number
    `(index + offset) % 2**16`, from its first packet on: every packet after that has one, sent or not (a packet
    its socket could not take is lost as on the network, and recovered by NACK).
    """

    def __init__(self, sender: RTCRtpSender, lookup: Callable[[int], Stored | None]) -> None:
        missing = [name for name in _SENDER_FIELDS if not hasattr(sender, name)]
        if missing or not hasattr(sender, "_retransmit"):
            raise RuntimeError(
                f"streaming.passthrough does not support aiortc {aiortc.__version__}; pin {TESTED_AIORTC}"
            )
        self.sender = sender
        self.parameters: RTCRtpSendParameters | None = None
        self.group: HeaderGroup | None = None
        self.offset = 0
        self.first: int | None = None  # the fan-out's number of this viewer's first packet; None: not started
        self.last = -1  # ... of its latest packet
        self.sent = 0
        self.unsent = 0  # packets its socket could not take
        self.retransmitted = 0
        self._lookup = lookup
        self._fields = vars(sender)
        self._rtx_payload_type: int | None = None
        self._rtx_sequence = 0
        # the route, from `start` on (see `_route`)
        self._dtls: RTCDtlsTransport | None = None
        self._ice: Any = None
        self._transport_fields: dict[str, Any] = {}
        self._ssrc = sender._ssrc
        self._pair: CandidatePair | None = None
        self._srtp: Any = None  # the DTLS transport's pylibsrtp Session, and its libsrtp session and buffer:
        self._session: Any = None
        self._cdata: Any = None
        self._buffer: Any = None
        self._address: tuple[str, int] = ("", 0)
        self._writer: asyncio.WriteTransport | None = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] = _send_nowhere

    def attach(self) -> None:
        """Take over the sender before it starts (after addTransceiver, before negotiation completes)."""
        original = self.sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            if self.parameters is None:
                self.parameters = parameters
            await original(parameters)
            self._rtx_payload_type = self._fields["_RTCRtpSender__rtx_payload_type"]
            self._rtx_sequence = self._fields["_RTCRtpSender__rtx_sequence_number"]

        async def retransmit(sequence_number: int) -> None:
            self.retransmit(sequence_number)

        self.sender.send = send  # type: ignore[method-assign]
        self.sender._retransmit = retransmit  # type: ignore[method-assign]

    def extensions(self) -> rtp.HeaderExtensionsMap:
        extensions: rtp.HeaderExtensionsMap = self._fields["_RTCRtpSender__rtp_header_extensions_map"]
        return extensions

    def start(self, index: int) -> None:
        """This viewer's first packet is the fan-out's packet number `index` (its transport is connected by now)."""
        self._dtls = self.sender.transport
        self._ice = self._dtls.transport
        self._transport_fields = vars(self._dtls)
        self._ssrc = self.sender._ssrc
        self.first, self.last = index, index - 1
        self.offset = (random.randrange(32768) - index) & 0xFFFF  # aiortc's choice: the lower half of the range

    def _route(self) -> bool:
        """Whether the viewer can be sent to now: DTLS connected, an ICE pair nominated, its socket not backed up.
        Keeps `_srtp`, `_sendto` and `_address` current (the pair is looked up for each frame: it may change)."""
        dtls = self._dtls
        if dtls is None or dtls._state is not State.CONNECTED:
            return False
        pair = self._ice._connection._nominated.get(1)
        if pair is not self._pair:
            self._pair = pair
            if pair is None:
                return False
            self._srtp, self._address = dtls._tx_srtp, pair.remote_addr
            self._session, self._cdata, self._buffer = self._srtp._srtp[0], self._srtp._cdata, self._srtp._buffer
            protocol = pair.protocol
            if isinstance(protocol, StunProtocol):
                self._writer = cast(asyncio.WriteTransport, protocol.transport)  # a selector (or uvloop) transport
                self._sendto = protocol.transport.sendto
            else:  # a TURN relay: not on the server's side today
                self._writer = None
                self._sendto = partial(_send_later, protocol)
        if pair is None:
            return False
        return self._writer is None or self._writer.get_write_buffer_size() <= MAX_UNSENT

    def send(self, datagrams: list[Datagram], index: int, timestamp: int, ntp: int, octets: int) -> None:
        """Send one frame's packets (the fan-out's numbers `index`, `index + 1`, ...), sealed for this viewer."""
        count = len(datagrams)
        self.last = index + count - 1
        if not self._route():
            self.unsent += count
            return
        session, cdata, buffer, length, protect = self._session, self._cdata, self._buffer, _LENGTH, lib.srtp_protect
        sendto, address, pack_into, ssrc = self._sendto, self._address, _HEAD.pack_into, self._ssrc
        sequence = index + self.offset
        size = 0
        for first, rest in datagrams:
            end = 12 + len(rest)
            if end > _SEALED:  # not from aiortc's packetizers (under 1300 bytes): the slow way
                data = self._srtp.protect(_HEAD.pack(first, sequence & 0xFFFF, timestamp, ssrc) + rest)
            else:  # sealed in place, in the session's buffer: what pylibsrtp's protect() does, in one step
                pack_into(buffer, 0, first, sequence & 0xFFFF, timestamp, ssrc)
                buffer[12:end] = rest
                length[0] = end
                if protect(session, cdata, length):
                    raise pylibsrtp.Error(f"SRTP protect failed for the packet {sequence & 0xFFFF}")
                data = buffer[0 : length[0]]
            sendto(data, address)
            size += len(data)
            sequence += 1
        self.sent += count
        fields = self._fields
        fields[_NTP] = ntp
        fields[_RTP_TIMESTAMP] = timestamp
        fields[_PACKETS] += count
        fields[_OCTETS] += octets
        transport = self._transport_fields
        transport[_TX_BYTES] += size
        transport[_TX_PACKETS] += count

    def retransmit(self, sequence_number: int) -> None:
        """Answer a NACK: the packet again from the shared history (as RTX when negotiated), if it is still there."""
        if self.group is None or self.first is None:
            return
        index = self.last - ((self.last + self.offset - sequence_number) & 0xFFFF)
        stored = self._lookup(index) if index >= self.first else None
        if stored is None or not self._route():
            return
        packet = self.group.packet(stored, sequence_number, self._ssrc, clock.current_ntp_time())
        if self._rtx_payload_type is not None:
            packet = rtp.wrap_rtx(packet, self._rtx_payload_type, self._rtx_sequence, self.sender._rtx_ssrc)
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        self._sendto(self._srtp.protect(packet.serialize(self.group.extensions)), self._address)
        self.retransmitted += 1
