"""PostgreSQL for one process: an asyncpg pool opened at start and closed at stop, and the two time conversions."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from server.ledger.migrate import migrate

Record = asyncpg.Record


class Database:
    """The process's pool: at most `pool_size` connections; a call waits (up to `timeout`) for one."""

    def __init__(self, url: str, *, pool_size: int, timeout: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Bring the schema up to date (under the migration lock) and open the pool."""
        await migrate(self.url)
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, timeout=self.timeout, command_timeout=self.timeout * 3
        )

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


def at(ms: int | None) -> datetime | None:
    """A time in ms since the epoch (the Redis clock's unit) as a timestamptz."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def ms(moment: datetime | None) -> int | None:
    """A timestamptz as ms since the epoch."""
    return None if moment is None else round(moment.timestamp() * 1000)
