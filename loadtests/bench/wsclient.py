"""A lean WebSocket client for load tests: raw asyncio streams, counts frames, parses only what it samples.

A full client library saturates its own core before the server does; this one only reads frame
headers, except for the connections chosen to measure latency, which decode each frame's events.
The viewer processes (loadtests.support.viewers) fill a room with `guests`: CountingSockets, counting into their Counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from loadtests.support import tokens, viewers
from loadtests.support.viewers import Counts

_EVENT_TS = re.compile(rb'"ts":(\d+)')


@dataclass
class Stats(Counts):
    """hub_viewers' counts: also the bytes, and the sampled viewers' event delays."""

    bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def auth_frame(token: str) -> bytes:
    """The first frame of a room socket: the access token (never in the URL)."""
    return text_frame(b'{"type":"auth","token":"' + token.encode() + b'"}')


async def connect(
    host: str, port: int, path: str, token: str | None = None, timeout: float = 30.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket (HTTP/1.1 upgrade) and return the raw streams after the 101 response, the auth frame sent
    when there is a `token`."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=2**20), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    if token is not None:
        writer.write(auth_frame(token))
    return reader, writer


async def close(readers: list[asyncio.Task[None]], writers: list[asyncio.StreamWriter]) -> None:
    """Close sockets opened with `connect`: the tasks reading them cancelled and awaited, then their writers."""
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for writer in writers:
        writer.close()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole server frame (servers never mask): (opcode, payload)."""
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return opcode, await reader.readexactly(length)


async def next_frame(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
    """The next server frame that is not a ping, the pings before it answered (the server closes a socket that leaves
    one unanswered for SLOW_VIEWER_MS with 4000)."""
    while True:
        opcode, payload = await read_frame(reader)
        if opcode != 0x9:
            return opcode, payload
        writer.write(pong_frame(payload))


def text_frame(payload: bytes) -> bytes:
    """A masked client text frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def pong_frame(payload: bytes) -> bytes:
    """The answer to a server's ping: a masked pong (a zero mask) with the ping's payload."""
    return bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def close_code(payload: bytes) -> int:
    """A close frame's code (1005: none given)."""
    return int.from_bytes(payload[:2], "big") if payload else 1005


class RawSocket(asyncio.Protocol):
    """A room socket read straight from its bytes: the upgrade, the auth frame, pings answered, the close; each
    data frame handed to `frame(buffer, start, end)` without a copy. Subclasses count what they need."""

    def __init__(self, path: str, host: str, token: str) -> None:
        self.auth = auth_frame(token)
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.buffer = bytearray()
        self.upgraded = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None  # asyncio's or uvloop's transport

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        """A data frame's payload: buffer[start:end]."""

    def finished(self, code: int | None) -> None:
        """The socket ended: the server's close code, or None when the connection was lost."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.finished(None)
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._finish(1006)
                return
            self.upgraded = True
            del buffer[: end + 4]
            self.transport.write(self.auth)
        at = 0
        size = len(buffer)
        while size - at >= 2:
            opcode, length, head = buffer[at] & 0x0F, buffer[at + 1] & 0x7F, 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            if size - at < head + length:
                break
            start = at + head
            at = start + length
            if opcode == 0x8:
                self._finish(int.from_bytes(buffer[start : start + 2], "big") if length >= 2 else 1005)
                return
            if opcode == 0x9:  # ping: a masked pong with the same payload
                self.transport.write(pong_frame(bytes(buffer[start:at])))
                continue
            self.frame(buffer, start, at)
        del buffer[:at]

    def _finish(self, code: int) -> None:
        if not self.done.done():
            self.finished(code)
            self.done.set_result(None)
        self.transport.close()


class CountingSocket(RawSocket):
    """A viewer process's socket, counting into its Counts: every frame, the first (the snapshot) as connected (and
    sampled), the close and its code; each later frame handed to `event(buffer, start, end)`."""

    def __init__(self, counts: Counts, sampled: bool, path: str, host: str, token: str) -> None:
        super().__init__(path, host, token)
        self.counts = counts
        self.sampled = sampled
        self.first = True

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        counts = self.counts
        counts.frames += 1
        if self.first:  # the snapshot
            self.first = False
            counts.connected += 1
            counts.sampled += self.sampled
            return
        self.event(buffer, start, end)

    def event(self, buffer: bytearray, start: int, end: int) -> None:
        """A frame after the snapshot: buffer[start:end]."""

    def finished(self, code: int | None) -> None:
        self.counts.closed += 1
        if code is not None:
            self.counts.close_codes[code] = self.counts.close_codes.get(code, 0) + 1


async def guests(
    args: argparse.Namespace,
    counts: Counts,
    socket: type[CountingSocket],
    stop: asyncio.Event,
    sampled: int | None = None,
) -> list[asyncio.Task[None]]:
    """A viewer process's --count viewers of --room (its command line: loadtests.support.viewers.run), each a guest
    of its own (the room counts people, not sockets) on a `socket` counting into `counts`, until `stop` or the server
    closes it; --sampled of them (or `sampled`) sampled. Their tasks, once every one is in or was refused."""
    path, host = f"/ws/rooms/{args.room}", f"{args.host}:{args.port}"

    async def guest(sampled: bool) -> None:
        await stay(socket(counts, sampled, path, host, tokens.guest(args.secret)), args.host, args.port, stop)

    return await viewers.crowd(counts, args.count, args.sampled if sampled is None else sampled, guest)


async def stay(socket: RawSocket, host: str, port: int, stop: asyncio.Event) -> None:
    """Connect `socket` and keep it until `stop` or the server closes it."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: socket, host, port)
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([socket.done, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        transport.close()


class Viewer(CountingSocket):
    """hub_viewers' socket: counts a server's frames and their bytes, no coroutine, no copy per frame; the sampled
    ones' event delays (from each event's server timestamp; the first frame, the snapshot, is only counted)."""

    counts: Stats

    def frame(self, buffer: bytearray, start: int, end: int) -> None:
        stats = self.counts
        stats.frames += 1
        stats.bytes += end - start
        if self.first:
            self.first = False
            stats.connected += 1
            stats.sampled += self.sampled
        elif self.sampled:
            now = time.time() * 1000
            stamps = _EVENT_TS.findall(buffer, start, end)[1:]  # the frame's own ts first, then its events'
            stats.latencies_ms.extend(now - int(stamp) for stamp in stamps)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
