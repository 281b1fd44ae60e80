"""One process of reconnect_bench's viewers: stayers that time the chat, and droppers that follow every offset, drop
their sockets at once when told and come back with since/epoch, as room-socket.js does.

Driven over stdin/stdout by loadtests.bench.reconnect_bench (loadtests.support.viewers):

    stdout: "connected <n> <closed>"   once every viewer has its first frame (or was refused)
    stdin:  "drop"                      every dropper drops its socket and reconnects with since/epoch, at most
                                        --inflight connecting at a time; once each has its first frame (or failed),
                                        one JSON line: the storm (when each began, its first frame, of what kind)
    stdin:  "newest"                    one JSON line: the send stamp of the newest chat message a stayer timed
    stdin:  "report"                    one JSON line: the stayers' chat delays, the droppers' gaps and duplicates
    stdin:  "quit"

A dropper checks each durable event's offset as it comes (the snapshot's, the recovered frame's events, the batches'):
one above the last it had is right, a higher one is a gap, a lower or equal one a duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from loadtests.bench import chat, wsclient
from loadtests.support import tokens, viewers

_OFFSET = re.compile(rb'"offset":(\d+)')  # an event's offset (a batch frame has none of its own)


@dataclass
class Storm:
    """What the droppers saw: each reconnect's start and first frame (time.time()), its kind and events replayed."""

    began: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    recovered: int = 0
    snapshots: int = 0
    replayed: int = 0  # durable events in the recovered frames
    failed: dict[str, int] = field(default_factory=dict)  # close code (or "lost") before a first frame -> count


@dataclass
class Counts(viewers.Counts):
    """Everything this process saw: the sampled stayers' chat delays (send stamp, ms), the droppers' offsets."""

    delays: list[tuple[float, float]] = field(default_factory=list)  # (sent, ms from sent to arrival)
    gaps: int = 0
    duplicates: int = 0
    storm: Storm = field(default_factory=Storm)


class Stayer(wsclient.CountingSocket):
    """A viewer that stays: the sampled ones note each bench chat message's delay (from the stamp in its text)."""

    counts: Counts

    def event(self, buffer: bytearray, start: int, end: int) -> None:
        if self.sampled:
            now = time.time() * 1000
            for stamp in chat.STAMP.findall(buffer, start, end):
                sent = float(stamp)
                self.counts.delays.append((sent, now - sent))


class Dropper(wsclient.CountingSocket):
    """A viewer that will drop: follows the room's offsets (gaps and duplicates counted), and knows its since/epoch."""

    counts: Counts

    def __init__(self, counts: Counts, path: str, host: str, token: str, since: int | None, epoch: str) -> None:
        super().__init__(counts, False, path, host, token)
        self.token = token
        self.since = since
        self.last = since or 0
        self.epoch = epoch
        self.began = time.time()
        self.storm: Storm | None = None  # set on a reconnect: where its first frame is noted
        self.arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
        counts.frames += 1
        if not self.first:
            self.note(int(offset) for offset in _OFFSET.findall(buffer, start, end))
            return
        self.first = False
        counts.connected += 1
        first = orjson.loads(buffer[start:end])
        if first["type"] == "recovered":
            self.note(event["offset"] for event in first["events"])
            self.last = max(self.last, first["offset"])  # nothing missed up to there, events or none
        else:
            self.last = first["offset"]  # a fresh start: what came before is the snapshot
        self.epoch = first["epoch"]
        self.arrived.set_result(None)
        if self.storm is not None:
            self.storm.first.append(time.time())
            self.storm.began.append(self.began)
            if first["type"] == "recovered":
                self.storm.recovered += 1
                self.storm.replayed += len(first["events"])
            else:
                self.storm.snapshots += 1

    def note(self, offsets: Any) -> None:
        for offset in offsets:
            if offset <= self.last:
                self.counts.duplicates += 1
                continue
            if offset > self.last + 1:
                self.counts.gaps += offset - self.last - 1
            self.last = offset

    def finished(self, code: int | None) -> None:
        super().finished(code)
        if self.first and self.storm is not None:
            key = "lost" if code is None else str(code)
            self.storm.failed[key] = self.storm.failed.get(key, 0) + 1


async def main(args: argparse.Namespace) -> None:
    counts = Counts()
    stop = asyncio.Event()
    path, host = f"/ws/rooms/{args.room}", f"{args.host}:{args.port}"
    droppers: list[Dropper] = []
    every = max(1, (args.count - args.drop) // max(args.sampled, 1))  # the stayers' every (every)th one is sampled
    made = 0

    async def join(_sampled: bool) -> None:
        nonlocal made
        index, made = made, made + 1
        socket: wsclient.CountingSocket
        if index < args.drop:
            socket = Dropper(counts, path, host, tokens.guest(args.secret), None, "")
            droppers.append(socket)
        else:
            sampled = args.sampled > 0 and (index - args.drop) % every == 0
            socket = Stayer(counts, sampled, path, host, tokens.guest(args.secret))
        await wsclient.stay(socket, args.host, args.port, stop)

    tasks = await viewers.crowd(counts, args.count, 0, join)
    commands = viewers.commands()
    assert await anext(commands) == b"drop"
    gate = asyncio.Semaphore(args.inflight)
    storm = counts.storm

    async def reconnect(old: Dropper) -> None:
        async with gate:
            query = f"?since={old.last}&epoch={old.epoch}"
            new = Dropper(counts, path + query, host, old.token, old.last, old.epoch)
            new.storm = storm
            held = asyncio.create_task(wsclient.stay(new, args.host, args.port, stop))
            tasks.append(held)
            await asyncio.wait([new.arrived, new.done, held], return_when=asyncio.FIRST_COMPLETED)
            if held.done() and held.exception() is not None:  # refused: no connection at all
                storm.failed["refused"] = storm.failed.get("refused", 0) + 1

    for dropper in droppers:
        dropper.transport.abort()  # the network went: no close frame
    await asyncio.gather(*(reconnect(dropper) for dropper in droppers))
    viewers.answer(vars(storm))
    async for command in commands:
        if command == b"newest":
            newest = max((sent for sent, _ in counts.delays), default=0.0) if args.sampled else None  # None: none timed
            viewers.answer({"newest": newest})
        elif command == b"report":
            report = {"delays": counts.delays, "gaps": counts.gaps, "duplicates": counts.duplicates}
            viewers.answer({**counts.report(), **report})
    await viewers.leave(tasks, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--secret", required=True, help="the server's SECRET_KEY: each viewer gets a guest token")
    parser.add_argument("--count", type=int, required=True, help="viewers of this process")
    parser.add_argument("--drop", type=int, required=True, help="of them, the droppers")
    parser.add_argument("--sampled", type=int, required=True, help="stayers that time the chat")
    parser.add_argument("--inflight", type=int, required=True, help="reconnects connecting at a time")
    viewers.raise_open_files()
    uvloop.run(main(parser.parse_args()))  # the load generator must stay cheaper than the server
