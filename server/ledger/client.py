"""PostgreSQL for one process: an asyncpg pool opened at start and closed at stop, and the two time conversions."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg

from server.errors import STORE_ERRORS
from server.ledger.migrate import migrate

Record = asyncpg.Record
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy  # a connection, or one of the pool's

# What a connection attempt fails with when the server is not there or will not let us in (a wrong user,
# password or database name in DATABASE_URL); an error in a migration's SQL is a bug and keeps its traceback.
UNREACHABLE: tuple[type[Exception], ...] = (
    *STORE_ERRORS,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


class Database:
    """The process's pool: at most `pool_size` connections; a call waits (up to `timeout`) for one."""

    def __init__(self, url: str, *, pool_size: int, timeout: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Bring the schema up to date (under the migration lock) and open the pool.

        A server that cannot be reached is a SystemExit saying so (the process cannot serve without it).
        """
        try:
            await migrate(self.url)
            self._pool = await asyncpg.create_pool(
                self.url, min_size=0, max_size=self.pool_size, timeout=self.timeout, command_timeout=self.timeout * 3
            )
        except UNREACHABLE as problem:
            raise SystemExit(f"cannot reach PostgreSQL at DATABASE_URL {redacted(self.url)}: {problem}") from None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "Database.open() first"
        return self._pool

    async def close(self) -> None:
        """Close the pool once its calls in flight end; cut them if this is cancelled (the shutdown budget)."""
        if self._pool is not None:
            try:
                await self._pool.close()
            except BaseException:
                self._pool.terminate()
                raise


def redacted(url: str) -> str:
    """A database URL fit for a log: its password (user:password@ or ?password=) masked."""
    return re.sub(r"(password=)[^&]*", r"\1***", re.sub(r":[^:@/]*@", ":***@", url))


def at(ms: int | None) -> datetime | None:
    """A time in ms since the epoch (the Redis clock's unit) as a timestamptz."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def ms(moment: datetime | None) -> int | None:
    """A timestamptz as ms since the epoch."""
    return None if moment is None else round(moment.timestamp() * 1000)
