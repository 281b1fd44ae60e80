"""The embedded PostgreSQL: a real server process on a cluster in a folder, on a unix socket there."""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import asyncpg
import pytest

from server.ledger.embedded import EmbeddedPostgres
from tests.timing import seconds

START = seconds(30)


def sql(url: str, *statements: str) -> list[object]:
    """Each statement's first value, on one connection."""

    async def run() -> list[object]:
        connection = await asyncpg.connect(url, timeout=seconds(10))
        try:
            return [await connection.fetchval(statement) for statement in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


def owner(path: Path | int) -> str:
    """The user owning a file, or running a process (its /proc entry)."""
    target = Path(f"/proc/{path}") if isinstance(path, int) else path
    return pwd.getpwuid(target.stat().st_uid).pw_name


def test_start_makes_a_cluster_serves_on_its_socket_and_stop_ends_it(tmp_path: Path) -> None:
    """start() makes a cluster in the folder and serves it on a unix socket there only (no TCP), as the livecart user
    on the livecart database; stop() is a clean shutdown: the process, its socket and its lock file are gone."""
    embedded = EmbeddedPostgres(tmp_path / "postgres")
    url = embedded.start(timeout=START)
    try:
        assert embedded.process is not None
        assert (tmp_path / "postgres" / "PG_VERSION").exists()
        assert embedded.socket_path.is_socket()
        facts = sql(
            url, "SHOW data_directory", "SHOW listen_addresses", "SELECT current_user", "SELECT current_database()"
        )
        assert facts == [str((tmp_path / "postgres").resolve()), "", "livecart", "livecart"]
    finally:
        embedded.stop()
    assert embedded.process.returncode == 0
    assert not embedded.socket_path.exists()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    embedded.stop()  # stopping twice is harmless


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL refuses to run as root: only then does it switch user")
def test_as_root_it_runs_as_postgres_below_folders_only_root_may_read(tmp_path: Path) -> None:
    """As root, the cluster belongs to `postgres` and the server runs as it, even below root-only folders (0700):
    they get only the search bit, and the server keeps no root group that would stop it there."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    embedded = EmbeddedPostgres(private / "data" / "postgres")
    url = embedded.start(timeout=START)
    try:
        assert embedded.process is not None
        assert owner(embedded.process.pid) == "postgres"
        assert owner(private / "data" / "postgres") == "postgres"
        assert owner(private) == "root" and private.stat().st_mode & 0o777 == 0o701
        assert sql(url, "SELECT 1") == [1]
    finally:
        embedded.stop()


def test_restart_keeps_the_cluster_and_its_data(tmp_path: Path) -> None:
    """A second start on the same folder serves the same cluster (same system identifier), with the data written
    before the stop, and makes no new cluster."""
    first = EmbeddedPostgres(tmp_path / "postgres")
    url = first.start(timeout=START)
    try:
        sql(url, "CREATE TABLE kept (note text)", "INSERT INTO kept VALUES ('still here')")
        (cluster,) = sql(url, "SELECT system_identifier FROM pg_control_system()")
    finally:
        first.stop()
    second = EmbeddedPostgres(tmp_path / "postgres")
    assert second.start(timeout=START) == url
    try:
        assert sql(url, "SELECT system_identifier FROM pg_control_system()", "SELECT note FROM kept") == [
            cluster,
            "still here",
        ]
    finally:
        second.stop()


def test_a_second_server_on_the_same_folder_is_refused_clearly(tmp_path: Path) -> None:
    """Starting another server on a folder whose server runs exits with a message naming it; the first one keeps
    serving, untouched."""
    first = EmbeddedPostgres(tmp_path / "postgres")
    url = first.start(timeout=START)
    try:
        second = EmbeddedPostgres(tmp_path / "postgres")
        with pytest.raises(SystemExit, match=r"already runs on .*: another livecart uses this DATA_DIR"):
            second.start(timeout=START)
        assert second.process is None  # it never started one
        assert first.process is not None and first.process.poll() is None
        assert sql(url, "SELECT 1") == [1]
    finally:
        first.stop()
