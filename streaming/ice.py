"""ICE servers: the STUN/TURN list from configuration, short-lived TURN credentials and their `Link` headers.

TURN credentials follow the TURN REST scheme that coturn's `use-auth-secret` checks:
username = "<expiry unix seconds>:<user id>", password = base64(HMAC-SHA1(secret, username)).
Clients get the servers in `Link: <url>; rel="ice-server"` headers (RFC 9725 section 4.6).
The server's own peer connections use only the STUN servers, to learn their public address:
relaying the server's side through TURN as well would only add a hop per viewer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCIceServer

TURN_TTL_SECONDS = 12 * 3600  # covers a long stream: coturn re-checks the expiry on every allocation refresh

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def turn_credentials(secret: str, user_id: str, now: float | None = None, ttl: int = TURN_TTL_SECONDS) -> Credentials:
    """TURN REST credentials for one user, valid for `ttl` seconds."""
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return Credentials(username, base64.b64encode(digest).decode())


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class IceServers:
    """The configured STUN and TURN URLs; TURN URLs need a shared secret to mint credentials."""

    def __init__(self, urls: tuple[str, ...] = (), turn_secret: str = "", ttl: int = TURN_TTL_SECONDS) -> None:
        for url in urls:
            if not url.startswith(_SCHEMES):
                raise ValueError(f"ICE server {url!r} must start with stun:, stuns:, turn: or turns:")
            if url.startswith("turn") and not turn_secret:
                raise ValueError(f"ICE server {url!r} is a TURN server: set TURN_SECRET (coturn's static-auth-secret)")
        self.urls = tuple(urls)
        self._secret = turn_secret
        self._ttl = ttl

    def link_headers(self, user_id: str, now: float | None = None) -> list[str]:
        """One `Link` header value per server; TURN servers carry fresh credentials for this user."""
        links = []
        credentials = turn_credentials(self._secret, user_id, now, self._ttl) if self._secret else None
        for url in self.urls:
            link = f'<{url}>; rel="ice-server"'
            if url.startswith("turn") and credentials is not None:
                link += (
                    f"; username={_quote(credentials.username)}; credential={_quote(credentials.password)}"
                    '; credential-type="password"'
                )
            links.append(link)
        return links

    def server_configuration(self) -> RTCConfiguration:
        """The configuration for the server's own peer connections: STUN only, and never aiortc's default."""
        stun = [url for url in self.urls if url.startswith("stun:")]
        return RTCConfiguration(iceServers=[RTCIceServer(urls=stun)] if stun else [])
