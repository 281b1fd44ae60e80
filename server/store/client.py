"""Redis clients of one process: callers queue for a pooled connection, and a dead connection is replaced, not used.

`open_store` is the one place that decides what the process talks to: a single server
(REDIS_URL), the primary that Sentinels name (REDIS_SENTINELS), or a Redis Cluster
(REDIS_CLUSTER=1, REDIS_URL naming any of its nodes). The modules annotate the client as `Redis`:
a cluster client is not one by class, but it answers every command we send it, because every
call's keys share one {hash tag} (server.keys); the few places that work below the commands (the
script batcher, the broker) ask `cluster_of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

if TYPE_CHECKING:
    from server.config import Settings


def connect(url: str, *, pool_size: int, wait_seconds: float, health_check_seconds: int = 0) -> Redis:
    """A client whose calls wait (up to `wait_seconds`) for one of `pool_size` connections.

    A flash sale is a burst: thousands of calls at once must queue for a connection, never fail
    while Redis is up. A connection that died under a call (Redis restarted, a failover) is
    reconnected and the call sent once more; every call we make is safe to repeat (idempotency
    keys and state checks in the scripts).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


class _SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to the primary the Sentinels name (SentinelConnectionPool), queued for as `connect`'s are."""


def sentinel(
    addresses: Sequence[str], master: str, *, pool_size: int, wait_seconds: float, health_check_seconds: int = 0
) -> Redis:
    """The client `connect` makes, on the primary that the Sentinels at `addresses` ("host:port") name for `master`.

    Each new connection asks the Sentinels which server is the primary. After a failover the
    connections to the old one fail (or it answers READONLY, now a replica) and are dropped; their
    calls are sent once more on a new connection, to the promoted replica. Until the Sentinels have
    promoted one, calls fail as they do while Redis is down (503 "try again").
    """
    pairs = [(host, int(port)) for host, _, port in (address.rpartition(":") for address in addresses)]
    timeouts = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}  # a Sentinel that is down is skipped quickly
    sentinels = Sentinel(pairs, sentinel_kwargs=timeouts)  # type: ignore[no-untyped-call]
    pool = _SentinelBlockingPool(  # type: ignore[no-untyped-call]
        master,
        sentinels,
        max_connections=pool_size,
        timeout=wait_seconds,
        decode_responses=True,
        health_check_interval=health_check_seconds,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)  # closing the client closes its pool


def cluster(url: str, *, pool_size: int, health_check_seconds: int = 0) -> Redis:
    """A Redis Cluster client that learns the cluster from the node at `url`, with up to `pool_size` connections per
    node. A MOVED or ASK reply (resharding, a failover) refreshes its slot map and the call goes to the new owner."""
    client = RedisCluster.from_url(
        url, decode_responses=True, max_connections=pool_size, health_check_interval=health_check_seconds
    )
    return cast(Redis, client)  # see the module docstring


def cluster_of(redis: Redis) -> RedisCluster | None:
    """The cluster client behind `redis`, or None for a single server (a plain or Sentinel client)."""
    found: object = redis
    return found if isinstance(found, RedisCluster) else None


async def initialize(redis: Redis) -> None:
    """A cluster client reads the slot map now, before the first burst of calls (redis-py 8.1 races when concurrent
    first calls, plain and pipelined, each start reading it); nothing for a single server."""
    cluster = cluster_of(redis)
    if cluster is not None:
        await cluster.initialize()


def open_store(settings: Settings, *, pool_size: int, health_check_seconds: int = 0) -> Redis:
    """The client for the configured Redis: a cluster (REDIS_CLUSTER), the Sentinels' primary, or REDIS_URL."""
    wait = settings.redis_pool_wait_ms / 1000
    if settings.redis_cluster:
        assert settings.redis_url, "REDIS_CLUSTER=1 needs REDIS_URL naming one of the cluster's nodes"
        return cluster(settings.redis_url, pool_size=pool_size, health_check_seconds=health_check_seconds)
    if settings.redis_sentinels:  # the primary the Sentinels name, followed across a failover
        return sentinel(
            settings.redis_sentinels,
            settings.redis_sentinel_master,
            pool_size=pool_size,
            wait_seconds=wait,
            health_check_seconds=health_check_seconds,
        )
    assert settings.redis_url, "the launcher (python -m server) sets REDIS_URL"
    return connect(
        settings.redis_url, pool_size=pool_size, wait_seconds=wait, health_check_seconds=health_check_seconds
    )
