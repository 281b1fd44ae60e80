"""Purchase benchmark: N buyers hit one flash sale; how fast, how slow at p99, and never oversold.

Starts a fresh server (`python -m server --workers W`, embedded Redis with AOF, its own DATA_DIR in
/tmp), creates a sale in the demo room, then for --seconds keeps --connections HTTP/1.1 keep-alive
connections busy with purchases (raw asyncio streams: a client library would saturate its own
core first), each from the next buyer with a fresh Idempotency-Key. A few WebSocket viewers of
the room measure how old the stock they are shown is, from each stock event's server timestamp.
Prints a table of attempts/s, p50/p99 latency, holds granted, oversold units (must be 0), stock
staleness at viewers, the CPU used by the server, its Redis, its PostgreSQL and this client, and the
CPU the rest of the machine used meanwhile (others: on a shared box, the noise), then the answers
(--json FILE: every figure as JSON, with the stock update rate at viewers). Other benchmarks reuse
`measure` (ledger_bench: the same storm with and without the ledger backup), following it with a Watch.
With --pay each new hold is also paid at once, on the same connection (a sandbox test card, a key of
its own): the payments' rate and latency are printed too (referral_bench: commissions need paid orders).
With --cluster the same storm runs twice in one go, on a single embedded Redis (the baseline) and on a local
Redis Cluster of six Valkey nodes (three primaries, three replicas; server.store.cluster_embedded), each with
the ledger backup's lag (ledger_bench: the /metrics gauge, and how long until PostgreSQL has every order).

    python -m loadtests.bench.purchase_bench --seconds 10 --connections 128 --workers 2
    python -m loadtests.bench.purchase_bench --smoke       # seconds, tiny: proves it runs
    python -m loadtests.bench.purchase_bench --pay         # every hold paid on its connection
    python -m loadtests.bench.purchase_bench --cluster     # single Redis, then the 3-primary cluster
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
import uvloop

from loadtests.bench import wsclient
from loadtests.support import smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from server.protocol import Role
from server.store.cluster_embedded import EmbeddedCluster

TICKS = os.sysconf("SC_CLK_TCK")
SMOKE = {"seconds": 1.5, "warmup": 0.5, "workers": 1, "connections": 8, "buyers": 20_000, "viewers": 2}
COLUMNS = (
    "workers",
    "connections",
    "attempts/s",
    "p50 ms",
    "p99 ms",
    "holds granted",
    "oversold",
    "stock staleness p99 ms",
    "server CPU %",
    "Redis CPU %",
    "PostgreSQL CPU %",
    "client CPU %",
    "others CPU %",
)
FIGURES = (
    "workers",
    "connections",
    "attempts_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "holds_granted",
    "oversold",
    "stock_staleness_p99_ms",
    "server_cpu_percent",
    "redis_cpu_percent",
    "postgres_cpu_percent",
    "client_cpu_percent",
    "others_cpu_percent",
)
CLUSTER_COLUMNS = (
    "Redis",
    "attempts/s",
    "p50 ms",
    "p99 ms",
    "holds granted",
    "oversold",
    "ledger lag p99 s (gauge, max)",
    "copied s",
    "in PostgreSQL s",
    "orders",
    "in PostgreSQL",
    "server CPU %",
    "Redis CPU %",
    "PostgreSQL CPU %",
    "others CPU %",
)
CLUSTER_FIGURES = (
    "configuration",
    "attempts_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "holds_granted",
    "oversold",
    "lag_gauge_max_s",
    "copied_s",
    "drained_s",
    "orders",
    "ledger_rows",
    "server_cpu_percent",
    "redis_cpu_percent",
    "postgres_cpu_percent",
    "others_cpu_percent",
)


@dataclass
class Load:
    """What the purchase connections saw."""

    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    holds: int = 0
    errors: int = 0
    pay_latencies: list[float] = field(default_factory=list)  # --pay: each measured payment's
    pay_answers: Counter[str] = field(default_factory=Counter)  # --pay: the measured payments' answers
    paid_orders: list[str] = field(default_factory=list)  # --pay: every order paid, the warm-up's too


@dataclass
class Watch:
    """What a caller of `measure` can follow while it runs: the sale, and when the measured load starts and ends."""

    sale_id: str = ""
    measuring: asyncio.Event = field(default_factory=asyncio.Event)  # the measured seconds began
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # they ended: the buyers send nothing more
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # every connection closed: no order comes after
    stopped_at: float = 0.0  # time.monotonic() when the buyers were told to stop
    paid_orders: list[str] = field(default_factory=list)  # --pay: every order paid so far (complete once idle)


@dataclass
class Staleness:
    """What the viewers saw of the stock."""

    ages_ms: list[float] = field(default_factory=list)
    per_second: Counter[tuple[int, int]] = field(default_factory=Counter)  # (viewer, second) -> stock updates
    lowest: int | None = None


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds each of these processes has used so far, with that of its children that exited and were
    waited for (PostgreSQL's autovacuum workers and short-lived backends); those that exited are left out."""
    used = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime
    return used


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process, all cores), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


BODY = b'{"quantity":1}'
REST = b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


PAY_BODY = b'{"card_number":"4242424242424242"}'  # the sandbox's approved test card
PAY_REST = b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(PAY_BODY), PAY_BODY)


def request_head(sale_id: str, token: str) -> bytes:
    """A buyer's purchase request up to its Idempotency-Key value (each attempt adds a new key, then REST)."""
    return (
        f"POST /api/sales/{sale_id}/purchases HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        "Idempotency-Key: "
    ).encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """An HTTP/1.1 answer with a Content-Length: its head and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length_at = head.lower().find(b"content-length: ")
    end = head.find(b"\r\n", length_at)
    return head, await reader.readexactly(int(head[length_at + 16 : end]))


async def pay_order(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: bytes,
    body: bytes,
    index: int,
    load: Load,
    measuring: asyncio.Event,
) -> None:
    """--pay: pay the order a purchase just held (`head` is its request's head), on the same connection."""
    order_id = orjson.loads(body)["order_id"]
    started = time.perf_counter()
    headers = head.split(b"\r\n", 1)[1]  # Host, Authorization, "Idempotency-Key: "
    writer.write(b"POST /api/orders/%s/payment HTTP/1.1\r\n" % order_id.encode() + headers + b"p%x" % index + PAY_REST)
    answer, paid = await read_answer(reader)
    status = answer[9:12].decode()
    if status == "200":
        load.paid_orders.append(order_id)
    if not measuring.is_set():
        return
    load.pay_latencies.append(time.perf_counter() - started)
    if status == "200":
        load.pay_answers["200 paid"] += 1
    elif status in ("402", "409", "429"):
        load.pay_answers[f"{status} {orjson.loads(paid)['error']['code']}"] += 1
    else:
        load.pay_answers[f"{status} {paid[:80].decode(errors='replace')}"] += 1


async def buyer_connection(
    port: int,
    heads: list[bytes],
    next_index: list[int],
    load: Load,
    measuring: asyncio.Event,
    stop: asyncio.Event,
    pay: bool = False,
) -> None:
    """One keep-alive connection: send the next buyer's purchase (a new key each time), read the answer, until stop;
    with `pay`, pay each new hold before the next purchase."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while not stop.is_set():
            index = next_index[0] = next_index[0] + 1
            started = time.perf_counter()
            writer.write(heads[index % len(heads)] + b"%x" % index + REST)
            head = await reader.readuntil(b"\r\n\r\n")
            length_at = head.find(b"content-length: ")
            end = head.find(b"\r\n", length_at)
            body = await reader.readexactly(int(head[length_at + 16 : end]))
            if pay and head[9:12] == b"201":
                latency = time.perf_counter() - started  # the purchase's, not its payment's
                await pay_order(reader, writer, heads[index % len(heads)], body, index, load, measuring)
                if measuring.is_set():
                    load.latencies.append(latency)
                    load.holds += 1
                    load.answers["201 held"] += 1
                continue
            if not measuring.is_set():
                continue
            load.latencies.append(time.perf_counter() - started)
            status = head[9:12].decode()
            if status == "201":
                load.holds += 1
                load.answers["201 held"] += 1
            elif status == "409":
                load.answers[f"409 {orjson.loads(body)['error']['code']}"] += 1
            else:
                load.answers[f"{status} {body[:80].decode(errors='replace')}"] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        load.errors += 1
    finally:
        writer.close()


async def stock_viewer(port: int, token: str, sale_id: str, seen: Staleness, number: int, stop: asyncio.Event) -> None:
    """A room viewer that notes the age of every stock value it is shown."""
    reader, writer = await wsclient.connect(HOST, port, "/ws/rooms/demo", token)
    try:
        await wsclient.read_frame(reader)  # the snapshot
        while not stop.is_set():
            _opcode, payload = await wsclient.next_frame(reader, writer)
            received = time.time() * 1000
            frame = orjson.loads(payload)
            for item in frame.get("events", ()):
                if item["type"] == "stock" and item["sale_id"] == sale_id:
                    seen.per_second[(number, int(received // 1000))] += 1
                    seen.ages_ms.append(received - item["ts"])
                    seen.lowest = item["available"] if seen.lowest is None else min(seen.lowest, item["available"])
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


class Signer(Protocol):
    """Makes a benchmark's tokens for a server, given its SECRET_KEY (loadtests.support.tokens)."""

    def staff(self, secret: str, merchant_id: str, role: Role, name: str = ...) -> str: ...

    def buyer(self, secret: str, user_id: str | None = ..., name: str = ...) -> str: ...

    def guest(self, secret: str) -> str: ...


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.cluster:
        return await compare_cluster(args)
    with running(workers=args.workers) as server:
        return await measure(args, server)


async def compare_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """The storm on a single embedded Redis, then on the 3-primary cluster: purchase figures and the ledger's lag."""
    from loadtests.bench import ledger_bench  # imported here: ledger_bench imports this module

    runs = []
    with tempfile.TemporaryDirectory(prefix="livecart-cluster-") as folder, EmbeddedCluster(Path(folder)) as cluster:
        setups = [
            ("single Redis", {}, []),
            (
                "3-primary cluster",
                {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "1"},
                [node.process.pid for node in cluster.nodes if node.process is not None],
            ),
        ]
        for name, env, redis_pids in setups:
            config = ledger_bench.Config(name, env, consumer=True)
            with running(workers=args.workers, env=env) as server:
                watch = Watch()
                follower = asyncio.create_task(ledger_bench.follow(server, watch, config, args.drain_timeout))
                try:
                    figures = await measure(args, server, watch, redis_pids=redis_pids)
                    ledger = await follower
                finally:
                    follower.cancel()
            runs.append({"configuration": name, **figures, **ledger})
    return {
        "command": "python -m loadtests.bench.purchase_bench " + " ".join(args.argv),
        "machine": runs[0]["machine"],
        "runs": runs,
        "cluster_vs_single": round(runs[1]["attempts_per_s"] / max(runs[0]["attempts_per_s"], 1), 3),
    }


async def measure(
    args: argparse.Namespace,
    server: ServerProcess,
    watch: Watch | None = None,
    sign: Signer = tokens,
    redis_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """Open a sale in the demo room, keep the connections buying, then audit the sale; the figures.

    CPU is read per program from the server's process tree at the start and at the end of the
    measured seconds (a PostgreSQL backend forked meanwhile counts from its start), and from
    `redis_pids` (Redis processes outside the tree: a cluster's nodes). `sign` makes the tokens
    (another server's code may want another kind: access_bench's baseline).
    """
    watch = watch or Watch()
    port = server.port
    base = server.base_url
    host = sign.staff(server.secret, "demo", Role.HOST, "Bench Host")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {host}"}) as api:
        created = await api.post(
            "/api/merchants/demo/rooms/demo/sales",
            json={
                "product_id": "mug",
                "price": 990,
                "quantity": args.units,
                "per_user_limit": 1,
                "starts_at": int(time.time() * 1000),
                "duration_seconds": 3600,
            },
        )
        created.raise_for_status()
        sale_id = watch.sale_id = created.json()["id"]
        buyers = [sign.buyer(server.secret, f"b{index}") for index in range(args.buyers)]
        heads = [request_head(sale_id, token) for token in buyers]
        load, seen = Load(), Staleness()
        watch.paid_orders = load.paid_orders  # the same list: complete once watch.idle is set
        pay = bool(getattr(args, "pay", False))
        stop, measuring = asyncio.Event(), asyncio.Event()
        viewers = [
            asyncio.create_task(stock_viewer(port, sign.guest(server.secret), sale_id, seen, number, stop))
            for number in range(args.viewers)
        ]
        next_index = [0]
        connections = [
            asyncio.create_task(buyer_connection(port, heads, next_index, load, measuring, stop, pay))
            for _ in range(args.connections)
        ]
        await asyncio.sleep(args.warmup)
        tree = server.tree()
        tree.redis.extend(redis_pids)
        cpu_before = cpu_seconds(tree.web + tree.redis + tree.postgres)
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        machine_before = machine_busy_seconds()
        measuring.set()
        watch.measuring.set()
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        measuring.clear()
        elapsed = time.monotonic() - started
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        machine = machine_busy_seconds() - machine_before
        tree = server.tree()
        tree.redis.extend(redis_pids)
        cpu_after = cpu_seconds(tree.web + tree.redis + tree.postgres)
        cpu = {pid: used - cpu_before.get(pid, 0.0) for pid, used in cpu_after.items()}
        stop.set()
        watch.stopped_at = time.monotonic()
        watch.stopped.set()
        await asyncio.gather(*connections, return_exceptions=True)
        watch.idle.set()
        await asyncio.sleep(0.5)  # the last stock update
        for task in viewers:
            task.cancel()
        await asyncio.gather(*viewers, return_exceptions=True)
        audit = (await api.get(f"/api/merchants/demo/sales/{sale_id}/invariant")).json()
    attempts = len(load.latencies)
    client_cpu = sum(client_after[:2]) - sum(client_before[:2])
    web, redis, postgres = (sum(cpu.get(pid, 0.0) for pid in pids) for pids in (tree.web, tree.redis, tree.postgres))
    payments = (
        {
            "paid": len(load.paid_orders),
            "paid_per_s": round(load.pay_answers["200 paid"] / elapsed),
            "payment_p50_ms": round(1000 * wsclient.percentile(load.pay_latencies, 0.50), 2),
            "payment_p99_ms": round(1000 * wsclient.percentile(load.pay_latencies, 0.99), 2),
            "payment_answers": dict(load.pay_answers.most_common()),
        }
        if pay
        else {}
    )
    return {
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.platform()}",
        "sale_id": sale_id,
        "workers": args.workers,
        "connections": args.connections,
        "buyers": args.buyers,
        "units": args.units,
        "seconds": round(elapsed, 1),
        "attempts": attempts,
        "attempts_per_s": round(attempts / elapsed),
        "latency_p50_ms": round(1000 * wsclient.percentile(load.latencies, 0.50), 2),
        "latency_p99_ms": round(1000 * wsclient.percentile(load.latencies, 0.99), 2),
        "answers": dict(load.answers.most_common()),
        "holds_granted": load.holds,
        "connection_errors": load.errors,
        "sale_after": {key: audit[key] for key in ("quantity", "available", "held", "paid", "ok")},
        "oversold": max(0, audit["held"] + audit["paid"] - audit["quantity"]) + max(0, -audit["available"]),
        "stock_updates_per_s_at_viewer_max": max(seen.per_second.values(), default=0),
        "stock_staleness_p50_ms": round(wsclient.percentile(seen.ages_ms, 0.50), 1),
        "stock_staleness_p99_ms": round(wsclient.percentile(seen.ages_ms, 0.99), 1),
        "stock_staleness_max_ms": round(max(seen.ages_ms, default=float("nan")), 1),
        "lowest_stock_seen": seen.lowest,
        "server_cpu_percent": round(100 * web / elapsed),
        "redis_cpu_percent": round(100 * redis / elapsed),
        "postgres_cpu_percent": round(100 * postgres / elapsed),
        "client_cpu_percent": round(100 * client_cpu / elapsed),
        "others_cpu_percent": round(100 * (machine - sum(cpu.values()) - client_cpu) / elapsed),
        "cpu_us_per_attempt": round(1e6 * (sum(cpu.values()) + client_cpu) / max(attempts, 1)),
        **payments,
    }


def report(result: dict[str, Any]) -> str:
    """The table, then the answers the buyers got and the sale's counters afterwards."""
    answers = ", ".join(f"{answer} {count:,}" for answer, count in result["answers"].items()) or "none"
    sale = ", ".join(f"{key} {value:,}" for key, value in result["sale_after"].items() if key != "ok")
    payments = []
    if "paid" in result:  # --pay
        paid = ", ".join(f"{answer} {count:,}" for answer, count in result["payment_answers"].items()) or "none"
        payments.append(
            f"payments: {result['paid_per_s']:,}/s paid, p50 {result['payment_p50_ms']} ms, p99 "
            f"{result['payment_p99_ms']} ms; answers: {paid}; orders paid in all (warm-up too): {result['paid']:,}"
        )
    return "\n".join(
        [
            table.markdown(COLUMNS, [[result[figure] for figure in FIGURES]]),
            f"\nanswers: {answers}; connection errors: {result['connection_errors']}",
            *payments,
            f"sale after the run: {sale}; its own recount {'agrees' if result['sale_after']['ok'] else 'DISAGREES'}",
            f"machine: {result['machine']}",
        ]
    )


def cluster_report(result: dict[str, Any]) -> str:
    """--cluster: one row per Redis, the ratio, the command."""
    rows = [[run[figure] for figure in CLUSTER_FIGURES] for run in result["runs"]]
    return "\n".join(
        [
            table.markdown(CLUSTER_COLUMNS, rows),
            f"\nratio 3-primary cluster / single Redis (attempts/s): {result['cluster_vs_single']:.2f}x",
            f"command: {result['command']}",
            f"machine: {result['machine']}",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The storm's options (what `measure` reads), for this benchmark and those that reuse it."""
    parser.add_argument("--seconds", type=float, default=10, help="measured time (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=128, help="concurrent keep-alive purchase connections")
    parser.add_argument("--buyers", type=int, default=300_000, help="distinct buyers, in turn (per-user limit 1)")
    parser.add_argument("--units", type=int, default=1_000_000, help="units on sale (fewer than attempts: sells out)")
    parser.add_argument("--viewers", type=int, default=4, help="WebSocket viewers measuring stock staleness")
    parser.add_argument("--pay", action="store_true", help="pay each new hold at once, on its connection")
    parser.add_argument("--json", type=Path, help="also write the figures here, as JSON")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--cluster", action="store_true", help="single Redis, then a local 3-primary Redis Cluster")
    parser.add_argument("--drain-timeout", type=float, default=60, help="--cluster: wait this long for the ledger")
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    result = uvloop.run(run(args))  # uvloop: the client's own loop is part of its cost
    smoke.emit(result, args.json, cluster_report if args.cluster else report)


if __name__ == "__main__":
    main()
