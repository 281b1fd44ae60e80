"""Share and earn against a hostile or mistaken client: wrong types, other people's things, signed-out sessions;
each refused with a clear error and nothing changed."""

from __future__ import annotations

import httpx

from tests.conftest import Shop, make_shop
from tests.referrals.conftest import Person, buy_and_pay, earnings, new_sale, share, visit, wait_commissions
from tests.sale_helpers import assert_error, auth


def test_wrong_types_are_400_never_500(shop: Shop) -> None:
    """Bodies with wrong types or values are refused 400 with what is wrong."""
    ana = Person("Ana")
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}"
    admin = auth(shop.admin)
    wrong = [{"levels": "2"}, {"enabled": 1}, {"binding": "forever"}, {"refund_days": -1}, {"daily_cap": 1.5}]
    wrong += [{"currency": "XXX"}, {"default": []}, {"default": {"level1": {"rate_bp": 10001}}}, {"wat": 1}]
    for body in wrong:
        assert_error(httpx.put(f"{base}/referrals", json=body, headers=admin), 400, "bad_request")
    assert_error(httpx.post(f"{base}/shares", json={"room_id": 5}, headers=auth(ana.token)), 400, "bad_request")
    withdraw = {**auth(ana.token), "Idempotency-Key": "k1"}
    for body in ({"amount": "100", "recipient": "a@b.example"}, {"amount": 100, "recipient": ""},
                 {"amount": True, "recipient": "a@b.example"}, {"amount": 100, "recipient": "x" * 300}):  # fmt: skip
        assert_error(httpx.post(f"{base}/withdrawals", json=body, headers=withdraw), 400, "bad_request")
    assert_error(httpx.post(f"{base}/withdrawals", json={"amount": 100, "recipient": "a@b.example"},
                            headers=auth(ana.token)), 400, "idempotency_key")  # fmt: skip
    assert_error(httpx.get(f"{base}/referrals/commissions", params={"state": "lost"}, headers=admin), 400,
                 "bad_request")  # fmt: skip
    assert_error(httpx.post(f"{base}/withdrawals/po_x/explode", headers=admin), 404, "not_found")
    assert_error(httpx.post(f"{base}/withdrawals/po_x/approve", headers=admin), 404, "unknown_payout")


def test_another_merchants_staff_and_plain_viewers_are_refused(shop: Shop, redis_url: str) -> None:
    """The merchant side answers only the merchant's staff (and changes only its admins); a guest may not withdraw;
    a payout of one merchant cannot be moved through another."""
    other = make_shop(shop.base_url, shop.ws_url, redis_url)
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}"
    ana = Person("Ana")
    for token in (other.admin, ana.token):
        for path in ("referrals", "referrals/sharers", "referrals/commissions", "withdrawals"):
            assert_error(httpx.get(f"{base}/{path}", headers=auth(token)), 403, "forbidden")
    assert_error(httpx.put(f"{base}/referrals", json={"levels": 1}, headers=auth(shop.host)), 403, "forbidden")
    assert_error(httpx.get(f"{base}/referrals/commissions.csv", headers=auth(shop.host)), 403, "forbidden")
    guest = {**auth(shop.guest()), "Idempotency-Key": "g1"}
    assert_error(httpx.post(f"{base}/withdrawals", json={"amount": 100, "recipient": "g@b.example"}, headers=guest),
                 403, "sign_in_required")  # fmt: skip
    assert_error(httpx.post(f"{base}/shares", json={"room_id": other.room_id}, headers=auth(ana.token)), 404,
                 "unknown_room")  # fmt: skip


def test_a_signed_out_session_cannot_open_a_link(shop: Shop) -> None:
    """Visits need a valid session: none, or a forged token, is 401 and binds nobody."""
    ana, bob = Person("Ana"), Person("Bob")
    code = share(shop, ana)["code"]
    assert_error(httpx.post(f"{shop.base_url}/api/shares/{code}/visits"), 401, "invalid_token")
    assert_error(httpx.post(f"{shop.base_url}/api/shares/{code}/visits", headers=auth(bob.token + "x")), 401,
                 "invalid_token")  # fmt: skip
    assert earnings(shop, ana)["visitors"] == 0
    assert visit(shop, code, bob)["reason"] == "bound"


def test_commissions_are_listed_a_page_at_a_time(shop: Shop) -> None:
    """`before` pages back through the merchant's commissions; a `before` that is not an entry id is 400."""
    ana = Person("Ana")
    code = share(shop, ana)["code"]
    sale = new_sale(shop)
    for _ in range(3):
        buyer = Person()
        visit(shop, code, buyer)
        buy_and_pay(shop, sale, buyer)
    rows = wait_commissions(shop, 3)
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/commissions"
    older = httpx.get(base, params={"before": rows[0]["entry_id"]}, headers=auth(shop.admin)).json()
    assert [row["entry_id"] for row in older] == [row["entry_id"] for row in rows[1:]] and len(older) == 2
    assert_error(httpx.get(base, params={"before": "x"}, headers=auth(shop.admin)), 400, "bad_request")
