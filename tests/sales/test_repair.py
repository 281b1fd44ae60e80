"""Repair after Redis lost data: `python -m server.cli repair-sale` rebuilds a live sale from PostgreSQL and the
gateway, and the sale goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import redis

from server import keys
from server.ledger.client import Database
from server.sales.payments import SandboxProvider
from tests.conftest import ServerProcess, Shop
from tests.sale_helpers import (
    GOOD_CARD,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    record_of_sale,
    repair,
    viewer_token,
    wait_until,
)


async def gateway_authorizes(database_url: str, order_id: str) -> None:
    db = Database(database_url, pool_size=2)
    await db.open()
    try:
        authorization = await SandboxProvider(db).authorize(
            reference=order_id, key="f", amount=500, currency="USD", card_number=GOOD_CARD
        )
        assert authorization.approved
    finally:
        await db.close()


@pytest.fixture
def store(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def test_a_sale_whose_redis_keys_were_lost_is_rebuilt_and_goes_on(
    shop: Shop, store: redis.Redis, stores: dict[str, str], database_url: str
) -> None:
    """Mid-sale, every Redis key of the sale is deleted (a failover to an empty replica). The repair rebuilds the
    counters, orders, per-user units, idempotency keys and holds from PostgreSQL, and takes as paid a held order
    the gateway authorized (its payment was in flight when Redis lost it). The invariant holds, a buyer's retry
    finds their order, held orders can be paid, the per-user limit still counts, and new buyers can buy."""
    sale = create_sale(shop, quantity=10, per_user_limit=2)
    payer, holder, canceller, in_flight = (viewer_token(f"g_repair_{n}") for n in range(4))
    paid = buy(shop.base_url, payer, sale["id"], quantity=2, key="p").json()
    assert pay(shop.base_url, payer, paid["order_id"]).status_code == 200
    held = buy(shop.base_url, holder, sale["id"], quantity=2, key="h").json()
    cancelled = buy(shop.base_url, canceller, sale["id"], key="c").json()
    assert httpx.post(f"{shop.base_url}/api/orders/{cancelled['order_id']}/cancel", headers=auth(canceller)).is_success
    flying = buy(shop.base_url, in_flight, sale["id"], key="f").json()
    wait_until(
        lambda: len(record_of_sale(database_url, sale["id"])) == 4 and store.xlen(keys.sale_log(sale["id"])) == 0
    )
    # The in-flight payment: the gateway authorized it; Redis is lost before the pay script's change is saved.
    asyncio.run(gateway_authorizes(database_url, flying["order_id"]))
    before = invariant(shop, sale["id"])
    store.delete(*(name for name in store.scan_iter(match=f"sale:{{{sale['id']}}}*")))

    done = repair(stores, sale["id"])
    assert done.returncode == 0, done.stderr
    audit = orjson.loads(done.stdout)
    assert audit["ok"] and (audit["available"], audit["held"], audit["paid"]) == (5, 2, 3)
    assert (before["available"], before["held"], before["paid"]) == (5, 3, 2)
    assert invariant(shop, sale["id"])["ok"]

    again = buy(shop.base_url, holder, sale["id"], quantity=2, key="h")
    assert (again.status_code, again.json()["order_id"]) == (200, held["order_id"])
    over = buy(shop.base_url, payer, sale["id"], key="more")
    assert (over.status_code, over.json()["error"]["code"]) == (409, "limit_reached")
    assert pay(shop.base_url, holder, held["order_id"]).status_code == 200
    fresh = buy(shop.base_url, viewer_token(), sale["id"], quantity=2)
    assert fresh.status_code == 201
    wait_until(lambda: record_of_sale(database_url, sale["id"])[flying["order_id"]] == ("paid", 2))
    after = invariant(shop, sale["id"])
    assert after["ok"] and (after["available"], after["held"], after["paid"]) == (3, 2, 5)
    mine = httpx.get(f"{shop.base_url}/api/orders/{flying['order_id']}", headers=auth(in_flight)).json()
    assert mine["status"] == "paid"


def test_repairing_an_unknown_sale_says_so(stores: dict[str, str]) -> None:
    """A sale the record does not know: exit 1 with a message, nothing written."""
    done = repair(stores, "s_0000000000")
    assert done.returncode != 0 and "s_0000000000" in done.stderr and "Traceback" not in done.stderr


def test_redis_losing_a_payment_the_record_has_is_caught_and_repaired(
    server: ServerProcess, shop: Shop, store: redis.Redis, stores: dict[str, str], database_url: str
) -> None:
    """Redis loses a payment after the backup copied it (the AOF window): Redis then expires the hold, which
    contradicts the record. The backup counts it on /metrics and logs the repair to run; the repair makes the
    order paid again from the record."""
    sale = create_sale(shop, quantity=4, per_user_limit=2, hold_seconds=1)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    assert pay(shop.base_url, token, order["order_id"]).status_code == 200
    wait_until(lambda: record_of_sale(database_url, sale["id"]) == {order["order_id"]: ("paid", 2)})
    # What Redis would hold had it lost the payment: the order held (its hold now past), a unit held, not paid.
    held = orjson.loads(store.hget(keys.sale_orders(sale["id"]), order["order_id"]) or "{}")
    held = {key: value for key, value in held.items() if not key.startswith(("paid", "payment"))}
    held.update(status="held", version=1)
    store.hset(keys.sale_orders(sale["id"]), order["order_id"], orjson.dumps(held).decode())
    store.hset(keys.sale(sale["id"]), mapping={"held": 1, "paid": 0})
    store.zadd(keys.sale_holds(sale["id"]), {order["order_id"]: held["hold_expires_at"]})
    store.zadd(keys.sales_due(), {sale["id"]: 0})

    def diverged() -> float:
        text = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers).text
        lines = [line for line in text.splitlines() if line.startswith("livecart_ledger_diverged_total")]
        return float(lines[0].split()[-1]) if lines else 0.0

    wait_until(lambda: diverged() >= 1, timeout=15)
    assert record_of_sale(database_url, sale["id"]) == {order["order_id"]: ("paid", 2)}  # the record kept the truth
    done = repair(stores, sale["id"])
    assert done.returncode == 0, done.stderr
    mine = httpx.get(f"{shop.base_url}/api/orders/{order['order_id']}", headers=auth(token)).json()
    assert mine["status"] == "paid"
    body = invariant(shop, sale["id"])
    assert body["ok"] and (body["paid"], body["held"], body["available"]) == (1, 0, 3)
