"""Hub benchmark: N viewers in one room, a stock update at 10 Hz plus chat at 50 messages/s from 64 chatters.

Starts a fresh server (embedded Redis, its own DATA_DIR), connects the viewers with the lean client,
and prints a table of delivered frames/s, p50/p99 push latency (from each event's server timestamp),
p50/p99 chat latency (from each chat message's send time, stamped in its text by the chatter, to its
arrival at a sampled viewer), the chat messages each viewer was shown a second (the hub samples chat
above CHAT_SHOWN_PER_SECOND), the room's tick at the end (/metrics: livecart_tick_widest_seconds), the
durable events lost (a durable non-chat probe is published each second: every sampled viewer must get
each, and each durable offset must follow the one before or say `after` which one it follows), chat
refused, server memory per idle viewer, and server, Redis and client CPU (--json FILE: the figures as
JSON). With --baseline it then measures a bare `websockets.broadcast()` server (broadcast_baseline,
relaying the same chat unsampled) the same way, as the yardstick for the hub's fan-out, and prints the
ratio of server CPU per delivery. --pin runs the server (its Redis and PostgreSQL too) on core 0 and
this bench, its chatters and its viewer processes on core 1 (taskset).

    python -m loadtests.bench.hub_bench --viewers 5000 --workers 1 --seconds 60 --pin --baseline   # the overload set-up
    python -m loadtests.bench.hub_bench --viewers 10000 --workers 2 --seconds 20 --baseline
    python -m loadtests.bench.hub_bench --smoke --baseline      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from loadtests.bench import chat, wsclient
from loadtests.support import procstat, smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files
from server.config import Settings
from server.protocol import event
from server.rooms.record import RoomRecords

SMOKE = {"viewers": 200, "workers": 1, "seconds": 2, "sampled": 20, "clients": 1, "chatters": 10}  # a CPU tick
DRAIN_TICKS = 3  # after the load, the ticks (the room's at the end) to wait for what is still on its way
SERVER_CORE, CLIENT_CORE = "0", 1  # --pin
COLUMNS = (
    "server",
    "viewers",
    "delivered frames/s",
    "p50 push ms",
    "p99 push ms",
    "chat sent/s",
    "p50 chat ms",
    "p99 chat ms",
    "chat shown per viewer/s",
    "tick ms at end",
    "durable lost",
    "chat refused",
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
    "chat_sent_per_s",
    "chat_p50_ms",
    "chat_p99_ms",
    "chat_shown_per_viewer_s",
    "tick_ms_at_end",
    "durable_lost",
    "chat_refused",
    "rss_per_idle_viewer_kib",
    "server_cpu_percent",
    "redis_cpu_percent",
    "client_cpu_percent",
    "server_us_per_delivery",
    "closed_by_server",
)


async def publish_stock(redis: Redis, room_id: str, hz: float, stop: asyncio.Event) -> int:
    """A stock event at `hz`, published as the sales feed does (a latest-value event to every process)."""
    records = RoomRecords(redis)
    sent = 0
    while not stop.is_set():
        await records.publish_latest(room_id, event("stock", sale_id="s1", available=1000 - sent))
        sent += 1
        await asyncio.sleep(1 / hz)
    return sent


async def publish_probes(redis: Redis, room_id: str, stop: asyncio.Event) -> int:
    """A durable event that is not chat (`bag.changed`, numbered in `probe`) each second until `stop`; how many."""
    records = RoomRecords(redis)
    sent = 0
    while not stop.is_set():
        sent += 1
        await records.publish(room_id, event("bag.changed", products=[], probe=sent))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1)
    return sent


class Chatters:
    """The chatters' sockets (signed-in members, each its own), and the refusals the server answered them."""

    def __init__(self, streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
        self.writers = [writer for _, writer in streams]
        self.refused = 0
        self._readers = [asyncio.create_task(self._read(reader, writer)) for reader, writer in streams]

    @classmethod
    async def connect(cls, port: int, room_id: str, people: list[str]) -> Chatters:
        path = f"/ws/rooms/{room_id}"
        return cls(await asyncio.gather(*(wsclient.connect(HOST, port, path, token) for token in people)))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Count the refusals; answer the server's pings (a socket that does not is closed as a slow viewer)."""
        while True:
            opcode, payload = await wsclient.next_frame(reader, writer)
            if opcode == 0x8:
                writer.close()  # chat.send goes on from the others
                return
            self.refused += payload.startswith(b'{"type":"error"')

    async def close(self) -> None:
        await wsclient.close(self._readers, self.writers)


class StalledReader:
    """--stalled: a viewer that takes its first frame, then stops reading (its transport paused: the kernels' buffers
    fill); how long until the server closes it as too slow, and the close code it finds when it reads again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow_before: float) -> None:
        self.reader = reader
        self.writer = writer
        self.slow_before = slow_before
        self.stopped = time.monotonic()

    @classmethod
    async def connect(cls, server: ServerProcess, room_id: str) -> StalledReader:
        slow_before = closed_slow(server)
        reader, writer = await wsclient.connect(HOST, server.port, f"/ws/rooms/{room_id}", tokens.guest(server.secret))
        await wsclient.read_frame(reader)  # the snapshot
        writer.transport.pause_reading()
        return cls(reader, writer, slow_before)

    async def closed_after(self, server: ServerProcess, timeout: float) -> float | None:
        """Seconds from when it stopped reading to the server counting a viewer closed as too slow (None: not within
        `timeout`)."""
        while time.monotonic() - self.stopped < timeout:
            if await asyncio.to_thread(closed_slow, server) > self.slow_before:
                return time.monotonic() - self.stopped
            await asyncio.sleep(0.1)
        return None

    async def close_code(self) -> int | str:
        """Read again, through what the kernels kept, to the close frame: its code ("reset" when the server had to
        reset the connection first; it answers no ping, so the server closes it in the end)."""
        self.writer.transport.resume_reading()
        try:
            while True:
                opcode, payload = await asyncio.wait_for(wsclient.read_frame(self.reader), 30)
                if opcode == 0x8:
                    return wsclient.close_code(payload)
        except (ConnectionError, asyncio.IncompleteReadError):
            return "reset"
        except TimeoutError:
            return "none within 30 s"
        finally:
            self.writer.close()


def closed_slow(server: ServerProcess) -> float:
    """The server's count of viewers closed as too slow (/metrics)."""
    text = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers, timeout=10).text
    name = "livecart_viewers_closed_slow_total "
    return sum(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The hub, then (with --baseline) the bare broadcast() server, each on a fresh server of its own."""
    cpus = SERVER_CORE if args.pin else None
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CORE})  # this bench, its chatters and the viewer processes it starts
    env = {}
    if args.chat / args.chatters > Settings.chat_rate_count / Settings.chat_rate_seconds:
        env["CHAT_RATE_COUNT"] = "100000"  # more than a member may chat: lift the limit
    with running(workers=args.workers, env=env, cpus=cpus) as server:
        results = [await measure(args, server, baseline=False)]
    if args.baseline:
        command = [sys.executable, "-m", "loadtests.bench.broadcast_baseline", "--port", "{port}", "--hz", str(args.hz)]
        with running(command, cpus=cpus) as server:
            results.append(await measure(args, server, baseline=True))
    return results


async def measure(args: argparse.Namespace, server: ServerProcess, *, baseline: bool) -> dict[str, Any]:
    """Connect the viewers, let them settle, then --seconds of load (the chat; the hub's stock and probes too); the
    figures."""
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
    chatters = await Chatters.connect(port, room_id, chat.chatter_tokens(server.secret, args.chat, args.chatters))
    stalled = await StalledReader.connect(server, room_id) if args.stalled and not baseline else None

    load_stop = asyncio.Event()
    cpu_before = {pid: procstat.cpu_seconds(pid) for pid in web + redis_pids}
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    await viewers.tell(b"measure")
    t0 = time.monotonic()
    load = [asyncio.create_task(chat.send(chatters.writers, args.chat, load_stop))]
    redis = Redis.from_url(server.redis_url, decode_responses=True)
    if not baseline:
        load += [
            asyncio.create_task(publish_stock(redis, room_id, args.hz, load_stop)),
            asyncio.create_task(publish_probes(redis, room_id, load_stop)),
        ]
    if stalled is None:
        await asyncio.sleep(args.seconds)
        stalled_after: float | None = None
    else:
        stalled_after = await stalled.closed_after(server, args.seconds)
        await asyncio.sleep(max(0.0, args.seconds - (time.monotonic() - t0)))
    load_stop.set()
    sent = [await task for task in load]
    await redis.aclose()
    await viewers.tell(b"loaded")
    elapsed = time.monotonic() - t0
    cpu_server = sum(procstat.cpu_seconds(pid) - before for pid, before in cpu_before.items() if pid in web)
    cpu_redis = sum(procstat.cpu_seconds(pid) - before for pid, before in cpu_before.items() if pid in redis_pids)
    tick = 1 / args.hz if baseline else widest_tick(server)
    await asyncio.sleep(DRAIN_TICKS * tick)
    results = []
    for group in viewers.processes:
        assert group.stdin is not None and group.stdout is not None
        group.stdin.write(b"stop\n")
        await group.stdin.drain()
        results.append(orjson.loads(await asyncio.wait_for(group.stdout.readline(), 60)))
    for group in viewers.processes:
        await group.wait()
    await chatters.close()
    stalled_code = None if stalled is None else await stalled.close_code()
    frames = sum(result["frames"] for result in results)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_client = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)
    cpu_client += sum(result["cpu_seconds"] for result in results)
    latencies = [value for result in results for value in result["latencies_ms"]]
    chat_ms = [value for result in results for value in result["chat_ms"]]
    sampled = sum(result["sampled"] for result in results)
    probes = 0 if baseline else sent[2]
    close_codes: dict[str, int] = {}
    for result in results:
        for code, count in result["close_codes"].items():
            close_codes[code] = close_codes.get(code, 0) + count
    return {
        "mode": "websockets.broadcast(), 1 process" if baseline else f"livecart hub, {args.workers} worker(s)",
        "workers": 1 if baseline else args.workers,
        "pinned": args.pin,
        "viewers": connected,
        "chatters": args.chatters,
        "connect_seconds": round(connect_seconds, 1),
        "seconds": round(elapsed, 1),
        "frames_per_s": round(frames / elapsed),
        "chat_sent_per_s": round(sent[0] / elapsed, 1),
        "events_published": sent[1:],
        "latency_p50_ms": round(wsclient.percentile(latencies, 0.50), 1),
        "latency_p99_ms": round(wsclient.percentile(latencies, 0.99), 1),
        "latency_samples": len(latencies),
        "chat_p50_ms": round(wsclient.percentile(chat_ms, 0.50), 1),
        "chat_p99_ms": round(wsclient.percentile(chat_ms, 0.99), 1),
        "chat_samples": len(chat_ms),
        "chat_shown_per_viewer_s": round(len(chat_ms) / max(sampled, 1) / elapsed, 1),
        "tick_ms_at_end": None if baseline else round(1000 * tick),
        "probes_published": probes,
        "durable_lost": probes * sampled - sum(result["probes"] for result in results),
        "offset_gaps": sum(result["gaps"] for result in results),
        "chat_refused": chatters.refused,
        "rss_per_idle_viewer_kib": round(per_viewer / 1024, 1),
        "server_cpu_percent": round(100 * cpu_server / elapsed),
        "redis_cpu_percent": round(100 * cpu_redis / elapsed),
        "client_cpu_percent": round(100 * cpu_client / elapsed),
        "server_us_per_delivery": round(1e6 * cpu_server / max(frames, 1), 2),
        "closed_by_server": sum(result["closed"] for result in results),
        "close_codes": close_codes,
        "stalled_closed_after_s": None if stalled_after is None else round(stalled_after, 2),
        "stalled_close_code": stalled_code,
    }


def widest_tick(server: ServerProcess) -> float:
    """The widest tick of the server's rooms now, in seconds (its /metrics)."""
    text = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers, timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("livecart_tick_widest_seconds "))
    return float(line.split()[1])


def report(results: list[dict[str, Any]]) -> str:
    """The table, the durable events lost, and with a baseline the ratio of server CPU per delivered frame."""
    lines = [table.markdown(COLUMNS, [[result[figure] for figure in FIGURES] for result in results])]
    hub = results[0]
    lines.append(
        f"\ndurable events lost: {hub['durable_lost']} of {hub['probes_published']} probes x the sampled viewers; "
        f"offsets out of order: {hub['offset_gaps']}"
    )
    if hub["stalled_close_code"] is not None:
        after = hub["stalled_closed_after_s"]
        lines.append(
            f"\na viewer that stopped reading: closed as too slow {after} s after it stopped, "
            f"close code {hub['stalled_close_code']} when it read again"
            if after is not None
            else "\na viewer that stopped reading: not closed within the run"
        )
    if len(results) == 2:
        ours, bare = (result["server_us_per_delivery"] for result in results)
        ratio = f"{ours / bare:.2f}x" if bare else "n/a (the baseline delivered nothing)"
        lines.append(f"\nratio hub / websockets.broadcast(): {ratio} the server CPU per delivered frame")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hz", type=float, default=10, help="stock updates per second")
    parser.add_argument("--chat", type=float, default=50, help="chat messages per second, from all the chatters")
    parser.add_argument("--chatters", type=int, default=64, help="chatters (signed-in members, a socket each)")
    parser.add_argument("--sampled", type=int, default=200, help="viewers that measure latency")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument("--pin", action="store_true", help="the server on core 0, the load generator on core 1")
    parser.add_argument("--baseline", action="store_true", help="then measure a bare websockets.broadcast() server")
    parser.add_argument("--stalled", action="store_true", help="and one more viewer of the hub that stops reading")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    raise_open_files()
    results = asyncio.run(run(args))
    smoke.emit(results, args.json, report)


if __name__ == "__main__":
    main()
