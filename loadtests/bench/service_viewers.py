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
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from loadtests.bench import wsclient
from loadtests.support import tokens

CHAT_STAMP = re.compile(rb"bench chat (\d+\.\d+)")
SERVICE = b'"type":"service.'


@dataclass
class Counts:
    connected: int = 0
    closed: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    sampled: int = 0  # connected viewers that time the chat
    frames: int = 0
    leaked: int = 0  # service.* events that reached a guest
    chat_ms: list[float] = field(default_factory=list)  # the sampled viewers' chat latencies


class _Viewer(wsclient.RawSocket):
    """A guest's room socket, read straight from its bytes: frames, leaks, chat stamps."""

    def __init__(self, counts: Counts, sampled: bool, path: str, host: str, token: str) -> None:
        super().__init__(path, host, token)
        self.counts = counts
        self.sampled = sampled
        self.first = True

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
        counts.frames += 1
        if self.first:  # the snapshot (its recent chat is old news)
            self.first = False
            counts.connected += 1
            counts.sampled += self.sampled
            return
        counts.leaked += buffer.count(SERVICE, start, end)
        if self.sampled:
            now = time.time() * 1000
            counts.chat_ms.extend(now - float(stamp) for stamp in CHAT_STAMP.findall(buffer, start, end))

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
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([protocol.done, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        transport.close()


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
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    frames, usage = 0, resource.getrusage(resource.RUSAGE_SELF)
    while (command := (await reader.readline()).strip()) not in (b"quit", b""):
        if command == b"measure":
            counts.chat_ms.clear()
            counts.leaked = 0
            frames, usage = counts.frames, resource.getrusage(resource.RUSAGE_SELF)
        elif command == b"report":
            after = resource.getrusage(resource.RUSAGE_SELF)
            result = {
                "frames": counts.frames - frames,
                "leaked": counts.leaked,
                "chat_ms": counts.chat_ms,
                "connected": counts.connected,
                "sampled": counts.sampled,
                "closed": counts.closed,
                "close_codes": counts.close_codes,
                "cpu_seconds": (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
            }
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
    parser.add_argument("--sampled", type=int, default=100, help="viewers of this process that time the chat")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main(parser.parse_args()))  # the load generator must stay cheaper than the server
