"""The schema: versioned SQL files in migrations/, applied in order at start-up, once, under a lock.

Each file `NNNN_name.sql` runs in its own transaction and is recorded in `schema_migrations`.
Several processes starting together take the same advisory lock, so one applies and the others
find the work done. A file, once applied anywhere, is never edited: change the schema with a new one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger("livecart.migrate")

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK = 0x6C697665  # the advisory lock every livecart process takes to migrate ("live")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in order."""
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append((int(match[1]), path.name, path.read_text()))
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migration files share a version number")
    return found


async def migrate(url: str) -> list[str]:
    """Apply every migration this database lacks; return the names applied by this call."""
    connection = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await connection.close()  # also releases the advisory lock
    return applied
