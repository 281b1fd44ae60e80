"""uvicorn's side of the HTTP edge: its HTTP protocol with a deadline on request headers, the headers on every answer.

**Request headers.** uvicorn has a keep-alive timeout but none on a request's headers: a client
that opens a connection and sends half a request line, or one header byte now and then, holds the
connection forever. The protocol here closes a connection whose request headers are not complete
within HEADER_TIMEOUT_MS of the connection being made or of the first byte of its next request.
Between requests a kept-alive connection is uvicorn's (`timeout_keep_alive`); once the headers are
in, the body is the app's (BODY_TIMEOUT_MS, server.http.read_body). `python -m server` passes it
to uvicorn.run as `http=PROTOCOL` (an import string, so each worker process imports it).

**Security headers.** `security_headers` is the list `python -m server` gives uvicorn.run as
`headers=`: uvicorn writes it on every answer it sends, pages, static files, the API and its
errors, the purchase hot path and the room socket's handshake (both served ahead of Starlette),
even its own 400s. It is built once; uvicorn already adds its Date and Server headers to every
answer, so these cost nothing per request in the app.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from typing import Any
from urllib.parse import urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server import config
from server.config import Settings

log = logging.getLogger("livecart.http")

PROTOCOL = "server.webserver:HeaderDeadlineProtocol"


def security_headers(settings: Settings) -> list[tuple[str, str]]:
    """The headers every answer carries: a Content-Security-Policy the pages work under, and the browser switches.

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
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()"),
    ]


@functools.cache
def _header_timeout() -> float:
    """HEADER_TIMEOUT_MS in seconds, read once per process (uvicorn builds the protocol, not us)."""
    return config.load().header_timeout_ms / 1000


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (what its `http="auto"` picks), closing a connection whose request headers are late.

    The deadline runs from the connection being made, and on a kept-alive connection from the first
    byte of the next request (bytes between requests included: a trickle of blank lines counts), to
    the end of that request's headers.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = _header_timeout()
        self.header_deadline: asyncio.TimerHandle | None = None
        self.reading_headers = True  # the next bytes belong to a request's head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.reading_headers:
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading_headers = True
        self._arm()  # a next request in the same read as the previous one's end

    def on_headers_complete(self) -> None:
        self.reading_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_headers = True  # until more bytes come, the connection idles under the keep-alive timeout

    def _arm(self) -> None:
        if self.header_deadline is None:
            self.header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            log.debug("%s: request headers not complete within %g s: closed", self.client, self.header_timeout)
            self.transport.close()


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
