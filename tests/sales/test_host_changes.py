"""A host's changes of a running sale (docs/sales.md, Changing a sale): start a scheduled sale now, restock, extend;
each audited, each heard by the room as `sale.updated`, the record following."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Person, Shop
from tests.sale_helpers import assert_error, auth, buy, create_sale, invariant, query, wait_until
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def change(shop: Shop, sale_id: str, what: str, token: str | None = None, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale_id}/{what}",
        json=body,
        headers=auth(token or shop.host),
        timeout=seconds(10),
    )


async def test_a_host_starts_restocks_and_extends_a_sale_and_the_room_hears_each(shop: Shop, database_url: str) -> None:
    """A scheduled sale starts now keeping its duration (and is announced live); a sold-out sale restocked is live
    again with the units added and the invariant kept; an extension moves the end; each is in the audit log and the
    record; the room's viewers get `sale.updated` with the whole sale."""
    sale = create_sale(shop, starts_at=None, countdown_seconds=120, duration_seconds=300, quantity=1, per_user_limit=1)
    async with await RoomClient.connect(shop.room_url(Person().token)) as viewer:
        started = change(shop, sale["id"], "start")
        assert started.status_code == 200, started.text
        now = started.json()["server_time"]
        assert started.json()["status"] == "live" and started.json()["starts_at"] <= now
        assert started.json()["ends_at"] - started.json()["starts_at"] == 300_000
        updated = await viewer.wait_event("sale.updated")
        assert updated["sale"]["id"] == sale["id"] and updated["sale"]["starts_at"] == started.json()["starts_at"]
        await viewer.wait_event("sale.started", timeout=10)
        assert change(shop, sale["id"], "start").json()["starts_at"] == started.json()["starts_at"]  # once

        buyer = Person()
        order = buy(shop.base_url, buyer.token, sale["id"])
        assert order.status_code == 201
        assert_error(buy(shop.base_url, Person().token, sale["id"]), 409, "sold_out")
        restocked = change(shop, sale["id"], "restock", units=4)
        assert restocked.json()["quantity"] == 5 and restocked.json()["available"] == 4
        await viewer.wait(
            lambda: any(event["type"] == "sale.updated" and event["sale"]["quantity"] == 5 for event in viewer.events)
        )
        assert buy(shop.base_url, Person().token, sale["id"]).status_code == 201
        assert invariant(shop, sale["id"])["quantity"] == 5

        extended = change(shop, sale["id"], "extend", seconds=90)
        assert extended.json()["ends_at"] == started.json()["ends_at"] + 90_000
        await viewer.wait(
            lambda: any(
                event["type"] == "sale.updated" and event["sale"]["ends_at"] == extended.json()["ends_at"]
                for event in viewer.events
            )
        )

    assert_error(change(shop, sale["id"], "extend", seconds=24 * 3600), 400, "bad_request")
    assert_error(change(shop, sale["id"], "restock", units=0), 400, "bad_request")
    assert_error(change(shop, sale["id"], "restock", Person().token, units=1), 403, "forbidden")
    assert_error(change(shop, sale["id"], "restock", shop.moderator, units=1), 403, "forbidden")
    [row] = query(database_url, "SELECT quantity, ends_at FROM sales WHERE sale_id = $1", sale["id"])
    assert row["quantity"] == 5 and int(row["ends_at"].timestamp() * 1000) == extended.json()["ends_at"]
    audit = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit", headers=auth(shop.admin)).json()
    actions = [entry["action"] for entry in audit["entries"] if entry["subject"] == f"sale:{sale['id']}"]
    assert actions[:4] == ["sale.extended", "sale.restocked", "sale.started_now", "sale.started_now"]

    ended = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale['id']}/end", headers=auth(shop.host)
    )
    assert ended.status_code == 200
    wait_until(lambda: httpx.get(f"{shop.base_url}/api/sales/{sale['id']}").json()["status"] == "ended")
    assert_error(change(shop, sale["id"], "restock", units=1), 409, "ended")
    assert_error(change(shop, sale["id"], "extend", seconds=60), 409, "ended")
