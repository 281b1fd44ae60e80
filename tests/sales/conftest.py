"""The flash-sale tests' made-up record: sales, orders and changes written straight through the ledger (as the
backup would), removed after each test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from server.ledger.client import Database
from server.protocol import now_ms
from server.sales.ledger import LogBatch, SalesLedger
from server.sales.records import Sale

MERCHANT = "m_projection"  # the made-up sales' merchant


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[SalesLedger]:
    """The ledger on the session's database; the made-up sales' rows are removed after (the servers' reconcilers
    would otherwise try to capture their made-up payments)."""
    db = Database(database_url, pool_size=2)
    await db.open()
    yield SalesLedger(db)
    await db.pool.execute(
        "DELETE FROM order_changes WHERE sale_id IN (SELECT sale_id FROM sales WHERE merchant_id = $1)", MERCHANT
    )
    await db.pool.execute("DELETE FROM orders WHERE merchant_id = $1", MERCHANT)
    await db.pool.execute("DELETE FROM payments WHERE merchant_id = $1", MERCHANT)
    await db.pool.execute("DELETE FROM sales WHERE merchant_id = $1", MERCHANT)
    await db.close()


def a_sale() -> Sale:
    now = now_ms()
    return Sale(
        id="s_" + secrets.token_hex(5),
        merchant_id=MERCHANT,
        room_id="r_projection",
        product={"id": "p0", "title": "Red scarf"},
        price=500,
        currency="USD",
        quantity=10,
        per_user_limit=2,
        buyers="signed_in",
        starts_at=now,
        ends_at=now + 60_000,
        hold_ms=60_000,
        created_at=now,
        available=10,
        held=0,
        paid=0,
        version=0,
        announced=0,
    )


def change(sale: Sale, n: int, status: str, version: int, payment_ref: str = "") -> tuple[str, str, str]:
    """A log entry as a sale script writes it: entry id, change, the order after it (JSON, with its version)."""
    at = now_ms()
    order: dict[str, Any] = {
        "id": f"{sale.id}.{n:04d}",
        "user_id": f"u{n}",
        "quantity": 1,
        "status": status,
        "created_at": at,
        "hold_expires_at": at + 60_000,
        "idempotency_key": f"k{n}",
        "version": version,
    }
    if status == "paid":
        order |= {"paid_at": at + 1, "payment_ref": payment_ref or f"auth_{n}", "payment_key": f"pay{n}"}
    return f"{at}-{n}", status, orjson.dumps(order).decode()


def batch(sale: Sale, entries: list[tuple[str, str, str]]) -> LogBatch:
    ids, changes, data = (list(column) for column in zip(*entries, strict=True))
    return LogBatch(sale, ids, changes, data)
