"""Live video end to end: aiortc publishers and viewers, WHIP/WHEP over HTTP, the real app on real Redis.

The server runs in the test's event loop (uvicorn as a task) so the tests can look at its relay.
Every ICE candidate is 127.0.0.1: media never leaves the loopback interface.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import aioice.ice
import httpx
import pytest
import uvicorn
from aioice import stun
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack
from redis.asyncio import Redis
from starlette.applications import Starlette

from loadtests.support import tokens
from server.access.tokens import Identity, Tokens
from server.app import create_app
from server.config import Settings
from server.protocol import Role
from server.rooms.catalog import Catalog
from server.webserver import WS_PROTOCOL
from streaming import client, passthrough
from streaming.client import PatternTrack, Session, WhipError
from streaming.ice import TURN_TTL_SECONDS
from streaming.relay import Relay
from tests.client import RoomClient
from tests.conftest import ROOT, SECRET_KEY, free_port
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

WIDTH, HEIGHT = 320, 240
METRICS_TOKEN = "livecart-test-metrics"
LOOPBACK_ONLY = "import aioice.ice; aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ['127.0.0.1']"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every ICE candidate on 127.0.0.1 (aioice would also offer the machine's other addresses)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@dataclass
class Live:
    """The running app, a merchant with a room, and its staff tokens."""

    app: Starlette
    server: uvicorn.Server
    base_url: str
    room_id: str
    merchant_id: str
    host: str
    admin: str

    @property
    def relay(self) -> Relay:
        return self.app.state.node.relay  # type: ignore[no-any-return]

    @property
    def whip(self) -> str:
        return f"{self.base_url}/whip/{self.room_id}"

    @property
    def whep(self) -> str:
        return f"{self.base_url}/whep/{self.room_id}"

    def token(self, role: Role, merchant_id: str | None = None, ttl: int = 3600) -> str:
        """A token of someone new in this role (staff of `merchant_id`), valid `ttl` seconds."""
        roles = {merchant_id: role} if merchant_id and role is not Role.VIEWER else {}
        who = Identity(f"u_{role.value}_{os.urandom(3).hex()}", "T", "ses_" + os.urandom(8).hex(),
                       int(time.time()) + ttl, guest=False, roles=roles)  # fmt: skip
        return Tokens(SECRET_KEY).issue(who)

    async def guest(self) -> str:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return str((await http.post("/api/guest")).json()["token"])

    async def room_client(self) -> RoomClient:
        ws_url = self.base_url.replace("http://", "ws://")
        return await RoomClient.connect(f"{ws_url}/ws/rooms/{self.room_id}?token={await self.guest()}")


async def _start(stores: dict[str, str], tmp_path: Path, **overrides: Any) -> Live:
    port = free_port()
    extra: dict[str, Any] = {"limit_guests": (100_000, 1), "video_sessions_per_address": 100_000}  # all 127.0.0.1
    settings = Settings(
        port=port,
        redis_url=stores["REDIS_URL"],
        database_url=stores["DATABASE_URL"],
        data_dir=tmp_path,
        secret_key=SECRET_KEY,
        seed_demo=False,
        metrics_token=METRICS_TOKEN,
        **{**extra, **overrides},
    )
    entry = create_app(settings)
    app = cast(Starlette, getattr(entry, "app", entry))  # the Starlette app inside the ASGI entry point
    server = uvicorn.Server(uvicorn.Config(entry, host="127.0.0.1", port=port, log_level="warning", ws=WS_PROTOCOL))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.02)
    server.task = task  # type: ignore[attr-defined]
    merchant_id = "m" + os.urandom(4).hex()
    redis = Redis.from_url(stores["REDIS_URL"], decode_responses=True)
    try:
        await Catalog(redis).create_merchant(merchant_id, "Video shop")
    finally:
        await redis.aclose()
    admin = tokens.staff(SECRET_KEY, merchant_id, Role.ADMIN, "Admin")
    host = tokens.staff(SECRET_KEY, merchant_id, Role.HOST, "Host")
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {admin}"}) as http:
        room = await http.post(f"/api/merchants/{merchant_id}/rooms", json={"title": "Live video"})
        room.raise_for_status()
    return Live(app, server, base_url, room.json()["id"], merchant_id, host, admin)


async def _stop(live: Live) -> None:
    live.server.should_exit = True
    await live.server.task  # type: ignore[attr-defined]


@pytest.fixture
async def live(stores: dict[str, str], tmp_path: Path) -> AsyncIterator[Live]:
    started = await _start(stores, tmp_path)
    yield started
    await _stop(started)


async def _go_live(live: Live, codec: str = "", audio: bool = True) -> Session:
    host = await client.publish(
        live.whip, live.host, PatternTrack(WIDTH, HEIGHT), AudioStreamTrack() if audio else None, codec
    )
    await until(lambda: live.relay.stats()["live"] == 1, what="the host to go live")
    return host


def _server_peers() -> int:
    return sum(isinstance(item, RTCPeerConnection) for item in gc.get_objects())


# --- media ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_every_viewer_decodes_the_hosts_video_and_audio(live: Live, codec: str) -> None:
    """Three viewers each decode frames of the host's size (VP8 or H.264) and Opus audio, forwarded undecoded."""
    host = await _go_live(live, codec)
    viewers = [await client.watch(live.whep, await live.guest()) for _ in range(3)]

    def frames(viewer: Session, kind: str) -> int:
        return viewer.counters[kind].frames if kind in viewer.counters else 0

    await until(
        lambda: all(frames(v, "video") >= 30 and frames(v, "audio") >= 50 for v in viewers),
        what="30 video and 50 audio frames on every viewer",
    )
    for viewer in viewers:
        video, audio = viewer.counters["video"], viewer.counters["audio"]
        assert video.frames >= 30, f"only {video.frames} video frames"
        assert video.sizes == {(WIDTH, HEIGHT)}
        assert audio.frames >= 50, f"only {audio.frames} audio frames"
    assert live.relay.stats()["viewers"] == 3
    for viewer in viewers:
        await viewer.stop()
    await host.stop()


async def test_late_viewer_gets_a_picture_within_two_seconds(live: Live) -> None:
    """A viewer joining mid-stream starts at a keyframe the host sends on request (aiortc sends no others)."""
    host = await _go_live(live)
    early = await client.watch(live.whep, await live.guest())
    # Mid-stream: the early viewer has had its keyframe and a second of video since.
    await until(lambda: "video" in early.counters and early.counters["video"].frames >= 30, what="the stream")
    requests_before = live.relay.stats()["keyframe_requests"]
    late = await client.watch(live.whep, await live.guest())
    await until(lambda: "video" in late.counters and late.counters["video"].frames > 0, timeout=2, what="a picture")
    counter = late.counters["video"]
    assert counter.first is not None and counter.first < seconds(2.0)
    assert counter.sizes == {(WIDTH, HEIGHT)}
    assert live.relay.stats()["keyframe_requests"] > requests_before
    await until(lambda: counter.frames >= 20, what="the picture to carry on")
    for session in (late, early, host):
        await session.stop()


async def test_viewers_picture_loss_report_brings_a_keyframe_from_the_host(live: Live) -> None:
    """A viewer's RTCP PLI is forwarded to the host, whose next frame is a keyframe for that viewer."""
    host = await _go_live(live)
    viewer = await client.watch(live.whep, await live.guest(), kinds=("video",), decode=False)
    await until(lambda: "video" in viewer.counters and viewer.counters["video"].frames > 30)
    counter = viewer.counters["video"]
    assert counter.keyframes == 1  # the one it started from: aiortc hosts send no others unasked
    requests = live.relay.stats()["keyframe_requests"]
    receiver = next(r for r in viewer.pc.getReceivers() if r.track.kind == "video")
    await passthrough.request_keyframe(receiver)
    await until(lambda: counter.keyframes == 2, timeout=2, what="a keyframe")
    assert live.relay.stats()["keyframe_requests"] == requests + 1
    await viewer.stop()
    await host.stop()


async def test_viewer_asking_only_for_video_gets_only_video(live: Live) -> None:
    """A WHEP offer with just a video section is answered with just video."""
    host = await _go_live(live)
    viewer = await client.watch(live.whep, await live.guest(), kinds=("video",))
    await until(lambda: viewer.counters.get("video") is not None and viewer.counters["video"].frames > 5)
    assert set(viewer.counters) == {"video"}
    await viewer.stop()
    await host.stop()


async def test_a_viewer_holds_two_video_sessions_and_signing_out_ends_them(live: Live) -> None:
    """One guest's third video session is refused (429: VIDEO_SESSIONS_PER_USER); signing that guest out ends its
    sessions within 2 s while another viewer watches on."""
    host = await _go_live(live)
    guest = await live.guest()
    mine = [await client.watch(live.whep, guest, decode=False) for _ in range(2)]
    with pytest.raises(WhipError) as refused:
        await client.watch(live.whep, guest, decode=False)
    assert refused.value.status == 429 and "rate_limited" in str(refused.value)
    other = await client.watch(live.whep, await live.guest(), decode=False)
    assert live.relay.stats()["viewers"] == 3
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        signed_out = await http.post("/api/sessions/sign-out", headers={"Authorization": f"Bearer {guest}"})
        assert signed_out.status_code == 204
    await until(lambda: live.relay.stats()["viewers"] == 1, timeout=2, what="the guest's sessions to end")
    for session in (*mine, other, host):
        await session.stop()


# --- room status ------------------------------------------------------------------------


async def test_room_status_follows_the_host_starting_and_stopping(live: Live) -> None:
    """Viewers' rooms get stream.state online when media flows and offline on DELETE; viewers' peers close."""
    room = await live.room_client()
    assert room.first is not None and room.first["room"]["stream"] == "offline"
    host = await _go_live(live)
    await room.wait_event("stream.state", state="online")
    viewer = await client.watch(live.whep, await live.guest())
    await viewer.wait_connected(seconds(10))
    await host.stop()
    await room.wait_event("stream.state", state="offline")
    await until(lambda: viewer.pc.connectionState == "closed", what="the viewer's peer to close")
    assert live.relay.stats()["peers"] == 0
    late = await live.room_client()
    assert late.first is not None and late.first["room"]["stream"] == "offline"
    await viewer.stop(delete=False)
    await room.close()
    await late.close()


async def test_host_that_drops_without_a_word_takes_the_room_offline(live: Live) -> None:
    """A publisher process killed mid-stream (no DELETE, no RTCP BYE) ends the stream after the media timeout."""
    live.relay.options = replace(live.relay.options, media_timeout=1.5)
    room = await live.room_client()
    code = f"{LOOPBACK_ONLY}; import runpy; runpy.run_module('streaming.client', run_name='__main__')"
    publisher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "publish", live.whip, "--token", live.host, "--size", f"{WIDTH}x{HEIGHT}",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await room.wait_event("stream.state", timeout=20, state="online")
        viewer = await client.watch(live.whep, await live.guest())
        await viewer.wait_connected(seconds(10))
        publisher.send_signal(signal.SIGKILL)
        await room.wait_event("stream.state", timeout=10, state="offline")
        await until(lambda: viewer.pc.connectionState == "closed", what="the viewer's peer to close")
        assert live.relay.stats()["peers"] == 0
        with pytest.raises(WhipError) as refused:
            await client.watch(live.whep, await live.guest())
        assert refused.value.status == 409 and "host_offline" in refused.value.body
        await viewer.stop(delete=False)
    finally:
        if publisher.returncode is None:
            publisher.kill()
        await publisher.wait()
        await room.close()


# --- bad input --------------------------------------------------------------------------


async def _post(url: str, body: str, token: str | None, content_type: str = "application/sdp") -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as http:
        return await http.post(url, content=body, headers=headers)


async def _offer(kind: str = "publish") -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly" if kind == "publish" else "recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_bad_requests_get_clear_errors_and_disturb_nothing(live: Live) -> None:
    """Bad tokens, roles, rooms, bodies and sessions get 4xx JSON errors; the live stream carries on."""
    publish_offer, watch_offer = await _offer("publish"), await _offer("watch")
    guest = await live.guest()
    other_shop_host = live.token(Role.HOST, "m_other")
    unknown_room = f"{live.base_url}/whip/no-such-room"

    async def refused(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code

    await refused(await _post(live.whep, watch_offer, guest), 409, "host_offline")
    host = await _go_live(live)
    viewer = await client.watch(live.whep, guest)
    await viewer.wait_connected(seconds(10))
    before = live.relay.stats()

    await refused(await _post(live.whip, publish_offer, None), 401, "invalid_token")
    await refused(
        await _post(live.whip, publish_offer, live.token(Role.HOST, live.merchant_id, ttl=-10)), 401, "invalid_token"
    )
    await refused(await _post(live.whip, publish_offer, "forged.token"), 401, "invalid_token")
    await refused(await _post(live.whip, publish_offer, guest), 403, "forbidden")
    await refused(await _post(live.whip, publish_offer, other_shop_host), 403, "forbidden")
    await refused(await _post(unknown_room, publish_offer, live.host), 404, "not_found")
    await refused(await _post(live.whip, publish_offer, live.host, "application/json"), 415, "unsupported_media_type")
    await refused(await _post(live.whip, "v=0\r\nthis is not sdp", live.host), 400, "bad_offer")
    await refused(await _post(live.whip, watch_offer, live.host), 400, "bad_offer")
    await refused(await _post(live.whip, "x" * 70_000, live.host), 413, "too_large")
    await refused(await _post(live.whip, publish_offer, live.admin), 409, "already_publishing")
    await refused(await _post(live.whep, "garbage", guest), 400, "bad_offer")
    await refused(await _post(live.whep, watch_offer, None), 401, "invalid_token")

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {guest}"}) as http:
        await refused(await http.delete(f"{live.whep}/no-such-session"), 404, "not_found")
        await refused(await http.delete(host.location), 403, "forbidden")
        await refused(await http.patch(viewer.location, content="a=candidate"), 415, "unsupported_media_type")
    async with httpx.AsyncClient() as http:
        await refused(await http.delete(viewer.location), 401, "invalid_token")

    assert live.relay.stats()["peers"] == before["peers"]
    frames = viewer.counters["video"].frames
    await until(lambda: viewer.counters["video"].frames > frames + 5, timeout=2, what="the stream to carry on")
    assert viewer.counters["video"].frames > frames + 5, "the stream stalled"
    await viewer.stop()
    await host.stop()


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN binding requests with the sender's address, as any STUN server does."""

    def __init__(self) -> None:
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = stun.parse_message(data)
        if request.message_method == stun.Method.BINDING and request.message_class == stun.Class.REQUEST:
            self.requests += 1
            response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            self.transport.sendto(bytes(response), addr)


async def test_answer_lists_ice_servers_with_short_lived_turn_credentials(
    stores: dict[str, str], tmp_path: Path
) -> None:
    """The 201 carries one Link rel="ice-server" per server, TURN ones with REST credentials; the server uses STUN."""
    loop = asyncio.get_running_loop()
    transport, stun_server = await loop.create_datagram_endpoint(StunServer, local_addr=("127.0.0.1", 0))
    stun_port = transport.get_extra_info("sockname")[1]
    servers = (f"stun:127.0.0.1:{stun_port}", "turn:127.0.0.1:3478?transport=udp")
    started = await _start(stores, tmp_path, ice_servers=servers, turn_secret="s3cret")
    try:
        viewer_offer = await _offer("watch")
        host = await _go_live(started)
        response = await _post(started.whep, viewer_offer, await started.guest())
        assert response.status_code == 201
        links = response.headers.get_list("link")
        assert links[0] == f'<stun:127.0.0.1:{stun_port}>; rel="ice-server"'
        turn = re.fullmatch(
            r'<turn:127.0.0.1:3478\?transport=udp>; rel="ice-server"; username="(\d+):(\w+)"; '
            r'credential="([^"]+)"; credential-type="password"',
            links[1],
        )
        assert turn is not None, links[1]
        expiry, user_id, password = int(turn[1]), turn[2], turn[3]
        assert user_id.startswith("g_") and 0 < expiry - time.time() <= TURN_TTL_SECONDS
        digest = hmac.new(b"s3cret", f"{expiry}:{user_id}".encode(), hashlib.sha1).digest()
        assert password == base64.b64encode(digest).decode()
        assert host.links[0] == links[0]
        assert stun_server.requests >= 2  # the host's and the viewer's server-side peers asked for their address
        await host.stop()
    finally:
        await _stop(started)
        transport.close()


# --- lifecycle --------------------------------------------------------------------------


async def test_sessions_leave_no_peers_tasks_threads_or_memory_behind(live: Live) -> None:
    """Three rounds of a host and three viewers: then the relay, the loop and the heap are back where they were."""

    async def one_round() -> None:
        host = await _go_live(live)
        viewers = [await client.watch(live.whep, await live.guest()) for _ in range(3)]
        await until(lambda: all(v.counters.get("video") and v.counters["video"].frames > 10 for v in viewers))
        for viewer in viewers[:2]:
            await viewer.stop()
        await host.stop()  # the last viewer is ended by the server
        await until(lambda: viewers[2].pc.connectionState == "closed")
        await viewers[2].stop(delete=False)
        await until(lambda: live.relay.stats()["peers"] == 0)

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def decoders() -> list[str]:
        """aiortc's decoder threads (one per receiving track), which end a moment after their peer closes."""
        return [thread.name for thread in threading.enumerate() if thread.name.endswith("-decoder")]

    await one_round()  # warm up: codecs, caches, executor threads, the relay's own two tasks
    await until(lambda: not decoders(), what="the warm-up's decoder threads to end")
    gc.collect()
    tasks, threads, memory = len(asyncio.all_tasks()), threading.active_count(), rss()
    for _ in range(3):
        await one_round()
    # Closed peers' threads and tasks end a moment later (later still on a busy machine): wait, bounded.
    await until(
        lambda: len(asyncio.all_tasks()) <= tasks and threading.active_count() <= threads,
        what=f"tasks and threads to come back to {tasks} and {threads}",
    )
    gc.collect()
    stats = live.relay.stats()
    assert (stats["rooms"], stats["viewers"], stats["peers"]) == (0, 0, 0)
    assert _server_peers() == 0
    assert len(asyncio.all_tasks()) <= tasks
    assert threading.active_count() <= threads, [thread.name for thread in threading.enumerate()]
    assert rss() - memory < 20 * 1024 * 1024


async def test_shutdown_closes_every_peer_and_takes_the_room_offline(
    redis_url: str, stores: dict[str, str], tmp_path: Path
) -> None:
    """Stopping the server closes the host's and viewers' peers and announces the room offline."""
    started = await _start(stores, tmp_path)
    sessions = [await _go_live(started)]
    sessions += [await client.watch(started.whep, await started.guest()) for _ in range(2)]
    await asyncio.gather(*(session.wait_connected(seconds(10)) for session in sessions))
    relay = started.relay
    await _stop(started)
    assert relay.stats()["peers"] == 0
    await until(lambda: all(session.pc.connectionState == "closed" for session in sessions), what="peers to close")
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        room = await Catalog(redis).get_room(started.room_id)
    finally:
        await redis.aclose()
    assert room is not None and room.stream == "offline"
    await asyncio.gather(*(session.stop(delete=False) for session in sessions))
    sessions.clear()  # the test's own peers: any peer left now would be the server's
    gc.collect()
    assert _server_peers() == 0


# --- several server processes: tests/streaming/test_cascade.py ---------------------------


async def test_metrics_count_live_video_rooms_and_viewers(live: Live) -> None:
    """/metrics shows the live video rooms and viewers of this server within a second or two."""
    from prometheus_client.parser import text_string_to_metric_families

    def sample(name: str, text: str) -> float:
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    host = await _go_live(live)
    viewer = await client.watch(live.whep, await live.guest())
    await viewer.wait_connected(seconds(10))
    deadline = asyncio.get_running_loop().time() + seconds(6)
    async with httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as http:
        while True:
            text = (await http.get("/metrics")).text
            if sample("livecart_video_viewers", text) >= 1 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
    assert sample("livecart_video_rooms_live", text) >= 1 and sample("livecart_video_viewers", text) >= 1
    await viewer.stop()
    await host.stop()
