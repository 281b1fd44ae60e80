"""One process of auction_bench's room viewers (guests): count frames, note each auction card they are shown, time
the bench's chat.

Driven over stdin/stdout by loadtests.bench.auction_bench, which starts several of these so that reading 2,000
sockets' frames never starves the process that sends and times the bids.

Every viewer keeps the highest `version` of the watched auction's card it was shown (the card a page shows: a lower
version never replaces a higher one) and counts cards that came after a higher one (out of order). The sampled
viewers also note, for every card of the watched auction, its version and when it arrived (ms since the epoch, this
machine's clock), and time the bench's chat: each chat text carries its send time ("bench chat <ms since the epoch>",
stamped by auction_bench just before a chatter's socket sends it), so a delivery's latency is its arrival minus
that. A frame is decoded (orjson) only when it holds an `auction` event.

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  "watch <auction id>"        from now on note that auction's cards (forget the last one's)
    stdin:  "measure <ms>"              reset the frame and chat counters: a phase's measured seconds began at
                                        <ms> (since the epoch); chat stamped before it is not timed
    stdin:  "report <ms>"               print one JSON line: what was seen (cards since "watch", the rest since
                                        "measure"; the chat stamped before <ms>, when the measured seconds ended)
    stdin:  "quit"                      close the viewers and exit
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from loadtests.bench import wsclient
from loadtests.support import tokens

CHAT_STAMP = re.compile(rb"bench chat (\d+\.\d+)")
AUCTION = b'"type":"auction"'


@dataclass
class Counts:
    connected: int = 0
    closed: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    sampled: int = 0  # connected viewers that note every card's arrival and time the chat
    frames: int = 0
    watched: str = ""  # the auction whose cards are noted
    since_ms: float = 0.0  # chat stamped before this is not timed (sent before the measured seconds)
    cards: int = 0  # cards of the watched auction, at every viewer
    out_of_order: int = 0  # a card whose version was below one the viewer had already been shown
    chat: list[tuple[float, float]] = field(default_factory=list)  # the sampled viewers' chat: (stamp, latency ms)
    viewers: list[_Viewer] = field(default_factory=list)


class _Viewer(wsclient.RawSocket):
    """A guest's room socket, read straight from its bytes: frames, the watched auction's cards, chat stamps."""

    def __init__(self, counts: Counts, sampled: bool, path: str, host: str, token: str) -> None:
        super().__init__(path, host, token)
        self.counts = counts
        self.sampled = sampled
        self.first = True
        self.highest = 0  # the highest version of the watched auction's card shown to this viewer
        self.arrivals: list[tuple[int, float]] = []  # sampled: (version, arrival ms) of each card, in arrival order

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
        counts.frames += 1
        if self.first:  # the snapshot (its recent chat is old news; no auction is running yet)
            self.first = False
            counts.connected += 1
            counts.sampled += self.sampled
            return
        now = time.time() * 1000
        if buffer.find(AUCTION, start, end) >= 0:
            for item in orjson.loads(bytes(buffer[start:end])).get("events", ()):
                if item.get("type") == "auction" and item.get("id") == counts.watched:
                    version = int(item["version"])
                    counts.cards += 1
                    if version < self.highest:
                        counts.out_of_order += 1
                    else:
                        self.highest = version
                    if self.sampled:
                        self.arrivals.append((version, now))
        if self.sampled:
            for stamp in CHAT_STAMP.findall(buffer, start, end):
                if float(stamp) >= counts.since_ms:
                    counts.chat.append((float(stamp), now - float(stamp)))

    def finished(self, code: int | None) -> None:
        self.counts.closed += 1
        if code is not None:
            self.counts.close_codes[code] = self.counts.close_codes.get(code, 0) + 1


async def viewer(args: argparse.Namespace, counts: Counts, sampled: bool, stop: asyncio.Event) -> None:
    """A guest of its own (the room counts people, not sockets) in the room until `stop` or the server closes it."""
    loop = asyncio.get_running_loop()
    token = tokens.guest(args.secret)
    path, host = f"/ws/rooms/{args.room}", f"{args.host}:{args.port}"
    transport, protocol = await loop.create_connection(
        lambda: _Viewer(counts, sampled, path, host, token), args.host, args.port
    )
    counts.viewers.append(protocol)
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([protocol.done, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        transport.close()


def report(counts: Counts, frames: int, usage: resource.struct_rusage, until_ms: float) -> dict[str, Any]:
    after = resource.getrusage(resource.RUSAGE_SELF)
    connected = [viewer for viewer in counts.viewers if not viewer.first]
    return {
        "frames": counts.frames - frames,
        "chat_ms": [latency for stamp, latency in counts.chat if stamp < until_ms],
        "connected": counts.connected,
        "sampled": counts.sampled,
        "closed": counts.closed,
        "close_codes": counts.close_codes,
        "cards": counts.cards,
        "out_of_order": counts.out_of_order,
        # the highest version each viewer was shown, counted: {version: viewers}
        "highest": dict(Counter(viewer.highest for viewer in connected)),
        "arrivals": [viewer.arrivals for viewer in connected if viewer.sampled],
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
    }


async def main(args: argparse.Namespace) -> None:
    counts = Counts()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(100)
    every = max(1, args.count // max(args.sampled, 1))

    async def one(index: int) -> None:
        async with gate:
            task = asyncio.ensure_future(viewer(args, counts, args.sampled > 0 and index % every == 0, stop))
            await asyncio.sleep(0.001)
        await task

    viewers = [asyncio.create_task(one(index)) for index in range(args.count)]
    while counts.connected + counts.closed < args.count:
        await asyncio.sleep(0.1)
    print(f"connected {counts.connected} {counts.closed}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    frames, usage = 0, resource.getrusage(resource.RUSAGE_SELF)
    while (command := (await reader.readline()).strip()) not in (b"quit", b""):
        if command.startswith(b"watch "):
            counts.watched = command.split()[1].decode()
            counts.cards = counts.out_of_order = 0
            for one_viewer in counts.viewers:
                one_viewer.highest = 0
                one_viewer.arrivals = []
        elif command.startswith(b"measure "):
            counts.since_ms = float(command.split()[1])
            counts.chat = [(stamp, latency) for stamp, latency in counts.chat if stamp >= counts.since_ms]
            frames, usage = counts.frames, resource.getrusage(resource.RUSAGE_SELF)
        elif command.startswith(b"report "):
            result = report(counts, frames, usage, float(command.split()[1]))
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
            sys.stdout.flush()
    stop.set()
    for task in viewers:
        task.cancel()
    await asyncio.gather(*viewers, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--secret", required=True, help="the server's SECRET_KEY: each viewer gets a guest token")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sampled", type=int, default=50, help="viewers of this process that note every card")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main(parser.parse_args()))  # the load generator must stay cheaper than the server
