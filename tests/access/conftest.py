"""Servers with the real per-address limits (the shared test server lifts them), and signing people in for real:
a code asked for, read from the sandbox messenger's inbox, and signed in with."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import httpx
import pytest
import redis

from loadtests.support.server import LOOPBACK_LIMITS, ServerProcess
from server.config import Settings
from tests.conftest import Shop, make_shop
from tests.sale_helpers import auth
from tests.timing import seconds

Strict = Callable[..., ServerProcess]


def _default(name: str) -> str:
    """A setting's default as its environment variable writes it (COUNT/SECONDS for a rate)."""
    value = next(field.default for field in fields(Settings) if field.name == name.lower())
    return f"{value[0]}/{value[1]}" if isinstance(value, tuple) else str(value)


REAL_LIMITS = {name: _default(name) for name in LOOPBACK_LIMITS}


@pytest.fixture
def strict(stores: dict[str, str], server_factory: Strict) -> Strict:
    """Start servers on the session's Redis and PostgreSQL with the limits a real server keeps (`env` on top), their
    buckets empty (every test's clients come from 127.0.0.1)."""
    client = redis.Redis.from_url(stores["REDIS_URL"])
    try:
        for key in client.scan_iter("limit:*", count=1000):
            client.delete(key)
    finally:
        client.close()
    return lambda **env: server_factory(**{**REAL_LIMITS, **env})


def strict_shop(server: ServerProcess, redis_url: str) -> Shop:
    return make_shop(server.base_url, server.ws_url, redis_url)


def new_email() -> str:
    return f"p-{secrets.token_hex(5)}@people.example"


def code_for(base_url: str, destination: dict[str, str]) -> str:
    """The newest code the sandbox messenger sent there."""
    inbox = httpx.get(f"{base_url}/api/sandbox/inbox", params=destination, timeout=seconds(10))
    assert inbox.status_code == 200, inbox.text
    found = re.search(r"code is (\d{6})", inbox.json()["messages"][0]["text"])
    assert found is not None
    return found[1]


def sign_in(base_url: str, destination: dict[str, str] | None = None, token: str | None = None) -> dict[str, Any]:
    """Sign in as a member (a new email unless given), from the guest `token` when there is one; the session."""
    destination = destination or {"email": new_email()}
    sent = httpx.post(f"{base_url}/api/sign-in/code", json=destination, timeout=seconds(10))
    assert sent.status_code == 202, sent.text
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {**destination, "code": code_for(base_url, destination)}
    signed = httpx.post(f"{base_url}/api/sign-in", json=body, headers=headers, timeout=seconds(10))
    assert signed.status_code == 200, signed.text
    session: dict[str, Any] = signed.json()
    return session


def add_staff(shop: Shop, role: str = "host", name: str = "Hana") -> dict[str, Any]:
    """A new person added to the shop's staff by its admin (through the API): the staff member, with `email`."""
    email = new_email()
    added = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/staff",
        json={"email": email, "name": name, "role": role},
        headers=auth(shop.admin),
        timeout=seconds(10),
    )
    assert added.status_code == 201, added.text
    member: dict[str, Any] = {**added.json(), "email": email}
    return member
