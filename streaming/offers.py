"""SDP offers: what WHIP and WHEP accept, and which codecs each side may negotiate.

The relay forwards the host's encoded media untouched, so a viewer must receive exactly the
codec the host sends. The host may send VP8 or H.264 (constrained baseline, packetization-mode 1)
video and Opus audio; each viewer is then offered only the host's codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiortc import RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpSender
from aiortc.sdp import SessionDescription

from server.errors import BadRequest

MAX_OFFER_BYTES = 64 * 1024
KINDS = ("audio", "video")

# In order of preference: every WebRTC browser decodes VP8 and H.264 (RFC 7742); OBS sends H.264.
PUBLISH_VIDEO = ("video/VP8", "video/H264")
PUBLISH_AUDIO = ("audio/opus",)


@dataclass(frozen=True)
class Offer:
    sdp: str
    kinds: tuple[str, ...]  # the media kinds it offers, each at most once


def parse_offer(sdp: str, *, sending: bool) -> Offer:
    """Check an offer: a publisher's (`sending`) sends media, a viewer's receives it; else BadRequest (bad_offer)."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as problem:  # aiortc's parser raises assorted errors on garbage
        raise BadRequest(f"the body is not a valid SDP offer ({type(problem).__name__})", "bad_offer") from None
    media = [m for m in description.media if m.kind in KINDS]
    kinds = tuple(m.kind for m in media)
    if not media:
        raise BadRequest("the offer has no audio or video", "bad_offer")
    if len(set(kinds)) != len(kinds):
        raise BadRequest("the offer may have one audio and one video section at most", "bad_offer")
    wanted = ("sendonly", "sendrecv") if sending else ("recvonly", "sendrecv")
    for section in media:
        if section.direction not in wanted:
            raise BadRequest(f"the {section.kind} section must be {' or '.join(wanted)}", "bad_offer")
        if not section.ice or not section.ice.usernameFragment or not section.ice.password:
            raise BadRequest("the offer has no ICE username fragment or password", "bad_offer")
        if not section.dtls or not section.dtls.fingerprints:
            raise BadRequest("the offer has no DTLS fingerprint", "bad_offer")
    return Offer(sdp=sdp, kinds=kinds)


def _capabilities(kind: str) -> list[RTCRtpCodecCapability]:
    return RTCRtpSender.getCapabilities(kind).codecs


def publisher_codecs(kind: str) -> list[RTCRtpCodecCapability]:
    """The codecs a host may send, best first (with RTX for video)."""
    wanted = PUBLISH_VIDEO if kind == "video" else PUBLISH_AUDIO
    chosen = [c for mime in wanted for c in _capabilities(kind) if c.mimeType.lower() == mime.lower()]
    return chosen + [c for c in _capabilities(kind) if c.mimeType.lower() == "video/rtx"]


def viewer_codecs(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The one codec a viewer may receive: the host's (with RTX for video)."""
    kind = codec.mimeType.split("/")[0]
    same = [c for c in _capabilities(kind) if _same(c, codec)]
    return same[:1] + [c for c in _capabilities(kind) if c.mimeType.lower() == "video/rtx"]


def _same(capability: RTCRtpCodecCapability, codec: RTCRtpCodecParameters) -> bool:
    def normal(parameters: Mapping[str, object]) -> dict[str, str]:
        return {key: str(value).lower() for key, value in parameters.items()}

    return capability.mimeType.lower() == codec.mimeType.lower() and normal(capability.parameters) == normal(
        codec.parameters
    )


def negotiated_codecs(answer_sdp: str) -> dict[str, RTCRtpCodecParameters]:
    """The codec each media kind of an answer settled on (the first one listed, as senders use)."""
    codecs = {}
    for media in SessionDescription.parse(answer_sdp).media:
        if media.kind in KINDS and media.direction != "inactive":
            main = [c for c in media.rtp.codecs if c.mimeType.lower() != f"{media.kind}/rtx"]
            if main:
                codecs[media.kind] = main[0]
    return codecs


def describe(codec: RTCRtpCodecParameters) -> str:
    """A codec as people write it: 'VP8', 'H264 (profile-level-id=42e01f)', 'opus'."""
    profile = codec.parameters.get("profile-level-id")
    return f"{codec.name} (profile-level-id={profile})" if profile else codec.name
