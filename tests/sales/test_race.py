"""A flash-sale race: 500 buyers at once for 100 units, through two server processes on one Redis, and the record
(PostgreSQL) that the backup keeps of it."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop
from tests.sale_helpers import auth, create_sale, query, viewer_token, wait_recorded

pytestmark = pytest.mark.anyio

BUYERS = 500
UNITS = 100
LIMIT = 2
TRIES = 3  # each buyer taps Buy three times (new keys): the limit must hold


async def test_500_buyers_for_100_units_get_exactly_100_holds(
    shop: Shop, server_factory: Any, database_url: str
) -> None:
    """Exactly 100 units are held, nobody holds more than the limit, and the stock never goes below zero; the
    record has each of the 100 holds once, and no other order."""
    second: ServerProcess = server_factory()
    sale = create_sale(shop, quantity=UNITS, per_user_limit=LIMIT)
    buyers = {f"g_race{index}_{secrets.token_hex(3)}": "" for index in range(BUYERS)}
    for user_id in buyers:
        buyers[user_id] = viewer_token(user_id)
    invariant_url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/invariant"
    samples: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def watch(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            samples.append((await client.get(invariant_url, headers=auth(shop.admin))).json())
            await asyncio.sleep(0.01)

    async def attempt(client: httpx.AsyncClient, token: str) -> httpx.Response:
        return await client.post(
            f"/api/sales/{sale['id']}/purchases",
            json={"quantity": 1},
            headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
        )

    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)  # per process
    async with (
        await RoomClient.connect(shop.room_url(shop.buyer())) as viewer,
        httpx.AsyncClient(base_url=shop.base_url, timeout=30, limits=limits) as first,
        httpx.AsyncClient(base_url=second.base_url, timeout=30, limits=limits) as other,
        httpx.AsyncClient(timeout=30) as auditor,
    ):
        watcher = asyncio.create_task(watch(auditor))
        tokens = list(buyers.values()) * TRIES
        replies = await asyncio.gather(
            *(attempt((first, other)[index % 2], token) for index, token in enumerate(tokens))
        )
        done.set()
        await watcher
        await viewer.wait_event("stock", sale_id=sale["id"], available=0)
        stock_seen = [item for item in viewer.events if item["type"] == "stock"]
        final = (await auditor.get(invariant_url, headers=auth(shop.admin))).json()

    codes = Counter(reply.status_code for reply in replies)
    assert codes[201] == UNITS, codes
    assert set(codes) <= {201, 409}, codes
    refusals = Counter(reply.json()["error"]["code"] for reply in replies if reply.status_code == 409)
    assert set(refusals) <= {"sold_out", "limit_reached"}
    holds_per_buyer = Counter(reply.request.headers["authorization"] for reply in replies if reply.status_code == 201)
    assert max(holds_per_buyer.values()) <= LIMIT
    assert final["ok"] and (final["available"], final["held"], final["paid"]) == (0, UNITS, 0)
    assert final["max_user_units"] <= LIMIT
    assert samples and all(sample["ok"] and sample["available"] >= 0 for sample in samples)
    assert all(0 <= item["available"] <= UNITS for item in stock_seen)

    held = {reply.json()["order_id"]: "held" for reply in replies if reply.status_code == 201}
    wait_recorded(database_url, held)
    rows = query(database_url, "SELECT order_id, user_id, quantity, status FROM orders WHERE sale_id = $1", sale["id"])
    assert {row["order_id"]: row["status"] for row in rows} == held
    assert max(Counter(row["user_id"] for row in rows).values()) <= LIMIT
    changes = query(database_url, "SELECT order_id, version, change FROM order_changes WHERE sale_id = $1", sale["id"])
    assert sorted((row["order_id"], row["version"], row["change"]) for row in changes) == [
        (order_id, 1, "held") for order_id in sorted(held)
    ]
