"""LL-HLS end to end: an aiortc host publishes over WHIP, the real app packages it, HTTP clients read it.

The server runs in the test's event loop (uvicorn as a task), on the session's real Redis; every
ICE candidate is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.ice
import av
import httpx
import pytest
import uvicorn
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from redis.asyncio import Redis
from starlette.applications import Starlette

from loadtests.support import tokens
from server.app import create_app
from server.config import Settings
from server.protocol import Role
from server.rooms.catalog import Catalog
from server.webserver import WS_PROTOCOL
from streaming import client
from streaming.client import PatternTrack, Session, WhipError
from streaming.hls import Hls
from tests.conftest import SECRET_KEY, free_port
from tests.timing import seconds

pytestmark = pytest.mark.anyio

WIDTH, HEIGHT = 320, 240
PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?')


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every ICE candidate on 127.0.0.1."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@dataclass
class Server:
    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]
    base_url: str

    @property
    def hls(self) -> Hls:
        return self.app.state.node.hls  # type: ignore[no-any-return]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def _serve(stores: dict[str, str], tmp_path: Path, **overrides: Any) -> Server:
    port = free_port()
    settings = Settings(
        port=port,
        redis_url=stores["REDIS_URL"],
        database_url=stores["DATABASE_URL"],
        data_dir=tmp_path,
        secret_key=SECRET_KEY,
        seed_demo=False,
        **{"limit_guests": (100_000, 1), "video_sessions_per_address": 100_000, **overrides},
    )
    entry = create_app(settings)
    app: Starlette = entry.app
    server = uvicorn.Server(uvicorn.Config(entry, host="127.0.0.1", port=port, log_level="warning", ws=WS_PROTOCOL))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.02)
    return Server(app, server, task, f"http://127.0.0.1:{port}")


@dataclass
class Show:
    """A running server with a merchant's room."""

    server: Server
    room_id: str
    host: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def playlist_url(self) -> str:
        return f"{self.base_url}/hls/{self.room_id}/live.m3u8"

    async def go_live(self, codec: str = "video/H264", width: int = WIDTH, height: int = HEIGHT) -> Session:
        track = PatternTrack(width, height)
        return await client.publish(f"{self.base_url}/whip/{self.room_id}", self.host, track, AudioStreamTrack(), codec)

    async def guest(self) -> str:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return str((await http.post("/api/guest")).json()["token"])


async def _show(stores: dict[str, str], tmp_path: Path, **overrides: Any) -> Show:
    server = await _serve(stores, tmp_path, **overrides)
    merchant_id = "m" + os.urandom(4).hex()
    redis = Redis.from_url(stores["REDIS_URL"], decode_responses=True)
    try:
        await Catalog(redis).create_merchant(merchant_id, "HLS shop")
    finally:
        await redis.aclose()
    admin = tokens.staff(SECRET_KEY, merchant_id, Role.ADMIN, "Admin")
    host = tokens.staff(SECRET_KEY, merchant_id, Role.HOST, "Host")
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {admin}"}) as http:
        room = await http.post(f"/api/merchants/{merchant_id}/rooms", json={"title": "HLS"})
        room.raise_for_status()
    return Show(server, room.json()["id"], host)


@pytest.fixture
async def show(stores: dict[str, str], tmp_path: Path) -> AsyncIterator[Show]:
    started = await _show(stores, tmp_path)
    yield started
    await started.server.stop()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    """Return once the async `check()` is true; fail after `timeout` nominal seconds (scaled)."""
    deadline = time.monotonic() + seconds(timeout)
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _says(http: httpx.AsyncClient, url: str, text: str) -> bool:
    return text in (await http.get(url)).text


async def _playlist(http: httpx.AsyncClient, url: str, segments: int = 2) -> str:
    """The playlist once it lists `segments` complete segments."""
    text = ""

    async def ready() -> bool:
        nonlocal text
        response = await http.get(url)
        text = response.text if response.status_code == 200 else ""
        return text.count("#EXTINF") >= segments

    deadline = time.monotonic() + seconds(15)
    while not await ready():
        assert time.monotonic() < deadline, f"no playlist with {segments} segments: {text!r}"
        await asyncio.sleep(0.1)
    return text


def _decode(data: bytes) -> tuple[list[tuple[int, int]], int, set[str]]:
    """Decode an fMP4 buffer: the pictures' sizes, the audio frames, the codecs."""
    container = av.open(io.BytesIO(data), "r", format="mp4")
    codecs = {stream.codec_context.name for stream in container.streams}
    sizes: list[tuple[int, int]] = []
    audio = 0
    for frame in container.decode(*container.streams):
        if isinstance(frame, av.VideoFrame):
            sizes.append((frame.width, frame.height))
        else:
            audio += 1
    container.close()
    return sizes, audio, codecs


def _init_uri(text: str) -> str:
    match = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    assert match is not None, f"no EXT-X-MAP in:\n{text}"
    return match[1]


def _last_segment(text: str) -> tuple[str, list[str]]:
    """The newest complete segment's URI and its parts' URIs."""
    lines = text.splitlines()
    index = max(i for i, line in enumerate(lines) if line.startswith("#EXTINF"))
    parts: list[str] = []
    for line in reversed(lines[:index]):
        if line.startswith("#EXTINF"):
            break
        match = PART.match(line)
        if match:
            parts.insert(0, match[2])
    return lines[index + 1], parts


async def test_h264_host_is_remuxed_into_a_valid_low_latency_playlist_whose_parts_decode(show: Show) -> None:
    """An H.264 + Opus host becomes LL-HLS without re-encoding: the playlist carries the LL-HLS tags, every
    segment opens with an independent part, parts are within PART-TARGET, and init + parts decode to the host's size."""
    host = await show.go_live()
    async with httpx.AsyncClient() as http:
        text = await _playlist(http, show.playlist_url, 3)
        assert not show.server.hls.rooms[show.room_id].transcoding
        for tag in (
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=",
            "#EXT-X-PART-INF:PART-TARGET=",
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=",
            "#EXT-X-PROGRAM-DATE-TIME:",
            '#EXT-X-MAP:URI="',
        ):
            assert tag in text, f"{tag} missing from:\n{text}"
        part_target = float(re.search(r"PART-TARGET=([\d.]+)", text)[1])  # type: ignore[index]
        durations = [float(match[1]) for match in PART.finditer(text)]
        assert durations and max(durations) <= part_target, (durations, part_target)
        for segment in re.split(r"#EXTINF[^\n]*\n[^\n]*\n", text)[1:-1]:
            first = PART.search(segment)
            assert first is not None and first[3], f"a segment not opening with an independent part:\n{segment}"
        init_uri = _init_uri(text)
        base = show.playlist_url.rsplit("/", 1)[0]
        init = (await http.get(f"{base}/{init_uri}")).content
        segment_uri, part_uris = _last_segment(text)
        assert part_uris, "the newest segment lists no parts"
        parts = [(await http.get(f"{base}/{uri}")).content for uri in part_uris]
        segment = (await http.get(f"{base}/{segment_uri}")).content
        assert segment == b"".join(parts)
        sizes, audio, codecs = _decode(init + segment)
        assert codecs == {"h264", "opus"}
        assert sizes and set(sizes) == {(WIDTH, HEIGHT)}
        assert audio > 0
    await host.stop()


async def test_blocking_reload_returns_when_the_hinted_part_appears(show: Show) -> None:
    """A reload asking for the next part (_HLS_msn/_HLS_part) is held until the playlist lists it; the preload hint's
    part is served once made; a request more than two segments ahead is refused."""
    host = await show.go_live()
    async with httpx.AsyncClient(timeout=seconds(10)) as http:
        text = await _playlist(http, show.playlist_url, 1)
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^/]+)/(\d+)\.(\d+)\.m4s"', text)
        assert hint is not None
        msn, part = int(hint[2]), int(hint[3])
        started = time.monotonic()
        hinted = http.get(f"{show.playlist_url.rsplit('/', 1)[0]}/{hint[1]}/{msn}.{part}.m4s")
        blocked = await http.get(show.playlist_url, params={"_HLS_msn": msn, "_HLS_part": part})
        waited = time.monotonic() - started
        assert blocked.status_code == 200
        listed = f'{msn}.{part}.m4s"' in blocked.text or f"#EXT-X-MEDIA-SEQUENCE:{msn + 1}" in blocked.text
        listed = listed or re.search(rf"/{msn + 1}\.0\.m4s", blocked.text) is not None
        assert listed, f"part {msn}.{part} (or the next segment) missing from:\n{blocked.text}"
        assert waited < seconds(3)
        part_answer = await hinted
        assert part_answer.status_code == 200 and part_answer.content[4:8] == b"moof"
        ahead = await http.get(show.playlist_url, params={"_HLS_msn": msn + 5})
        assert ahead.status_code == 400
    await host.stop()


async def test_answers_carry_cache_headers_a_cdn_can_use(show: Show) -> None:
    """Media is immutable, a blocking reload cacheable by its query, the bare playlist for a second, refusals never
    cached; every answer may be read from any origin."""
    host = await show.go_live()
    async with httpx.AsyncClient() as http:
        text = await _playlist(http, show.playlist_url, 1)
        bare = await http.get(show.playlist_url)
        assert bare.headers["cache-control"] == "public, max-age=1"
        assert bare.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        msn = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # type: ignore[index]
        blocking = await http.get(show.playlist_url, params={"_HLS_msn": msn})
        assert blocking.headers["cache-control"] == "public, max-age=30"
        base = show.playlist_url.rsplit("/", 1)[0]
        for uri in [_init_uri(text), PART.search(text)[2]]:  # type: ignore[index]
            answer = await http.get(f"{base}/{uri}")
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert answer.headers["access-control-allow-origin"] == "*"
        missing = await http.get(f"{show.base_url}/hls/nosuchroom/live.m3u8")
        assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    await host.stop()
    async with httpx.AsyncClient() as http:
        await _eventually(
            lambda: _says(http, show.playlist_url, "#EXT-X-ENDLIST"), "the ended stream's playlist to say so"
        )


async def test_another_process_answers_the_rooms_hls(show: Show, stores: dict[str, str], tmp_path: Path) -> None:
    """A process that does not hold the host's stream serves the playlist, a blocking reload and the media (from
    Redis, woken by the broker)."""
    host = await show.go_live()
    other = await _serve(stores, tmp_path / "other")
    try:
        url = f"{other.base_url}/hls/{show.room_id}/live.m3u8"
        async with httpx.AsyncClient(timeout=seconds(10)) as http:
            text = await _playlist(http, url, 1)
            hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[^/]+/(\d+)\.(\d+)\.m4s"', text)
            assert hint is not None
            blocked = await http.get(url, params={"_HLS_msn": hint[1], "_HLS_part": hint[2]})
            assert blocked.status_code == 200 and blocked.text != text
            init_uri = _init_uri(text)
            init = await http.get(f"{url.rsplit('/', 1)[0]}/{init_uri}")
            assert init.content[4:8] == b"ftyp"
        assert show.room_id not in other.hls.rooms
    finally:
        await other.stop()
    await host.stop()


async def test_vp8_host_is_transcoded_to_h264_once(show: Show) -> None:
    """A browser-style VP8 host is decoded and encoded once (libx264) for the room; the parts decode as H.264."""
    host = await show.go_live("video/VP8")
    async with httpx.AsyncClient() as http:
        text = await _playlist(http, show.playlist_url, 2)
        assert show.server.hls.rooms[show.room_id].transcoding
        base = show.playlist_url.rsplit("/", 1)[0]
        init = (await http.get(f"{base}/{_init_uri(text)}")).content
        segment_uri, _ = _last_segment(text)
        sizes, _, codecs = _decode(init + (await http.get(f"{base}/{segment_uri}")).content)
        assert "h264" in codecs
        assert sizes and set(sizes) == {(WIDTH, HEIGHT)}
    await host.stop()


async def test_portrait_stream_is_carried_as_it_comes(show: Show) -> None:
    """A 9:16 host picture (180x320) stays 180x320 in the HLS parts."""
    host = await show.go_live("video/H264", 180, 320)
    async with httpx.AsyncClient() as http:
        text = await _playlist(http, show.playlist_url, 1)
        base = show.playlist_url.rsplit("/", 1)[0]
        init = (await http.get(f"{base}/{_init_uri(text)}")).content
        segment_uri, _ = _last_segment(text)
        sizes, _, _ = _decode(init + (await http.get(f"{base}/{segment_uri}")).content)
        assert sizes and set(sizes) == {(180, 320)}
    await host.stop()


class TurningTrack(VideoStreamTrack):
    """A host turning the phone: `first` (width, height) for `after` frames, then `then`."""

    def __init__(self, first: tuple[int, int], then: tuple[int, int], after: int) -> None:
        super().__init__()
        self.sizes, self.after, self.count = (first, then), after, 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        width, height = self.sizes[self.count >= self.after]
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes([self.count * 4 % 200 + 16]) * frame.planes[0].buffer_size)
        for chroma in frame.planes[1:]:
            chroma.update(bytes([128]) * chroma.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


async def test_host_turning_the_phone_starts_a_new_init_section_after_a_discontinuity(show: Show) -> None:
    """A host whose picture turns from 320x240 to 240x320 mid-stream: the playlist marks EXT-X-DISCONTINUITY with a
    second init section, and the new segments decode at the new size."""
    track = TurningTrack((WIDTH, HEIGHT), (HEIGHT, WIDTH), 60)
    host = await client.publish(
        f"{show.base_url}/whip/{show.room_id}", show.host, track, AudioStreamTrack(), "video/H264"
    )
    async with httpx.AsyncClient() as http:
        await _playlist(http, show.playlist_url, 1)  # asks for the room's HLS: packaging starts
        text = ""

        async def turned() -> bool:
            nonlocal text
            text = (await http.get(show.playlist_url)).text
            tail = text.split("#EXT-X-DISCONTINUITY", 1)[-1]
            return "#EXT-X-DISCONTINUITY" in text and tail.count("#EXTINF") >= 1

        await _eventually(turned, "a discontinuity and a whole segment after it", 20)
        tail = text.split("#EXT-X-DISCONTINUITY", 1)[1]
        init_uri = _init_uri(tail)
        assert init_uri.endswith("/init-2.mp4"), tail
        base = show.playlist_url.rsplit("/", 1)[0]
        init = (await http.get(f"{base}/{init_uri}")).content
        segment_uri = re.search(r"#EXTINF:[\d.]+,\n(\S+)", tail)[1]  # type: ignore[index]
        sizes, _, _ = _decode(init + (await http.get(f"{base}/{segment_uri}")).content)
        assert sizes and set(sizes) == {(HEIGHT, WIDTH)}
    await host.stop()


async def test_webrtc_viewers_past_the_cap_are_sent_to_hls(stores: dict[str, str], tmp_path: Path) -> None:
    """With WEBRTC_VIEWERS_PER_ROOM=1 the second WHEP offer gets 409 webrtc_full with the HLS URL; once the first
    viewer leaves, WebRTC has room again."""
    show = await _show(stores, tmp_path, webrtc_viewers_per_room=1)
    try:
        host = await show.go_live()
        async with httpx.AsyncClient() as http:
            await _playlist(http, show.playlist_url, 1)  # live
        first = await client.watch(f"{show.base_url}/whep/{show.room_id}", await show.guest())
        with pytest.raises(WhipError) as refused:
            await client.watch(f"{show.base_url}/whep/{show.room_id}", await show.guest())
        assert refused.value.status == 409
        assert '"code":"webrtc_full"' in refused.value.body
        assert f'"hls":"/hls/{show.room_id}/live.m3u8"' in refused.value.body
        await first.wait_connected(seconds(10))  # closing a peer mid-connect trips aiortc's ICE task
        await first.stop()
        second: Session | None = None

        async def admitted() -> bool:
            nonlocal second
            try:
                second = await client.watch(f"{show.base_url}/whep/{show.room_id}", await show.guest())
            except WhipError:
                return False
            return True

        deadline = time.monotonic() + seconds(10)
        while not await admitted():
            assert time.monotonic() < deadline, "WebRTC stayed full after the viewer left"
            await asyncio.sleep(0.5)
        assert second is not None
        await second.wait_connected(seconds(10))
        await second.stop()
        await host.stop()
    finally:
        await show.server.stop()
