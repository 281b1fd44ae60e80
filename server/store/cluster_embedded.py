"""A local Redis Cluster for tests and benchmarks: six Valkey nodes (three primaries, three replicas) in one folder.

The product never starts a cluster (with no REDIS_URL it runs one embedded server): this is for the
cluster tests, the failover tests and the cluster benchmark. Every node is the embedded binary on a
free loopback port, with AOF on and a short cluster-node-timeout so a failover takes about a second.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from server.children import stop_with_parent
from server.datadir import FOLDER_MODE, UMASK
from server.store.embedded import find_binary, valkey_args

log = logging.getLogger("livecart.redis")

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ValkeyProcess:
    """One Valkey process of a local topology (a cluster node, a server or a Sentinel): its command line, port and
    folder; start it (again), kill it as in a crash, or stop it."""

    def __init__(self, args: list[str], data_dir: Path, port: int) -> None:
        self.args = args
        self.data_dir = data_dir
        self.host = HOST
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}"

    def client(self) -> redis.Redis:
        """A plain (non-cluster) client of this process alone."""
        return redis.Redis(host=self.host, port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        """Start the process (again: a restarted node rejoins from its config and AOF)."""
        self.data_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=stop_with_parent, umask=UMASK
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: it dies at once, as in a crash (what it had not written to its AOF, or its replicas had not
        received, is lost)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (it flushes its AOF), then make sure it is gone."""
        if not self.running:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def answers(self) -> bool:
        with self.client() as client:
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                return False

    def role(self) -> str:
        """ "master" or "slave", as the process itself says (it changes on a failover)."""
        with self.client() as client:
            return str(client.execute_command("ROLE")[0])


def cluster_node(binary: str, data_dir: Path, port: int, bus_port: int, node_timeout_ms: int, hz: int) -> ValkeyProcess:
    """One node of a cluster: its port, its cluster bus port, its folder (`hz`: its timer's rate; a WAITAOF is
    answered on a tick, DURABLE_ACK wants 100)."""
    listen = ["--bind", HOST, "--port", str(port), "--cluster-enabled", "yes", "--cluster-port", str(bus_port)]
    listen += ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(node_timeout_ms)]
    args = valkey_args(binary, data_dir, listen, hz=hz)
    return ValkeyProcess(args, data_dir, port)


class EmbeddedCluster:
    """Six (by default) cluster nodes, one replica per primary, started and joined into one cluster.

    `start()` returns a URL naming one node (a cluster client learns the rest from it); `nodes`
    gives every process, to read from, kill or restart one; `wait_ready()` waits until every
    running node says the cluster is ok and every running replica is in sync with its primary.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        hz: int = 10,
        binary: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.replicas = replicas
        self.binary = find_binary(binary)
        count = primaries * (1 + replicas)
        ports = free_ports(2 * count)
        self.nodes = [
            cluster_node(
                self.binary, data_dir / f"node-{index}", ports[index], ports[count + index], node_timeout_ms, hz
            )
            for index in range(count)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> str:
        """Start every node, create the cluster, wait until it is ready; return its URL."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        try:
            for node in self.nodes:
                self._until(deadline, node.answers, f"node {node.address} did not answer")
            cli = str(Path(self.binary).with_name("valkey-cli"))
            addresses = [node.address for node in self.nodes]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        log.info("embedded cluster of %d nodes at %s", len(self.nodes), self.url)
        return self.url

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every running node says cluster_state:ok and every running replica's link is up and synced."""
        self._until(time.monotonic() + timeout, self._ready, "the cluster did not become ready")

    def _ready(self) -> bool:
        running = [node for node in self.nodes if node.running]
        try:
            for node in running:
                with node.client() as client:
                    info = client.cluster("INFO")
                    if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) < len(self.nodes):
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and (
                        replication.get("master_link_status") != "up" or replication.get("master_sync_in_progress")
                    ):
                        return False
        except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
            return False
        return True

    def primaries(self) -> list[ValkeyProcess]:
        """The running nodes that are primaries now."""
        return [node for node in self.nodes if node.running and node.role() == "master"]

    def node_for(self, key: str) -> ValkeyProcess:
        """The running primary that serves this key's slot now."""
        asked = next(node for node in self.nodes if node.running)
        with asked.client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            ranges = client.execute_command("CLUSTER", "SLOTS")
        port = next(int(primary[1]) for start, end, primary, *_ in ranges if start <= slot <= end)
        return next(node for node in self.nodes if node.port == port)

    @staticmethod
    def _until(deadline: float, ready: Callable[[], bool], message: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(message)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node (SIGTERM, AOF flushed)."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
