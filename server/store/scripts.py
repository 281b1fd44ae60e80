"""Lua scripts: each `.lua` file is read once and registered with a Redis client (EVALSHA, loaded on first use).

Every domain package keeps its scripts in its own `lua/` folder; each file opens with a header
naming its KEYS and ARGV.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def source(path: Path) -> str:
    return path.read_text()


def register(redis: Redis, module_file: str, name: str) -> AsyncScript:
    """The script `lua/<name>.lua` beside the module `module_file` (pass `__file__`), bound to this client."""
    return redis.register_script(source(Path(module_file).parent / "lua" / f"{name}.lua"))
