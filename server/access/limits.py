"""Rate limits that hold across processes: token buckets in Redis, several taken at once by one Lua script.

A `Rule` is a bucket's size and refill; `Limits.take` takes one token from each named bucket or
none, and raises RateLimited (429 with Retry-After) when any is empty. The rules and their
defaults are settings (server/config.py) and listed in docs/security.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from server import keys
from server.errors import RateLimited
from server.store import scripts


@dataclass(frozen=True)
class Rule:
    """At most `count` per `per_seconds`: all at once if need be, then one more each `per_seconds / count`."""

    name: str
    count: int
    per_seconds: int

    @property
    def burst(self) -> int:
        return self.count

    @property
    def refill_ms(self) -> float:
        return self.per_seconds * 1000 / self.count


class Limits:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._take = scripts.register(redis, __file__, "limit_take")

    async def take(self, message: str, *buckets: tuple[Rule, str], attempt: str = "") -> None:
        """One token from each (rule, subject) bucket, or RateLimited saying `message` and when to retry. An
        `attempt` named before (a retry of the same request) passes without taking any."""
        args: list[float] = [int(time.time() * 1000), 1 if attempt else 0]
        for rule, _ in buckets:
            args.extend((rule.burst, rule.refill_ms))
        names = [keys.limit(rule.name, subject) for rule, subject in buckets]
        wait_ms = int(await self._take(keys=[*names, keys.limit("attempt", attempt or "-")], args=args))
        if wait_ms > 0:
            seconds = max(1, -(-wait_ms // 1000))
            raise RateLimited(f"{message}; try again in {seconds} seconds", seconds)
