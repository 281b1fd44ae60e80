"""Payments are never left half done: a retry after a lost reply, a crash between paying and capturing, an
authorization left open, a capture whose order is not paid with it."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from loadtests.support.server import ServerProcess
from server import keys
from server.config import Settings
from server.ledger.client import Database
from server.ledger.embedded import EmbeddedPostgres
from server.sales import reconciler as reconciler_module
from server.sales.ledger import SalesLedger
from server.sales.payments import SLOW_CAPTURE_CARD, SandboxProvider
from server.sales.reconciler import Reconciler
from server.store.embedded import EmbeddedRedis
from tests.conftest import Shop, make_shop, start_server
from tests.sale_helpers import (
    GOOD_CARD,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    query,
    record_of_sale,
    viewer_token,
    wait_until,
)
from tests.sales.conftest import a_sale, batch, change
from tests.timing import seconds

RECONCILING = {"RECONCILE_INTERVAL_MS": "100", "RECONCILE_GRACE_MS": "0"}
NOT_RECONCILING = {"RECONCILE_INTERVAL_MS": "3600000"}


def gateway(database_url: str, order_id: str) -> list[str]:
    rows = query(
        database_url, "SELECT state FROM sandbox_authorizations WHERE reference = $1 ORDER BY created_at", order_id
    )
    return [row["state"] for row in rows]


def payment_rows(database_url: str, order_id: str) -> list[tuple[str, bool]]:
    rows = query(
        database_url, "SELECT kind, by_reconciler FROM payments WHERE order_id = $1 ORDER BY payment_id", order_id
    )
    return [(row["kind"], row["by_reconciler"]) for row in rows]


def test_a_payment_retry_after_a_lost_reply_returns_the_paid_order(shop: Shop, database_url: str) -> None:
    """The same payment key again answers 200 with the paid order (one authorization, one capture); another key
    is already_paid."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    first = pay(shop.base_url, token, order["order_id"], key="pay-1")
    again = pay(shop.base_url, token, order["order_id"], key="pay-1")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "paid" and again.json()["paid_at"] == first.json()["paid_at"]
    other = pay(shop.base_url, token, order["order_id"], key="pay-2")
    assert (other.status_code, other.json()["error"]["code"]) == (409, "already_paid")
    assert gateway(database_url, order["order_id"]) == ["captured"]
    assert payment_rows(database_url, order["order_id"]) == [("authorization", False), ("capture", False)]


def test_the_reconciler_captures_a_payment_whose_server_died_before_capturing(
    shop: Shop, server_factory: Any, redis_url: str, database_url: str
) -> None:
    """The server is killed after the pay script marked the order paid and before the capture: the order stays
    paid, and the next server's reconciler captures it (a payments row, by the reconciler); the buyer's retry
    with the same key gets the paid order."""
    first: ServerProcess = server_factory(SANDBOX_SLOW_CARD_MS="60000", **NOT_RECONCILING)
    sale = create_sale(shop, first.base_url)
    token = viewer_token()
    order = buy(first.base_url, token, sale["id"]).json()
    store = redis.Redis.from_url(redis_url, decode_responses=True)

    def status() -> str:
        return str(orjson.loads(store.hget(keys.sale_orders(sale["id"]), order["order_id"]) or "{}").get("status"))

    try:
        with ThreadPoolExecutor(1) as pool:
            paying = pool.submit(pay, first.base_url, token, order["order_id"], SLOW_CAPTURE_CARD, "k1")
            wait_until(lambda: status() == "paid", timeout=10)  # paid in Redis; the capture is under way
            first.stop(signal.SIGKILL)
            assert paying.exception() is not None  # the buyer never heard back
        assert gateway(database_url, order["order_id"]) == ["authorized"]
        second: ServerProcess = server_factory(**RECONCILING)
        wait_until(lambda: gateway(database_url, order["order_id"]) == ["captured"], timeout=15)
        assert payment_rows(database_url, order["order_id"]) == [("authorization", False), ("capture", True)]
        retry = pay(second.base_url, token, order["order_id"], SLOW_CAPTURE_CARD, "k1")
        assert (retry.status_code, retry.json()["status"]) == (200, "paid")
        assert invariant(shop, sale["id"])["paid"] == 1
    finally:
        store.close()


@pytest.fixture
async def provider(database_url: str) -> AsyncIterator[SandboxProvider]:
    """The sandbox gateway, as another party (a buyer's browser mid-payment, the gateway's own book) sees it."""
    db = Database(database_url, pool_size=2)
    await db.open()
    yield SandboxProvider(db, Settings().sandbox_slow_card_ms)
    await db.close()


@pytest.mark.anyio
async def test_the_reconciler_voids_an_open_authorization_and_refunds_a_stray_capture(
    shop: Shop, server_factory: Any, database_url: str, provider: SandboxProvider
) -> None:
    """An authorization left open for an order that was cancelled is voided; a capture for an order paid with
    another authorization is refunded; each repair is a payments row. A paid order's own capture is left alone."""
    sale = create_sale(shop)
    buyer, payer = viewer_token(), viewer_token()
    cancelled = buy(shop.base_url, buyer, sale["id"]).json()
    paid = buy(shop.base_url, payer, sale["id"]).json()
    open_one = await provider.authorize(
        reference=cancelled["order_id"], key="x", amount=500, currency="USD", card_number="4242424242424242"
    )
    stray = await provider.authorize(
        reference=paid["order_id"], key="y", amount=500, currency="USD", card_number="5555555555554444"
    )
    await provider.capture(stray.id)
    url = f"{shop.base_url}/api/orders/{cancelled['order_id']}/cancel"
    assert (await asyncio.to_thread(httpx.post, url, headers=auth(buyer))).status_code == 200
    assert (await asyncio.to_thread(pay, shop.base_url, payer, paid["order_id"])).status_code == 200
    server_factory(**RECONCILING)

    async def states(order_id: str) -> list[str]:
        return [auth.state for auth in await provider.lookup(order_id)]

    deadline = asyncio.get_running_loop().time() + seconds(15)
    while await states(cancelled["order_id"]) != ["voided"] or await states(paid["order_id"]) != [
        "refunded",
        "captured",
    ]:
        assert asyncio.get_running_loop().time() < deadline, "the reconciler did not repair in time"
        await asyncio.sleep(0.05)
    assert open_one.id and await asyncio.to_thread(payment_rows, database_url, cancelled["order_id"]) == [
        ("void", True)
    ]
    assert ("refund", True) in await asyncio.to_thread(payment_rows, database_url, paid["order_id"])


def test_redis_killed_mid_payment_storm_leaves_no_payment_half_done(tmp_path: Path, database_url: str) -> None:
    """Buyers pay while Redis is killed and comes back about 2 s later. Every buyer whose payment failed retries
    with the same key and gets the paid order or a clear refusal; after the reconciler's pass every paid order
    is captured at the gateway with its own authorization, and no authorization is left open."""
    with EmbeddedRedis(tmp_path / "redis", fsync="always") as redis_server:
        server = start_server(tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url, **RECONCILING})
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            sale = create_sale(shop, quantity=200, per_user_limit=1)
            buyers = [viewer_token() for _ in range(120)]
            orders = {token: buy(shop.base_url, token, sale["id"]).json()["order_id"] for token in buyers}
            answers: dict[str, int] = {}

            def storm(token: str) -> None:
                try:
                    answers[token] = pay(shop.base_url, token, orders[token], key=f"pay-{token[-8:]}").status_code
                except httpx.TransportError:
                    answers[token] = 0

            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(storm, token) for token in buyers]
                wait_until(lambda: len(answers) >= 20)
                redis_server.process.kill()  # type: ignore[union-attr]
                redis_server.process.wait()  # type: ignore[union-attr]
                wait_until(lambda: len(answers) >= 60, timeout=20)
                redis_server.start()
                for future in futures:
                    future.result()
            assert 503 in answers.values() and 200 in answers.values()
            for token in buyers:
                if answers[token] != 200:
                    retry = pay(shop.base_url, token, orders[token], key=f"pay-{token[-8:]}")
                    assert retry.status_code == 200, retry.text
            wait_until(
                lambda: (
                    [status for status, _ in record_of_sale(database_url, sale["id"]).values()]
                    == ["paid"] * len(buyers)
                ),
                timeout=15,
            )

            def settled() -> bool:
                rows = query(
                    database_url,
                    "SELECT a.reference, a.state, o.payment_ref = a.authorization_id AS its_own FROM"
                    " sandbox_authorizations a JOIN orders o ON o.order_id = a.reference WHERE o.sale_id = $1",
                    sale["id"],
                )
                return all(
                    (row["state"] == "captured") == bool(row["its_own"]) and row["state"] != "authorized"
                    for row in rows
                ) and sum(row["state"] == "captured" for row in rows) == len(buyers)

            wait_until(settled, timeout=20)
            assert invariant(shop, sale["id"])["ok"]
        finally:
            server.stop()


@pytest.mark.anyio
async def test_an_order_the_gateway_cannot_capture_does_not_hold_up_the_others(
    ledger: SalesLedger, provider: SandboxProvider
) -> None:
    """A paid order whose authorization the gateway does not know (a damaged record) is logged and skipped: the
    same pass still captures the other paid-but-uncaptured order, and records it."""
    sale = a_sale()
    good = await provider.authorize(
        reference=f"{sale.id}.0002", key="g", amount=500, currency="USD", card_number=GOOD_CARD
    )
    damaged = change(sale, 1, "paid", 2, payment_ref="auth_nobody_issued")
    await ledger.log([batch(sale, [damaged, change(sale, 2, "paid", 2, payment_ref=good.id)])])
    await ledger.project_all()
    reconciler = Reconciler(ledger.db, ledger, provider, Settings(reconcile_grace_ms=0))
    while (repairs := await reconciler.run()).skipped:  # a server's pass holds the lock a moment
        await asyncio.sleep(0.05)
    assert repairs.captured == 1
    assert [auth.state for auth in await provider.lookup(f"{sale.id}.0002")] == ["captured"]
    assert [payment.kind for payment in await ledger.payments(f"{sale.id}.0002")] == ["capture"]


@pytest.mark.anyio
async def test_the_reconciler_pages_through_captures_and_finds_a_stray_beyond_the_first_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 2 captures, the first page holds captures the record already has; the stray captures (their
    orders paid with another authorization) come after. The reconciler goes on from where its last pass stopped,
    page by page, and refunds each stray once; a page of captures already recorded costs one light insert each."""
    monkeypatch.setattr(reconciler_module, "BATCH", 2)
    with EmbeddedPostgres(tmp_path / "postgres") as embedded:  # only this test's captures in the gateway's book
        db = Database(embedded.url, pool_size=2)
        await db.open()
        try:
            ledger, provider = SalesLedger(db), SandboxProvider(db)
            sale = a_sale()
            paid, strays = [], []
            for n in range(3):  # each order paid (and its capture recorded) with its own authorization
                order_id = f"{sale.id}.{n:04d}"
                own = await provider.authorize(reference=order_id, key="own", amount=500, currency="USD",
                                               card_number=GOOD_CARD)  # fmt: skip
                await provider.capture(own.id)
                await ledger.record_payment(own.id, "capture", order_id, sale.merchant_id, 500, "USD")
                paid.append(change(sale, n, "paid", 2, payment_ref=own.id))
            for n in range(3):  # then a second capture of each: strays
                stray = await provider.authorize(reference=f"{sale.id}.{n:04d}", key="stray", amount=500,
                                                 currency="USD", card_number="5555555555554444")  # fmt: skip
                await provider.capture(stray.id)
                strays.append(stray.id)
            await ledger.log([batch(sale, paid)])
            await ledger.project_all()
            reconciler = Reconciler(db, ledger, provider, Settings(reconcile_grace_ms=0))
            refunded = 0
            for _ in range(5):  # 6 captures, 2 a pass
                refunded += (await reconciler.run()).refunded
            assert refunded == 3
            states = {auth.id: auth.state for n in range(3) for auth in await provider.lookup(f"{sale.id}.{n:04d}")}
            assert [states[stray] for stray in strays] == ["refunded"] * 3
            assert sorted(states.values()) == ["captured"] * 3 + ["refunded"] * 3
        finally:
            await db.close()
