"""Cascading: a room's media piped once to each server process that has viewers of it, which serves them itself.

As SFUs cascade (LiveKit, mediasoup's pipe transports): the process holding the host's stream (the room's owner,
streaming.owners) sends the encoded media once to each other process with viewers of the room, and each of those
serves its own viewers from its local copy. A WHEP offer is answered by the process it reaches.

A pipe is an internal WebRTC session (ICE, DTLS-SRTP, RTCP, NACK) between two server processes:
- the receiving process makes a peer connection with recvonly audio and video transceivers whose receivers are
  pass-through (streaming.passthrough) and recover losses as a host's do (streaming.nack), and sends its offer to
  the room's owner through `Upstream` (streaming.owners carries it as a "pipe" call on the owner's channel);
- the owner answers it as a viewer of the host's broadcast (`Relay.feed`): exempt from the per-user and per-address
  caps, not counted as a viewer;
- in the receiving process the pipe's receivers feed fan-outs exactly as a host's do (a piped `Broadcast`): local
  viewers subscribe there; their keyframe requests go up the pipe as RTCP PLI, which the owner passes on to the host
  (each hop sends at most one per `keyframe_interval`).

Contract (kept by streaming.relay): at most one pipe per room per process, however many WHEP offers arrive at once;
it opens on the first local viewer, closes `pipe_linger` seconds after the last local viewer leaves, and ends, with
every local viewer, when the owner ends it (the host stopped), when it fails, or when no media came for
`media_timeout` seconds. Stream taps (HLS) are told of host broadcasts only, never of piped ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpReceiver, RTCSessionDescription

from streaming import nack, passthrough
from streaming.offers import KINDS, negotiated_codecs, publisher_codecs

Upstream = Callable[[str, str], Awaitable[str]]
"""Sends a pipe's SDP offer for a room to the process holding its host's stream: `(room_id, offer) -> answer`.
Raises `Conflict` (host_offline) when no process streams the room."""


async def connect(
    pc: RTCPeerConnection, room_id: str, upstream: Upstream
) -> dict[str, tuple[RTCRtpReceiver, RTCRtpCodecParameters]]:
    """Negotiate a pipe for `room_id` on `pc` (a new peer connection): each media kind the host sends, with its
    pass-through receiver and its codec. ICE and DTLS connect afterwards."""
    receivers = {}
    for kind in KINDS:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        transceiver.setCodecPreferences(publisher_codecs(kind))  # whatever a host may send
        passthrough.install(transceiver.receiver)
        if kind == "video":
            nack.install(transceiver.receiver)  # as a host's: NACKs repeated, a keyframe when a packet is lost for good
        receivers[kind] = transceiver.receiver
    await pc.setLocalDescription(await pc.createOffer())
    answer = await upstream(room_id, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return {kind: (receivers[kind], codec) for kind, codec in negotiated_codecs(answer).items()}
