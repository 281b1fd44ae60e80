"""Operations: liveness, readiness (also while Redis or PostgreSQL is away and after it returns), Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.ledger.embedded import EmbeddedPostgres
from server.store.embedded import EmbeddedRedis
from tests.client import RoomClient
from tests.conftest import ServerProcess, Shop, make_shop, start_server
from tests.sale_helpers import create_sale, wait_until
from tests.timing import seconds, until

METRICS = (
    "livecart_connections",
    "livecart_rooms",
    "livecart_events_in_total",
    "livecart_frames_out_total",
    "livecart_viewers_closed_slow_total",
    "livecart_redis_seconds",
)


def metric_samples(server: ServerProcess) -> dict[str, float]:
    """GET /metrics, parsed with Prometheus' own parser: {'name{label="v"}': value} (labels sorted)."""
    response = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_healthz_answers_ok(server: ServerProcess) -> None:
    """/healthz is 200 'ok' while the process runs."""
    response = httpx.get(f"{server.base_url}/healthz")
    assert response.status_code == 200
    assert response.text == "ok"


def test_readyz_answers_ready_when_redis_is_reachable(server: ServerProcess) -> None:
    """/readyz is 200 {"ready": true} when the server can reach Redis."""
    response = httpx.get(f"{server.base_url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_fresh_server_exports_every_livecart_metric(server_factory: Callable[..., ServerProcess]) -> None:
    """Before any viewer comes, /metrics already has every livecart series, counters at 0 (rate() works at once)."""
    fresh = server_factory()
    text = httpx.get(f"{fresh.base_url}/metrics", headers=fresh.metrics_headers).text
    for name in METRICS:
        assert f"\n{name}" in text, name
    samples = metric_samples(fresh)
    assert samples["livecart_connections"] == 0
    assert samples["livecart_rooms"] == 0
    assert samples["livecart_frames_out_total"] == 0
    assert samples["livecart_viewers_closed_slow_total"] == 0
    assert samples['livecart_events_in_total{type="like"}'] == 0
    assert samples['livecart_events_in_total{type="chat.send"}'] == 0
    assert samples['livecart_protocol_errors_total{code="bad_json"}'] == 0
    ping_count = samples['livecart_redis_seconds_count{op="ping"}']
    assert ping_count >= 1  # start_server waited on /readyz, which times a Redis PING
    assert samples['livecart_redis_seconds_bucket{le="+Inf",op="ping"}'] == ping_count


@pytest.mark.anyio
async def test_metrics_count_a_connected_viewer_and_its_traffic(server: ServerProcess, shop: Shop) -> None:
    """While a viewer is connected livecart_connections and livecart_rooms count it; its like and frames are counted."""
    before = metric_samples(server)
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        text = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers).text
        for name in METRICS:
            assert f"\n{name}" in text, name
        assert viewer.first is not None and viewer.first["type"] == "snapshot"
        during = metric_samples(server)
        assert during["livecart_connections"] >= 1
        assert during["livecart_rooms"] >= 1
        await viewer.send_raw('{"type":"like","count":3}')
        await viewer.wait_event("likes")

        def counted() -> bool:
            now = metric_samples(server)
            return (
                now.get('livecart_events_in_total{type="like"}', 0)
                >= before.get('livecart_events_in_total{type="like"}', 0) + 1
                and now["livecart_frames_out_total"] > before["livecart_frames_out_total"]
            )

        await until(counted)
    await until(lambda: metric_samples(server)["livecart_connections"] <= before["livecart_connections"])


def test_readyz_is_503_while_redis_is_down_and_recovers_when_it_returns(tmp_path: Path, database_url: str) -> None:
    """With Redis stopped /readyz says 503 and why, and every route a JSON 503; back (same AOF), all is ready again."""
    embedded = EmbeddedRedis(tmp_path / "redis")
    url = embedded.start()
    started = None
    try:
        started = start_server(tmp_path, {"REDIS_URL": url, "DATABASE_URL": database_url})
        shop = make_shop(started.base_url, started.ws_url, url)
        create_sale(shop)  # a live sale: listing the merchant's sales reads it from Redis
        embedded.stop()

        def not_ready() -> bool:
            return httpx.get(f"{started.base_url}/readyz", timeout=10).status_code == 503

        wait_until(not_ready, timeout=15)
        response = httpx.get(f"{started.base_url}/readyz", timeout=10)
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False
        assert body["error"].startswith("redis unreachable")
        assert httpx.get(f"{started.base_url}/healthz").status_code == 200  # alive, just not ready
        base, admin = started.base_url, shop.headers(shop.admin)
        for method, path, headers in [
            ("GET", f"/api/rooms/{shop.room_id}", {}),
            ("GET", f"/api/merchants/{shop.merchant_id}/products", admin),
            ("POST", f"/api/merchants/{shop.merchant_id}/rooms", admin),
            ("GET", f"/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/stats", admin),
            ("GET", f"/api/merchants/{shop.merchant_id}/sales", admin),
            ("POST", f"/whep/{shop.room_id}", {**admin, "Content-Type": "application/sdp"}),
        ]:
            body = b'{"title": "x"}' if method == "POST" and "rooms" in path else b"v=0"
            answer = httpx.request(method, base + path, headers=headers, content=body if method == "POST" else None)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"]["code"] == "unavailable", path

        embedded.start()
        wait_until(lambda: httpx.get(f"{started.base_url}/readyz", timeout=10).status_code == 200, timeout=15)
        assert httpx.get(f"{started.base_url}/readyz").json() == {"ready": True}
        room = httpx.get(f"{started.base_url}/api/rooms/{shop.room_id}")
        assert room.status_code == 200
        assert room.json()["merchant_id"] == shop.merchant_id
        products = httpx.get(
            f"{started.base_url}/api/merchants/{shop.merchant_id}/products", headers=shop.headers(shop.admin)
        )
        assert [p["id"] for p in products.json()] == shop.products
    finally:
        if started is not None:
            assert started.stop() == 0
        embedded.stop()


def test_readyz_reports_postgresql_down_and_recovers_when_it_returns(tmp_path: Path, redis_url: str) -> None:
    """With PostgreSQL stopped /readyz stays ready (rooms and purchases run on Redis) but says PostgreSQL is out of
    reach and why; once it is back on the same cluster the pool reconnects by itself and the report clears."""
    embedded = EmbeddedPostgres(tmp_path / "postgres")
    url = embedded.start(timeout=seconds(30))
    started = None
    try:
        started = start_server(tmp_path, {"REDIS_URL": redis_url, "DATABASE_URL": url})
        embedded.stop()

        def degraded() -> bool:
            return "degraded" in httpx.get(f"{started.base_url}/readyz", timeout=10).json()

        wait_until(degraded, timeout=15)
        response = httpx.get(f"{started.base_url}/readyz", timeout=10)
        assert response.status_code == 200
        assert response.json()["ready"] is True
        assert response.json()["degraded"].startswith("postgresql unreachable")
        assert httpx.get(f"{started.base_url}/healthz").status_code == 200

        embedded.start(timeout=seconds(30))
        wait_until(lambda: not degraded(), timeout=15)
        assert httpx.get(f"{started.base_url}/readyz").json() == {"ready": True}
    finally:
        if started is not None:
            assert started.stop() == 0
        embedded.stop()
