"""The load generator's viewer processes (loadtests.bench.*_viewers), both ends of their pipes: the bench starts them,
tells them commands and reads their reports; each fills its share of the room with guest sockets, counts what they
see and answers the bench's commands.

    stdout: "connected <n> <closed>"   once every viewer has its snapshot (or was refused)
    stdin:  the bench's commands, a line each, until "quit" (or the end of stdin)
    stdout: a report: one JSON line

A bench fills a room with thousands of guests this way so that reading their frames never starves the process that
sends and times the load.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from loadtests.support.server import ROOT, ServerProcess

GATE = 100  # sockets of a process connecting at a time


def raise_open_files() -> None:
    """Let this process open as many files (sockets) as the hard limit allows: a bench and its viewers hold many."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the bench's side -------------------------------------------------------------------------------------------


@dataclass
class Viewers:
    """A bench's viewer processes, once started: how many guests got in, in how many seconds."""

    processes: list[asyncio.subprocess.Process]
    connected: int
    seconds: float

    @classmethod
    async def start(
        cls, module: str, server: ServerProcess, room: str, count: int, clients: int, sampled: int
    ) -> Viewers:
        """`clients` processes of `module` sharing `count` guests of `room` and `sampled` sampled ones; once every
        guest has its snapshot (or was refused)."""
        started = time.monotonic()
        shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, "--port", str(server.port), "--room", room,
                f"--secret={server.secret}", "--count", str(share), "--sampled", str(sampled // clients),
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**28,
            )
            for share in shares
        ]  # fmt: skip
        connected = 0
        for process in processes:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 600)).split()
            connected += int(line[1])
        return cls(processes, connected, time.monotonic() - started)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    async def tell(self, command: bytes) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + b"\n")
            await process.stdin.drain()

    async def report(self, command: bytes = b"report", timeout: float = 60) -> list[dict[str, Any]]:
        """Tell every process `command`; the JSON line each answers."""
        await self.tell(command)
        results = []
        for process in self.processes:
            assert process.stdout is not None
            results.append(orjson.loads(await asyncio.wait_for(process.stdout.readline(), timeout)))
        return results

    async def quit(self) -> None:
        await self.tell(b"quit")
        for process in self.processes:
            await process.wait()


# --- a viewer process's side ------------------------------------------------------------------------------------


@dataclass
class Counts:
    """What a viewer process's sockets saw, summed over them; the frames and the process's CPU at "measure"."""

    connected: int = 0
    closed: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    sampled: int = 0  # connected viewers that sample (time, note) what they are sent
    frames: int = 0
    measured_frames: int = 0  # `frames` at "measure"
    measured_usage: resource.struct_rusage = field(default_factory=lambda: resource.getrusage(resource.RUSAGE_SELF))

    def measure(self) -> None:
        """Reports count the frames and CPU seconds from now on."""
        self.measured_frames, self.measured_usage = self.frames, resource.getrusage(resource.RUSAGE_SELF)

    def report(self) -> dict[str, Any]:
        """What every viewer process reports: frames and CPU seconds since "measure"; the sockets in, sampled,
        closed and how."""
        after, usage = resource.getrusage(resource.RUSAGE_SELF), self.measured_usage
        return {
            "frames": self.frames - self.measured_frames,
            "connected": self.connected,
            "sampled": self.sampled,
            "closed": self.closed,
            "close_codes": self.close_codes,
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
        }


async def crowd(
    counts: Counts, count: int, sampled: int, join: Callable[[bool], Coroutine[Any, Any, None]]
) -> list[asyncio.Task[None]]:
    """`count` viewers, each `join(sampled)` (a socket held until told to stop), GATE connecting at a time a
    millisecond apart, every (count // sampled)th one sampled; once each has its snapshot or was refused, "connected
    <n> <closed>" on stdout. Their tasks."""
    gate = asyncio.Semaphore(GATE)
    every = max(1, count // max(sampled, 1))

    async def one(index: int) -> None:
        async with gate:
            task = asyncio.ensure_future(join(sampled > 0 and index % every == 0))
            await asyncio.sleep(0.001)
        await task

    tasks = [asyncio.create_task(one(index)) for index in range(count)]
    while counts.connected + counts.closed < count:
        await asyncio.sleep(0.1)
    print(f"connected {counts.connected} {counts.closed}", flush=True)
    return tasks


async def commands() -> AsyncIterator[bytes]:
    """The bench's commands on stdin, a line each (stripped), until "quit" or the end of stdin."""
    reader = asyncio.StreamReader(limit=2**20)
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (command := (await reader.readline()).strip()) not in (b"quit", b""):
        yield command


def answer(report: dict[str, Any]) -> None:
    """A report to the bench: one JSON line on stdout."""
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    sys.stdout.flush()


async def leave(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Close the viewers' sockets: `stop` set, their tasks (crowd's) cancelled and awaited."""
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run(main: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], sampled: int, sampled_help: str) -> None:
    """A viewer process: its command line (the room, the server's SECRET_KEY, how many viewers and sampled ones),
    as many sockets as the system allows, then `main` on uvloop."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--secret", required=True, help="the server's SECRET_KEY: each viewer gets a guest token")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sampled", type=int, default=sampled, help=sampled_help)
    raise_open_files()
    uvloop.run(main(parser.parse_args()))  # the load generator must stay cheaper than the server
