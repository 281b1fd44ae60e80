"""Operator commands: create a merchant, mint a token, export and import a merchant, repair a sale
(`python -m server.cli …`).

create-merchant needs REDIS_URL, mint-token SECRET_KEY (or DATA_DIR/secret_key); export-merchant,
import-merchant and repair-sale both REDIS_URL and DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import config
from server.access.tokens import Tokens
from server.errors import STORE_ERRORS
from server.ledger import transfer
from server.ledger.client import Database
from server.ledger.migrate import migrate
from server.protocol import Role
from server.rooms.catalog import Catalog, CatalogError, new_id
from server.sales.changes import SaleChanges
from server.sales.ledger import SalesLedger
from server.sales.payments import SandboxProvider
from server.sales.records import Audit, SaleRefused
from server.sales.repair import repair_sale
from server.sales.store import Sales
from server.store import client
from server.store.batcher import ScriptBatcher


async def _create_merchant(settings: config.Settings, merchant_id: str, name: str) -> None:
    redis = Redis.from_url(settings.redis_url or "", decode_responses=True)
    try:
        created = await Catalog(redis).create_merchant(merchant_id, name)
    finally:
        await redis.aclose()
    print(f"merchant {merchant_id} {'created' if created else 'renamed'}", file=sys.stderr)


_FAILURES: tuple[type[Exception], ...] = (*STORE_ERRORS, asyncpg.PostgresError)


@asynccontextmanager
async def _stores(
    settings: config.Settings, *, migrated: bool = False
) -> AsyncIterator[tuple[Redis, asyncpg.Connection]]:
    """Redis and one PostgreSQL connection, each checked, or SystemExit saying which cannot be reached."""
    redis = Redis.from_url(settings.redis_url or "", decode_responses=True)
    try:
        try:
            await redis.ping()
        except STORE_ERRORS as problem:
            raise SystemExit(f"cannot reach Redis at REDIS_URL: {problem}") from None
        try:
            connection = await asyncpg.connect(settings.database_url)
        except _FAILURES as problem:  # refused, no such socket, or a wrong user, password or database
            raise SystemExit(f"cannot reach PostgreSQL at DATABASE_URL: {problem}") from None
        try:
            if migrated:
                await migrate(settings.database_url or "")
            yield redis, connection
        finally:
            await connection.close()
    finally:
        await redis.aclose()


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counts.items() if kind != "header")


def _open(path: str, mode: str) -> IO[bytes]:
    try:
        return open(path, mode)  # the caller closes it
    except OSError as problem:
        raise transfer.TransferError(f"cannot open {path}: {problem.strerror}") from None


async def _export(settings: config.Settings, merchant_id: str, output: str | None) -> None:
    """Write to standard output, or to `output` whole or not at all (through `output`.part)."""
    partial = None if output is None else f"{output}.part"
    out = sys.stdout.buffer if partial is None else _open(partial, "wb")
    try:
        async with _stores(settings) as (redis, connection):
            counts = await transfer.export_merchant(redis, connection, merchant_id, out)
        out.flush()
        if output is not None and partial is not None:
            os.fsync(out.fileno())
            out.close()
            os.replace(partial, output)
    finally:
        if partial is not None:
            out.close()
            Path(partial).unlink(missing_ok=True)
    print(f"exported merchant {merchant_id}: {_summary(counts)}", file=sys.stderr)


async def _import(settings: config.Settings, source: str) -> None:
    lines = sys.stdin.buffer if source == "-" else _open(source, "rb")
    try:
        async with _stores(settings, migrated=True) as (redis, connection):
            merchant_id, counts = await transfer.import_merchant(redis, connection, lines)
    finally:
        lines.close()
    print(f"imported merchant {merchant_id}: {_summary(counts)}", file=sys.stderr)


async def _repair_sale(settings: config.Settings, sale_id: str) -> Audit:
    redis = client.connect(settings.redis_url or "", pool_size=4, wait_seconds=10)
    db = Database(settings.database_url or "", pool_size=2)
    try:
        await db.open()
        sales = Sales(redis, ScriptBatcher(redis), SaleChanges(), SalesLedger(db))
        return await repair_sale(sales, SandboxProvider(db), sale_id)
    finally:
        await db.close()
        await redis.aclose()


def _stores_hint(settings: config.Settings) -> str:
    return (
        "set REDIS_URL and DATABASE_URL (the embedded servers' are "
        f"unix://{settings.redis_dir}/redis.sock and "
        f"postgresql://livecart@/livecart?host={settings.postgres_dir}&port=5432)"
    )


def mint(settings: config.Settings, merchant_id: str, role: Role, name: str, days: int) -> str:
    return Tokens(settings.secret_key).mint(
        user_id=new_id("u_"), name=name, role=role, merchant_id=merchant_id, ttl_seconds=days * 86400
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-merchant", help="create a merchant (needs REDIS_URL)")
    create.add_argument("merchant_id")
    create.add_argument("--name", required=True)
    token = commands.add_parser("mint-token", help="print a signed token for a merchant's staff")
    token.add_argument("--merchant", required=True)
    token.add_argument("--role", choices=[r.value for r in Role if r is not Role.VIEWER], default="host")
    token.add_argument("--name", default="Host")
    token.add_argument("--days", type=int, default=30)
    export = commands.add_parser(
        "export-merchant", help="write a merchant's whole data as NDJSON (needs REDIS_URL and DATABASE_URL)"
    )
    export.add_argument("merchant_id")
    export.add_argument("--output", "-o", help="the file to write (default: standard output)")
    restore = commands.add_parser(
        "import-merchant", help="restore an export-merchant file into an install without that merchant"
    )
    restore.add_argument("file", help="the file to read ('-': standard input)")
    repair = commands.add_parser(
        "repair-sale", help="rebuild a sale in Redis from PostgreSQL and the gateway after Redis lost data"
    )
    repair.add_argument("sale_id")
    args = parser.parse_args(argv)
    settings = config.load()
    if args.command == "create-merchant":
        if not settings.redis_url:
            parser.error("set REDIS_URL (the embedded server's is unix://<DATA_DIR>/redis/redis.sock)")
        try:
            asyncio.run(_create_merchant(settings, args.merchant_id, args.name))
        except CatalogError as problem:
            parser.error(str(problem))
        except (RedisError, OSError) as problem:
            raise SystemExit(f"cannot reach Redis at REDIS_URL: {problem}") from None
    elif args.command in ("export-merchant", "import-merchant"):
        if not settings.redis_url or not settings.database_url:
            parser.error(_stores_hint(settings))
        try:
            if args.command == "export-merchant":
                asyncio.run(_export(settings, args.merchant_id, args.output))
            else:
                asyncio.run(_import(settings, args.file))
        except transfer.TransferError as problem:
            raise SystemExit(f"{args.command}: {problem}") from None
        except _FAILURES as problem:
            outcome = "PostgreSQL rolled back; run it again" if args.command == "import-merchant" else "no file written"
            raise SystemExit(f"{args.command}: a store failed mid-way ({problem!r}); {outcome}") from None
    elif args.command == "repair-sale":
        if not settings.redis_url or not settings.database_url:
            parser.error(_stores_hint(settings))
        try:
            audit = asyncio.run(_repair_sale(settings, args.sale_id))
        except SaleRefused as problem:
            raise SystemExit(f"repair-sale: {args.sale_id}: {problem.message}") from None
        except _FAILURES as problem:
            raise SystemExit(f"repair-sale: a store failed ({problem!r}); run it again") from None
        print(orjson.dumps(audit.public()).decode())
        if not audit.ok:
            raise SystemExit(f"repair-sale: {args.sale_id} was rebuilt but its invariant does not hold")
    else:
        print(mint(settings, args.merchant, Role(args.role), args.name, args.days))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
