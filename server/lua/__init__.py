"""The Lua scripts: each `.lua` file here is read once and registered with a Redis client."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_DIR = Path(__file__).parent


@cache
def source(name: str) -> str:
    return (_DIR / f"{name}.lua").read_text()


def register(redis: Redis, name: str) -> AsyncScript:
    """The script `name`.lua bound to this client (EVALSHA, loaded on first use)."""
    return redis.register_script(source(name))
