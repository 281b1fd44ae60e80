"""Group-buy benchmark: join attempts/s on a group offer, against flash-sale purchase attempts/s on the same server.

Each round starts a fresh server (`python -m server --workers W`, embedded Redis and PostgreSQL, the
demo shop) and measures, on it, one after the other (the order swaps each round, so that the
machine's noise and the server's growing state hit both alike):

- **purchase** (the baseline: the flash sale's hot path): a sale of --units, limit 1, and
  --connections HTTP/1.1 keep-alive connections buying (POST /api/sales/{s}/purchases), a new
  signed-in buyer and Idempotency-Key each time, as purchase_bench does;
- **join**: a group offer of --units at the same price, limit 1, groups of 3 with a window of an
  hour. Setup, not measured: --groups leaders (members of their own) each open a group
  (POST /api/sales/{s}/groups) and pay it with the sandbox's approved card
  (POST /api/orders/{id}/payment), so that --groups groups are open with 2 empty slots each. Then the
  same connections race joins (POST /api/sales/{s}/groups/{g}/join), a new signed-in buyer and
  Idempotency-Key each time: --racers attempts in a row (in flight at once, on different
  connections) aim at the same group, then the next group, round the groups again and again. Two
  racers of a group get its slots (201), the others `group_full`; once every group is full, every
  attempt is refused. Answers are counted by kind: 201 joins, refusals by code.

The same client code drives both storms (the same connections, warm-up and measured seconds, a new
key each attempt), and in both --viewers WebSocket viewers of the room note when each stock event
of the storm's sale reaches them and how old it is then: updates/s, the longest gap between two
(how long a viewer's stock figure stood still) and the age on arrival. Before each storm
the server is settled: PostgreSQL has every order already made (the ledger's projection is not left
to run during the next storm), the server has stopped publishing to the room, then VACUUM (ANALYZE),
a CHECKPOINT and an idle second (the server's processes under 0.2 of a core). The servers run with
RECONCILE_GRACE_MS of an hour: the payment reconciler (a repair pass, not the path measured) never
gets to the leaders' payments during a round. CPU is read per program
(server, Redis, PostgreSQL, this client, the rest of the machine) as purchase_bench does.

After the join storm: the offer's invariant (GET /api/merchants/demo/sales/{s}/invariant: quantity =
available + reserved + held + paid, no group over its size) must be ok, and every group of the offer
(GET /api/merchants/demo/sales/{s}/groups, as staff) must have at most 3 members, be open, and the
members beyond the leaders must be exactly the 201 joins the racers were answered (warm-up included).
After the purchase storm its sale's invariant must be ok. Exits 1, saying what failed, otherwise.

For each configuration: attempts/s each round, the median, the ratio join / purchase (medians),
p50/p99 (medians over the rounds), p99 of the 201s and of the refusals, 201s and refusals, the
stock events at the viewers, how long after the buyers stopped the server went on publishing to
the room (PUBLISH calls in Redis's commandstats: its feeds catching up), CPU. --json FILE writes
every run and the summary.

    python -m loadtests.bench.group_bench --seconds 10 --rounds 5 --workers 2
    python -m loadtests.bench.group_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop
from redis.asyncio import Redis

from loadtests.bench import cpu, purchase_bench, wsclient
from loadtests.support import smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from server import keys
from server.protocol import Role

MERCHANT, ROOM, PRODUCT = "demo", "demo", "mug"
PRICE = 990  # purchase_bench's sale price, minor units: the group price too
GROUP_SIZE = 3
WINDOW_SECONDS = 3600  # no group fails within a round
DURATION_SECONDS = 3600
SMOKE = {
    "seconds": 2,
    "warmup": 0.5,
    "workers": 1,
    "connections": 8,
    "buyers": 60_000,
    "units": 100_000,
    "groups": 3_000,
    "setup_connections": 8,
    "viewers": 2,
    "rounds": 1,
    "drain_timeout": 30,
}
IDLE_CORES = 0.2  # the server counts as settled below this (its clocks and feeds tick: about 0.05 idle)
# The payment reconciler looks back at payments older than RECONCILE_GRACE_MS (60 s): the leaders' payments would
# come into its passes during the later storms, unevenly (a pass every 30 s, one process). An hour keeps every
# round's payments out of it, on every server alike: the reconciler repairs, it is not the path measured.
ENV = {"RECONCILE_GRACE_MS": str(3600 * 1000)}
CONFIGS = ("purchase", "join")
COLUMNS = (
    "configuration",
    "attempts/s (each round)",
    "median attempts/s",
    "join / purchase",
    "p50 ms",
    "p99 ms",
    "p99 ms of 201s",
    "p99 ms of refusals",
    "201s",
    "refused",
    "stock updates/s at a viewer",
    "longest stock gap ms",
    "feed caught up after s",
    *cpu.COLUMNS,
)

PAY_BODY = b'{"card_number":"4242424242424242"}'  # the sandbox's approved test card
JSON_HEADERS = b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def rest_of(body: bytes) -> bytes:
    """What follows a request's Idempotency-Key value: the end of that header, the body's headers, the body."""
    return JSON_HEADERS % len(body) + body


PURCHASE_REST = purchase_bench.REST  # {"quantity":1}, as purchase_bench sends
JOIN_REST = rest_of(b"{}")
OPEN_REST = rest_of(b"{}")
PAY_REST = rest_of(PAY_BODY)


def leader_id(index: int) -> str:
    return f"leader{index}"


def buyer_id(index: int) -> str:
    """The user id purchase_bench gives its index-th buyer."""
    return f"b{index}"


def head(method_path: str, token: str) -> bytes:
    """A request up to its Idempotency-Key value (each attempt adds a new key, then its rest)."""
    return (
        f"POST {method_path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: "
    ).encode()


@dataclass
class Storm:
    """What the connections of one storm saw (answers and latencies of the measured seconds; 201s of all)."""

    latencies: list[float] = field(default_factory=list)
    granted_latencies: list[float] = field(default_factory=list)  # 201s
    refused_latencies: list[float] = field(default_factory=list)  # 4xx with an error code
    answers: Counter[str] = field(default_factory=Counter)
    granted_all: int = 0  # 201s, the warm-up's too: what the groups must account for
    errors: int = 0


async def attempt_connection(
    port: int,
    heads: list[bytes],
    rest: bytes,
    next_index: list[int],
    storm: Storm,
    measuring: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """One keep-alive connection: the next attempt (heads[index], a new key), its answer, until stop."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while not stop.is_set():
            index = next_index[0] = next_index[0] + 1
            started = time.perf_counter()
            writer.write(heads[index % len(heads)] + b"%x" % index + rest)
            answer, body = await purchase_bench.read_answer(reader)
            status = answer[9:12]
            if status == b"201":
                storm.granted_all += 1
            if not measuring.is_set():
                continue
            latency = time.perf_counter() - started
            storm.latencies.append(latency)
            if status == b"201":
                storm.granted_latencies.append(latency)
                storm.answers["201"] += 1
                continue
            try:
                code = orjson.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                storm.answers[f"{status.decode()} {body[:80].decode(errors='replace')}"] += 1
                continue
            storm.refused_latencies.append(latency)
            storm.answers[f"{status.decode()} {code}"] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        storm.errors += 1
    finally:
        writer.close()


@dataclass
class Seen:
    """What the viewers saw of the storm's sale while measuring: when each stock event arrived, and its age then."""

    arrivals: list[list[float]] = field(default_factory=list)  # per viewer: arrival times, ms since the epoch
    ages_ms: list[float] = field(default_factory=list)  # arrival - the event's server timestamp
    started_ms: float = 0.0
    ended_ms: float = 0.0

    def figures(self, viewers: int) -> dict[str, Any]:
        """Stock events per second at a viewer (the median viewer), the longest a viewer's stock figure stood still
        in the measured seconds (from their start to the first event, between two, from the last to their end),
        and the events' age on arrival."""
        rates: list[float] = []
        gaps: list[float] = []
        for times in self.arrivals:
            points = [self.started_ms, *sorted(times), self.ended_ms]
            gaps.extend(later - earlier for earlier, later in itertools.pairwise(points))
            rates.append(len(times) / max((self.ended_ms - self.started_ms) / 1000, 1e-9))
        rates += [0.0] * (viewers - len(rates))  # a viewer that never got in saw nothing
        return {
            "stock_updates_per_s_at_viewer": round(statistics.median(rates), 1) if rates else None,
            "stock_gap_p99_ms": round(wsclient.percentile(gaps, 0.99), 1) if gaps else None,
            "stock_gap_max_ms": round(max(gaps), 1) if gaps else None,
            "stock_age_p99_ms": round(wsclient.percentile(self.ages_ms, 0.99), 1) if self.ages_ms else None,
        }


async def stock_viewer(
    port: int, token: str, sale_id: str, seen: Seen, measuring: asyncio.Event, stop: asyncio.Event
) -> None:
    """A viewer of the room noting, while measuring, when each stock event of the sale arrives and how old it is."""
    arrivals: list[float] = []
    reader, writer = await wsclient.connect(HOST, port, f"/ws/rooms/{ROOM}", token)
    seen.arrivals.append(arrivals)
    try:
        await wsclient.read_frame(reader)  # the snapshot
        while not stop.is_set():
            _opcode, payload = await wsclient.next_frame(reader, writer)
            if not measuring.is_set():
                continue
            received = time.time() * 1000
            for item in orjson.loads(payload).get("events", ()):
                if item["type"] == "stock" and item["sale_id"] == sale_id:
                    arrivals.append(received)
                    seen.ages_ms.append(received - item["ts"])
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def publishes(redis: Redis) -> int:
    """PUBLISH commands the server's Redis has run so far: what the processes' feeds send to the rooms (stock,
    boards, toasts, private group events) goes out as PUBLISH, directly or from a script."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def feed_quiet(redis: Redis, since: float, timeout: float, quiet: float = 1.0) -> float | None:
    """Wait until no PUBLISH for `quiet` seconds: the seconds from `since` (time.monotonic()) to the last one seen
    (0 if none came after it), or None if the server still published `timeout` seconds after `since`."""
    calls, last = await publishes(redis), time.monotonic()
    while True:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        newer = await publishes(redis)
        if newer != calls:
            calls, last = newer, now
        elif now - last >= quiet:
            return round(max(0.0, last - since), 1)
        if now - since > timeout:
            return None


async def storm(
    args: argparse.Namespace, server: ServerProcess, sale_id: str, heads: list[bytes], rest: bytes
) -> dict[str, Any]:
    """--connections connections attempting for --warmup then --seconds (measured), --viewers room viewers timing
    the sale's stock events; then how long the server's feeds go on publishing after the buyers stopped."""
    redis = Redis.from_url(server.redis_url)
    try:
        return await _storm(args, server, sale_id, heads, rest, redis)
    finally:
        await redis.aclose()


async def _storm(
    args: argparse.Namespace, server: ServerProcess, sale_id: str, heads: list[bytes], rest: bytes, redis: Redis
) -> dict[str, Any]:
    result = Storm()
    stop, measuring = asyncio.Event(), asyncio.Event()
    next_index = [0]
    seen = Seen()
    viewers = [
        asyncio.create_task(stock_viewer(server.port, tokens.guest(server.secret), sale_id, seen, measuring, stop))
        for _ in range(args.viewers)
    ]
    connections = [
        asyncio.create_task(attempt_connection(server.port, heads, rest, next_index, result, measuring, stop))
        for _ in range(args.connections)
    ]
    await asyncio.sleep(args.warmup)
    tree = server.tree()
    cpu_before = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres)
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = purchase_bench.machine_busy_seconds()
    published_before = await publishes(redis)
    measuring.set()
    started, seen.started_ms = time.monotonic(), time.time() * 1000
    await asyncio.sleep(args.seconds)
    measuring.clear()
    elapsed, seen.ended_ms = time.monotonic() - started, time.time() * 1000
    published = await publishes(redis) - published_before
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    machine = purchase_bench.machine_busy_seconds() - machine_before
    tree = server.tree()
    cpu_after = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres)
    stop.set()
    stopped = time.monotonic()
    await asyncio.gather(*connections, return_exceptions=True)
    caught_up = await feed_quiet(redis, stopped, args.drain_timeout)
    for task in viewers:
        task.cancel()
    await asyncio.gather(*viewers, return_exceptions=True)
    cpu = {pid: used - cpu_before.get(pid, 0.0) for pid, used in cpu_after.items()}
    client = sum(client_after[:2]) - sum(client_before[:2])
    web, redis_cpu, postgres = (
        sum(cpu.get(pid, 0.0) for pid in pids) for pids in (tree.web, tree.redis, tree.postgres)
    )
    attempts = len(result.latencies)
    granted = result.answers["201"]

    def ms(values: list[float], fraction: float) -> float | None:
        return round(1000 * wsclient.percentile(values, fraction), 2) if values else None

    return {
        "seconds": round(elapsed, 1),
        "attempts": attempts,
        "attempts_per_s": round(attempts / elapsed),
        "granted": granted,
        "granted_per_s": round(granted / elapsed),
        "refused": len(result.refused_latencies),
        "granted_all": result.granted_all,
        "answers": dict(result.answers.most_common()),
        "connection_errors": result.errors,
        "latency_p50_ms": ms(result.latencies, 0.50),
        "latency_p99_ms": ms(result.latencies, 0.99),
        "granted_p99_ms": ms(result.granted_latencies, 0.99),
        "refused_p99_ms": ms(result.refused_latencies, 0.99),
        **seen.figures(args.viewers),
        "publishes_per_s": round(published / elapsed),
        "feed_caught_up_s": caught_up,
        "server_cpu_percent": round(100 * web / elapsed),
        "redis_cpu_percent": round(100 * redis_cpu / elapsed),
        "postgres_cpu_percent": round(100 * postgres / elapsed),
        "client_cpu_percent": round(100 * client / elapsed),
        "others_cpu_percent": round(100 * (machine - sum(cpu.values()) - client) / elapsed),
        "cpu_us_per_attempt": round(1e6 * (sum(cpu.values()) + client) / max(attempts, 1)),
    }


async def create_sale(admin: httpx.AsyncClient, units: int, group: bool) -> str:
    """A sale in the demo room, open now for an hour, limit 1 a buyer; with `group`, an offer of groups of 3."""
    body: dict[str, Any] = {
        "product_id": PRODUCT,
        "price": PRICE,
        "quantity": units,
        "per_user_limit": 1,
        "starts_at": int(time.time() * 1000),
        "duration_seconds": DURATION_SECONDS,
    }
    if group:
        body["group"] = {"size": GROUP_SIZE, "window_seconds": WINDOW_SECONDS}
    answer = await admin.post(f"/api/merchants/{MERCHANT}/rooms/{ROOM}/sales", json=body)
    if answer.status_code != 201:
        raise RuntimeError(
            f"POST /api/merchants/{MERCHANT}/rooms/{ROOM}/sales {body}: {answer.status_code} {answer.text}"
        )
    return str(answer.json()["id"])


@dataclass
class Opening:
    """The setup of a join storm: every leader opens a group and pays."""

    groups: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    first_failure: str = ""


async def open_groups(args: argparse.Namespace, server: ServerProcess, sale_id: str) -> tuple[list[str], float]:
    """--groups leaders each open a group (one held unit, two reserved) and pay it: the open groups' ids, in order,
    and the seconds it took. Raises when any opening or payment is refused."""
    started = time.monotonic()
    leaders = [tokens.buyer(server.secret, leader_id(index), f"Leader {index}") for index in range(args.groups)]
    opening = Opening()
    ids: list[str | None] = [None] * len(leaders)
    next_index = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            while next_index[0] < len(leaders):
                index = next_index[0]
                next_index[0] += 1
                token = leaders[index]
                writer.write(head(f"/api/sales/{sale_id}/groups", token) + b"o%x" % index + OPEN_REST)
                answer, body = await purchase_bench.read_answer(reader)
                if answer[9:12] != b"201":
                    note(opening, "open", answer, body)
                    continue
                order = orjson.loads(body)
                order_id, group_id = order["order_id"], order["group"]["id"]
                writer.write(head(f"/api/orders/{order_id}/payment", token) + b"p%x" % index + PAY_REST)
                answer, body = await purchase_bench.read_answer(reader)
                if answer[9:12] != b"200":
                    note(opening, "payment", answer, body)
                    continue
                ids[index] = group_id
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(args.setup_connections, len(leaders)))))
    if opening.failures:
        raise RuntimeError(
            f"opening {len(leaders)} groups: {dict(opening.failures)} refused; first: {opening.first_failure}"
        )
    return [group for group in ids if group is not None], time.monotonic() - started


def note(opening: Opening, step: str, answer: bytes, body: bytes) -> None:
    status = answer[9:12].decode()
    try:
        code = orjson.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = body[:80].decode(errors="replace")
    opening.failures[f"{step} {status} {code}"] += 1
    opening.first_failure = opening.first_failure or f"{step}: {answer.decode(errors='replace')}{body[:300]!r}"


async def settle(server: ServerProcess, sale_ids: list[str], timeout: float) -> float:
    """Wait until PostgreSQL has every order these sales have in Redis (the ledger projected them) and the server
    has published to its rooms all it had to (no PUBLISH for a second), then VACUUM (ANALYZE), CHECKPOINT and wait
    for an idle second: the setup's and the last storm's work is not left to the next storm. The seconds it took;
    raises after `timeout`."""
    started = time.monotonic()
    redis = Redis.from_url(server.redis_url, decode_responses=True)
    database = await asyncpg.connect(server.database_url)
    try:
        for sale_id in sale_ids:
            while True:
                in_redis = int(await redis.hlen(keys.sale_orders(sale_id)))
                projected = int(await database.fetchval("SELECT count(*) FROM orders WHERE sale_id = $1", sale_id))
                if projected >= in_redis:
                    break
                if time.monotonic() > started + timeout:
                    raise RuntimeError(
                        f"sale {sale_id}: {projected} of {in_redis} orders in PostgreSQL after {timeout} s"
                    )
                await asyncio.sleep(0.1)
        if await feed_quiet(redis, time.monotonic(), timeout) is None:
            raise RuntimeError(f"the server still publishes to its rooms {timeout} s on")
        await database.execute("VACUUM (ANALYZE)")
        await database.execute("CHECKPOINT")
        if not await idle(server, started + timeout):
            raise RuntimeError(f"the server is still busy {timeout} s on (over {IDLE_CORES} of a core)")
    finally:
        await database.close()
        await redis.aclose()
    return time.monotonic() - started


async def idle(server: ServerProcess, deadline: float) -> bool:
    """Wait for a second in which the server's processes (web, Redis, PostgreSQL) used under IDLE_CORES of a core;
    False if none came before `deadline` (time.monotonic())."""
    while time.monotonic() < deadline:
        tree = server.tree()
        before = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres)
        await asyncio.sleep(1)
        after = purchase_bench.cpu_seconds(list(before))
        if sum(after.get(pid, used) - used for pid, used in before.items()) < IDLE_CORES:
            return True
    return False


async def invariant(admin: httpx.AsyncClient, sale_id: str) -> dict[str, Any]:
    answer = await admin.get(f"/api/merchants/{MERCHANT}/sales/{sale_id}/invariant")
    if answer.status_code != 200:
        raise RuntimeError(f"GET …/sales/{sale_id}/invariant: {answer.status_code} {answer.text[:300]}")
    found: dict[str, Any] = answer.json()
    return found


async def every_group(admin: httpx.AsyncClient, sale_id: str) -> list[dict[str, Any]]:
    """GET /api/merchants/demo/sales/{s}/groups (staff): every group of the offer."""
    answer = await admin.get(f"/api/merchants/{MERCHANT}/sales/{sale_id}/groups", timeout=120)
    if answer.status_code != 200:
        raise RuntimeError(f"GET …/sales/{sale_id}/groups: {answer.status_code} {answer.text[:300]}")
    groups: list[dict[str, Any]] = answer.json()
    return groups


def audit_groups(groups: list[dict[str, Any]], opened: list[str], granted_all: int) -> dict[str, Any]:
    """Every group opened is there, open, with at most GROUP_SIZE members (by its members' list and by its `joined`
    count), and the members beyond the leaders are exactly the 201 joins answered."""
    sizes = [max(len(group["members"]), int(group["joined"])) for group in groups]
    members = Counter(min(size, GROUP_SIZE + 1) for size in sizes)
    figures = {
        "groups": len(groups),
        "groups_opened": len(opened),
        "group_states": dict(Counter(str(group["state"]) for group in groups).most_common()),
        "largest_group": max(sizes, default=0),
        "groups_over_size": sum(size > GROUP_SIZE for size in sizes),
        "groups_by_members": {str(size): count for size, count in sorted(members.items())},
        "joined_members": sum(size - 1 for size in sizes),
        "joins_answered": granted_all,
        "groups_missing": len(set(opened) - {str(group["id"]) for group in groups}),
        "groups_full": sum(size >= GROUP_SIZE for size in sizes),
    }
    figures["groups_ok"] = (
        figures["groups_over_size"] == 0
        and figures["groups_missing"] == 0
        and figures["groups"] == len(opened)
        and figures["group_states"] == {"open": len(opened)}
        and figures["joined_members"] == granted_all
    )
    return figures


async def measure_purchases(
    args: argparse.Namespace, server: ServerProcess, admin: httpx.AsyncClient, buyers: list[str], sales: list[str]
) -> dict[str, Any]:
    """The baseline: a flash sale, the storm buying from it; its figures and its sale's invariant."""
    sale_id = await create_sale(admin, args.units, group=False)
    sales.append(sale_id)
    settle_s = await settle(server, sales, args.drain_timeout)
    heads = [head(f"/api/sales/{sale_id}/purchases", token) for token in buyers]
    figures = await storm(args, server, sale_id, heads, PURCHASE_REST)
    audit = await invariant(admin, sale_id)
    return {"sale_id": sale_id, "settle_s": round(settle_s, 1), **figures, "invariant": audit, "audit_ok": audit["ok"]}


async def measure_joins(
    args: argparse.Namespace, server: ServerProcess, admin: httpx.AsyncClient, buyers: list[str], sales: list[str]
) -> dict[str, Any]:
    """A group offer, --groups groups opened and paid, the storm racing to join them; its figures and the audit."""
    sale_id = await create_sale(admin, args.units, group=True)
    sales.append(sale_id)
    opened, open_s = await open_groups(args, server, sale_id)
    settle_s = await settle(server, sales, args.drain_timeout)
    heads = [
        head(f"/api/sales/{sale_id}/groups/{opened[(index // args.racers) % len(opened)]}/join", token)
        for index, token in enumerate(buyers)
    ]
    figures = await storm(args, server, sale_id, heads, JOIN_REST)
    audit = await invariant(admin, sale_id)
    groups = audit_groups(await every_group(admin, sale_id), opened, figures["granted_all"])
    return {
        "sale_id": sale_id,
        "open_s": round(open_s, 1),
        "settle_s": round(settle_s, 1),
        **figures,
        "invariant": audit,
        **groups,
        "audit_ok": bool(audit["ok"]) and groups["groups_ok"],
    }


async def run_round(args: argparse.Namespace, number: int) -> list[dict[str, Any]]:
    """A fresh server; the purchase and the join storm on it, in this round's order."""
    order = CONFIGS if number % 2 else tuple(reversed(CONFIGS))
    runs = []
    with running(workers=args.workers, env=ENV) as server:
        admin_token = tokens.staff(server.secret, MERCHANT, Role.ADMIN, "Bench Admin")
        headers = {"Authorization": f"Bearer {admin_token}"}
        buyers = [tokens.buyer(server.secret, buyer_id(index)) for index in range(args.buyers)]
        sales: list[str] = []  # this server's sales so far: each settled before the next storm
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as admin:
            for config in order:
                measure = measure_purchases if config == "purchase" else measure_joins
                figures = await measure(args, server, admin, buyers, sales)
                runs.append({"configuration": config, "round": number, **figures})
                print(
                    f"round {number}/{args.rounds}, {config}: {figures['attempts_per_s']:,} attempts/s "
                    f"({figures['granted']:,} 201s, {figures['refused']:,} refused), p99 {figures['latency_p99_ms']} "
                    f"ms, others CPU {figures['others_cpu_percent']}%"
                    + (
                        f", {figures['groups']:,} groups, largest {figures['largest_group']}"
                        if config == "join"
                        else ""
                    )
                    + ("" if figures["audit_ok"] else ": AUDIT FAILED"),
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def _median(runs: list[dict[str, Any]], figure: str) -> float:
    return float(statistics.median(run[figure] for run in runs))


def _median_ms(runs: list[dict[str, Any]], figure: str) -> float | None:
    """A latency's median over the rounds that have it (none: a storm without a refusal has no refusal's p99)."""
    values = [run[figure] for run in runs if run[figure] is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration, over its rounds: medians of rates, latencies and CPU; sums of answers."""
    by_config = {config: [run for run in runs if run["configuration"] == config] for config in CONFIGS}
    rates = {config: _median(mine, "attempts_per_s") for config, mine in by_config.items()}
    summary = []
    for config, mine in by_config.items():
        answers: Counter[str] = Counter()
        for run in mine:
            answers.update(run["answers"])
        summary.append(
            {
                "configuration": config,
                "rounds": len(mine),
                "attempts_per_s_each": [run["attempts_per_s"] for run in mine],
                "attempts_per_s_median": round(rates[config]),
                "ratio": round(rates[config] / rates["purchase"], 3) if rates["purchase"] else None,
                "round_ratios": None,
                "granted_per_s_median": round(_median(mine, "granted_per_s")),
                **{
                    f"{figure}_median": _median_ms(mine, figure)
                    for figure in (
                        "latency_p50_ms",
                        "latency_p99_ms",
                        "granted_p99_ms",
                        "refused_p99_ms",
                        "stock_updates_per_s_at_viewer",
                        "stock_gap_p99_ms",
                        "stock_age_p99_ms",
                    )
                },
                "publishes_per_s_median": round(_median(mine, "publishes_per_s")),
                "feed_caught_up_s_each": [run["feed_caught_up_s"] for run in mine],
                "feed_caught_up_s_max": max(
                    (run["feed_caught_up_s"] for run in mine if run["feed_caught_up_s"] is not None), default=None
                )
                if all(run["feed_caught_up_s"] is not None for run in mine)
                else None,
                "stock_gap_max_ms": max(
                    (run["stock_gap_max_ms"] for run in mine if run["stock_gap_max_ms"] is not None), default=None
                ),
                **{
                    f"{program}_cpu_percent": round(_median(mine, f"{program}_cpu_percent")) for program in cpu.PROGRAMS
                },
                "granted": sum(run["granted"] for run in mine),
                "refused": sum(run["refused"] for run in mine),
                "answers": dict(answers.most_common()),
                "connection_errors": sum(run["connection_errors"] for run in mine),
                "audit_ok": all(run["audit_ok"] for run in mine),
            }
        )
    join = summary[1]
    join["round_ratios"] = [
        round(mine["attempts_per_s"] / theirs["attempts_per_s"], 3)
        for mine, theirs in zip(by_config["join"], by_config["purchase"], strict=True)
        if theirs["attempts_per_s"]
    ]
    return summary


def failures(result: dict[str, Any]) -> list[str]:
    """What went wrong: an invariant not ok, a group over its size or not open, joins the groups do not account for."""
    found = []
    for run in result["runs"]:
        where = f"round {run['round']}, {run['configuration']} (sale {run['sale_id']})"
        if not run["invariant"]["ok"]:
            found.append(f"{where}: the invariant is not ok: {orjson.dumps(run['invariant']).decode()}")
        if run["configuration"] != "join":
            continue
        if run["groups_over_size"]:
            found.append(
                f"{where}: {run['groups_over_size']} group(s) over {GROUP_SIZE} members "
                f"(largest: {run['largest_group']})"
            )
        if run["groups_missing"] or run["groups"] != run["groups_opened"]:
            found.append(
                f"{where}: {run['groups']} groups listed, {run['groups_opened']} opened, "
                f"{run['groups_missing']} missing"
            )
        if run["group_states"] != {"open": run["groups_opened"]}:
            found.append(f"{where}: group states {run['group_states']}, expected every one open")
        if run["joined_members"] != run["joins_answered"]:
            found.append(
                f"{where}: the groups have {run['joined_members']} members beyond their leaders, "
                f"{run['joins_answered']} joins were answered 201"
            )
        if not run["granted"]:
            found.append(f"{where}: no join was granted")
    for line in result["summary"]:
        if not line["attempts_per_s_median"]:
            found.append(f"{line['configuration']}: no attempt measured")
    return found


def report(result: dict[str, Any]) -> str:
    """The table (a row per configuration), the ratio, the answers, the group audit, the command and the machine."""
    rows = [
        [
            line["configuration"],
            " · ".join(f"{rate:,}" for rate in line["attempts_per_s_each"]),
            line["attempts_per_s_median"],
            None if line["ratio"] is None else f"{line['ratio']:.2f}x",
            line["latency_p50_ms_median"],
            line["latency_p99_ms_median"],
            line["granted_p99_ms_median"],
            line["refused_p99_ms_median"],
            line["granted"],
            line["refused"],
            line["stock_updates_per_s_at_viewer_median"],
            line["stock_gap_max_ms"],
            line["feed_caught_up_s_max"],
            *(line[f"{program}_cpu_percent"] for program in cpu.PROGRAMS),
        ]
        for line in result["summary"]
    ]
    purchase, join = result["summary"]
    lines = [table.markdown(COLUMNS, rows), ""]
    if join["ratio"] is not None:
        lines.append(
            f"ratio join / purchase: {join['ratio']:.2f}x (medians of attempts/s; each round: "
            + ", ".join(f"{ratio:.2f}" for ratio in join["round_ratios"])
            + ")"
        )
    for line in (purchase, join):
        answers = ", ".join(f"{answer} {count:,}" for answer, count in line["answers"].items()) or "none"
        lines.append(f"{line['configuration']} answers: {answers}; connection errors: {line['connection_errors']}")
    lines.append(
        "stock of the storm's sale at the viewers (medians over rounds): "
        + "; ".join(
            f"{line['configuration']} {line['stock_updates_per_s_at_viewer_median']} events/s, gap between two "
            f"p99 {line['stock_gap_p99_ms_median']} ms (longest {line['stock_gap_max_ms']} ms), age on arrival p99 "
            f"{line['stock_age_p99_ms_median']} ms"
            for line in (purchase, join)
        )
    )
    lines.append(
        "the server's PUBLISHes to rooms during the storm (median) and how long after the buyers stopped they went on "
        "(each round): "
        + "; ".join(
            f"{line['configuration']} {line['publishes_per_s_median']:,}/s, "
            + ", ".join(
                f"over {result['drain_timeout']:g}" if wait is None else f"{wait}"
                for wait in line["feed_caught_up_s_each"]
            )
            + " s"
            for line in (purchase, join)
        )
    )
    joins = [run for run in result["runs"] if run["configuration"] == "join"]
    lines.append(
        f"joins: {join['granted_per_s_median']:,} 201s/s (median); groups opened and paid before each storm: "
        + ", ".join(f"{run['groups_opened']:,} in {run['open_s']} s" for run in joins)
        + f"; {result['racers']} racers aimed at each group in turn"
    )
    for run in joins:
        lines.append(
            f"round {run['round']} groups: {run['groups']:,} listed, states {run['group_states']}, by members "
            f"{run['groups_by_members']}, largest {run['largest_group']}; {run['joined_members']:,} joined beyond "
            f"the leaders, {run['joins_answered']:,} joins answered 201; invariant "
            f"{'ok' if run['invariant']['ok'] else 'NOT OK'}"
        )
    if any(run["groups_full"] == run["groups_opened"] for run in joins):
        lines.append(
            "every group was full by the end of a round: its last attempts could only be refused (more --groups "
            "keeps 201s coming for the whole storm)"
        )
    problems = failures(result)
    lines.extend(f"FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append(
            f"checks: every invariant ok, no group over {GROUP_SIZE} members, every 201 join is a member of its group"
        )
    lines.append(f"command: {result['command']}")
    lines.append(f"machine: {result['machine']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for number in range(1, args.rounds + 1):
        runs.extend(await run_round(args, number))
    return {
        "command": "python -m loadtests.bench.group_bench " + " ".join(args.argv),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.platform()}",
        "workers": args.workers,
        "connections": args.connections,
        "buyers": args.buyers,
        "groups": args.groups,
        "racers": args.racers,
        "drain_timeout": args.drain_timeout,
        "summary": summarize(runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="measured time of each storm (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=128, help="concurrent keep-alive connections")
    parser.add_argument("--buyers", type=int, default=300_000, help="distinct buyers, in turn (limit 1 a buyer)")
    parser.add_argument("--units", type=int, default=1_000_000, help="units of the sale and of the group offer")
    parser.add_argument("--groups", type=int, default=30_000, help="groups opened and paid before each join storm")
    parser.add_argument("--racers", type=int, default=4, help="join attempts in a row aimed at the same group")
    parser.add_argument("--setup-connections", type=int, default=32, help="connections opening the groups")
    parser.add_argument("--viewers", type=int, default=4, help="WebSocket viewers timing the stock events")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (a fresh server each), the order swapping")
    parser.add_argument("--drain-timeout", type=float, default=120, help="seconds to wait for PostgreSQL to catch up")
    parser.add_argument("--json", type=Path, help="also write every run and the summary here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report, failures)


if __name__ == "__main__":
    main()
