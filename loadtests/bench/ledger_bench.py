"""Ledger benchmark: the purchase storm with the ledger backup off, on, and on with durable acknowledgement.

Runs purchase_bench's measurement (a sale in the demo room, --connections keep-alive connections
buying, a new buyer each time, limit 1) against a fresh server (embedded Redis and PostgreSQL) in
three configurations, alternated over --rounds (the order rotates each round) so that the
machine's noise hits all three alike:

- consumer off (LEDGER_CONSUMER=0): the baseline, the code before the ledger (the order log fills
  up and nothing drains it);
- consumer on (the default): each process copies every order change to PostgreSQL as it happens (the
  order log; the projection into orders waits for the storm to pass, server/sales/backup.py);
- consumer on + DURABLE_ACK=1: every batch of sale scripts also waits for Redis's AOF fsync.

For each: attempts/s (each round, the median, and its ratio to the baseline's median), p99
latency, and the ledger lag (order change in Redis -> copied: its log row committed in
PostgreSQL) from the server's /metrics: the gauge livecart_ledger_lag_p99_seconds read every second of the storm and
once when drained (the highest reading), and the histogram livecart_ledger_lag_seconds over the
measured seconds (per copy, for its oldest change: the share within 1 s, and the bucket holding
the p99). Then, after the buyers stop, how long until every change is copied (the sale's log in
Redis empty) and until PostgreSQL has every order of the sale, projected (`SELECT count(*) FROM
orders WHERE sale_id = $1` on the server's DATABASE_URL, every 50 ms, until it equals the orders
in Redis). --json FILE writes every run and the summary.

    python -m loadtests.bench.ledger_bench --seconds 10 --workers 2 --connections 128 --rounds 3
    python -m loadtests.bench.ledger_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from loadtests.bench import purchase_bench
from loadtests.support import smoke, table
from loadtests.support.server import ServerProcess, running
from server import keys
from server.store import client

SMOKE = {**purchase_bench.SMOKE, "rounds": 1, "drain_timeout": 20}
LAG = "livecart_ledger_lag_seconds"
LAG_P99 = "livecart_ledger_lag_p99_seconds"
TARGET_RATIO = 0.90  # the issue: purchases/s with the consumer within 10% of without
TARGET_LAG_S = 1.0  # and ledger lag p99 <= 1 s during the storm
LAST_BUCKET_S = 10.0  # the histogram's last finite bucket (server/metrics.py)
COLUMNS = (
    "configuration",
    "attempts/s (each round)",
    "median attempts/s",
    "vs consumer off",
    "p99 ms",
    "lag p99 s (gauge, max)",
    "lag ≤ 1 s %",
    "lag p99 s (histogram)",
    "copied s",
    "projected s",
    "orders",
    "in PostgreSQL",
    "oversold",
    "server CPU %",
    "Redis CPU %",
    "PostgreSQL CPU %",
    "client CPU %",
    "others CPU %",
)


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]
    consumer: bool


BASELINE = Config("consumer off", {"LEDGER_CONSUMER": "0"}, consumer=False)
CONFIGS = (
    BASELINE,
    Config("consumer on", {"LEDGER_CONSUMER": "1"}, consumer=True),
    Config("consumer on + DURABLE_ACK", {"LEDGER_CONSUMER": "1", "DURABLE_ACK": "1"}, consumer=True),
)


async def scrape(http: httpx.AsyncClient) -> tuple[dict[float, float], float | None]:
    """From /metrics: the lag histogram's cumulative buckets (upper bound -> changes) and the p99 gauge."""
    response = await http.get("/metrics")
    response.raise_for_status()
    buckets: dict[float, float] = {}
    gauge = None
    for family in text_string_to_metric_families(response.text):
        if family.name == LAG:
            for sample in family.samples:
                if sample.name == LAG + "_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
        elif family.name == LAG_P99:
            gauge = max((sample.value for sample in family.samples), default=None)
    return buckets, gauge


def lag_histogram(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The changes written between two scrapes: how many, the share within 1 s, the bucket holding the p99
    (its upper bound; None when it is past the last finite bucket)."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts.get(math.inf, 0.0)
    if total <= 0:
        return {"lag_changes": 0, "lag_within_1s_percent": None, "lag_p99_bucket_s": None}
    p99 = next(bound for bound in sorted(counts) if counts[bound] >= 0.99 * total)
    return {
        "lag_changes": int(total),
        "lag_within_1s_percent": round(100 * counts.get(TARGET_LAG_S, 0.0) / total, 2),
        "lag_p99_bucket_s": None if math.isinf(p99) else p99,
    }


def store(server: ServerProcess, config: Config) -> Redis:
    """The server's Redis: the cluster its configuration names (purchase_bench --cluster), else its embedded one."""
    if config.env.get("REDIS_CLUSTER") == "1":
        return client.cluster(config.env["REDIS_URL"], pool_size=2)
    return Redis.from_url(server.redis_url, decode_responses=True)


async def drain(server: ServerProcess, watch: purchase_bench.Watch, config: Config, timeout: float) -> dict[str, Any]:
    """Once the buyers are gone: the sale's orders in Redis and in PostgreSQL, and (consumer on) the seconds from
    the buyers stopping until every change was copied (the sale's log in Redis empty) and until PostgreSQL had
    every order (projected; None: not within `timeout`)."""
    await watch.idle.wait()
    redis = store(server, config)
    database = await asyncpg.connect(server.database_url)
    copied = None
    try:
        orders = int(await redis.hlen(keys.sale_orders(watch.sale_id)))
        while True:
            log_left = int(await redis.xlen(keys.sale_log(watch.sale_id)))
            if copied is None and log_left == 0:
                copied = time.monotonic() - watch.stopped_at
            rows = int(await database.fetchval("SELECT count(*) FROM orders WHERE sale_id = $1", watch.sale_id))
            if rows >= orders or not config.consumer or time.monotonic() > watch.stopped_at + timeout:
                break
            await asyncio.sleep(0.05)
        drained = time.monotonic() - watch.stopped_at if config.consumer and rows >= orders else None
    finally:
        await database.close()
        await redis.aclose()
    return {
        "orders": orders,
        "ledger_rows": rows,
        "log_entries_left": log_left,
        "copied_s": None if copied is None or not config.consumer else round(copied, 2),
        "drained_s": None if drained is None else round(drained, 2),
    }


async def follow(server: ServerProcess, watch: purchase_bench.Watch, config: Config, timeout: float) -> dict[str, Any]:
    """Read /metrics as the storm runs (once a second) and around it, then wait for the drain; the ledger's figures."""
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.metrics_headers, timeout=10) as http:
        await watch.measuring.wait()
        before, _ = await scrape(http)
        readings: list[float] = []
        while not watch.stopped.is_set():
            try:
                await asyncio.wait_for(watch.stopped.wait(), 1.0)
            except TimeoutError:
                _, gauge = await scrape(http)
                if gauge is not None:
                    readings.append(gauge)
        after, _ = await scrape(http)
        figures = {**lag_histogram(before, after), **await drain(server, watch, config, timeout)}
        _, gauge = await scrape(http)  # the last 10 s: the storm's end and the drain
        if gauge is not None:
            readings.append(gauge)
    return {
        **figures,
        "lag_gauge_readings_s": [round(value, 3) for value in readings],
        "lag_gauge_max_s": round(max(readings), 3) if config.consumer and readings else None,
    }


async def run_once(args: argparse.Namespace, config: Config, number: int) -> dict[str, Any]:
    """One storm against a fresh server in this configuration: purchase_bench's figures and the ledger's."""
    with running(workers=args.workers, env=config.env) as server:
        watch = purchase_bench.Watch()
        follower = asyncio.create_task(follow(server, watch, config, args.drain_timeout))
        try:
            figures = await purchase_bench.measure(args, server, watch)
            ledger = await follower
        finally:
            follower.cancel()
    return {"configuration": config.name, "round": number, **figures, **ledger}


def worst_bucket(buckets: list[float | None]) -> float | str | None:
    """The highest p99 bucket of the rounds; "beyond" when a round's p99 was past the last finite bucket."""
    if None in buckets:
        return "beyond"
    return max((bucket for bucket in buckets if bucket is not None), default=None)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration, over its rounds: medians of rates, p99s and CPU; the worst lag and drain; sums of orders."""
    summary = []
    baseline = None
    for config in CONFIGS:
        mine = [run for run in runs if run["configuration"] == config.name]
        if not mine:
            continue
        rate = statistics.median(run["attempts_per_s"] for run in mine)
        baseline = rate if config is BASELINE else baseline
        consumer = config.consumer
        drains = [run["drained_s"] for run in mine]
        buckets = [run["lag_p99_bucket_s"] for run in mine if run["lag_changes"]]
        summary.append(
            {
                "configuration": config.name,
                "env": config.env,
                "rounds": len(mine),
                "attempts_per_s_each": [run["attempts_per_s"] for run in mine],
                "attempts_per_s_median": round(rate),
                "vs_consumer_off": round(rate / baseline, 3) if baseline else None,
                "latency_p99_ms_median": round(statistics.median(run["latency_p99_ms"] for run in mine), 1),
                "lag_gauge_max_s": max(run["lag_gauge_max_s"] for run in mine) if consumer else None,
                "lag_within_1s_percent_min": min(run["lag_within_1s_percent"] or 0.0 for run in mine)
                if consumer
                else None,
                "lag_p99_bucket_s": worst_bucket(buckets) if consumer else None,
                "copied_s_max": max((run["copied_s"] or math.inf for run in mine), default=None) if consumer else None,
                "drained_s_max": (None if None in drains else max(drains)) if consumer else None,
                "all_drained": all(value is not None for value in drains) if consumer else None,
                "orders": sum(run["orders"] for run in mine),
                "ledger_rows": sum(run["ledger_rows"] for run in mine),
                "oversold": sum(run["oversold"] for run in mine),
                **{
                    f"{program}_cpu_percent": round(statistics.median(run[f"{program}_cpu_percent"] for run in mine))
                    for program in ("server", "redis", "postgres", "client", "others")
                },
            }
        )
    return summary


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _bucket_cell(value: float | str | None) -> str | None:
    """The p99's bucket as an upper bound ("≤ 0.25"), or "> 10" past the histogram's last finite bucket."""
    if value is None:
        return None
    return f"> {LAST_BUCKET_S:g}" if value == "beyond" else f"≤ {value:g}"


def report(result: dict[str, Any]) -> str:
    """The table (one row per configuration), then the verdicts against the issue's targets."""
    rows = [
        [
            line["configuration"],
            " · ".join(f"{rate:,}" for rate in line["attempts_per_s_each"]),
            line["attempts_per_s_median"],
            None if line["vs_consumer_off"] is None else f"{line['vs_consumer_off']:.2f}x",
            line["latency_p99_ms_median"],
            _seconds(line["lag_gauge_max_s"]),
            line["lag_within_1s_percent_min"],
            _bucket_cell(line["lag_p99_bucket_s"]),
            _seconds(line["copied_s_max"]),
            _seconds(line["drained_s_max"]) if line["all_drained"] is not False else "not drained",
            line["orders"],
            line["ledger_rows"],
            line["oversold"],
            line["server_cpu_percent"],
            line["redis_cpu_percent"],
            line["postgres_cpu_percent"],
            line["client_cpu_percent"],
            line["others_cpu_percent"],
        ]
        for line in result["summary"]
    ]
    lines = [table.markdown(COLUMNS, rows), ""]
    by_name = {line["configuration"]: line for line in result["summary"]}
    on, durable = by_name.get(CONFIGS[1].name), by_name.get(CONFIGS[2].name)
    if on and on["vs_consumer_off"] is not None:
        met = "met" if on["vs_consumer_off"] >= TARGET_RATIO else "NOT met"
        lines.append(f"ratio consumer on / consumer off: {on['vs_consumer_off']:.2f}x (target ≥ {TARGET_RATIO}: {met})")
    if durable and durable["vs_consumer_off"] is not None:
        lines.append(f"ratio consumer on + DURABLE_ACK / consumer off: {durable['vs_consumer_off']:.2f}x")
    for line in (on, durable):
        if line is None:
            continue
        gauge = line["lag_gauge_max_s"]
        met = "met" if gauge is not None and gauge <= TARGET_LAG_S else "NOT met"
        lines.append(
            f"ledger lag p99, {line['configuration']}: at most {gauge} s on the gauge, "
            f"{line['lag_within_1s_percent_min']}% of changes within 1 s (target p99 ≤ {TARGET_LAG_S} s: {met}); "
            + (
                f"every change copied {line['copied_s_max']} s and every order in PostgreSQL's orders (projected) "
                f"{line['drained_s_max']} s after the buyers stopped"
                if line["all_drained"]
                else "PostgreSQL did NOT get every order in time"
            )
        )
    lines.append(f"command: {result['command']}")
    lines.append(f"machine: {result['machine']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for number in range(1, args.rounds + 1):
        shift = (number - 1) % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            result = await run_once(args, config, number)
            runs.append(result)
            print(
                f"round {number}/{args.rounds}, {config.name}: {result['attempts_per_s']:,} attempts/s, "
                f"p99 {result['latency_p99_ms']} ms, lag gauge {result['lag_gauge_max_s']} s, "
                f"copied {result['copied_s']} s, projected {result['drained_s']} s, "
                f"others CPU {result['others_cpu_percent']}%",
                file=sys.stderr,
                flush=True,
            )
    return {
        "command": "python -m loadtests.bench.ledger_bench " + " ".join(args.argv),
        "machine": runs[0]["machine"],
        "summary": summarize(runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    purchase_bench.add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three configurations, alternated")
    parser.add_argument(
        "--drain-timeout", type=float, default=60, help="seconds to wait for PostgreSQL to have every order"
    )
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report)


if __name__ == "__main__":
    main()
