"""The one server launcher of the tests and the benchmarks: `python -m server` (or a stand-in) on 127.0.0.1.

`start_server` starts a process on a free port with its DATA_DIR and log under a directory and waits
until it is ready; `running` wraps it for a benchmark: a temporary directory, the server's own
embedded Redis and PostgreSQL and the demo shop, everything stopped and removed afterwards. Each
gets a random METRICS_TOKEN: send `ServerProcess.metrics_headers` to read its /metrics.
"""

from __future__ import annotations

import os
import secrets
import shutil
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

import httpx

from loadtests.support import procstat

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_SECONDS = 30
REDIS_PROGRAMS = ("valkey-server", "redis-server")


# Every client of a test or benchmark comes from 127.0.0.1: the per-address limits a real server keeps (guests,
# codes, payments, sockets, chat, messages to shops) are lifted on the servers they start; tests/access runs with
# the real ones.
LOOPBACK_LIMITS = {
    "LIMIT_GUESTS": "100000/1",
    "LIMIT_CODES_ADDRESS": "100000/1",
    "LIMIT_SIGN_INS_ADDRESS": "100000/1",
    "LIMIT_PAYMENTS_ADDRESS": "100000/1",
    "LIMIT_PAYMENTS_USER": "100000/1",
    "LIMIT_SHARES": "100000/1",
    "LIMIT_SHARE_VISITS": "100000/1",
    "LIMIT_SERVICE_ADDRESS": "100000/1",
    "ROOM_SOCKETS_PER_ADDRESS": "1000000",
    "VIDEO_SESSIONS_PER_ADDRESS": "1000000",
    "WEBRTC_VIEWERS_PER_ROOM": "1000000",
    "CHAT_ADDRESS_RATE_COUNT": "1000000",
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tree:
    """A server's processes by program: its web processes (the launcher, uvicorn workers), Redis, PostgreSQL.

    `.postgres` is the embedded PostgreSQL: its server process and the processes it forks. It also
    unpacks and indexes as the pair (web, redis), as the benchmarks written before PostgreSQL read it.
    """

    web: list[int]
    redis: list[int]
    postgres: list[int]

    def __iter__(self) -> Iterator[list[int]]:
        return iter((self.web, self.redis))

    def __getitem__(self, index: int) -> list[int]:
        return (self.web, self.redis)[index]


@dataclass
class ServerProcess:
    """A server process on 127.0.0.1: its port, its process, the file its output goes to, its DATA_DIR, secret and
    METRICS_TOKEN."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path | None = None
    secret: str = ""
    metrics_token: str = ""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def metrics_headers(self) -> dict[str, str]:
        """The headers that may read /metrics."""
        return {"Authorization": f"Bearer {self.metrics_token}"}

    @property
    def redis_url(self) -> str:
        """The embedded Redis that `python -m server` starts in DATA_DIR when it has no REDIS_URL."""
        assert self.data_dir is not None, "started without a DATA_DIR"
        return f"unix://{self.data_dir}/redis/redis.sock"

    @property
    def database_url(self) -> str:
        """The embedded PostgreSQL that `python -m server` starts in DATA_DIR when it has no DATABASE_URL."""
        assert self.data_dir is not None, "started without a DATA_DIR"
        return f"postgresql://livecart@/livecart?host={self.data_dir.resolve()}/postgres&port=5432"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> Tree:
        """This process and every process below it, by program (see Tree)."""
        names = {pid: procstat.name(pid) for pid in procstat.children(self.process.pid)}
        redis = [pid for pid, name in names.items() if name in REDIS_PROGRAMS]
        postgres = [pid for pid, name in names.items() if name == "postgres"]
        return Tree([pid for pid in names if pid not in redis and pid not in postgres], redis, postgres)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send `sig`, wait up to `timeout` seconds, then kill; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    tmp: Path,
    env: dict[str, str],
    port: int | None = None,
    workers: int = 1,
    *,
    command: list[str] | None = None,
    ready: str = "/readyz",
    cwd: Path = ROOT,
    cpus: str | None = None,
    ready_seconds: float = READY_SECONDS,
) -> ServerProcess:
    """Start `python -m server` (or `command`, "{port}" filled in) and wait until `ready` answers 200.

    Its DATA_DIR is tmp/data and its output goes to tmp/server-<port>.log. `env` is added to this
    process's environment and wins over the defaults: a random SECRET_KEY and METRICS_TOKEN, PORT,
    WEB_CONCURRENCY, LOG_LEVEL info, HOLD_SECONDS 300, LOOPBACK_LIMITS. It runs in `cwd` (another checkout runs
    other code: a benchmark's baseline). With `cpus` ("0", "0-1": taskset's list) it and every process it starts (its
    embedded Redis and PostgreSQL) run on those cores only. Raises RuntimeError, with the log, when it exits or is not
    ready within `ready_seconds` (tests scale it by their timeout factor).
    """
    port = port or free_port()
    log_path = tmp / f"server-{port}.log"
    full_env = {
        **os.environ,
        "SECRET_KEY": secrets.token_urlsafe(16),
        "METRICS_TOKEN": secrets.token_urlsafe(16),
        "DATA_DIR": str(tmp / "data"),
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "info",
        "HOLD_SECONDS": "300",
        **LOOPBACK_LIMITS,
        **env,
    }
    argv = [part.replace("{port}", str(port)) for part in command or [sys.executable, "-m", "server"]]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(
        port, process, log_path, Path(full_env["DATA_DIR"]), full_env["SECRET_KEY"], full_env["METRICS_TOKEN"]
    )
    deadline = time.monotonic() + ready_seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.base_url + ready, timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise RuntimeError(f"server did not become ready:\n{server.log()}")
        time.sleep(0.1)


@contextmanager
def running(
    command: list[str] | None = None,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    ready: str = "/readyz",
    log: Path | None = None,
    cwd: Path = ROOT,
    cpus: str | None = None,
) -> Iterator[ServerProcess]:
    """A fresh server for a benchmark, stopped and its directory removed when the block ends.

    A temporary DATA_DIR, its own embedded Redis and PostgreSQL (never the caller's URLs), the demo shop,
    LOG_LEVEL warning; `env` wins; on the `cpus` cores only (start_server). Its log is copied to `log` afterwards,
    or else to stderr.
    """
    tmp = Path(tempfile.mkdtemp(prefix="livecart-bench-"))
    try:
        defaults = {"REDIS_URL": "", "DATABASE_URL": "", "SEED_DEMO": "1", "LOG_LEVEL": "warning"}
        env = {**defaults, **(env or {})}
        server = start_server(tmp, env, workers=workers, command=command, ready=ready, cwd=cwd, cpus=cpus)
        try:
            yield server
        finally:
            server.stop()
            if log is None:
                sys.stderr.write(server.log())
            else:
                shutil.copyfile(server.log_path, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
