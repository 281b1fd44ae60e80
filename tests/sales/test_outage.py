"""Redis going away mid-sale: buyers get a clear 503, nothing is lost, and a retry with the same key is safe."""

from __future__ import annotations

from pathlib import Path

from server.store.embedded import EmbeddedRedis
from tests.conftest import make_shop, start_server
from tests.sale_helpers import GOOD_CARD, assert_error, buy, create_sale, invariant, pay, viewer_token, wait_until


def test_purchases_while_redis_is_down_are_refused_clearly_and_lose_nothing(tmp_path: Path, database_url: str) -> None:
    """With Redis down a purchase or payment is a 503 'unavailable'; once it is back, retries give the same orders."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        server = start_server(tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url})
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            sale = create_sale(shop, quantity=5, per_user_limit=2)
            alice, bob = viewer_token(), viewer_token()
            held = buy(shop.base_url, alice, sale["id"], key="alice-1")
            assert held.status_code == 201, held.text
            order = held.json()

            redis_server.stop()
            message = assert_error(buy(shop.base_url, bob, sale["id"], key="bob-1"), 503, "unavailable")
            assert "Idempotency-Key" in message
            assert_error(pay(shop.base_url, alice, order["order_id"], GOOD_CARD), 503, "unavailable")

            redis_server.start()  # the same data folder: the AOF brings every order back
            wait_until(lambda: buy(shop.base_url, alice, sale["id"], key="alice-1").status_code == 200, timeout=15)
            again = buy(shop.base_url, alice, sale["id"], key="alice-1")
            assert again.json()["order_id"] == order["order_id"]
            retried = buy(shop.base_url, bob, sale["id"], key="bob-1")
            assert retried.status_code == 201, retried.text
            assert buy(shop.base_url, bob, sale["id"], key="bob-1").json()["order_id"] == retried.json()["order_id"]
            paid = pay(shop.base_url, alice, order["order_id"], GOOD_CARD)
            assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
            audit = invariant(shop, sale["id"])
            assert (audit["available"], audit["held"], audit["paid"]) == (3, 1, 1)
        finally:
            server.stop()
