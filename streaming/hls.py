"""LL-HLS for the crowd: each live room's host stream packaged as CMAF (fMP4) parts and segments, in Redis.

Data flow: the relay's fan-outs -> `RoomPackaging.tap` (queues a copy, never blocks) -> its
worker thread (streaming.hls_mux: H.264 remuxed, VP8 transcoded once to H.264; Opus remuxed)
-> fragments back on the event loop -> segments and the playlist -> streaming.hls_store (Redis,
and a notice on the room's channel) -> any process's HLS routes (streaming.hls_routes).

Segments start at a keyframe: past `HLS_SEGMENT_MS` the packager asks the host for one (RTCP
PLI, through the fan-out's merged requests) or tells its own encoder (VP8 rooms). Parts are
fragments cut past `HLS_PART_MS` (0: no parts, plain HLS, for the benchmark's baseline).
Media time is mapped to the server's clock at arrival: EXT-X-PROGRAM-DATE-TIME says when the
server received a picture, the same clock as the room's events' `ts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import av

from server.errors import Conflict
from server.tasks import Tasks
from streaming.hls_mux import AUDIO_CLOCK, VIDEO_CLOCK, Fragment, Muxer, Transcoder, parameter_sets, picture_size
from streaming.hls_store import Edge, HlsStore
from streaming.relay import Broadcast

log = logging.getLogger("livecart.streaming.hls")

WINDOW = 6  # segments a playlist lists
PART_WINDOW = 3  # of which the newest this many list their parts
BACKLOG = 300  # packets the worker may fall behind before it drops to the next keyframe


@dataclass(frozen=True)
class HlsOptions:
    part_seconds: float = 0.25  # HLS_PART_MS (0: no parts)
    segment_seconds: float = 1.0  # HLS_SEGMENT_MS
    webrtc_viewers: int = 300  # WEBRTC_VIEWERS_PER_ROOM

    @property
    def part_target(self) -> float:
        """PART-TARGET: a fragment is cut at the first packet past `part_seconds`, so parts run a little over it."""
        return round(self.part_seconds * 1.5, 3)


def hls_url(room_id: str) -> str:
    return f"/hls/{room_id}/live.m3u8"


@dataclass
class Segment:
    msn: int
    generation: int
    start: float  # media time (s) of its first part
    parts: list[Fragment] = field(default_factory=list)
    complete: bool = False
    discontinuity: bool = False

    @property
    def duration(self) -> float:
        return sum(part.duration for part in self.parts)


class _Unwrap:
    """RTP timestamps (32 bits) to a growing count, and mapped to the stream's media time at first arrival."""

    def __init__(self, clock: int) -> None:
        self.clock = clock
        self._last: int | None = None
        self._high = 0
        self.offset: int | None = None

    def map(self, pts: int, arrival: float, t0: float) -> int:
        if self._last is not None and pts < self._last and self._last - pts > 1 << 31:
            self._high += 1 << 32
        elif self._last is not None and pts > self._last and pts - self._last > 1 << 31:
            pts -= 1 << 32  # a reordered packet from before the wrap
        else:
            self._last = pts
        value = pts + self._high
        if self.offset is None:
            self.offset = round((arrival - t0) * self.clock) - value
        return value + self.offset


class RoomPackaging:
    """One live room's packaging: the tap, the worker thread, and the writer task (see the module docstring)."""

    def __init__(self, room_id: str, broadcast: Broadcast, store: HlsStore, options: HlsOptions) -> None:
        self.room_id = room_id
        self.store = store
        self.options = options
        self.stream = secrets.token_hex(4)
        self.loop = asyncio.get_running_loop()
        video = broadcast.fanouts.get("video")
        audio = broadcast.fanouts.get("audio")
        self.video_codec = video.codec.mimeType.lower() if video is not None else ""
        self.has_audio = audio is not None and audio.codec.mimeType.lower() == "audio/opus"
        self.transcoding = self.video_codec == "video/vp8"
        self._fanouts = {kind: fanout for kind, fanout in (("video", video), ("audio", audio)) if fanout is not None}
        self._input: queue.SimpleQueue[tuple[str, bytes, int, bool, float] | None] = queue.SimpleQueue()
        self._output: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
        self._force_keyframe = False
        self._sent_inits: set[int] = set()
        self._new_init: dict[str, bytes] = {}
        self._taps: dict[str, Callable[[av.Packet[Any]], None]] = {}
        self.segments: list[Segment] = []
        self.msn = int(time.time())  # grows across the room's streams: a cached blocking reload never names another
        self.t0 = 0.0
        self.discontinuities = 0
        self.ended = False
        self.inits: dict[int, str] = {}
        self.target = max(1, math.ceil(options.segment_seconds))
        self._thread = threading.Thread(target=self._work, name=f"hls-{room_id}", daemon=True)
        self.writer: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.writer is not None

    def start(self) -> None:
        """Start packaging (once someone asks for the room's HLS): tap the fan-outs, start the worker, ask for a
        keyframe to begin at."""
        if self.active or self.ended:
            return
        if self.video_codec not in ("video/h264", "video/vp8"):
            log.warning("room %s: no video HLS can carry (%s)", self.room_id, self.video_codec or "none")
            self.ended = True
            return
        for kind, fanout in self._fanouts.items():
            if kind == "audio" and not self.has_audio:
                continue
            self._taps[kind] = partial(self.tap, kind)
            fanout.add_tap(self._taps[kind])
        self._thread.start()
        self.writer = asyncio.ensure_future(self._write())
        self._ask_keyframe()
        log.info(
            "room %s: packaging HLS (%s%s)",
            self.room_id,
            "VP8 transcoded to H.264" if self.transcoding else "H.264",
            " + Opus" if self.has_audio else "",
        )

    def tap(self, kind: str, packet: av.Packet[Any]) -> None:
        """A host packet, in the fan-out's loop: queued for the worker (never blocks)."""
        if self._input.qsize() >= BACKLOG:
            return  # the worker has fallen behind: it skips to the next keyframe once it catches up
        self._input.put((kind, bytes(packet), int(packet.pts or 0), packet.is_keyframe, time.time()))

    def end(self) -> None:
        """Stop tapping and let go of the broadcast (its peers may be freed while the last segment is written)."""
        for kind, tap in self._taps.items():
            self._fanouts[kind].remove_tap(tap)
        self._taps.clear()
        self._fanouts.clear()
        if self.active:
            self._input.put(None)
        else:
            self.ended = True

    # --- the worker thread -----------------------------------------------------------------

    def _emit(self, kind: str, generation: int, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self.loop.call_soon_threadsafe(self._output.put_nowait, (kind, generation, value))

    def _work(self) -> None:
        muxer: Muxer | None = None
        generation = 0
        transcoder = Transcoder(self.options.segment_seconds) if self.transcoding else None
        clocks = {"video": _Unwrap(VIDEO_CLOCK), "audio": _Unwrap(AUDIO_CLOCK)}
        skipping = False
        last_keyframe = 0  # media pts (90 kHz) of the newest keyframe
        asked = False
        segment_ticks = int(self.options.segment_seconds * VIDEO_CLOCK)
        while True:
            item = self._input.get()
            if item is None:
                break
            kind, data, pts, keyframe, arrival = item
            if self._input.qsize() >= BACKLOG - 1:
                skipping = True
            if self.t0 == 0.0:
                if kind != "video" or not keyframe:
                    continue
                self.t0 = arrival
            media_pts = clocks[kind].map(pts, arrival, self.t0)
            try:
                if kind == "audio":
                    if muxer is not None and not skipping:
                        self._send(muxer, generation, muxer.add("audio", data, media_pts, True))
                    continue
                packets = [(data, media_pts, keyframe)]
                if transcoder is not None:
                    if self._force_keyframe:
                        self._force_keyframe = False
                        transcoder.force_keyframe()
                    packets = transcoder.add(data, media_pts)
                for payload, packet_pts, is_key in packets:
                    if skipping and not is_key:
                        continue
                    skipping = False
                    if not is_key and not asked and packet_pts - last_keyframe >= segment_ticks:
                        asked = True  # a segment's worth since the last keyframe: ask for the next segment's
                        with contextlib.suppress(RuntimeError):
                            self.loop.call_soon_threadsafe(self._ask_keyframe)
                    if is_key:
                        last_keyframe, asked = packet_pts, False
                        parameters = parameter_sets(payload)
                        if muxer is None or (parameters and parameters != muxer.parameters):
                            if muxer is not None:
                                self._send(muxer, generation, muxer.close())
                            generation += 1
                            width, height = picture_size(payload)
                            muxer = Muxer(width, height, parameters, self.has_audio, self.options.part_seconds)
                            log.info("room %s: HLS at %dx%d", self.room_id, width, height)
                    if muxer is not None:
                        self._send(muxer, generation, muxer.add("video", payload, packet_pts, is_key))
            except (av.FFmpegError, ValueError) as problem:
                log.warning("room %s: HLS packaging skipped a packet: %s", self.room_id, problem)
            except Exception:
                log.exception("room %s: HLS packaging failed on a packet", self.room_id)
        if muxer is not None:
            self._send(muxer, generation, muxer.close())
        self._emit("end", generation, None)

    def _send(self, muxer: Muxer, generation: int, fragments: list[Fragment]) -> None:
        if muxer.init and generation not in self._sent_inits:
            self._sent_inits.add(generation)
            self._emit("init", generation, muxer.init)
        for fragment in fragments:
            self._emit("part", generation, fragment)

    # --- the writer task (event loop) --------------------------------------------------------

    async def _write(self) -> None:
        while True:
            kind, generation, value = await self._output.get()
            try:
                if kind == "init":
                    self.inits[generation] = f"init-{generation}.mp4"
                    self._new_init = {self.inits[generation]: value}  # written with the first part
                elif kind == "part":
                    await self._part(generation, value)
                else:
                    self.ended = True
                    if self.segments:
                        self.segments[-1].complete = True
                        last = self.segments[-1]
                        await self.store.put(
                            self.room_id,
                            self.stream,
                            {f"{last.msn}.m4s": b"".join(p.data for p in last.parts)},
                            *self._listing(),
                        )
                    return
            except Exception:
                log.exception("room %s: HLS write failed", self.room_id)

    async def _part(self, generation: int, fragment: Fragment) -> None:
        media, self._new_init = self._new_init, {}
        current = self.segments[-1] if self.segments else None
        options = self.options
        new_generation = current is not None and current.generation != generation
        if (
            current is None
            or new_generation
            or (fragment.independent and current.duration >= options.segment_seconds - options.part_seconds / 2)
        ):
            if current is not None:
                current.complete = True
                media[f"{current.msn}.m4s"] = b"".join(part.data for part in current.parts)
                self.msn = current.msn + 1
                self.target = max(self.target, math.ceil(current.duration))
            current = Segment(self.msn, generation, fragment.start, discontinuity=new_generation)
            self.segments.append(current)
            # EXT-X-DISCONTINUITY-SEQUENCE counts the discontinuities that left the window
            self.discontinuities += sum(segment.discontinuity for segment in self.segments[:-WINDOW])
            del self.segments[:-WINDOW]
        current.parts.append(fragment)
        media[f"{current.msn}.{len(current.parts) - 1}.m4s"] = fragment.data
        await self.store.put(self.room_id, self.stream, media, *self._listing(), keep=list(self.inits.values()))

    def _ask_keyframe(self) -> None:
        if self.transcoding:
            self._force_keyframe = True
            fanout = self._fanouts.get("video")
            if fanout is not None and fanout.keyframes is not None and not self.segments:
                fanout.keyframes.request()  # the decoder starts at the host's keyframe
            return
        fanout = self._fanouts.get("video")
        if fanout is not None and fanout.keyframes is not None:
            fanout.keyframes.request()

    def _listing(self) -> tuple[Edge, str]:
        """The edge and the playlist text for the segments now known."""
        options = self.options
        low_latency = options.part_seconds > 0
        last = self.segments[-1] if self.segments else None
        edge = Edge(last.msn if last else self.msn, len(last.parts) - 1 if last else -1, self.ended)
        lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{self.target}"]
        if low_latency:
            part_target = options.part_target
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part_target:.3f}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}")
        first = self.segments[0] if self.segments else None
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first.msn if first else self.msn}")
        if self.discontinuities:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuities}")
        for index, segment in enumerate(self.segments):
            init = self.inits.get(segment.generation)
            if index == 0 or segment.discontinuity:
                if segment.discontinuity:
                    lines.append("#EXT-X-DISCONTINUITY")
                if init:
                    lines.append(f'#EXT-X-MAP:URI="{self.stream}/{init}"')
            when = datetime.fromtimestamp(self.t0 + segment.start, UTC)
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}")
            if low_latency and index >= len(self.segments) - PART_WINDOW:
                for number, part in enumerate(segment.parts):
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(
                        f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{self.stream}/{segment.msn}.{number}.m4s"{independent}'
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration:.5f},")
                lines.append(f"{self.stream}/{segment.msn}.m4s")
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        elif low_latency and last is not None:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.stream}/{last.msn}.{len(last.parts)}.m4s"')
        return edge, "\n".join(lines) + "\n"


class Hls:
    """This process's HLS: the packager tap the relay calls (`started`/`ended`), the store, and the WebRTC cap."""

    def __init__(
        self, store: HlsStore, options: HlsOptions, viewer_sessions: Callable[[], dict[str, list[str]]]
    ) -> None:
        self.store = store
        self.options = options
        self.rooms: dict[str, RoomPackaging] = {}
        self._viewer_sessions = viewer_sessions
        self._ending: set[asyncio.Task[None]] = set()
        self.tasks = Tasks("hls")

    def start(self) -> None:
        self.store.start()
        self.tasks.every(1.0, self._count, "webrtc-viewers")
        self.tasks.every(0.5, self._wake, "hls-wake")

    async def stop(self, timeout: float) -> None:
        for room_id in list(self.rooms):
            self.ended(room_id)
        if self._ending:
            await asyncio.wait(self._ending, timeout=timeout / 2)
        await self.tasks.stop(timeout / 4)
        await self.store.stop(timeout / 4)

    # StreamTap
    def started(self, room_id: str, broadcast: Broadcast) -> None:
        self.ended(room_id)
        self.rooms[room_id] = RoomPackaging(room_id, broadcast, self.store, self.options)  # idle until asked for

    def ended(self, room_id: str) -> None:
        packaging = self.rooms.pop(room_id, None)
        if packaging is None:
            return
        packaging.end()
        if packaging.writer is not None:
            task = asyncio.ensure_future(self._finish(packaging))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def _finish(self, packaging: RoomPackaging) -> None:
        assert packaging.writer is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(packaging.writer), 5)
        packaging.writer.cancel()

    async def admit(self, room_id: str) -> None:
        """A WebRTC viewer may join, or 409 `webrtc_full` (with the HLS URL) past WEBRTC_VIEWERS_PER_ROOM."""
        cap = self.options.webrtc_viewers
        if await self.store.count_viewers(room_id) >= cap:
            raise Conflict(
                f"this show has {cap} video viewers over WebRTC; watch it over HLS",
                "webrtc_full",
                details={"hls": hls_url(room_id)},
            )

    async def counted(self, room_id: str, session_id: str) -> None:
        """A WebRTC viewer just joined (counted at once, before the next refresh)."""
        await self.store.add_viewers({room_id: [session_id]})

    async def _wake(self) -> None:
        """Start packaging the rooms held here whose HLS somebody asked for (any process: streaming.hls_store)."""
        idle = [room_id for room_id, packaging in self.rooms.items() if not packaging.active and not packaging.ended]
        for room_id in await self.store.wanted(idle):
            packaging = self.rooms.get(room_id)
            if packaging is not None:
                packaging.start()

    async def _count(self) -> None:
        sessions = self._viewer_sessions()
        if sessions:
            await self.store.add_viewers(sessions)
