"""Lua scripts: each `.lua` file is read once and registered with a Redis client (EVALSHA, loaded on first use).

Every domain package keeps its scripts in its own `lua/` folder; each file opens with a header
naming its KEYS and ARGV. A library file (local functions several scripts of a domain share) opens
with a header naming what it expects instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def source(path: Path) -> str:
    return path.read_text()


def register(redis: Redis, module_file: str, name: str, library: str | None = None) -> AsyncScript:
    """The script `lua/<name>.lua` beside the module `module_file` (pass `__file__`), bound to this client;
    with `library`, the local functions of `lua/<library>.lua` come first (scripts that share code)."""
    folder = Path(module_file).parent / "lua"
    text = source(folder / f"{name}.lua")
    if library is not None:
        text = source(folder / f"{library}.lua") + "\n" + text
    return redis.register_script(text)
