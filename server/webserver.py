"""uvicorn's side of the HTTP edge: its HTTP protocol with a deadline on request headers, the headers on every answer.

**Slow requests.** uvicorn has a keep-alive timeout but none on a request's headers or body: a
client that opens a connection and sends half a request line, one header byte now and then, or a
body shorter than its Content-Length, holds the connection forever. The protocol here closes a
connection whose request headers are not complete within HEADER_TIMEOUT_MS of the connection being
made or of the first byte of its next request, or whose body is not within BODY_TIMEOUT_MS of its
headers (answering 408 first when the app has not answered). Between requests a kept-alive
connection is uvicorn's (`timeout_keep_alive`). `python -m server` passes it to uvicorn.run as
`http=PROTOCOL` (an import string, so each worker process imports it).

**Room sockets.** `RoomSocket` is uvicorn's WebSocket protocol with two additions (`ws=WS_PROTOCOL`).
The hub encodes a tick's frame once, as WebSocket frame bytes (`text_frame`), and each viewer
writes those bytes straight to its socket (`socket_of(scope).write`) instead of through the ASGI
send, which would build and serialize the same frame again per viewer. And its keepalive is ours:
a ping every PING_INTERVAL_MS, and a socket whose ping has no answer within SLOW_VIEWER_MS is
closed with 4000 (too slow), not uvicorn's 1011: the kernel's buffers hide a reader that stopped,
its pings do not.

**Security headers.** `EVERY_ANSWER` is the list `python -m server` gives uvicorn.run as `headers=`:
uvicorn writes it on every answer it sends, pages, static files, the API and its errors, the
purchase hot path and the room socket's handshake (both served ahead of Starlette), even its own
400s. `page_headers` (the Content-Security-Policy and the framing and feature switches) go on the
pages and their files only (server.app): they mean something to a document, and on the purchase
hot path they would cost a few microseconds each for nothing.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import socket
import struct
from collections.abc import Callable, MutableMapping
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from server import config
from server.config import Settings
from server.protocol import CloseCode

log = logging.getLogger("livecart.http")

PROTOCOL = "server.webserver:DeadlineProtocol"
WS_PROTOCOL = "server.webserver:RoomSocket"
SOCKET = "livecart.socket"  # the ASGI scope extension that carries a connection's RoomSocket


# What every answer carries (uvicorn writes them, `python -m server` gives it this list as `headers=`): cheap, and
# what matters for JSON, files and errors alike.
EVERY_ANSWER = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


def page_headers(settings: Settings) -> list[tuple[str, str]]:
    """What the pages and the files they load carry on top (server.app serves them): the policy they work under and
    the browser switches; an API answer is no document, and the purchase hot path spends nothing on them.

    The pages load only their own scripts, styles and images, plus product images from any https
    host (a product's image_url); they connect only to their own origin (the room socket, the API,
    WHIP and WHEP), and to PUBLIC_URL, where a video session's Location points. ALLOWED_ORIGINS
    names other sites whose pages may open room sockets here: where those pages connect is up to
    their own policy, not this one. No referrer is sent: nothing here reads it, and page
    addresses name rooms.
    """
    connect = ["'self'"]
    if settings.public_url:
        public = urlsplit(settings.public_url)
        connect.append(f"{public.scheme}://{public.netloc}")
    policy = {
        "default-src": "'self'",
        "frame-ancestors": "'none'",
        "connect-src": " ".join(connect),
        "img-src": "'self' data: blob: https:",
        "media-src": "'self' blob:",
        "style-src": "'self'",
        "script-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
    }
    return [
        ("Content-Security-Policy", "; ".join(f"{name} {value}" for name, value in policy.items())),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()"),
    ]


@functools.cache
def _timeouts() -> tuple[float, float]:
    """HEADER_TIMEOUT_MS and BODY_TIMEOUT_MS in seconds, read once per process (uvicorn builds the protocol, not us)."""
    settings = config.load()
    return settings.header_timeout_ms / 1000, settings.body_timeout_ms / 1000


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what its `http="auto"` picks) with deadlines on what a request has begun to send.

    A request's headers must be complete within HEADER_TIMEOUT_MS of the connection being made or of
    the first byte of the request (bytes between requests included: a trickle of blank lines counts);
    its body within BODY_TIMEOUT_MS of its headers. Past a deadline the connection is closed, after
    a 408 when the app has not answered yet. A timer runs only while something is still to come: a
    request whose head and body arrive in one read (nearly every one, the purchase hot path's) sets
    none.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts = _timeouts()
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting: str | None = None  # "headers" or "body": begun, not all here yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting = "headers"
        self._arm()  # a connection that never sends a byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.waiting is None:
            self.waiting = "headers"  # the first bytes of a next request (blank lines before it included)
        super().data_received(data)
        if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: its protocol's business now
            self._disarm()
        elif self.waiting is not None and self.deadline is None:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.waiting = "headers"

    def on_headers_complete(self) -> None:
        self._disarm()  # the body gets its own deadline, if it has not all come with the headers
        self.waiting = "body"
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.waiting = None
        self._disarm()

    def _arm(self) -> None:
        header_timeout, body_timeout = self.timeouts
        self.deadline = self.loop.call_later(body_timeout if self.waiting == "body" else header_timeout, self._late)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _late(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        body_timeout = self.timeouts[1]
        if self.waiting == "body" and self.cycle is not None and not self.cycle.response_started:
            log.debug("%s: request body not complete within %g s: 408, closed", self.client, body_timeout)
            message = f"the request body did not arrive within {round(body_timeout * 1000)} ms"
            self._answer_408(orjson.dumps({"error": {"code": "timeout", "message": message}}))
        else:
            log.debug("%s: request %s not complete in time: closed", self.client, self.waiting)
        self.transport.close()

    def _answer_408(self, body: bytes) -> None:
        content = [b"HTTP/1.1 408 Request Timeout\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))


def text_frame(payload: bytes) -> bytes:
    """A server's WebSocket text frame carrying `payload` (RFC 6455 5.2: FIN, opcode 1, unmasked, no extension)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


@functools.cache
def _keepalive() -> tuple[float, float]:
    """PING_INTERVAL_MS and SLOW_VIEWER_MS in seconds, read once per process."""
    settings = config.load()
    return settings.ping_interval_ms / 1000, settings.slow_viewer_ms / 1000


class Inbox:
    """What the protocol hands the app to receive, in order: uvicorn's asyncio.Queue without its three deques
    and its Event (3 KB a connection, docs/benchmarks.md); a future only while the app (its one reader) waits."""

    __slots__ = ("messages", "waiter")

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, message: Any) -> None:
        self.messages.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def empty(self) -> bool:
        return not self.messages

    async def get(self) -> Any:
        while not self.messages:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.messages.pop(0)


class Flag:
    """asyncio.Event's set, clear, is_set and wait without its deque (0.8 KB a connection): futures only while
    something waits."""

    __slots__ = ("value", "waiters")

    def __init__(self) -> None:
        self.value = True
        self.waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> None:
        if self.value:
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        await waiter


class RoomSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol (what its `ws="auto"` picks) that takes frames already encoded and
    closes a reader that stopped with 4000.

    The app finds it as `socket_of(scope)`. `write` puts a frame on the transport as it is. The
    ASGI send (the first frame, acks, closes) writes at once too when `writable` is set (its only
    await is on it), so both land in call order, whole frames each; a writer of frames checks
    `writable` first and, while it is clear (the transport's buffer over its high mark), keeps
    them until `on_writable`, which runs before an ASGI send that waited is resumed. uvicorn's
    keepalive runs on PING_INTERVAL_MS and SLOW_VIEWER_MS: a ping left unanswered calls
    `on_stalled` and closes the socket with 4000 (`close_now`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.ping_interval, self.ping_timeout = _keepalive()
        self.on_writable: Callable[[], None] | None = None  # the transport's buffer drained below its low mark
        self.on_stalled: Callable[[], None] | None = None  # a ping went unanswered: the socket is closing with 4000

    async def run_asgi(self) -> None:
        self.scope["extensions"][SOCKET] = {"socket": self}  # uvicorn builds the scope in handle_connect, then this
        await super().run_asgi()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The handshake's request is in the scope now. uvicorn keeps it (and websockets' parser, in its generator's
        # frame) for as long as the connection lasts, unused: its headers go, the object with them.
        event.headers.clear()
        del self.request

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            del self.response  # written: uvicorn would keep it, unused, for as long as the connection lasts

    def write(self, frame: bytes) -> None:
        """Write an encoded frame as it is; nothing once a close frame went out or the connection is closing."""
        if not (self.close_sent or self.transport.is_closing()):
            self.transport.write(frame)

    def buffered(self) -> int:
        """Bytes written to the transport that the kernel has not taken yet."""
        return self.transport.get_write_buffer_size()

    def close_now(self, code: int, reason: str) -> None:
        """Close without waiting for the socket: the close frame after what it holds; the connection ends when the
        client answers it (uvicorn's closing handshake), else it is reset SLOW_VIEWER_MS later. The app's reads end
        at once and its sends fail."""
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.disconnected = True  # a send now raises ClientDisconnected, as after a lost connection
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.stop_keepalive()
        if self.read_paused:  # to hear the client's answer
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(_keepalive()[1], self._reset)

    def _reset(self) -> None:
        """End the connection and what the kernel still holds for it: a plain close would leave the kernel sending it
        to a reader that takes nothing, for minutes."""
        self.close_timer = None
        raw = self.transport.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    def keepalive_timeout(self) -> None:
        if self.read_paused:  # the app has not taken the client's last message yet: the answer may wait unread, on us
            self.pong_timer = self.loop.call_later(_keepalive()[1], self.keepalive_timeout)
            return
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        if self.on_stalled is not None:
            self.on_stalled()
        self.close_now(CloseCode.TOO_SLOW, CloseCode.TOO_SLOW.reason)


def socket_of(scope: MutableMapping[str, Any]) -> RoomSocket:
    """The RoomSocket of a WebSocket connection (uvicorn runs with `ws=WS_PROTOCOL`)."""
    return cast(RoomSocket, scope["extensions"][SOCKET]["socket"])


class HideQueryStrings(logging.Filter):
    """uvicorn's log lines with the request's path but never its query string: a client may still put a secret
    there (an old page's ?token=), and a log is read by more people than the server's users."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and '"WebSocket %s"' in str(record.msg):
            record.args = tuple(
                arg.split("?", 1)[0] if index == 1 and isinstance(arg, str) else arg
                for index, arg in enumerate(record.args)
            )
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with HideQueryStrings on its handlers (applied in every worker process)."""
    from uvicorn.config import LOGGING_CONFIG

    configured = copy.deepcopy(LOGGING_CONFIG)
    configured["filters"] = {"hide_query_strings": {"()": f"{__name__}.HideQueryStrings"}}
    for handler in configured["handlers"].values():
        handler["filters"] = ["hide_query_strings"]
    return configured
