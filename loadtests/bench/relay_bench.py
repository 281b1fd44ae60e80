"""Relay benchmark: one publisher at 640x360 30 fps, K viewers; server CPU per viewer and frames per viewer per second.

Measures, in one run and the same way, three relays on the real server (`python -m server`, its
embedded Redis, the demo room, WHIP/WHEP with real tokens) or its stand-in:
- "livecart relay": this tree (the fan-out packetizes each frame once and sends every viewer's
  copy itself, streaming.fanout);
- "livecart before": the tree at --before REV (default 2ab3e0c: one aiortc sender task and
  queue per viewer), extracted with `git archive` into a temporary directory and run from there
  with the same Python environment;
- "aiortc MediaRelay": aiortc's stock way (relay_baseline: each viewer's sender encodes again).
It prints a table and the ratios of their server CPU per viewer.

    python -m loadtests.bench.relay_bench --viewers 100,300 --before-viewers 100 --stock-viewers 4 --seconds 15
    python -m loadtests.bench.relay_bench --server-cpus 0 --load-cpus 1 ...   # the server on one core
    python -m loadtests.bench.relay_bench --processes 2 ...   # this tree's relay over 2 server processes
    python -m loadtests.bench.relay_bench --smoke       # seconds, tiny: proves it runs

Every peer is on 127.0.0.1 (loadtests.support.loopback). Each run starts a fresh server; its CPU
(its web processes, not Redis) is read from /proc over the measured window. The load generator
(with --load-cpus, on those cores) shares the machine: the publisher replays a clip encoded once at
start-up (relay_clip), and the viewers run in --client-procs processes (relay_viewers); all but
--decoders of them count encoded frames without decoding. "Per viewer" is (server CPU - server CPU
with the publisher alone) / K; "viewers per core" is its inverse. With --processes N, this tree's
server runs N web processes sharing its Redis (WEB_CONCURRENCY): each viewer's WHEP request
reaches one of them, which serves it (cascading); the table gives each process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from loadtests.bench import relay_clip
from loadtests.support import loopback, procstat, smoke, table, tokens
from loadtests.support.baseline import checkout
from loadtests.support.server import ROOT, ServerProcess, running
from server.protocol import Role
from server.seed import DEMO_MERCHANT, DEMO_ROOM
from streaming import client

NEW, BEFORE, STOCK = "livecart relay", "livecart before", "aiortc MediaRelay"
LOOPBACK = [sys.executable, "-m", "loadtests.support.loopback"]
SERVERS = {
    NEW: [*LOOPBACK, "server"],
    BEFORE: [*LOOPBACK, "server"],  # run in the --before tree
    STOCK: [*LOOPBACK, "loadtests.bench.relay_baseline", "--port", "{port}"],
}
# this checkout and stock only: a CI clone may lack the --before commit (shallow), and its tree would double the time
SMOKE = {
    "viewers": "2",
    "before": "",
    "stock_viewers": "1",
    "seconds": 2,
    "decoders": 1,
    "client_procs": 1,
    "clip_seconds": 2,
}
COLUMNS = (
    "relay",
    "viewers",
    "processes",
    "server CPU %",
    "CPU % per process",
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

Clip = tuple[list["av.Packet[Any]"], list["av.Packet[Any]"]]


@dataclass
class Result:
    relay: str
    viewers: int
    processes: int
    server_cpu: float  # cores, over the measured window
    process_cpu: list[float]  # cores, each web process (the launcher's share included in the first)
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
            self.processes,
            round(self.server_cpu * 100, 1),
            " / ".join(str(round(share * 100)) for share in self.process_cpu),
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


async def run_one(relay: str, count: int, args: argparse.Namespace, clip: Clip, before: Path | None) -> Result:
    """One run: a fresh server of the relay's kind, measured with `count` viewers, stopped afterwards."""
    processes = args.processes if relay == NEW else 1
    cwd = before if relay == BEFORE and before is not None else ROOT
    with running(SERVERS[relay], workers=processes, cwd=cwd, cpus=args.server_cpus) as server:
        return await measure(relay, count, args, clip, server, processes)


async def measure(
    relay: str, count: int, args: argparse.Namespace, clip: Clip, server: ServerProcess, processes: int
) -> Result:
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
                viewers.append(await viewer_process(whep, server.secret, share, decoding, args.load_cpus))
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
        web = server.tree()[0]  # the web processes (uvicorn's workers) by now
        each0 = [procstat.cpu_seconds(pid) for pid in web]
        cpu0, load0, t0 = cpu(web), cpu(load), time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - t0
        busy, load_busy = (cpu(web) - cpu0) / elapsed, (cpu(load) - load0) / elapsed
        each = [(procstat.cpu_seconds(pid) - start) / elapsed for pid, start in zip(web, each0, strict=True)]
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
        processes,
        busy,
        [share for share in each if share >= 0.005] or each[:1],  # the launcher idles
        idle,
        load_busy,
        [fps for report in reports for fps in report["video_fps"]],
        [pps for report in reports for pps in report["audio_pps"]],
        sorted({(width, height) for report in reports for width, height in report["decoded_sizes"]}),
    )


async def viewer_process(
    url: str, secret: str, count: int, decoders: int, cpus: str | None
) -> asyncio.subprocess.Process:
    """A process watching with `count` viewers (a guest each, signed with the server's `secret`), `decoders` of
    which decode."""
    # "--secret=…": a secret may start with "-", which argparse would take for an option
    command = [*LOOPBACK, "loadtests.bench.relay_viewers", "--url", url, f"--secret={secret}"]
    command += ["--count", str(count), "--decoders", str(decoders)]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    pipe = asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdin=pipe, stdout=pipe)


def ratio(results: list[Result], ours: str, other: str) -> str:
    """`other`'s server CPU per viewer over `ours`: at the largest viewer count both ran with every viewer at 25 fps
    or more (else each relay's largest such run; else each relay's largest run)."""

    def runs(relay: str) -> dict[int, Result]:
        mine = [result for result in results if result.relay == relay]
        smooth = [result for result in mine if result.fps and min(result.fps) >= 25] or mine
        return {result.viewers: result for result in smooth}

    mine, theirs = runs(ours), runs(other)
    if not mine or not theirs:
        return "n/a (run both relays)"
    common = set(mine) & set(theirs)
    ours_run, theirs_run = (
        (mine[max(common)], theirs[max(common)]) if common else (mine[max(mine)], theirs[max(theirs)])
    )
    a, b = ours_run.per_viewer, theirs_run.per_viewer
    if a <= 0 or b <= 0:
        return "n/a (a per-viewer cost below the noise: run more viewers)"
    at = f"at {ours_run.viewers} viewers" if common else f"at {ours_run.viewers} and {theirs_run.viewers} viewers"
    return f"{b / a:.1f}x the server CPU per viewer ({round(1 / a)} vs {round(1 / b)} viewers per core, {at})"


async def main(args: argparse.Namespace) -> None:
    loopback.only()
    if args.load_cpus:
        os.sched_setaffinity(0, parse_cpus(args.load_cpus))  # the publisher (this process) with the viewers
    clip = relay_clip.encode_clip(args.clip_seconds)
    plan = [(NEW, int(n)) for n in args.viewers.split(",") if n]
    if args.before:
        plan += [(BEFORE, int(n)) for n in args.before_viewers.split(",") if n]
    plan += [(STOCK, int(n)) for n in args.stock_viewers.split(",") if n]
    results = []
    with contextlib.ExitStack() as stack:
        before = stack.enter_context(checkout(args.before)) if args.before else None
        for relay, count in plan:
            print(f"{relay}: {count} viewer(s) ...", file=sys.stderr, flush=True)
            results.append(await run_one(relay, count, args, clip, before))
    for result in results:
        if result.relay == BEFORE:
            result.relay = f"{BEFORE} ({args.before})"
    print(table.markdown(COLUMNS, [result.row() for result in results]))
    for result in results:
        if result.relay.startswith(BEFORE):
            result.relay = BEFORE
    print(f"\nratio livecart before / livecart relay: {ratio(results, NEW, BEFORE)}")
    print(f"ratio stock MediaRelay / livecart relay: {ratio(results, NEW, STOCK)}")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; python {sys.version.split()[0]}")
    kbits = relay_clip.kbit_per_second(clip[0])
    print(f"clip: VP8 {relay_clip.WIDTH}x{relay_clip.HEIGHT} {relay_clip.FPS} fps at {kbits:.0f} kbit/s, Opus 20 ms")


def parse_cpus(cpus: str) -> set[int]:
    """taskset's list ("0", "0-1", "0,2") as a set of core numbers."""
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="100,300", help="this tree's relay: viewer counts, one run each")
    parser.add_argument("--before", default="2ab3e0c", help="the git revision of 'livecart before' ('' skips it)")
    parser.add_argument("--before-viewers", default="100", help="'livecart before': viewer counts, one run each")
    parser.add_argument("--stock-viewers", default="4", help="stock MediaRelay viewer counts, one run each")
    parser.add_argument("--processes", type=int, default=1, help="this tree's relay: server processes (cascading)")
    parser.add_argument("--server-cpus", help="the server's cores, as taskset takes them (e.g. 0)")
    parser.add_argument("--load-cpus", help="the load generator's cores (e.g. 1)")
    parser.add_argument("--seconds", type=float, default=15, help="measured window per run")
    parser.add_argument("--decoders", type=int, default=2, help="viewers that decode (the rest count frames)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes the viewers are spread over")
    parser.add_argument("--clip-seconds", type=int, default=4, help="length of the clip the publisher loops")
    asyncio.run(main(smoke.parse(parser, SMOKE)))
