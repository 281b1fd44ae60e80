"""Giveaway tests: two server processes on the session's stores, with a fast clock and short watch slots, and the
steps a host and a viewer take."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from tests.conftest import Shop, host_starts, make_shop, two_servers
from tests.sale_helpers import auth, wait_until
from tests.timing import seconds

SLOT_MS = 250
GIVEAWAY_ENV = {
    "GIVEAWAY_CLOCK_MS": "50",
    "GIVEAWAY_WATCH_SLOT_MS": str(SLOT_MS),
    "GIVEAWAY_MIN_SECONDS": "1",
    "GIVEAWAY_WATCH_MARGIN_SECONDS": "0",
    "GIVEAWAY_CLAIM_MIN_SECONDS": "1",
}


pair = two_servers(
    "pair",
    "giveaways",
    GIVEAWAY_ENV,
    "Two server processes whose giveaway clock runs every 50 ms, crediting watch time in 250 ms slots.",
)


@pytest.fixture
def shop(pair: list[ServerProcess], redis_url: str) -> Shop:
    return make_shop(pair[0].base_url, pair[0].ws_url, redis_url)


def start(shop: Shop, **terms: Any) -> httpx.Response:
    return host_starts(shop, "giveaways", {"product_id": shop.products[0], "winners": 1, "duration_seconds": 60,
                                           **terms})  # fmt: skip


def started(shop: Shop, **terms: Any) -> dict[str, Any]:
    response = start(shop, **terms)
    assert response.status_code == 201, response.text
    return dict(response.json())


def enter(base_url: str, token: str, giveaway_id: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/giveaways/{giveaway_id}/entries", headers=auth(token), timeout=seconds(10))


def progress(base_url: str, token: str, giveaway_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/giveaways/{giveaway_id}/me", headers=auth(token), timeout=seconds(10))
    assert response.status_code == 200, response.text
    return dict(response.json())


def card(base_url: str, giveaway_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/giveaways/{giveaway_id}", timeout=seconds(10))
    assert response.status_code == 200, response.text
    return dict(response.json())


def drawn(base_url: str, giveaway_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The card once the clock has drawn the giveaway."""
    wait_until(lambda: card(base_url, giveaway_id)["state"] == "drawn", timeout)
    return card(base_url, giveaway_id)


def claim(base_url: str, token: str, giveaway_id: str, **address: Any) -> httpx.Response:
    body = {"name": "Ada Winner", "address": "1 Main St, Springfield", **address}
    return httpx.post(
        f"{base_url}/api/giveaways/{giveaway_id}/claim", json=body, headers=auth(token), timeout=seconds(10)
    )
