"""relay_bench's publisher media: a VP8 and Opus clip encoded once at start-up, replayed in real time as packets.

Replaying packets keeps the load generator light: its sender only packetizes them (no encoder),
the way OBS or a browser would send an already encoded stream.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

WIDTH, HEIGHT, FPS = 640, 360, 30


def encode_clip(seconds: int = 4, bitrate: int = 1_000_000) -> tuple[list[av.Packet[Any]], list[av.Packet[Any]]]:
    """VP8 640x360 30 fps (a keyframe every 2 s, as OBS sends) of a panning smooth texture, and Opus 20 ms."""
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.time_base = fractions.Fraction(1, FPS)
    video.bit_rate, video.gop_size, video.qmin, video.qmax = bitrate, 2 * FPS, 2, 56
    video.options = {"deadline": "good", "cpu-used": "8", "lag-in-frames": "0"}
    rng = random.Random(7)
    noise = av.VideoFrame(WIDTH // 4, HEIGHT // 4, "gray")
    noise.planes[0].update(rng.randbytes(noise.planes[0].buffer_size))
    smooth = noise.reformat(width=WIDTH * 2, height=HEIGHT, format="gray", interpolation="BICUBIC").planes[0]
    texture, stride = bytes(smooth), smooth.line_size
    video_packets: list[av.Packet[Any]] = []
    for index in range(seconds * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        pan = index * 4 % WIDTH
        luma = b"".join(texture[row * stride + pan : row * stride + pan + WIDTH] for row in range(HEIGHT))
        frame.planes[0].update(luma if frame.planes[0].line_size == WIDTH else _pad(luma, frame.planes[0].line_size))
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = index
        video_packets += video.encode(frame)
    video_packets += video.encode(None)
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    audio.bit_rate = 64000
    audio_packets: list[av.Packet[Any]] = []
    for index in range(seconds * 50):
        sound = av.AudioFrame(format="s16", layout="stereo", samples=960)
        sound.planes[0].update(rng.randbytes(sound.planes[0].buffer_size))
        sound.sample_rate, sound.pts = 48000, index * 960
        audio_packets += audio.encode(sound)
    return video_packets, audio_packets


def _pad(rows: bytes, line_size: int) -> bytes:
    return b"".join(rows[i : i + WIDTH] + bytes(line_size - WIDTH) for i in range(0, len(rows), WIDTH))


def kbit_per_second(video: list[av.Packet[Any]]) -> float:
    """The clip's video bitrate."""
    return sum(packet.size for packet in video) * 8 / (len(video) / FPS) / 1000


class ReplayTrack(MediaStreamTrack):
    """Yields a clip's encoded packets in a loop, paced in real time (the sender only packetizes them)."""

    def __init__(self, kind: str, packets: list[av.Packet[Any]], rate: int, step: int) -> None:
        super().__init__()
        self.kind = kind
        self._payloads = [bytes(packet) for packet in packets]
        self._keys = [packet.is_keyframe for packet in packets]
        self._rate, self._step = rate, step
        self._time_base = fractions.Fraction(1, rate)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index * self._step / self._rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        position = self._index % len(self._payloads)
        packet = av.Packet(self._payloads[position])
        packet.pts, packet.time_base = self._index * self._step, self._time_base
        packet.is_keyframe = self._keys[position]
        self._index += 1
        return packet


def tracks(clip: tuple[list[av.Packet[Any]], list[av.Packet[Any]]]) -> tuple[ReplayTrack, ReplayTrack]:
    """A fresh (video, audio) pair replaying the clip: 90 kHz video at 30 fps, 48 kHz Opus in 20 ms packets."""
    video, audio = clip
    return ReplayTrack("video", video, 90000, 90000 // FPS), ReplayTrack("audio", audio, 48000, 960)
