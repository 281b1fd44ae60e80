"""Relay benchmark: one publisher at 640x360 30 fps, K viewers; server CPU per viewer and frames per viewer per second.

Measures livecart's pass-through relay (the real server: `python -m server`, its embedded Redis,
the demo room, WHIP/WHEP with real tokens) and, in the same run and the same way, aiortc's stock
`MediaRelay` (relay_baseline: each viewer's sender encodes again); prints a table and the ratio of
their server CPU per viewer.

    python -m loadtests.bench.relay_bench --viewers 50,100,200 --stock-viewers 2,4 --seconds 15
    python -m loadtests.bench.relay_bench --smoke       # seconds, tiny: proves it runs

Every peer is on 127.0.0.1 (loadtests.support.loopback). Each run starts a fresh server; its CPU
(its web processes, not Redis) is read from /proc over the measured window. The load generator
shares the machine: the publisher replays a clip encoded once at start-up (relay_clip), and the
viewers run in --client-procs processes (relay_viewers); all but --decoders of them count encoded
frames without decoding. "Per viewer" is (server CPU - server CPU with the publisher alone) / K.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import av

from loadtests.bench import relay_clip
from loadtests.support import loopback, procstat, smoke, table, tokens
from loadtests.support.server import ROOT, ServerProcess, running
from server.protocol import Role
from server.seed import DEMO_MERCHANT, DEMO_ROOM
from streaming import client

PASSTHROUGH, STOCK = "livecart pass-through", "aiortc MediaRelay"
LOOPBACK = [sys.executable, "-m", "loadtests.support.loopback"]
SERVERS = {PASSTHROUGH: [*LOOPBACK, "server"], STOCK: [*LOOPBACK, "loadtests.bench.relay_baseline", "--port", "{port}"]}
SMOKE = {"viewers": "2", "stock_viewers": "1", "seconds": 2, "decoders": 1, "client_procs": 1, "clip_seconds": 2}
COLUMNS = (
    "relay",
    "viewers",
    "server CPU %",
    "idle CPU %",
    "per viewer %",
    "viewers per core",
    "video fps min",
    "video fps median",
    "viewers < 25 fps",
    "audio packets/s median",
    "decoded",
    "load generator CPU %",
)

Clip = tuple[list[av.Packet], list[av.Packet]]


@dataclass
class Result:
    relay: str
    viewers: int
    server_cpu: float  # cores, over the measured window
    idle_cpu: float  # cores: the server with the publisher and no viewer
    load_cpu: float  # cores: the load generator (publisher and viewer processes)
    fps: list[float]
    audio_pps: list[float]
    decoded_sizes: list[tuple[int, int]]

    @property
    def per_viewer(self) -> float:
        """Server CPU (cores) each viewer adds."""
        return (self.server_cpu - self.idle_cpu) / self.viewers if self.viewers else 0.0

    def row(self) -> list[object]:
        fps = sorted(self.fps)
        return [
            self.relay,
            self.viewers,
            round(self.server_cpu * 100, 1),
            round(self.idle_cpu * 100, 1),
            round(self.per_viewer * 100, 2),
            round(1 / self.per_viewer) if self.per_viewer > 0 else None,
            round(fps[0], 1),
            round(statistics.median(fps), 1),
            sum(value < 25 for value in fps),
            round(statistics.median(self.audio_pps), 1),
            ", ".join(f"{width}x{height}" for width, height in self.decoded_sizes) or "none",
            round(self.load_cpu * 100),
        ]


def shares(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as it goes."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def cpu(pids: list[int]) -> float:
    return sum(procstat.cpu_seconds(pid) for pid in pids)


async def run_one(relay: str, count: int, args: argparse.Namespace, clip: Clip) -> Result:
    """One run: a fresh server of the relay's kind, measured with `count` viewers, stopped afterwards."""
    with running(SERVERS[relay]) as server:
        return await measure(relay, count, args, clip, server)


async def measure(relay: str, count: int, args: argparse.Namespace, clip: Clip, server: ServerProcess) -> Result:
    """Publish the clip, measure the server with the publisher alone, then with the viewers watching."""
    host_token = tokens.staff(server.secret, DEMO_MERCHANT, Role.HOST, "Bench Host")
    web = server.tree()[0]
    settle = min(3.0, args.seconds / 2)
    viewers: list[asyncio.subprocess.Process] = []
    host = await client.publish(
        f"{server.base_url}/whip/{DEMO_ROOM}", host_token, *relay_clip.tracks(clip), "video/VP8"
    )
    try:
        await host.wait_connected()
        await asyncio.sleep(settle)  # the room goes live with the first packet
        cpu0, t0 = cpu(web), time.monotonic()
        await asyncio.sleep(min(args.seconds, 5))
        idle = (cpu(web) - cpu0) / (time.monotonic() - t0)
        whep = f"{server.base_url}/whep/{DEMO_ROOM}"
        spread = zip(shares(count, args.client_procs), shares(args.decoders, args.client_procs), strict=True)
        for share, decoding in spread:
            if share:
                viewers.append(await viewer_process(whep, server.secret, share, decoding))
        for viewer in viewers:
            assert viewer.stdout is not None
            line = await asyncio.wait_for(viewer.stdout.readline(), timeout=120)
            if line.strip() != b"ready":
                raise RuntimeError(f"a viewer process did not get ready: {line!r}")
        await asyncio.sleep(settle)
        for viewer in viewers:
            assert viewer.stdin is not None
            viewer.stdin.write(b"go\n")
        load = [os.getpid(), *(viewer.pid for viewer in viewers)]
        cpu0, load0, t0 = cpu(web), cpu(load), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        busy, load_busy = (cpu(web) - cpu0) / elapsed, (cpu(load) - load0) / elapsed
        reports = []
        for viewer in viewers:
            assert viewer.stdin is not None and viewer.stdout is not None
            viewer.stdin.write(b"stop\n")
            reports.append(json.loads(await asyncio.wait_for(viewer.stdout.readline(), timeout=60)))
    finally:
        for viewer in viewers:
            if viewer.returncode is None:
                viewer.kill()
            await viewer.wait()
        await host.stop(delete=False)
    return Result(
        relay,
        count,
        busy,
        idle,
        load_busy,
        [fps for report in reports for fps in report["video_fps"]],
        [pps for report in reports for pps in report["audio_pps"]],
        sorted({(width, height) for report in reports for width, height in report["decoded_sizes"]}),
    )


async def viewer_process(url: str, secret: str, count: int, decoders: int) -> asyncio.subprocess.Process:
    """A process watching with `count` viewers (a guest each, signed with the server's `secret`), `decoders` of
    which decode."""
    # "--secret=…": a secret may start with "-", which argparse would take for an option
    command = [*LOOPBACK, "loadtests.bench.relay_viewers", "--url", url, f"--secret={secret}"]
    command += ["--count", str(count), "--decoders", str(decoders)]
    pipe = asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdin=pipe, stdout=pipe)


def ratio(results: list[Result]) -> str:
    """Stock server CPU per viewer over pass-through's, each from its relay's run with the most viewers."""
    largest = {result.relay: result for result in sorted(results, key=lambda result: result.viewers)}
    if PASSTHROUGH not in largest or STOCK not in largest:
        return "n/a (run both relays)"
    ours, stock = largest[PASSTHROUGH].per_viewer, largest[STOCK].per_viewer
    if ours <= 0 or stock <= 0:
        return "n/a (a per-viewer cost below the noise: run more viewers)"
    return f"{stock / ours:.1f}x the server CPU per viewer"


async def main(args: argparse.Namespace) -> None:
    loopback.only()
    clip = relay_clip.encode_clip(args.clip_seconds)
    plan = [(PASSTHROUGH, int(n)) for n in args.viewers.split(",") if n]
    plan += [(STOCK, int(n)) for n in args.stock_viewers.split(",") if n]
    results = []
    for relay, count in plan:
        print(f"{relay}: {count} viewer(s) ...", file=sys.stderr, flush=True)
        results.append(await run_one(relay, count, args, clip))
    print(table.markdown(COLUMNS, [result.row() for result in results]))
    print(f"\nratio stock MediaRelay / pass-through: {ratio(results)}")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; python {sys.version.split()[0]}")
    kbits = relay_clip.kbit_per_second(clip[0])
    print(f"clip: VP8 {relay_clip.WIDTH}x{relay_clip.HEIGHT} {relay_clip.FPS} fps at {kbits:.0f} kbit/s, Opus 20 ms")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="10,50,100,200", help="pass-through viewer counts, one run each")
    parser.add_argument("--stock-viewers", default="5,10", help="stock MediaRelay viewer counts, one run each")
    parser.add_argument("--seconds", type=float, default=15, help="measured window per run")
    parser.add_argument("--decoders", type=int, default=2, help="viewers that decode (the rest count frames)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes the viewers are spread over")
    parser.add_argument("--clip-seconds", type=int, default=4, help="length of the clip the publisher loops")
    asyncio.run(main(smoke.parse(parser, SMOKE)))
