"""A lean WebSocket client for load tests: raw asyncio streams, counts frames, parses only what it samples.

A full client library saturates its own core before the server does; this one only reads frame
headers, except for the connections chosen to measure latency, which decode each frame's events.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import time
from dataclasses import dataclass, field

_EVENT_TS = re.compile(rb'"ts":(\d+)')


@dataclass
class Stats:
    connected: int = 0
    frames: int = 0
    bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    closed: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)


async def connect(
    host: str, port: int, path: str, timeout: float = 30.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket (HTTP/1.1 upgrade) and return the raw streams after the 101 response."""
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
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole server frame (servers never mask): (opcode, payload)."""
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return opcode, await reader.readexactly(length)


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


async def viewer(host: str, port: int, path: str, stats: Stats, measure: bool, stop: asyncio.Event) -> None:
    """Read frames until `stop`; when `measure`, record each event's delay from its server timestamp
    (the first frame, the snapshot, is only counted)."""
    reader, writer = await connect(host, port, path)
    first = True
    try:
        while not stop.is_set():
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                stats.closed += 1
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                stats.close_codes[code] = stats.close_codes.get(code, 0) + 1
                return
            if opcode == 0x9:  # ping: answer with a masked pong
                writer.write(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0" + payload)
                continue
            stats.frames += 1
            stats.bytes += len(payload)
            if first:
                stats.connected += 1
            if measure and not first:
                now = time.time() * 1000
                # the frame's own ts comes first; the events' ts follow
                stamps = _EVENT_TS.findall(payload)[1:]
                stats.latencies_ms.extend(now - int(stamp) for stamp in stamps)
            first = False
    except (asyncio.IncompleteReadError, ConnectionError):
        stats.closed += 1
    finally:
        writer.close()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
