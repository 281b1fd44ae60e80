"""PostgreSQL going away while sharers share and buyers buy: clear refusals, a pass that keeps trying, nothing lost."""

from __future__ import annotations

from pathlib import Path

import httpx

from server.ledger.embedded import EmbeddedPostgres
from server.store.embedded import EmbeddedRedis
from tests.conftest import make_shop, start_server
from tests.referrals.conftest import PASS_MS, Person, buy_and_pay, commissions, new_sale, program, share, visit
from tests.sale_helpers import assert_error, auth, wait_until


def test_postgresql_going_away_refuses_visits_clearly_and_the_commissions_follow_once_it_is_back(
    tmp_path: Path,
) -> None:
    """With PostgreSQL down, opening a link is a 503 (nothing bound, the buyer can retry) and the commission pass
    fails quietly without stopping; once it is back, the link binds and an order paid after earns its commission,
    once."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        postgres = EmbeddedPostgres(tmp_path / "postgres")
        database_url = postgres.start()
        stores = {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url, "REFERRAL_PASS_MS": PASS_MS}
        server = start_server(tmp_path, stores)
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            program(shop, enabled=True, refund_days=0, default={"level1": {"rate_bp": 1000}})
            ana, bob = Person("Ana"), Person("Bob")
            code = share(shop, ana)["code"]
            sale = new_sale(shop)
            postgres.stop()
            refused = httpx.post(f"{shop.base_url}/api/shares/{code}/visits", headers=auth(bob.token))
            assert_error(refused, 503, "unavailable")
            assert server.process.poll() is None
            postgres.start()
            wait_until(lambda: httpx.get(f"{server.base_url}/readyz").status_code == 200, timeout=20)
            wait_until(lambda: httpx.post(f"{shop.base_url}/api/shares/{code}/visits",
                                          headers=auth(bob.token)).status_code == 200, timeout=20)  # fmt: skip
            assert visit(shop, code, bob)["reason"] == "already"
            order = buy_and_pay(shop, sale, bob)
            wait_until(lambda: len(commissions(shop)) == 1, timeout=15)
            [row] = commissions(shop)
            assert (row["order_id"], row["sharer_id"], row["amount"]) == (order, ana.user_id, 100)
        finally:
            server.stop()
            postgres.stop()
