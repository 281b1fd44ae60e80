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
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadtests.bench import chat, wsclient
from loadtests.support import viewers

AUCTION = b'"type":"auction"'


@dataclass
class Counts(viewers.Counts):
    watched: str = ""  # the auction whose cards are noted
    since_ms: float = 0.0  # chat stamped before this is not timed (sent before the measured seconds)
    cards: int = 0  # cards of the watched auction, at every viewer
    out_of_order: int = 0  # a card whose version was below one the viewer had already been shown
    chat: list[tuple[float, float]] = field(default_factory=list)  # the sampled viewers' chat: (stamp, latency ms)
    viewers: list[_Viewer] = field(default_factory=list)


class _Viewer(wsclient.CountingSocket):
    """A guest's room socket, read straight from its bytes: frames, the watched auction's cards, chat stamps."""

    counts: Counts

    def __init__(self, counts: Counts, sampled: bool, path: str, host: str, token: str) -> None:
        super().__init__(counts, sampled, path, host, token)
        self.highest = 0  # the highest version of the watched auction's card shown to this viewer
        self.arrivals: list[tuple[int, float]] = []  # sampled: (version, arrival ms) of each card, in arrival order
        counts.viewers.append(self)

    def event(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
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
            for stamp in chat.STAMP.findall(buffer, start, end):
                if float(stamp) >= counts.since_ms:
                    counts.chat.append((float(stamp), now - float(stamp)))


def report(counts: Counts, until_ms: float) -> dict[str, Any]:
    figures = counts.report()
    connected = [viewer for viewer in counts.viewers if not viewer.first]
    return {
        **figures,
        "chat_ms": [latency for stamp, latency in counts.chat if stamp < until_ms],
        "cards": counts.cards,
        "out_of_order": counts.out_of_order,
        # the highest version each viewer was shown, counted: {version: viewers}
        "highest": dict(Counter(viewer.highest for viewer in connected)),
        "arrivals": [viewer.arrivals for viewer in connected if viewer.sampled],
    }


async def main(args: argparse.Namespace) -> None:
    counts = Counts()
    stop = asyncio.Event()
    sockets = await wsclient.guests(args, counts, _Viewer, stop)
    async for command in viewers.commands():
        if command.startswith(b"watch "):
            counts.watched = command.split()[1].decode()
            counts.cards = counts.out_of_order = 0
            for one_viewer in counts.viewers:
                one_viewer.highest = 0
                one_viewer.arrivals = []
        elif command.startswith(b"measure "):
            counts.since_ms = float(command.split()[1])
            counts.chat = [(stamp, latency) for stamp, latency in counts.chat if stamp >= counts.since_ms]
            counts.measure()
        elif command.startswith(b"report "):
            viewers.answer(report(counts, float(command.split()[1])))
    await viewers.leave(sockets, stop)


if __name__ == "__main__":
    viewers.run(main, 50, "viewers of this process that note every card")
