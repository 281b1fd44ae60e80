"""Customer-service tests: two server processes on the session's stores (a message written on one reaches sockets
on the other), answers notified after a short wait, and the steps a buyer and the staff take."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from tests.conftest import Shop, make_shop, two_servers
from tests.sale_helpers import auth
from tests.timing import seconds

NOTIFY_AFTER_MS = 1000
SERVICE_ENV = {"SERVICE_NOTIFY_AFTER_MS": str(NOTIFY_AFTER_MS), "SERVICE_PASS_MS": "50"}


desks = two_servers(
    "desks",
    "service",
    SERVICE_ENV,
    "Two server processes whose notice pass runs every 50 ms, notifying answers not received within a second.",
)


@pytest.fixture
def shop(desks: list[ServerProcess], redis_url: str) -> Shop:
    return make_shop(desks[0].base_url, desks[0].ws_url, redis_url)


def ask(
    shop: Shop, buyer_token: str, text: str, key: str | None = None, base_url: str | None = None, **about: str
) -> httpx.Response:
    """POST a buyer's message to the shop (a fresh Idempotency-Key unless given)."""
    return httpx.post(
        f"{base_url or shop.base_url}/api/merchants/{shop.merchant_id}/messages",
        json={"text": text, **about},
        headers={**auth(buyer_token), "Idempotency-Key": key or secrets.token_hex(8)},
        timeout=seconds(10),
    )


def asked(shop: Shop, buyer_token: str, text: str, **about: str) -> dict[str, Any]:
    response = ask(shop, buyer_token, text, **about)
    assert response.status_code == 201, response.text
    return dict(response.json())


def staff_call(
    shop: Shop, token: str, method: str, path: str, base_url: str | None = None, **kwargs: Any
) -> httpx.Response:
    """A call to the shop's service API (`path` after /api/merchants/{m}/service)."""
    url = f"{base_url or shop.base_url}/api/merchants/{shop.merchant_id}/service{path}"
    headers = {**auth(token), **kwargs.pop("headers", {})}
    return httpx.request(method, url, headers=headers, timeout=seconds(10), **kwargs)


def answer(shop: Shop, token: str, thread_id: str, text: str, base_url: str | None = None) -> dict[str, Any]:
    response = staff_call(shop, token, "POST", f"/threads/{thread_id}/messages", base_url, json={"text": text},
                          headers={"Idempotency-Key": secrets.token_hex(8)})  # fmt: skip
    assert response.status_code == 201, response.text
    return dict(response.json())


def conversation(shop: Shop, buyer_token: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages", params=params,
                         headers=auth(buyer_token), timeout=seconds(10))  # fmt: skip
    assert response.status_code == 200, response.text
    return dict(response.json())


def inbox(shop: Shop, token: str, **params: Any) -> dict[str, Any]:
    response = staff_call(shop, token, "GET", "/threads", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def staff_thread(shop: Shop, token: str, thread_id: str) -> dict[str, Any]:
    response = staff_call(shop, token, "GET", f"/threads/{thread_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())
