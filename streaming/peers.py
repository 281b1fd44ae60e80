"""A peer: one WHIP or WHEP session or one cascade pipe, its RTCPeerConnection, its state and its log prefix."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from aiortc import RTCPeerConnection

from streaming.tracks import ForwardTrack

logger = logging.getLogger("livecart.streaming")


class Side(StrEnum):
    PUBLISHER = "whip"
    VIEWER = "whep"
    PIPE = "pipe"  # a room's media between two server processes (streaming.cascade): the source of a piped
    # broadcast in the process that receives it, a viewer-like sink of the host's broadcast in the one that sends it


class PeerState(Enum):
    """CONNECTING until media flows (publisher, pipe's receiving end) or ICE and DTLS connect (viewer, pipe's sending
    end); CLOSED is final."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


class PeerLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the peer: '[whip room-1/3fa2c1d0] ...'."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{(self.extra or {}).get('peer')}] {msg}", kwargs


@dataclass(eq=False)
class Peer:
    side: Side
    room_id: str
    user_id: str
    pc: RTCPeerConnection
    session_id: str = ""  # the signed-in session that opened it: signing that session out ends it
    address: str = ""  # the client's address (video sessions are capped per address and per user)
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16))  # the relay prefixes its process's id
    state: PeerState = PeerState.CONNECTING
    created: float = field(default_factory=time.monotonic)
    tracks: list[ForwardTrack] = field(default_factory=list)  # a viewer's tracks, one per kind

    def __post_init__(self) -> None:
        self.log = PeerLog(logger, {"peer": f"{self.side.value} {self.room_id}/{self.id.rpartition('.')[2][:8]}"})
