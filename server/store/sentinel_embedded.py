"""A local Sentinel-managed Redis for tests and benchmarks: a primary, its replicas and three Sentinels, in one folder.

The product never starts one (with no REDIS_URL it runs one embedded server): this is for the
failover tests and benchmark. Every process is the embedded binary on a free loopback port, with
AOF on, and the Sentinels' timings shrunk so a killed primary is replaced in a second or two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from server.datadir import FOLDER_MODE
from server.store.cluster_embedded import HOST, ValkeyProcess, free_ports
from server.store.embedded import find_binary, valkey_args


class EmbeddedSentinels:
    """A primary (servers[0] at first), `replicas` replicas of it, and `sentinels` Sentinels watching it as `master`.

    `start()` returns the REDIS_SENTINELS value ("host:port,..."); `primary()` is the server the
    Sentinels name now; kill it (`primary().kill()`) and `wait_promoted()` returns the replica that
    took its place once every Sentinel names it and it answers as a primary.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        master: str = "livecart",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        binary: str | None = None,
    ) -> None:
        self.master = master
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.binary = find_binary(binary)
        ports = free_ports(1 + replicas + sentinels)
        self.servers = [
            self._server(data_dir / f"redis-{index}", port, ports[0])
            for index, port in enumerate(ports[: 1 + replicas])
        ]
        self.sentinels = [
            ValkeyProcess([self.binary, str(folder / "sentinel.conf"), "--sentinel"], folder, port)
            for folder, port in (
                (data_dir / f"sentinel-{index}", port) for index, port in enumerate(ports[1 + replicas :])
            )
        ]

    def _server(self, data_dir: Path, port: int, primary_port: int) -> ValkeyProcess:
        listen = ["--bind", HOST, "--port", str(port), "--repl-diskless-sync-delay", "0"]
        args = valkey_args(self.binary, data_dir, listen, hz=100)
        if port != primary_port:
            args += ["--replicaof", HOST, str(primary_port)]
        return ValkeyProcess(args, data_dir, port)

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS for a server on this set."""
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def start(self, timeout: float = 30.0) -> str:
        """Start the servers; once the replicas are in sync, the Sentinels; wait until every Sentinel sees the replicas
        and the other Sentinels. Return REDIS_SENTINELS."""
        deadline = time.monotonic() + timeout
        quorum = len(self.sentinels) // 2 + 1
        try:
            for server in self.servers:
                server.start()
            self._until(deadline, self._in_sync, "the replicas did not sync")  # a Sentinel finds them in its first INFO
            for sentinel in self.sentinels:
                sentinel.data_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
                settings = [
                    f"bind {HOST}",
                    f"port {sentinel.port}",
                    "daemonize no",
                    f"dir {sentinel.data_dir}",
                    f"logfile {sentinel.data_dir / 'sentinel.log'}",
                    f"sentinel monitor {self.master} {HOST} {self.servers[0].port} {quorum}",
                    f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}",
                ]
                (sentinel.data_dir / "sentinel.conf").write_text("\n".join(settings) + "\n")
                sentinel.start()
            self._until(deadline, self._watched, "the Sentinels did not see every replica and each other")
        except BaseException:
            self.stop()
            raise
        return self.addresses

    def _in_sync(self) -> bool:
        """Every replica's link is up and synced, and the primary lists it online (a Sentinel reads that list)."""
        try:
            with self.servers[0].client() as client:
                listed = client.info("replication")
            online = [key for key, value in listed.items() if key.startswith("slave") and value["state"] == "online"]
            if len(online) < len(self.servers) - 1:
                return False
            for server in self.servers[1:]:
                with server.client() as client:
                    info = client.info("replication")
                    if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
                        return False
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False
        return True

    def _watched(self) -> bool:
        try:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    state = client.sentinel_master(self.master)
                    if (
                        int(state["num-slaves"]) < len(self.servers) - 1
                        or int(state["num-other-sentinels"]) < len(self.sentinels) - 1
                    ):
                        return False
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        return True

    def named(self) -> set[int]:
        """The ports of the primary each answering Sentinel names now."""
        ports = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                try:
                    _, port = client.sentinel_get_master_addr_by_name(self.master)
                except (redis.ConnectionError, redis.TimeoutError):
                    continue
                ports.add(int(port))
        return ports

    def primary(self) -> ValkeyProcess:
        """The server the Sentinels name as the primary now."""
        [port] = self.named()
        return next(server for server in self.servers if server.port == port)

    def wait_promoted(self, old: ValkeyProcess, timeout: float = 30.0) -> ValkeyProcess:
        """Wait until every Sentinel names another server than `old` and it answers as a primary; return it."""

        def promoted() -> bool:
            named = self.named()
            if len(named) != 1 or old.port in named:
                return False
            with self.primary().client() as client:
                try:
                    return str(client.execute_command("ROLE")[0]) == "master"
                except (redis.ConnectionError, redis.TimeoutError):
                    return False

        self._until(time.monotonic() + timeout, promoted, "no replica was promoted")
        return self.primary()

    @staticmethod
    def _until(deadline: float, ready: Callable[[], bool], message: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(message)
            time.sleep(0.05)

    def stop(self) -> None:
        for process in (*self.sentinels, *self.servers):
            process.stop()

    def __enter__(self) -> EmbeddedSentinels:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
