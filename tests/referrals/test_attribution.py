"""Who earns for an order: levels, the binding modes, self-binding and loops, rules, self-purchase, flags, the cap
(docs/referrals.md)."""

from __future__ import annotations

import httpx

from loadtests.support.server import ServerProcess
from tests.conftest import Shop, make_shop
from tests.referrals.conftest import (
    Person,
    buy_and_pay,
    commissions,
    earnings,
    new_sale,
    program,
    share,
    visit,
    wait_commissions,
    wait_passed,
)
from tests.sale_helpers import assert_error, auth, query, wait_until


def by_level(rows: list[dict[str, object]], order_id: str) -> dict[object, dict[str, object]]:
    return {row["level"]: row for row in rows if row["order_id"] == order_id}


def test_a_buyer_through_a_link_earns_its_sharer_and_the_sharers_upline(shop: Shop) -> None:
    """Level 1 is the sharer of the buyer's link, level 2 the person who brought that sharer: 10% and 5% of what
    the buyer paid, once each."""
    ana, bob, cy = Person("Ana"), Person("Bob"), Person("Cy")
    assert visit(shop, share(shop, ana)["code"], bob)["reason"] == "bound"
    assert visit(shop, share(shop, bob)["code"], cy)["reason"] == "bound"
    order = buy_and_pay(shop, new_sale(shop), cy, 2)
    levels = by_level(wait_commissions(shop, 2), order)
    assert (levels[1]["sharer_id"], levels[1]["amount"], levels[1]["base"]) == (bob.user_id, 200, 2000)
    assert (levels[2]["sharer_id"], levels[2]["amount"]) == (ana.user_id, 100)
    assert earnings(shop, bob)["withdrawable"] == 200 and earnings(shop, bob)["buyers"] == 1
    assert earnings(shop, ana)["withdrawable"] == 100


def test_one_level_pays_only_the_sharer(shop: Shop) -> None:
    """With levels 1 the upline earns nothing."""
    program(shop, levels=1)
    ana, bob, cy = Person("Ana"), Person("Bob"), Person("Cy")
    visit(shop, share(shop, ana)["code"], bob)
    visit(shop, share(shop, bob)["code"], cy)
    order = buy_and_pay(shop, new_sale(shop), cy)
    rows = wait_commissions(shop, 1)
    assert list(by_level(rows, order)) == [1]


def test_first_touch_keeps_the_first_sharer(shop: Shop) -> None:
    """First touch: a second link changes nothing while the binding lasts; the first sharer earns."""
    ana, bob, cy = Person("Ana"), Person("Bob"), Person("Cy")
    assert visit(shop, share(shop, ana)["code"], cy)["reason"] == "bound"
    second = visit(shop, share(shop, bob)["code"], cy)
    assert (second["reason"], second["bound"]) == ("kept", False)
    assert visit(shop, share(shop, ana)["code"], cy)["reason"] == "already"
    order = buy_and_pay(shop, new_sale(shop), cy)
    assert by_level(wait_commissions(shop, 1), order)[1]["sharer_id"] == ana.user_id


def test_last_touch_rebinds_and_an_order_earns_for_the_binding_when_it_was_placed(shop: Shop) -> None:
    """Last touch: each link rebinds; an order placed before the rebinding still earns the sharer of that moment."""
    program(shop, binding="last_touch")
    ana, bob, cy = Person("Ana"), Person("Bob"), Person("Cy")
    visit(shop, share(shop, ana)["code"], cy)
    sale = new_sale(shop)
    held = httpx.post(f"{shop.base_url}/api/sales/{sale}/purchases", json={"quantity": 1},
                      headers={**auth(cy.token), "Idempotency-Key": "first"})  # fmt: skip
    assert held.status_code == 201, held.text
    assert visit(shop, share(shop, bob)["code"], cy)["reason"] == "rebound"
    first = held.json()["order_id"]
    paid = httpx.post(f"{shop.base_url}/api/orders/{first}/payment", json={"card_number": "4242424242424242"},
                      headers={**auth(cy.token), "Idempotency-Key": "pay-first"})  # fmt: skip
    assert paid.status_code == 200, paid.text
    second = buy_and_pay(shop, sale, cy)
    rows = wait_commissions(shop, 2)
    assert by_level(rows, first)[1]["sharer_id"] == ana.user_id
    assert by_level(rows, second)[1]["sharer_id"] == bob.user_id


def test_new_buyers_only_binds_people_who_never_paid_the_merchant(shop: Shop, database_url: str) -> None:
    """New buyers only: someone who paid the merchant before is not bound, and their orders earn nobody."""
    program(shop, binding="new_buyers")
    ana, old, new = Person("Ana"), Person("Old"), Person("New")
    sale = new_sale(shop)
    buy_and_pay(shop, sale, old)
    code = share(shop, ana)["code"]
    wait_until(lambda: query(database_url, "SELECT 1 FROM orders WHERE user_id = $1 AND status = 'paid'",
                             old.user_id) != [])  # fmt: skip
    assert visit(shop, code, old)["reason"] == "not_new"
    assert visit(shop, code, new)["reason"] == "bound"
    buy_and_pay(shop, sale, old)
    order = buy_and_pay(shop, sale, new)
    rows = wait_commissions(shop, 1)
    assert [row["order_id"] for row in rows] == [order]


def test_nobody_binds_to_themselves_nor_to_someone_they_brought(shop: Shop) -> None:
    """Opening your own link is `self`; B, brought by A, opening A's link is `loop` (A→B→A); neither binds."""
    ana, bob = Person("Ana"), Person("Bob")
    ana_code = share(shop, ana)["code"]
    assert visit(shop, ana_code, ana) == {"bound": False, "reason": "self", "sharer": {"name": "Ana"}}
    assert visit(shop, ana_code, bob)["reason"] == "bound"
    assert visit(shop, share(shop, bob)["code"], ana)["reason"] == "loop"
    buy_and_pay(shop, new_sale(shop), ana)
    order = buy_and_pay(shop, new_sale(shop), bob)
    rows = wait_commissions(shop, 1)
    assert [(row["order_id"], row["sharer_id"]) for row in rows] == [(order, ana.user_id)]


def test_the_most_specific_rule_counts_and_a_fixed_amount_wins(shop: Shop) -> None:
    """A sale's rule beats the product's, the product's the default; a fixed amount per unit beats a rate."""
    ana, cy = Person("Ana"), Person("Cy")
    visit(shop, share(shop, ana)["code"], cy)
    by_product, by_sale, by_default = new_sale(shop), new_sale(shop), new_sale(shop, product_id=shop.products[1])
    admin = auth(shop.admin)
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/rules"
    rule = httpx.put(f"{base}/product/{shop.products[0]}", json={"level1": {"rate_bp": 2000}}, headers=admin)
    assert rule.status_code == 200, rule.text
    rule = httpx.put(f"{base}/sale/{by_sale}", json={"level1": {"rate_bp": 3000, "fixed": 7}}, headers=admin)
    assert rule.status_code == 200, rule.text
    assert_error(httpx.put(f"{base}/sale/s_nope", json={"level1": {"fixed": 1}}, headers=admin), 404, "unknown_sale")
    assert_error(httpx.put(f"{base}/product/p0", json={"level3": {"fixed": 1}}, headers=admin), 400, "bad_request")
    orders = [buy_and_pay(shop, sale, cy, 2) for sale in (by_product, by_sale, by_default)]
    rows = wait_commissions(shop, 3)
    amounts = [by_level(rows, order)[1]["amount"] for order in orders]
    assert amounts == [400, 14, 200]  # 20% of 2000; 7 per unit; the default 10%
    assert httpx.delete(f"{base}/product/{shop.products[0]}", headers=admin).status_code == 204
    assert httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals",
                     headers=admin).json()["rules"] == [{"scope": "sale", "id": by_sale,
                                                          "level1": {"rate_bp": 3000, "fixed": 7}}]  # fmt: skip


def test_a_sharers_own_order_earns_only_with_self_purchase_on(shop: Shop, database_url: str) -> None:
    """Self-purchase off (the default): a sharer's own order earns nothing; on: it earns them level 1 (from the
    orders the commission pass reaches after the change)."""
    program(shop, levels=1)
    ana = Person("Ana")
    share(shop, ana)
    sale = new_sale(shop)
    wait_passed(database_url, buy_and_pay(shop, sale, ana))
    program(shop, self_purchase=True)
    order = buy_and_pay(shop, sale, ana)
    rows = wait_commissions(shop, 1)
    assert [(row["order_id"], row["sharer_id"]) for row in rows] == [(order, ana.user_id)]


def test_a_shared_card_flags_the_commission_for_the_merchant(shop: Shop) -> None:
    """The sharer paid with the card their buyer uses: the commission waits in review (not withdrawable) until the
    merchant approves it; a rejected one is reversed."""
    ana, cy, dee = Person("Ana"), Person("Cy"), Person("Dee")
    code = share(shop, ana)["code"]
    visit(shop, code, cy)
    visit(shop, code, dee)
    sale = new_sale(shop)
    buy_and_pay(shop, sale, ana)  # the sharer's own order, with the test card everyone here uses
    first, second = buy_and_pay(shop, sale, cy), buy_and_pay(shop, sale, dee)
    rows = wait_commissions(shop, 2)
    assert {row["flag"] for row in rows} == {"same_card"}
    assert {row["state"] for row in rows} == {"review"}
    assert earnings(shop, ana)["review"] == 200 and earnings(shop, ana)["withdrawable"] == 0
    entries = {row["order_id"]: row["entry_id"] for row in rows}
    base = f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/commissions"
    approved = httpx.post(f"{base}/{entries[first]}/approve", headers=auth(shop.admin))
    assert approved.status_code == 200 and approved.json()["state"] == "withdrawable", approved.text
    rejected = httpx.post(f"{base}/{entries[second]}/reject", headers=auth(shop.admin))
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected", rejected.text
    assert_error(httpx.post(f"{base}/{entries[second]}/approve", headers=auth(shop.admin)), 409, "not_in_review")
    assert_error(httpx.post(f"{base}/{entries[first]}/approve", headers=auth(shop.host)), 403, "forbidden")
    assert earnings(shop, ana) | {"visitors": 0} == earnings(shop, ana) | {
        "visitors": 0, "withdrawable": 100, "review": 0, "frozen": 0}  # fmt: skip
    actions = [entry["action"] for entry in httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit",
                                                      headers=auth(shop.admin)).json()["entries"]]  # fmt: skip
    assert {"commission.approved", "commission.rejected", "referrals.changed"} <= set(actions)


def test_the_daily_cap_limits_what_a_sharer_earns_in_a_day(shop: Shop) -> None:
    """Past the daily cap a commission is recorded with what is left of it (0 included), and a note."""
    program(shop, levels=1, daily_cap=250)
    ana = Person("Ana")
    code = share(shop, ana)["code"]
    sale = new_sale(shop)
    buyers = [Person(f"B{i}") for i in range(4)]
    for buyer in buyers:
        visit(shop, code, buyer)
        buy_and_pay(shop, sale, buyer, 1)  # 100 each
    rows = wait_commissions(shop, 4)
    assert sorted(row["amount"] for row in rows) == [0, 50, 100, 100]
    assert sum(row["amount"] for row in rows) == 250
    assert [row["note"] for row in rows if row["amount"] < 100] == ["daily cap 250 reached"] * 2


def test_sharing_needs_a_signed_in_member_and_a_programme(shop: Shop) -> None:
    """A guest may not make a link (sign_in_required); a shop without the programme gives none; unknown rooms and
    links are 404."""
    url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/shares"
    assert_error(httpx.post(url, json={"room_id": shop.room_id}, headers=auth(shop.guest())), 403, "sign_in_required")
    ana = Person("Ana")
    assert_error(httpx.post(url, json={"room_id": "r_nope"}, headers=auth(ana.token)), 404, "unknown_room")
    assert_error(httpx.post(f"{shop.base_url}/api/shares/nope/visits", headers=auth(ana.token)), 404, "unknown_share")
    code = share(shop, ana)["code"]
    program(shop, enabled=False)
    assert_error(httpx.post(url, json={"room_id": shop.room_id}, headers=auth(Person().token)), 403,
                 "referrals_disabled")  # fmt: skip
    assert visit(shop, code, Person())["reason"] == "disabled"
    assert_error(httpx.put(f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals", json={"levels": 3},
                           headers=auth(shop.admin)), 400, "bad_request")  # fmt: skip


def test_a_guest_visitor_is_bound_and_keeps_the_binding(shop: Shop) -> None:
    """A guest who opens a link is bound (guests may buy where the sale admits them) and earns the sharer."""
    ana = Person("Ana")
    code = share(shop, ana)["code"]
    guest = Person()
    guest.token = shop.guest()
    assert visit(shop, code, guest)["reason"] == "bound"
    sale = new_sale(shop, buyers="anyone")
    order = buy_and_pay(shop, sale, guest)
    assert by_level(wait_commissions(shop, 1), order)[1]["sharer_id"] == ana.user_id
    assert commissions(shop, state="withdrawable")[0]["order_id"] == order


def test_a_first_programme_pays_in_the_currency_the_shop_sells_in(
    referral_server: ServerProcess, redis_url: str
) -> None:
    """A shop selling in euros that turns the programme on without naming a currency has its balances in euros."""
    shop = make_shop(referral_server.base_url, referral_server.ws_url, redis_url)
    products = f"{shop.base_url}/api/merchants/{shop.merchant_id}/products"
    for product_id in shop.products:
        assert httpx.delete(f"{products}/{product_id}", headers=auth(shop.admin)).status_code == 204
    added = httpx.post(products, json={"id": "eu", "title": "Tasse", "price": 900, "currency": "EUR"},
                       headers=auth(shop.admin))  # fmt: skip
    assert added.status_code == 201, added.text
    assert program(shop, enabled=True)["currency"] == "EUR"
    assert program(shop, currency="USD")["currency"] == "USD"
