"""Share-and-earn tests: a server whose commission pass runs often, a shop with its programme on, and the steps a
sharer and a buyer take."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from tests.conftest import Person, Shop, make_shop, start_server
from tests.sale_helpers import auth, buy, create_sale, pay, query, wait_until

PASS_MS = "50"


@pytest.fixture(scope="module")
def referral_server(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on the session's stores whose commission pass runs every 50 ms."""
    started = start_server(tmp_path_factory.mktemp("referrals"), {**stores, "REFERRAL_PASS_MS": PASS_MS})
    yield started
    started.stop()


@pytest.fixture
def shop(referral_server: ServerProcess, redis_url: str) -> Shop:
    """A fresh shop whose programme pays 10% on level 1 and 5% on level 2, withdrawable at once."""
    made = make_shop(referral_server.base_url, referral_server.ws_url, redis_url)
    rates = {"level1": {"rate_bp": 1000}, "level2": {"rate_bp": 500}}
    program(made, enabled=True, refund_days=0, levels=2, default=rates)
    return made


def program(shop: Shop, **settings: Any) -> dict[str, Any]:
    response = httpx.put(f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals", json=settings,
                         headers=auth(shop.admin))  # fmt: skip
    assert response.status_code == 200, response.text
    return dict(response.json())


def share(shop: Shop, sharer: Person, product_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"room_id": shop.room_id}
    if product_id:
        body["product_id"] = product_id
    response = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/shares", json=body,
                          headers=auth(sharer.token))  # fmt: skip
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def visit(shop: Shop, code: str, visitor: Person) -> dict[str, Any]:
    response = httpx.post(f"{shop.base_url}/api/shares/{code}/visits", headers=auth(visitor.token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def buy_and_pay(shop: Shop, sale_id: str, buyer: Person, quantity: int = 1, base_url: str | None = None) -> str:
    """The buyer holds `quantity` units and pays; the order id."""
    url = base_url or shop.base_url
    held = buy(url, buyer.token, sale_id, quantity)
    assert held.status_code == 201, held.text
    order_id = str(held.json()["order_id"])
    paid = pay(url, buyer.token, order_id)
    assert paid.status_code == 200, paid.text
    return order_id


def wait_passed(database_url: str, order_id: str) -> None:
    """Return once the commission pass has gone past the order's payment (a programme change no longer counts)."""
    sql = (
        "SELECT 1 FROM referral_cursor r, order_changes c WHERE r.name = 'paid' AND c.order_id = $1"
        " AND c.change = 'paid' AND r.position >= c.seq"
    )
    wait_until(lambda: query(database_url, sql, order_id) != [])


def commissions(shop: Shop, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/commissions", params=params,
                         headers=auth(shop.admin))  # fmt: skip
    assert response.status_code == 200, response.text
    return list(response.json())


def wait_commissions(shop: Shop, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The merchant's commission rows once there are `count` of them (no more appear after)."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = commissions(shop)
        return len(found) >= count

    wait_until(enough, timeout)
    return found


def earnings(shop: Shop, person: Person) -> dict[str, Any]:
    response = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/earnings", headers=auth(person.token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def new_sale(shop: Shop, **terms: Any) -> str:
    return str(create_sale(shop, **{"price": 1000, "quantity": 100, "per_user_limit": 5, **terms})["id"])


__all__ = ["Path", "Person"]
