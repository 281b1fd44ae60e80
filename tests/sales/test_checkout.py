"""Orders: idempotent retries, cancelling, reading one's own, the merchant's export, and surviving a restart."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.sales.checkout import EXPORT_FIELDS
from tests.conftest import ServerProcess, Shop, make_shop, start_server
from tests.sale_helpers import (
    assert_error,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    viewer_token,
    wait_recorded,
    wait_until,
)
from tests.timing import seconds


def test_a_retry_with_the_same_key_returns_the_same_order_and_moves_stock_once(shop: Shop) -> None:
    """201 for the purchase, 200 with the same body for each retry; the stock moved once."""
    sale = create_sale(shop, quantity=5)
    token = viewer_token()
    first = buy(shop.base_url, token, sale["id"], key="tap-1")
    assert first.status_code == 201
    for _ in range(3):
        retry = buy(shop.base_url, token, sale["id"], key="tap-1")
        assert retry.status_code == 200
        assert {**retry.json(), "server_time": 0} == {**first.json(), "server_time": 0}
    assert invariant(shop, sale["id"])["held"] == 1
    second = buy(shop.base_url, token, sale["id"], key="tap-2")
    assert second.status_code == 201 and second.json()["order_id"] != first.json()["order_id"]
    assert invariant(shop, sale["id"])["held"] == 2


def test_a_key_belongs_to_its_buyer(shop: Shop) -> None:
    """Two buyers using the same key get two orders: keys are per buyer."""
    sale = create_sale(shop)
    one = buy(shop.base_url, viewer_token(), sale["id"], key="same")
    two = buy(shop.base_url, viewer_token(), sale["id"], key="same")
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["order_id"] != two.json()["order_id"]


def test_a_retry_after_the_hold_was_paid_or_the_sale_ended_returns_the_order(shop: Shop) -> None:
    """The key keeps answering with its order, whatever happened since (paid, sale over)."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"], key="k").json()
    assert pay(shop.base_url, token, order["order_id"]).status_code == 200
    httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/end", headers=auth(shop.host))
    retry = buy(shop.base_url, token, sale["id"], key="k")
    assert retry.status_code == 200
    assert (retry.json()["order_id"], retry.json()["status"]) == (order["order_id"], "paid")


@pytest.mark.anyio
async def test_a_double_tap_on_two_processes_makes_one_order(shop: Shop, server_factory: Any) -> None:
    """20 identical purchases at once, half through each process, make one order; the stock moves once."""
    second: ServerProcess = server_factory()
    sale = create_sale(shop, quantity=5, per_user_limit=5)
    token = viewer_token()
    headers = {**auth(token), "Idempotency-Key": "double-tap"}
    async with httpx.AsyncClient(timeout=seconds(10)) as client:
        replies = await asyncio.gather(
            *(
                client.post(f"{base}/api/sales/{sale['id']}/purchases", json={"quantity": 2}, headers=headers)
                for base in [shop.base_url, second.base_url] * 10
            )
        )
    assert sorted(reply.status_code for reply in replies) == [200] * 19 + [201]
    assert len({reply.json()["order_id"] for reply in replies}) == 1
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"]) == (3, 2)


def test_a_buyer_cancels_a_hold_and_its_units_go_back_on_sale(shop: Shop) -> None:
    """Cancel frees the units (cancelling again is fine); a paid order cannot be cancelled."""
    sale = create_sale(shop, quantity=2, per_user_limit=2)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"], quantity=2).json()
    assert_error(buy(shop.base_url, viewer_token(), sale["id"]), 409, "sold_out")
    url = f"{shop.base_url}/api/orders/{order['order_id']}/cancel"
    cancelled = httpx.post(url, headers=auth(token))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert isinstance(cancelled.json()["closed_at"], int)
    assert httpx.post(url, headers=auth(token)).json()["status"] == "cancelled"
    assert invariant(shop, sale["id"])["available"] == 2
    assert_error(pay(shop.base_url, token, order["order_id"]), 409, "order_cancelled")
    again = buy(shop.base_url, token, sale["id"], quantity=2).json()  # the limit counts only live orders
    assert pay(shop.base_url, token, again["order_id"]).status_code == 200
    assert_error(
        httpx.post(f"{shop.base_url}/api/orders/{again['order_id']}/cancel", headers=auth(token)), 409, "already_paid"
    )
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"], body["paid"]) == (0, 0, 2)


def test_a_buyer_reads_their_own_order(shop: Shop) -> None:
    """GET /api/orders/{id} shows status, quantity, amount and the hold deadline with the server's clock."""
    sale = create_sale(shop, price=250, per_user_limit=3)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"], quantity=3).json()
    read = httpx.get(f"{shop.base_url}/api/orders/{order['order_id']}", headers=auth(token)).json()
    assert (read["status"], read["quantity"], read["unit_price"], read["amount"]) == ("held", 3, 250, 750)
    assert read["currency"] == "USD" and read["product"]["id"] == shop.products[0]
    assert read["hold_expires_at"] == read["created_at"] + 300_000
    assert read["created_at"] <= read["server_time"] < read["hold_expires_at"]


def _rows(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/csv"):
        return list(csv.DictReader(io.StringIO(response.text)))
    return [orjson.loads(line) for line in response.text.splitlines()]


def test_merchants_export_their_orders_and_nobody_elses(
    shop: Shop, server: ServerProcess, redis_url: str, database_url: str
) -> None:
    """CSV and JSON lines list every order of the merchant's sales, and only theirs; others get 403.

    The export reads the record (PostgreSQL), which the backup brings each order to within about a second.
    """
    other = make_shop(server.base_url, server.ws_url, redis_url)
    mine, theirs = create_sale(shop, per_user_limit=3), create_sale(other)
    buyer_id = f"g_{secrets.token_hex(6)}"
    buyer = viewer_token(buyer_id)
    paid = buy(shop.base_url, buyer, mine["id"], quantity=2).json()
    assert pay(shop.base_url, buyer, paid["order_id"]).status_code == 200
    held = buy(shop.base_url, viewer_token(), mine["id"]).json()
    other_order = buy(shop.base_url, viewer_token(), theirs["id"]).json()
    wait_recorded(database_url, {paid["order_id"]: "paid", held["order_id"]: "held", other_order["order_id"]: "held"})
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}"
    for kind in ("csv", "jsonl"):
        rows = _rows(httpx.get(f"{base}/orders.{kind}", headers=auth(shop.admin)))
        assert {row["order_id"] for row in rows} == {paid["order_id"], held["order_id"]}
        assert set(rows[0]) == set(EXPORT_FIELDS)
        [row] = [row for row in rows if row["order_id"] == paid["order_id"]]
        assert (row["status"], str(row["quantity"]), str(row["amount"])) == ("paid", "2", "1000")
        assert row["user_id"] == buyer_id
        assert row["paid_at"].endswith("Z") and row["payment_ref"].startswith("auth_")
        only_paid = _rows(httpx.get(f"{base}/orders.{kind}?status=paid", headers=auth(shop.host)))
        assert [row["order_id"] for row in only_paid] == [paid["order_id"]]
        for token in (other.admin, other.host, shop.moderator, buyer):
            assert_error(httpx.get(f"{base}/orders.{kind}", headers=auth(token)), 403, "forbidden")
    assert_error(httpx.get(f"{base}/orders.csv?status=lost", headers=auth(shop.admin)), 400, "bad_request")
    assert httpx.get(f"{base}/orders.xml", headers=auth(shop.admin)).status_code == 404


def test_export_cells_never_run_as_spreadsheet_formulas(shop: Shop, database_url: str) -> None:
    """A product title starting with '=' is exported with a leading quote in the CSV."""
    httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{shop.products[1]}",
        json={"title": '=HYPERLINK("x")'},
        headers=auth(shop.admin),
    ).raise_for_status()
    sale = create_sale(shop, product_id=shop.products[1])
    order = buy(shop.base_url, viewer_token(), sale["id"]).json()
    wait_recorded(database_url, {order["order_id"]: "held"})
    [row] = _rows(httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/orders.csv", headers=auth(shop.admin)))
    assert row["product_title"] == '\'=HYPERLINK("x")'


def test_every_acknowledged_order_survives_a_restart(tmp_path: Path) -> None:
    """Orders made on a server with its own Redis (AOF) are all there after SIGTERM and a restart on its DATA_DIR."""
    env = {"REDIS_URL": "", "DATABASE_URL": "", "DATA_DIR": str(tmp_path / "own")}
    redis_url = f"unix://{tmp_path / 'own' / 'redis' / 'redis.sock'}"
    first = start_server(tmp_path, env)
    try:
        shop = make_shop(first.base_url, first.ws_url, redis_url)
        sale = create_sale(shop, quantity=50, per_user_limit=1)
        acknowledged: dict[str, tuple[str, str]] = {}
        for index in range(20):
            token = viewer_token()
            order = buy(first.base_url, token, sale["id"]).json()
            if index % 2:
                assert pay(first.base_url, token, order["order_id"]).status_code == 200
            acknowledged[order["order_id"]] = (token, "paid" if index % 2 else "held")
    finally:
        assert first.stop(signal.SIGTERM) == 0
    second = start_server(tmp_path, env)
    try:
        for order_id, (token, status) in acknowledged.items():
            read = httpx.get(f"{second.base_url}/api/orders/{order_id}", headers=auth(token))
            assert read.status_code == 200 and read.json()["status"] == status
        shop.base_url = second.base_url
        body = invariant(shop, sale["id"])
        assert (body["available"], body["held"], body["paid"]) == (30, 10, 10)
        # The export reads the record: the backup of the restarted server brings it what the first one left in
        # the order log (claiming what the stopped consumer had read but not confirmed, after LEDGER_CLAIM_MS).
        statuses = {order_id: status for order_id, (_, status) in acknowledged.items()}

        def exported() -> dict[str, str]:
            url = f"{second.base_url}/api/merchants/{shop.merchant_id}/orders.jsonl"
            return {row["order_id"]: row["status"] for row in _rows(httpx.get(url, headers=auth(shop.admin)))}

        wait_until(lambda: exported() == statuses, timeout=15)
        assert buy(second.base_url, viewer_token(), sale["id"]).status_code == 201  # the sale goes on
    finally:
        second.stop()
