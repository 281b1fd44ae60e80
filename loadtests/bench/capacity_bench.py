"""Capacity check (docs/scaling.md): the cost of a delivery measured on one process predicts several processes.

Starts a local Redis Cluster of six Valkey nodes (three primaries, three replicas;
server.store.cluster_embedded) and one embedded PostgreSQL, then, on that cluster, the hub bench's
load in room `demo` (a stock update at 10 Hz, a durable probe each second, 50 chat messages/s from 64
chatters on the first process):

1. calibration: one server process with --viewers viewers: the server CPU per delivered frame;
2. the scaled run: --processes server processes with --viewers viewers each.

The model of docs/scaling.md says a process's CPU is its deliveries times the cost of one (the
room's events reach each process once, through the cluster's sharded pub/sub, at a small fixed
cost). The bench prints, for the scaled run, the CPU the model predicts from step 1 beside the CPU
measured, and their ratio; the chat p99, durable events lost and the cluster's CPU for both steps.

    python -m loadtests.bench.capacity_bench --processes 4 --viewers 2500 --seconds 20
    python -m loadtests.bench.capacity_bench --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.bench import chat, wsclient
from loadtests.bench.hub_bench import Chatters, publish_probes, publish_stock
from loadtests.support import procstat, smoke, table
from loadtests.support.server import ServerProcess, start_server
from loadtests.support.viewers import Viewers, raise_open_files
from server.ledger.embedded import EmbeddedPostgres
from server.store import client
from server.store.cluster_embedded import EmbeddedCluster

SMOKE = {"processes": 2, "viewers": 100, "seconds": 2, "sampled": 20, "chatters": 10}
ROOM = "demo"
COLUMNS = (
    "step",
    "processes",
    "viewers",
    "delivered frames/s",
    "p99 chat ms",
    "durable lost",
    "server CPU %",
    "cluster CPU %",
    "server µs per delivery",
    "predicted server CPU %",
    "measured / predicted",
)
FIGURES = (
    "step",
    "processes",
    "viewers",
    "frames_per_s",
    "chat_p99_ms",
    "durable_lost",
    "server_cpu_percent",
    "cluster_cpu_percent",
    "server_us_per_delivery",
    "predicted_cpu_percent",
    "measured_vs_predicted",
)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The cluster and PostgreSQL, then the calibration and the scaled run on them."""
    with tempfile.TemporaryDirectory(prefix="livecart-capacity-") as folder:
        root = Path(folder)
        with EmbeddedCluster(root / "cluster") as cluster, EmbeddedPostgres(root / "postgres") as postgres:
            shared = {
                "REDIS_URL": cluster.url,
                "REDIS_CLUSTER": "1",
                "DATABASE_URL": postgres.url,
                "SECRET_KEY": secrets.token_urlsafe(16),
                "METRICS_TOKEN": secrets.token_urlsafe(16),
                "LOG_LEVEL": "warning",
                "CHAT_RATE_COUNT": "100000",  # 50 messages/s from 64 chatters is more than a member may chat
            }
            cluster_pids = [node.process.pid for node in cluster.nodes if node.process is not None]
            calibration = await step(args, root / "one", shared, 1, cluster_pids)
            scaled = await step(args, root / "many", shared, args.processes, cluster_pids)
    predicted = scaled["frames_per_s"] * calibration["server_us_per_delivery"] / 1e4  # % of a core
    scaled["predicted_cpu_percent"] = round(predicted)
    scaled["measured_vs_predicted"] = round(scaled["server_cpu_percent"] / max(predicted, 1e-9), 2)
    return [calibration, scaled]


async def step(
    args: argparse.Namespace, folder: Path, shared: dict[str, str], processes: int, cluster_pids: list[int]
) -> dict[str, Any]:
    """`processes` server processes on the shared stores (the first seeds the demo shop), measured, stopped."""
    servers: list[ServerProcess] = []
    try:
        for index in range(processes):
            place = folder / str(index)
            place.mkdir(parents=True)
            servers.append(start_server(place, {**shared, "SEED_DEMO": "1" if index == 0 else "0"}))
        return await measure(args, servers, shared["REDIS_URL"], cluster_pids)
    finally:
        for server in servers:
            server.stop()


async def measure(
    args: argparse.Namespace, servers: list[ServerProcess], cluster_url: str, cluster_pids: list[int]
) -> dict[str, Any]:
    """--viewers viewers on each server, then --seconds of the hub bench's load; the figures of the step."""
    crowds = [
        await Viewers.start("loadtests.bench.hub_viewers", server, ROOM, args.viewers, 1, args.sampled)
        for server in servers
    ]
    first = servers[0]
    chatters = await Chatters.connect(first.port, ROOM, chat.chatter_tokens(first.secret, args.chat, args.chatters))
    redis = client.cluster(cluster_url, pool_size=4)
    await client.initialize(redis)
    web = [pid for server in servers for pid in server.tree().web]
    cpu_before = {pid: procstat.cpu_seconds(pid) for pid in web + cluster_pids}
    for crowd in crowds:
        await crowd.tell(b"measure")
    stop = asyncio.Event()
    started = time.monotonic()
    load = [
        asyncio.create_task(chat.send(chatters.writers, args.chat, stop)),
        asyncio.create_task(publish_stock(redis, ROOM, args.hz, stop)),
        asyncio.create_task(publish_probes(redis, ROOM, stop)),
    ]
    await asyncio.sleep(args.seconds)
    stop.set()
    sent = [await task for task in load]
    for crowd in crowds:
        await crowd.tell(b"loaded")
    elapsed = time.monotonic() - started
    cpu = {pid: procstat.cpu_seconds(pid) - before for pid, before in cpu_before.items()}
    await asyncio.sleep(2)  # what is on its way arrives (a few ticks)
    results = [result for crowd in crowds for result in await crowd.report(b"stop")]
    for crowd in crowds:
        for process in crowd.processes:
            await process.wait()
    await chatters.close()
    await redis.aclose()
    frames = sum(result["frames"] for result in results)
    cpu_server = sum(cpu[pid] for pid in web)
    chat_ms = [value for result in results for value in result["chat_ms"]]
    sampled = sum(result["sampled"] for result in results)
    return {
        "step": "calibration" if len(servers) == 1 else "scaled",
        "processes": len(servers),
        "viewers": sum(crowd.connected for crowd in crowds),
        "seconds": round(elapsed, 1),
        "frames_per_s": round(frames / elapsed),
        "chat_sent_per_s": round(sent[0] / elapsed, 1),
        "chat_p99_ms": round(wsclient.percentile(chat_ms, 0.99), 1),
        "durable_lost": sent[2] * sampled - sum(result["probes"] for result in results),
        "server_cpu_percent": round(100 * cpu_server / elapsed),
        "cluster_cpu_percent": round(100 * sum(cpu[pid] for pid in cluster_pids) / elapsed),
        "server_us_per_delivery": round(1e6 * cpu_server / max(frames, 1), 2),
        "predicted_cpu_percent": None,
        "measured_vs_predicted": None,
        "closed_by_server": sum(result["closed"] for result in results),
    }


def report(results: list[dict[str, Any]]) -> str:
    """The table and the model's verdict."""
    lines = [table.markdown(COLUMNS, [[result[figure] for figure in FIGURES] for result in results])]
    scaled = results[1]
    lines.append(
        f"\nmodel: {scaled['processes']} processes x {scaled['viewers'] // scaled['processes']} viewers use "
        f"{scaled['measured_vs_predicted']}x the server CPU that one process's cost per delivery predicts"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=4, help="server processes in the scaled run")
    parser.add_argument("--viewers", type=int, default=2500, help="viewers on each server process")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hz", type=float, default=10, help="stock updates per second")
    parser.add_argument("--chat", type=float, default=50, help="chat messages per second, from all the chatters")
    parser.add_argument("--chatters", type=int, default=64, help="chatters (signed-in members, a socket each)")
    parser.add_argument("--sampled", type=int, default=100, help="viewers of each process that measure latency")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    raise_open_files()
    results = asyncio.run(run(args))
    smoke.emit(results, args.json, report)


if __name__ == "__main__":
    main()
