"""Hub benchmark: N viewers in one room, a stock update at 10 Hz plus chat at 50 messages/s.

Starts a fresh server (embedded Redis, its own DATA_DIR), connects the viewers with the lean client,
and prints a table of delivered frames/s, p50/p99 push latency (from each event's server timestamp),
server memory per idle viewer, and server, Redis and client CPU (--json FILE: the figures as JSON).
With --baseline it then measures a bare `websockets.broadcast()` server (broadcast_baseline) the
same way, as the yardstick for the hub's fan-out, and prints the ratio of server CPU per delivery.

    python -m loadtests.bench.hub_bench --viewers 10000 --workers 2 --seconds 20 --baseline
    python -m loadtests.bench.hub_bench --smoke --baseline      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from loadtests.bench import wsclient
from loadtests.support import procstat, smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files
from server.protocol import event
from server.rooms.record import RoomRecords

SMOKE = {"viewers": 200, "workers": 1, "seconds": 2, "sampled": 20, "clients": 1}  # enough for a CPU tick
COLUMNS = (
    "server",
    "viewers",
    "delivered frames/s",
    "p50 push ms",
    "p99 push ms",
    "memory per viewer KiB",
    "server CPU %",
    "Redis CPU %",
    "client CPU %",
    "server µs per delivery",
    "closed by server",
)
FIGURES = (
    "mode",
    "viewers",
    "frames_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "rss_per_idle_viewer_kib",
    "server_cpu_percent",
    "redis_cpu_percent",
    "client_cpu_percent",
    "server_us_per_delivery",
    "closed_by_server",
)


async def publish_stock(redis_url: str, room_id: str, hz: float, stop: asyncio.Event) -> int:
    """A stock event at `hz`, published as the sales feed does (a latest-value event to every process)."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    records = RoomRecords(redis)
    sent = 0
    try:
        while not stop.is_set():
            await records.publish_latest(room_id, event("stock", sale_id="s1", available=1000 - sent))
            sent += 1
            await asyncio.sleep(1 / hz)
    finally:
        await redis.aclose()
    return sent


async def chatters(
    host: str, port: int, room_id: str, people: list[str], per_second: float, stop: asyncio.Event
) -> int:
    """Chat through the server: one connection per token of `people`, sharing `per_second` messages/s."""
    streams = [await wsclient.connect(host, port, f"/ws/rooms/{room_id}", token) for token in people]
    drains = [asyncio.create_task(_drain(reader)) for reader, _ in streams]
    sent = 0
    interval = len(streams) / per_second
    try:
        while not stop.is_set():
            for _, writer in streams:
                writer.write(wsclient.text_frame(b'{"type":"chat.send","text":"is this available in blue?"}'))
                sent += 1
            await asyncio.sleep(interval)
    finally:
        for task in drains:
            task.cancel()
        for _, writer in streams:
            writer.close()
    return sent


async def _drain(reader: asyncio.StreamReader) -> None:
    while True:
        await wsclient.read_frame(reader)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The hub, then (with --baseline) the bare broadcast() server, each on a fresh server of its own."""
    with running(workers=args.workers, env={"CHAT_RATE_COUNT": "100000"}) as server:
        results = [await measure(args, server, baseline=False)]
    if args.baseline:
        command = [sys.executable, "-m", "loadtests.bench.broadcast_baseline", "--port", "{port}"]
        command += ["--hz", str(args.hz), "--chat", str(args.chat)]
        with running(command) as server:
            results.append(await measure(args, server, baseline=True))
    return results


async def measure(args: argparse.Namespace, server: ServerProcess, *, baseline: bool) -> dict[str, Any]:
    """Connect the viewers, let them settle, then --seconds of load (the hub's: stock and chat); the figures."""
    port = server.port
    room_id = "demo"
    await asyncio.sleep(1)
    web, redis_pids = server.tree()
    rss_before = sum(procstat.rss_bytes(pid) for pid in web)
    viewers = await Viewers.start("loadtests.bench.hub_viewers", server, room_id, args.viewers, args.clients,
                                  args.sampled)  # fmt: skip
    connected, connect_seconds = viewers.connected, viewers.seconds
    await asyncio.sleep(3)
    web, redis_pids = server.tree()
    rss_idle = sum(procstat.rss_bytes(pid) for pid in web)
    per_viewer = (rss_idle - rss_before) / max(connected, 1)

    redis_url = server.redis_url
    load_stop = asyncio.Event()
    cpu_before = {pid: procstat.cpu_seconds(pid) for pid in web + redis_pids}
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    await viewers.tell(b"measure")
    t0 = time.monotonic()
    load: list[asyncio.Task[int]] = []
    if not baseline:
        chat_tokens = [tokens.buyer(server.secret, f"chatter{i}", f"Chatter {i}") for i in range(10)]
        load = [
            asyncio.create_task(publish_stock(redis_url, room_id, args.hz, load_stop)),
            asyncio.create_task(chatters(HOST, port, room_id, chat_tokens, args.chat, load_stop)),
        ]
    await asyncio.sleep(args.seconds)
    load_stop.set()
    results = []
    for group in viewers.processes:
        assert group.stdin is not None and group.stdout is not None
        group.stdin.write(b"stop\n")
        await group.stdin.drain()
        results.append(orjson.loads(await asyncio.wait_for(group.stdout.readline(), 60)))
    elapsed = time.monotonic() - t0
    for group in viewers.processes:
        await group.wait()
    frames = sum(result["frames"] for result in results)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_server = sum(procstat.cpu_seconds(pid) - before for pid, before in cpu_before.items() if pid in web)
    cpu_redis = sum(procstat.cpu_seconds(pid) - before for pid, before in cpu_before.items() if pid in redis_pids)
    cpu_client = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
    cpu_client += sum(result["cpu_seconds"] for result in results)
    latencies = [value for result in results for value in result["latencies_ms"]]
    close_codes: dict[str, int] = {}
    for result in results:
        for code, count in result["close_codes"].items():
            close_codes[code] = close_codes.get(code, 0) + count
    sent = [await task for task in load]
    return {
        "mode": "websockets.broadcast(), 1 process" if baseline else f"livecart hub, {args.workers} worker(s)",
        "workers": 1 if baseline else args.workers,
        "viewers": connected,
        "connect_seconds": round(connect_seconds, 1),
        "seconds": round(elapsed, 1),
        "frames_per_s": round(frames / elapsed),
        "events_published": sent,
        "latency_p50_ms": round(wsclient.percentile(latencies, 0.50), 1),
        "latency_p99_ms": round(wsclient.percentile(latencies, 0.99), 1),
        "latency_samples": len(latencies),
        "rss_per_idle_viewer_kib": round(per_viewer / 1024, 1),
        "server_cpu_percent": round(100 * cpu_server / elapsed),
        "redis_cpu_percent": round(100 * cpu_redis / elapsed),
        "client_cpu_percent": round(100 * cpu_client / elapsed),
        "server_us_per_delivery": round(1e6 * cpu_server / max(frames, 1), 2),
        "closed_by_server": sum(result["closed"] for result in results),
        "close_codes": close_codes,
    }


def report(results: list[dict[str, Any]]) -> str:
    """The table, and with a baseline the ratio of server CPU per delivered frame."""
    lines = [table.markdown(COLUMNS, [[result[figure] for figure in FIGURES] for result in results])]
    if len(results) == 2:
        hub, bare = (result["server_us_per_delivery"] for result in results)
        ratio = f"{hub / bare:.2f}x" if bare else "n/a (the baseline delivered nothing)"
        lines.append(f"\nratio hub / websockets.broadcast(): {ratio} the server CPU per delivered frame")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hz", type=float, default=10, help="stock updates per second")
    parser.add_argument("--chat", type=float, default=50, help="chat messages per second")
    parser.add_argument("--sampled", type=int, default=200, help="viewers that measure latency")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument("--baseline", action="store_true", help="then measure a bare websockets.broadcast() server")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    raise_open_files()
    results = asyncio.run(run(args))
    smoke.emit(results, args.json, report)


if __name__ == "__main__":
    main()
