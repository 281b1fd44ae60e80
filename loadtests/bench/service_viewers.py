"""One process of service_bench's room viewers (guests): count frames, time the bench's chat, catch any leak.

Driven over stdin/stdout by loadtests.bench.service_bench, which starts several of these so that reading
5,000 sockets' frames never starves the process that sends and times the private messages.

Every viewer counts its frames and the `service.*` events in them (a guest is nobody's buyer and no shop's
staff: any such event is a leak), straight from the socket's bytes, without decoding JSON. The sampled viewers
also time the bench's chat: each chat text carries its send time ("bench chat <ms since the epoch>", stamped by
service_bench just before the host's socket sends it, on this machine's clock), so a delivery's latency is its
arrival minus that.

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  "measure"                   reset the counters and start measuring (a phase)
    stdin:  "report"                    print one JSON line: what was measured since "measure"
    stdin:  "quit"                      close the viewers and exit
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

from loadtests.bench import chat, wsclient
from loadtests.support import viewers

SERVICE = b'"type":"service.'


@dataclass
class Counts(viewers.Counts):
    leaked: int = 0  # service.* events that reached a guest
    chat_ms: list[float] = field(default_factory=list)  # the sampled viewers' chat latencies


class _Viewer(wsclient.CountingSocket):
    """A guest's room socket, read straight from its bytes: frames, leaks, chat stamps."""

    counts: Counts

    def event(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
        counts.leaked += buffer.count(SERVICE, start, end)
        if self.sampled:
            now = time.time() * 1000
            counts.chat_ms.extend(now - float(stamp) for stamp in chat.STAMP.findall(buffer, start, end))


async def main(args: argparse.Namespace) -> None:
    counts = Counts()
    stop = asyncio.Event()
    sockets = await wsclient.guests(args, counts, _Viewer, stop)
    async for command in viewers.commands():
        if command == b"measure":
            counts.chat_ms.clear()
            counts.leaked = 0
            counts.measure()
        elif command == b"report":
            viewers.answer({**counts.report(), "leaked": counts.leaked, "chat_ms": counts.chat_ms})
    await viewers.leave(sockets, stop)


if __name__ == "__main__":
    viewers.run(main, 100, "viewers of this process that time the chat")
