"""Auction tests: two server processes on the session's stores, with a fast clock, short payment holds and the
per-person bid limit lifted (the tests bid as hundreds of people from one address), and the steps people take."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from tests.conftest import Shop, host_starts, make_shop, two_servers
from tests.sale_helpers import auth, wait_until
from tests.timing import seconds

AUCTION_ENV = {
    "AUCTION_CLOCK_MS": "50",
    "AUCTION_MIN_SECONDS": "1",
    "AUCTION_PAY_MIN_SECONDS": "1",
    "SALE_CLOCK_MS": "50",
    "LIMIT_BIDS": "100000/1",
}


pair = two_servers(
    "pair", "auctions", AUCTION_ENV, "Two server processes whose auction and sale clocks run every 50 ms."
)


@pytest.fixture
def shop(pair: list[ServerProcess], redis_url: str) -> Shop:
    return make_shop(pair[0].base_url, pair[0].ws_url, redis_url)


def start(shop: Shop, **terms: Any) -> httpx.Response:
    return host_starts(shop, "auctions", {"product_id": shop.products[0], "starting_bid": 1000,
                                          "duration_seconds": 60, **terms})  # fmt: skip


def started(shop: Shop, **terms: Any) -> dict[str, Any]:
    response = start(shop, **terms)
    assert response.status_code == 201, response.text
    return dict(response.json())


def bid(base_url: str, token: str, auction_id: str, amount: int, max_: int | None = None,
        key: str | None = None) -> httpx.Response:  # fmt: skip
    body: dict[str, int] = {"amount": amount} if max_ is None else {"amount": amount, "max": max_}
    return httpx.post(
        f"{base_url}/api/auctions/{auction_id}/bids",
        json=body,
        headers={**auth(token), "Idempotency-Key": key or secrets.token_hex(8)},
        timeout=seconds(10),
    )


def placed(base_url: str, token: str, auction_id: str, amount: int, max_: int | None = None) -> dict[str, Any]:
    response = bid(base_url, token, auction_id, amount, max_)
    assert response.status_code == 201, response.text
    return dict(response.json())


def card(base_url: str, auction_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/auctions/{auction_id}", timeout=seconds(10))
    assert response.status_code == 200, response.text
    return dict(response.json())


def reaches(base_url: str, auction_id: str, *states: str, timeout: float = 10.0) -> dict[str, Any]:
    """The card once the auction is in one of these states."""
    wait_until(lambda: card(base_url, auction_id)["state"] in states, timeout)
    return card(base_url, auction_id)
