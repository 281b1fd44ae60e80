"""The relay: every room's host, viewers and cascade pipes in this server process, from offer to close.

Contract:
- a room has at most one publisher; `publish` raises 409 while it has one, connecting or live;
- a room is live from the first packet of its host's media until the host's peer ends: DELETE,
  ICE/DTLS failure, the host's tracks ending, no media for `media_timeout` seconds, or shutdown;
  `on_stream(room_id, online)` is awaited once for each change, in order, never concurrently;
- `watch` succeeds only while the room is live, here or (through `upstream`) in another process,
  else 409 `host_offline`; when the host's peer ends, every viewer's peer in that room ends too
  (viewers come back on the next `online`);
- a viewer is served by this process whichever process holds the host: a room whose host is
  elsewhere is piped here once (streaming.cascade: at most one pipe per room, opened on the first
  viewer, closed `pipe_linger` seconds after the last; its end ends its viewers); `feed` answers
  another process's pipe as a viewer that no cap limits and no count includes;
- stream taps hear of this process's hosts' broadcasts only (started when live, ended when over);
- a peer that has not connected after `connect_timeout` seconds is closed;
- session ids start with `process_id` and a dot, so any process can tell where a session lives;
- after `close()` the relay holds no peer, track or task, and refuses new sessions (503).

The host's media is forwarded encoded (see streaming.passthrough): a viewer costs a packetizer
and SRTP, not an encoder.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpReceiver, RTCSessionDescription
from aiortc.exceptions import OperationError

from server import metrics
from server.errors import BadRequest, Conflict, RateLimited, Unavailable
from server.tasks import Tasks, cancelling
from streaming import cascade, nack, passthrough
from streaming.cascade import Upstream
from streaming.fanout import Fanout, KeyframeRequests
from streaming.ice import IceServers
from streaming.offers import Offer, describe, negotiated_codecs, publisher_codecs, viewer_codecs
from streaming.peers import Peer, PeerState, Side

log = logging.getLogger("livecart.streaming")

StreamCallback = Callable[[str, bool], Awaitable[None]]


class StreamTap(Protocol):
    """Takes a live host's media besides the viewers (the HLS packager): told when a host's stream goes live in
    this process (it may `Fanout.add_tap` the broadcast's fan-outs) and when it ends."""

    def started(self, room_id: str, broadcast: Broadcast) -> None: ...

    def ended(self, room_id: str) -> None: ...


@dataclass(frozen=True)
class RelayOptions:
    keyframe_interval: float = 0.5  # at most one keyframe request (PLI) to a host per interval, in seconds
    connect_timeout: float = 20.0  # seconds for a peer to connect (a host: to send its first packet)
    media_timeout: float = 5.0  # seconds without any packet from a live host before its stream ends
    sweep_interval: float = 1.0
    sessions_per_user: int = 2  # a viewer's video sessions at once, in this process (VIDEO_SESSIONS_PER_USER)
    sessions_per_address: int = 100  # ... from one address (VIDEO_SESSIONS_PER_ADDRESS)
    pipe_linger: float = 10.0  # seconds a room's pipe stays after this process's last viewer of it left


async def _nothing(room_id: str, online: bool) -> None:
    """The default `on_stream`: nobody to tell."""


def _offline() -> Conflict:
    return Conflict("the host is not streaming: wait for the room's stream.state 'online' event", "host_offline")


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Broadcast:
    """One room's stream in this process: its source (the host's peer, or a pipe's from the process holding the host),
    one fan-out per media kind, and the peers fed from it (viewers, and pipes to other processes)."""

    def __init__(self, publisher: Peer) -> None:
        self.publisher = publisher
        self.fanouts: dict[str, Fanout] = {}
        self.viewers: set[Peer] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.last_media = time.monotonic()
        self.linger: asyncio.TimerHandle | None = None  # a piped broadcast with no viewer: when it closes

    @property
    def live(self) -> bool:
        return self.publisher.state is PeerState.CONNECTED

    @property
    def piped(self) -> bool:
        """Its source is a pipe from another process (else this process has the host)."""
        return self.publisher.side is Side.PIPE


class Relay:
    """WHIP publishers and WHEP viewers of every room in this process (see the module contract)."""

    def __init__(
        self,
        ice: IceServers | None = None,
        on_stream: StreamCallback = _nothing,
        options: RelayOptions | None = None,
        taps: Sequence[StreamTap] = (),
        upstream: Upstream | None = None,
        process_id: str = "",
    ) -> None:
        self.ice = ice or IceServers()
        self.taps = list(taps)
        self.process_id = process_id
        self._upstream = upstream  # None: rooms whose host is elsewhere are not piped here (host_offline)
        self._opening: dict[str, asyncio.Task[Broadcast | None]] = {}  # rooms whose pipe is being negotiated
        self.options = options or RelayOptions()
        self._on_stream = on_stream
        self._broadcasts: dict[str, Broadcast] = {}
        self._peers: dict[str, Peer] = {}
        self.tasks = Tasks("relay")  # the sweep, the announcer, and peers being ended
        self._announcements: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._started = False
        self._closed = False

    # --- sessions ---------------------------------------------------------------------

    async def publish(
        self, room_id: str, user_id: str, offer: Offer, session_id: str = "", address: str = ""
    ) -> tuple[Peer, str]:
        """Start the host's session for a room; returns the peer and the SDP answer."""
        self._start()
        existing = self._broadcasts.get(room_id)
        if existing is not None and existing.piped:  # the host moved here: the old pipe's viewers come back
            await self.end(existing.publisher, "the host publishes in this process now")
        if room_id in self._broadcasts:
            raise Conflict("this room already has a host stream; end it (DELETE) first", "already_publishing")
        pc = RTCPeerConnection(self.ice.server_configuration())
        peer = Peer(Side.PUBLISHER, room_id, user_id, pc, session_id, address, id=self._new_id())
        broadcast = Broadcast(peer)
        self._broadcasts[room_id] = broadcast
        self._peers[peer.id] = peer
        receivers = {}
        for kind in offer.kinds:
            transceiver = peer.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(publisher_codecs(kind))
            passthrough.install(transceiver.receiver)
            if kind == "video":
                nack.install(transceiver.receiver)  # NACKs repeated, and a keyframe when a packet is lost for good
            receivers[kind] = transceiver.receiver
        answer = await self._answer(peer, offer, "the host may send VP8 or H.264 video and Opus audio")
        codecs = negotiated_codecs(answer)
        self._feed_from(broadcast, {kind: (receiver, codecs[kind]) for kind, receiver in receivers.items()})
        peer.log.info("publishing %s", ", ".join(describe(codec) for codec in codecs.values()))
        return peer, answer

    async def watch(
        self, room_id: str, user_id: str, offer: Offer, session_id: str = "", address: str = ""
    ) -> tuple[Peer, str]:
        """Start a viewer's session for a live room; returns the peer and the SDP answer. 429 past the caps of
        video sessions per user and per address."""
        self._start()
        peers = [peer for peer in self._peers.values() if peer.side is not Side.PIPE]
        if sum(peer.user_id == user_id for peer in peers) >= self.options.sessions_per_user:
            raise RateLimited(f"you are watching in {self.options.sessions_per_user} places already; close one", 5)
        if address and sum(peer.address == address for peer in peers) >= self.options.sessions_per_address:
            raise RateLimited("too many video sessions from your network", 5)
        broadcast = await self._source(room_id)
        pc = RTCPeerConnection(self.ice.server_configuration())
        peer = Peer(Side.VIEWER, room_id, user_id, pc, session_id, address, id=self._new_id())
        return peer, await self._subscribe(broadcast, peer, offer)

    async def feed(self, room_id: str, offer: Offer) -> tuple[Peer, str]:
        """Answer another process's pipe offer for a room whose host is here (streaming.cascade): a viewer of the
        host's broadcast that no cap limits and no viewer count includes."""
        self._start()
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None or broadcast.piped or not broadcast.live:
            raise _offline()
        peer = Peer(Side.PIPE, room_id, "", RTCPeerConnection(self.ice.server_configuration()), id=self._new_id())
        return peer, await self._subscribe(broadcast, peer, offer)

    def sign_out(self, session_ids: set[str]) -> None:
        """End the video sessions of these sessions (signed out, or revoked)."""
        for peer in [peer for peer in self._peers.values() if peer.session_id in session_ids]:
            self._spawn(self.end(peer, "signed out"))

    def find(self, side: Side, room_id: str, peer_id: str) -> Peer | None:
        peer = self._peers.get(peer_id)
        if peer is None or peer.side is not side or peer.room_id != room_id:
            return None
        return peer

    async def end(self, peer: Peer, reason: str = "ended") -> None:
        """Close a peer (idempotent); a broadcast's source (the host, or a pipe from the host's process) ending also
        ends the peers it feeds; a host's takes the room offline."""
        if peer.state is PeerState.CLOSED:
            return
        was_live = peer.state is PeerState.CONNECTED
        peer.state = PeerState.CLOSED
        self._peers.pop(peer.id, None)
        peer.log.info("closing: %s", reason)
        broadcast = self._broadcasts.get(peer.room_id)
        if broadcast is not None and broadcast.publisher is peer:
            del self._broadcasts[peer.room_id]
            if broadcast.linger is not None:
                broadcast.linger.cancel()
            for task in broadcast.tasks:
                task.cancel()
            await asyncio.gather(*broadcast.tasks, return_exceptions=True)
            broadcast.tasks.clear()
            for fanout in broadcast.fanouts.values():
                fanout.close()
            why = "the pipe from the host's server closed" if broadcast.piped else "the host stopped"
            viewers = [self.end(viewer, why) for viewer in list(broadcast.viewers)]
            await asyncio.gather(*viewers, peer.pc.close())
            if was_live and not broadcast.piped:
                for tap in self.taps:
                    tap.ended(peer.room_id)
                self._announcements.put_nowait((peer.room_id, False))
        else:
            if broadcast is not None and peer in broadcast.viewers:
                self._leave(broadcast, peer)
            for track in peer.tracks:
                track.stop()
            await peer.pc.close()

    async def close(self, timeout: float = 5.0) -> None:
        """End every peer (rooms go offline: told within `timeout` seconds), then stop the relay's own tasks."""
        self._closed = True
        for opening in list(self._opening.values()):  # pipes being negotiated
            opening.cancel()
        await asyncio.gather(*(self.end(peer, "the server is shutting down") for peer in list(self._peers.values())))
        if self._started:
            try:
                await asyncio.wait_for(self._announcements.join(), timeout)
            except TimeoutError:
                log.warning("gave up announcing stream changes at shutdown")
        await self.tasks.stop(timeout)

    def stats(self) -> dict[str, int]:
        """rooms, live: hosts here; viewers: viewers served here (whatever process has the host; pipes are not
        viewers); pipes_in: rooms piped here from another process; pipes_out: pipes fed from hosts here."""
        broadcasts = self._broadcasts.values()
        hosts = [broadcast for broadcast in broadcasts if not broadcast.piped]
        fed = [peer for broadcast in broadcasts for peer in broadcast.viewers]
        return {
            "rooms": len(hosts),
            "live": sum(broadcast.live for broadcast in hosts),
            "viewers": sum(peer.side is Side.VIEWER for peer in fed),
            "pipes_in": len(broadcasts) - len(hosts),
            "pipes_out": sum(peer.side is Side.PIPE for peer in fed),
            "peers": len(self._peers),
            "tasks": len(self.tasks) + sum(len(b.tasks) for b in self._broadcasts.values()),
            "keyframe_requests": sum(
                fanout.keyframes.sent
                for broadcast in self._broadcasts.values()
                for fanout in broadcast.fanouts.values()
                if fanout.keyframes is not None
            ),
        }

    def holds(self, room_id: str) -> bool:
        """This relay has the room's publisher (connecting or live)."""
        broadcast = self._broadcasts.get(room_id)
        return broadcast is not None and not broadcast.piped

    def viewers(self, room_id: str) -> int:
        """The room's viewers served by this process (pipes are not viewers)."""
        broadcast = self._broadcasts.get(room_id)
        return 0 if broadcast is None else sum(peer.side is Side.VIEWER for peer in broadcast.viewers)

    def viewer_sessions(self) -> dict[str, list[str]]:
        """Each room's viewers served by this process (their peer ids; pipes are not viewers), for the WebRTC cap."""
        rooms: dict[str, list[str]] = {}
        for peer in self._peers.values():
            if peer.side is Side.VIEWER:
                rooms.setdefault(peer.room_id, []).append(peer.id)
        return rooms

    # --- internals --------------------------------------------------------------------

    def _new_id(self) -> str:
        token = secrets.token_urlsafe(16)
        return f"{self.process_id}.{token}" if self.process_id else token

    async def _source(self, room_id: str) -> Broadcast:
        """The broadcast a viewer of the room subscribes to here: the host's, or the room's pipe (opened once, for
        every viewer asking meanwhile). Conflict (host_offline) when the room is not live anywhere."""
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None and self._upstream is not None:
            opening = self._opening.get(room_id)
            if opening is None:
                opening = self._opening[room_id] = asyncio.create_task(self._pipe(room_id), name="relay-pipe")
                opening.add_done_callback(_retrieved)  # each waiter gets its error; none left may be fine
            broadcast = await asyncio.shield(opening)
        if (
            broadcast is None
            or broadcast.publisher.state is PeerState.CLOSED
            or not (broadcast.live or broadcast.piped)
        ):
            raise _offline()
        return broadcast

    async def _pipe(self, room_id: str) -> Broadcast | None:
        """Open the room's pipe from the process holding its host (streaming.cascade); None when the room got a
        broadcast here meanwhile (a host), which the caller takes instead."""
        assert self._upstream is not None
        pc = RTCPeerConnection(self.ice.server_configuration())
        peer = Peer(Side.PIPE, room_id, "", pc, id=self._new_id())
        try:
            media = await cascade.connect(pc, room_id, self._upstream)
        except BaseException:
            await pc.close()
            raise
        finally:
            self._opening.pop(room_id, None)
        if self._closed or room_id in self._broadcasts:
            await pc.close()
            if self._closed:
                raise Unavailable("the server is shutting down; try again in a moment", "shutting_down")
            return self._broadcasts.get(room_id)
        broadcast = Broadcast(peer)
        self._broadcasts[room_id] = broadcast
        self._peers[peer.id] = peer
        self._watch_state(peer)
        self._feed_from(broadcast, media)
        self._idle(broadcast)  # until its first viewer joins
        peer.log.info("piped from the room's host process: %s", ", ".join(describe(c) for _, c in media.values()))
        return broadcast

    def _feed_from(self, broadcast: Broadcast, media: dict[str, tuple[RTCRtpReceiver, RTCRtpCodecParameters]]) -> None:
        """One fan-out per media kind of the broadcast's source (its pass-through receivers), each run in a task."""
        for kind, (receiver, codec) in media.items():
            keyframes = None
            if kind == "video":
                request = partial(passthrough.request_keyframe, receiver)
                keyframes = KeyframeRequests(request, self.options.keyframe_interval)
            fanout = Fanout(receiver.track, codec, keyframes, partial(self._media_arrived, broadcast))
            broadcast.fanouts[kind] = fanout
            broadcast.tasks.append(asyncio.create_task(self._forward(broadcast.publisher, fanout)))

    async def _subscribe(self, broadcast: Broadcast, peer: Peer, offer: Offer) -> str:
        """Feed a viewer's (or a pipe's) new peer from the broadcast; the SDP answer."""
        kinds = [kind for kind in offer.kinds if kind in broadcast.fanouts]
        if not kinds:
            has = " and ".join(broadcast.fanouts)
            raise BadRequest(f"the stream has {has}; the offer asks for neither", "bad_offer")
        self._peers[peer.id] = peer
        broadcast.viewers.add(peer)
        if broadcast.linger is not None:
            broadcast.linger.cancel()
            broadcast.linger = None
        for kind in kinds:
            fanout = broadcast.fanouts[kind]
            track = fanout.subscribe()
            peer.tracks.append(track)
            transceiver = peer.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(viewer_codecs(fanout.codec))
            fanout.bind(track, transceiver.sender)
        stream = " and ".join(describe(broadcast.fanouts[kind].codec) for kind in kinds)
        return await self._answer(peer, offer, f"this stream is {stream}")

    def _leave(self, broadcast: Broadcast, peer: Peer) -> None:
        broadcast.viewers.discard(peer)
        for track in peer.tracks:
            broadcast.fanouts[track.kind].unsubscribe(track)
        if broadcast.piped and not any(viewer.side is Side.VIEWER for viewer in broadcast.viewers):
            self._idle(broadcast)

    def _idle(self, broadcast: Broadcast) -> None:
        """A piped broadcast without viewers: closed after `pipe_linger` seconds unless a viewer joins."""
        if broadcast.linger is None:
            end = partial(self.end, broadcast.publisher, "no viewer of the room left in this process")
            loop = asyncio.get_running_loop()
            broadcast.linger = loop.call_later(self.options.pipe_linger, lambda: self._spawn(end()))

    def _start(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; try again in a moment", "shutting_down")
        if not self._started:
            self._started = True
            self.tasks.every(self.options.sweep_interval, self._sweep, "sweep")
            self.tasks.spawn(self._announce(), name="relay-announce")

    def _watch_state(self, peer: Peer) -> None:
        """End the peer when its connection fails or closes; a viewer (or a pipe's sending end) is connected once ICE
        and DTLS are (a host, or a pipe's receiving end, once its media flows)."""
        pc = peer.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            peer.log.debug("connection %s", state)
            if state == "connected" and peer.tracks and peer.state is PeerState.CONNECTING:  # it is fed, not a source
                peer.state = PeerState.CONNECTED
                peer.log.info("watching" if peer.side is Side.VIEWER else "piping the room to another process")
            elif state in ("failed", "closed"):
                await self.end(peer, f"connection {state}")

    async def _answer(self, peer: Peer, offer: Offer, codecs_hint: str) -> str:
        pc = peer.pc
        self._watch_state(peer)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as problem:
            await self.end(peer, f"offer refused: {problem}")
            if self._closed:
                raise Unavailable("the server is shutting down; try again in a moment", "shutting_down") from None
            if isinstance(problem, OperationError):
                raise BadRequest(f"the offer has no codec in common: {codecs_hint}", "unsupported_codec") from None
            raise BadRequest(f"the offer was refused: {problem}", "bad_offer") from None
        if peer.state is PeerState.CLOSED:  # ended while answering (shutdown, or the host left)
            raise Unavailable("the session ended while it was being set up; try again", "shutting_down")
        return pc.localDescription.sdp

    async def _forward(self, publisher: Peer, fanout: Fanout) -> None:
        await fanout.run()
        self._spawn(self.end(publisher, f"the host's {fanout.kind} track ended"))

    def _media_arrived(self, broadcast: Broadcast) -> None:
        broadcast.last_media = time.monotonic()
        publisher = broadcast.publisher
        if publisher.state is PeerState.CONNECTING:
            publisher.state = PeerState.CONNECTED
            publisher.log.info("live")
            if broadcast.piped:
                return
            for tap in self.taps:
                tap.started(publisher.room_id, broadcast)
            self._announcements.put_nowait((publisher.room_id, True))

    async def _announce(self) -> None:
        """Tell `on_stream` about each change, one at a time, in order."""
        while True:
            room_id, online = await self._announcements.get()
            try:
                await self._on_stream(room_id, online)
            except Exception:
                if cancelling():
                    raise asyncio.CancelledError from None
                log.exception("could not announce room %s stream %s", room_id, "online" if online else "offline")
            finally:
                self._announcements.task_done()

    async def _sweep(self) -> None:
        """Close peers that never connected and hosts whose media stopped (a function: no peer outlives it)."""
        stats = self.stats()
        metrics.VIDEO_ROOMS.set(stats["live"])
        metrics.VIDEO_VIEWERS.set(stats["viewers"])
        metrics.VIDEO_PIPES.set(stats["pipes_in"])
        options, now = self.options, time.monotonic()
        for peer in list(self._peers.values()):
            if peer.state is PeerState.CONNECTING and now - peer.created > options.connect_timeout:
                self._spawn(self.end(peer, f"not connected after {options.connect_timeout:g} s"))
        for broadcast in list(self._broadcasts.values()):
            if broadcast.live and now - broadcast.last_media > options.media_timeout:
                self._spawn(self.end(broadcast.publisher, f"no media for {options.media_timeout:g} s"))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks.spawn(coroutine)
