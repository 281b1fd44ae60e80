"""Helpers for the flash-sale tests: create a sale, buy, pay, read the invariant, through the REST API; read the
record (PostgreSQL), waiting for the backup to bring an order there."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx

from tests.conftest import ROOT, SECRET_KEY, Shop, host_starts, member
from tests.timing import seconds

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def viewer_token(user_id: str | None = None) -> str:
    """A signed-in shopper's token, issued here so a test can make hundreds quickly."""
    return member(user_id)


def sale_terms(shop: Shop, **terms: Any) -> dict[str, Any]:
    """A new sale's body: the shop's first product, open now (override any term; one set to None is left out)."""
    body = {
        "product_id": shop.products[0],
        "price": 500,
        "quantity": 10,
        "per_user_limit": 2,
        "starts_at": int(time.time() * 1000),
        "duration_seconds": 600,
        **terms,
    }
    return {key: value for key, value in body.items() if value is not None}


def post_sale(shop: Shop, base_url: str | None = None, **terms: Any) -> httpx.Response:
    """POST a sale of the shop's first product, open now, as the host (a term set to None is left out)."""
    return host_starts(shop, "sales", sale_terms(shop, **terms), base_url)


def create_sale(shop: Shop, base_url: str | None = None, **terms: Any) -> dict[str, Any]:
    """A sale of the shop's first product that is open now (override any term)."""
    response = post_sale(shop, base_url, **terms)
    assert response.status_code == 201, response.text
    return response.json()


def buy(
    base_url: str, token: str, sale_id: str, quantity: Any = 1, key: str | None = None, body: bytes | None = None
) -> httpx.Response:
    headers = auth(token)
    if key != "":
        headers["Idempotency-Key"] = key or secrets.token_hex(8)
    if body is None:
        return httpx.post(f"{base_url}/api/sales/{sale_id}/purchases", json={"quantity": quantity}, headers=headers)
    return httpx.post(f"{base_url}/api/sales/{sale_id}/purchases", content=body, headers=headers)


def pay(base_url: str, token: str, order_id: str, card: str = GOOD_CARD, key: str | None = None) -> httpx.Response:
    """Pay with this payment Idempotency-Key (a fresh one by default)."""
    return httpx.post(
        f"{base_url}/api/orders/{order_id}/payment",
        json={"card_number": card},
        headers={**auth(token), "Idempotency-Key": key or secrets.token_hex(8)},
        timeout=seconds(10),
    )


def invariant(shop: Shop, sale_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale_id}/invariant", headers=auth(shop.admin)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["ok"], body
    assert body["quantity"] == body["available"] + body["reserved"] + body["held"] + body["paid"]
    assert body["reserved"] == body["slots_empty"] and body["max_group_members"] <= body["group_size"]
    return body


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    """The response is an API error with this status and code; return its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Return once `predicate()` is true; fail after `timeout` nominal seconds (scaled)."""
    deadline = time.monotonic() + seconds(timeout)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {seconds(timeout):g} s"
        time.sleep(0.05)


def query(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of one query on the tests' PostgreSQL, on a fresh connection (callable from sync and async tests)."""

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(database_url)
        try:
            return [dict(row) for row in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def recorded(database_url: str, order_ids: Any) -> dict[str, str]:
    """order id -> status of these orders as the record (PostgreSQL table orders) has them now."""
    rows = query(database_url, "SELECT order_id, status FROM orders WHERE order_id = ANY($1)", list(order_ids))
    return {row["order_id"]: row["status"] for row in rows}


def record_of_sale(database_url: str, sale_id: str) -> dict[str, tuple[str, int]]:
    """order id -> (status, version) of the sale's orders in PostgreSQL."""
    rows = query(database_url, "SELECT order_id, status, version FROM orders WHERE sale_id = $1", sale_id)
    return {row["order_id"]: (row["status"], row["version"]) for row in rows}


def wait_recorded(database_url: str, statuses: dict[str, str], timeout: float = 5.0) -> None:
    """Return once every order is in the record with its status (the backup's lag is about a second at most)."""
    deadline = time.monotonic() + seconds(timeout)
    while (found := recorded(database_url, statuses)) != statuses:
        assert time.monotonic() < deadline, f"after {seconds(timeout):g} s the record has {found}, not {statuses}"
        time.sleep(0.05)


def wait_for_server_time(shop: Shop, sale_id: str, ms: int, timeout: float = 5.0) -> int:
    """Return once the server's clock (`server_time` of GET /api/sales/{id}) is past `ms`; return that time.

    Fails when it is not, `timeout` nominal seconds (scaled) after the moment itself.
    """

    def server_time() -> int:
        response = httpx.get(f"{shop.base_url}/api/sales/{sale_id}", timeout=seconds(10))
        assert response.status_code == 200, response.text
        return int(response.json()["server_time"])

    now = server_time()
    deadline = time.monotonic() + max(0, ms - now) / 1000 + seconds(timeout)
    while now <= ms:
        assert time.monotonic() < deadline, f"the server's clock did not pass {ms} (it reads {now})"
        time.sleep(min(0.05, (ms - now + 1) / 1000))
        now = server_time()
    return now


def repair(stores: dict[str, str], sale_id: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m server.cli repair-sale` on these stores."""
    env = {**os.environ, "SECRET_KEY": SECRET_KEY, **stores}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "repair-sale", sale_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds(60),
    )
