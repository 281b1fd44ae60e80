"""Two server processes on a Redis Cluster of six Valkey nodes (three primaries, three replicas): a room's events
cross processes through sharded pub/sub, a flash sale never oversells and reaches PostgreSQL, sales spread over the
primaries, script calls follow a slot that moves, and no call ever crosses slots."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from server import keys
from server.store import client
from server.store.batcher import ScriptBatcher
from server.store.cluster_embedded import EmbeddedCluster
from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop, make_shop, start_server
from tests.sale_helpers import auth, create_sale, invariant, pay, query, viewer_token, wait_recorded

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def on_cluster(
    redis_cluster: EmbeddedCluster, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    """Two server processes with REDIS_CLUSTER=1 and REDIS_URL naming one node of the cluster."""
    env = {"REDIS_URL": redis_cluster.url, "REDIS_CLUSTER": "1", "DATABASE_URL": database_url}
    first = start_server(tmp_path_factory.mktemp("cluster-a"), env)
    try:
        second = start_server(tmp_path_factory.mktemp("cluster-b"), env)
    except BaseException:
        first.stop()
        raise
    yield [first, second]
    second.stop()
    first.stop()


@pytest.fixture
def cluster_shop(on_cluster: list[ServerProcess], redis_cluster: EmbeddedCluster) -> Shop:
    return make_shop(on_cluster[0].base_url, on_cluster[0].ws_url, redis_cluster.url)


async def test_room_events_reach_viewers_on_both_processes(
    cluster_shop: Shop, on_cluster: list[ServerProcess], redis_cluster: EmbeddedCluster
) -> None:
    """A pin on process A and chat on process B reach viewers on both with the same offsets, and the viewer count
    (a latest-value event) too; the room's channel is a shard channel on the primary that owns the room's slot, with
    both processes subscribed there, and no classic subscriber."""
    shop = cluster_shop
    on_b = f"{on_cluster[1].ws_url}/ws/rooms/{shop.room_id}"
    async with (
        await RoomClient.connect(shop.room_url(shop.host)) as host_a,
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer_a,
        await RoomClient.connect(f"{on_b}?token={shop.guest()}") as viewer_b,
        await RoomClient.connect(f"{on_b}?token={shop.guest()}") as chatter_b,
    ):
        assert (await host_a.request("product.pin", product_id=shop.products[0]))["type"] == "ack"
        assert (await chatter_b.request("chat.send", text="from process B"))["type"] == "ack"
        for viewer in (viewer_a, viewer_b):
            pinned = await viewer.wait_event("product.pinned")
            chat = await viewer.wait_event("chat.message")
            assert (pinned["offset"], chat["offset"]) == (1, 2)
            assert chat["message"]["text"] == "from process B"
            await viewer.wait_event("viewers", count=3, timeout=6)
        channel = keys.channel(shop.room_id)
        with redis_cluster.node_for(channel).client() as owner:
            assert owner.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1] == 2
            assert owner.execute_command("PUBSUB", "NUMSUB", channel)[1] == 0


async def test_flash_sale_never_oversells_and_reaches_postgresql(
    cluster_shop: Shop, on_cluster: list[ServerProcess], database_url: str
) -> None:
    """200 buyers at once through both processes for 50 units: exactly 50 holds, the rest sold out, the invariant
    holds, viewers see the stock reach 0; every hold and every payment reaches the record (PostgreSQL)."""
    shop = cluster_shop
    sale = create_sale(shop, quantity=50, per_user_limit=1)
    tokens = [viewer_token(f"g_cluster{index}_{secrets.token_hex(3)}") for index in range(200)]
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with (
        await RoomClient.connect(shop.room_url(shop.buyer())) as viewer,
        httpx.AsyncClient(base_url=on_cluster[0].base_url, timeout=30, limits=limits) as first,
        httpx.AsyncClient(base_url=on_cluster[1].base_url, timeout=30, limits=limits) as second,
    ):
        replies = await asyncio.gather(
            *(
                (first, second)[index % 2].post(
                    f"/api/sales/{sale['id']}/purchases",
                    json={"quantity": 1},
                    headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
                )
                for index, token in enumerate(tokens)
            )
        )
        await viewer.wait_event("stock", sale_id=sale["id"], available=0)
    codes = Counter(reply.status_code for reply in replies)
    assert codes == {201: 50, 409: 150}, codes
    assert {reply.json()["error"]["code"] for reply in replies if reply.status_code == 409} == {"sold_out"}
    counts = invariant(shop, sale["id"])
    assert (counts["available"], counts["held"], counts["paid"]) == (0, 50, 0)
    holds = {reply.json()["order_id"]: reply.request.headers["authorization"] for reply in replies if reply.is_success}
    statuses = dict.fromkeys(holds, "held")
    for order_id in list(holds)[:5]:
        token = holds[order_id].removeprefix("Bearer ")
        assert pay(on_cluster[1].base_url, token, order_id).status_code == 200
        statuses[order_id] = "paid"
    wait_recorded(database_url, statuses)
    rows = query(database_url, "SELECT order_id FROM orders WHERE sale_id = $1", sale["id"])
    assert {row["order_id"] for row in rows} == set(holds)


def test_sales_spread_over_the_three_primaries(on_cluster: list[ServerProcess], redis_cluster: EmbeddedCluster) -> None:
    """Sales of different shops hash to different slots: sales are made until each primary owns one, and each sale's
    keys live on the primary that owns its slot (the script that made it and the purchase ran there)."""
    primaries = {node.port for node in redis_cluster.primaries()}
    assert len(primaries) == 3
    owners: dict[int, str] = {}
    for _ in range(30):
        shop = make_shop(on_cluster[0].base_url, on_cluster[0].ws_url, redis_cluster.url)
        sale = create_sale(shop, quantity=5)
        bought = httpx.post(
            f"{on_cluster[1].base_url}/api/sales/{sale['id']}/purchases",
            json={"quantity": 1},
            headers={**auth(viewer_token()), "Idempotency-Key": secrets.token_hex(8)},
        )
        assert bought.status_code == 201, bought.text
        owners.setdefault(redis_cluster.node_for(keys.sale(sale["id"])).port, sale["id"])
        if set(owners) == primaries:
            break
    assert set(owners) == primaries, owners
    for port, sale_id in owners.items():
        node = next(node for node in redis_cluster.nodes if node.port == port)
        with node.client() as client:
            assert client.hget(keys.sale(sale_id), "held") == "1"
            assert client.hlen(keys.sale_orders(sale_id)) == 1


async def test_script_calls_follow_a_slot_that_moves_to_another_primary(redis_cluster: EmbeddedCluster) -> None:
    """The script batcher on a cluster: while a slot migrates, a call answered ASK runs on the importing node (after
    ASKING); once the slot has moved, a call answered MOVED reads the slot map again and runs on the new owner. No
    call is lost or run twice."""
    redis = client.cluster(redis_cluster.url, pool_size=4)
    try:
        await client.initialize(redis)
        batcher = ScriptBatcher(redis)
        count = redis.register_script("return redis.call('INCR', KEYS[1])")
        key = f"{{moving-{secrets.token_hex(4)}}}:count"
        assert await batcher.call(count, [key], []) == 1
        source = redis_cluster.node_for(key)
        target = next(node for node in redis_cluster.primaries() if node.port != source.port)
        with source.client() as old, target.client() as new:
            slot = old.cluster("KEYSLOT", key)
            old_id, new_id = old.execute_command("CLUSTER", "MYID"), new.execute_command("CLUSTER", "MYID")
            new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", old_id)
            old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", new_id)
            old.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key)
            assert sorted(await asyncio.gather(*(batcher.call(count, [key], []) for _ in range(3)))) == [2, 3, 4]
            for node in redis_cluster.primaries():
                with node.client() as each:
                    each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", new_id)
        assert sorted(await asyncio.gather(*(batcher.call(count, [key], []) for _ in range(3)))) == [5, 6, 7]
        assert redis_cluster.node_for(key).port == target.port
    finally:
        await redis.aclose()


def test_no_call_crossed_slots(on_cluster: list[ServerProcess], redis_cluster: EmbeddedCluster) -> None:
    """After this module's rooms and sales (it runs last), no node ever answered CROSSSLOT and no server process
    logged a call whose keys span slots."""
    for node in redis_cluster.nodes:
        with node.client() as client:
            errors = client.info("errorstats")
        assert not any("CROSSSLOT" in name for name in errors), (node.address, errors)
    for server in on_cluster:
        assert "CROSSSLOT" not in server.log() and "same key slot" not in server.log()
