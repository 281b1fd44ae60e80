"""A viewer that stops reading is closed with 4000 by our own bound, in a documented time, and nobody waits for it.

The kernel's buffers hide a reader that stopped: the server pings every PING_INTERVAL_MS and closes
a socket whose ping has no answer within SLOW_VIEWER_MS (server.webserver.RoomSocket). The byte
bound (OUTBOX_MAX_BYTES) is tested in tests/test_node.py.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from redis.asyncio import Redis

from loadtests.bench import wsclient
from loadtests.support.server import ServerProcess
from server.protocol import event
from server.rooms.record import RoomRecords
from tests.client import RoomClient
from tests.conftest import Shop, make_shop
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

PING_INTERVAL = 0.3  # seconds: what the tests' servers run with
SLOW_VIEWER = 0.7
TCP_CLOSE = 7  # tcpi_state of a socket the peer reset

Publish = Callable[[int], Awaitable[None]]


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def _watch(server: ServerProcess, name: str, predicate: Callable[[float], bool], timeout: float) -> float:
    """Poll a metric of the server until `predicate(value)`; return the time it was first seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while not predicate(await asyncio.to_thread(_metric, server, name)):
        assert loop.time() < deadline, f"{name} did not change within {seconds(timeout):g} s"
        await asyncio.sleep(0.01)
    return time.monotonic()


@asynccontextmanager
async def _chat(redis_url: str, room_id: str, size: int = 100) -> AsyncIterator[tuple[list[str], Publish]]:
    """Publish chat messages (ids "0", "1", ...) to the room the way the server does; yields (ids sent, publish(n))."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    records = RoomRecords(redis)
    sent: list[str] = []

    async def publish(count: int) -> None:
        for _ in range(count):
            message_id = str(len(sent))
            text = "x" * size
            message = {"id": message_id, "user_id": "u", "name": "U", "role": "viewer", "text": text}
            await records.publish(room_id, event("chat.message", message=message))
            sent.append(message_id)

    try:
        yield sent, publish
    finally:
        await redis.aclose()


def _chat_ids(client: RoomClient) -> list[str]:
    return [item["message"]["id"] for item in client.events if item["type"] == "chat.message"]


async def test_a_viewer_that_stops_reading_is_closed_with_4000_within_ping_interval_and_slow_viewer(
    server_factory: Any, redis_url: str
) -> None:
    """A viewer whose reading stops while events flow is closed with 4000 (not 1011) between SLOW_VIEWER_MS and
    PING_INTERVAL_MS + SLOW_VIEWER_MS later, counted as too slow and gone from the server; reading again it finds
    the events sent before, in order, then the 4000. Another viewer in the room gets every event meanwhile."""
    server: ServerProcess = server_factory(
        PING_INTERVAL_MS=str(int(PING_INTERVAL * 1000)),
        SLOW_VIEWER_MS=str(int(SLOW_VIEWER * 1000)),
        CHAT_SHOWN_PER_SECOND="0",  # the healthy viewer is shown every message
    )
    shop: Shop = make_shop(server.base_url, server.ws_url, redis_url)
    async with (
        _chat(redis_url, shop.room_id) as (sent, publish),
        await RoomClient.connect(shop.room_url(shop.guest())) as healthy,
        await RoomClient.connect(shop.room_url(shop.guest())) as stalled,
    ):
        await publish(5)
        await stalled.wait(lambda: len(_chat_ids(stalled)) == 5)
        slow_before = _metric(server, "livecart_viewers_closed_slow_total")
        stalled.connection.transport.pause_reading()
        stopped = time.monotonic()
        flowing = asyncio.create_task(_keep_publishing(publish))
        closed = await _watch(server, "livecart_viewers_closed_slow_total", lambda v: v == slow_before + 1, 5)
        assert SLOW_VIEWER - 0.1 <= closed - stopped <= PING_INTERVAL + SLOW_VIEWER + seconds(0.5)
        await _watch(server, "livecart_connections", lambda v: v == 1, 5)  # the healthy one
        flowing.cancel()
        await asyncio.gather(flowing, return_exceptions=True)
        await healthy.wait(lambda: _chat_ids(healthy) == sent)
        assert not healthy.closed

        stalled.connection.transport.resume_reading()
        code, _ = await stalled.wait_closed()
        assert code == 4000
        received = _chat_ids(stalled)
        assert received == sent[: len(received)] and len(received) >= 5


async def _keep_publishing(publish: Publish) -> None:
    """Events flowing at a chat's pace (a message every 20 ms) until cancelled."""
    while True:
        await publish(1)
        await asyncio.sleep(0.02)


async def test_a_stalled_reader_with_full_buffers_is_reset_after_the_close(server_factory: Any, redis_url: str) -> None:
    """A viewer that stops reading with more waiting than its buffers hold gets its 4000 after what waits, and the
    connection is reset SLOW_VIEWER_MS later, since it will never take it: no socket lingers on the server."""
    server: ServerProcess = server_factory(
        PING_INTERVAL_MS=str(int(PING_INTERVAL * 1000)),
        SLOW_VIEWER_MS=str(int(SLOW_VIEWER * 1000)),
        OUTBOX_MAX_BYTES=str(64 * 1024 * 1024),  # only the time bound acts here
        CHAT_SHOWN_PER_SECOND="0",  # the healthy viewer is shown every message
    )
    shop: Shop = make_shop(server.base_url, server.ws_url, redis_url)
    slow_before = _metric(server, "livecart_viewers_closed_slow_total")
    async with (
        _chat(redis_url, shop.room_id, size=3000) as (sent, publish),
        await RoomClient.connect(shop.room_url(shop.guest())) as healthy,
    ):
        raw, writer = await _stalled_viewer(server, shop)
        connected = time.monotonic()
        await publish(300)  # about 900 KB: more than the kernel's buffers take for a reader with a 4 KiB window
        await _watch(server, "livecart_viewers_closed_slow_total", lambda v: v == slow_before + 1, 5)
        await until(lambda: _tcp_state(raw) == TCP_CLOSE, timeout=5, what="the server to reset the connection")
        assert time.monotonic() - connected <= PING_INTERVAL + 2 * SLOW_VIEWER + seconds(1)
        await _watch(server, "livecart_connections", lambda v: v == 1, 5)
        await healthy.wait(lambda: _chat_ids(healthy) == sent, timeout=10)
        assert not healthy.closed
        writer.close()


async def _stalled_viewer(server: ServerProcess, shop: Shop) -> tuple[socket.socket, asyncio.StreamWriter]:
    """A viewer with a 4 KiB receive buffer that reads its snapshot, then nothing more (so never a ping either)."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=raw)
    writer.write(
        f"GET /ws/rooms/{shop.room_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(wsclient.auth_frame(shop.guest()))
    await wsclient.read_frame(reader)  # the snapshot
    cast(asyncio.Transport, writer.transport).pause_reading()
    return raw, writer


def _tcp_state(raw: socket.socket) -> int:
    return int(struct.unpack("B", raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0])
