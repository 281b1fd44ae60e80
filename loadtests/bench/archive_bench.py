"""Archive benchmark: Redis memory after 10 finished sales and after 1,000, with archiving and without.

Starts a fresh server (embedded Redis and PostgreSQL) on which a finished sale leaves Redis at once
(SALE_ARCHIVE_GRACE_MS=0, the sale clock every 50 ms) and finishes --first sales in the demo room,
--concurrency at a time over HTTP. Each sale: created (--duration-seconds long, holds of
--hold-seconds), one buyer holds a unit and pays, another holds one and walks away (the hold
expires). It waits until every sale is settled (archived: its keys gone from Redis), reads Redis
(INFO memory used_memory, DBSIZE, MEMORY USAGE of every key, by kind) and counts the sales' orders
in PostgreSQL; then finishes sales up to --total and reads again. Then, in the same run, the
baseline: a server on which no sale is archived within the run (SALE_ARCHIVE_GRACE_MS of a year:
the code before, a sale's keys stay), the same steps, settled meaning ended with no hold left and
its order log drained to PostgreSQL. Prints one row per reading, the ratio of Redis memory after
--total to after --first for each server (also without the room's history, a ring of HISTORY_SIZE
events that fills up and stops), and the keys by kind (--json FILE: every figure).

    python -m loadtests.bench.archive_bench --first 10 --total 1000
    python -m loadtests.bench.archive_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvloop
from redis.asyncio import Redis

from loadtests.bench import purchase_bench
from loadtests.support import smoke, table, tokens
from loadtests.support.server import ServerProcess, running
from server import keys
from server.protocol import Role

SMOKE = {"first": 3, "total": 10, "concurrency": 4, "idle_seconds": 1}
CARD = "4242424242424242"  # the sandbox's approved test card
YEAR_MS = 365 * 86_400_000
CLOCK = {"SALE_CLOCK_MS": "50", "LIVE_REVISIT_MS": "100"}
COLUMNS = (
    "server",
    "finished sales",
    "Redis used_memory KiB",
    "keys (DBSIZE)",
    "sale keys",
    "memory of all keys KiB",
    "room hash KiB",
    "room history KiB",
    "orders in PostgreSQL",
    "refused",
    "idle server CPU %",
    "idle Redis CPU %",
)


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]
    archives: bool


CONFIGS = (
    Config("archiving (grace 0)", {"SALE_ARCHIVE_GRACE_MS": "0", **CLOCK}, archives=True),
    Config("never archived (baseline)", {"SALE_ARCHIVE_GRACE_MS": str(YEAR_MS), **CLOCK}, archives=False),
)


@dataclass
class Shop:
    """Who calls the server, and what the sales made so far were told."""

    api: httpx.AsyncClient
    secret: str  # the server's SECRET_KEY: buyers' tokens are signed with it
    host: str
    sale_ids: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)


async def finish_one(shop: Shop, number: int, args: argparse.Namespace) -> None:
    """A short sale: created, one unit held and paid, one held and left to expire (the clock ends both)."""
    created = await shop.api.post(
        "/api/merchants/demo/rooms/demo/sales",
        headers={"Authorization": f"Bearer {shop.host}"},
        json={
            "product_id": "mug",
            "price": 990,
            "quantity": 2,
            "per_user_limit": 1,
            "starts_at": int(time.time() * 1000),
            "duration_seconds": args.duration_seconds,
            "hold_seconds": args.hold_seconds,
        },
    )
    created.raise_for_status()
    sale_id = created.json()["id"]
    shop.sale_ids.append(sale_id)
    for buyer, pays in ((f"a{number}", True), (f"b{number}", False)):
        token = tokens.buyer(shop.secret, buyer)
        auth = {"Authorization": f"Bearer {token}"}
        held = await shop.api.post(
            f"/api/sales/{sale_id}/purchases", headers={**auth, "Idempotency-Key": f"buy-{buyer}"}, json={"quantity": 1}
        )
        if held.status_code != 201:
            shop.refused[f"purchase {held.status_code} {held.text[:60]}"] += 1
            continue
        if pays:
            paid = await shop.api.post(
                f"/api/orders/{held.json()['order_id']}/payment",
                headers={**auth, "Idempotency-Key": f"pay-{buyer}"},
                json={"card_number": CARD},
            )
            if paid.status_code != 200:
                shop.refused[f"payment {paid.status_code} {paid.text[:60]}"] += 1


async def finish(shop: Shop, numbers: range, args: argparse.Namespace) -> None:
    """Run these sales, --concurrency at a time."""
    gate = asyncio.Semaphore(args.concurrency)

    async def one(number: int) -> None:
        async with gate:
            await finish_one(shop, number, args)

    await asyncio.gather(*(one(number) for number in numbers))


async def unsettled(redis: Redis, sale_ids: list[str], archives: bool) -> list[str]:
    """The sales not settled yet. Archiving: those whose keys are still in Redis. Else: those not ended,
    with a hold left, or with changes not yet in PostgreSQL (their order log not empty)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        for sale_id in sale_ids:
            pipe.hget(keys.sale(sale_id), "ends_at")
            pipe.zcard(keys.sale_holds(sale_id))
            pipe.xlen(keys.sale_log(sale_id))
        (seconds, micros), *replies = await pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    waiting = []
    for index, sale_id in enumerate(sale_ids):
        ends_at, holds, log = replies[3 * index : 3 * index + 3]
        if ends_at is None:
            continue  # archived
        if archives or int(ends_at) > now_ms or holds or log:
            waiting.append(sale_id)
    return waiting


async def settle(
    redis: Redis, database: asyncpg.Connection, sale_ids: list[str], archives: bool, timeout: float
) -> tuple[float, list[str]]:
    """Wait until every sale is settled (see `unsettled`) and its copied changes are projected into orders;
    (seconds waited, the sales unsettled at the deadline)."""
    started = time.monotonic()
    waiting = list(sale_ids)
    while time.monotonic() - started <= timeout:
        waiting = await unsettled(redis, waiting, archives)
        if not waiting and not await database.fetchval(
            "SELECT count(*) FROM order_log WHERE sale_id = ANY($1::text[])", sale_ids
        ):
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started, waiting


async def stuck(redis: Redis, sale_ids: list[str]) -> list[dict[str, Any]]:
    """What keeps these sales from settling (the first 10): end, holds, order log, and whether the backup reads it."""
    found = []
    for sale_id in sale_ids[:10]:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hget(keys.sale(sale_id), "ends_at")
            pipe.zcard(keys.sale_holds(sale_id))
            pipe.xlen(keys.sale_log(sale_id))
            pipe.zscore(keys.sales_ledger(), sale_id)
            pipe.zscore(keys.sales_due(), sale_id)
            (seconds, micros), ends_at, holds, log, ledger, due = await pipe.execute()
        found.append(
            {
                "sale_id": sale_id,
                "ended_ms_ago": None if ends_at is None else seconds * 1000 + micros // 1000 - int(ends_at),
                "holds": holds,
                "log_entries": log,
                "in_sales_ledger": ledger is not None,
                "due_at": due,
            }
        )
    return found


def kind(key: str) -> str:
    """A key's kind: its name with every {hash tag} blanked (sale:{s_1}:orders -> sale:{}:orders); a rate limit's
    bucket by its rule (limit:{limits}:pay-order:s_1.2 -> limit:{}:pay-order)."""
    blanked = re.sub(r"\{[^}]*\}", "{}", key)
    return ":".join(blanked.split(":")[:3]) if blanked.startswith("limit:") else blanked


async def idle_cpu(server: ServerProcess, seconds: float) -> dict[str, float]:
    """CPU % of the server's processes and its Redis over `seconds` with no requests (its background loops)."""
    tree = server.tree()
    before = purchase_bench.cpu_seconds(tree.web + tree.redis)
    began = time.monotonic()
    await asyncio.sleep(seconds)
    after = purchase_bench.cpu_seconds(tree.web + tree.redis)
    elapsed = time.monotonic() - began
    used = {pid: after[pid] - before[pid] for pid in after if pid in before}
    return {
        "idle_server_cpu_percent": round(100 * sum(used.get(pid, 0.0) for pid in tree.web) / elapsed, 1),
        "idle_redis_cpu_percent": round(100 * sum(used.get(pid, 0.0) for pid in tree.redis) / elapsed, 1),
    }


async def reading(
    redis: Redis, database: asyncpg.Connection, sale_ids: list[str], name: str, settled: tuple[float, list[str]]
) -> dict[str, Any]:
    """Redis memory and keys now, by kind, and the sales' orders in PostgreSQL."""
    every = [key async for key in redis.scan_iter(count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in every:
            pipe.memory_usage(key, samples=0)
        sizes = await pipe.execute()
    by_kind: dict[str, dict[str, int]] = {}
    for key, size in zip(every, sizes, strict=True):
        entry = by_kind.setdefault(kind(key), {"keys": 0, "bytes": 0})
        entry["keys"] += 1
        entry["bytes"] += int(size or 0)
    memory = await redis.info("memory")
    ours = {f"sale:{{{sale_id}}}" for sale_id in sale_ids}
    rows = await database.fetch(
        "SELECT status, count(*) FROM orders WHERE sale_id = ANY($1::text[]) GROUP BY status", sale_ids
    )
    statuses = {str(row[0]): int(row[1]) for row in rows}
    return {
        "server": name,
        "finished_sales": len(sale_ids),
        "settled_after_s": round(settled[0], 1),
        "unsettled": len(settled[1]),
        "unsettled_sales": await stuck(redis, settled[1]),
        "used_memory": int(memory["used_memory"]),
        "used_memory_dataset": int(memory["used_memory_dataset"]),
        "used_memory_rss": int(memory["used_memory_rss"]),
        "dbsize": int(await redis.dbsize()),
        "sale_keys": sum(1 for key in every if key.partition("}")[0] + "}" in ours),
        "keys_bytes": sum(entry["bytes"] for entry in by_kind.values()),
        "room_hash_bytes": by_kind.get("room:{}", {}).get("bytes", 0),
        "room_history_bytes": by_kind.get("room:{}:history", {}).get("bytes", 0),
        "limit_bytes": sum(entry["bytes"] for name, entry in by_kind.items() if name.startswith("limit:")),
        "orders_in_postgres": sum(statuses.values()),
        "orders_by_status": statuses,
        "by_kind": dict(sorted(by_kind.items(), key=lambda item: -item[1]["bytes"])),
    }


async def measure(args: argparse.Namespace, config: Config) -> list[dict[str, Any]]:
    """One server: finish --first sales, settle, read; finish up to --total, settle, read."""
    with running(workers=args.workers, env=config.env) as server:
        return await _measure(args, config, server)


async def _measure(args: argparse.Namespace, config: Config, server: ServerProcess) -> list[dict[str, Any]]:
    host = tokens.staff(server.secret, "demo", Role.HOST, "Bench Host")
    limits = httpx.Limits(max_connections=args.concurrency)
    redis = Redis.from_url(server.redis_url, decode_responses=True)
    database = await asyncpg.connect(server.database_url)
    readings = []
    try:
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as api:
            shop = Shop(api, server.secret, host)
            for start, end in ((0, args.first), (args.first, args.total)):
                began = time.monotonic()
                await finish(shop, range(start, end), args)
                made = time.monotonic() - began
                settled = await settle(redis, database, shop.sale_ids, config.archives, args.settle_timeout)
                readings.append(
                    {
                        **await reading(redis, database, shop.sale_ids, config.name, settled),
                        **await idle_cpu(server, args.idle_seconds),
                        "made_in_s": round(made, 1),
                        "refused": sum(shop.refused.values()),
                        "refusals": dict(shop.refused),
                    }
                )
                print(
                    f"{config.name}: {len(shop.sale_ids):,} sales finished ({end - start:,} in {made:.1f} s), "
                    f"settled {settled[0]:.1f} s later, Redis used_memory {readings[-1]['used_memory']:,} bytes",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await database.close()
        await redis.aclose()
    return readings


def ratio(readings: list[dict[str, Any]], figure: str) -> float:
    return float(readings[-1][figure] / readings[0][figure])


def report(result: dict[str, Any]) -> str:
    """The table (one row per reading), the ratios, and the keys by kind at the last reading of each server."""
    rows = [
        [
            line["server"],
            line["finished_sales"],
            round(line["used_memory"] / 1024),
            line["dbsize"],
            line["sale_keys"],
            round(line["keys_bytes"] / 1024),
            round(line["room_hash_bytes"] / 1024, 1),
            round(line["room_history_bytes"] / 1024, 1),
            line["orders_in_postgres"],
            line["refused"],
            line["idle_server_cpu_percent"],
            line["idle_redis_cpu_percent"],
        ]
        for line in result["readings"]
    ]
    lines = [table.markdown(COLUMNS, rows), ""]
    for name, readings in result["servers"].items():
        first, last = readings[0], readings[-1]
        grown = (last["used_memory"] - first["used_memory"]) / max(1, last["finished_sales"] - first["finished_sales"])
        unbounded = [line["used_memory"] - line["room_history_bytes"] for line in (first, last)]
        kept = [memory - line["limit_bytes"] for memory, line in zip(unbounded, (first, last), strict=True)]
        lines.append(
            f"ratio {name}: used_memory after {last['finished_sales']:,} / after {first['finished_sales']:,} sales "
            f"{ratio(readings, 'used_memory'):.2f}x ({grown:+,.0f} bytes per further sale); "
            f"without the room's history (a ring of HISTORY_SIZE events, full after a few hundred sales) "
            f"{unbounded[1] / unbounded[0]:.2f}x; without it and the payment limits' buckets (they lapse with "
            f"their window, LIMIT_PAYMENTS_*) {kept[1] / kept[0]:.2f}x; keys {ratio(readings, 'dbsize'):.2f}x"
        )
    for name, readings in result["servers"].items():
        kinds = ", ".join(
            f"{kind} {entry['keys']:,} ({entry['bytes'] / 1024:,.1f} KiB)"
            for kind, entry in readings[-1]["by_kind"].items()
        )
        lines.append(f"keys by kind, {name}, after {readings[-1]['finished_sales']:,}: {kinds}")
    for line in result["readings"]:
        if line["unsettled"]:
            lines.append(
                f"NOT settled within --settle-timeout, {line['server']}, after {line['finished_sales']:,}: "
                f"{line['unsettled']} sale(s) (the reading includes them): {line['unsettled_sales']}"
            )
    lines.append(f"command: {result['command']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = {config.name: await measure(args, config) for config in CONFIGS}
    return {
        "command": "python -m loadtests.bench.archive_bench " + " ".join(args.argv),
        "servers": servers,
        "readings": [line for readings in servers.values() for line in readings],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=int, default=10, help="sales finished before the first reading")
    parser.add_argument("--total", type=int, default=1000, help="sales finished before the second reading")
    parser.add_argument("--concurrency", type=int, default=16, help="sales being made at once")
    parser.add_argument("--duration-seconds", type=int, default=2, help="each sale's length")
    parser.add_argument("--hold-seconds", type=int, default=2, help="each sale's hold time (the unpaid one expires)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--settle-timeout", type=float, default=60, help="seconds to wait for the sales to settle")
    parser.add_argument("--idle-seconds", type=float, default=3, help="CPU sampled this long after each reading")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report)


if __name__ == "__main__":
    main()
