"""Redis failover mid-sale, on Sentinels and on a Redis Cluster: a replica is promoted, the server follows it, purchases
and rooms carry on, and the sale's invariant holds; with WAIT 1 no acknowledged hold is lost, without it the repair
brings back what the record has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from loadtests.support.failover import (
    OnCluster,
    OnSentinels,
    Purchases,
    Topology,
    buy,
    cut_off,
    heal,
    kept,
    log_drained,
    orders_held,
    repair,
)
from loadtests.support.server import ServerProcess
from server.protocol import Role
from server.store.cluster_embedded import EmbeddedCluster
from server.store.sentinel_embedded import EmbeddedSentinels
from tests.client import RoomClient
from tests.conftest import SECRET_KEY, Shop, mint, start_server
from tests.sale_helpers import auth, create_sale, invariant, viewer_token
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

CONNECTIONS = 8


class Sale:
    """A server on the topology, the demo shop it seeds, a sale of many units, and buyers purchasing from it."""

    def __init__(self, topology: Topology, server: ServerProcess, database_url: str, shop: Shop, sale_id: str) -> None:
        self.topology = topology
        self.server = server
        self.database_url = database_url
        self.shop = shop
        self.id = sale_id
        self.purchases = Purchases()
        self._stop = asyncio.Event()
        self._buyers: list[asyncio.Task[None]] = []

    def start_buying(self) -> None:
        self._stop = asyncio.Event()
        self._buyers = [
            asyncio.create_task(buy(self.server.port, self.id, viewer_token, self.purchases, self._stop))
            for _ in range(CONNECTIONS)
        ]

    async def stop_buying(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._buyers)

    async def acked_more(self, count: int, what: str) -> None:
        """Wait until `count` more holds are acknowledged."""
        target = len(self.purchases.acked) + count
        await until(lambda: len(self.purchases.acked) >= target, 20, what)

    async def drained(self) -> None:
        """Wait until the backup has copied every change the sale's primary logged to the record."""
        primary = self.topology.primary(self.id)
        await until(lambda: log_drained(primary, self.id), 20, "the backup to copy the sale's log")

    async def recorded(self) -> None:
        """Wait until the record (PostgreSQL's orders) has every order the sale's primary holds. For when the replicas
        are cut off: with REDIS_WAIT_REPLICAS the backup's trim of the entries it copied waits for a replica, so the
        log may keep entries that are already in the record."""
        primary = self.topology.primary(self.id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(20)
        connection = await asyncpg.connect(self.database_url)
        try:
            while True:
                rows = await connection.fetch("SELECT order_id FROM orders WHERE sale_id = $1", self.id)
                if orders_held(primary, self.id) <= {row["order_id"] for row in rows}:
                    return
                assert loop.time() < deadline, "timed out waiting for the backup to copy the sale's orders"
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    def cut_off(self) -> None:
        cut_off(self.topology.primary(self.id), self.topology.replicas(self.id))

    async def fail_over(self) -> None:
        await asyncio.to_thread(self.topology.fail_over, self.id)

    def lost(self) -> set[str]:
        """The acknowledged holds the sale's primary does not have."""
        acked = list(self.purchases.acked)
        return set(acked) - kept(self.topology.primary(self.id), self.id, acked)

    def repair(self) -> dict[str, Any]:
        """`python -m server.cli repair-sale`, finding the primary as the server does (Sentinels, cluster)."""
        stores = {**self.topology.stores, "DATABASE_URL": self.database_url}
        return repair({**stores, "SECRET_KEY": SECRET_KEY, "DATA_DIR": str(self.server.data_dir)}, self.id)


def demo_shop(server: ServerProcess) -> Shop:
    """The demo shop the server seeded (merchant and room "demo"), with the tests' staff tokens: nothing is written
    to Redis from the test."""
    staff = {role: mint("demo", role) for role in (Role.ADMIN, Role.HOST, Role.MODERATOR)}
    return Shop(
        server.base_url,
        server.ws_url,
        "demo",
        "demo",
        staff[Role.ADMIN],
        staff[Role.HOST],
        staff[Role.MODERATOR],
        ["mug"],
    )


@pytest.fixture
def topology(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Topology]:
    """Sentinels (a primary, its replicas: 1 unless the test asks for more, three Sentinels, short timings) or a
    six-node Redis Cluster (a failover in about a second)."""
    kind, replicas = getattr(request, "param", ("sentinels", 1))
    if kind == "cluster":
        with EmbeddedCluster(tmp_path / "cluster") as cluster:
            yield OnCluster(cluster)
        return
    with EmbeddedSentinels(tmp_path / "redis", replicas=replicas, down_after_ms=500, failover_timeout_ms=2000) as made:
        yield OnSentinels(made)


@pytest.fixture
async def sale(
    topology: Topology, tmp_path: Path, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Sale]:
    """A server process on the topology (with the test's settings), and a sale of 100,000 units, one per buyer."""
    env = {**topology.stores, "DATABASE_URL": database_url, **getattr(request, "param", {})}
    server = await asyncio.to_thread(start_server, tmp_path, env)
    try:
        shop = demo_shop(server)
        created = await asyncio.to_thread(create_sale, shop, quantity=100_000, per_user_limit=1)
        yield Sale(topology, server, database_url, shop, created["id"])
    finally:
        server.stop()


@pytest.mark.parametrize("topology", [("sentinels", 1), ("cluster", 1)], indirect=True, ids=["sentinels", "cluster"])
async def test_a_failover_mid_sale_is_followed_and_the_repair_restores_the_recorded_holds(sale: Sale) -> None:
    """Buyers purchase without pause; the sale's primary is cut off from its replica (a partition), then SIGKILLed.
    With asynchronous replication the holds acknowledged meanwhile are lost by the promoted replica. The server
    follows it (the Sentinels name it; on a cluster, MOVED and the slot map): purchases carry on, a watching viewer
    gets stock and chat, a returning viewer recovers with since/epoch. After `repair-sale` (reaching Redis as the
    server does) every acknowledged hold the record had is back; only those acknowledged after the backup's last
    copy stay lost; the invariant holds and nothing is oversold."""
    shop = sale.shop
    host = await RoomClient.connect(shop.room_url(shop.host))
    viewer = await RoomClient.connect(shop.room_url(shop.buyer()))
    returning = await RoomClient.connect(shop.room_url(shop.buyer()))
    assert returning.first is not None
    since, epoch = returning.first["offset"], returning.first["epoch"]
    await returning.close()
    try:
        sale.start_buying()
        await sale.acked_more(100, "holds before the partition")
        sale.cut_off()
        await sale.acked_more(30, "holds acknowledged while the replica is cut off")
        await sale.stop_buying()
        await sale.drained()  # the record now has every hold acknowledged so far
        recorded = set(sale.purchases.acked)
        sale.start_buying()
        await sale.acked_more(20, "holds after the backup's last copy")
        await sale.fail_over()
        acked_by_then, seen_by_then = len(sale.purchases.acked), len(viewer.events)

        await sale.acked_more(100, "holds on the promoted primary")  # purchases carry on
        await viewer.wait(lambda: any(e["type"] == "stock" for e in viewer.events[seen_by_then:]), 10)
        assert (await host.request("chat.send", text="still here"))["type"] == "ack"
        chat = await viewer.wait_event("chat.message", timeout=10)
        assert chat["message"]["text"] == "still here"
        back = await RoomClient.connect(shop.room_url(shop.buyer(), since=since, epoch=epoch))
        try:
            assert back.first is not None and back.first["type"] == "recovered"
            await back.wait(lambda: any(e.get("offset") == chat["offset"] for e in back.events))
        finally:
            await back.close()
        await sale.stop_buying()
    finally:
        await viewer.close()
        await host.close()

    await sale.drained()
    lost = sale.lost()
    assert len(lost) >= 30 and lost.isdisjoint(list(sale.purchases.acked)[acked_by_then:])
    assert invariant(shop, sale.id)["ok"]  # the promoted replica is consistent on its own: it lacks those holds

    assert sale.repair()["ok"]
    still_lost = sale.lost()
    assert still_lost <= lost - recorded and len(still_lost) < len(lost)
    after = invariant(shop, sale.id)
    assert after["available"] >= 0 and after["held"] + after["paid"] <= after["quantity"]
    assert after["held"] == len(sale.purchases.acked) - len(still_lost)


@pytest.mark.parametrize(
    ("topology", "sale"),
    [(("sentinels", 2), {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "300"})],
    indirect=True,
    ids=["sentinels-2-replicas"],
)
async def test_with_wait_1_a_failover_loses_no_acknowledged_hold(sale: Sale) -> None:
    """REDIS_WAIT_REPLICAS=1, two replicas: while the replicas are cut off no purchase is acknowledged (503, retried
    with its key); the primary is SIGKILLed, a replica promoted, and the other follows it so WAIT is answered again.
    Every acknowledged hold is on the promoted primary. Purchases the old primary wrote but never acknowledged reached
    the record, and the buyers' retries made new orders with the same keys: the repair keeps one order per key
    (the one the buyer was answered with) and the invariant holds."""
    sale.start_buying()
    await sale.acked_more(100, "holds before the partition")
    sale.cut_off()
    await until(lambda: sale.purchases.answers["503 unavailable"] >= CONNECTIONS, 10, "purchases refused")
    acked_before = set(sale.purchases.acked)
    await sale.recorded()  # the unacknowledged first tries are in the record
    await sale.fail_over()
    await sale.acked_more(100, "holds on the promoted primary")
    await sale.stop_buying()

    assert not sale.lost() and acked_before <= set(sale.purchases.acked)
    assert invariant(sale.shop, sale.id)["ok"]
    await sale.drained()
    assert sale.repair()["ok"]
    after = invariant(sale.shop, sale.id)
    assert after["held"] == len(sale.purchases.acked)  # each unacknowledged first try cancelled, each answer kept


@pytest.mark.parametrize(
    ("topology", "sale"),
    [(("sentinels", 1), {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "200", "DURABLE_ACK": "1"})],
    indirect=True,
    ids=["sentinels"],
)
async def test_a_purchase_no_replica_confirmed_is_refused_and_its_retry_answers_the_same_order(sale: Sale) -> None:
    """REDIS_WAIT_REPLICAS=1 beside DURABLE_ACK=1 (WAITAOF, then WAIT): with the replica cut off a purchase answers
    503 "try again" (its hold was made but no replica confirmed it); once the replica is back, the retry with the
    same Idempotency-Key answers 200 with that same order, and another purchase is acknowledged at once."""
    url = f"/api/sales/{sale.id}/purchases"

    def purchase(key: str) -> dict[str, str]:  # a buyer of their own per key (one unit each)
        return {**auth(tokens.setdefault(key, viewer_token())), "Idempotency-Key": key}

    tokens: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=sale.server.base_url, timeout=10) as api:
        assert (await api.post(url, json={}, headers=purchase("k-0"))).status_code == 201
        replicas = sale.topology.replicas(sale.id)
        sale.cut_off()
        refused = await api.post(url, json={}, headers=purchase("k-1"))
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
        heal(replicas)
        answers: list[httpx.Response] = []
        while not answers or answers[-1].status_code == 503:  # the replica reconnects within a second
            assert len(answers) < 50, answers[-1].text  # each retry waits up to REDIS_WAIT_TIMEOUT_MS
            answers.append(await api.post(url, json={}, headers=purchase("k-1")))
        assert answers[-1].status_code == 200, answers[-1].text  # the key's earlier order: the refused try's hold
        assert (await api.post(url, json={}, headers=purchase("k-2"))).status_code == 201


async def test_a_room_that_lost_chat_in_a_failover_starts_over_with_a_new_epoch(sale: Sale) -> None:
    """Chat acknowledged while the replica is cut off is lost by the promoted replica, so the room's next offsets name
    other events: the hub starts the room over (a new epoch), tells its watching viewers to come back (1012), and a
    viewer returning with its old offset and epoch gets a fresh snapshot, then the chat said after the failover (none of
    the lost)."""
    shop = sale.shop
    async with await RoomClient.connect(shop.room_url(shop.buyer())) as viewer:
        assert viewer.first is not None
        epoch = viewer.first["epoch"]
        sale.cut_off()
        async with await RoomClient.connect(shop.room_url(shop.host)) as host:
            for text in ("lost 1", "lost 2", "lost 3"):
                assert (await host.request("chat.send", text=text))["type"] == "ack"
        await viewer.wait(lambda: sum(e["type"] == "chat.message" for e in viewer.events) == 3)
        seen = max(e["offset"] for e in viewer.events if "offset" in e)
        await sale.fail_over()
        await viewer.wait(lambda: viewer.closed, timeout=20)
        assert viewer.connection.close_code == 1012
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        assert (await host.request("chat.send", text="after", timeout=10))["type"] == "ack"
    async with await RoomClient.connect(shop.room_url(shop.buyer(), since=seen, epoch=epoch)) as back:
        assert back.first is not None and back.first["type"] == "snapshot"
        assert back.first["epoch"] != epoch
        await back.wait(
            lambda: (
                [message["text"] for message in back.first["chat"]] == ["after"]  # type: ignore[index]
                or [e["message"]["text"] for e in back.events if e["type"] == "chat.message"] == ["after"]
            )
        )
