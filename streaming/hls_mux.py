"""CMAF packaging of one host's stream: its H.264 and Opus remuxed (not re-encoded) into fMP4 fragments with PyAV.

`Muxer` takes the host's packets (H.264 Annex B as aiortc depacketizes it, Opus) and writes
fragmented MP4 (`movflags=frag_keyframe+empty_moov+default_base_moof`, a fragment cut at every
keyframe and past `part_seconds`) to a buffer it reads back box by box: the init section is
ftyp+moov, each moof+mdat is one `Fragment` (an LL-HLS part). `Transcoder` turns VP8 (what
browsers send) into H.264 once per room (libx264 ultrafast/zerolatency) for the same muxer.

Runs in the packager's worker thread (streaming.hls): nothing here touches the event loop.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
# RFC 7845 section 5.1: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, mapping family 0 (what WebRTC sends).
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, AUDIO_CLOCK, 0, 0)


@dataclass(frozen=True)
class Fragment:
    """One moof+mdat: a part. `start` and `duration` in seconds of media time; `independent` when it opens with a
    keyframe (a player may start there)."""

    data: bytes
    start: float
    duration: float
    independent: bool


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B buffer (start codes removed)."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        unit = data[begin:] if end == -1 else data[begin:end]
        units.append(unit.rstrip(b"\x00") if end != -1 else unit)
        start = end
    return [unit for unit in units if unit]


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS of a keyframe, as Annex B (the muxer turns them into the avcC box); b"" when absent."""
    wanted = [unit for unit in nal_units(data) if unit[0] & 0x1F in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in wanted)


def picture_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height of an H.264 keyframe (decoded once: cheaper to write than an SPS parser, and exact)."""
    decoder = av.CodecContext.create("h264", "r")
    frames = decoder.decode(av.Packet(keyframe)) + decoder.decode(None)
    if not frames:
        raise ValueError("the keyframe did not decode")
    frame = frames[0]
    assert isinstance(frame, av.VideoFrame)
    return frame.width, frame.height


class _Sink(io.RawIOBase):
    """The muxer's output: bytes collected until `take_boxes` reads the complete top-level boxes."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        return len(data)

    def take_boxes(self) -> list[tuple[bytes, bytes]]:
        boxes: list[tuple[bytes, bytes]] = []
        while len(self.buffer) >= 8:
            size, kind = struct.unpack(">I4s", self.buffer[:8])
            if size < 8 or len(self.buffer) < size:
                break
            boxes.append((kind, bytes(self.buffer[:size])))
            del self.buffer[:size]
        return boxes


def _children(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    found: dict[bytes, list[tuple[int, int]]] = {}
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        if size < 8:
            break
        found.setdefault(kind, []).append((start + 8, start + size))
        start += size
    return found


def fragment_timing(moof: bytes, clocks: dict[int, int]) -> tuple[float, float, bool]:
    """Start, duration (seconds) and independence of a moof, from its first track in `clocks` (track id -> clock):
    tfdt, the trun's sample durations (or tfhd's default) and its first sample's flags."""
    top = _children(moof, 8, len(moof))
    timings: dict[int, tuple[float, float, bool]] = {}
    for begin, end in top.get(b"traf", []):
        boxes = _children(moof, begin, end)
        tfhd_at = boxes[b"tfhd"][0][0]
        tf_flags = int.from_bytes(moof[tfhd_at + 1 : tfhd_at + 4], "big")
        track = struct.unpack(">I", moof[tfhd_at + 4 : tfhd_at + 8])[0]
        cursor = tfhd_at + 8 + (8 if tf_flags & 0x1 else 0) + (4 if tf_flags & 0x2 else 0)
        default_duration = default_flags = 0
        if tf_flags & 0x8:
            default_duration = struct.unpack(">I", moof[cursor : cursor + 4])[0]
            cursor += 4
        if tf_flags & 0x10:
            cursor += 4
        if tf_flags & 0x20:
            default_flags = struct.unpack(">I", moof[cursor : cursor + 4])[0]
        tfdt_at = boxes[b"tfdt"][0][0]
        if moof[tfdt_at] == 1:
            base = struct.unpack(">Q", moof[tfdt_at + 4 : tfdt_at + 12])[0]
        else:
            base = struct.unpack(">I", moof[tfdt_at + 4 : tfdt_at + 8])[0]
        total, first_flags = 0, None
        for trun_at, _ in boxes.get(b"trun", []):
            flags = int.from_bytes(moof[trun_at + 1 : trun_at + 4], "big")
            count = struct.unpack(">I", moof[trun_at + 4 : trun_at + 8])[0]
            cursor = trun_at + 8 + (4 if flags & 0x1 else 0)
            if flags & 0x4:
                first_flags = (
                    first_flags if first_flags is not None else struct.unpack(">I", moof[cursor : cursor + 4])[0]
                )
                cursor += 4
            fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
            for _ in range(count):
                for bit in fields:
                    value = struct.unpack(">I", moof[cursor : cursor + 4])[0]
                    if bit == 0x100:
                        total += value
                    elif bit == 0x400 and first_flags is None:
                        first_flags = value
                    cursor += 4
                if not flags & 0x100:
                    total += default_duration
        sample_flags = default_flags if first_flags is None else first_flags
        if track in clocks:
            clock = clocks[track]
            timings[track] = (base / clock, total / clock, not (sample_flags >> 16) & 1)
    for track in sorted(clocks):
        if track in timings:
            return timings[track]
    raise ValueError("a fragment without a known track")


class Muxer:
    """One fMP4 stream: `init` (ftyp+moov) once the first keyframe has come, then fragments.

    Packets' pts are in the track's clock (90 kHz video, 48 kHz audio), already mapped to the
    stream's media time (streaming.hls does it); dts = pts (no B-frames: baseline, zerolatency).
    """

    def __init__(self, width: int, height: int, parameters: bytes, audio: bool, part_seconds: float) -> None:
        self.width, self.height = width, height
        self.parameters = parameters
        self.init = b""
        self._sink = _Sink()
        # A stream that stops sending (a muted host's audio) holds the other back at most 0.5 s (interleaving).
        options = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "max_interleave_delta": "500000"}
        if part_seconds > 0:
            options["frag_duration"] = str(int(part_seconds * 1_000_000))
        self._container = av.open(self._sink, "w", format="mp4", options=options)
        self._video = self._container.add_stream("h264")
        self._video.width, self._video.height = width, height
        self._video.time_base = Fraction(1, VIDEO_CLOCK)
        self._video.codec_context.extradata = parameters
        self._audio: Any = None
        self._clocks = {1: VIDEO_CLOCK}
        if audio:
            self._audio = self._container.add_stream("opus")
            self._audio.codec_context.extradata = OPUS_HEAD
            self._audio.codec_context.sample_rate = AUDIO_CLOCK
            self._audio.time_base = Fraction(1, AUDIO_CLOCK)
            self._clocks[2] = AUDIO_CLOCK
        self._last = {"video": -1, "audio": -1}
        self._pending_moof = b""

    def add(self, kind: str, data: bytes, pts: int, keyframe: bool) -> list[Fragment]:
        """Mux one packet; returns the fragments it completed (the muxer cuts one before a packet that ends it)."""
        stream = self._video if kind == "video" else self._audio
        if stream is None:
            return []
        if pts <= self._last[kind]:
            if kind == "audio":
                return []  # a late or repeated audio packet: dropped
            pts = self._last[kind] + 1
        self._last[kind] = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = Fraction(1, VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK)
        packet.stream = stream
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        return self._collect()

    def close(self) -> list[Fragment]:
        """Write what is left (the last fragment)."""
        try:
            self._container.close()
        except (av.FFmpegError, ValueError):
            return []
        return self._collect()

    def _collect(self) -> list[Fragment]:
        fragments: list[Fragment] = []
        for kind, box in self._sink.take_boxes():
            if kind in (b"ftyp", b"moov"):
                self.init += box
            elif kind == b"moof":
                self._pending_moof = box
            elif kind == b"mdat" and self._pending_moof:
                start, duration, independent = fragment_timing(self._pending_moof, self._clocks)
                fragments.append(Fragment(self._pending_moof + box, start, duration, independent))
                self._pending_moof = b""
        return fragments


class Transcoder:
    """VP8 in, H.264 (Annex B, constrained baseline) out: decode, then libx264 ultrafast/zerolatency, at the size of
    the first picture (later pictures are scaled to it). A keyframe every `keyframe_seconds` (at 30 fps)."""

    def __init__(self, keyframe_seconds: float) -> None:
        self._decoder = av.CodecContext.create("vp8", "r")
        self._encoder: Any = None
        self._gop = max(1, round(keyframe_seconds * 30))
        self._force = False

    def force_keyframe(self) -> None:
        """Make the next picture a keyframe (IDR): a segment may start there."""
        self._force = True

    def add(self, data: bytes, pts: int) -> list[tuple[bytes, int, bool]]:
        """One VP8 frame (pts in 90 kHz) -> the H.264 packets it produced: (data, pts, keyframe)."""
        out: list[tuple[bytes, int, bool]] = []
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.FFmpegError:
            return out  # a frame that does not decode (no keyframe yet): skipped
        for frame in frames:
            assert isinstance(frame, av.VideoFrame)
            if self._encoder is None:
                self._encoder = self._open(frame.width, frame.height)
            if (frame.width, frame.height) != (
                self._encoder.width,
                self._encoder.height,
            ) or frame.format.name != "yuv420p":
                frame = frame.reformat(self._encoder.width, self._encoder.height, "yuv420p")
            frame.pts = pts
            frame.time_base = Fraction(1, VIDEO_CLOCK)
            if self._force:
                self._force = False
                frame.pict_type = av.video.frame.PictureType.I
            for packet in self._encoder.encode(frame):
                assert packet.pts is not None
                out.append((bytes(packet), packet.pts, packet.is_keyframe))
        return out

    def _open(self, width: int, height: int) -> Any:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width - width % 2, height - height % 2
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, VIDEO_CLOCK)
        encoder.framerate = Fraction(30, 1)
        encoder.gop_size = self._gop
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "bf": "0",
            "keyint_min": str(self._gop),
            "sc_threshold": "0",
            "forced-idr": "1",
        }
        return encoder
