"""Shared fixtures: real Redis and PostgreSQL server processes, real server processes (uvicorn), a shop per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import redis.cluster

from loadtests.support import server as launcher
from loadtests.support import tokens
from loadtests.support.server import ServerProcess
from loadtests.support.server import free_port as free_port  # the tests import it from here
from server.ledger.embedded import EmbeddedPostgres
from server.protocol import Role
from server.store.cluster_embedded import EmbeddedCluster
from server.store.embedded import EmbeddedRedis
from tests.timing import seconds

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "livecart-test-secret"  # fixed: this module may be imported twice (as conftest and tests.conftest)
ON_CLUSTER = os.environ.get("LIVECART_TEST_REDIS") == "cluster"  # the suites on a Redis Cluster (.ci/run)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A real Redis Cluster for the whole session: six Valkey nodes (three primaries, three replicas) from the embedded
    binary. A test's `Redis.from_url(cluster.url)` (sync or asyncio) makes a cluster client."""
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as cluster, pytest.MonkeyPatch.context() as patch:
        for plain, clustered in (
            (redis.Redis, redis.cluster.RedisCluster),
            (redis.asyncio.Redis, redis.asyncio.RedisCluster),
        ):

            def from_url(url: str, _plain: Any = plain.from_url, _clustered: Any = clustered, **kwargs: Any) -> Any:
                return _clustered.from_url(url, **kwargs) if url == cluster.url else _plain(url, **kwargs)

            patch.setattr(plain, "from_url", from_url)
        yield cluster


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """A real Redis-compatible server process for the whole test session (the same one the product embeds); with
    LIVECART_TEST_REDIS=cluster, the session's Redis Cluster."""
    if ON_CLUSTER:
        yield request.getfixturevalue("redis_cluster").url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as embedded:
        yield embedded.url


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server process for the whole test session (the same one the product embeds)."""
    with EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "postgres") as embedded:
        yield embedded.url


@pytest.fixture(scope="session")
def stores(redis_url: str, database_url: str) -> dict[str, str]:
    """The environment that points a server process at the session's Redis and PostgreSQL."""
    return {"REDIS_URL": redis_url, "DATABASE_URL": database_url, **({"REDIS_CLUSTER": "1"} if ON_CLUSTER else {})}


def start_server(tmp: Path, env: dict[str, str], port: int | None = None, workers: int = 1) -> ServerProcess:
    """Start a server process on the tests' SECRET_KEY and wait until /readyz answers (see loadtests.support.server:
    per-address limits are lifted unless `env` sets them). A socket's ping may wait 30 s (scaled) for its answer
    unless `env` says otherwise (SLOW_VIEWER_MS): on a busy machine a test's own client can be starved that long."""
    quiet = {"SLOW_VIEWER_MS": str(int(seconds(30) * 1000))}
    ready = seconds(launcher.READY_SECONDS)
    return launcher.start_server(tmp, {"SECRET_KEY": SECRET_KEY, **quiet, **env}, port, workers, ready_seconds=ready)


def two_servers(name: str, label: str, env: dict[str, str], doc: str) -> Any:
    """A module-scoped fixture called `name`: two server processes on the session's stores with these settings
    (what one changes, sockets on the other hear), their folders named after `label`."""

    @pytest.fixture(scope="module", name=name)
    def fixture(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
        first = start_server(tmp_path_factory.mktemp(f"{label}-a"), {**stores, **env})
        try:
            second = start_server(tmp_path_factory.mktemp(f"{label}-b"), {**stores, **env})
        except BaseException:
            first.stop()
            raise
        yield [first, second]
        second.stop()
        first.stop()

    fixture.__doc__ = doc
    return fixture


def host_starts(shop: Shop, kind: str, body: dict[str, Any], base_url: str | None = None) -> httpx.Response:
    """POST /api/merchants/{m}/rooms/{r}/{kind} as the shop's host: a sale, a giveaway, an auction."""
    return httpx.post(
        f"{base_url or shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/{kind}",
        json=body,
        headers=shop.headers(shop.host),
        timeout=seconds(10),
    )


@pytest.fixture(scope="session")
def server(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server process (uvicorn) on the session's Redis and PostgreSQL."""
    started = start_server(tmp_path_factory.mktemp("server"), stores)
    yield started
    started.stop()


@pytest.fixture
def server_factory(stores: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """Start extra server processes on the session's Redis and PostgreSQL (stopped after the test)."""
    started: list[ServerProcess] = []

    def factory(**env: str) -> ServerProcess:
        process = start_server(tmp_path, {**stores, **env})
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


@dataclass
class Shop:
    """A fresh merchant with a room, products and a token for each role, made through the REST API."""

    base_url: str
    ws_url: str
    merchant_id: str
    room_id: str
    admin: str
    host: str
    moderator: str
    products: list[str] = field(default_factory=list)

    def guest(self) -> str:
        """A guest's access token, from POST /api/guest."""
        response = httpx.post(f"{self.base_url}/api/guest")
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def buyer(self) -> str:
        """A signed-in shopper's access token (flash sales admit signed-in buyers by default)."""
        return member()

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def room_url(self, token: str, **params: object) -> str:
        """The room socket URL for tests.client.RoomClient, which sends `token` as the auth frame (a token never
        travels in a URL: the client takes it out before connecting)."""
        query = "&".join([f"token={token}", *(f"{key}={value}" for key, value in params.items())])
        return f"{self.ws_url}/ws/rooms/{self.room_id}?{query}"


def mint(merchant_id: str, role: Role, name: str = "Staff") -> str:
    """A staff member's token: this role for this merchant (signed with the tests' key, as the servers sign)."""
    return tokens.staff(SECRET_KEY, merchant_id, role, name)


def member(user_id: str | None = None, name: str = "Buyer") -> str:
    """A signed-in shopper's token (tests/access signs people in for real)."""
    return tokens.buyer(SECRET_KEY, user_id, name)


class Person:
    """A signed-in member with a token (as the tests mint them)."""

    def __init__(self, name: str = "Fan") -> None:
        self.user_id = "u_" + secrets.token_hex(6)
        self.name = name
        self.token = member(self.user_id, name)


def make_shop(base_url: str, ws_url: str, redis_url: str) -> Shop:
    import asyncio

    from redis.asyncio import Redis

    from server.rooms.catalog import Catalog

    merchant_id = "m" + secrets.token_hex(4)

    async def create() -> None:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            await Catalog(redis).create_merchant(merchant_id, f"Shop {merchant_id}")
        finally:
            await redis.aclose()

    with ThreadPoolExecutor(1) as pool:  # callable from sync and async tests alike
        pool.submit(asyncio.run, create()).result()
    admin = mint(merchant_id, Role.ADMIN, "Admin")
    shop = Shop(
        base_url,
        ws_url,
        merchant_id,
        "",
        admin,
        mint(merchant_id, Role.HOST, "Host"),
        mint(merchant_id, Role.MODERATOR, "Mod"),
    )
    with httpx.Client(base_url=base_url, headers=shop.headers(admin)) as client:
        room = client.post(f"/api/merchants/{merchant_id}/rooms", json={"title": "Test show"})
        room.raise_for_status()
        shop.room_id = room.json()["id"]
        for index, title in enumerate(["Red scarf", "Blue mug", "Green tea"]):
            created = client.post(
                f"/api/merchants/{merchant_id}/products",
                json={"id": f"p{index}", "title": title, "price": 1000 + index, "currency": "USD"},
            )
            created.raise_for_status()
            shop.products.append(created.json()["id"])
    return shop


@pytest.fixture
def shop(server: ServerProcess, redis_url: str) -> Shop:
    return make_shop(server.base_url, server.ws_url, redis_url)


async def publish_direct(redis_url: str, room_id: str, events: list[dict[str, object]], durable: bool = True) -> None:
    """Publish room events the way the server's modules do (server.rooms.record), straight from the test."""
    from redis.asyncio import Redis

    from server.rooms.record import RoomRecords

    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        records = RoomRecords(redis)
        for item in events:
            if durable:
                await records.publish(room_id, item)
            else:
                await records.publish_latest(room_id, item)
    finally:
        await redis.aclose()
