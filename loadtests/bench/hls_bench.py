"""HLS latency benchmark: glass-to-glass time of the LL-HLS stream, and of plain HLS from the same packager.

The publisher (aiortc, H.264 + Opus, WHIP to the real server's demo room) writes the wall clock
(ms) into each picture it makes, as a 48-cell barcode. A player stand-in reads the stream as
hls.js would and decodes every picture:
- "LL-HLS" (HLS_PART_MS=250, HLS_SEGMENT_MS=1000): it starts PART-HOLD-BACK behind the live
  edge at an independent part, then asks for each next part with a blocking playlist reload
  (`_HLS_msn`/`_HLS_part`) and fetches it;
- "plain HLS" (HLS_PART_MS=0, HLS_SEGMENT_MS=2000, the baseline): no parts; it starts three
  segments back from the end (hls.js' liveSyncDurationCount) and reloads the playlist every half
  target duration for the next segment.
A picture is shown at the player's clock (playback from its first picture at 1x, pausing when the
next picture has not arrived: a stall); its latency is when it is shown minus the time written in
it. That is glass-to-glass less the camera's and the screen's own delays (tens of ms), plus the
publisher's encoding. Each mode runs on a fresh server (loadtests.support.server.running).

    python -m loadtests.bench.hls_bench --seconds 30
    python -m loadtests.bench.hls_bench --smoke      # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from loadtests.support import loopback, smoke, table, tokens
from loadtests.support.server import running
from server.protocol import Role
from server.seed import DEMO_MERCHANT, DEMO_ROOM
from streaming import client

SERVER = [sys.executable, "-m", "loadtests.support.loopback", "server"]  # ICE on 127.0.0.1 only
BITS = 48
CELL = 8  # px per barcode cell
LL, PLAIN = "LL-HLS", "plain HLS"
MODES = {
    LL: {"HLS_PART_MS": "250", "HLS_SEGMENT_MS": "1000"},
    PLAIN: {"HLS_PART_MS": "0", "HLS_SEGMENT_MS": "2000"},
}
PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?')
COLUMNS = (
    "stream",
    "parts / segments",
    "hold-back s",
    "latency median s",
    "latency p95 s",
    "latency max s",
    "pictures",
    "stalls",
    "decoded",
)


class StampTrack(VideoStreamTrack):
    """A grey picture with the wall clock (ms since the epoch) written as a barcode: cell i white when bit i is 1."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        stamp = int(time.time() * 1000)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        rows = bytearray([96]) * (frame.planes[0].line_size * self.height)
        line = frame.planes[0].line_size
        for bit in range(BITS):
            value = 235 if stamp >> bit & 1 else 16
            x0, y0 = (bit % 24) * CELL, (bit // 24) * CELL
            for y in range(y0, y0 + CELL):
                rows[y * line + x0 : y * line + x0 + CELL] = bytes([value]) * CELL
        frame.planes[0].update(bytes(rows))
        for chroma in frame.planes[1:]:
            chroma.update(bytes([128]) * chroma.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_stamp(frame: av.VideoFrame) -> int:
    plane = frame.planes[0]
    data, line = bytes(plane), plane.line_size
    stamp = 0
    for bit in range(BITS):
        x, y = (bit % 24) * CELL + CELL // 2, (bit // 24) * CELL + CELL // 2
        if data[y * line + x] > 128:
            stamp |= 1 << bit
    return stamp


@dataclass
class Player:
    """Shows decoded pictures at 1x from the first, stalling when one is late; latency = shown - stamp."""

    hold_back: float
    decoder: Any = None  # one for the whole stream: a part's pictures refer to the previous part's
    started: float | None = None  # wall time the first picture was shown
    first_media: float = 0.0
    stall: float = 0.0
    stalls: int = 0
    latencies: list[float] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)

    def play(self, init: bytes, media: bytes, until: float) -> None:
        arrived = time.time()
        container = av.open(io.BytesIO(init + media), "r", format="mp4")
        stream = container.streams.video[0]
        if self.decoder is None:
            self.decoder = av.CodecContext.create("h264", "r")
            self.decoder.extradata = stream.codec_context.extradata  # avcC: the SPS and PPS
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            media_time = float(packet.pts * (stream.time_base or 0))
            for frame in self.decoder.decode(av.Packet(bytes(packet))):
                assert isinstance(frame, av.VideoFrame)
                self.sizes.add((frame.width, frame.height))
                if self.started is None:
                    self.started, self.first_media = arrived, media_time
                shown = self.started + (media_time - self.first_media) + self.stall
                if shown < arrived - 0.001:  # the picture came after its time: playback stalled until it did
                    self.stall += arrived - shown
                    self.stalls += 1
                    shown = arrived
                if arrived <= until:
                    self.latencies.append(shown - read_stamp(frame) / 1000)
        container.close()


def _init_uri(text: str) -> str:
    found = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    if found is None:
        raise SystemExit(f"no EXT-X-MAP in the playlist:\n{text}")
    return found[1]


async def _ll_hls(http: httpx.AsyncClient, url: str, seconds: float) -> Player:
    """Read the LL-HLS stream as hls.js does: start PART-HOLD-BACK behind the edge, then part by part."""
    base = url.rsplit("/", 1)[0]
    text = (await http.get(url)).text
    hold_back = float(re.search(r"PART-HOLD-BACK=([\d.]+)", text)[1])  # type: ignore[index]
    player = Player(hold_back)
    init = (await http.get(f"{base}/{_init_uri(text)}")).content
    parts = [(float(m[1]), m[2], bool(m[3])) for m in PART.finditer(text)]
    # the independent part nearest to hold_back before the end of the listed parts
    behind, start = 0.0, 0
    for index in range(len(parts) - 1, -1, -1):
        behind += parts[index][0]
        if parts[index][2]:
            start = index
            if behind >= hold_back:
                break
    until = time.time() + seconds
    name = parts[start][1]
    while time.time() < until + 1:
        player.play(init, (await http.get(f"{base}/{name}")).content, until)
        msn, part = (int(n) for n in re.findall(r"(\d+)\.(\d+)\.m4s$", name)[0])
        wanted = (msn, part + 1)
        while True:
            reload = await http.get(url, params={"_HLS_msn": wanted[0], "_HLS_part": wanted[1]})
            listing = reload.text
            if f"/{wanted[0]}.{wanted[1]}.m4s" in listing:
                name = next(m[2] for m in PART.finditer(listing) if m[2].endswith(f"/{wanted[0]}.{wanted[1]}.m4s"))
                break
            if f"/{wanted[0] + 1}.0.m4s" in listing:  # the segment ended: the next one's first part
                wanted = (wanted[0] + 1, 0)
                continue
    return player


async def _plain_hls(http: httpx.AsyncClient, url: str, seconds: float) -> Player:
    """Read plain HLS as hls.js does: start three segments from the end, reload every half target duration."""
    base = url.rsplit("/", 1)[0]
    text = (await http.get(url)).text
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)[1])  # type: ignore[index]
    player = Player(3 * target)
    init = (await http.get(f"{base}/{_init_uri(text)}")).content
    segments = re.findall(r"#EXTINF:[\d.]+,\n(\S+)", text)
    name = segments[max(0, len(segments) - 3)]
    until = time.time() + seconds
    while time.time() < until + 1:
        player.play(init, (await http.get(f"{base}/{name}")).content, until)
        msn = int(re.findall(r"(\d+)\.m4s$", name)[0])
        while True:
            listing = (await http.get(url)).text
            found = re.search(rf"#EXTINF:[\d.]+,\n(\S+/{msn + 1}\.m4s)", listing)
            if found:
                name = found[1]
                break
            await asyncio.sleep(target / 2)
    return player


async def _measure(base_url: str, secret: str, mode: str, seconds: float, size: tuple[int, int]) -> dict[str, Any]:
    host_token = tokens.staff(secret, DEMO_MERCHANT, Role.HOST, "Bench Host")
    host = await client.publish(
        f"{base_url}/whip/{DEMO_ROOM}", host_token, StampTrack(*size), AudioStreamTrack(), "video/H264"
    )
    url = f"{base_url}/hls/{DEMO_ROOM}/live.m3u8"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            deadline = time.monotonic() + 30
            while (await http.get(url)).text.count("#EXTINF") < 3:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode}: no playlist with three segments after 30 s")
                await asyncio.sleep(0.2)
            read = _ll_hls if mode == LL else _plain_hls
            player = await read(http, url, seconds)
    finally:
        await host.stop()
    latencies = sorted(player.latencies)
    return {
        "stream": mode,
        "parts": mode == LL,
        "hold_back": player.hold_back,
        "median": statistics.median(latencies) if latencies else None,
        "p95": latencies[int(len(latencies) * 0.95)] if latencies else None,
        "max": latencies[-1] if latencies else None,
        "pictures": len(latencies),
        "stalls": player.stalls,
        "decoded": ",".join(f"{w}x{h}" for w, h in sorted(player.sizes)),
    }


def report(results: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["stream"],
            "parts 0.25 s, segments 1 s" if r["parts"] else "segments 2 s",
            r["hold_back"],
            r["median"],
            r["p95"],
            r["max"],
            r["pictures"],
            r["stalls"],
            r["decoded"],
        )
        for r in results
    ]
    text = table.markdown(COLUMNS, rows)
    by = {r["stream"]: r for r in results}
    if by.get(LL, {}).get("median") and by.get(PLAIN, {}).get("median"):
        ratio = by[PLAIN]["median"] / by[LL]["median"]
        text += f"\nratio plain HLS / LL-HLS median latency: {ratio:.1f}x"
    return text


def failures(results: list[dict[str, Any]]) -> list[str]:
    return [f"{r['stream']}: no picture measured" for r in results if not r["pictures"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="measured playback per stream")
    parser.add_argument("--size", default="640x360", help="the publisher's picture, WIDTHxHEIGHT")
    parser.add_argument("--modes", default=f"{LL},{PLAIN}", help="which streams to measure")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = smoke.parse(parser, {"seconds": 3, "size": "320x240"}, argv)
    loopback.only()
    width, height = (int(n) for n in args.size.split("x"))
    results = []
    for mode in args.modes.split(","):
        with running(SERVER, env=MODES[mode]) as server:
            results.append(asyncio.run(_measure(server.base_url, server.secret, mode, args.seconds, (width, height))))
        print(f"{mode}: done", file=sys.stderr, flush=True)
    smoke.emit(results, args.json, report, failures)


if __name__ == "__main__":
    main()
