"""A flash sale through a Redis failover, for the failover tests and benchmark: buyers purchase without pause while
the sale's primary is killed; what they were told is then compared with what the promoted primary, and the repair,
kept. The same on Sentinels (OnSentinels) and on a Redis Cluster (OnCluster).

Each buyer sends one purchase at a time on a keep-alive connection, every purchase by a new buyer with a new
Idempotency-Key; a 503 ("try again") is sent again with the same key after a short pause, as a client retries,
until it is answered. A 201 (or the 200 of a retry whose first try had held) is an acknowledged hold.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from loadtests.bench.purchase_bench import read_answer, request_head
from loadtests.support.server import HOST, ROOT
from server import keys
from server.store.cluster_embedded import EmbeddedCluster, ValkeyProcess
from server.store.sentinel_embedded import EmbeddedSentinels

RETRY_PAUSE = 0.05  # a client's pause before sending a refused ("try again") purchase again
REST = b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Topology(Protocol):
    """Where a sale's keys live and how their primary is replaced."""

    stores: dict[str, str]  # what points a server process (or the CLI) at it, beside DATABASE_URL

    def primary(self, sale_id: str) -> ValkeyProcess: ...

    def replicas(self, sale_id: str) -> list[ValkeyProcess]: ...

    def fail_over(self, sale_id: str) -> None:
        """SIGKILL the sale's primary, end any partition (`heal`), and wait until a replica has taken its place."""


class OnSentinels:
    """A Sentinel-managed primary: the server finds it through REDIS_SENTINELS."""

    def __init__(self, sentinels: EmbeddedSentinels) -> None:
        self.sentinels = sentinels
        self.stores = {"REDIS_SENTINELS": sentinels.addresses}

    def primary(self, sale_id: str) -> ValkeyProcess:
        return self.sentinels.primary()

    def replicas(self, sale_id: str) -> list[ValkeyProcess]:
        old = self.sentinels.primary()
        return [server for server in self.sentinels.servers if server is not old and server.running]

    def fail_over(self, sale_id: str) -> None:
        old, replicas = self.sentinels.primary(), self.replicas(sale_id)
        old.kill()
        heal(replicas)
        self.sentinels.wait_promoted(old)


class OnCluster:
    """A Redis Cluster: the sale's primary is the one that owns its slot (REDIS_CLUSTER=1)."""

    def __init__(self, cluster: EmbeddedCluster) -> None:
        self.cluster = cluster
        self.stores = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "1"}

    def primary(self, sale_id: str) -> ValkeyProcess:
        return self.cluster.node_for(keys.sale(sale_id))

    def replicas(self, sale_id: str) -> list[ValkeyProcess]:
        """The primary's replicas as the cluster's configuration has them (connected or cut off)."""
        with self.primary(sale_id).client() as client:
            lines = client.execute_command("CLUSTER", "REPLICAS", client.execute_command("CLUSTER", "MYID"))
        ports = {int(line.split()[1].split("@")[0].rpartition(":")[2]) for line in lines}
        return [node for node in self.cluster.nodes if node.port in ports]

    def fail_over(self, sale_id: str) -> None:
        old, replicas = self.cluster.node_for(keys.sale(sale_id)), self.replicas(sale_id)
        old.kill()
        heal(replicas)
        self.cluster.wait_ready(60)  # a replica promoted, the other one following it (slower on a busy machine)
        assert self.cluster.node_for(keys.sale(sale_id)) is not old
        # a cluster client started from now on (the CLI's) learns the cluster from a node that is up
        self.stores = {**self.stores, "REDIS_URL": next(node.url for node in self.cluster.nodes if node.running)}


@dataclass
class Purchases:
    """What the buyers were told."""

    acked: dict[str, float] = field(default_factory=dict)  # order id -> when (monotonic) its buyer heard it was held
    answers: Counter[str] = field(default_factory=Counter)  # status and code of every answer, retries too
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds) of each 201's round trip
    connection_errors: int = 0

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for at in self.acked.values() if start <= at < end)


async def buy(port: int, sale_id: str, sign: Callable[[], str], out: Purchases, stop: asyncio.Event) -> None:
    """One buyer connection: purchase after purchase until `stop`; each 503 sent again with its key until answered."""
    reader, writer = await asyncio.open_connection(HOST, port)
    number = 0
    try:
        while not stop.is_set():
            number += 1
            request = request_head(sale_id, sign()) + b"%d-%x" % (id(out), number) + REST
            while True:
                sent = time.monotonic()
                writer.write(request)
                head, body = await read_answer(reader)
                status = head[9:12].decode()
                reply = orjson.loads(body)
                out.answers[f"{status} {reply['error']['code']}" if "error" in reply else status] += 1
                if status != "503":
                    break
                await asyncio.sleep(RETRY_PAUSE)
            if status in ("200", "201"):
                answered = out.acked.setdefault(reply["order_id"], time.monotonic())
                if status == "201":
                    out.latencies.append((answered, answered - sent))
    except (ConnectionError, asyncio.IncompleteReadError):
        out.connection_errors += 1
    finally:
        writer.close()


def kept(server: ValkeyProcess, sale_id: str, order_ids: list[str]) -> set[str]:
    """Which of these orders this Redis server has."""
    with server.client() as client:
        found = client.hmget(keys.sale_orders(sale_id), order_ids) if order_ids else []
    return {order_id for order_id, raw in zip(order_ids, found, strict=True) if raw is not None}


def log_drained(server: ValkeyProcess, sale_id: str) -> bool:
    """Whether the backup has copied every change of the sale this server logged to the record (PostgreSQL)."""
    with server.client() as client:
        return int(client.xlen(keys.sale_log(sale_id))) == 0


def orders_held(server: ValkeyProcess, sale_id: str) -> set[str]:
    """The ids of every order of the sale this Redis server has."""
    with server.client() as client:
        return {str(order_id) for order_id in client.hkeys(keys.sale_orders(sale_id))}


def cut_off(primary: ValkeyProcess, replicas: Sequence[ValkeyProcess]) -> None:
    """Cut the replicas' links to the primary and keep them cut (their reconnections refused), as in a network
    partition: what the primary acknowledges from now on reaches no replica."""
    for replica in replicas:
        with replica.client() as client:
            client.config_set("masterauth", "cut-off")  # the primary has no password: AUTH fails, the link stays down
    with primary.client() as client:
        client.client_kill_filter(_type="replica")


def heal(replicas: Sequence[ValkeyProcess]) -> None:
    """End the partition: the replicas may connect to a primary again (the one the Sentinels point them to)."""
    for replica in replicas:
        with replica.client() as client:
            client.config_set("masterauth", "")


def longest_pause(purchases: Purchases) -> float:
    """The longest time, in seconds, without an acknowledged hold: what the buyers saw of the failover."""
    times = sorted(purchases.acked.values())
    return max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)


def repair(env: dict[str, str], sale_id: str) -> dict[str, Any]:
    """`python -m server.cli repair-sale` with these stores (REDIS_SENTINELS or REDIS_URL, DATABASE_URL): its audit."""
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "repair-sale", sale_id],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    audit: dict[str, Any] = orjson.loads(done.stdout)
    return audit
