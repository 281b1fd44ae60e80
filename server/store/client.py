"""Redis clients of one process: callers queue for a pooled connection, and a dead connection is replaced, not used."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry


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
