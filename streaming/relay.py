"""The relay: every live room's host and viewers in this server process, from offer to close.

Contract:
- a room has at most one publisher; `publish` raises 409 while it has one, connecting or live;
- a room is live from the first packet of its host's media until the host's peer ends: DELETE,
  ICE/DTLS failure, the host's tracks ending, no media for `media_timeout` seconds, or shutdown;
  `on_stream(room_id, online)` is awaited once for each change, in order, never concurrently;
- `watch` succeeds only while the room is live (else 409 `host_offline`); when the host's peer
  ends, every viewer's peer in that room ends too (viewers come back on the next `online`);
- a peer that has not connected after `connect_timeout` seconds is closed;
- after `close()` the relay holds no peer, track or task, and refuses new sessions (503).

The host's media is forwarded encoded (see streaming.passthrough): a viewer costs a packetizer
and SRTP, not an encoder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError

from server import metrics
from server.errors import BadRequest, Conflict, RateLimited, Unavailable
from server.tasks import Tasks, cancelling
from streaming import passthrough
from streaming.fanout import Fanout, KeyframeRequests
from streaming.ice import IceServers
from streaming.offers import Offer, describe, negotiated_codecs, publisher_codecs, viewer_codecs
from streaming.peers import Peer, PeerState, Side

log = logging.getLogger("livecart.streaming")

StreamCallback = Callable[[str, bool], Awaitable[None]]


@dataclass(frozen=True)
class RelayOptions:
    video_queue: int = 10  # frames a viewer may fall behind before it skips to the next keyframe
    audio_queue: int = 25  # Opus packets (20 ms each) a viewer may fall behind before old ones are dropped
    keyframe_interval: float = 0.5  # at most one keyframe request (PLI) to a host per interval, in seconds
    connect_timeout: float = 20.0  # seconds for a peer to connect (a host: to send its first packet)
    media_timeout: float = 5.0  # seconds without any packet from a live host before its stream ends
    sweep_interval: float = 1.0
    sessions_per_user: int = 2  # a viewer's video sessions at once, in this process (VIDEO_SESSIONS_PER_USER)
    sessions_per_address: int = 100  # ... from one address (VIDEO_SESSIONS_PER_ADDRESS)


async def _nothing(room_id: str, online: bool) -> None:
    """The default `on_stream`: nobody to tell."""


class Broadcast:
    """One room's stream: the host's peer, one fan-out per media kind, and the viewers' peers."""

    def __init__(self, publisher: Peer) -> None:
        self.publisher = publisher
        self.fanouts: dict[str, Fanout] = {}
        self.viewers: set[Peer] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.last_media = time.monotonic()

    @property
    def live(self) -> bool:
        return self.publisher.state is PeerState.CONNECTED


class Relay:
    """WHIP publishers and WHEP viewers of every room in this process (see the module contract)."""

    def __init__(
        self,
        ice: IceServers | None = None,
        on_stream: StreamCallback = _nothing,
        options: RelayOptions | None = None,
    ) -> None:
        self.ice = ice or IceServers()
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
        if room_id in self._broadcasts:
            raise Conflict("this room already has a host stream; end it (DELETE) first", "already_publishing")
        pc = RTCPeerConnection(self.ice.server_configuration())
        peer = Peer(Side.PUBLISHER, room_id, user_id, pc, session_id, address)
        broadcast = Broadcast(peer)
        self._broadcasts[room_id] = broadcast
        self._peers[peer.id] = peer
        receivers = {}
        for kind in offer.kinds:
            transceiver = peer.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(publisher_codecs(kind))
            passthrough.install(transceiver.receiver)
            receivers[kind] = transceiver.receiver
        answer = await self._answer(peer, offer, "the host may send VP8 or H.264 video and Opus audio")
        codecs = negotiated_codecs(answer)
        for kind, receiver in receivers.items():
            keyframes = None
            if kind == "video":
                request = partial(passthrough.request_keyframe, receiver)
                keyframes = KeyframeRequests(request, self.options.keyframe_interval)
            capacity = self.options.video_queue if kind == "video" else self.options.audio_queue
            fanout = Fanout(receiver.track, codecs[kind], capacity, keyframes, partial(self._media_arrived, broadcast))
            broadcast.fanouts[kind] = fanout
            broadcast.tasks.append(asyncio.create_task(self._forward(peer, fanout)))
        peer.log.info("publishing %s", ", ".join(describe(codec) for codec in codecs.values()))
        return peer, answer

    async def watch(
        self, room_id: str, user_id: str, offer: Offer, session_id: str = "", address: str = ""
    ) -> tuple[Peer, str]:
        """Start a viewer's session for a live room; returns the peer and the SDP answer. 429 past the caps of
        video sessions per user and per address."""
        self._start()
        peers = self._peers.values()
        if sum(peer.user_id == user_id for peer in peers) >= self.options.sessions_per_user:
            raise RateLimited(f"you are watching in {self.options.sessions_per_user} places already; close one", 5)
        if address and sum(peer.address == address for peer in peers) >= self.options.sessions_per_address:
            raise RateLimited("too many video sessions from your network", 5)
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None or not broadcast.live:
            raise Conflict("the host is not streaming: wait for the room's stream.state 'online' event", "host_offline")
        kinds = [kind for kind in offer.kinds if kind in broadcast.fanouts]
        if not kinds:
            has = " and ".join(broadcast.fanouts)
            raise BadRequest(f"the stream has {has}; the offer asks for neither", "bad_offer")
        peer = Peer(
            Side.VIEWER, room_id, user_id, RTCPeerConnection(self.ice.server_configuration()), session_id, address
        )
        self._peers[peer.id] = peer
        broadcast.viewers.add(peer)
        for kind in kinds:
            fanout = broadcast.fanouts[kind]
            track = fanout.subscribe()
            peer.tracks.append(track)
            transceiver = peer.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(viewer_codecs(fanout.codec))
            if fanout.keyframes is not None:
                passthrough.on_keyframe_request(transceiver.sender, fanout.keyframes.request)
        stream = " and ".join(describe(broadcast.fanouts[kind].codec) for kind in kinds)
        answer = await self._answer(peer, offer, f"this stream is {stream}")
        return peer, answer

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
        """Close a peer (idempotent); a host's end also ends its viewers and takes the room offline."""
        if peer.state is PeerState.CLOSED:
            return
        was_live = peer.state is PeerState.CONNECTED
        peer.state = PeerState.CLOSED
        self._peers.pop(peer.id, None)
        peer.log.info("closing: %s", reason)
        broadcast = self._broadcasts.get(peer.room_id)
        if peer.side is Side.PUBLISHER:
            assert broadcast is not None and broadcast.publisher is peer
            del self._broadcasts[peer.room_id]
            for task in broadcast.tasks:
                task.cancel()
            await asyncio.gather(*broadcast.tasks, return_exceptions=True)
            broadcast.tasks.clear()
            for fanout in broadcast.fanouts.values():
                fanout.close()
            viewers = [self.end(viewer, "the host stopped") for viewer in list(broadcast.viewers)]
            await asyncio.gather(*viewers, peer.pc.close())
            if was_live:
                self._announcements.put_nowait((peer.room_id, False))
        else:
            if broadcast is not None and peer in broadcast.viewers:
                broadcast.viewers.discard(peer)
                for track in peer.tracks:
                    broadcast.fanouts[track.kind].unsubscribe(track)
            for track in peer.tracks:
                track.stop()
            await peer.pc.close()

    async def close(self, timeout: float = 5.0) -> None:
        """End every peer (rooms go offline: told within `timeout` seconds), then stop the relay's own tasks."""
        self._closed = True
        await asyncio.gather(*(self.end(peer, "the server is shutting down") for peer in list(self._peers.values())))
        if self._started:
            try:
                await asyncio.wait_for(self._announcements.join(), timeout)
            except TimeoutError:
                log.warning("gave up announcing stream changes at shutdown")
        await self.tasks.stop(timeout)

    def stats(self) -> dict[str, int]:
        viewers = sum(len(broadcast.viewers) for broadcast in self._broadcasts.values())
        return {
            "rooms": len(self._broadcasts),
            "live": sum(broadcast.live for broadcast in self._broadcasts.values()),
            "viewers": viewers,
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
        return room_id in self._broadcasts

    # --- internals --------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; try again in a moment", "shutting_down")
        if not self._started:
            self._started = True
            self.tasks.every(self.options.sweep_interval, self._sweep, "sweep")
            self.tasks.spawn(self._announce(), name="relay-announce")

    async def _answer(self, peer: Peer, offer: Offer, codecs_hint: str) -> str:
        pc = peer.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            peer.log.debug("connection %s", state)
            if state == "connected" and peer.side is Side.VIEWER and peer.state is PeerState.CONNECTING:
                peer.state = PeerState.CONNECTED
                peer.log.info("watching")
            elif state in ("failed", "closed"):
                await self.end(peer, f"connection {state}")

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
        options, now = self.options, time.monotonic()
        for peer in list(self._peers.values()):
            if peer.state is PeerState.CONNECTING and now - peer.created > options.connect_timeout:
                self._spawn(self.end(peer, f"not connected after {options.connect_timeout:g} s"))
        for broadcast in list(self._broadcasts.values()):
            if broadcast.live and now - broadcast.last_media > options.media_timeout:
                self._spawn(self.end(broadcast.publisher, f"no media for {options.media_timeout:g} s"))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks.spawn(coroutine)
