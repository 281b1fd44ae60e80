"""Relay benchmark: one publisher at 640x360 30 fps, K viewers; server CPU per viewer and frames per viewer per second.

Compares livecart's pass-through relay (streaming.relay behind the real WHIP/WHEP routes) with aiortc's
stock MediaRelay (each viewer's sender encodes again), measured the same way. Not a test: run it by hand.

    python loadtests/relay_bench.py --viewers 50,100,200 --stock-viewers 5,10 --seconds 20

Every peer is on 127.0.0.1. The server runs in its own process; its CPU is read from /proc/<pid>/stat
over the measured window. The load generator shares the machine: the publisher replays a clip
encoded once at start-up (VP8 at ~0.9 Mbit/s, a keyframe every 2 s, plus Opus), and viewers run in
`--client-procs` processes; all but `--decoders` of them count encoded frames without decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aioice.ice  # noqa: E402

# Every ICE candidate on 127.0.0.1: the benchmark sends media nowhere else.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

import av  # noqa: E402
import httpx  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402

from streaming import client  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30
SECRET = "bench-secret"
ROOM = "bench"


# --- the publisher: a pre-encoded clip, replayed in real time ------------------------------


def encode_clip(seconds: int = 4, bitrate: int = 1_000_000) -> tuple[list[av.Packet], list[av.Packet]]:
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
    video_packets: list[av.Packet] = []
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
    audio_packets: list[av.Packet] = []
    for index in range(seconds * 50):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(rng.randbytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts = 48000, index * 960
        audio_packets += audio.encode(frame)
    return video_packets, audio_packets


def _pad(rows: bytes, line_size: int) -> bytes:
    return b"".join(rows[i : i + WIDTH] + bytes(line_size - WIDTH) for i in range(0, len(rows), WIDTH))


class ReplayTrack(MediaStreamTrack):
    """Yields a clip's encoded packets in a loop, paced in real time (the sender only packetizes them)."""

    def __init__(self, kind: str, packets: list[av.Packet], rate: int, step: int) -> None:
        super().__init__()
        self.kind = kind
        self._payloads = [bytes(packet) for packet in packets]
        self._keys = [packet.is_keyframe for packet in packets]
        self._rate, self._step = rate, step
        self._time_base = fractions.Fraction(1, rate)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
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


# --- the servers under test ----------------------------------------------------------------


def serve(mode: str, port: int) -> None:
    """Run one server (pass-through or stock) on 127.0.0.1:port until killed."""
    import logging

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    logging.basicConfig(level=logging.WARNING)
    if mode == "passthrough":
        app = _passthrough_app()
    else:
        publisher: dict[str, MediaStreamTrack] = {}
        media = MediaRelay()
        peers: set[RTCPeerConnection] = set()

        async def offer(request: Request) -> Response:
            """aiortc's examples/server, as WHIP/WHEP: the stock way to relay."""
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            peers.add(pc)
            if request.url.path.startswith("/whip"):
                pc.on("track", lambda track: publisher.__setitem__(track.kind, track))
            else:
                for track in publisher.values():
                    pc.addTrack(media.subscribe(track, buffered=False))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return Response(pc.localDescription.sdp, 201, {"Location": f"/session/{id(pc)}"}, "application/sdp")

        app = Starlette(
            routes=[Route("/whip/{room}", offer, methods=["POST"]), Route("/whep/{room}", offer, methods=["POST"])]
        )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _passthrough_app() -> Any:
    """The real streaming routes and Relay; the app's services stand in for Redis (tokens are real)."""
    from contextlib import asynccontextmanager

    from server.catalog import Room
    from starlette.applications import Starlette

    from server.access.tokens import Tokens
    from server.config import Settings
    from streaming.relay import Relay
    from streaming.routes import routes

    @dataclass
    class Catalog:
        async def get_room(self, room_id: str) -> Room | None:
            return Room(room_id, "bench-shop", "Bench", "live", "offline") if room_id == ROOM else None

    @dataclass
    class Services:
        settings: Settings
        tokens: Tokens
        catalog: Catalog

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        app.state.services = Services(Settings(secret_key=SECRET), Tokens(SECRET), Catalog())
        app.state.relay = Relay()
        yield
        await app.state.relay.close()

    return Starlette(routes=routes, lifespan=lifespan)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- viewers: one process per share of the viewers ------------------------------------------


async def rtp_viewer(url: str, token: str) -> client.Session:
    """A viewer that counts RTP packets (video frames by their marker bit) and does nothing else with them.

    Its receivers skip aiortc's jitter buffer, NACK and bitrate estimation: the load generator stays
    light enough to measure the server with hundreds of viewers on the same two cores.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    session = client.Session(pc, "", token, [])
    for kind in ("video", "audio"):
        counter = session.counters[kind] = client.Counter(kind)
        receiver = pc.addTransceiver(kind, direction="recvonly").receiver

        async def count(packet: Any, arrival_time_ms: int, counter: client.Counter = counter) -> None:
            if packet.marker:
                counter.frames += 1

        receiver._handle_rtp_packet = count  # type: ignore[method-assign]
    session.location, session.links = await client.negotiate(url, token, pc)
    return session


async def viewers(url: str, count: int, decoders: int) -> None:
    """Connect `count` viewers, say 'ready'; on 'go' and 'stop' lines from stdin, report frames in between."""
    token = _token("viewer")
    sessions: list[client.Session] = []
    for start in range(0, count, 10):
        batch = range(start, min(start + 10, count))
        sessions += await asyncio.gather(
            *(client.watch(url, token) if index < decoders else rtp_viewer(url, token) for index in batch)
        )
    deadline = time.monotonic() + 30
    while any(s.counters.get("video") is None or s.counters["video"].frames == 0 for s in sessions):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)

    def counts() -> list[tuple[int, int]]:
        return [
            (
                s.counters["video"].frames if "video" in s.counters else 0,
                s.counters.get("audio", client.Counter("audio")).frames,
            )
            for s in sessions
        ]

    await reader.readline()
    before, started = counts(), time.monotonic()
    await reader.readline()
    after, elapsed = counts(), time.monotonic() - started
    sizes = sorted({size for s in sessions[:decoders] for size in s.counters["video"].sizes if "video" in s.counters})
    report = {
        "video_fps": [(a[0] - b[0]) / elapsed for a, b in zip(after, before, strict=True)],
        "audio_pps": [(a[1] - b[1]) / elapsed for a, b in zip(after, before, strict=True)],
        "decoded_sizes": sizes,
        "decoders": min(decoders, count),
    }
    print(json.dumps(report), flush=True)
    await asyncio.gather(*(s.stop(delete=False) for s in sessions))


# --- the run -------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    viewers: int
    server_cpu: float  # fraction of one core over the window
    idle_cpu: float  # the server with the publisher and no viewer
    load_cpu: float  # the load generator: publisher and viewer processes, in cores
    fps: list[float]
    audio_pps: list[float]
    decoded_sizes: list[list[int]]

    def line(self) -> str:
        per_viewer = (self.server_cpu - self.idle_cpu) / self.viewers if self.viewers else 0.0
        per_core = 1 / per_viewer if per_viewer > 0 else float("inf")
        fps = sorted(self.fps)
        return (
            f"{self.mode:11} viewers={self.viewers:4} server_cpu={self.server_cpu * 100:6.1f}% "
            f"(idle {self.idle_cpu * 100:4.1f}%) per_viewer={per_viewer * 100:5.2f}% => {per_core:6.0f} viewers/core | "
            f"video fps min={fps[0]:5.1f} median={statistics.median(fps):5.1f} "
            f"<25fps: {sum(f < 25 for f in fps)} | audio pps median={statistics.median(self.audio_pps):5.1f} "
            f"| decoded {self.decoded_sizes} | load generator {self.load_cpu * 100:.0f}%"
        )


async def _viewer_process(url: str, count: int, decoders: int) -> asyncio.subprocess.Process:
    """A process running `count` viewers, `decoders` of which decode."""
    command = [__file__, "viewers", "--url", url, "--count", str(count), "--decoders", str(decoders)]
    return await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def _token(role: str, merchant_id: str | None = None) -> str:
    from server.access.tokens import Tokens
    from server.protocol import Role

    tokens = Tokens(SECRET)
    return tokens.mint(user_id=f"u_{role}", name=role, role=Role(role), merchant_id=merchant_id, ttl_seconds=3600)


async def run_one(mode: str, count: int, seconds: float, decoders: int, procs: int, clip: Any) -> Result:
    port = 18000 + random.randrange(1000)
    server = subprocess.Popen([sys.executable, __file__, "serve", "--mode", mode, "--port", str(port)], cwd=ROOT)
    workers: list[asyncio.subprocess.Process] = []
    host: client.Session | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(base + "/")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        video, audio = ReplayTrack("video", clip[0], 90000, 3000), ReplayTrack("audio", clip[1], 48000, 960)
        host = await client.publish(f"{base}/whip/{ROOM}", _token("host", "bench-shop"), video, audio)
        await host.wait_connected()
        await asyncio.sleep(3)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(min(seconds, 5))
        idle = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        shares = [count // procs + (1 if index < count % procs else 0) for index in range(procs)]
        decoder_shares = [decoders // procs + (1 if index < decoders % procs else 0) for index in range(procs)]
        for share, decoding in zip(shares, decoder_shares, strict=True):
            if share:
                workers.append(await _viewer_process(f"{base}/whep/{ROOM}", share, decoding))
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=120)
            assert line.strip() == b"ready", line
        await asyncio.sleep(3)  # settle
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
        load_pids = [os.getpid(), *(worker.pid for worker in workers)]
        cpu0, load0, t0 = cpu_seconds(server.pid), sum(map(cpu_seconds, load_pids)), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        busy = (cpu_seconds(server.pid) - cpu0) / elapsed
        load = (sum(map(cpu_seconds, load_pids)) - load0) / elapsed
        reports = []
        for worker in workers:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write(b"stop\n")
            reports.append(json.loads(await asyncio.wait_for(worker.stdout.readline(), timeout=60)))
        return Result(
            mode,
            count,
            busy,
            idle,
            load,
            [fps for report in reports for fps in report["video_fps"]],
            [pps for report in reports for pps in report["audio_pps"]],
            [size for report in reports for size in report["decoded_sizes"]],
        )
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
            await worker.wait()
        if host is not None:
            await host.stop(delete=False)
        server.terminate()
        server.wait(10)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}; python {sys.version.split()[0]}", flush=True)
    clip = encode_clip()
    bitrate = sum(packet.size for packet in clip[0]) * 8 / (len(clip[0]) / FPS)
    print(f"clip: VP8 {WIDTH}x{HEIGHT} {FPS} fps at {bitrate / 1000:.0f} kbit/s, Opus 20 ms packets", flush=True)
    plan = [("passthrough", int(n)) for n in args.viewers.split(",") if n] + [
        ("stock", int(n)) for n in args.stock_viewers.split(",") if n
    ]
    for mode, count in plan:
        result = await run_one(mode, count, args.seconds, args.decoders, args.client_procs, clip)
        print(result.line(), flush=True)


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("--mode", choices=["passthrough", "stock"], required=True)
    serve_parser.add_argument("--port", type=int, required=True)
    viewers_parser = sub.add_parser("viewers")
    viewers_parser.add_argument("--url", required=True)
    viewers_parser.add_argument("--count", type=int, required=True)
    viewers_parser.add_argument("--decoders", type=int, default=0)
    parser.add_argument("--viewers", default="10,50,100,200", help="pass-through viewer counts")
    parser.add_argument("--stock-viewers", default="5,10", help="stock MediaRelay viewer counts")
    parser.add_argument("--seconds", type=float, default=15, help="measured window per run")
    parser.add_argument("--decoders", type=int, default=2, help="viewers that decode (the rest count frames)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes the viewers are spread over")
    arguments = parser.parse_args()
    if arguments.command == "serve":
        serve(arguments.mode, arguments.port)
    elif arguments.command == "viewers":
        asyncio.run(viewers(arguments.url, arguments.count, arguments.decoders))
    else:
        asyncio.run(main(arguments))
