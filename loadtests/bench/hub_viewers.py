"""One process of hub_bench's viewers: connect, say so, measure when told, print what it measured.

Driven over stdin/stdout by loadtests.bench.hub_bench, which starts several of these so that reading
frames is spread over processes and never starves the publishers.

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  "measure"                   reset the counters and start measuring
    stdin:  "stop"                      print one JSON line of results and exit
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys

import orjson
import uvloop

from loadtests.bench import wsclient
from loadtests.support import tokens


async def main(args: argparse.Namespace) -> None:
    stats = wsclient.Stats()
    stop = asyncio.Event()
    gate = asyncio.Semaphore(100)
    measure_every = max(1, args.count // max(args.sampled, 1))
    path = f"/ws/rooms/{args.room}"

    async def one(index: int) -> None:
        async with gate:
            token = tokens.guest(args.secret)  # a person each: the room counts people, not sockets
            task = asyncio.ensure_future(
                wsclient.viewer(args.host, args.port, path, token, stats, index % measure_every == 0, stop)
            )
            await asyncio.sleep(0.001)
        await task

    viewers = [asyncio.create_task(one(index)) for index in range(args.count)]
    while stats.connected + stats.closed < args.count:
        await asyncio.sleep(0.1)
    print(f"connected {stats.connected} {stats.closed}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    assert (await reader.readline()).strip() == b"measure"
    stats.latencies_ms.clear()
    frames, received = stats.frames, stats.bytes
    usage = resource.getrusage(resource.RUSAGE_SELF)
    await reader.readline()  # "stop"
    after = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "frames": stats.frames - frames,
        "bytes": stats.bytes - received,
        "latencies_ms": stats.latencies_ms,
        "closed": stats.closed,
        "close_codes": stats.close_codes,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
    }
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    sys.stdout.flush()
    stop.set()
    for task in viewers:
        task.cancel()
    await asyncio.gather(*viewers, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--secret", required=True, help="the server's SECRET_KEY: each viewer gets a guest token")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sampled", type=int, default=100, help="viewers of this process that measure latency")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main(parser.parse_args()))  # the load generator must stay cheaper than the server
