"""The Redis client under load and across a restart: a burst queues for a connection, a dead one is replaced."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from server.store.embedded import EmbeddedRedis
from tests.conftest import make_shop, start_server
from tests.sale_helpers import auth, create_sale, viewer_token
from tests.timing import seconds

pytestmark = pytest.mark.anyio


async def _purchases(base_url: str, sale_id: str, count: int) -> list[httpx.Response]:
    """`count` purchases by different buyers, all sent at once (one connection each)."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=seconds(60)) as client:
        requests = [
            client.post(
                f"/api/sales/{sale_id}/purchases", json={}, headers={**auth(viewer_token()), "Idempotency-Key": "k"}
            )
            for _ in range(count)
        ]
        return list(await asyncio.gather(*requests))


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def test_a_burst_at_a_cold_process_queues_for_connections_and_gets_no_503(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """2,000 purchases at once at a process that never saw the sale, with 4 Redis connections: every one is answered."""
    warm = start_server(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": database_url})
    cold = start_server(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "REDIS_POOL_SIZE": "4"})
    try:
        shop = make_shop(warm.base_url, warm.ws_url, redis_url)
        sale = create_sale(shop, quantity=100, per_user_limit=1)
        responses = await _purchases(cold.base_url, sale["id"], 2000)
        statuses = _statuses(responses)
        assert statuses[503] == 0, statuses
        assert statuses == Counter({201: 100, 409: 1900}), statuses
        assert all(r.json()["error"]["code"] == "sold_out" for r in responses if r.status_code == 409)
        assert "Too many connections" not in cold.log()
    finally:
        cold.stop()
        warm.stop()


async def test_after_redis_restarts_dead_connections_are_replaced_not_handed_out(
    tmp_path: Path, database_url: str
) -> None:
    """Redis killed and back: answers meanwhile are JSON 503s, then /readyz and every purchase succeed at once."""
    redis_server = EmbeddedRedis(tmp_path / "redis")
    redis_server.start()
    server = start_server(tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url})
    try:
        shop = make_shop(server.base_url, server.ws_url, redis_server.url)
        sale = create_sale(shop, quantity=10_000, per_user_limit=1)
        warm = await _purchases(server.base_url, sale["id"], 300)  # the pool now holds many connections
        assert _statuses(warm) == Counter({201: 300})

        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.process.wait()
        down = await _purchases(server.base_url, sale["id"], 50)
        assert _statuses(down) == Counter({503: 50})
        assert all(r.json()["error"]["code"] == "unavailable" for r in down)

        redis_server.start()  # answers PING when this returns
        back_at = time.monotonic()
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() - back_at < seconds(2), "/readyz stayed 503 after Redis came back"
                await asyncio.sleep(0.02)
        after = await _purchases(server.base_url, sale["id"], 300)
        assert _statuses(after) == Counter({201: 300}), [r.text for r in after if r.status_code != 201][:3]
    finally:
        server.stop()
        redis_server.stop()
