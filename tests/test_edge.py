"""The HTTP edge against a hostile client: slow requests cut off, no 500 for bad input, files private, security
headers on every answer, /metrics behind a token, room ids chosen by the server."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import orjson
import pytest

from loadtests.support.server import ServerProcess
from server.protocol import Role
from tests.conftest import mint, start_server
from tests.sale_helpers import viewer_token
from tests.timing import seconds

pytestmark = pytest.mark.anyio

HEADER_TIMEOUT = seconds(0.6)  # what the edge server waits for a request's headers, and for its body
SLACK = seconds(2)  # how much later than its deadline a connection may be seen closed


@pytest.fixture(scope="module")
def edge(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short header and body deadlines."""
    timeout_ms = str(int(HEADER_TIMEOUT * 1000))
    started = start_server(
        tmp_path_factory.mktemp("edge"), {**stores, "HEADER_TIMEOUT_MS": timeout_ms, "BODY_TIMEOUT_MS": timeout_ms}
    )
    yield started
    started.stop()


@asynccontextmanager
async def _connection(server: ServerProcess) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to the server, closed on our side afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def _closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Read until the server closes the connection (what it sent is dropped); the seconds since `started`."""
    while await asyncio.wait_for(reader.read(65536), HEADER_TIMEOUT + SLACK):
        pass
    return time.monotonic() - started


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer: its status, headers (lowercase names) and body (Content-Length long)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT + SLACK)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def _purchase_head(content_length: int) -> bytes:
    """A purchase's request head (a valid token and key: the body is what the server reads next)."""
    return (
        "POST /api/sales/s_0000000000/purchases HTTP/1.1\r\nHost: edge\r\n"
        f"Authorization: Bearer {viewer_token()}\r\nIdempotency-Key: {secrets.token_hex(8)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


# --- F8: slow clients ---------------------------------------------------------------------------


async def test_half_sent_request_headers_are_closed_after_the_header_timeout(edge: ServerProcess) -> None:
    """A client that sends half a request head and waits is disconnected once HEADER_TIMEOUT_MS has passed."""
    started = time.monotonic()
    async with _connection(edge) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nAccept: ")
        elapsed = await _closed_after(reader, started)
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_request_headers_trickled_a_byte_at_a_time_are_closed_after_the_header_timeout(
    edge: ServerProcess,
) -> None:
    """One header byte every fifth of the timeout keeps bytes coming, but the head is not complete in time: closed."""
    head = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    started = time.monotonic()
    async with _connection(edge) as (reader, writer):
        closed = asyncio.create_task(_closed_after(reader, started))
        for byte in head:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait([closed], timeout=HEADER_TIMEOUT / 5)  # the client's pace
        elapsed = await closed
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_announced_body_that_does_not_come_gets_408_and_the_connection_is_closed(edge: ServerProcess) -> None:
    """Content-Length 100 and 10 bytes sent: 408 timeout within BODY_TIMEOUT_MS, then the server closes, on the
    purchase hot path as on the routes behind Starlette."""
    staff_route = (
        "PUT /api/merchants/edge-shop/blocklist HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint('edge-shop', Role.ADMIN)}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    for head in (_purchase_head(100), staff_route):
        started = time.monotonic()
        async with _connection(edge) as (reader, writer):
            writer.write(head + b'{"quantity')
            status, headers, body = await _answer(reader)
            assert status == 408, body
            assert headers["connection"] == "close"
            assert orjson.loads(body)["error"]["code"] == "timeout"
            elapsed = await _closed_after(reader, started)
        assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_kept_alive_connection_idles_under_the_keep_alive_timeout_not_the_header_timeout(
    edge: ServerProcess,
) -> None:
    """A normal client keeps its connection: a request, an idle pause longer than the header timeout (shorter than
    uvicorn's 5 s keep-alive), and the next request on the same connection is answered."""
    async with _connection(edge) as (reader, writer):
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
            status, _, body = await _answer(reader)
            assert (status, body) == (200, b"ok")
            await asyncio.sleep(HEADER_TIMEOUT * 1.5)  # the idle pause between requests is the scenario itself


async def test_hundreds_of_half_open_connections_are_all_closed_after_the_header_timeout(edge: ServerProcess) -> None:
    """300 connections that send nothing or half a request head are all closed by the server within the timeout."""
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(_connection(edge)) for _ in range(300)]
        for number, (_, writer) in enumerate(connections):
            if number % 2:
                writer.write(b"POST /api/guest HTTP/1.1\r\nHost: edge\r\nContent-")
        closed = await asyncio.gather(*(_closed_after(reader, started) for reader, _ in connections))
    assert len(closed) == 300 and max(closed) <= HEADER_TIMEOUT + SLACK
