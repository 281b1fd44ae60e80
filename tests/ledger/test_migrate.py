"""The schema's migrations: applied once, once even when several processes migrate together, named strictly."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from server.ledger import migrate as migrate_module
from server.ledger.migrate import migrate, migrations
from tests.timing import seconds

pytestmark = pytest.mark.anyio

NAMES = [name for _, name, _ in migrations()]


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL, dropped after the test."""
    name = f"migrate_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def applied(url: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(row["version"], row["name"]) for row in rows]
    finally:
        await connection.close()


def test_migration_files_are_numbered_in_order() -> None:
    """Every file in migrations/ is NNNN_name.sql, and they are read in version order."""
    versions = [version for version, _, _ in migrations()]
    assert NAMES and versions == sorted(versions)


async def test_migrations_apply_once(fresh_database: str) -> None:
    """A fresh database gets every migration, each recorded in schema_migrations; a second run applies nothing."""
    assert await migrate(fresh_database) == NAMES
    assert await migrate(fresh_database) == []
    assert await applied(fresh_database) == [(version, name) for version, name, _ in migrations()]


async def test_concurrent_migrations_apply_each_file_exactly_once(fresh_database: str) -> None:
    """Eight connections migrating one fresh database at once (as processes starting together do) apply each file
    exactly once between them: the advisory lock lets one work while the others wait, then find it done."""
    results = await asyncio.wait_for(asyncio.gather(*(migrate(fresh_database) for _ in range(8))), seconds(60))
    assert sorted(name for result in results for name in result) == NAMES
    assert sum(1 for result in results if result) == 1  # one caller did all of it, in order
    assert [result for result in results if result] == [NAMES]
    assert await applied(fresh_database) == [(version, name) for version, name, _ in migrations()]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_first.sql", "2_second.sql"], "2_second.sql is not named NNNN_name.sql"),
        (["0001_first.sql", "0002-Second.sql"], "0002-Second.sql is not named NNNN_name.sql"),
        (["0001_first.sql", "0001_again.sql"], "two migration files share a version number"),
    ],
)
async def test_a_badly_named_migration_file_is_refused_before_anything_is_applied(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str], message: str
) -> None:
    """A file not named NNNN_name.sql, or two files with one version, stop the migration before any file runs."""
    for name in files:
        (tmp_path / name).write_text("CREATE TABLE should_not_exist (id integer);")
    monkeypatch.setattr(migrate_module, "MIGRATIONS", tmp_path)
    with pytest.raises(RuntimeError, match=message):
        await migrate(fresh_database)
    assert await applied(fresh_database) == []


async def test_a_failing_migration_leaves_nothing_half_done(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file runs in its own transaction: one that fails leaves no table and no record; the files before it stay
    applied, and once it is fixed the next start applies it."""
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (id integer);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (id integer); SELECT 1 / 0;")
    monkeypatch.setattr(migrate_module, "MIGRATIONS", tmp_path)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(fresh_database)
    assert await applied(fresh_database) == [(1, "0001_first.sql")]
    connection = await asyncpg.connect(fresh_database)
    try:
        assert await connection.fetchval("SELECT to_regclass('second')") is None
    finally:
        await connection.close()
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (id integer);")
    assert await migrate(fresh_database) == ["0002_broken.sql"]
