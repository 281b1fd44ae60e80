"""Failover benchmark: how many acknowledged holds a Redis failover loses, with asynchronous replication and with
WAIT 1 (REDIS_WAIT_REPLICAS), what the ledger's repair brings back, and what WAIT 1 costs in purchases/s.

Each run starts a fresh Redis set, --topologies: Sentinels (a primary, --replicas replicas, three Sentinels:
server.store.sentinel_embedded; the server finds the primary through REDIS_SENTINELS) or a Redis Cluster (three
primaries with --replicas replicas each: server.store.cluster_embedded; REDIS_CLUSTER=1), and `python -m server` on
it, opens a sale in the demo room, and keeps --connections buyers purchasing (loadtests.support.failover: a 503 is
retried with its key). After --before holds the sale's primary is SIGKILLed: at once (scenario "crash"), or
--cut-ms after its replicas were cut off ("partition": what it acknowledges meanwhile reaches no replica). Once a
replica has taken its place and --after more holds were acknowledged, the buyers stop; once the backup has copied
the sale's log to PostgreSQL, the acknowledged holds missing from the new primary are counted, `repair-sale` runs,
and they are counted again. One PostgreSQL serves every run. The purchase rate and latency are those of the steady
stretch before the kill (each buyer sends one purchase at a time: a slower answer is a lower rate).

    python -m loadtests.bench.failover_bench --runs 5
    python -m loadtests.bench.failover_bench --smoke       # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtests.support import smoke, table, tokens
from loadtests.support.failover import (
    OnCluster,
    OnSentinels,
    Purchases,
    Topology,
    buy,
    cut_off,
    kept,
    log_drained,
    longest_pause,
    repair,
)
from loadtests.support.server import ServerProcess, start_server
from server.ledger.embedded import EmbeddedPostgres
from server.protocol import Role
from server.store.cluster_embedded import EmbeddedCluster
from server.store.sentinel_embedded import EmbeddedSentinels

SMOKE = {
    "runs": 1,
    "topologies": "sentinels",
    "scenarios": "partition",
    "waits": "0,1",
    "connections": 8,
    "before": 100,
    "after": 30,
}
COLUMNS = (
    "topology",
    "scenario",
    "REDIS_WAIT_REPLICAS",
    "runs",
    "holds/s before the kill",
    "p50 ms",
    "p99 ms",
    "kill to promotion s",
    "longest pause s",
    "acked holds",
    "acked lost by the failover",
    "lost after repair",
    "invariant after repair",
)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextmanager
def redis_set(kind: str, folder: Path, replicas: int) -> Iterator[Topology]:
    """A fresh Sentinel set or Redis Cluster with `replicas` replicas per primary."""
    if kind == "cluster":
        with EmbeddedCluster(folder / "cluster", replicas=replicas) as cluster:
            yield OnCluster(cluster)
    else:
        with EmbeddedSentinels(folder / "redis", replicas=replicas) as sentinels:
            yield OnSentinels(sentinels)


async def one_run(folder: Path, database_url: str, row: Row, args: argparse.Namespace) -> dict[str, Any]:
    """One sale through one failover; its figures."""
    with redis_set(row.topology, folder, args.replicas) as topology:
        server = start_server(
            folder, {**topology.stores, "DATABASE_URL": database_url, "REDIS_WAIT_REPLICAS": str(row.wait)}
        )
        try:
            return await through_failover(folder, database_url, topology, server, row.scenario, args)
        finally:
            server.stop()


async def through_failover(
    folder: Path, database_url: str, topology: Topology, server: ServerProcess, scenario: str, args: argparse.Namespace
) -> dict[str, Any]:
    host = tokens.staff(server.secret, "demo", Role.HOST, "Bench Host")
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {host}"}) as api:
        terms = {"product_id": "mug", "price": 990, "quantity": 1_000_000, "per_user_limit": 1}
        created = await api.post(
            "/api/merchants/demo/rooms/demo/sales",
            json={**terms, "starts_at": int(time.time() * 1000), "duration_seconds": 3600},
        )
        created.raise_for_status()
        sale_id = created.json()["id"]
        secret = server.secret
        purchases, stop = Purchases(), asyncio.Event()
        buyers = [
            asyncio.create_task(buy(server.port, sale_id, lambda: tokens.buyer(secret), purchases, stop))
            for _ in range(args.connections)
        ]
        await _until(lambda: len(purchases.acked) >= args.before // 4, 60, "the first holds")
        counted_from, counted = time.monotonic(), len(purchases.acked)
        await _until(lambda: len(purchases.acked) >= args.before, 60, f"{args.before} holds")
        counted_until = time.monotonic()
        rate = (len(purchases.acked) - counted) / (counted_until - counted_from)
        steady = sorted(seconds for at, seconds in purchases.latencies if counted_from <= at <= counted_until)
        if scenario == "partition":
            cut_off(topology.primary(sale_id), topology.replicas(sale_id))
            await asyncio.sleep(args.cut_ms / 1000)  # the partition lasts this long before the crash
        killed = time.monotonic()
        await asyncio.to_thread(topology.fail_over, sale_id)
        promoted = time.monotonic() - killed
        await _until(lambda: purchases.acked_between(killed, float("inf")) >= args.after, 60, "holds after")
        stop.set()
        await asyncio.gather(*buyers)
        new = topology.primary(sale_id)
        await _until(lambda: log_drained(new, sale_id), 60, "the backup to copy the log")
        acked = list(purchases.acked)
        lost = len(acked) - len(kept(new, sale_id, acked))
        stores = {**topology.stores, "DATABASE_URL": database_url}
        audit = repair({**stores, "SECRET_KEY": secret, "DATA_DIR": str(folder / "data")}, sale_id)
        lost_after = len(acked) - len(kept(new, sale_id, acked))
        sale = (await api.get(f"/api/merchants/demo/sales/{sale_id}/invariant")).json()
    return {
        "holds_per_s": rate,
        "p50_ms": 1000 * steady[len(steady) // 2],
        "p99_ms": 1000 * steady[int(len(steady) * 0.99)],
        "promoted_s": promoted,
        "pause_s": longest_pause(purchases),
        "acked": len(acked),
        "lost": lost,
        "lost_after_repair": lost_after,
        "invariant_ok": bool(audit["ok"] and sale["ok"] and sale["available"] >= 0),
        "answers": dict(purchases.answers),
    }


@dataclass(frozen=True)
class Row:
    """One line of the table: where, what happens, which REDIS_WAIT_REPLICAS."""

    topology: str
    scenario: str
    wait: int

    @property
    def name(self) -> str:
        return f"{self.topology}-{self.scenario}-{self.wait}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": []}
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as name, EmbeddedPostgres(Path(name) / "pg") as postgres:
        rows = [
            Row(topology, scenario, int(wait))
            for topology in args.topologies.split(",")
            for scenario in args.scenarios.split(",")
            for wait in args.waits.split(",")
        ]
        runs: dict[Row, list[dict[str, Any]]] = {row: [] for row in rows}
        for number in range(args.runs):  # the rows in turn, so a machine that gets busier slows each alike
            for row in rows:
                runs[row].append(await one_run(Path(name) / f"{row.name}-{number}", postgres.url, row, args))
        results["rows"] = [{**asdict(row), "runs": runs[row]} for row in rows]
    return results


def report(results: dict[str, Any]) -> str:
    rows = []
    for row in results["rows"]:
        runs = row["runs"]
        rows.append(
            (
                row["topology"],
                row["scenario"],
                row["wait"],
                len(runs),
                round(statistics.median(run["holds_per_s"] for run in runs)),
                round(statistics.median(run["p50_ms"] for run in runs), 1),
                round(statistics.median(run["p99_ms"] for run in runs), 1),
                round(statistics.median(run["promoted_s"] for run in runs), 2),
                round(statistics.median(run["pause_s"] for run in runs), 2),
                sum(run["acked"] for run in runs),
                ", ".join(str(run["lost"]) for run in runs),
                ", ".join(str(run["lost_after_repair"]) for run in runs),
                "ok" if all(run["invariant_ok"] for run in runs) else "BROKEN",
            )
        )
    return f"{results['date']} (medians over the runs; losses per run)\n" + table.markdown(COLUMNS, rows)


def failures(results: dict[str, Any]) -> list[str]:
    found = []
    for row in results["rows"]:
        if not all(run["invariant_ok"] for run in row["runs"]):
            found.append(f"{row['topology']} {row['scenario']} WAIT {row['wait']}: invariant broken after the repair")
        if row["wait"] > 0 and any(run["lost"] for run in row["runs"]):
            found.append(f"{row['topology']} {row['scenario']} WAIT {row['wait']}: an acknowledged hold was lost")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.failover_bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="failovers per scenario and setting")
    parser.add_argument("--topologies", default="sentinels,cluster", help="sentinels, cluster (comma-separated)")
    parser.add_argument("--scenarios", default="crash,partition", help="crash, partition (comma-separated)")
    parser.add_argument("--waits", default="0,1", help="REDIS_WAIT_REPLICAS values (comma-separated)")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of each primary (WAIT 1 needs 2)")
    parser.add_argument("--connections", type=int, default=32, help="buyers purchasing at once")
    parser.add_argument("--before", type=int, default=2000, help="holds acknowledged before the kill")
    parser.add_argument("--after", type=int, default=500, help="holds acknowledged by the promoted primary")
    parser.add_argument("--cut-ms", type=int, default=300, help="partition: how long the replica is cut off first")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = smoke.parse(parser, SMOKE, argv)
    smoke.emit(asyncio.run(run(args)), args.json, report, failures)


if __name__ == "__main__":
    main()
