"""The sharers' money: refunds reverse commissions (frozen or not), a negative balance is paid back by later
earnings, withdrawals move through their states with the sandbox payout provider (docs/referrals.md)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import orjson

from server.referrals.payouts import SandboxPayouts
from tests.conftest import SECRET_KEY, Shop, make_shop
from tests.referrals.conftest import Person, buy_and_pay, earnings, new_sale, program, share, visit, wait_commissions
from tests.sale_helpers import assert_error, auth, query, wait_until


def refund(shop: Shop, order_id: str, token: str | None = None) -> httpx.Response:
    return httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/orders/{order_id}/refund",
                      json={"reason": "damaged"}, headers=auth(token or shop.admin))  # fmt: skip


def withdraw(shop: Shop, sharer: Person, amount: int, recipient: str, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/withdrawals",
                      json={"amount": amount, "recipient": recipient},
                      headers={**auth(sharer.token), "Idempotency-Key": key or secrets.token_hex(8)})  # fmt: skip


def move(shop: Shop, payout_id: str, step: str) -> httpx.Response:
    return httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/withdrawals/{payout_id}/{step}",
                      headers=auth(shop.admin))  # fmt: skip


def payout(shop: Shop, payout_id: str) -> dict[str, Any]:
    rows = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/withdrawals", headers=auth(shop.admin))
    return next(row for row in rows.json() if row["payout_id"] == payout_id)


def wait_state(shop: Shop, payout_id: str, state: str) -> dict[str, Any]:
    wait_until(lambda: payout(shop, payout_id)["state"] == state)
    return payout(shop, payout_id)


def referred(shop: Shop, sharer: Person, buyers: int = 1, quantity: int = 1) -> list[str]:
    """`buyers` people come through the sharer's link and pay (1000 a unit): their order ids."""
    code, sale = share(shop, sharer)["code"], new_sale(shop)
    orders = []
    for _ in range(buyers):
        buyer = Person()
        visit(shop, code, buyer)
        orders.append(buy_and_pay(shop, sale, buyer, quantity))
    return orders


def test_a_refund_inside_the_window_reverses_the_frozen_commission(shop: Shop, database_url: str) -> None:
    """Refunded while frozen: the commission is reversed and never becomes withdrawable; the gateway refunded the
    order once, and a second refund changes nothing."""
    program(shop, refund_days=7, levels=1)
    ana = Person("Ana")
    [order] = referred(shop, ana)
    [row] = wait_commissions(shop, 1)
    assert row["state"] == "frozen" and earnings(shop, ana)["frozen"] == 100
    done = refund(shop, order)
    assert done.status_code == 201 and done.json()["amount"] == 1000, done.text
    again = refund(shop, order)
    assert again.status_code == 200 and again.json() == done.json()
    assert_error(refund(shop, order, shop.host), 403, "forbidden")
    wait_until(lambda: earnings(shop, ana)["frozen"] == 0)
    assert earnings(shop, ana)["withdrawable"] == 0
    wait_until(lambda: wait_commissions(shop, 1)[0]["state"] == "reversed")
    gateway = query(database_url, "SELECT kind FROM payments WHERE order_id = $1 ORDER BY payment_id", order)
    assert [payment["kind"] for payment in gateway] == ["authorization", "capture", "refund"]


def test_a_refund_after_a_payout_makes_the_balance_negative_and_later_earnings_pay_it_back(shop: Shop) -> None:
    """Withdrawn, then refunded: the balance goes below zero; the next commissions pay it back first."""
    program(shop, levels=1, min_withdrawal=100)
    ana = Person("Ana")
    [order] = referred(shop, ana, quantity=2)  # 200 earned
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == 200)
    asked = withdraw(shop, ana, 200, "ana@bank.example")
    assert asked.status_code == 201, asked.text
    assert earnings(shop, ana)["withdrawable"] == 0
    assert move(shop, asked.json()["payout_id"], "approve").status_code == 200
    wait_state(shop, asked.json()["payout_id"], "paid")
    assert refund(shop, order).status_code == 201
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == -200)
    referred(shop, ana, buyers=3)  # 3 x 100
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == 100)
    summary = earnings(shop, ana)
    assert (summary["withdrawn"], summary["orders"]) == (200, 4)
    assert_error(withdraw(shop, ana, 150, "ana@bank.example"), 409, "insufficient_balance")


def test_a_withdrawal_moves_requested_approved_failed_retried_paid(shop: Shop) -> None:
    """The flaky recipient's first transfer fails; the retry pays. Each step is in the audit log; the same
    Idempotency-Key asks once; below the minimum and above the balance are refused."""
    program(shop, levels=1, min_withdrawal=150)
    ana = Person("Ana")
    referred(shop, ana, buyers=4)
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == 400)
    assert_error(withdraw(shop, ana, 100, "ana@flaky.example"), 400, "below_minimum")
    assert_error(withdraw(shop, ana, 500, "ana@flaky.example"), 409, "insufficient_balance")
    asked = withdraw(shop, ana, 300, "ana@flaky.example", key="w1")
    assert asked.status_code == 201 and asked.json()["state"] == "requested", asked.text
    payout_id = asked.json()["payout_id"]
    repeat = withdraw(shop, ana, 300, "ana@flaky.example", key="w1")
    assert repeat.status_code == 200 and repeat.json()["payout_id"] == payout_id
    assert earnings(shop, ana)["withdrawable"] == 100
    assert_error(move(shop, payout_id, "retry"), 409, "wrong_state")
    assert move(shop, payout_id, "approve").status_code == 200
    failed = wait_state(shop, payout_id, "failed")
    assert failed["attempts"] == 1 and failed["failure"]
    assert earnings(shop, ana)["withdrawable"] == 100  # a failed payout stays debited until refused or retried
    assert move(shop, payout_id, "retry").status_code == 200
    paid = wait_state(shop, payout_id, "paid")
    assert paid["attempts"] == 2 and paid["provider_ref"].startswith("sbp_")
    assert_error(move(shop, payout_id, "refuse"), 409, "wrong_state")
    actions = [entry["action"] for entry in httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit",
                                                      headers=auth(shop.admin)).json()["entries"]]  # fmt: skip
    assert actions[:2] == ["withdrawal.retried", "withdrawal.approved"]


def test_a_refused_withdrawal_is_credited_back(shop: Shop) -> None:
    """Refused (requested, or failed for good): the amount is back on the balance, once."""
    program(shop, levels=1, min_withdrawal=100)
    ana = Person("Ana")
    referred(shop, ana, buyers=2)
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == 200)
    first = withdraw(shop, ana, 100, "ana@bank.example").json()["payout_id"]
    second = withdraw(shop, ana, 100, "ana@fail.example").json()["payout_id"]
    assert earnings(shop, ana)["withdrawable"] == 0
    assert move(shop, first, "refuse").json()["state"] == "refused"
    assert move(shop, second, "approve").status_code == 200
    wait_state(shop, second, "failed")
    assert move(shop, second, "refuse").json()["state"] == "refused"
    assert_error(move(shop, second, "refuse"), 409, "wrong_state")
    assert earnings(shop, ana)["withdrawable"] == 200 and earnings(shop, ana)["withdrawn"] == 0


def test_the_payout_callback_is_idempotent_and_checks_what_it_says(shop: Shop) -> None:
    """A callback with a wrong signature is 403; one whose amount or recipient is not the payout's is 409 and
    changes nothing; the provider's callback delivered again changes nothing."""
    program(shop, levels=1, min_withdrawal=100)
    ana = Person("Ana")
    referred(shop, ana)
    wait_until(lambda: earnings(shop, ana)["withdrawable"] == 100)
    payout_id = withdraw(shop, ana, 100, "ana@bank.example").json()["payout_id"]
    move(shop, payout_id, "approve")
    paid = wait_state(shop, payout_id, "paid")
    signer = SandboxPayouts(None, SECRET_KEY)  # type: ignore[arg-type]  # signs as the server's provider does
    said = {"reference": f"{payout_id}:1", "provider_ref": paid["provider_ref"], "status": "failed", "amount": 100,
            "currency": "USD", "recipient": "ana@bank.example"}  # fmt: skip

    def callback(data: dict[str, Any], signature: str | None = None) -> httpx.Response:
        body = orjson.dumps(data)
        return httpx.post(f"{shop.base_url}/api/payouts/callback", content=body,
                          headers={"Content-Type": "application/json",
                                   "X-Payout-Signature": signature or signer.sign(body)})  # fmt: skip

    assert_error(callback(said, "0" * 64), 403, "bad_signature")
    assert_error(callback({**said, "amount": 1_000_000}), 409, "mismatch")
    assert_error(callback({**said, "recipient": "mallory@bank.example"}), 409, "mismatch")
    late = callback(said)  # a stale answer after the payout was paid: nothing changes
    assert late.status_code == 200 and late.json()["state"] == "paid"
    assert payout(shop, payout_id)["state"] == "paid"


def test_the_buyer_sees_the_refund_on_their_order(shop: Shop, redis_url: str) -> None:
    """After a refund the buyer's order says so (amount, reason, when); another merchant's admin cannot refund it."""
    program(shop, levels=1)
    buyer = Person("Cy")
    order = buy_and_pay(shop, new_sale(shop), buyer)
    other = make_shop(shop.base_url, shop.ws_url, redis_url)
    assert_error(refund(other, order), 404, "unknown_order")
    assert refund(shop, order).status_code == 201
    seen = httpx.get(f"{shop.base_url}/api/orders/{order}", headers=auth(buyer.token)).json()
    assert seen["status"] == "paid" and seen["refund"]["amount"] == 1000 and seen["refund"]["reason"] == "damaged"
