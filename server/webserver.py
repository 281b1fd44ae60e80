"""uvicorn's side of the HTTP edge: its HTTP protocol with a deadline on request headers, the headers on every answer.

**Slow requests.** uvicorn has a keep-alive timeout but none on a request's headers or body: a
client that opens a connection and sends half a request line, one header byte now and then, or a
body shorter than its Content-Length, holds the connection forever. The protocol here closes a
connection whose request headers are not complete within HEADER_TIMEOUT_MS of the connection being
made or of the first byte of its next request, or whose body is not within BODY_TIMEOUT_MS of its
headers (answering 408 first when the app has not answered). Between requests a kept-alive
connection is uvicorn's (`timeout_keep_alive`). `python -m server` passes it to uvicorn.run as
`http=PROTOCOL` (an import string, so each worker process imports it).

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
from typing import Any
from urllib.parse import urlsplit

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server import config
from server.config import Settings

log = logging.getLogger("livecart.http")

PROTOCOL = "server.webserver:DeadlineProtocol"


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
