"""Operator commands: create a merchant, mint a token (`python -m server.cli …`, with REDIS_URL and SECRET_KEY)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import config
from server.access.tokens import Tokens
from server.protocol import Role
from server.rooms.catalog import Catalog, CatalogError, new_id


async def _create_merchant(settings: config.Settings, merchant_id: str, name: str) -> None:
    redis = Redis.from_url(settings.redis_url or "", decode_responses=True)
    try:
        created = await Catalog(redis).create_merchant(merchant_id, name)
    finally:
        await redis.aclose()
    print(f"merchant {merchant_id} {'created' if created else 'renamed'}", file=sys.stderr)


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
    else:
        print(mint(settings, args.merchant, Role(args.role), args.name, args.days))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
