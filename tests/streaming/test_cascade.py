"""Cascading across server processes: a room's media piped once to each process with viewers, which serves them.

Two servers (each its own node: own process id, relay and Redis channel) run in the test's event loop on the
session's Redis and PostgreSQL, as in test_relay.py, so the test can look at both relays; the last test runs them as
two operating-system processes. The host publishes to the first (A, the room's owner); viewers POST WHEP to either.
Every ICE candidate is 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aioice.ice
import httpx
import pytest
from aiortc.mediastreams import AudioStreamTrack
from prometheus_client.parser import text_string_to_metric_families

from loadtests.support import server as launcher
from loadtests.support.server import ServerProcess
from streaming import client
from streaming.client import PatternTrack, Session, WhipError
from streaming.peers import Side
from streaming.relay import Broadcast
from tests.conftest import SECRET_KEY, make_shop
from tests.streaming.test_relay import HEIGHT, LOOPBACK_ONLY, WIDTH, Live, _go_live, _start, _stop
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test's own ICE candidates on 127.0.0.1 (the machine's other addresses may come and go)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def pair(stores: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[Live, Live]]:
    """Server A (where the host publishes) and server B, on the same stores, both serving the same room."""
    first = await _start(stores, tmp_path / "a")
    try:
        second = await _start(stores, tmp_path / "b")
    except BaseException:
        await _stop(first)
        raise
    yield first, replace(second, room_id=first.room_id, merchant_id=first.merchant_id, host=first.host)
    await _stop(second)
    await _stop(first)


class Recorder:
    """A stream tap that notes what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, room_id: str, broadcast: Broadcast) -> None:
        self.events.append(("started", room_id))

    def ended(self, room_id: str) -> None:
        self.events.append(("ended", room_id))


def _frames(viewer: Session, kind: str) -> int:
    return viewer.counters[kind].frames if kind in viewer.counters else 0


async def _delete(url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.delete(url, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_viewers_on_both_processes_decode_and_the_second_pipes_the_room_once(
    pair: tuple[Live, Live], codec: str
) -> None:
    """Viewers on A and on B (three POSTed to B at once) all decode the host's video (VP8 or H.264) and audio; B is
    served from one pipe (A counts it as no viewer), each viewer's session lives where it was POSTed; only A's tap
    hears the stream."""
    a, b = pair
    taps = Recorder(), Recorder()
    a.relay.taps.append(taps[0])
    b.relay.taps.append(taps[1])
    host = await _go_live(a, codec)
    on_a = [await client.watch(a.whep, await a.guest()) for _ in range(2)]
    guests = [await b.guest() for _ in range(3)]
    on_b = list(await asyncio.gather(*(client.watch(b.whep, guest) for guest in guests)))
    viewers = on_a + on_b
    await until(
        lambda: all(_frames(v, "video") >= 30 and _frames(v, "audio") >= 50 for v in viewers),
        what="30 video and 50 audio frames on every viewer",
    )
    for viewer in viewers:
        assert viewer.counters["video"].sizes == {(WIDTH, HEIGHT)}
    assert all(v.location.startswith(a.base_url) for v in on_a) and all(v.location.startswith(b.base_url) for v in on_b)
    here, there = a.relay.stats(), b.relay.stats()
    assert (here["rooms"], here["live"], here["viewers"], here["pipes_out"], here["pipes_in"]) == (1, 1, 2, 1, 0)
    assert (there["rooms"], there["live"], there["viewers"], there["pipes_out"], there["pipes_in"]) == (0, 0, 3, 0, 1)
    assert b.relay.viewers(b.room_id) == 3 and not b.relay.holds(b.room_id)
    assert taps[0].events == [("started", a.room_id)] and taps[1].events == []

    with pytest.raises(WhipError) as refused:  # B has the room's media, not its host
        await client.publish(f"{b.base_url}/whip/{b.room_id}", b.host, PatternTrack(WIDTH, HEIGHT))
    assert refused.value.status == 409 and "already_publishing" in refused.value.body
    for viewer in viewers:
        await viewer.stop()
    await host.stop()
    await until(lambda: taps[0].events[-1:] == [("ended", a.room_id)], what="A's tap to hear the end")
    assert taps[1].events == []


async def test_late_viewer_on_the_second_process_gets_a_picture_through_the_pipe(pair: tuple[Live, Live]) -> None:
    """A viewer joining B mid-stream gets a picture within 2 s: its keyframe request goes up the pipe (a PLI from B)
    and on to the host (a PLI from A)."""
    a, b = pair
    host = await _go_live(a)
    early = await client.watch(b.whep, await b.guest())
    await until(lambda: _frames(early, "video") >= 30, what="the stream on B")
    up, on = b.relay.stats()["keyframe_requests"], a.relay.stats()["keyframe_requests"]
    late = await client.watch(b.whep, await b.guest())
    await until(lambda: _frames(late, "video") > 0, timeout=2, what="a picture")
    counter = late.counters["video"]
    assert counter.first is not None and counter.first < seconds(2.0)
    assert counter.sizes == {(WIDTH, HEIGHT)}
    assert b.relay.stats()["keyframe_requests"] > up and a.relay.stats()["keyframe_requests"] > on
    assert b.relay.stats()["pipes_in"] == 1
    await until(lambda: counter.frames >= 20, what="the picture to carry on")
    for session in (late, early, host):
        await session.stop()


async def test_the_host_stopping_ends_the_second_process_viewers_and_the_room_goes_offline(
    pair: tuple[Live, Live],
) -> None:
    """The host's DELETE, sent to B, ends the stream on A; A ends B's pipe, B ends its viewers, the room hears
    offline, and B then answers offers made at once with 409 host_offline, leaving no pipe behind."""
    a, b = pair
    room = await b.room_client()
    host = await _go_live(a)
    await room.wait_event("stream.state", state="online")
    viewers = [await client.watch(b.whep, await b.guest()) for _ in range(2)]
    await asyncio.gather(*(viewer.wait_connected(seconds(10)) for viewer in viewers))
    session_path = host.location.removeprefix(a.base_url)
    assert (await _delete(b.base_url + session_path, b.host)).status_code == 200
    await room.wait_event("stream.state", state="offline")
    await until(lambda: all(v.pc.connectionState == "closed" for v in viewers), what="B's viewers' peers to close")
    await until(lambda: b.relay.stats()["peers"] == 0 and a.relay.stats()["peers"] == 0, what="every peer to end")
    assert b.relay.stats()["pipes_in"] == 0 and a.relay.stats()["pipes_out"] == 0
    guests = [await b.guest() for _ in range(3)]
    refused = await asyncio.gather(*(client.watch(b.whep, guest) for guest in guests), return_exceptions=True)
    for offline in refused:  # offers at once while no process streams the room: one failed pipe, three 409s
        assert isinstance(offline, WhipError) and offline.status == 409 and "host_offline" in offline.body
    assert b.relay.stats()["peers"] == 0 and b.relay.stats()["pipes_in"] == 0
    for session in (*viewers, host):
        await session.stop(delete=False)
    await room.close()


async def test_the_pipe_stays_while_viewers_come_and_closes_after_the_last_leaves(pair: tuple[Live, Live]) -> None:
    """A viewer of B leaving by a DELETE sent to A ends its session on B; a viewer joining within the linger reuses
    the pipe; the pipe closes once no viewer has been on B for VIDEO_PIPE_LINGER_MS, and A stops sending it."""
    a, b = pair
    b.relay.options = replace(b.relay.options, pipe_linger=seconds(3))
    host = await _go_live(a)
    first = await client.watch(b.whep, await b.guest())
    await until(lambda: _frames(first, "video") >= 10, what="frames on B")
    pipe = next(peer.id for peer in b.relay._peers.values() if peer.side is Side.PIPE)

    session_path = first.location.removeprefix(b.base_url)
    assert (await _delete(a.base_url + session_path, first.token)).status_code == 200  # B's session, through A
    await until(lambda: b.relay.stats()["viewers"] == 0, what="the session to end on B")
    assert (await _delete(a.base_url + session_path, first.token)).status_code == 404
    assert (await _delete(f"{a.whep}/gone-123.abc", first.token)).status_code == 404  # a process that is not there
    await first.stop(delete=False)

    second = await client.watch(b.whep, await b.guest())  # within the linger: the same pipe
    await until(lambda: _frames(second, "video") >= 10, what="frames on B again")
    assert [peer.id for peer in b.relay._peers.values() if peer.side is Side.PIPE] == [pipe]
    assert a.relay.stats()["pipes_out"] == 1
    await second.stop()
    await until(lambda: b.relay.stats()["viewers"] == 0, what="the second session to end")
    assert b.relay.stats()["pipes_in"] == 1  # lingering
    await until(lambda: b.relay.stats()["pipes_in"] == 0, timeout=10, what="the pipe to close after the linger")
    await until(lambda: a.relay.stats()["pipes_out"] == 0, what="A to end its side of the pipe")
    assert b.relay.stats()["peers"] == 0 and a.relay.stats()["live"] == 1
    await host.stop()


# --- two operating-system processes -------------------------------------------------------


async def _metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.metrics_headers) as http:
        text = (await http.get("/metrics")).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def _until_metric(server: ServerProcess, name: str, value: float, what: str) -> None:
    """Wait until the server's /metrics shows `name` at `value` (the relay's sweep sets it every second)."""
    seen: list[float] = []

    async def read() -> None:
        seen.append(await _metric(server, name))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(10)
    while not seen or seen[-1] != value:
        assert loop.time() < deadline, f"{what}: {name} is {seen[-1:]}, not {value}"
        await read()
        if seen[-1] != value:
            await asyncio.sleep(0.2)


async def test_two_server_processes_each_serve_their_own_viewers_of_a_room(
    stores: dict[str, str], tmp_path: Path
) -> None:
    """Two real server processes: the host publishes to the first, viewers POST to either and decode video and audio;
    each process serves its own viewers (/metrics), the second from one pipe, which closes VIDEO_PIPE_LINGER_MS after
    its viewers left by DELETEs sent to the first."""
    env = {**stores, "SECRET_KEY": SECRET_KEY, "VIDEO_PIPE_LINGER_MS": "300"}
    # Loopback only, as the test's peers: the machine's other addresses may come and go (network namespaces).
    command = [sys.executable, "-c", f"{LOOPBACK_ONLY}; import runpy; runpy.run_module('server', run_name='__main__')"]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = await asyncio.to_thread(launcher.start_server, tmp_path / "a", env, command=command)
    try:
        second = await asyncio.to_thread(launcher.start_server, tmp_path / "b", env, command=command)
    except BaseException:
        first.stop()
        raise
    sessions: list[Session] = []
    try:
        shop = await asyncio.to_thread(make_shop, first.base_url, first.ws_url, stores["REDIS_URL"])
        whip = f"{first.base_url}/whip/{shop.room_id}"
        host = await client.publish(whip, shop.host, PatternTrack(WIDTH, HEIGHT), AudioStreamTrack())
        sessions.append(host)
        await _until_metric(first, "livecart_video_rooms_live", 1, "the host live on the first process")
        viewers = []
        for server in (first, second, second):
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                guest = (await http.post("/api/guest")).json()["token"]
            viewers.append(await client.watch(f"{server.base_url}/whep/{shop.room_id}", guest))
        sessions += viewers

        def counts() -> list[tuple[int, int]]:
            return [(_frames(viewer, "video"), _frames(viewer, "audio")) for viewer in viewers]

        try:
            await until(
                lambda: all(video >= 30 and audio >= 50 for video, audio in counts()),
                what="30 video and 50 audio frames on every viewer",
            )
        except AssertionError as problem:
            raise AssertionError(f"{problem}; (video, audio) frames of each viewer: {counts()}") from None
        assert all(viewer.counters["video"].sizes == {(WIDTH, HEIGHT)} for viewer in viewers)
        await _until_metric(second, "livecart_video_viewers", 2, "the second process's viewers")
        await _until_metric(first, "livecart_video_viewers", 1, "the first process's viewer (the pipe is none)")
        assert await _metric(second, "livecart_video_pipes") == 1
        assert await _metric(second, "livecart_video_rooms_live") == 0

        for viewer in viewers[1:]:
            path = viewer.location.removeprefix(second.base_url)
            assert (await _delete(first.base_url + path, viewer.token)).status_code == 200
            await viewer.stop(delete=False)
        await _until_metric(second, "livecart_video_pipes", 0, "the pipe to close after the linger")
        assert _frames(viewers[0], "video") > 0
    finally:
        for session in sessions:
            await session.stop()
        second.stop()
        first.stop()


async def test_a_pipe_that_ends_ends_its_viewers_and_the_next_viewer_opens_a_new_one(pair: tuple[Live, Live]) -> None:
    """A's end of B's pipe closed while the host streams on: B's viewers end with it; the next WHEP on B opens a
    new pipe and decodes."""
    a, b = pair
    host = await _go_live(a)
    viewers = [await client.watch(b.whep, await b.guest(), decode=False) for _ in range(2)]
    await until(lambda: all(_frames(v, "video") >= 10 for v in viewers), what="frames on B")
    (sending,) = [peer for peer in a.relay._peers.values() if peer.side is Side.PIPE]
    await a.relay.end(sending, "closed by the test")
    await until(lambda: all(v.pc.connectionState == "closed" for v in viewers), what="B's viewers to end")
    await until(lambda: b.relay.stats()["peers"] == 0, what="B's pipe and sessions to end")
    assert a.relay.stats()["live"] == 1 and a.relay.stats()["pipes_out"] == 0

    again = await client.watch(b.whep, await b.guest())
    await until(lambda: _frames(again, "video") >= 10, what="frames through a new pipe")
    assert b.relay.stats()["pipes_in"] == 1 and a.relay.stats()["pipes_out"] == 1
    for session in (*viewers, again):
        await session.stop(delete=False)
    await host.stop()
