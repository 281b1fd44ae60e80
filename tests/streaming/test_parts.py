"""The streaming package's parts on their own: TURN credentials, offers, keyframes, viewer queues, PLI pacing."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from server.errors import DomainError
from streaming import passthrough
from streaming.fanout import KeyframeRequests
from streaming.ice import IceServers, turn_credentials
from streaming.offers import parse_offer
from streaming.tracks import ForwardTrack
from tests.timing import until

# --- ICE servers ------------------------------------------------------------------------


def test_turn_credentials_follow_the_turn_rest_scheme() -> None:
    """username is "<expiry>:<user>", password base64(HMAC-SHA1(secret, username)) (vector checked with openssl)."""
    credentials = turn_credentials("north-secret", "u_42", now=1_700_000_000, ttl=3600)
    assert credentials.username == "1700003600:u_42"
    assert credentials.password == "k/6tIHcf+SO6bHtxI5fbRs/m2J4="


def test_link_headers_give_credentials_to_turn_servers_only() -> None:
    """STUN links are bare; TURN links carry the user's short-lived credentials (RFC 9725 section 4.6)."""
    ice = IceServers(("stun:stun.example.org:3478", "turns:turn.example.org:443?transport=tcp"), "north-secret")
    stun, turn = ice.link_headers("u_42", now=1_700_000_000)
    assert stun == '<stun:stun.example.org:3478>; rel="ice-server"'
    expiry = 1_700_000_000 + 12 * 3600
    assert turn.startswith(f'<turns:turn.example.org:443?transport=tcp>; rel="ice-server"; username="{expiry}:u_42"; ')
    assert turn.endswith('; credential-type="password"')


def test_ice_servers_refuse_turn_without_a_secret_and_unknown_schemes() -> None:
    """A TURN server needs TURN_SECRET; an ICE server URL needs a stun/turn scheme."""
    with pytest.raises(ValueError, match="TURN_SECRET"):
        IceServers(("turn:turn.example.org",))
    with pytest.raises(ValueError, match="must start with"):
        IceServers(("https://turn.example.org",))


def test_server_side_peers_use_stun_only_and_never_the_default() -> None:
    """The server's own peers learn their address from STUN; with nothing configured they use no server at all."""
    configured = IceServers(("stun:stun.example.org", "turn:turn.example.org"), "s").server_configuration()
    assert [server.urls for server in configured.iceServers or []] == [["stun:stun.example.org"]]
    assert IceServers().server_configuration().iceServers == []


# --- offers -----------------------------------------------------------------------------


async def _offer(direction: str, kinds: tuple[str, ...] = ("video", "audio")) -> str:
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.anyio
async def test_offers_are_checked_before_any_peer_is_made() -> None:
    """Garbage, no media, two video sections or the wrong direction are 400s that say what is wrong."""
    sending, receiving = await _offer("sendonly"), await _offer("recvonly")
    assert parse_offer(sending, sending=True).kinds == ("video", "audio")
    assert parse_offer(receiving, sending=False).kinds == ("video", "audio")
    cases = {
        "v=0\r\nm=video port UDP/TLS/RTP/SAVPF 96\r\n": "the body is not a valid SDP offer",
        "not sdp at all": "no audio or video",
        "v=0\r\ns=-\r\nt=0 0\r\n": "no audio or video",
        await _offer("sendonly", ("video", "video")): "one audio and one video section at most",
        receiving: "must be sendonly or sendrecv",
        sending.replace("a=fingerprint:", "a=x-fingerprint:"): "no DTLS fingerprint",
    }
    for sdp, message in cases.items():
        with pytest.raises(DomainError) as refused:
            parse_offer(sdp, sending=True)
        assert refused.value.status == 400 and message in refused.value.message


# --- keyframes --------------------------------------------------------------------------


def _encode(codec: str, count: int, forced: int) -> list[bytes]:
    """`count` encoded 64x64 frames; frame 0 and frame `forced` are keyframes."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    context.gop_size = 1000
    if codec == "libx264":
        context.options = {"tune": "zerolatency", "preset": "ultrafast"}
    packets = []
    for index in range(count):
        frame = av.VideoFrame(64, 64, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(index * 7) % 256]) * plane.buffer_size)
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if index == forced else av.video.frame.PictureType.NONE
        packets += [bytes(packet) for packet in context.encode(frame)]
    packets += [bytes(packet) for packet in context.encode(None)]
    return packets


@pytest.mark.parametrize(("mime", "codec"), [("video/VP8", "libvpx"), ("video/H264", "libx264")])
def test_keyframes_are_recognised_in_encoded_video(mime: str, codec: str) -> None:
    """VP8 key frames and H.264 IDR access units are keyframes; the frames between them are not."""
    frames = _encode(codec, 8, forced=5)
    assert [passthrough.is_keyframe(mime, frame) for frame in frames] == [i in (0, 5) for i in range(8)]


def test_every_audio_frame_is_a_keyframe() -> None:
    """Opus frames decode on their own."""
    assert passthrough.is_keyframe("audio/opus", b"\xfc\xff\xfe")


def test_pass_through_is_installed_on_one_receiver_only() -> None:
    """install() changes the receiver it is given; the peer connection's other receivers still decode."""

    async def check() -> None:
        pc = RTCPeerConnection()
        video = pc.addTransceiver("video", direction="recvonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        passthrough.install(video.receiver)
        assert passthrough.is_installed(video.receiver)
        assert not passthrough.is_installed(audio.receiver)
        await pc.close()

    asyncio.run(check())


# --- a viewer's queue -------------------------------------------------------------------


def _packet(number: int, keyframe: bool) -> av.Packet:
    packet = av.Packet(bytes([number]))
    packet.pts = number
    packet.is_keyframe = keyframe
    return packet


@pytest.mark.anyio
async def test_viewer_track_starts_at_a_keyframe_and_asks_for_one() -> None:
    """Nothing is kept before the sender reads; then delta frames wait for the first keyframe."""
    asked = []
    track = ForwardTrack("video", capacity=4, want_keyframe=lambda: asked.append(1))
    track.push(_packet(0, keyframe=True))  # before the sender's first read: not kept
    reader = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert asked == [1]
    track.push(_packet(1, keyframe=False))
    track.push(_packet(2, keyframe=True))
    track.push(_packet(3, keyframe=False))
    assert (await reader).pts == 2
    assert (await track.recv()).pts == 3
    assert track.dropped == 1


@pytest.mark.anyio
async def test_slow_viewer_skips_to_the_next_keyframe_instead_of_queueing() -> None:
    """A viewer `capacity` frames behind loses its queue, asks for a keyframe, and resumes from one."""
    asked = []
    track = ForwardTrack("video", capacity=3, want_keyframe=lambda: asked.append(1))
    reader = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.push(_packet(0, keyframe=True))
    assert (await reader).pts == 0
    for number in range(1, 10):  # the viewer stops reading
        track.push(_packet(number, keyframe=False))
        assert len(track._queue) <= 3
    assert len(asked) == 2  # the first read, then the overflow
    track.push(_packet(10, keyframe=True))
    track.push(_packet(11, keyframe=False))
    assert [(await track.recv()).pts, (await track.recv()).pts] == [10, 11]
    assert track.delivered == 3 and track.dropped == 9


@pytest.mark.anyio
async def test_stopped_viewer_track_ends_its_reader() -> None:
    """Stopping the track wakes a waiting sender with the end of the stream."""
    track = ForwardTrack("audio", capacity=3, want_keyframe=lambda: None)
    reader = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await reader


# --- keyframe requests ------------------------------------------------------------------


@pytest.mark.anyio
async def test_keyframe_requests_reach_the_host_at_most_once_per_interval() -> None:
    """A burst of requests sends one PLI at once and one at the end of the interval; a keyframe cancels that one."""
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def send() -> None:
        sent.append(loop.time())

    interval = 0.2
    requests = KeyframeRequests(send, interval=interval)
    start = loop.time()
    for _ in range(10):
        requests.request()
    assert requests.sent == 1  # the first at once
    await until(lambda: len(sent) == 2, what="the PLI at the end of the interval")
    assert sent[1] - start >= interval - 0.01
    requests.request()  # inside the interval again: scheduled...
    requests.keyframe_arrived()  # ...and satisfied by a keyframe
    # The moment that PLI was due: the loop runs timers in time order, so a PLI still scheduled would go first.
    due = loop.create_future()
    loop.call_at(sent[1] + interval, due.set_result, None)
    await due
    await asyncio.sleep(0)  # a PLI sent then would have reached send() by now
    assert requests.sent == 2 and len(sent) == 2
    requests.close()
