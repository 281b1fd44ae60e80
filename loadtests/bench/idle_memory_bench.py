"""Idle memory benchmark: the server's memory per connected, authenticated, idle room socket, beside a bare
`websockets` library server measured in the same run.

For each server asked for (--implementations: `product`, `python -m server` as it is, and any uvicorn `ws=` value or
import string) it starts `python -m server` on a fresh DATA_DIR through this module's `--serve` launcher (the same
`main()`, with uvicorn told which `ws=` to use: a bench switch, no product setting), connects --warm viewers to room
`demo` (the room opened, every lazy import done), reads the web process's RSS, connects --viewers more guests from
hub_bench's lean viewer processes (each sends its auth frame and gets its snapshot), waits --settle seconds and reads
RSS again: the growth over the new viewers is the figure. The yardstick is the `websockets` library's own asyncio
server doing the least a room socket does (read the auth frame, send a snapshot, read until closed), measured the
same way. Today's room sockets need server.webserver.RoomSocket (socket_of): uvicorn's plain implementations run
only the code from before it (this file copied into a checkout of commit fccfefe, as docs/benchmarks.md did).

With --breakdown it runs each server again under tracemalloc (IDLE_MEMORY_TRACE, read only by the launcher here)
and prints where the new viewers' bytes were allocated and are still held, by module and by line.

    python -m loadtests.bench.idle_memory_bench --viewers 5000
    python -m loadtests.bench.idle_memory_bench --viewers 2000 --breakdown
    python -m loadtests.bench.idle_memory_bench --viewers 5000 --implementations websockets-sansio,wsproto  # fccfefe
    python -m loadtests.bench.idle_memory_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from loadtests.support import procstat, smoke, table
from loadtests.support.server import ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files

PRODUCT = "product"  # --serve's name for `python -m server` as it is (its own ws=)
LIBRARY = "library"  # --serve's name for the bare websockets server
ROOM = "demo"
TRACE = "IDLE_MEMORY_TRACE"  # the launcher's tracemalloc switch: a directory where it answers snapshot requests
SMOKE = {"viewers": 200, "warm": 20, "clients": 1, "settle": 0.5}
SMALL = 64  # bytes per viewer: places allocating less are summed as one row (--breakdown)
COLUMNS = ("server", "viewers", "closed", "RSS before MiB", "RSS after MiB", "KiB per idle viewer", "/ library")

# Where tracemalloc's lines are put, by the first part of their file's path that matches (--breakdown).
PLACES = (
    ("uvicorn/protocols/websockets/", "uvicorn WebSocket protocol"),
    ("uvicorn/", "uvicorn (other)"),
    ("websockets/", "websockets library (ServerProtocol, parser, frames)"),
    ("wsproto/", "wsproto library"),
    ("h11/", "h11 (wsproto's handshake)"),
    ("starlette/", "Starlette"),
    ("asyncio/", "asyncio (tasks, futures, queues, events, timers)"),
    ("server/live/outbox.py", "server/live/outbox.py (Viewer)"),
    ("server/live/", "server/live (transport, hub)"),
    ("server/", "server (other)"),
)


# --- the server launcher (this module run with --serve) ----------------------------------------------------------


def serve(implementation: str, port: int) -> None:
    """`python -m server` with uvicorn's WebSocket implementation `implementation`, or the bare library server."""
    trace = os.environ.get(TRACE)
    if trace:
        import tracemalloc

        tracemalloc.start()
        threading.Thread(target=_answer_snapshots, args=(Path(trace),), daemon=True).start()
    if implementation == LIBRARY:
        asyncio.run(_library_server(port))
        return
    import uvicorn

    from server.__main__ import main

    if implementation != PRODUCT:
        run = uvicorn.run

        def run_with(*args: Any, **kwargs: Any) -> None:
            run(*args, **{**kwargs, "ws": implementation})

        uvicorn.run = run_with
    main([])


def _answer_snapshots(folder: Path) -> None:
    """For each `<name>.request` the bench writes in `folder`, a tracemalloc snapshot in `<name>.snapshot`."""
    import tracemalloc

    while True:
        for request in folder.glob("*.request"):
            snapshot = tracemalloc.take_snapshot()
            partial = request.with_suffix(".partial")
            snapshot.dump(str(partial))
            partial.rename(request.with_suffix(".snapshot"))
            request.unlink()
        time.sleep(0.1)


async def _library_server(port: int) -> None:
    """The yardstick: the `websockets` library's asyncio server doing what a room socket does at the least, with
    livecart's options (no compression, 64 KiB frames); GET /readyz answers 200 for the launcher."""
    from http import HTTPStatus

    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Request, Response

    async def room(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the load generator drops its sockets without a close frame
            await connection.recv()  # the auth frame
            await connection.send('{"type":"snapshot"}')
            async for _ in connection:
                pass

    def ready(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(HTTPStatus.OK, "ok\n") if request.path == "/readyz" else None

    async with serve(room, "127.0.0.1", port, compression=None, max_size=2**16, process_request=ready) as server:
        await server.serve_forever()


# --- the bench ---------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every implementation asked for, then the library server: the figures of each; with --breakdown, each again
    under tracemalloc."""
    results = []
    for implementation in [*args.implementations.split(","), LIBRARY]:
        results.append(await measure(args, implementation))
    if args.breakdown:
        for implementation in args.implementations.split(","):
            results.append(await measure(args, implementation, traced=True))
    return results


async def measure(args: argparse.Namespace, implementation: str, *, traced: bool = False) -> dict[str, Any]:
    """One fresh server: RSS (or, traced, tracemalloc's snapshots) after the warm-up viewers and after the others."""
    command = [sys.executable, "-m", __spec__.name, "--serve", implementation, "--port", "{port}"]
    with tempfile.TemporaryDirectory(prefix="idle-memory-") as folder:
        env = {TRACE: folder} if traced else {}
        with running(command, env=env, ready="/readyz") as server:
            warm = await Viewers.start("loadtests.bench.hub_viewers", server, ROOM, args.warm, 1, 0)
            await asyncio.sleep(args.settle)
            before = procstat.rss_bytes(server.process.pid)
            snapshot_before = await _snapshot(Path(folder), "before") if traced else None
            crowd = await Viewers.start("loadtests.bench.hub_viewers", server, ROOM, args.viewers, args.clients, 0)
            await asyncio.sleep(args.settle)
            after = procstat.rss_bytes(server.process.pid)
            snapshot_after = await _snapshot(Path(folder), "after") if traced else None
            reports = [*await _leave(crowd), *await _leave(warm)]
            assert_alive(server)
        connected = crowd.connected
        result: dict[str, Any] = {
            "server": _name(implementation),
            "implementation": implementation,
            "viewers": connected,
            "closed": sum(report["closed"] for report in reports),
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "kib_per_viewer": round((after - before) / max(connected, 1) / 1024, 2),
        }
        if traced:
            assert snapshot_before is not None and snapshot_after is not None
            result["breakdown"] = breakdown(snapshot_before, snapshot_after, connected)
        return result


def assert_alive(server: ServerProcess) -> None:
    if server.process.poll() is not None:
        raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log()}")


async def _snapshot(folder: Path, name: str) -> Any:
    """Ask the traced server for a tracemalloc snapshot and load it."""
    import tracemalloc

    (folder / f"{name}.request").touch()
    path = folder / f"{name}.snapshot"
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the traced server did not answer its snapshot request")
        await asyncio.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


async def _leave(viewers: Viewers) -> list[dict[str, Any]]:
    """The viewer processes' reports (hub_bench's viewers: told the load began and ended), once they have closed
    their sockets and exited."""
    await viewers.tell(b"measure")
    await viewers.tell(b"loaded")
    reports = await viewers.report(b"stop")
    for process in viewers.processes:
        await process.wait()
    return reports


def breakdown(before: Any, after: Any, viewers: int) -> dict[str, Any]:
    """The bytes allocated between the snapshots (and still held), per new viewer: by place and by line."""
    lines = [diff for diff in after.compare_to(before, "lineno") if diff.size_diff > 0]
    places: dict[str, float] = defaultdict(float)
    for diff in lines:
        places[_place(diff.traceback[0].filename)] += diff.size_diff / viewers
    small = [place for place, size in places.items() if size < SMALL]
    places[f"elsewhere ({len(small)} places under {SMALL} bytes each)"] = sum(places.pop(place) for place in small)
    top = sorted(lines, key=lambda diff: diff.size_diff, reverse=True)[:25]
    return {
        "total_bytes_per_viewer": round(sum(places.values())),
        "places": {place: round(size) for place, size in sorted(places.items(), key=lambda item: -item[1])},
        "lines": [
            {
                "line": f"{_short(diff.traceback[0].filename)}:{diff.traceback[0].lineno}",
                "bytes_per_viewer": round(diff.size_diff / viewers),
                "blocks_per_viewer": round(diff.count_diff / viewers, 2),
            }
            for diff in top
        ],
    }


def _place(filename: str) -> str:
    for part, place in PLACES:
        if part in filename:
            return place
    return "other (" + _short(filename) + ")"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _name(implementation: str) -> str:
    if implementation == PRODUCT:
        return "livecart (python -m server)"
    return "websockets library server (bare)" if implementation == LIBRARY else f"livecart, uvicorn ws={implementation}"


def report(results: list[dict[str, Any]]) -> str:
    """The table (each server's KiB per idle viewer and its ratio to the library server's), then any breakdowns."""
    plain = [result for result in results if "breakdown" not in result]
    library = next(result["kib_per_viewer"] for result in plain if result["implementation"] == LIBRARY)
    rows = [
        [
            result["server"],
            result["viewers"],
            result["closed"],
            round(result["rss_before_bytes"] / 2**20, 1),
            round(result["rss_after_bytes"] / 2**20, 1),
            result["kib_per_viewer"],
            f"{result['kib_per_viewer'] / library:.2f}x" if library > 0 else "n/a",
        ]
        for result in plain
    ]
    lines = [table.markdown(COLUMNS, rows)]
    for result in results:
        if "breakdown" in result:
            lines += _breakdown_text(result)
    return "\n".join(lines)


def _breakdown_text(result: dict[str, Any]) -> list[str]:
    found = result["breakdown"]
    lines = [
        f"\n{result['server']} under tracemalloc, {result['viewers']:,} viewers: "
        f"{found['total_bytes_per_viewer']:,} bytes per viewer allocated and still held",
        "",
        table.markdown(("where", "bytes per viewer"), list(found["places"].items())),
        "",
        table.markdown(
            ("line", "bytes per viewer", "blocks per viewer"),
            [[line["line"], line["bytes_per_viewer"], line["blocks_per_viewer"]] for line in found["lines"]],
        ),
    ]
    return lines


def failures(results: list[dict[str, Any]]) -> list[str]:
    """A server that closed viewers, or let fewer in than asked, measured nothing worth printing."""
    return [result["server"] for result in results if result["closed"] or result["viewers"] == 0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=5000, help="idle viewers measured")
    parser.add_argument("--warm", type=int, default=100, help="viewers connected before the first reading")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument("--settle", type=float, default=3, help="seconds before each reading")
    parser.add_argument(
        "--implementations",
        default=PRODUCT,
        help=f"comma-separated: {PRODUCT} (python -m server as it is), uvicorn ws= values or import strings",
    )
    parser.add_argument("--breakdown", action="store_true", help="then each again under tracemalloc: where it goes")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the launcher: run a server, not the bench
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = smoke.parse(parser, SMOKE, argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    raise_open_files()
    results = asyncio.run(run(args))
    smoke.emit(results, args.json, report, failures)


if __name__ == "__main__":
    main()
