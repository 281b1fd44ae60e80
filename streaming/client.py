"""A small WHIP/WHEP client on aiortc: publish a test pattern, watch a room and count what arrives.

Used by the tests and loadtests/bench/relay_bench.py, and handy to smoke-test a deployment (needs httpx):

    python -m streaming.client publish http://127.0.0.1:8000/whip/ROOM --token HOST_TOKEN --size 640x360
    python -m streaming.client watch http://127.0.0.1:8000/whep/ROOM --token GUEST_TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import av
import httpx
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack

from streaming import ice_restart, passthrough

log = logging.getLogger("livecart.streaming.client")


class WhipError(Exception):
    """The server refused an offer: its status and JSON error body."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class PatternTrack(VideoStreamTrack):
    """Moving grey stripes at `width`x`height`, 30 frames per second (a cheap, compressible test picture)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width = width
        self.height = height
        row = bytes(range(256)) * (width // 256 + 2)
        self._rows = [row[shift : shift + width] for shift in range(0, 256, 4)]
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma = frame.planes[0]
        luma.update((self._rows[self._count % len(self._rows)] + bytes(luma.line_size - self.width)) * self.height)
        for chroma in frame.planes[1:]:
            chroma.update(bytes([128]) * chroma.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self._count += 1
        return frame


@dataclass
class Counter:
    """Reads a received track to its end: frames (decoded, or packets when not decoding), sizes, first arrival."""

    kind: str
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    keyframes: int = 0
    first: float | None = None  # seconds from `started` to the first frame
    sizes: set[tuple[int, int]] = field(default_factory=set)

    async def read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.first is None:
                self.first = time.monotonic() - self.started
            self.frames += 1
            if isinstance(frame, av.VideoFrame):
                self.sizes.add((frame.width, frame.height))
            elif isinstance(frame, av.Packet) and frame.is_keyframe:
                self.keyframes += 1


@dataclass
class Session:
    """One WHIP or WHEP session seen from the client: its peer connection and its URL on the server."""

    pc: RTCPeerConnection
    location: str
    token: str
    links: list[str]
    counters: dict[str, Counter] = field(default_factory=dict)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    restarts: list[ice_restart.IceRestart] = field(default_factory=list)  # ICE restarts, latest last

    async def wait_connected(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise RuntimeError(f"connection {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    async def restart_ice(self) -> None:
        """Restart ICE over PATCH (RFC 9725 4.3.2): a new ICE session (new credentials, candidates gathered now, so
        from the addresses this machine has now) under the same DTLS session. Returns once the server answered;
        media moves to the new path once its checks succeed (`ice_restart.IceRestart.connected`)."""
        restart, fragment = await ice_restart.restart_locally(self.pc)
        headers = {"Content-Type": ice_restart.MEDIA_TYPE, "If-Match": "*", "Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.patch(self.location, content=fragment, headers=headers)
        if response.status_code != 200:
            await restart.close()
            raise WhipError(response.status_code, response.text)
        answer = ice_restart.parse_fragment(response.text)
        assert answer.ufrag is not None and answer.pwd is not None
        await restart.start(answer.ufrag, answer.pwd, answer.candidates, answer.end)
        self.restarts.append(restart)

    async def stop(self, delete: bool = True) -> None:
        """DELETE the session (unless told not to), then close the peer connection."""
        if delete:
            async with httpx.AsyncClient() as http:
                await http.delete(self.location, headers={"Authorization": f"Bearer {self.token}"})
        await self.pc.close()
        for restart in self.restarts:
            await restart.close()
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def negotiate(url: str, token: str, pc: RTCPeerConnection) -> tuple[str, list[str]]:
    """POST the peer's offer to a WHIP/WHEP URL, apply the answer; return the session URL and the Link headers."""
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(url, content=pc.localDescription.sdp, headers=headers)
    if response.status_code != 201:
        await pc.close()
        raise WhipError(response.status_code, response.text)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return response.headers["location"], response.headers.get_list("link")


def _codecs(kind: str, mime: str) -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in codecs if c.mimeType.lower() == mime.lower()] + [c for c in codecs if c.name == "rtx"]


async def publish(
    url: str, token: str, video: MediaStreamTrack | None = None, audio: MediaStreamTrack | None = None, codec: str = ""
) -> Session:
    """POST an offer to a WHIP endpoint, sending `video` and `audio` ('video/H264' forces a codec)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if video is not None:
        transceiver = pc.addTransceiver(video, direction="sendonly")
        if codec:
            transceiver.setCodecPreferences(_codecs("video", codec))
    if audio is not None:
        pc.addTransceiver(audio, direction="sendonly")
    location, links = await negotiate(url, token, pc)
    return Session(pc, location, token, links)


async def watch(url: str, token: str, kinds: tuple[str, ...] = ("video", "audio"), decode: bool = True) -> Session:
    """POST an offer to a WHEP endpoint and count what arrives; `decode=False` counts encoded frames only."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    session = Session(pc, "", token, [])
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        if not decode:
            passthrough.install(transceiver.receiver)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        counter = session.counters[track.kind] = Counter(track.kind)
        session.readers.append(asyncio.ensure_future(counter.read(track)))

    session.location, session.links = await negotiate(url, token, pc)
    return session


async def count(url: str, token: str) -> Session:
    """A WHEP viewer that only counts RTP: video frames (by their marker bit) and audio packets, nothing reassembled
    or decoded (a load generator's viewer: see passthrough.count_only)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    session = Session(pc, "", token, [])
    for kind in ("video", "audio"):
        counter = session.counters[kind] = Counter(kind)
        receiver = pc.addTransceiver(kind, direction="recvonly").receiver
        passthrough.count_only(receiver, kind, partial(_one_more, counter))
    session.location, session.links = await negotiate(url, token, pc)
    return session


def _one_more(counter: Counter) -> None:
    if counter.first is None:
        counter.first = time.monotonic() - counter.started
    counter.frames += 1


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["publish", "watch"])
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--size", default="640x360", help="publish: WIDTHxHEIGHT")
    parser.add_argument("--codec", default="", help="publish: video/VP8 or video/H264")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args()
    if args.action == "publish":
        width, height = (int(n) for n in args.size.split("x"))
        session = await publish(args.url, args.token, PatternTrack(width, height), AudioStreamTrack(), args.codec)
    else:
        session = await watch(args.url, args.token)
    print(f"{args.action}: {session.location}", flush=True)
    started = time.monotonic()
    try:
        while not args.seconds or time.monotonic() - started < args.seconds:
            await asyncio.sleep(1)
            if session.pc.connectionState in ("failed", "closed"):
                break
            counts = ", ".join(f"{kind} {counter.frames}" for kind, counter in session.counters.items())
            print(f"{session.pc.connectionState} {counts}", flush=True)
    finally:
        with contextlib.suppress(httpx.HTTPError):
            await session.stop()


if __name__ == "__main__":
    asyncio.run(_main())
