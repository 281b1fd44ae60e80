"""One process of hub_bench's viewers: connect, say so, measure when told, print what it measured.

Driven over stdin/stdout by loadtests.bench.hub_bench, which starts several of these so that reading
frames is spread over processes and never starves the publishers. Every viewer counts its frames; the
sampled ones also time each event from its server timestamp, each chat message from its send time (the
stamp in its text, loadtests.bench.chat), note the bench's durable probes (`"probe": <n>`, one a second)
and check the durable offsets: each the next one, or `after` the one before (chat left out by sampling).

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  "measure"                   reset the counters and start measuring
    stdin:  "loaded"                    the load is over: the frames and CPU seconds counted end here
    stdin:  "stop"                      print one JSON line of results (what is still on its way counted) and exit
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field

from loadtests.bench import chat, wsclient
from loadtests.support import viewers

PROBE = re.compile(rb'"probe":(\d+)')
DURABLE = re.compile(rb'"offset":(\d+)(?:,"after":(\d+))?')
SNAPSHOT_OFFSET = re.compile(rb'"offset":(\d+),"epoch"')


@dataclass
class Stats(wsclient.Stats):
    """Also the sampled viewers' chat delays from their send time, the probes they saw and the offsets they missed."""

    chat_ms: list[float] = field(default_factory=list)
    probes: int = 0  # distinct probes seen, summed over the sampled viewers
    gaps: int = 0  # durable events after a gap (no `after` saying chat was left out): events lost


class HubViewer(wsclient.Viewer):
    counts: Stats

    def __init__(self, counts: Stats, sampled: bool, path: str, host: str, token: str) -> None:
        super().__init__(counts, sampled, path, host, token)
        self.applied: int | None = None  # the last durable offset seen (sampled viewers)
        self.probes: set[int] = set()

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        snapshot = self.first
        super().frame(buffer, start, end)
        if not self.sampled:
            return
        if snapshot:
            found = SNAPSHOT_OFFSET.search(buffer, start, end)
            self.applied = int(found.group(1)) if found else None
            return
        stats = self.counts
        now = time.time() * 1000
        stats.chat_ms.extend(now - float(stamp) for stamp in chat.STAMP.findall(buffer, start, end))
        for offset_text, after_text in DURABLE.findall(buffer, start, end):
            offset = int(offset_text)
            if self.applied is not None:
                if offset <= self.applied:
                    continue
                if (int(after_text) if after_text else offset - 1) > self.applied:
                    stats.gaps += 1
            self.applied = offset
        for probe in PROBE.findall(buffer, start, end):
            if int(probe) not in self.probes:
                self.probes.add(int(probe))
                stats.probes += 1


async def main(args: argparse.Namespace) -> None:
    stats = Stats()
    stop = asyncio.Event()
    # at least one viewer of each process measures, even with --sampled 0
    sockets = await wsclient.guests(args, stats, HubViewer, stop, max(args.sampled, 1))
    commands = viewers.commands()
    assert await anext(commands) == b"measure"
    stats.latencies_ms.clear()
    stats.chat_ms.clear()
    stats.probes = stats.gaps = 0
    stats.measure()
    received = stats.bytes
    assert await anext(commands) == b"loaded"
    loaded = {**stats.report(), "bytes": stats.bytes - received}
    await anext(commands)  # "stop"
    viewers.answer(
        {
            **loaded,
            "latencies_ms": stats.latencies_ms,
            "chat_ms": stats.chat_ms,
            "probes": stats.probes,
            "gaps": stats.gaps,
        }
    )
    await viewers.leave(sockets, stop)


if __name__ == "__main__":
    viewers.run(main, 100, "viewers of this process that measure latency")
