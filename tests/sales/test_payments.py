"""Paying for holds through the sandbox provider: declines, idempotent retries, final payments, expiry, late payments
refused and voided, and every movement of money a row."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from server.ledger.client import Database
from server.sales.payments import SLOW_CAPTURE_CARD, SLOW_CARD, PaymentError, SandboxProvider, card_digits
from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop
from tests.sale_helpers import (
    DECLINED_CARD,
    GOOD_CARD,
    assert_error,
    auth,
    buy,
    create_sale,
    invariant,
    pay,
    query,
    viewer_token,
    wait_for_server_time,
    wait_until,
)
from tests.timing import seconds


@contextlib.asynccontextmanager
async def sandbox(database_url: str, slow_card_ms: int = 2000) -> AsyncIterator[SandboxProvider]:
    """A sandbox provider on the tests' PostgreSQL, as a server process makes it."""
    db = Database(database_url, pool_size=2)
    await db.open()
    try:
        yield SandboxProvider(db, slow_card_ms)
    finally:
        await db.close()


def authorizations(database_url: str, reference: str) -> list[dict[str, Any]]:
    """The sandbox gateway's book for one order (table sandbox_authorizations), oldest first."""
    return query(
        database_url, "SELECT * FROM sandbox_authorizations WHERE reference = $1 ORDER BY created_at", reference
    )


def states(database_url: str, order_id: str) -> list[str]:
    return [row["state"] for row in authorizations(database_url, order_id)]


def money(database_url: str, order_id: str) -> list[tuple[str, str, int, bool]]:
    """Our rows of the order's money movements (table payments): (kind, authorization, amount, by the reconciler)."""
    rows = query(
        database_url,
        "SELECT kind, authorization_id, amount, by_reconciler FROM payments WHERE order_id = $1 ORDER BY payment_id",
        order_id,
    )
    return [(row["kind"], row["authorization_id"], row["amount"], row["by_reconciler"]) for row in rows]


def read(shop: Shop, token: str, order_id: str) -> dict[str, Any]:
    response = httpx.get(f"{shop.base_url}/api/orders/{order_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the sandbox provider ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("card", "approved", "decline"),
    [
        ("4242424242424242", True, None),
        ("4242 4242 4242 4242", True, None),
        ("5555-5555-5555-4444", True, None),
        (SLOW_CAPTURE_CARD, True, None),
        ("4000000000000002", False, "card_declined"),
        ("4000000000009995", False, "insufficient_funds"),
        ("4000000000000069", False, "expired_card"),
        ("4111111111111111", False, "card_declined"),  # a real-looking card is not a test card
        ("4242424242424241", False, "incorrect_number"),
        ("1234", False, "incorrect_number"),
        ("", False, "incorrect_number"),
    ],
)
async def test_sandbox_cards_are_deterministic(
    database_url: str, card: str, approved: bool, decline: str | None
) -> None:
    """Each test card always gives the same answer; the same (reference, key, card) returns the same authorization,
    another key a new one; the gateway's book keeps the last four digits, never the card number."""
    reference = f"ref-{secrets.token_hex(6)}"
    async with sandbox(database_url) as provider:
        first = await provider.authorize(reference=reference, key="k1", amount=100, currency="USD", card_number=card)
        again = await provider.authorize(reference=reference, key="k1", amount=100, currency="USD", card_number=card)
        other = await provider.authorize(reference=reference, key="k2", amount=100, currency="USD", card_number=card)
        booked = await provider.lookup(reference)
    assert (first.approved, first.decline_code) == (approved, decline)
    assert (other.approved, other.decline_code) == (approved, decline)
    assert again == first
    assert (first.reference, first.amount, first.currency) == (reference, 100, "USD")
    assert first.state == ("authorized" if approved else "declined")
    digits = card_digits(card)
    rows = authorizations(database_url, reference)
    if decline == "incorrect_number":  # not a card at all: nothing to book
        assert first.id == "" and booked == rows == []
        return
    assert other.id != first.id
    assert booked == [first, other]
    assert [row["last4"] for row in rows] == [digits[-4:]] * 2
    assert all(digits not in str(value) for row in rows for value in row.values())


@pytest.mark.anyio
async def test_sandbox_moves_are_final_and_idempotent(database_url: str) -> None:
    """Capture, void and refund each move an authorization once (repeating one is fine); a move from the wrong
    state, or of an unknown authorization, is a PaymentError. Asked again, the gateway hands out a captured
    authorization, never a voided one."""
    reference = f"ref-{secrets.token_hex(6)}"
    terms: dict[str, Any] = {"amount": 1, "currency": "USD", "card_number": GOOD_CARD}
    async with sandbox(database_url) as provider:
        one = await provider.authorize(reference=f"{reference}-cap", key="k", **terms)
        two = await provider.authorize(reference=f"{reference}-void", key="k", **terms)
        await provider.capture(one.id)
        await provider.capture(one.id)
        await provider.void(two.id)
        await provider.void(two.id)
        for move, authorization_id in [
            (provider.void, one.id),
            (provider.capture, two.id),
            (provider.refund, two.id),
            (provider.capture, "auth_nosuchthing"),
        ]:
            with pytest.raises(PaymentError):
                await move(authorization_id)
        assert await provider.authorize(reference=f"{reference}-cap", key="k", **terms) == replace(
            one, state="captured"
        )
        renewed = await provider.authorize(reference=f"{reference}-void", key="k", **terms)
        assert renewed.id != two.id and renewed.state == "authorized"
        await provider.refund(one.id)
        await provider.refund(one.id)
        with pytest.raises(PaymentError):
            await provider.capture(one.id)
        await provider.void(renewed.id)
        booked = [*await provider.lookup(f"{reference}-cap"), *await provider.lookup(f"{reference}-void")]
    assert {item.id: item.state for item in booked} == {one.id: "refunded", two.id: "voided", renewed.id: "voided"}


@pytest.mark.anyio
async def test_the_slow_capture_card_is_approved_at_once_and_captured_slowly(database_url: str) -> None:
    """4000 0000 0000 0341 is approved without delay; its capture takes SANDBOX_SLOW_CARD_MS (a crash test's window)."""
    reference = f"ref-{secrets.token_hex(6)}"
    async with sandbox(database_url, slow_card_ms=1000) as provider:
        started = time.monotonic()
        authorization = await provider.authorize(
            reference=reference, key="k", amount=5, currency="USD", card_number=SLOW_CAPTURE_CARD
        )
        assert authorization.approved and time.monotonic() - started < 1
        started = time.monotonic()
        await provider.capture(authorization.id)
        assert time.monotonic() - started >= 1
        assert [item.state for item in await provider.lookup(reference)] == ["captured"]


# --- paying through the API ----------------------------------------------------------------------


def test_a_declined_card_keeps_the_hold_and_another_card_pays(shop: Shop, database_url: str) -> None:
    """A decline is 402 payment_declined with nothing moved; a good card then pays, captured at the provider, and
    the authorization and its capture are on the record."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    message = assert_error(pay(shop.base_url, token, order["order_id"], DECLINED_CARD), 402, "payment_declined")
    assert "declined" in message
    assert "insufficient funds" in assert_error(
        pay(shop.base_url, token, order["order_id"], "4000000000009995"), 402, "payment_declined"
    )
    assert read(shop, token, order["order_id"])["status"] == "held"
    assert invariant(shop, sale["id"])["held"] == 1
    assert money(database_url, order["order_id"]) == []  # nothing approved, nothing to record
    paid = pay(shop.base_url, token, order["order_id"])
    assert paid.status_code == 200
    assert paid.json()["status"] == "paid" and paid.json()["paid_at"] >= order["created_at"]
    body = invariant(shop, sale["id"])
    assert (body["held"], body["paid"]) == (0, 1)
    assert sorted(states(database_url, order["order_id"])) == ["captured", "declined", "declined"]
    [captured] = [row for row in authorizations(database_url, order["order_id"]) if row["state"] == "captured"]
    moved = (captured["authorization_id"], order["amount"], False)
    assert money(database_url, order["order_id"]) == [("authorization", *moved), ("capture", *moved)]


def test_a_paid_order_is_final(shop: Shop, database_url: str) -> None:
    """Paying again with another key is already_paid (nothing charged again), with the same key it is the paid order
    (a retry); cancelling is already_paid; it never expires."""
    sale = create_sale(shop, hold_seconds=1)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    first = pay(shop.base_url, token, order["order_id"], key="pay-1")
    assert first.status_code == 200
    assert_error(pay(shop.base_url, token, order["order_id"]), 409, "already_paid")
    assert_error(pay(shop.base_url, token, order["order_id"], "5555555555554444"), 409, "already_paid")
    retry = pay(shop.base_url, token, order["order_id"], key="pay-1")
    assert retry.status_code == 200, retry.text
    assert {**retry.json(), "server_time": 0} == {**first.json(), "server_time": 0}
    cancel = httpx.post(f"{shop.base_url}/api/orders/{order['order_id']}/cancel", headers=auth(token))
    assert_error(cancel, 409, "already_paid")
    # Past the hold: a held order taken after this one has expired (the sale clock has been by), this one has not.
    witness = viewer_token()
    unpaid = buy(shop.base_url, witness, sale["id"]).json()
    wait_for_server_time(shop, sale["id"], unpaid["hold_expires_at"])
    wait_until(lambda: read(shop, witness, unpaid["order_id"])["status"] == "expired")
    assert read(shop, token, order["order_id"])["status"] == "paid"
    assert invariant(shop, sale["id"])["paid"] == 1
    assert states(database_url, order["order_id"]) == ["captured"]
    assert [kind for kind, *_ in money(database_url, order["order_id"])] == ["authorization", "capture"]


def test_a_retry_after_a_lost_reply_returns_the_paid_order_and_charges_once(shop: Shop, database_url: str) -> None:
    """The buyer's client gives up on a payment while the gateway captures (the reply is lost); the retry with the
    same key is 200 with the paid order, not already_paid, and the card is charged once."""
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    url = f"{shop.base_url}/api/orders/{order['order_id']}/payment"
    headers = {**auth(token), "Idempotency-Key": "pay-lost"}
    with pytest.raises(httpx.ReadTimeout):  # its capture takes SANDBOX_SLOW_CARD_MS (2 s)
        httpx.post(url, json={"card_number": SLOW_CAPTURE_CARD}, headers=headers, timeout=0.5)
    retry = pay(shop.base_url, token, order["order_id"], SLOW_CAPTURE_CARD, key="pay-lost")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "paid" and retry.json()["order_id"] == order["order_id"]
    assert_error(pay(shop.base_url, token, order["order_id"], SLOW_CAPTURE_CARD), 409, "already_paid")
    assert states(database_url, order["order_id"]) == ["captured"]
    [captured] = authorizations(database_url, order["order_id"])
    moved = (captured["authorization_id"], order["amount"], False)
    assert money(database_url, order["order_id"]) == [("authorization", *moved), ("capture", *moved)]
    body = invariant(shop, sale["id"])
    assert (body["held"], body["paid"]) == (0, 1)


@pytest.mark.anyio
async def test_a_double_tap_on_pay_on_two_processes_charges_once(
    shop: Shop, server_factory: Any, database_url: str
) -> None:
    """10 identical payments at once (one key), half through each process: each is 200 with the same paid order,
    the gateway holds one authorization, captured once, and the unit is paid once."""
    second: ServerProcess = server_factory()
    sale = create_sale(shop)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    headers = {**auth(token), "Idempotency-Key": "pay-double-tap"}
    async with httpx.AsyncClient(timeout=seconds(10)) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    f"{base}/api/orders/{order['order_id']}/payment", json={"card_number": GOOD_CARD}, headers=headers
                )
                for base in [shop.base_url, second.base_url] * 5
            )
        )
    assert [reply.status_code for reply in replies] == [200] * 10, [reply.text for reply in replies]
    assert {(reply.json()["status"], reply.json()["paid_at"]) for reply in replies} == {
        ("paid", replies[0].json()["paid_at"])
    }
    booked = authorizations(database_url, order["order_id"])
    assert [row["state"] for row in booked] == ["captured"], (booked, money(database_url, order["order_id"]))
    moved = (booked[0]["authorization_id"], order["amount"], False)
    assert money(database_url, order["order_id"]) == [("authorization", *moved), ("capture", *moved)]
    body = invariant(shop, sale["id"])
    assert (body["held"], body["paid"]) == (0, 1)


def test_payment_after_the_hold_expired_is_refused_and_nothing_is_charged(shop: Shop, database_url: str) -> None:
    """After the hold's deadline, payment is 409 hold_expired, the card is not charged (any authorization is voided),
    and the units are back."""
    sale = create_sale(shop, quantity=1, per_user_limit=1, hold_seconds=1)
    token = viewer_token()
    order = buy(shop.base_url, token, sale["id"]).json()
    assert order["hold_expires_at"] == order["created_at"] + 1000
    wait_for_server_time(shop, sale["id"], order["hold_expires_at"])
    message = assert_error(pay(shop.base_url, token, order["order_id"]), 409, "hold_expired")
    assert "not charged" in message
    # Refused before the card is asked when the clock had released the hold, else authorized and voided.
    assert set(states(database_url, order["order_id"])) <= {"voided"}
    assert "capture" not in [kind for kind, *_ in money(database_url, order["order_id"])]
    wait_until(lambda: invariant(shop, sale["id"])["available"] == 1)
    late = read(shop, token, order["order_id"])
    assert late["status"] == "expired" and late["closed_at"] >= order["hold_expires_at"]
    assert buy(shop.base_url, viewer_token(), sale["id"]).status_code == 201  # back on sale for someone else


def test_a_payment_that_outlives_the_hold_is_voided_not_oversold(shop: Shop, database_url: str) -> None:
    """The seckill bug: the gateway answers after the hold expired and the unit went to someone else.

    The order is refused hold_expired, its authorization voided (not captured), and the unit sold once.
    """
    sale = create_sale(shop, quantity=1, per_user_limit=1, hold_seconds=1)
    slow_buyer, next_buyer = viewer_token(), viewer_token()
    order = buy(shop.base_url, slow_buyer, sale["id"]).json()
    started = time.monotonic()
    late = pay(shop.base_url, slow_buyer, order["order_id"], SLOW_CARD)  # approved, but the sandbox takes 2 s to say so
    assert time.monotonic() - started >= 2
    assert_error(late, 409, "hold_expired")
    assert states(database_url, order["order_id"]) == ["voided"]
    assert [kind for kind, *_ in money(database_url, order["order_id"])] == ["authorization", "void"]
    wait_until(lambda: invariant(shop, sale["id"])["available"] == 1)
    other = buy(shop.base_url, next_buyer, sale["id"]).json()
    assert pay(shop.base_url, next_buyer, other["order_id"]).status_code == 200
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"], body["paid"]) == (0, 0, 1)


@pytest.mark.anyio
async def test_expired_holds_go_back_on_sale_exactly_once(shop: Shop, server_factory: Any, database_url: str) -> None:
    """Two processes run the sale clock; each expired hold is released once (on the record: held, then expired, and
    nothing after), and viewers see the stock come back."""
    second: ServerProcess = server_factory()
    sale = create_sale(shop, quantity=6, per_user_limit=2, hold_seconds=1)
    async with await RoomClient.connect(f"{second.ws_url}/ws/rooms/{shop.room_id}?token={shop.buyer()}") as viewer:
        orders = [buy(base, viewer_token(), sale["id"], quantity=2).json() for base in (shop.base_url, second.base_url)]
        await viewer.wait_event("stock", sale_id=sale["id"], available=2)
        back = await viewer.wait_event("stock", sale_id=sale["id"], available=6, timeout=5)
        assert back["held"] == 0
    body = invariant(shop, sale["id"])
    assert (body["available"], body["held"], body["paid"]) == (6, 0, 0)

    def changes() -> dict[str, list[tuple[int, str]]]:
        rows = query(
            database_url,
            "SELECT order_id, version, change FROM order_changes WHERE sale_id = $1 ORDER BY order_id, version",
            sale["id"],
        )
        found: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            found.setdefault(row["order_id"], []).append((row["version"], row["change"]))
        return found

    wait_until(lambda: sum(change == "expired" for found in changes().values() for _, change in found) >= 2)
    assert changes() == {order["order_id"]: [(1, "held"), (2, "expired")] for order in orders}
