"""Live video over a real, lossy network: retransmission, keyframes, trickle ICE and ICE restart (RFC 9725 PATCH).

Each test builds a network: a network namespace (`ip netns add`) joined to the test's namespace by a link whose
two ends are TUN devices, with a forwarding process between them that drops and delays packets, each direction
on its own (5% random loss, 20 ms delay). The server runs in the test's event loop on the root end's address
(its HTTP and every ICE candidate there); a client inside the namespace (`ip netns exec`, its own process)
reaches it only through the link. The kernel here has no `sch_netem` (`tc qdisc add ... netem` answers
"Specified qdisc kind is unknown"), so the forwarder is the link's netem: what it drops never arrives, as on a
radio link. Needs root (CAP_NET_ADMIN) and /dev/net/tun: skipped otherwise, with the reason.

Measured as a viewer sees it: frames decoded per second, and the longest gap between two decoded frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import random
import secrets
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO, cast

import aioice.ice
import av
import httpx
import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from redis.asyncio import Redis
from starlette.applications import Starlette

from loadtests.support import tokens
from loadtests.support.server import ServerProcess
from server.app import create_app
from server.config import Settings
from server.protocol import Role
from server.rooms.catalog import Catalog
from server.webserver import WS_PROTOCOL
from streaming import client, ice_restart, nack, passthrough
from streaming.client import PatternTrack, Session
from streaming.peers import Side
from streaming.relay import Relay
from tests.conftest import ROOT, SECRET_KEY, free_port
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

WIDTH, HEIGHT = 640, 360
LOSS, DELAY = 0.05, 0.020  # each direction of the lossy link
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


# --- the link: two TUN devices and a forwarder that drops and delays -------------------------


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _forward_main() -> None:
    """The link's forwarder (its own process): creates TUN devices argv[1] (root end) and argv[2] (namespace end),
    then copies IP packets between them, dropping and delaying each direction as stdin's JSON lines say
    ({"down": [loss, delay], "up": [loss, delay]}; down = towards the namespace); {"stats": 1} prints counts."""
    root, far = _open_tun(sys.argv[1]), _open_tun(sys.argv[2])
    rules = {"down": (0.0, 0.0), "up": (0.0, 0.0)}
    counts = {"down": [0, 0], "up": [0, 0]}  # forwarded, dropped
    print(json.dumps({"ready": True}), flush=True)

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def pump(source: int, target: int, direction: str) -> None:
            while True:
                try:
                    packet = os.read(source, 65536)
                except BlockingIOError:
                    return
                loss, delay = rules[direction]
                if random.random() < loss:
                    counts[direction][1] += 1
                    continue
                counts[direction][0] += 1
                loop.call_later(delay, _write, target, packet)

        loop.add_reader(root, pump, root, far, "down")
        loop.add_reader(far, pump, far, root, "up")
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            for direction in ("down", "up"):
                if direction in command:
                    rules[direction] = (float(command[direction][0]), float(command[direction][1]))
            print(json.dumps({"ok": True, "counts": counts}), flush=True)

    asyncio.run(run())


def _write(fd: int, packet: bytes) -> None:
    with contextlib.suppress(OSError):  # the device went away (the test is over)
        os.write(fd, packet)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Network:
    """A namespace joined to the test's by a lossy link: the server listens on `server_ip`, clients in the
    namespace have `client_ip` (until `move` gives them another)."""

    namespace: str
    device: str  # the namespace's end of the link
    server_ip: str
    client_ip: str
    forwarder: subprocess.Popen[str]
    prefix: str

    def impair(self, down: tuple[float, float] = (0.0, 0.0), up: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
        """Set each direction's (loss, delay in seconds); returns the counts so far per direction (forwarded,
        dropped). down = from the server to the namespace."""
        assert self.forwarder.stdin is not None and self.forwarder.stdout is not None
        self.forwarder.stdin.write(json.dumps({"down": down, "up": up}) + "\n")
        self.forwarder.stdin.flush()
        return dict(json.loads(self.forwarder.stdout.readline())["counts"])

    def counts(self) -> dict[str, Any]:
        assert self.forwarder.stdin is not None and self.forwarder.stdout is not None
        self.forwarder.stdin.write("{}\n")
        self.forwarder.stdin.flush()
        return dict(json.loads(self.forwarder.stdout.readline())["counts"])

    def move(self, last_octet: int) -> str:
        """Give the namespace's clients a new address and take the old one away (a phone leaving one Wi-Fi for
        another): every path from the old address dies."""
        new = f"{self.prefix}.{last_octet}"
        promote = f"echo 1 > /proc/sys/net/ipv4/conf/{self.device}/promote_secondaries"  # keep the new one
        _ip("netns", "exec", self.namespace, "sh", "-c", promote)
        _ip("-n", self.namespace, "addr", "add", f"{new}/24", "dev", self.device)
        _ip("-n", self.namespace, "addr", "del", f"{self.client_ip}/24", "dev", self.device)
        self.client_ip = new
        return new


def _why_no_network() -> str | None:
    if sys.platform != "linux" or shutil.which("ip") is None:
        return "needs Linux with iproute2"
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create a network namespace and TUN devices"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "needs /dev/net/tun"
    return None


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """A fresh namespace and lossless link (tests set the loss); everything it made is removed afterwards."""
    reason = _why_no_network()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    namespace, root_end, far_end = f"lcn{tag}", f"lcr{tag}", f"lcf{tag}"
    prefix = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
    try:
        _ip("netns", "add", namespace)
    except subprocess.CalledProcessError as problem:
        pytest.skip(f"cannot create a network namespace: {problem.stderr.strip()}")
    log = (tmp_path / "forwarder.log").open("w")
    forwarder = subprocess.Popen(
        [sys.executable, "-c", "from tests.streaming.test_networks import _forward_main; _forward_main()",
         root_end, far_end],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        text=True,
    )  # fmt: skip
    try:
        assert forwarder.stdout is not None
        if not forwarder.stdout.readline().strip():  # it could not open its TUN devices: say why
            log.flush()
            pytest.skip(f"cannot create TUN devices: {(tmp_path / 'forwarder.log').read_text().strip()[-300:]}")
        _ip("link", "set", far_end, "netns", namespace)
        _ip("addr", "add", f"{prefix}.1/24", "dev", root_end)
        _ip("link", "set", root_end, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "addr", "add", f"{prefix}.2/24", "dev", far_end)
        _ip("-n", namespace, "link", "set", far_end, "up")
        yield Network(namespace, far_end, f"{prefix}.1", f"{prefix}.2", forwarder, prefix)
    finally:
        forwarder.kill()  # its TUN devices go with it
        forwarder.wait()
        log.close()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", root_end], capture_output=True, timeout=10)


# --- the server, in the test's event loop, on the link's root end ---------------------------


@dataclass
class Live:
    app: Starlette
    server: uvicorn.Server
    base_url: str
    room_id: str
    host: str

    @property
    def relay(self) -> Relay:
        return self.app.state.node.relay  # type: ignore[no-any-return]

    @property
    def whip(self) -> str:
        return f"{self.base_url}/whip/{self.room_id}"

    @property
    def whep(self) -> str:
        return f"{self.base_url}/whep/{self.room_id}"

    async def guest(self) -> str:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return str((await http.post("/api/guest")).json()["token"])


@pytest.fixture
async def live(
    network: Network, stores: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    """The app on the link's root end: HTTP there, and every ICE candidate of this process there too."""
    address = network.server_ip
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [address])
    port = free_port()
    settings = Settings(
        host=address,
        port=port,
        redis_url=stores["REDIS_URL"],
        database_url=stores["DATABASE_URL"],
        data_dir=tmp_path,
        secret_key=SECRET_KEY,
        seed_demo=False,
        limit_guests=(100_000, 1),
        video_sessions_per_address=100_000,
    )
    entry = create_app(settings)
    app = cast(Starlette, getattr(entry, "app", entry))
    server = uvicorn.Server(uvicorn.Config(entry, host=address, port=port, log_level="warning", ws=WS_PROTOCOL))
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), what="the server to start")
    assert server.started, "the server did not start"
    merchant_id = "m" + os.urandom(4).hex()
    redis = Redis.from_url(stores["REDIS_URL"], decode_responses=True)
    try:
        await Catalog(redis).create_merchant(merchant_id, "Network shop")
    finally:
        await redis.aclose()
    admin = tokens.staff(SECRET_KEY, merchant_id, Role.ADMIN, "Admin")
    base_url = f"http://{address}:{port}"
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {admin}"}) as http:
        room = await http.post(f"/api/merchants/{merchant_id}/rooms", json={"title": "Lossy"})
        room.raise_for_status()
    host = tokens.staff(SECRET_KEY, merchant_id, Role.HOST, "Host")
    yield Live(app, server, base_url, room.json()["id"], host)
    server.should_exit = True
    await task


# --- clients: what a viewer sees --------------------------------------------------------------


@dataclass
class Frames:
    """When each video frame reached the viewer (decoded, or reassembled when not decoding) and if it was a key."""

    times: list[float] = field(default_factory=list)
    keys: list[float] = field(default_factory=list)
    listener: Callable[[float, bool], None] | None = None

    def add(self, at: float, key: bool) -> None:
        self.times.append(at)
        if key:
            self.keys.append(at)
        if self.listener is not None:
            self.listener(at, key)

    def between(self, start: float, end: float) -> tuple[float, float]:
        """(frames per second, longest time without a frame) from `start` to `end`."""
        inside = [t for t in self.times if start <= t <= end]
        gaps = [b - a for a, b in itertools.pairwise([start, *inside, end])]
        return len(inside) / (end - start), max(gaps)


async def _read(track: MediaStreamTrack, frames: Frames) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        frames.add(time.monotonic(), bool(frame.is_keyframe) if isinstance(frame, av.Packet) else False)


async def watch(url: str, token: str, frames: Frames, decode: bool = True, trickle: bool = False) -> Session:
    """A WHEP viewer of the video only, noting each frame in `frames`. `trickle`: the offer goes without its
    candidates, which follow in a PATCH (If-Match: the 201's ETag)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    session = Session(pc, "", token, [])
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    nack.install(receiver)  # as browsers do: NACK again until the packet comes (aiortc alone asks once)
    if not decode:
        passthrough.install(receiver)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        session.readers.append(asyncio.ensure_future(_read(track, frames)))

    if not trickle:
        session.location, session.links = await client.negotiate(url, token, pc)
        return session
    await pc.setLocalDescription(await pc.createOffer())
    lines = pc.localDescription.sdp.splitlines()
    offer = "\r\n".join(line for line in lines if not line.startswith(("a=candidate", "a=end-of-candidates")))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30, headers=auth) as http:
        created = await http.post(url, content=offer + "\r\n", headers={"Content-Type": "application/sdp"})
        assert created.status_code == 201, created.text
        assert created.headers["accept-patch"] == ice_restart.MEDIA_TYPE
        session.location = created.headers["location"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=created.text, type="answer"))
        transport = ice_restart.ice_transport(pc)
        fragment = ice_restart.format_fragment(
            transport.iceGatherer.getLocalParameters().usernameFragment or "",
            transport.iceGatherer.getLocalParameters().password or "",
            transport.iceGatherer.getLocalCandidates(),
            pc.getTransceivers()[0].mid or "0",
        )
        headers = {"Content-Type": ice_restart.MEDIA_TYPE, "If-Match": created.headers["etag"]}
        patched = await http.patch(session.location, content=fragment, headers=headers)
        assert patched.status_code == 204, patched.text
        assert patched.headers["etag"] == created.headers["etag"]
    return session


def _peer_main() -> None:
    """One client in its own process (the tests start it inside the namespace): argv = role, url, token.
    Roles: publish (a 640x360 test pattern and audio), publish-without-rtx (the same, ignoring NACKs), watch
    (decoding viewer), keys (viewer of encoded frames).
    Prints JSON lines: {"location"}, then {"frame": t, "key": bool} per video frame; reads commands on stdin:
    restart (ICE restart over PATCH; prints {"restarted": true} then {"ice": connected?}), pli (asks for a
    keyframe, again every 300 ms until one comes, as browsers do; prints {"keyframe": seconds}), stop."""
    role, url, token = sys.argv[1:4]
    aioice.ice.get_host_addresses = _namespace_addresses  # the namespace's addresses as they are now
    asyncio.run(_peer(role, url, token))


def _namespace_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    output = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in output.splitlines() if " lo " not in line]


async def _peer(role: str, url: str, token: str) -> None:
    def say(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    frames = Frames(listener=lambda at, key: say(frame=at, key=key))
    if role == "publish-without-rtx":  # a publisher that never retransmits: what it loses is lost for good
        RTCRtpSender._retransmit = _no_retransmission  # type: ignore[method-assign,assignment]
    if role.startswith("publish"):
        session = await client.publish(url, token, PatternTrack(WIDTH, HEIGHT), AudioStreamTrack())
    else:
        session = await watch(url, token, frames, decode=role == "watch")
    say(location=session.location)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while command := (await reader.readline()).decode().strip():
        if command == "restart":
            await session.restart_ice()
            say(restarted=True)
            say(ice=await session.restarts[-1].connected, at=time.monotonic())
        elif command == "pli":
            receiver = session.pc.getReceivers()[0]
            asked, keys = time.monotonic(), len(frames.keys)
            while len(frames.keys) == keys:
                await passthrough.request_keyframe(receiver)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_keyframe(frames, keys), 0.3)
            say(keyframe=frames.keys[keys] - asked)
        elif command == "stop":
            await session.stop()
            break


async def _no_retransmission(sender: RTCRtpSender, sequence_number: int) -> None:
    """What a publisher without NACK support does with a NACK: nothing."""


async def _keyframe(frames: Frames, keys: int) -> None:
    while len(frames.keys) == keys:
        await asyncio.sleep(0.01)


class Peer:
    """A client process inside the namespace, and what it has said so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.frames = Frames()
        self.location = ""
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, network: Network, role: str, url: str, token: str, log: TextIO) -> Peer:
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", network.namespace, sys.executable, "-c",
            "from tests.streaming.test_networks import _peer_main; _peer_main()", role, url, token,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        peer = cls(process)
        peer.location = await peer.said("location", timeout=30)
        return peer

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            event = json.loads(line)
            if "frame" in event:
                self.frames.add(event["frame"], event["key"])
            else:
                self.events.append(event)

    async def said(self, key: str, timeout: float = 10) -> Any:
        """The value of the next `key` this peer says (waiting for it), consumed."""
        await until(lambda: any(key in event for event in self.events), timeout, f"the peer to say {key!r}")
        event = next(event for event in self.events if key in event)
        self.events.remove(event)
        return event[key]  # JSON: whatever the peer said

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.send("stop")
            try:
                await asyncio.wait_for(self.process.wait(), seconds(10))
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader


@contextlib.asynccontextmanager
async def peer(network: Network, role: str, url: str, token: str, tmp_path: Path) -> AsyncIterator[Peer]:
    with (tmp_path / f"peer-{role}-{secrets.token_hex(2)}.log").open("w") as log:
        started = await Peer.start(network, role, url, token, log)
        try:
            yield started
        finally:
            if started.process.returncode is None:
                started.process.kill()
            await started.process.wait()
            await started._reader


async def publish(live: Live) -> Session:
    host = await client.publish(live.whip, live.host, PatternTrack(WIDTH, HEIGHT), AudioStreamTrack())
    await until(lambda: live.relay.stats()["live"] == 1, what="the host to go live")
    return host


async def measure(frames: Frames, duration: float) -> tuple[float, float]:
    """Watch for `duration` seconds (real time: it is the measurement); (fps, longest gap) over that time."""
    start = time.monotonic()
    await asyncio.sleep(duration)  # the measurement window itself, not a wait for something to happen
    return frames.between(start, time.monotonic())


def _older_than(moment: float, age: float) -> bool:
    return time.monotonic() - moment > age


def _lossy(network: Network) -> None:
    network.impair(down=(LOSS, DELAY), up=(LOSS, DELAY))


def _dropped(before: dict[str, Any], after: dict[str, Any], direction: str) -> float:
    forwarded = int(after[direction][0] - before[direction][0])
    dropped = int(after[direction][1] - before[direction][1])
    return dropped / max(1, forwarded + dropped)


# --- loss ---------------------------------------------------------------------------------------


async def test_video_keeps_playing_at_five_percent_loss_on_the_viewers_link(
    network: Network, live: Live, tmp_path: Path
) -> None:
    """A decoding viewer behind a link losing 5% of packets each way (20 ms delay) keeps 25+ fps with no freeze
    over 0.5 s: the viewer NACKs what was lost and the relay retransmits it (RTX)."""
    host = await publish(live)
    async with peer(network, "watch", live.whep, await live.guest(), tmp_path) as viewer:
        await until(lambda: len(viewer.frames.times) >= 30, what="the viewer's first second of video")
        _lossy(network)
        before = network.counts()
        fps, gap = await measure(viewer.frames, seconds(10))
        after = network.counts()
        down = _dropped(before, after, "down")
        print(f"viewer's link at {down:.1%} loss down: {fps:.1f} fps, longest gap {gap * 1000:.0f} ms")
        assert down >= 0.03, f"the link lost only {down:.1%}"
        assert fps >= 25, f"{fps:.1f} fps at 5% loss"
        assert gap < 0.5, f"the picture froze for {gap:.2f} s"
        await viewer.stop()
    await host.stop()


async def test_video_keeps_playing_at_five_percent_loss_on_the_hosts_link(
    network: Network, live: Live, tmp_path: Path
) -> None:
    """A host behind a link losing 5% each way: the relay NACKs the host, and viewers on a clean link keep 25+ fps
    with no freeze over 0.5 s (a frame lost for good would freeze them until a keyframe)."""
    async with peer(network, "publish", live.whip, live.host, tmp_path) as host:
        await until(lambda: live.relay.stats()["live"] == 1, what="the host to go live")
        frames = Frames()
        viewer = await watch(live.whep, await live.guest(), frames)
        await until(lambda: len(frames.times) >= 30, what="the viewer's first second of video")
        _lossy(network)
        before = network.counts()
        fps, gap = await measure(frames, seconds(10))
        after = network.counts()
        up = _dropped(before, after, "up")
        print(f"host's link at {up:.1%} loss up: {fps:.1f} fps, longest gap {gap * 1000:.0f} ms")
        assert up >= 0.03, f"the link lost only {up:.1%}"
        assert fps >= 25, f"{fps:.1f} fps at 5% loss"
        assert gap < 0.5, f"the picture froze for {gap:.2f} s"
        await viewer.stop()
        await host.stop()


async def test_a_packet_lost_for_good_costs_a_viewer_under_a_second_not_a_freeze(
    network: Network, live: Live, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that never retransmits, behind a link losing 1% each way: each packet it loses is given up after
    0.5 s and a keyframe asked for, so viewers never wait a second for a picture (aiortc alone would hold every
    later frame until 512 more packets had come: over 10 s at this stream's rate)."""
    caplog.set_level(logging.INFO, logger="livecart.streaming")
    async with peer(network, "publish-without-rtx", live.whip, live.host, tmp_path) as host:
        await until(lambda: live.relay.stats()["live"] == 1, what="the host to go live")
        frames = Frames()
        viewer = await watch(live.whep, await live.guest(), frames)
        await until(lambda: len(frames.times) >= 30, what="the viewer's first second of video")
        network.impair(down=(0.01, DELAY), up=(0.01, DELAY))
        before = network.counts()
        fps, gap = await measure(frames, seconds(10))
        after = network.counts()
        lost = after["up"][1] - before["up"][1]
        gave_up = sum("gave up on" in record.getMessage() for record in caplog.records)
        print(f"host without RTX, {lost} packets lost up, {gave_up} given up: {fps:.1f} fps, gap {gap * 1000:.0f} ms")
        assert lost > 0 and gave_up > 0, (lost, gave_up)
        assert gap < 1.0, f"the picture froze for {gap:.2f} s"
        assert fps >= 15, f"{fps:.1f} fps"
        await viewer.stop()
        await host.stop()


async def test_keyframe_reaches_a_viewer_within_a_second_of_its_request(
    network: Network, live: Live, tmp_path: Path
) -> None:
    """Over the lossy link, each keyframe a viewer asks for (RTCP PLI, asked again every 300 ms until one comes, as
    browsers do) arrives within 1 s of the request; a joining viewer's first one within 3 s of its answer (ICE and
    DTLS over the lossy link come first: a lost handshake packet is sent again after a second)."""
    host = await publish(live)
    _lossy(network)
    async with peer(network, "keys", live.whep, await live.guest(), tmp_path) as viewer:
        asked = time.monotonic()
        await until(lambda: bool(viewer.frames.keys), timeout=5, what="the first keyframe")
        delays = [viewer.frames.keys[0] - asked]
        for _ in range(5):
            viewer.send("pli")
            delays.append(await viewer.said("keyframe", timeout=5))
            # then past the relay's 500 ms between keyframe requests to the host:
            await until(partial(_older_than, viewer.frames.keys[-1], 0.6), what="the relay's keyframe request window")
        print("keyframe delays (s):", ", ".join(f"{delay:.3f}" for delay in delays))
        assert delays[0] < seconds(3.0) and max(delays[1:]) < seconds(1.0), delays
        await viewer.stop()
    await host.stop()


# --- PATCH: trickle ICE and ICE restart ----------------------------------------------------------


def _server_peer(live: Live, side: Side, location: str) -> RTCPeerConnection:
    found = live.relay.find(side, live.room_id, location.rsplit("/", 1)[1])
    assert found is not None, "no such session on the server"
    return found.pc


async def test_trickled_candidates_reach_the_servers_ice_agent(network: Network, live: Live) -> None:
    """A viewer that offers without candidates sends them in a PATCH (If-Match: the 201's ETag): 204, the server's
    ICE agent has them, and video flows."""
    host = await publish(live)
    frames = Frames()
    viewer = await watch(live.whep, await live.guest(), frames, trickle=True)
    await until(lambda: len(frames.times) >= 10, what="video after trickle ICE")
    server_side = ice_restart.ice_transport(_server_peer(live, Side.VIEWER, viewer.location))
    mine = {(c.ip, c.port) for c in ice_restart.ice_transport(viewer.pc).iceGatherer.getLocalCandidates()}
    assert mine <= {(c.ip, c.port) for c in server_side.getRemoteCandidates()}
    await viewer.stop()
    await host.stop()


async def test_patch_refuses_what_it_cannot_apply(network: Network, live: Live) -> None:
    """PATCH answers 415 for another media type, 400 for a body that is no fragment, 412 for an If-Match naming
    an earlier ICE session (after a restart), 403 for someone else's session and 404 for an unknown one."""
    host = await publish(live)
    frames = Frames()
    guest = await live.guest()
    viewer = await watch(live.whep, guest, frames)
    await until(lambda: len(frames.times) >= 5, what="video")
    auth = {"Authorization": f"Bearer {guest}"}
    fragment = {"Content-Type": ice_restart.MEDIA_TYPE}
    async with httpx.AsyncClient(timeout=30, headers=auth) as http:

        async def refused(response: httpx.Response, status: int, code: str) -> None:
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code

        await refused(await http.patch(viewer.location, content="a=candidate"), 415, "unsupported_media_type")
        await refused(await http.patch(viewer.location, content="hello", headers=fragment), 400, "bad_fragment")
        first = ice_restart.etag(*_server_credentials(live, viewer))
        end = "a=end-of-candidates\r\n"
        trickled = await http.patch(viewer.location, content=end, headers={**fragment, "If-Match": first})
        assert trickled.status_code == 204 and trickled.headers["etag"] == first
        await viewer.restart_ice()
        assert await viewer.restarts[-1].connected
        second = ice_restart.etag(*_server_credentials(live, viewer))
        assert second != first
        stale = await http.patch(viewer.location, content=end, headers={**fragment, "If-Match": first})
        await refused(stale, 412, "precondition_failed")
        other = {"Authorization": f"Bearer {await live.guest()}"}
        await refused(await http.patch(viewer.location, content=end, headers={**fragment, **other}), 403, "forbidden")
        unknown = viewer.location.rsplit("/", 1)[0] + "/nobody"
        await refused(await http.patch(unknown, content=end, headers=fragment), 404, "not_found")
    count = len(frames.times)
    await until(lambda: len(frames.times) > count + 10, what="video to carry on")
    await viewer.stop()
    await host.stop()


def _server_credentials(live: Live, viewer: Session) -> tuple[str, str]:
    connection = ice_restart.ice_transport(_server_peer(live, Side.VIEWER, viewer.location))._connection
    return str(connection.local_username), str(connection.local_password)


@pytest.mark.parametrize("side", [Side.VIEWER, Side.PUBLISHER])
async def test_ice_restart_after_the_client_changes_address_resumes_the_same_session(
    network: Network, live: Live, tmp_path: Path, side: Side
) -> None:
    """A client inside the namespace (a viewer, or the host) moves to a new address mid-stream; its ICE restart
    over PATCH (new ufrag/pwd, If-Match: "*") brings the video back within 3 s on the same session (same peer,
    same DTLS), and the room never goes offline."""
    _lossy(network)
    if side is Side.VIEWER:
        host = await publish(live)
        ns_peer = peer(network, "watch", live.whep, await live.guest(), tmp_path)
    else:
        ns_peer = peer(network, "publish", live.whip, live.host, tmp_path)
    async with ns_peer as moving:
        if side is Side.VIEWER:
            frames = moving.frames
        else:
            await until(lambda: live.relay.stats()["live"] == 1, what="the host to go live")
            frames = Frames()
            viewer = await watch(live.whep, await live.guest(), frames)
        await until(lambda: len(frames.times) >= 30, what="a second of video")
        location = moving.location
        pc = _server_peer(live, side, location)
        before = ice_restart.ice_transport(pc)._connection.local_username
        network.move(3)
        await until(lambda: time.monotonic() - frames.times[-1] > 0.3, what="the old path to go quiet")
        count = len(frames.times)
        moved = time.monotonic()
        moving.send("restart")
        assert await moving.said("restarted", timeout=10)
        assert await moving.said("ice", timeout=10) is True
        await until(lambda: len(frames.times) > count + 30, timeout=5, what="video on the new path")
        resumed = next(t for t in frames.times if t > moved)
        print(f"{side.value} moved: video back {resumed - moved:.2f} s after the restart began")
        assert resumed - moved < 3.0  # the PATCH and the checks cross the lossy link: a lost SYN or check costs 1 s
        assert _server_peer(live, side, location) is pc, "the session changed"
        assert ice_restart.ice_transport(pc)._connection.local_username != before
        assert live.relay.stats()["live"] == 1
        if side is Side.PUBLISHER:
            await viewer.stop()
        await moving.stop()
    if side is Side.VIEWER:
        await host.stop()


async def test_patch_reaching_another_server_process_runs_where_the_session_lives(
    network: Network, live: Live, server_factory: Callable[..., ServerProcess]
) -> None:
    """A second server process forwards a PATCH to the process holding the session: an ICE restart answered
    through it (200, the holder's new credentials) connects, and trickle with the new ETag answers 204 there."""
    other = server_factory()
    host = await publish(live)
    frames = Frames()
    guest = await live.guest()
    viewer = await watch(live.whep, guest, frames)
    await until(lambda: len(frames.times) >= 5, what="video")
    path = viewer.location.split("/", 3)[3]
    elsewhere = Session(viewer.pc, f"{other.base_url}/{path}", guest, [])
    await elsewhere.restart_ice()
    assert await elsewhere.restarts[-1].connected
    etag = ice_restart.etag(*_server_credentials(live, viewer))
    assert elsewhere.restarts[-1].etag != etag  # the client's own ICE session is not the server's
    headers = {"Content-Type": ice_restart.MEDIA_TYPE, "If-Match": etag, "Authorization": f"Bearer {guest}"}
    async with httpx.AsyncClient(timeout=30) as http:
        trickled = await http.patch(elsewhere.location, content="a=end-of-candidates\r\n", headers=headers)
    assert trickled.status_code == 204, trickled.text
    assert trickled.headers["etag"] == etag
    count = len(frames.times)
    await until(lambda: len(frames.times) > count + 10, what="video on the restarted ICE session")
    await elsewhere.restarts[-1].close()
    await viewer.stop()
    await host.stop()


# --- Chromium as the WHEP client: its own trickle and restartIce() ------------------------------

WHEP_CLIENT_JS = r"""
window.whep = (() => {
  const state = { pc: null, location: "", etag: "", token: "", patches: [], queued: [], ready: false };
  const field = (sdp, name) => sdp.match(new RegExp("a=" + name + ":(.*)\r\n"))[1];
  const fragment = (ufrag, pwd, mid, candidates, end) =>
    [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, "m=video 9 UDP/TLS/RTP/SAVPF 0", `a=mid:${mid}`,
     ...candidates, ...(end ? ["a=end-of-candidates"] : [])].join("\r\n") + "\r\n";
  const patch = (body, ifMatch) => fetch(state.location, {
    method: "PATCH", body,
    headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": ifMatch,
               Authorization: `Bearer ${state.token}` },
  });
  async function flush() {  // candidates gathered so far, in one PATCH for the current ICE session
    if (!state.ready || !state.queued.length) return;
    const sdp = state.pc.localDescription.sdp;
    const end = state.queued.includes(null);
    const lines = state.queued.filter((c) => c).map((c) => `a=${c.candidate}`);
    state.queued = [];
    const body = fragment(field(sdp, "ice-ufrag"), field(sdp, "ice-pwd"), field(sdp, "mid"), lines, end);
    const response = await patch(body, state.etag);
    state.patches.push(response.status);
  }
  async function start(url, token) {
    const pc = (state.pc = new RTCPeerConnection());
    state.token = token;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.onicecandidate = (event) => {
      state.queued.push(event.candidate && event.candidate.candidate ? event.candidate : null);
      flush();
    };
    await pc.setLocalDescription(await pc.createOffer());
    const offer = pc.localDescription.sdp.split("\r\n")
      .filter((l) => !l.startsWith("a=candidate") && !l.startsWith("a=end-of-candidates")).join("\r\n");
    const headers = { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` };
    const response = await fetch(url, { method: "POST", body: offer, headers });
    if (response.status !== 201) throw new Error(`POST ${response.status}: ${await response.text()}`);
    state.location = new URL(response.headers.get("location"), url).href;
    state.etag = response.headers.get("etag");
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    state.ready = true;
    await flush();
  }
  async function restart() {  // RFC 9725 4.3.2: restartIce(), the new credentials and candidates in one PATCH
    const pc = state.pc;
    const candidates = [];
    const gathered = new Promise((done) => {
      pc.onicecandidate = (event) => {
        if (!event.candidate) done();
        else if (event.candidate.candidate) candidates.push(`a=${event.candidate.candidate}`);
      };
    });
    pc.restartIce();
    await pc.setLocalDescription(await pc.createOffer());
    await gathered;
    const sdp = pc.localDescription.sdp;
    const body = fragment(field(sdp, "ice-ufrag"), field(sdp, "ice-pwd"), field(sdp, "mid"), candidates, true);
    const response = await patch(body, "*");
    if (response.status !== 200) throw new Error(`PATCH ${response.status}: ${await response.text()}`);
    state.etag = response.headers.get("etag");
    const answer = await response.text();
    const theirs = answer.split("\r\n").filter((l) => l.startsWith("a=candidate")).map((l) => l + "\r\n").join("");
    const sdpAnswer = pc.remoteDescription.sdp
      .replace(/a=ice-ufrag:.*\r\n/g, `a=ice-ufrag:${field(answer, "ice-ufrag")}\r\n`)
      .replace(/a=ice-pwd:.*\r\n/g, `a=ice-pwd:${field(answer, "ice-pwd")}\r\n`)
      .replace(/a=candidate:.*\r\n/g, "").replace(/a=end-of-candidates\r\n/g, "")
      .replace(/(a=mid:.*\r\n)/, `$1${theirs}a=end-of-candidates\r\n`);
    await pc.setRemoteDescription({ type: "answer", sdp: sdpAnswer });
    return field(sdp, "ice-ufrag");
  }
  async function framesDecoded() {
    for (const report of (await state.pc.getStats()).values()) {
      if (report.type === "inbound-rtp" && report.kind === "video") return report.framesDecoded || 0;
    }
    return 0;
  }
  return { start, restart, framesDecoded, state };
})();
"""


async def test_chromium_trickles_its_candidates_and_restarts_ice(network: Network, live: Live) -> None:
    """Chromium as a WHEP client: an offer without candidates, each one trickled by PATCH (204), video decoded;
    then `pc.restartIce()` with its new credentials and candidates in a PATCH (If-Match: "*"), the server's 200
    fragment put into a new answer, and video carries on over the new ICE session."""
    from playwright.async_api import async_playwright

    from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    host = await publish(live)
    guest = await live.guest()
    async with async_playwright() as playwright:
        args = [*CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]  # plain addresses, no mDNS names
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = await browser.new_page()
            await page.goto(f"{live.base_url}/readyz")
            await page.evaluate(WHEP_CLIENT_JS)
            await page.evaluate("([url, token]) => whep.start(url, token)", [live.whep, guest])

            async def decoded() -> int:
                return int(await page.evaluate("whep.framesDecoded()"))

            frames = 0

            async def more_frames(than: int) -> None:
                nonlocal frames
                deadline = time.monotonic() + seconds(10)
                while (frames := await decoded()) < than + 30:
                    assert time.monotonic() < deadline, f"Chromium decoded {frames} frames"

            await more_frames(0)
            patches = await page.evaluate("whep.state.patches")
            assert patches and set(patches) == {204}, patches
            location = await page.evaluate("whep.state.location")
            transport = ice_restart.ice_transport(_server_peer(live, Side.VIEWER, location))
            assert any(c.ip == network.server_ip or c.type == "host" for c in transport.getRemoteCandidates())
            before = transport._connection.local_username
            await page.evaluate("whep.restart()")
            await until(lambda: transport._connection.local_username != before, what="the new ICE session")
            await more_frames(frames)
        finally:
            await browser.close()
    await host.stop()
