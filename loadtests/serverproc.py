"""A fresh livecart server for a benchmark: its own port, DATA_DIR and embedded Redis; stopped afterwards."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from loadtests import procstat

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: str
    secret: str

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def redis_url(self) -> str:
        return f"unix://{self.data_dir}/redis/redis.sock"

    def tree(self) -> tuple[list[int], list[int]]:
        """(web processes, Redis processes) under the launcher."""
        pids = procstat.children(self.process.pid)
        redis = [pid for pid in pids if "valkey" in procstat.command(pid) or "redis" in procstat.command(pid)]
        return [pid for pid in pids if pid not in redis], redis


@contextmanager
def running(
    command: list[str] | None = None,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
    ready: str = "/readyz",
) -> Iterator[Server]:
    """Start `python -m server` (or `command`, with {port} filled in), wait until `ready` answers, stop it after."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="livecart-bench-")
    secret = secrets.token_urlsafe(16)
    full_env = {**os.environ, "DATA_DIR": data_dir, "SECRET_KEY": secret, "LOG_LEVEL": "warning", "SEED_DEMO": "1"}
    full_env.pop("REDIS_URL", None)
    full_env.update(env or {})
    argv = (
        [sys.executable, "-m", "server", "--port", "{port}", "--workers", str(workers)] if command is None else command
    )
    argv = [part.replace("{port}", str(port)) for part in argv]
    output = log if log is not None else sys.stderr
    process = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, port, data_dir, secret)
    try:
        _wait(server, ready)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(server: Server, ready: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"the server exited with {server.process.returncode}")
        try:
            if httpx.get(server.base_url + ready, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready within 30 s")
