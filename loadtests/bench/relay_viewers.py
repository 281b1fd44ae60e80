"""One process of relay_bench's viewers: watch a room over WHEP with streaming.client, count what arrives when told.

Driven over stdin/stdout by loadtests.bench.relay_bench (under loadtests.support.loopback), which
spreads the viewers over several of these. The first --decoders viewers decode and note the
picture's size; the others only count RTP (streaming.client.count: no jitter buffer, reassembly or
decoding), so that hundreds of viewers fit beside the server on the same cores.

    stdout: "ready"    once every viewer has had a video frame (or READY_SECONDS passed)
    stdin:  "go"       start counting
    stdin:  "stop"     print one JSON line: each viewer's video frames/s and audio packets/s, the decoded sizes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from loadtests.support import tokens
from streaming import client

READY_SECONDS = 30


def frames(session: client.Session, kind: str) -> int:
    """Frames (video) or packets (audio) the viewer has received so far."""
    counter = session.counters.get(kind)
    return 0 if counter is None else counter.frames


def counts(sessions: list[client.Session]) -> list[tuple[int, int]]:
    """(video frames, audio packets) received so far, per viewer."""
    return [(frames(session, "video"), frames(session, "audio")) for session in sessions]


async def main(args: argparse.Namespace) -> None:
    sessions: list[client.Session] = []
    for start in range(0, args.count, 10):
        batch = range(start, min(start + 10, args.count))
        sessions += await asyncio.gather(
            *(
                client.watch(args.url, tokens.guest(args.secret))
                if index < args.decoders
                else client.count(args.url, tokens.guest(args.secret))
                for index in batch
            )
        )
    deadline = time.monotonic() + READY_SECONDS
    while any(video == 0 for video, _audio in counts(sessions)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    assert (await reader.readline()).strip() == b"go"
    before, started = counts(sessions), time.monotonic()
    await reader.readline()  # "stop"
    after, elapsed = counts(sessions), time.monotonic() - started
    decoders = [session.counters["video"] for session in sessions[: args.decoders] if "video" in session.counters]
    decoded = {size for counter in decoders for size in counter.sizes}
    report = {
        "video_fps": [(a[0] - b[0]) / elapsed for a, b in zip(after, before, strict=True)],
        "audio_pps": [(a[1] - b[1]) / elapsed for a, b in zip(after, before, strict=True)],
        "decoded_sizes": sorted(decoded),
    }
    print(json.dumps(report), flush=True)
    await asyncio.gather(*(session.stop(delete=False) for session in sessions))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the room's WHEP URL")
    parser.add_argument("--secret", required=True, help="the server's SECRET_KEY: each viewer gets a guest token")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--decoders", type=int, default=0, help="viewers of this process that decode")
    asyncio.run(main(parser.parse_args()))
