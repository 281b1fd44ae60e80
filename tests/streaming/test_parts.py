"""The streaming package's parts on their own: TURN credentials, offers, keyframes, PLI pacing, and the fan-out's send
path (shared packets, sender reports, NACK/RTX, PLI) between real aiortc peers."""

from __future__ import annotations

import asyncio
import fractions
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import aioice.ice
import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, clock
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from server.errors import DomainError
from streaming import client, passthrough
from streaming.fanout import Fanout, KeyframeRequests
from streaming.ice import IceServers, turn_credentials
from streaming.offers import negotiated_codecs, parse_offer, publisher_codecs, viewer_codecs
from streaming.tracks import ForwardTrack
from tests.timing import seconds, until

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
    context = cast(av.VideoCodecContext, av.CodecContext.create(codec, "w"))
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


# --- the fan-out's send path, between real aiortc peers ----------------------------------


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every ICE candidate on 127.0.0.1."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def _negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> str:
    """Offer, answer, apply both; the answer's SDP."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    return str(answerer.localDescription.sdp)


RECEIVER_STATS = "_RTCRtpReceiver__stats"  # aiortc's receiver keeps the last sender report's figures there


@dataclass
class Viewer:
    pc: RTCPeerConnection  # the viewer's own peer
    server: RTCPeerConnection  # the relay's peer for it
    track: ForwardTrack
    output: passthrough.RtpOutput
    counter: client.Counter
    receiver: RTCRtpReceiver


@dataclass
class Chain:
    """An aiortc host sending VP8 to a relay peer with a pass-through receiver, its fan-out, and viewers."""

    host: RTCPeerConnection
    relay: RTCPeerConnection
    fanout: Fanout
    viewers: list[Viewer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def watch(self) -> Viewer:
        """A viewer peer (receiving packets, undecoded) served by the fan-out."""
        server, pc = RTCPeerConnection(), RTCPeerConnection()
        track = self.fanout.subscribe()
        transceiver = server.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(viewer_codecs(self.fanout.codec))
        self.fanout.bind(track, transceiver.sender)
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        passthrough.install(receiver)
        counter = client.Counter("video")

        @pc.on("track")
        def on_track(incoming: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(counter.read(incoming)))

        await _negotiate(pc, server)
        output = next(output for output in self.fanout.viewers if output.sender is transceiver.sender)
        viewer = Viewer(pc, server, track, output, counter, receiver)
        self.viewers.append(viewer)
        return viewer

    async def close(self) -> None:
        self.fanout.close()
        peers = [self.host, self.relay, *(v.pc for v in self.viewers), *(v.server for v in self.viewers)]
        await asyncio.gather(*(pc.close() for pc in peers))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _chain() -> Chain:
    host, relay = RTCPeerConnection(), RTCPeerConnection()
    host.addTransceiver(client.PatternTrack(160, 120), direction="sendonly")
    incoming = relay.addTransceiver("video", direction="recvonly")
    incoming.setCodecPreferences(publisher_codecs("video"))
    passthrough.install(incoming.receiver)
    answer = await _negotiate(host, relay)
    keyframes = KeyframeRequests(partial(passthrough.request_keyframe, incoming.receiver), interval=0.5)
    fanout = Fanout(incoming.receiver.track, negotiated_codecs(answer)["video"], keyframes, lambda: None)
    chain = Chain(host, relay, fanout)
    chain.tasks.append(asyncio.create_task(fanout.run()))
    return chain


@pytest.mark.anyio
@pytest.mark.usefixtures("loopback_only")
async def test_viewers_alike_share_each_frames_packets_and_get_sender_reports() -> None:
    """Two viewers negotiated alike share one header group; each gets every frame from a keyframe on, with its own
    continuous sequence numbers and SSRC, and RTCP sender reports that count what it was sent."""
    chain = await _chain()
    try:
        first, second = await chain.watch(), await chain.watch()
        await until(lambda: min(first.counter.frames, second.counter.frames) >= 30, what="30 frames each")
        assert len(chain.fanout._groups) == 1
        for viewer in (first, second):
            assert viewer.track.ready and viewer.counter.keyframes >= 1  # it started at a keyframe
            assert viewer.output.unsent == 0 and viewer.output.sent > viewer.counter.frames
        assert first.output.sender._ssrc != second.output.sender._ssrc

        def reported(viewer: Viewer) -> Any:
            stats = getattr(viewer.pc.getReceivers()[0], RECEIVER_STATS)  # what the last sender report said
            return next((s for s in stats.values() if s.type == "remote-outbound-rtp"), None)

        await until(lambda: reported(first) is not None and reported(second) is not None, what="sender reports")
        for viewer in (first, second):
            report = reported(viewer)
            assert 0 < report.packetsSent <= viewer.output.sent and report.bytesSent > 0
            assert abs((report.remoteTimestamp - clock.current_datetime()).total_seconds()) < seconds(3)
    finally:
        await chain.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("loopback_only")
async def test_a_viewers_nack_is_answered_from_the_shared_history_as_rtx() -> None:
    """A video packet lost on the way to a viewer is asked for by its NACK and comes back as RTX (its original
    sequence number and payload), from the fan-out's shared history."""
    chain = await _chain()
    try:
        viewer = await chain.watch()
        await until(lambda: viewer.counter.frames >= 10, what="the picture")
        handle = viewer.receiver._handle_rtp_packet
        lost: list[tuple[int, bytes]] = []
        repaired: list[tuple[int, bytes]] = []
        media = chain.fanout.codec.payloadType

        async def lossy(packet: RtpPacket, arrival_time_ms: int) -> None:
            if packet.payload_type == media and not lost:
                lost.append((packet.sequence_number, packet.payload))  # dropped, as on the network
                return
            if packet.payload_type != media:
                repaired.append((int.from_bytes(packet.payload[:2], "big"), packet.payload[2:]))
            await handle(packet, arrival_time_ms)

        viewer.receiver._handle_rtp_packet = lossy  # type: ignore[method-assign]
        await until(lambda: repaired, what="a retransmission")
        assert repaired[0] == lost[0]
        assert viewer.output.retransmitted >= 1
        frames = viewer.counter.frames
        await until(lambda: viewer.counter.frames > frames + 10, what="the picture to carry on")
    finally:
        await chain.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("loopback_only")
async def test_a_viewers_picture_loss_report_brings_a_keyframe_within_a_second() -> None:
    """A viewer's RTCP PLI reaches the host (through KeyframeRequests) and the viewer has a keyframe within 1 s."""
    chain = await _chain()
    try:
        viewer = await chain.watch()
        await until(lambda: viewer.counter.frames >= 30, what="the picture")  # the join's request is 0.5 s old
        keyframes = viewer.counter.keyframes
        await passthrough.request_keyframe(viewer.receiver)
        await until(lambda: viewer.counter.keyframes > keyframes, timeout=1.0, what="a keyframe within 1 s")
    finally:
        await chain.close()
