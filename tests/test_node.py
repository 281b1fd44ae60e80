"""The node: failures that lose nothing (a slow viewer, a restart, Redis going away) and a shutdown that always ends."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.bench import wsclient
from server.protocol import event
from server.store.embedded import EmbeddedRedis
from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop, make_shop, publish_direct, start_server
from tests.sale_helpers import create_sale
from tests.timing import seconds

pytestmark = pytest.mark.anyio


async def _never_reading_viewer(server: ServerProcess, shop: Shop) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A viewer with a tiny receive buffer that stops reading after the snapshot."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    writer.write(
        f"GET /ws/rooms/{shop.room_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(wsclient.auth_frame(shop.guest()))
    await wsclient.read_frame(reader)  # the snapshot
    return reader, writer


async def test_viewer_that_cannot_keep_up_is_closed_and_nobody_waits_for_it(
    server_factory: Any, redis_url: str
) -> None:
    """A viewer that stops reading is closed with 4000 once what waits for it (its queued batches and its socket's
    buffer) is past OUTBOX_MAX_BYTES, long before its ping goes unanswered; a normal viewer gets every event on time."""
    server: ServerProcess = server_factory(
        OUTBOX_MAX_BYTES=str(64 * 1024),
        SLOW_VIEWER_MS="60000",
        CHAT_SHOWN_PER_SECOND="0",  # every chat message shown
    )
    shop = make_shop(server.base_url, server.ws_url, redis_url)
    reader, writer = await _never_reading_viewer(server, shop)
    async with await RoomClient.connect(shop.room_url(shop.guest())) as healthy:
        text = "a fairly long chat message, the kind people write when they ask about sizes " * 40
        for burst in range(80):
            messages = [
                event(
                    "chat.message",
                    message={"id": f"{burst}-{i}", "user_id": "u", "name": "U", "role": "viewer", "text": text},
                )
                for i in range(50)
            ]
            await publish_direct(redis_url, shop.room_id, messages)
        await healthy.wait(lambda: sum(1 for e in healthy.events if e["type"] == "chat.message") == 4000, timeout=30)
        metrics = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers).text
        assert "livecart_viewers_closed_slow_total 1.0" in metrics
        assert not healthy.closed
    # the slow viewer finally reads: what was already in flight, then the close frame with 4000
    code = None
    while code is None:
        opcode, payload = await asyncio.wait_for(wsclient.read_frame(reader), 10)
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0]
    assert code == 4000
    writer.close()


async def test_server_shutdown_tells_viewers_to_reconnect_with_1012(server_factory: Any, redis_url: str) -> None:
    """On SIGTERM every viewer gets close code 1012 (service restart) and the process exits cleanly."""
    server: ServerProcess = server_factory()
    shop = make_shop(server.base_url, server.ws_url, redis_url)
    viewers = [await RoomClient.connect(shop.room_url(shop.guest())) for _ in range(3)]
    server.process.send_signal(signal.SIGTERM)
    for viewer in viewers:
        code, _ = await viewer.wait_closed(timeout=10)
        assert code == 1012
    assert await asyncio.to_thread(server.process.wait, 15) == 0


async def test_nothing_acknowledged_is_lost_across_a_restart(
    server_factory: Any, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Messages acknowledged before a restart are in the snapshot and the recovery after it."""
    first: ServerProcess = server_factory()
    shop = make_shop(first.base_url, first.ws_url, redis_url)
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        assert host.first is not None
        epoch = host.first["epoch"]
        for i in range(5):
            assert (await host.request("chat.send", text=f"acked {i}"))["type"] == "ack"
        first.process.send_signal(signal.SIGTERM)
        await host.wait_closed(timeout=10)
    second = start_server(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": database_url})
    try:
        guest = httpx.post(f"{second.base_url}/api/guest").json()["token"]
        url = f"{second.ws_url}/ws/rooms/{shop.room_id}?token={guest}&since=0&epoch={epoch}"
        async with await RoomClient.connect(url) as back:
            await back.wait(lambda: len([e for e in back.events if e["type"] == "chat.message"]) == 5)
            assert [e["message"]["text"] for e in back.events if e["type"] == "chat.message"] == [
                f"acked {i}" for i in range(5)
            ]
    finally:
        second.stop()


async def test_redis_going_away_mid_show_gives_clear_errors_and_recovers(tmp_path: Path, database_url: str) -> None:
    """With Redis down, commands get 'unavailable' and nothing changes; when it is back, the room works again."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        server = start_server(tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url})
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            async with (
                await RoomClient.connect(shop.room_url(shop.host)) as host,
                await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
            ):
                assert (await host.request("chat.send", text="before"))["type"] == "ack"
                await viewer.wait_event("chat.message")
                redis_server.stop()
                refused = await host.request("chat.send", text="while down", timeout=15)
                assert refused["type"] == "error" and refused["code"] == "unavailable"
                assert "try again" in refused["message"]
                assert httpx.get(f"{server.base_url}/readyz").status_code == 503
                redis_server.start()  # same data dir: the AOF brings the room back
                for _ in range(100):
                    reply = await host.request("chat.send", text="after", timeout=15)
                    if reply["type"] == "ack":
                        break
                    await asyncio.sleep(0.1)
                after = await viewer.wait_event("chat.message", timeout=10, offset=2)
                assert after["message"]["text"] == "after"
                assert not [e for e in viewer.events if e.get("message", {}).get("text") == "while down"]
        finally:
            server.stop()


async def test_sigterm_stops_the_server_in_bounded_time_while_redis_is_unreachable(
    tmp_path: Path, database_url: str
) -> None:
    """With Redis frozen (no answers at all), SIGTERM still closes viewers with 1012 and ends the process in time."""
    shutdown = 2  # seconds, for uvicorn's graceful close and for the node's own stop
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        server = start_server(
            tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url, "SHUTDOWN_SECONDS": str(shutdown)}
        )
        assert redis_server.process is not None
        frozen = False
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            create_sale(shop)  # the sale clock and stock loops are running
            viewers = [await RoomClient.connect(shop.room_url(shop.guest())) for _ in range(3)]
            redis_server.process.send_signal(signal.SIGSTOP)
            frozen = True
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            for viewer in viewers:
                code, _ = await viewer.wait_closed(timeout=seconds(2 * shutdown + 5))
                assert code == 1012
            assert await asyncio.to_thread(server.process.wait, seconds(2 * shutdown + 5)) == 0
            assert time.monotonic() - started < seconds(2 * shutdown + 2), server.log()
        finally:
            if frozen:
                redis_server.process.send_signal(signal.SIGCONT)
            server.stop(signal.SIGKILL)
