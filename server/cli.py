"""Operator commands: create a merchant and its staff, a single-use login link, sign a person out everywhere,
export and import a merchant, repair a sale (`python -m server.cli …`).

Each needs REDIS_URL and DATABASE_URL (`python -m server` prints the embedded ones' with --help
here); login-link also SECRET_KEY (or DATA_DIR/secret_key), as the server has it.
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

from server import config
from server.access.accounts import Accounts, Destination, destination_from
from server.access.sessions import MAX_LINK_MINUTES, Sessions
from server.access.tokens import Tokens
from server.errors import STORE_ERRORS, BadRequest
from server.ledger import transfer
from server.ledger.client import Database
from server.ledger.migrate import migrate
from server.protocol import Role
from server.rooms.catalog import Catalog, CatalogError
from server.sales.changes import SaleChanges
from server.sales.ledger import SalesLedger
from server.sales.payments import SandboxProvider
from server.sales.records import Audit, SaleRefused
from server.sales.repair import repair_sale
from server.sales.store import Sales
from server.store import client
from server.store.batcher import ScriptBatcher


def _redis(settings: config.Settings) -> Redis:
    """The configured Redis (server.store.client.open_store): a cluster, the Sentinels' primary, or REDIS_URL."""
    return client.open_store(settings, pool_size=4)


@asynccontextmanager
async def access(settings: config.Settings) -> AsyncIterator[tuple[Catalog, Accounts, Sessions]]:
    """The catalog, accounts and sessions on the configured stores (the schema brought up to date first)."""
    redis = _redis(settings)
    db = Database(settings.database_url or "", pool_size=2)
    try:
        try:
            await redis.ping()
        except STORE_ERRORS as problem:
            raise SystemExit(f"cannot reach Redis at REDIS_URL: {problem}") from None
        await db.open()
        accounts = Accounts(db)
        yield Catalog(redis), accounts, Sessions(db, redis, Tokens(settings.secret_key), accounts, settings)
    finally:
        await db.close()
        await redis.aclose()


def _destination(args: argparse.Namespace) -> Destination:
    return destination_from({"email": args.email} if args.email else {"phone": args.phone})


async def _create_merchant(settings: config.Settings, args: argparse.Namespace) -> None:
    async with access(settings) as (catalog, accounts, _):
        created = await catalog.create_merchant(args.merchant_id, args.name)
        print(f"merchant {args.merchant_id} {'created' if created else 'renamed'}", file=sys.stderr)
        if args.email or args.phone:
            member = await accounts.add_staff(args.merchant_id, _destination(args), args.admin_name, Role.ADMIN, None)
            print(f"admin {member.user_id} ({member.email or member.phone}): sign in with a code, or login-link")


async def _add_staff(settings: config.Settings, args: argparse.Namespace) -> None:
    async with access(settings) as (catalog, accounts, _):
        if not await catalog.merchant_exists(args.merchant):
            raise SystemExit(f"add-staff: no merchant {args.merchant!r}: create-merchant first")
        member = await accounts.add_staff(args.merchant, _destination(args), args.name, Role(args.role), None)
        print(f"{member.role.value} {member.user_id} ({member.email or member.phone}) of {args.merchant}")


async def _login_link(settings: config.Settings, args: argparse.Namespace) -> str:
    async with access(settings) as (_, accounts, sessions):
        user = await accounts.by_destination(_destination(args))
        if user is None:
            raise SystemExit("login-link: nobody has that email or phone: add-staff first")
        return await sessions.login_link(user.id, args.minutes)


async def _revoke(settings: config.Settings, args: argparse.Namespace) -> int:
    async with access(settings) as (_, accounts, sessions):
        user_id = args.user
        if user_id is None:
            user = await accounts.by_destination(_destination(args))
            if user is None:
                raise SystemExit("revoke: nobody has that email or phone")
            user_id = user.id
        return len(await sessions.revoke_user(user_id, "revoked from the command line"))


def login_url(settings: config.Settings, ticket: str, base: str = "", room: str | None = None) -> str:
    """The studio page that signs in with a login link (the ticket in the fragment: never sent to a server log)."""
    query = f"?room={room}" if room else ""
    return f"{base or settings.public_url}/studio.html{query}#login={ticket}"


_FAILURES: tuple[type[Exception], ...] = (*STORE_ERRORS, asyncpg.PostgresError)


@asynccontextmanager
async def _stores(
    settings: config.Settings, *, migrated: bool = False
) -> AsyncIterator[tuple[Redis, asyncpg.Connection]]:
    """Redis and one PostgreSQL connection, each checked, or SystemExit saying which cannot be reached."""
    redis = _redis(settings)
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
    redis = _redis(settings)
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


def _person(parser: argparse.ArgumentParser, required: bool = True) -> None:
    who = parser.add_mutually_exclusive_group(required=required)
    who.add_argument("--email")
    who.add_argument("--phone", help="in international form, e.g. +14155550100")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-merchant", help="create a merchant, and its first admin (--email/--phone)")
    create.add_argument("merchant_id")
    create.add_argument("--name", required=True)
    _person(create, required=False)
    create.add_argument("--admin-name", default="Admin")
    staff = commands.add_parser("add-staff", help="give a person (made if new) a staff role for a merchant")
    staff.add_argument("merchant")
    _person(staff)
    staff.add_argument("--role", choices=[r.value for r in Role if r is not Role.VIEWER], default="host")
    staff.add_argument("--name", default="Host")
    link = commands.add_parser("login-link", help="print a single-use studio login link for a person")
    _person(link)
    link.add_argument("--minutes", type=int, default=10, help=f"how long it works, 1 to {MAX_LINK_MINUTES}")
    revoke = commands.add_parser("revoke", help="sign a person out everywhere at once (sockets and video too)")
    _person(revoke, required=False)
    revoke.add_argument("--user", help="a user id instead of --email/--phone")
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
    if not (settings.redis_url or settings.redis_sentinels) or not settings.database_url:
        parser.error(_stores_hint(settings))
    if args.command == "login-link" and not 1 <= args.minutes <= MAX_LINK_MINUTES:
        parser.error(f"--minutes must be 1 to {MAX_LINK_MINUTES}, got {args.minutes}")
    if args.command == "revoke" and not (args.user or args.email or args.phone):
        parser.error("say who: --email, --phone or --user")
    if args.command in ("create-merchant", "add-staff", "login-link", "revoke"):
        try:
            if args.command == "create-merchant":
                asyncio.run(_create_merchant(settings, args))
            elif args.command == "add-staff":
                asyncio.run(_add_staff(settings, args))
            elif args.command == "login-link":
                print(login_url(settings, asyncio.run(_login_link(settings, args))))
            else:
                print(f"signed out {asyncio.run(_revoke(settings, args))} session(s)")
        except (CatalogError, BadRequest) as problem:
            parser.error(problem.message)
        except _FAILURES as problem:
            raise SystemExit(f"{args.command}: a store failed ({problem!r})") from None
    elif args.command in ("export-merchant", "import-merchant"):
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
        try:
            audit = asyncio.run(_repair_sale(settings, args.sale_id))
        except SaleRefused as problem:
            raise SystemExit(f"repair-sale: {args.sale_id}: {problem.message}") from None
        except _FAILURES as problem:
            raise SystemExit(f"repair-sale: a store failed ({problem!r}); run it again") from None
        print(orjson.dumps(audit.public()).decode())
        if not audit.ok:
            raise SystemExit(f"repair-sale: {args.sale_id} was rebuilt but its invariant does not hold")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
