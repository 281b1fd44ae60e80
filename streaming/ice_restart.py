"""Trickle ICE and ICE restart for WHIP/WHEP sessions on aiortc (RFC 9725 section 4.3), under the same DTLS session.

aiortc has neither: an `RTCIceTransport` wraps one aioice `Connection` for its whole life. `IceRestart` starts a new
ICE session beside it (new ufrag/pwd, its own sockets, gathering and checks) and, once a pair is nominated, makes
the transport use it: the DTLS transport reads `transport._recv()` and sends with `transport._send()` on every
datagram, so pointing both at the new connection moves DTLS and SRTP to the new path with their keys unchanged.
The new connection shares the old one's receive queue from the start, so no datagram is lost during the switch,
and the old connection gets a private queue before it closes, so its close does not end the DTLS transport.
The transport's monitor task (which fails the transport when its connection closes) is restarted on the new one.

The wire format is RFC 8840's `application/trickle-ice-sdpfrag`; a session's ETag names its current ICE session
(a hash of the server's ufrag and password), so any process can compute it from an SDP answer.

This module touches aiortc and aioice internals (`RTCIceTransport._connection`, `_recv`, `_send`, its monitor
task, the gatherer's end-of-candidates flag, aioice `Connection._queue` and its configuration): those of the pinned
versions (aiortc==1.16.0, aioice==0.13.0), checked on every PATCH and restart; it fails loudly on others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import aioice
import aiortc
from aioice import Connection
from aiortc import RTCIceCandidate, RTCIceTransport, RTCPeerConnection
from aiortc.rtcicetransport import candidate_from_aioice, candidate_to_aioice
from aiortc.sdp import SessionDescription, candidate_from_sdp, candidate_to_sdp

from server.errors import BadRequest, DomainError

log = logging.getLogger("livecart.streaming.ice")

TESTED = {"aiortc": "1.16.0", "aioice": "0.13.0"}
MEDIA_TYPE = "application/trickle-ice-sdpfrag"
RESTART_TIMEOUT = 30.0  # seconds for a new ICE session to connect before it is given up (the old one carries on)
END_GRACE = 2.0  # seconds a restart waits before taking the remote side's end-of-candidates into account

_MONITOR = "_RTCIceTransport__monitor_task"


def _check_versions() -> None:
    found = {"aiortc": aiortc.__version__, "aioice": aioice.__version__}
    if found != TESTED:
        raise RuntimeError(f"streaming.ice_restart supports {TESTED}, found {found}: re-test ICE restart and re-pin")


class PreconditionFailed(DomainError):
    """The PATCH names an ICE session (If-Match) that is no longer the session's current one (RFC 9725 4.3.1)."""

    status, code = 412, "precondition_failed"


# --- the fragment format (RFC 8840) ----------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """An `application/trickle-ice-sdpfrag` body: credentials (for a restart), candidates, end-of-candidates."""

    ufrag: str | None = None
    pwd: str | None = None
    candidates: tuple[RTCIceCandidate, ...] = ()
    end: bool = False
    mid: str | None = None  # the first media section's mid (the bundle's transport)


def parse_fragment(text: str) -> Fragment:
    """Read a trickle-ice-sdpfrag body; BadRequest (bad_fragment) when it is not one."""
    ufrag = pwd = mid = None
    candidates: list[RTCIceCandidate] = []
    end = False
    index = -1
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            index += 1
            continue
        if not line.startswith("a="):
            raise BadRequest(f"not an SDP fragment line: {line[:60]!r}", "bad_fragment")
        name, _, value = line[2:].partition(":")
        if name == "ice-ufrag":
            ufrag = value
        elif name == "ice-pwd":
            pwd = value
        elif name == "mid" and mid is None:
            mid = value
        elif name == "end-of-candidates":
            end = True
        elif name == "candidate":
            try:
                candidate = candidate_from_sdp(value)
            except (AssertionError, ValueError, IndexError):
                raise BadRequest(f"not an ICE candidate: {value[:80]!r}", "bad_fragment") from None
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = max(index, 0)
            candidates.append(candidate)
    if (ufrag is None) != (pwd is None):
        raise BadRequest("an ICE restart needs both a=ice-ufrag and a=ice-pwd", "bad_fragment")
    if ufrag is None and not candidates and not end:
        raise BadRequest("the fragment has no candidate, credentials or end-of-candidates", "bad_fragment")
    return Fragment(ufrag, pwd, tuple(candidates), end, mid)


def format_fragment(ufrag: str, pwd: str, candidates: list[RTCIceCandidate], mid: str, end: bool = True) -> str:
    """A trickle-ice-sdpfrag body with one media section (the bundle's): credentials, candidates, end."""
    lines = ["a=ice-options:trickle", "m=audio 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mid}"]
    lines += [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
    lines += [f"a=candidate:{candidate_to_sdp(candidate)}" for candidate in candidates]
    if end:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def etag(ufrag: str, pwd: str) -> str:
    """The entity tag of the ICE session whose server side has these credentials (quoted, as HTTP sends it)."""
    return '"' + hashlib.sha256(f"{ufrag}:{pwd}".encode()).hexdigest()[:20] + '"'


def answer_etag(sdp: str) -> str:
    """The entity tag of the ICE session an SDP answer starts."""
    media = SessionDescription.parse(sdp).media[0]
    assert media.ice is not None and media.ice.usernameFragment and media.ice.password
    return etag(media.ice.usernameFragment, media.ice.password)


# --- one peer connection's ICE sessions ------------------------------------------------


def ice_transport(pc: RTCPeerConnection) -> RTCIceTransport:
    """The one ICE transport of a bundled peer connection (WHIP and WHEP sessions are bundled)."""
    transports = {id(t.receiver.transport.transport): t.receiver.transport.transport for t in pc.getTransceivers()}
    if len(transports) != 1:
        raise DomainError("ICE restart needs a bundled session (one ICE transport)", "not_bundled", 422)
    return next(iter(transports.values()))


class IceRestart:
    """A new ICE session for an ICE transport: gather, add the remote side's credentials and candidates, connect;
    then it becomes the transport's connection, under the same DTLS and SRTP session. A session that does not
    connect within RESTART_TIMEOUT is closed and the old one carries on."""

    def __init__(self, transport: RTCIceTransport) -> None:
        _check_versions()
        self.transport = transport
        old: Connection = transport._connection
        self.connection = Connection(
            ice_controlling=old.ice_controlling,
            stun_server=old.stun_server,
            turn_server=old.turn_server,
            turn_username=old.turn_username,
            turn_password=old.turn_password,
            turn_ssl=old.turn_ssl,
            turn_transport=old.turn_transport,
            use_ipv4=old._use_ipv4,
            use_ipv6=old._use_ipv6,
            transport_policy=old._transport_policy,
        )
        self.connection._queue = old._queue  # what arrives on either path reaches the DTLS transport in order
        self.connected = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._ender: asyncio.Task[None] | None = None

    @property
    def ufrag(self) -> str:
        return str(self.connection.local_username)

    @property
    def pwd(self) -> str:
        return str(self.connection.local_password)

    @property
    def etag(self) -> str:
        return etag(self.ufrag, self.pwd)

    def local_candidates(self) -> list[RTCIceCandidate]:
        return [candidate_from_aioice(candidate) for candidate in self.connection.local_candidates]

    async def gather(self) -> None:
        await self.connection.gather_candidates()

    async def start(
        self, ufrag: str, pwd: str, candidates: tuple[RTCIceCandidate, ...] = (), end: bool = False
    ) -> None:
        """Take the remote side's new credentials and candidates and start the checks (in the background).

        The remote side's end-of-candidates counts only END_GRACE seconds later: aioice fails a session whose
        known pairs all failed once candidates ended, before the remote side (which starts its checks once it
        has our answer) could show the address it really sends from (a peer-reflexive candidate: Chromium's
        host candidate on another interface than the one it reaches us from, for one)."""
        self.connection.remote_username = ufrag
        self.connection.remote_password = pwd
        await add_candidates(self.connection, candidates, False)
        self._task = asyncio.ensure_future(self._connect())
        if end:
            self.end_candidates()

    def end_candidates(self) -> None:
        """The remote side has no more candidates (taken into account END_GRACE seconds from now)."""
        if self._ender is None:
            self._ender = asyncio.ensure_future(self._end_later())

    async def _end_later(self) -> None:
        await asyncio.sleep(END_GRACE)
        if not self.connected.done():
            await add_candidates(self.connection, (), True)

    async def close(self) -> None:
        """Give this session up (if it has not taken over): its sockets close, the old session carries on."""
        if not self.connected.done():
            self.connected.set_result(False)
        if self._ender is not None and self._ender is not asyncio.current_task():
            self._ender.cancel()
        if self.transport._connection is not self.connection:
            self.connection._queue = asyncio.Queue()  # its close must not wake the DTLS transport
            await self.connection.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _connect(self) -> None:
        try:
            await asyncio.wait_for(self.connection.connect(), RESTART_TIMEOUT)
        except (ConnectionError, TimeoutError) as problem:
            log.info("ICE restart did not connect (%s); the old ICE session carries on", problem or "timeout")
            await self.close()
            return
        if self.transport.state == "closed":
            await self.close()
            return
        old = self._take_over()
        if not self.connected.done():
            self.connected.set_result(True)
        old._queue = asyncio.Queue()  # its close must not end the DTLS transport reading the shared queue
        await old.close()

    def _take_over(self) -> Connection:
        transport, new = self.transport, self.connection
        old: Connection = transport._connection
        transport._connection = new
        transport.iceGatherer._connection = new
        transport.iceGatherer._remote_candidates_end = new._remote_candidates_end
        transport._recv = new.recv
        transport._send = new.send
        monitor: asyncio.Future[None] | None = getattr(transport, _MONITOR)
        if monitor is not None:
            monitor.cancel()
        setattr(transport, _MONITOR, asyncio.ensure_future(transport._monitor()))
        log.info("ICE restarted: now %s", new.local_username)
        return old


async def add_candidates(connection: Connection, candidates: tuple[RTCIceCandidate, ...], end: bool) -> None:
    """Add remote candidates to an ICE session; ones it cannot use are dropped silently (RFC 9725 4.3.1)."""
    for candidate in candidates:
        if connection._remote_candidates_end:
            break
        with contextlib.suppress(ValueError):
            await connection.add_remote_candidate(candidate_to_aioice(candidate))
    if end and not connection._remote_candidates_end:
        await connection.add_remote_candidate(None)


@dataclass
class _Sessions:
    """A transport's ICE session in progress: the restart that the client was last answered with, if any."""

    pending: IceRestart | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


_sessions: weakref.WeakKeyDictionary[RTCIceTransport, _Sessions] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Patched:
    """The answer to a PATCH: the current ICE session's ETag, and the server's fragment after a restart."""

    etag: str
    fragment: str | None = None  # None: 204 No Content (trickle); else 200 with this body (restart)


def _current(transport: RTCIceTransport, pc: RTCPeerConnection) -> tuple[Connection, str | None, str]:
    """The current ICE session: its connection, the client's ufrag, and its ETag."""
    sessions = _sessions.get(transport)
    if sessions is not None and sessions.pending is not None:
        pending = sessions.pending
        return pending.connection, pending.connection.remote_username, pending.etag
    connection: Connection = transport._connection
    remote = connection.remote_username
    if remote is None and pc.remoteDescription is not None:
        media = SessionDescription.parse(pc.remoteDescription.sdp).media[0]
        remote = media.ice.usernameFragment if media.ice else None
    return connection, remote, etag(connection.local_username, connection.local_password)


async def patch(pc: RTCPeerConnection, fragment: Fragment, if_match: str | None) -> Patched:
    """Apply a WHIP/WHEP PATCH to a session's peer connection: trickled candidates for the current ICE session
    (If-Match: its ETag), or an ICE restart (new credentials; If-Match: "*"). 412 when If-Match names another
    ICE session; without If-Match the request applies to the current one."""
    _check_versions()
    transport = ice_transport(pc)
    if transport.state == "closed":
        raise DomainError("the session's ICE transport is closed", "not_found", 404)
    connection, remote_ufrag, current = _current(transport, pc)
    tags = [tag.strip() for tag in if_match.split(",")] if if_match else []
    if tags and "*" not in tags and current not in tags:
        raise PreconditionFailed("If-Match names an earlier ICE session; this session restarted ICE since")
    if fragment.ufrag is None or fragment.ufrag == remote_ufrag:
        pending = _sessions[transport].pending if transport in _sessions else None
        if pending is not None:
            await add_candidates(connection, fragment.candidates, False)
            if fragment.end:
                pending.end_candidates()
            return Patched(current)
        await add_candidates(connection, fragment.candidates, fragment.end)
        if connection is transport._connection and fragment.end:
            transport.iceGatherer._remote_candidates_end = True
        return Patched(current)
    assert fragment.pwd is not None
    sessions = _sessions.setdefault(transport, _Sessions())
    restart = IceRestart(transport)
    await restart.gather()
    if transport.state == "closed":
        await restart.close()
        raise DomainError("the session ended during the ICE restart", "not_found", 404)
    previous, sessions.pending = sessions.pending, restart
    if previous is not None:
        await previous.close()
    await restart.start(fragment.ufrag, fragment.pwd, fragment.candidates, fragment.end)
    task = asyncio.ensure_future(_settle(transport, restart))
    sessions.tasks.add(task)
    task.add_done_callback(sessions.tasks.discard)
    mid = fragment.mid or "0"
    return Patched(restart.etag, format_fragment(restart.ufrag, restart.pwd, restart.local_candidates(), mid))


async def _settle(transport: RTCIceTransport, restart: IceRestart) -> None:
    """Wait for a restart to connect or fail (or the transport to close), then forget it."""

    closing: set[asyncio.Task[None]] = set()

    def closed() -> None:
        if transport.state == "closed":
            closing.add(asyncio.ensure_future(restart.close()))

    transport.on("statechange", closed)
    try:
        await restart.connected
        await asyncio.gather(*closing)
    finally:
        with contextlib.suppress(KeyError):
            transport.remove_listener("statechange", closed)
        sessions = _sessions.get(transport)
        if sessions is not None and sessions.pending is restart:
            sessions.pending = None


async def restart_locally(pc: RTCPeerConnection) -> tuple[IceRestart, str]:
    """The client's side of a restart: a new ICE session gathered, and the fragment to PATCH (If-Match: "*").
    Then `restart.start(...)` with the server's fragment from the 200 answer."""
    transport = ice_transport(pc)
    restart = IceRestart(transport)
    await restart.gather()
    mid = next(t.mid for t in pc.getTransceivers() if t.mid is not None)
    return restart, format_fragment(restart.ufrag, restart.pwd, restart.local_candidates(), mid)
