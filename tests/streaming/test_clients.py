"""Real publishers and portrait video: FFmpeg's WHIP muxer as a host, and 9:16 streams carried as they come.

FFmpeg is the static build inside the imageio-ffmpeg wheel (a test dependency): FFmpeg 9 and its WHIP muxer, the
WHIP client OBS-class software has. The server is a real process (tests/conftest.py); the test's viewers are aiortc
peers on 127.0.0.1 that decode what arrives (streaming.client).

What FFmpeg's WHIP muxer needs and does (found here, FFmpeg 9.0.2): stereo audio (a mono Opus stream fails at
"Could not write header"), so the test's mono sine is sent with `-ac 2`; it answers no keyframe request (PLI), so a
viewer starts at the publisher's next keyframe and the test sets one a second (`-g 30`), as OBS users set
"Keyframe Interval"; on SIGTERM it sends DELETE for its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aioice.ice
import av
import httpx
import imageio_ffmpeg  # type: ignore[import-untyped]
import pytest
from aiortc.mediastreams import AudioStreamTrack

from loadtests.support.server import ServerProcess
from streaming import client
from streaming.client import Counter, PatternTrack, Session
from tests.client import RoomClient
from tests.conftest import Shop
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

FFMPEG = str(imageio_ffmpeg.get_ffmpeg_exe())
LANDSCAPE, PORTRAIT = (640, 360), (360, 640)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test's own ICE candidates on 127.0.0.1 (aioice would also offer the machine's other addresses)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def ffmpeg_whip_command(url: str, token: str, size: tuple[int, int]) -> list[str]:
    """docs/video.md's FFmpeg publisher: a 30 fps test picture in H.264 (baseline, no B-frames), a sine in Opus."""
    width, height = size
    return [
        FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "info",
        "-re", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30", "-f", "lavfi", "-i", "sine",
        "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0", "-g", "30",
        "-c:a", "libopus", "-ac", "2",
        "-f", "whip", "-authorization", token, url,
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def ffmpeg_publishing(url: str, token: str, size: tuple[int, int], log: Path) -> AsyncIterator[FFmpeg]:
    """FFmpeg publishing to `url` while the block runs; killed if still running at its end, its log shown on
    failure."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *ffmpeg_whip_command(url, token, size), stdout=asyncio.subprocess.DEVNULL, stderr=output
        )
    try:
        yield FFmpeg(process, log)
    except BaseException:
        print(f"FFmpeg's log ({log}):\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


class FFmpeg:
    """A running FFmpeg and its log."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a service manager stops FFmpeg; its exit code."""
        self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), seconds(10))


def stream_state(room: RoomClient) -> str | None:
    """The room's latest stream.state seen on its socket."""
    states = [event["state"] for event in room.events if event["type"] == "stream.state"]
    return states[-1] if states else None


async def go_online(room: RoomClient, publisher: FFmpeg) -> None:
    """Wait for the room to go online; fail at once if FFmpeg exits first."""
    await until(lambda: stream_state(room) == "online" or not publisher.running, timeout=20, what="the room online")
    assert publisher.running, f"FFmpeg exited with {publisher.process.returncode}"


def first_frame_after(viewer: Session, kind: str, since: float) -> float:
    """Seconds from `since` (before the viewer's offer) to its first frame of this kind."""
    counter = viewer.counters[kind]
    assert counter.first is not None
    return counter.started + counter.first - since


async def frame_rate(counter: Counter, count: int = 90) -> float:
    """Frames per second over the next `count` frames."""
    start, before = time.monotonic(), counter.frames
    try:
        await until(lambda: counter.frames >= before + count, timeout=count / 30 * 2, what=f"{count} more frames")
    except AssertionError as late:
        raise AssertionError(f"{late}: {counter.frames - before} came") from None
    return (counter.frames - before) / (time.monotonic() - start)


def frames(viewer: Session, kind: str) -> int:
    return viewer.counters[kind].frames if kind in viewer.counters else 0


# --- FFmpeg's WHIP muxer -------------------------------------------------------------------


async def ffmpeg_show(shop: Shop, server: ServerProcess, log: Path, size: tuple[int, int], viewer_base: str) -> None:
    """FFmpeg publishes to `server` at `size`; the room goes online; a viewer POSTing WHEP to `viewer_base` (this
    server or another) decodes that size at 25 fps or more, within 3 s of its offer, and audio; FFmpeg stops: it
    sends DELETE, the room goes offline and the viewer's peer closes."""
    room = await RoomClient.connect(shop.room_url(shop.guest()))
    assert room.first is not None and room.first["room"]["stream"] == "offline"
    whip, whep = f"{shop.base_url}/whip/{shop.room_id}", f"{viewer_base}/whep/{shop.room_id}"
    try:
        async with ffmpeg_publishing(whip, shop.host, size, log) as publisher:
            await go_online(room, publisher)
            offered = time.monotonic()
            viewer = await client.watch(whep, shop.guest())
            assert viewer.location.startswith(viewer_base)  # served by the process it reached
            await until(lambda: frames(viewer, "video") > 0, timeout=5, what="a first picture")
            first = first_frame_after(viewer, "video", offered)
            assert first < seconds(3), f"first frame {first:.2f} s after the offer"
            await until(lambda: frames(viewer, "video") >= 30, what="the picture to settle")
            audio_before = frames(viewer, "audio")
            fps = await frame_rate(viewer.counters["video"])
            audio = frames(viewer, "audio") - audio_before
            where = "this" if viewer_base == shop.base_url else "another"
            print(f"FFmpeg {size[0]}x{size[1]}, viewer on {where} process: first frame {first:.2f} s, {fps:.1f} fps")
            assert fps >= 25, f"{fps:.1f} fps"
            assert audio >= 50, f"{audio} audio frames in 3 s"  # Opus: 50 frames a second
            assert viewer.counters["video"].sizes == {size}

            exit_code = await publisher.stop()
            assert exit_code == 255, exit_code  # FFmpeg's exit code after SIGTERM
            await until(lambda: stream_state(room) == "offline", timeout=3, what="the room offline")
            await until(lambda: viewer.pc.connectionState == "closed", what="the viewer's peer to close")
            host_lines = [line for line in server.log().splitlines() if f"[whip {shop.room_id}/" in line]
            assert any("closing: ended by DELETE" in line for line in host_lines), host_lines
            await viewer.stop(delete=False)
    finally:
        await room.close()


@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT], ids=["640x360", "360x640"])
async def test_ffmpeg_whip_publisher_reaches_a_decoding_viewer(
    shop: Shop, server: ServerProcess, tmp_path: Path, size: tuple[int, int]
) -> None:
    """FFmpeg's WHIP muxer publishes H.264 + Opus, landscape or portrait: the room goes online, a WHEP viewer decodes
    the picture at its size at 25 fps or more within 3 s of its offer, and audio; stopping FFmpeg sends DELETE and
    takes the room offline."""
    await ffmpeg_show(shop, server, tmp_path / "ffmpeg.log", size, shop.base_url)


async def test_ffmpeg_stream_reaches_a_viewer_on_another_process(
    shop: Shop, server: ServerProcess, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """FFmpeg's portrait H.264 reaches a viewer whose WHEP offer went to a second server process (served there from
    the cascade pipe): 360x640 at 25 fps or more, audio; FFmpeg's stop ends that viewer too."""
    second = server_factory()
    await ffmpeg_show(shop, server, tmp_path / "ffmpeg.log", PORTRAIT, second.base_url)


async def hls_segment(base_url: str, room_id: str) -> tuple[str, bytes]:
    """The room's LL-HLS playlist once it lists a whole segment, and that segment with its init section before it."""
    deadline = asyncio.get_running_loop().time() + seconds(15)
    async with httpx.AsyncClient(base_url=f"{base_url}/hls/{room_id}/", timeout=seconds(10)) as http:
        while True:
            listing = await http.get("live.m3u8")
            if listing.status_code == 200 and "#EXTINF" in listing.text:
                break
            assert asyncio.get_running_loop().time() < deadline, f"no segment in time: {listing.status_code}"
            await asyncio.sleep(0.1)  # poll the playlist, as a player does
        lines = listing.text.splitlines()
        init = next(line.split('URI="')[1].rstrip('"') for line in lines if line.startswith("#EXT-X-MAP:"))
        segment = lines[next(n for n, line in enumerate(lines) if line.startswith("#EXTINF")) + 1]
        media = [await http.get(name) for name in (init, segment)]
    assert all(response.status_code == 200 for response in media), [response.status_code for response in media]
    return listing.text, b"".join(response.content for response in media)


async def test_ffmpeg_h264_reaches_the_hls_playlist_as_it_comes(shop: Shop, tmp_path: Path) -> None:
    """FFmpeg's portrait H.264 is packaged for LL-HLS without re-encoding: a segment of the playlist decodes to
    360x640 frames of FFmpeg's own stream (x264's Constrained Baseline), with the audio beside it."""
    room = await RoomClient.connect(shop.room_url(shop.guest()))
    whip = f"{shop.base_url}/whip/{shop.room_id}"
    try:
        async with ffmpeg_publishing(whip, shop.host, PORTRAIT, tmp_path / "ffmpeg.log") as publisher:
            await go_online(room, publisher)
            playlist, media = await hls_segment(shop.base_url, shop.room_id)
            assert "#EXT-X-PART:" in playlist and "#EXT-X-PROGRAM-DATE-TIME:" in playlist, playlist
            with av.open(io.BytesIO(media), mode="r") as container:
                video = container.streams.video[0]
                assert video.codec_context.name == "h264"
                assert video.codec_context.profile == "Constrained Baseline"  # x264's, not a re-encoder's
                assert len(container.streams.audio) == 1
                pictures = [(frame.width, frame.height) for frame in container.decode(video)]
            assert len(pictures) >= 15 and set(pictures) == {PORTRAIT}, pictures[:3]
            await publisher.stop()
    finally:
        await room.close()


# --- portrait ----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_portrait_stream_is_carried_as_it_comes(shop: Shop, codec: str) -> None:
    """An aiortc host's 360x640 (9:16) picture reaches a viewer as 360x640 frames, in VP8 or H.264, with audio."""
    whip, whep = f"{shop.base_url}/whip/{shop.room_id}", f"{shop.base_url}/whep/{shop.room_id}"
    room = await RoomClient.connect(shop.room_url(shop.guest()))
    host = await client.publish(whip, shop.host, PatternTrack(*PORTRAIT), AudioStreamTrack(), codec)
    try:
        await until(lambda: stream_state(room) == "online", what="the room online")
        viewer = await client.watch(whep, shop.guest())
        try:
            await until(
                lambda: frames(viewer, "video") >= 30 and frames(viewer, "audio") >= 50,
                what="30 video and 50 audio frames",
            )
            assert viewer.counters["video"].sizes == {PORTRAIT}
        finally:
            await viewer.stop()
    finally:
        await host.stop()
        await room.close()
