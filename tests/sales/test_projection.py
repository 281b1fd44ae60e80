"""The order log and its projection, on the real PostgreSQL: copied changes become order rows once each, however
often they were copied; a contradicting change is reported; during a storm the projection waits, then catches up."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
import redis

from server import keys
from server.ledger.client import Database
from server.ledger.embedded import EmbeddedPostgres
from server.sales.ledger import SalesLedger
from tests.conftest import Shop
from tests.sale_helpers import auth, create_sale, query, record_of_sale, viewer_token, wait_until
from tests.sales.conftest import a_sale, batch, change
from tests.timing import seconds

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL of these tests' own: no server's projection takes the rows they log before they do."""
    with EmbeddedPostgres(tmp_path_factory.mktemp("projection") / "postgres") as embedded:
        yield embedded.url


@pytest.fixture
async def ledger(own_database: str) -> AsyncIterator[SalesLedger]:
    db = Database(own_database, pool_size=2)
    await db.open()
    yield SalesLedger(db)
    await db.close()


async def test_copied_changes_are_order_rows_only_once_projected(ledger: SalesLedger, own_database: str) -> None:
    """A logged change is in no order row until the projection; then each order is at its newest version and each
    change is one row, even when a second copy of the same changes (a redelivery) was logged too."""
    sale = a_sale()
    held = [change(sale, n, "held", 1) for n in range(3)]
    paid = change(sale, 0, "paid", 2)
    await ledger.log([batch(sale, held)])
    await ledger.log([batch(sale, [*held[1:], paid])])  # copied again after a crash, with a newer change
    assert await ledger.orders(sale.id) == []
    waited = await ledger.unprojected(sale.id)
    assert waited is not None and waited >= 0
    projected = await ledger.project(100)
    assert (projected.changes, projected.contradictions) == (6, [])
    assert await ledger.unprojected(sale.id) is None
    orders = {order.id: (order.status, order.version) for order in await ledger.orders(sale.id)}
    assert orders == {f"{sale.id}.0000": ("paid", 2), f"{sale.id}.0001": ("held", 1), f"{sale.id}.0002": ("held", 1)}
    rows = query(own_database, "SELECT count(*) AS n FROM order_changes WHERE order_id LIKE $1", f"{sale.id}.%")
    assert rows[0]["n"] == 4
    paid_row = await ledger.order(f"{sale.id}.0000")
    assert paid_row is not None and (paid_row.payment_ref, paid_row.paid_at) == (
        "auth_0",
        orjson.loads(paid[2])["paid_at"],
    )


async def test_an_older_copy_projected_late_does_not_roll_an_order_back(ledger: SalesLedger) -> None:
    """An order's row is replaced only by a newer version: the hold, projected after the payment, changes nothing."""
    sale = a_sale()
    await ledger.log([batch(sale, [change(sale, 7, "paid", 2)])])
    await ledger.project(100)
    await ledger.log([batch(sale, [change(sale, 7, "held", 1)])])
    await ledger.project(100)
    order = await ledger.order(f"{sale.id}.0007")
    assert order is not None and (order.status, order.version) == ("paid", 2)


async def test_a_change_contradicting_the_record_is_reported(ledger: SalesLedger) -> None:
    """The same (order, version) copied as another change (Redis lost writes the backup had copied) is reported
    with its sale, for repair-sale; the record keeps what it had."""
    sale = a_sale()
    await ledger.log([batch(sale, [change(sale, 1, "held", 1), change(sale, 1, "paid", 2)])])
    await ledger.project(100)
    await ledger.log([batch(sale, [change(sale, 1, "cancelled", 2)])])
    projected = await ledger.project(100)
    assert [(c.order_id, c.version, c.change, c.sale_id) for c in projected.contradictions] == [
        (f"{sale.id}.0001", 2, "cancelled", sale.id)
    ]
    order = await ledger.order(f"{sale.id}.0001")
    assert order is not None and order.status == "paid"


def test_the_projection_waits_out_a_storm_then_catches_up(
    shop: Shop, server_factory: Any, database_url: str, redis_url: str
) -> None:
    """While passes copy at least LEDGER_BUSY_CHANGES, changes are copied (durable, out of Redis) but not projected,
    by any process; once the storm stops, the orders are all in PostgreSQL."""
    stormy = server_factory(LEDGER_BUSY_CHANGES="1", LEDGER_INTERVAL_MS="300", LEDGER_PROJECT_MAX_MS="3600000")
    sale = create_sale(shop, stormy.base_url, quantity=1000, per_user_limit=1)
    stop = threading.Event()

    def storm() -> None:
        with httpx.Client(timeout=seconds(5)) as client:
            while not stop.is_set():
                client.post(
                    f"{stormy.base_url}/api/sales/{sale['id']}/purchases",
                    json={"quantity": 1},
                    headers={**auth(viewer_token()), "Idempotency-Key": "k"},
                )

    def copied_not_projected() -> bool:
        """Copied changes of the sale have waited a second unprojected (an idle projection takes them in 0.1 s)."""
        waiting = query(
            database_url,
            "SELECT count(*) AS n FROM order_log WHERE sale_id = $1 AND logged_at < now() - interval '1 second'",
            sale["id"],
        )
        return bool(waiting[0]["n"] > 0)

    with ThreadPoolExecutor(2) as pool:
        storms = [pool.submit(storm) for _ in range(2)]
        try:
            wait_until(copied_not_projected, timeout=20)
        finally:
            stop.set()
            for future in storms:
                future.result()
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        held = {order_id: ("held", 1) for order_id in store.hkeys(keys.sale_orders(sale["id"]))}
    finally:
        store.close()
    wait_until(lambda: record_of_sale(database_url, sale["id"]) == held, timeout=20)
