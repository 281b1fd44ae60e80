"""Reconnect-storm benchmark: viewers of one room with chat flowing, then many of them drop at once and come back
with since/epoch. How fast they are back, how (recovered or a fresh snapshot), whether any durable event was missed or
doubled, and what the storm costs the viewers who stayed.

One server process (1 worker, its embedded Redis and PostgreSQL; with --pin all of them on core 0 and the load
generator on core 1), --viewers guests in the demo room from --clients viewer processes
(loadtests.bench.reconnect_viewers), chat at --chat messages/s from signed-in chatters (loadtests.bench.chat: each
text stamped with its send time), CHAT_SHOWN_PER_SECOND=0 so that every viewer gets every durable event and its
offsets can be checked. After --seconds of steady chat, --drop of the viewers drop their sockets at once (no close
frame) and reconnect with since/epoch, at most --inflight of them connecting at a time.

Measured:
- reconnects/s: the droppers, over the time from the drop to the last one's first frame;
- recovered or snapshot (or failed), and the durable events each recovered frame replayed;
- gaps and duplicates by offset, over every dropper's whole run (before the drop, the replay, the batches after);
- CPU in % of a core (loadtests.bench.cpu): the server's web process in the steady window and during the storm,
  Redis, the load generator and the rest of the machine (others: on a shared box, the noise) during the storm; and
  the server's CPU per reconnect (its CPU in the storm beyond its steady rate);
- the stayers' chat delay p99 (send stamp to arrival) for the messages sent in the steady window and during the storm.

The same storm runs first on the code at --baseline (a temporary git worktree of it: the landed code, which read and
encoded a replay per viewer), then on this checkout, each on a fresh server; the ratio of their rates is printed.
--baseline '' (and --smoke) measures this checkout only. Exits 1 when a dropper failed to come back, or any saw a gap
or a duplicate.

    python -m loadtests.bench.reconnect_bench --viewers 4000 --drop 3000 --pin
    python -m loadtests.bench.reconnect_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from loadtests.bench import chat, cpu, figures, wsclient
from loadtests.support import smoke, table
from loadtests.support.baseline import checkout
from loadtests.support.server import HOST, ROOT, ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files

BASELINE = "fccfefe"  # the landed code before issue 17: a replay read (XRANGE) and encoded for each viewer
ROOM = "demo"
SERVER_CORE, CLIENT_CORE = 0, 1
TARGET_RATE = 2000  # reconnects/s on one process
TARGET_P99_MS = 300  # the stayers' chat delay during the storm
CATCH_UP_SECONDS = 60  # how long the stayers may take to receive the chat sent during the storm
# seconds: this checkout only (the baseline's server and worktree would double it)
SMOKE = {
    "viewers": 150,
    "drop": 100,
    "seconds": 1,
    "chat": 20,
    "clients": 1,
    "sampled": 20,
    "settle": 1,
    "baseline": "",
}
COLUMNS = (
    "code",
    "viewers",
    "dropped",
    "reconnects/s",
    "recovered",
    "snapshots",
    "failed",
    "gaps",
    "duplicates",
    "events replayed (mean)",
    "server CPU % (steady)",
    "server CPU % (storm)",
    "Redis CPU % (storm)",
    "client CPU % (storm)",
    "others CPU % (storm)",
    "server µs per reconnect",
    "stayers' p99 ms before",
    "stayers' p99 ms during",
)
FIGURES = (
    "code",
    "viewers",
    "dropped",
    "reconnects_per_s",
    "recovered",
    "snapshots",
    "failed",
    "gaps",
    "duplicates",
    "replayed_mean",
    "server_cpu_percent_steady",
    "server_cpu_percent_storm",
    "redis_cpu_percent_storm",
    "client_cpu_percent_storm",
    "others_cpu_percent_storm",
    "server_us_per_reconnect",
    "p99_before_ms",
    "p99_during_ms",
)


async def start_viewers(args: argparse.Namespace, server: ServerProcess) -> Viewers:
    """--clients processes of reconnect_viewers sharing the viewers, the droppers and the sampled stayers; once every
    viewer has its first frame (or was refused)."""
    started = time.monotonic()

    def share(total: int, i: int) -> int:
        return int(total // args.clients + (1 if i < total % args.clients else 0))

    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtests.bench.reconnect_viewers", "--port", str(server.port), "--room", ROOM,
            f"--secret={server.secret}", "--count", str(share(args.viewers, i)), "--drop", str(share(args.drop, i)),
            "--sampled", str(share(args.sampled, i)), "--inflight", str(share(args.inflight, i)),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**28,
        )
        for i in range(args.clients)
    ]  # fmt: skip
    connected = 0
    for process in processes:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 600)
        connected += int(line.split()[1])
    return Viewers(processes, connected, time.monotonic() - started)


async def measure(args: argparse.Namespace, server: ServerProcess, code: str) -> dict[str, Any]:
    """Chatters, the viewers, --seconds of steady chat, the storm, --settle seconds for the chat sent during it to
    arrive; the figures."""
    streams = [await wsclient.connect(HOST, server.port, f"/ws/rooms/{ROOM}", token)
               for token in chat.chatter_tokens(server.secret, args.chat)]  # fmt: skip
    drains = [asyncio.create_task(_drain(reader, writer)) for reader, writer in streams]
    viewers = await start_viewers(args, server)
    stop = asyncio.Event()
    writers = [writer for _, writer in streams]
    chatting = asyncio.create_task(chat.send(writers, args.chat, stop))
    await asyncio.sleep(args.settle)
    client_pids = [os.getpid(), *viewers.pids]
    steady, steady_cpu = time.time(), cpu.Meter.start(server, client_pids)
    await asyncio.sleep(args.seconds)
    dropped, storm_cpu = time.time(), cpu.Meter.start(server, client_pids)
    steady_percent = steady_cpu.percent(dropped - steady)
    storms = await viewers.report(b"drop", timeout=300)
    done = time.time()
    storm_percent = storm_cpu.percent(done - dropped)
    await asyncio.sleep(args.settle)
    stop.set()
    sent = await chatting
    await timed(viewers, done, args.settle + CATCH_UP_SECONDS)
    reports = await viewers.report(b"report")
    await viewers.quit()
    await wsclient.close(drains, writers)

    firsts = [at for storm in storms for at in storm["first"]]
    last = max(firsts, default=dropped)
    delays = [delay for report in reports for delay in report["delays"]]
    failed: dict[str, int] = {}
    for storm in storms:
        for reason, count in storm["failed"].items():
            failed[reason] = failed.get(reason, 0) + count
    recovered = sum(storm["recovered"] for storm in storms)
    return {
        "code": code,
        "viewers": viewers.connected,
        "dropped": args.drop,
        "reconnects_per_s": round(len(firsts) / (last - dropped)) if firsts else 0,
        "storm_seconds": round(last - dropped, 2),
        "storm_measured_seconds": round(done - dropped, 2),
        "recovered": recovered,
        "snapshots": sum(storm["snapshots"] for storm in storms),
        "failed": sum(failed.values()),
        "failed_by": failed,
        "gaps": sum(report["gaps"] for report in reports),
        "duplicates": sum(report["duplicates"] for report in reports),
        "replayed_mean": round(sum(storm["replayed"] for storm in storms) / recovered, 1) if recovered else None,
        "server_cpu_percent_steady": steady_percent["server_cpu_percent"],
        **{f"{name}_storm": percent for name, percent in storm_percent.items()},
        # the server's CPU in the storm beyond its steady rate: the reconnects' own
        "server_us_per_reconnect": round(
            1e4
            * (storm_percent["server_cpu_percent"] - steady_percent["server_cpu_percent"])
            * (done - dropped)
            / max(len(firsts), 1)
        ),
        "p99_before_ms": figures.ms([ms for sent_at, ms in delays if steady * 1000 <= sent_at < dropped * 1000], 0.99),
        "p99_during_ms": figures.ms([ms for sent_at, ms in delays if dropped * 1000 <= sent_at <= last * 1000], 0.99),
        "p50_before_ms": figures.ms([ms for sent_at, ms in delays if steady * 1000 <= sent_at < dropped * 1000], 0.5),
        "chat_sent": sent,
        "close_codes": [report["close_codes"] for report in reports],
    }


async def timed(viewers: Viewers, until: float, timeout: float) -> None:
    """Wait (at most `timeout` seconds) until the sampled stayers of every viewer process have timed a chat message
    sent after `until` (time.time()): what was sent during the storm has all arrived, however late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = [line["newest"] for line in await viewers.report(b"newest")]
        if all(stamp is None or stamp >= until * 1000 for stamp in newest):
            return
        await asyncio.sleep(0.5)


async def _drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A chatter's socket read (unread, it would back up on the server), its pings answered."""
    while True:
        await wsclient.next_frame(reader, writer)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The storm on the baseline's code (unless --baseline ''), then on this checkout."""
    env = {"CHAT_RATE_COUNT": "100000", "CHAT_SHOWN_PER_SECOND": "0"}
    results = []
    cpus = str(SERVER_CORE) if args.pin else None
    if args.baseline:
        with checkout(args.baseline) as before, running(env=env, cwd=before, cpus=cpus) as server:
            results.append(await measure(args, server, f"before ({args.baseline})"))
    with running(env=env, cpus=cpus) as server:
        results.append(await measure(args, server, "now"))
    return results


def report(results: list[dict[str, Any]]) -> str:
    lines = [table.markdown(COLUMNS, [[result[figure] for figure in FIGURES] for result in results])]
    now = results[-1]
    if len(results) == 2:
        ratio = figures.ratio(now["reconnects_per_s"], results[0]["reconnects_per_s"])
        lines.append(f"\nnow / before: {ratio}x the reconnects/s")
    rate = "meets" if now["reconnects_per_s"] >= TARGET_RATE else "MISSES"
    p99 = now["p99_during_ms"]
    latency = "meets" if p99 is not None and p99 < TARGET_P99_MS else "MISSES"
    lines.append(
        f"now: {now['reconnects_per_s']:,} reconnects/s ({rate} the target of {TARGET_RATE:,}); the stayers' p99 "
        f"during the storm {p99} ms ({latency} the target of under {TARGET_P99_MS} ms)"
    )
    return "\n".join(lines)


def failures(results: list[dict[str, Any]]) -> list[str]:
    """Every dropper must be back, and have every durable event exactly once."""
    return [
        f"{result['code']}: {result[name]} {name}"
        for result in results
        for name in ("failed", "gaps", "duplicates")
        if result[name]
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=4000, help="viewers in the room")
    parser.add_argument("--drop", type=int, default=3000, help="of them, how many drop at once and reconnect")
    parser.add_argument("--inflight", type=int, default=400, help="reconnects connecting at a time")
    parser.add_argument("--chat", type=float, default=50, help="chat messages per second")
    parser.add_argument("--seconds", type=float, default=10, help="steady chat before the storm")
    parser.add_argument("--settle", type=float, default=2, help="seconds before the steady window and after the storm")
    parser.add_argument("--sampled", type=int, default=200, help="stayers that time the chat")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument("--pin", action="store_true", help="the server on core 0, the load generator on core 1")
    parser.add_argument("--baseline", default=BASELINE, help="the git commit whose code runs first ('': none)")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    if args.drop > args.viewers:
        parser.error("--drop cannot be more than --viewers")
    raise_open_files()
    if args.pin:
        os.sched_setaffinity(0, {CLIENT_CORE})  # this process and the viewer processes it starts
    results = uvloop.run(run(args))
    smoke.emit(results, args.json, report, failures)


if __name__ == "__main__":
    main()
