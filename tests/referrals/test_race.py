"""Exactly once under concurrency, and never more than the configured share: many buyers through many sharers at
once across two server processes; a property test over programmes, prices and quantities."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtests.support.server import ServerProcess
from server.referrals.rules import Rate
from tests.conftest import Shop, make_shop, start_server
from tests.referrals.conftest import PASS_MS, Person, new_sale, program, share, visit, wait_commissions
from tests.sale_helpers import GOOD_CARD, auth, query
from tests.timing import seconds

BUYERS, SHARERS = 200, 20


@pytest.fixture
def second_server(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Another server process on the same stores, its own commission pass racing the first's."""
    started = start_server(tmp_path_factory.mktemp("second"), {**stores, "REFERRAL_PASS_MS": PASS_MS})
    yield started
    started.stop()


async def arrive(client: httpx.AsyncClient, code: str, sale_id: str) -> str:
    """A new buyer opens the link, buys one unit and pays: the order id."""
    headers = auth(Person().token)
    opened = await client.post(f"/api/shares/{code}/visits", headers=headers)
    assert opened.status_code == 200 and opened.json()["bound"], opened.text
    held = await client.post(f"/api/sales/{sale_id}/purchases", json={"quantity": 1},
                             headers={**headers, "Idempotency-Key": secrets.token_hex(8)})  # fmt: skip
    assert held.status_code == 201, held.text
    order_id = str(held.json()["order_id"])
    paid = await client.post(f"/api/orders/{order_id}/payment", json={"card_number": GOOD_CARD},
                             headers={**headers, "Idempotency-Key": secrets.token_hex(8)})  # fmt: skip
    assert paid.status_code == 200, paid.text
    return order_id


@pytest.mark.anyio
async def test_200_buyers_through_20_sharers_on_two_processes_earn_exactly_once_per_order_and_level(
    shop: Shop, second_server: ServerProcess, database_url: str
) -> None:
    """Buyers arrive at once on two processes, whose commission passes race: each paid order has exactly one
    level-1 commission (its sharer's) and one level-2 (the upline's, where there is one), no more."""
    sharers = [Person(f"Sharer {i}") for i in range(SHARERS)]
    codes = [share(shop, sharer)["code"] for sharer in sharers]
    for sharer in sharers[1:]:
        visit(shop, codes[0], sharer)  # sharer 0 brought every other sharer: level 2 for their buyers
    sale_id = new_sale(shop, quantity=BUYERS, per_user_limit=1)
    limits = httpx.Limits(max_connections=50)
    async with (
        httpx.AsyncClient(base_url=shop.base_url, limits=limits, timeout=seconds(30)) as one,
        httpx.AsyncClient(base_url=second_server.base_url, limits=limits, timeout=seconds(30)) as two,
    ):
        orders = await asyncio.gather(*(
            arrive(one if i % 2 else two, codes[i % SHARERS], sale_id) for i in range(BUYERS)
        ))  # fmt: skip
    expected = BUYERS + BUYERS * (SHARERS - 1) // SHARERS
    rows = wait_commissions(shop, expected, timeout=30)
    assert len(rows) == expected
    per_level = query(database_url, "SELECT order_id, level, count(*) AS n FROM commissions WHERE merchant_id = $1"
                      " AND kind = 'commission' GROUP BY 1, 2", shop.merchant_id)  # fmt: skip
    assert {row["n"] for row in per_level} == {1}
    assert {row["order_id"] for row in per_level if row["level"] == 1} == set(orders)
    level1 = {row["order_id"]: row["sharer_id"] for row in rows if row["level"] == 1}
    for i, order in enumerate(orders):
        assert level1[order] == sharers[i % SHARERS].user_id
    assert all(row["sharer_id"] == sharers[0].user_id for row in rows if row["level"] == 2)


rates = st.one_of(
    st.builds(Rate, rate_bp=st.integers(0, 10_000)),
    st.builds(Rate, fixed=st.integers(0, 3000)),
    st.builds(Rate, rate_bp=st.integers(0, 10_000), fixed=st.integers(0, 3000)),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=rates, second=rates, price=st.integers(1, 5000), quantities=st.lists(st.integers(1, 3), min_size=1,
                                                                                   max_size=3))  # fmt: skip
def test_commissions_never_exceed_the_configured_share_of_what_was_paid(
    referral_server: ServerProcess, redis_url: str, first: Rate, second: Rate, price: int, quantities: list[int]
) -> None:
    """For any rates (a percentage, a fixed amount per unit, or both) and any orders: each level earns at most its
    configured share of what the buyer paid, rounded down, the two levels together at most what was paid."""
    shop = make_shop(referral_server.base_url, referral_server.ws_url, redis_url)
    program(shop, enabled=True, refund_days=0, levels=2, default={"level1": first.public(), "level2": second.public()})
    upline, sharer = Person("Up"), Person("Sharer")
    visit(shop, share(shop, upline)["code"], sharer)
    code, sale_id = share(shop, sharer)["code"], new_sale(shop, price=price)
    paid: dict[str, tuple[int, int]] = {}
    for quantity in quantities:
        buyer = Person()
        visit(shop, code, buyer)
        held = httpx.post(f"{shop.base_url}/api/sales/{sale_id}/purchases", json={"quantity": quantity},
                          headers={**auth(buyer.token), "Idempotency-Key": secrets.token_hex(8)})  # fmt: skip
        order_id = held.json()["order_id"]
        done = httpx.post(f"{shop.base_url}/api/orders/{order_id}/payment", json={"card_number": GOOD_CARD},
                          headers={**auth(buyer.token), "Idempotency-Key": secrets.token_hex(8)})  # fmt: skip
        assert done.status_code == 200, done.text
        paid[order_id] = (price * quantity, quantity)
    expected = sum((first.earns(b, q) > 0) + (second.earns(b, q) > 0 and first.earns(b, q) < b)
                   for b, q in paid.values())  # fmt: skip
    rows = wait_commissions(shop, expected, timeout=15) if expected else []
    gmv = sum(base for base, _ in paid.values())
    share_of = {level: sum(rate.earns(b, q) for b, q in paid.values()) for level, rate in ((1, first), (2, second))}
    for level in (1, 2):
        assert sum(row["amount"] for row in rows if row["level"] == level) <= share_of[level]
    assert sum(row["amount"] for row in rows) <= gmv
    for order_id, (base, quantity) in paid.items():
        mine = [row for row in rows if row["order_id"] == order_id]
        assert sum(row["amount"] for row in mine) <= base
        for row in mine:
            rate = first if row["level"] == 1 else second
            configured = rate.fixed * quantity if rate.fixed is not None else base * (rate.rate_bp or 0) // 10_000
            assert row["amount"] <= configured
