"""One process of hub_bench's viewers: connect, say so, measure when told, print what it measured.

Driven over stdin/stdout by loadtests.bench.hub_bench, which starts several of these so that reading
frames is spread over processes and never starves the publishers.

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  "measure"                   reset the counters and start measuring
    stdin:  "stop"                      print one JSON line of results and exit
"""

from __future__ import annotations

import argparse
import asyncio

from loadtests.bench import wsclient
from loadtests.support import viewers


async def main(args: argparse.Namespace) -> None:
    stats = wsclient.Stats()
    stop = asyncio.Event()
    # at least one viewer of each process measures, even with --sampled 0
    sockets = await wsclient.guests(args, stats, wsclient.Viewer, stop, max(args.sampled, 1))
    commands = viewers.commands()
    assert await anext(commands) == b"measure"
    stats.latencies_ms.clear()
    stats.measure()
    received = stats.bytes
    await anext(commands)  # "stop"
    viewers.answer({**stats.report(), "bytes": stats.bytes - received, "latencies_ms": stats.latencies_ms})
    await viewers.leave(sockets, stop)


if __name__ == "__main__":
    viewers.run(main, 100, "viewers of this process that measure latency")
