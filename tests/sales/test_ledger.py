"""The ledger: every order change reaches PostgreSQL (once, even across a crash), ended sales leave Redis, and
durable acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from loadtests.support.server import ServerProcess
from server import keys
from server.store.embedded import EmbeddedRedis
from tests.conftest import Shop, make_shop, start_server
from tests.sale_helpers import auth, buy, create_sale, invariant, pay, query, record_of_sale, viewer_token, wait_until
from tests.timing import seconds


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def in_redis(store: redis.Redis, sale_id: str) -> dict[str, tuple[str, int]]:
    import orjson

    orders = store.hgetall(keys.sale_orders(sale_id))
    return {order_id: (orjson.loads(raw)["status"], orjson.loads(raw)["version"]) for order_id, raw in orders.items()}


def test_every_order_change_reaches_postgresql_once(shop: Shop, store: redis.Redis, database_url: str) -> None:
    """Holds, payments, cancellations: each order's newest state is in PostgreSQL, each change one row, and the
    order log in Redis is emptied as it is copied."""
    sale = create_sale(shop, quantity=20, per_user_limit=2)
    buyers = [viewer_token() for _ in range(6)]
    orders = [buy(shop.base_url, token, sale["id"], quantity=2).json() for token in buyers]
    assert pay(shop.base_url, buyers[0], orders[0]["order_id"]).status_code == 200
    assert pay(shop.base_url, buyers[1], orders[1]["order_id"]).status_code == 200
    cancelled = httpx.post(f"{shop.base_url}/api/orders/{orders[2]['order_id']}/cancel", headers=auth(buyers[2]))
    assert cancelled.status_code == 200
    wait_until(lambda: record_of_sale(database_url, sale["id"]) == in_redis(store, sale["id"]))
    changes = query(database_url, "SELECT order_id, version, change FROM order_changes WHERE sale_id = $1", sale["id"])
    assert len(changes) == 6 + 2 + 1
    assert sorted(row["change"] for row in changes if row["version"] > 1) == ["cancelled", "paid", "paid"]
    assert store.xlen(keys.sale_log(sale["id"])) == 0
    amounts = query(
        database_url,
        "SELECT quantity, unit_price, currency, merchant_id FROM orders WHERE order_id = $1",
        orders[0]["order_id"],
    )
    assert amounts == [{"quantity": 2, "unit_price": 500, "currency": "USD", "merchant_id": shop.merchant_id}]


def test_killing_the_consumer_mid_storm_loses_nothing_and_duplicates_nothing(
    shop: Shop, server_factory: Any, store: redis.Redis, database_url: str
) -> None:
    """The process copying the logs is killed while a storm of purchases is going on, with changes it read but had
    not written (PostgreSQL held up by a table lock): a new process claims them and every acknowledged order is in
    PostgreSQL, each change once."""
    first: ServerProcess = server_factory(LEDGER_CLAIM_MS="300", LEDGER_INTERVAL_MS="20")
    sale = create_sale(shop, first.base_url, quantity=1000, per_user_limit=1)
    log = keys.sale_log(sale["id"])
    acknowledged: list[str] = []
    stop = threading.Event()

    def storm() -> None:
        with httpx.Client(timeout=seconds(5)) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{first.base_url}/api/sales/{sale['id']}/purchases",
                        json={"quantity": 1},
                        headers={**auth(viewer_token()), "Idempotency-Key": "k"},
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 201:
                    acknowledged.append(response.json()["order_id"])

    async def hold_up_postgresql(locked: threading.Event, release: threading.Event) -> None:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE order_log IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await connection.close()

    locked, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(6) as pool:
        holder = pool.submit(asyncio.run, hold_up_postgresql(locked, release))
        assert locked.wait(seconds(10))
        storms = [pool.submit(storm) for _ in range(4)]
        wait_until(lambda: len(acknowledged) >= 100 and store.xpending(log, "ledger")["pending"] > 0, timeout=20)
        first.stop(signal.SIGKILL)
        stop.set()
        for future in storms:
            future.result()
        # read by the dead consumer, never written; asked before PostgreSQL is released, since another server's
        # backup on the same Redis may claim those entries and write them once it can
        assert store.xpending(log, "ledger")["pending"] > 0
        release.set()
        holder.result()
    second: ServerProcess = server_factory(LEDGER_CLAIM_MS="300")
    wait_until(lambda: store.xlen(log) == 0, timeout=20)
    wait_until(lambda: record_of_sale(database_url, sale["id"]) == in_redis(store, sale["id"]), timeout=20)
    in_record = record_of_sale(database_url, sale["id"])
    assert set(acknowledged) <= set(in_record)
    changes = query(database_url, "SELECT count(*) AS n FROM order_changes WHERE sale_id = $1", sale["id"])
    assert changes[0]["n"] == len(in_record)  # one hold each, written once
    assert invariant(shop, sale["id"])["ok"]
    assert second.process.poll() is None


def sale_keys_left(store: redis.Redis, sale_id: str) -> list[str]:
    found = list(store.scan_iter(match=f"sale:{{{sale_id}}}*"))
    found += [name for name in (keys.sales_due(), keys.sales_ledger()) if store.zscore(name, sale_id) is not None]
    return found


@contextlib.contextmanager
def archiving_server(tmp_path: Path, database_url: str, grace_ms: int) -> Iterator[tuple[Shop, redis.Redis]]:
    """A server on a Redis of its own (no other server's clock visits its sales) that archives `grace_ms` after
    a sale's end; a shop on it and a client of its Redis."""
    with EmbeddedRedis(tmp_path / "redis") as own:
        server = start_server(
            tmp_path,
            {
                "REDIS_URL": own.url,
                "DATABASE_URL": database_url,
                "SALE_ARCHIVE_GRACE_MS": str(grace_ms),
                "SALE_CLOCK_MS": "50",
                "LIVE_REVISIT_MS": "50",
            },
        )
        client = redis.Redis.from_url(own.url, decode_responses=True)
        try:
            yield make_shop(server.base_url, server.ws_url, own.url), client
        finally:
            client.close()
            server.stop()


def test_an_ended_sale_leaves_redis_and_is_read_from_postgresql(tmp_path: Path, database_url: str) -> None:
    """Once a sale has ended, its holds are settled and its orders are in PostgreSQL, its keys leave Redis after the
    grace and its room stops listing it; the sale, the buyer's order and the merchant's export still answer, from
    PostgreSQL."""
    with archiving_server(tmp_path, database_url, grace_ms=300) as (shop, store):
        sale = create_sale(shop, quantity=5, duration_seconds=2, hold_seconds=1)
        paid_by, held_by = viewer_token(), viewer_token()
        paid = buy(shop.base_url, paid_by, sale["id"], quantity=2).json()
        held = buy(shop.base_url, held_by, sale["id"]).json()
        assert pay(shop.base_url, paid_by, paid["order_id"]).status_code == 200
        assert f"sale:{sale['id']}" in store.hkeys(keys.room(shop.room_id))
        wait_until(lambda: not sale_keys_left(store, sale["id"]), timeout=15)
        assert f"sale:{sale['id']}" not in store.hkeys(keys.room(shop.room_id))
        body = httpx.get(f"{shop.base_url}/api/sales/{sale['id']}").json()
        assert (body["status"], body["sold"], body["held"], body["available"]) == ("ended", 2, 0, 3)
        mine = httpx.get(f"{shop.base_url}/api/orders/{paid['order_id']}", headers=auth(paid_by)).json()
        assert (mine["status"], mine["quantity"]) == ("paid", 2)
        expired = httpx.get(f"{shop.base_url}/api/orders/{held['order_id']}", headers=auth(held_by)).json()
        assert expired["status"] == "expired"
        late = buy(shop.base_url, viewer_token(), sale["id"])
        assert late.status_code == 409 and late.json()["error"]["code"] == "ended"
        export = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/orders.jsonl", headers=auth(shop.admin))
        assert sorted(line.split('"status":"')[1].split('"')[0] for line in export.text.splitlines()) == [
            "expired",
            "paid",
        ]
        listed = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales", headers=auth(shop.host)).json()
        assert [item["id"] for item in listed] == [sale["id"]]
        archived = query(database_url, "SELECT archived_at FROM sales WHERE sale_id = $1", sale["id"])
        assert archived[0]["archived_at"] is not None


def test_redis_holds_no_more_after_many_finished_sales_than_after_a_few(tmp_path: Path, database_url: str) -> None:
    """Redis's key count and the room's record after 60 finished sales (with orders) equal those after 10: nothing
    of a finished sale stays in Redis (the payment limits' buckets aside: they lapse with their window)."""
    with archiving_server(tmp_path, database_url, grace_ms=0) as (shop, client):

        def finish(count: int) -> None:
            sales = []
            for _ in range(count):
                sale = create_sale(shop, quantity=3, duration_seconds=1, hold_seconds=1)
                sales.append(sale)
                token = viewer_token()
                order = buy(shop.base_url, token, sale["id"]).json()
                assert pay(shop.base_url, token, order["order_id"]).status_code == 200
                buy(shop.base_url, viewer_token(), sale["id"])  # a hold that expires
            wait_until(lambda: all(not sale_keys_left(client, sale["id"]) for sale in sales), timeout=30)

        finish(10)

        def counts() -> tuple[int, int]:
            # A set: SCAN may return a key twice while Redis rehashes its key space.
            kept = {key for key in client.scan_iter(count=1000) if not str(key).startswith("limit:")}
            return len(kept), client.hlen(keys.room(shop.room_id))

        after_few = counts()
        finish(50)
        assert counts() == after_few


def test_durable_acknowledgement_answers_after_the_aof_write(server_factory: Any, shop: Shop) -> None:
    """With DURABLE_ACK=1 purchases and payments are acknowledged (after WAITAOF) and the invariant holds."""
    durable: ServerProcess = server_factory(DURABLE_ACK="1")
    sale = create_sale(shop, durable.base_url, quantity=4)
    token = viewer_token()
    order = buy(durable.base_url, token, sale["id"], quantity=2)
    assert order.status_code == 201
    assert pay(durable.base_url, token, order.json()["order_id"]).status_code == 200
    assert invariant(shop, sale["id"])["paid"] == 2


def test_durable_acknowledgement_refuses_to_start_without_an_aof(tmp_path: Path, database_url: str) -> None:
    """DURABLE_ACK=1 on a Redis that writes no AOF stops the server at start with a message saying why."""
    with EmbeddedRedis(tmp_path / "redis") as own:
        redis.Redis.from_url(own.url).config_set("appendonly", "no")
        with pytest.raises(RuntimeError, match="DURABLE_ACK=1 needs"):
            start_server(tmp_path, {"REDIS_URL": own.url, "DATABASE_URL": database_url, "DURABLE_ACK": "1"})


def test_postgresql_going_away_mid_sale_loses_nothing(tmp_path: Path) -> None:
    """PostgreSQL stops mid-sale: purchases go on (Redis is the hot path), a payment answers 503 with nothing
    charged, the server stays up; once PostgreSQL is back every order made meanwhile reaches it."""
    from server.ledger.embedded import EmbeddedPostgres

    own_redis = EmbeddedRedis(tmp_path / "redis")
    redis_url = own_redis.start()
    postgres = EmbeddedPostgres(tmp_path / "postgres")
    url = postgres.start()
    server = start_server(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": url, "LEDGER_CLAIM_MS": "300"})
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        shop = make_shop(server.base_url, server.ws_url, redis_url)
        sale = create_sale(shop, quantity=50, per_user_limit=1)
        before = [buy(shop.base_url, viewer_token(), sale["id"]).json()["order_id"] for _ in range(5)]
        wait_until(lambda: len(record_of_sale(url, sale["id"])) == 5)
        postgres.stop()
        token = viewer_token()
        during = [buy(shop.base_url, token, sale["id"]).json()["order_id"]]
        during += [buy(shop.base_url, viewer_token(), sale["id"]).json()["order_id"] for _ in range(9)]
        refused = pay(shop.base_url, token, during[0])
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "unavailable")
        ready = httpx.get(f"{server.base_url}/readyz")
        assert ready.status_code == 200 and "postgresql unreachable" in ready.json()["degraded"]
        assert store.xlen(keys.sale_log(sale["id"])) == 10  # kept until PostgreSQL has them
        postgres.start()
        wait_until(lambda: store.xlen(keys.sale_log(sale["id"])) == 0, timeout=20)
        wait_until(lambda: set(record_of_sale(url, sale["id"])) == set(before + during))
        assert pay(shop.base_url, token, during[0]).status_code == 200
        assert server.process.poll() is None
    finally:
        store.close()
        server.stop()
        postgres.stop()
        own_redis.stop()
