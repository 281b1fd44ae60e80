"""Share-and-earn benchmark: purchases/s through share links against direct purchases, and the commissions after.

Runs purchase_bench's storm (its `measure`: a sale in the demo room, --connections keep-alive
connections buying, a new signed-in buyer each time, limit 1) with --pay (each new hold paid at
once, on its connection: a commission needs a paid order) against a fresh server of each
configuration, started the same way, alternated over --rounds (the order swaps each round) so that
the machine's noise hits both alike:

- direct: the merchant's referral programme left as a new shop has it, disabled; the buyers are
  bound to nobody (the purchase path before share and earn);
- shared: the programme enabled (PUT /api/merchants/demo/referrals: two levels, a 10% level-1 and
  5% level-2 default, refund window 0 days); an upline member and --sharers members each get a
  share link of the room (POST /api/merchants/demo/shares), every sharer opens the upline's link,
  and every buyer the storm will use opens a sharer's link (POST /api/shares/{code}/visits, round
  robin over the sharers) BEFORE the storm: every paid order then earns its sharer (level 1) and
  the upline (level 2).

Before each storm, in both, PostgreSQL is settled: `VACUUM (ANALYZE)` of the referral tables and a
`CHECKPOINT` (the 40,000 bindings made just before would otherwise have autovacuum and a checkpoint
run during the shared storm: setup, not the purchase path).

For each: attempts/s (each round, the median, the ratio shared / direct), paid/s, the purchase's
and the payment's p99, and CPU as purchase_bench reads it. For shared, after the buyers stop: how
long until PostgreSQL's orders have every paid order (projected) and until its commissions table
has two commissions per paid order (both counted every 250 ms on the server's DATABASE_URL: the
API's GET /api/merchants/demo/referrals/commissions answers the newest 500 rows, and its
commissions.csv, every row, is audited per call), then, from the API's every commission
(commissions.csv, as an admin), that each paid order has exactly one commission per level, with
the right sharer and amount, and no other order has any. Direct: GET …/referrals/commissions must
be empty. Exits 1 when a check fails. --json FILE writes every run and the summary.

    python -m loadtests.bench.referral_bench --seconds 10 --workers 2 --connections 128 --rounds 5
    python -m loadtests.bench.referral_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

from loadtests.bench import purchase_bench
from loadtests.support import smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from server.protocol import Role

MERCHANT, ROOM = "demo", "demo"
PRICE = 990  # purchase_bench's sale price, minor units
LEVEL1_BP, LEVEL2_BP = 1000, 500  # the programme's default rule: 10% to the sharer, 5% to who brought them
UPLINE = "sharer-upline"
# Every client comes from 127.0.0.1: the per-address limit on opened links is lifted, on both servers alike.
ENV = {"LIMIT_SHARE_VISITS": "100000000/1", "LIMIT_SHARES": "100000/1"}
BIND_CONNECTIONS = 32  # keep-alive connections opening the buyers' links before the storm
POLL_SECONDS = 0.25
SMOKE = {**purchase_bench.SMOKE, "buyers": 3_000, "rounds": 1, "sharers": 3, "commission_timeout": 60}
CONFIGS = ("direct", "shared")
COLUMNS = (
    "configuration",
    "attempts/s (each round)",
    "median attempts/s",
    "shared / direct",
    "paid/s",
    "p99 ms",
    "payment p99 ms",
    "server CPU %",
    "Redis CPU %",
    "PostgreSQL CPU %",
    "client CPU %",
    "others CPU %",
    "paid orders",
    "commissions",
    "projected s",
    "commissioned s",
)


@dataclass
class Shop:
    """What the shared configuration set up before the storm: the sharers' links and the buyers' bindings."""

    codes: dict[str, str] = field(default_factory=dict)  # sharer id -> their link's code
    sharer_reasons: Counter[str] = field(default_factory=Counter)
    buyer_reasons: Counter[str] = field(default_factory=Counter)
    bind_s: float = 0.0


def sharer_id(number: int) -> str:
    return f"sharer{number}"


def buyer_id(index: int) -> str:
    """The user id purchase_bench gives its index-th buyer."""
    return f"b{index}"


def expected_commission(level: int) -> int:
    """One unit at PRICE: the rate's share, rounded down; level 2 never more than level 1 left."""
    first = PRICE * LEVEL1_BP // 10_000
    return first if level == 1 else min(PRICE * LEVEL2_BP // 10_000, PRICE - first)


def visit_request(code: str, token: str) -> bytes:
    return (
        f"POST /api/shares/{code}/visits HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def post_all(port: int, requests: list[bytes], connections: int) -> list[tuple[int, bytes]]:
    """Send every request (raw HTTP/1.1, over `connections` keep-alive connections); each one's status and body."""
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    next_index = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while next_index[0] < len(requests):
                index = next_index[0]
                next_index[0] += 1
                writer.write(requests[index])
                head, body = await purchase_bench.read_answer(reader)
                answers[index] = (int(head[9:12]), body)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(connections, len(requests)))))
    return answers


def reason_of(status: int, body: bytes) -> str:
    """A visit's `reason`, or its status and error code when it was refused."""
    if status in (200, 201):
        return str(orjson.loads(body)["reason"])
    try:
        return f"{status} {orjson.loads(body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {body[:80].decode(errors='replace')}"


async def enable_and_share(args: argparse.Namespace, server: ServerProcess, admin: httpx.AsyncClient) -> Shop:
    """Enable the programme, give the upline and each sharer a link, bind the sharers to the upline and every buyer
    (round robin) to a sharer; raises when any of it is refused."""
    started = time.monotonic()
    shop = Shop()
    answer = await admin.put(
        f"/api/merchants/{MERCHANT}/referrals",
        json={
            "enabled": True,
            "levels": 2,
            "refund_days": 0,
            "default": {"level1": {"rate_bp": LEVEL1_BP}, "level2": {"rate_bp": LEVEL2_BP}},
        },
    )
    if answer.status_code != 200 or not answer.json().get("enabled") or answer.json().get("levels") != 2:
        raise RuntimeError(f"PUT /api/merchants/{MERCHANT}/referrals: {answer.status_code} {answer.text[:300]}")
    members = {UPLINE: "Upline", **{sharer_id(number): f"Sharer {number}" for number in range(args.sharers)}}
    signed = {user: tokens.buyer(server.secret, user, name) for user, name in members.items()}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for user, token in signed.items():
            answer = await http.post(
                f"/api/merchants/{MERCHANT}/shares",
                json={"room_id": ROOM},
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"POST /api/merchants/{MERCHANT}/shares: {answer.status_code} {answer.text[:300]}")
            shop.codes[user] = answer.json()["code"]
        for user, token in signed.items():
            if user != UPLINE:
                answer = await http.post(
                    f"/api/shares/{shop.codes[UPLINE]}/visits", headers={"Authorization": f"Bearer {token}"}
                )
                shop.sharer_reasons[reason_of(answer.status_code, answer.content)] += 1
    codes = [shop.codes[sharer_id(number)] for number in range(args.sharers)]
    requests = [
        visit_request(codes[index % len(codes)], tokens.buyer(server.secret, buyer_id(index)))
        for index in range(args.buyers)
    ]
    for status, body in await post_all(server.port, requests, BIND_CONNECTIONS):
        shop.buyer_reasons[reason_of(status, body)] += 1
    shop.bind_s = round(time.monotonic() - started, 1)
    if set(shop.sharer_reasons) != {"bound"} or set(shop.buyer_reasons) != {"bound"}:
        raise RuntimeError(f"not every visit bound: sharers {shop.sharer_reasons}, buyers {shop.buyer_reasons}")
    return shop


async def newest_commissions(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    """GET /api/merchants/demo/referrals/commissions: the newest commission rows (at most 500)."""
    answer = await admin.get(f"/api/merchants/{MERCHANT}/referrals/commissions")
    answer.raise_for_status()
    rows: list[dict[str, Any]] = answer.json()
    return rows


async def every_commission(admin: httpx.AsyncClient) -> list[dict[str, str]]:
    """GET /api/merchants/demo/referrals/commissions.csv: every commission row, as its CSV's strings."""
    answer = await admin.get(f"/api/merchants/{MERCHANT}/referrals/commissions.csv")
    answer.raise_for_status()
    return list(csv.DictReader(io.StringIO(answer.text)))


async def projected_paid(database: asyncpg.Connection, sale_id: str) -> int:
    return int(await database.fetchval("SELECT count(*) FROM orders WHERE sale_id = $1 AND status = 'paid'", sale_id))


async def settle(server: ServerProcess) -> None:
    """What autovacuum and the checkpointer would do after the setup's writes, done before the storm, not in it."""
    database = await asyncpg.connect(server.database_url)
    try:
        await database.execute("VACUUM (ANALYZE) shares, share_visits, referral_bindings, referral_programs")
        await database.execute("CHECKPOINT")
    finally:
        await database.close()


async def commissions_made(database: asyncpg.Connection) -> int:
    return int(
        await database.fetchval(
            "SELECT count(*) FROM commissions WHERE merchant_id = $1 AND kind = 'commission'", MERCHANT
        )
    )


async def follow(
    args: argparse.Namespace, server: ServerProcess, admin: httpx.AsyncClient, watch: purchase_bench.Watch
) -> dict[str, Any]:
    """Once the buyers are gone: when PostgreSQL has every paid order projected, when every paid order has its
    commissions (or the timeout), then the exactly-once audit of the commission rows."""
    await watch.idle.wait()
    paid = list(watch.paid_orders)
    expected = 2 * len(paid)
    deadline = watch.stopped_at + args.commission_timeout
    projected_s = commissioned_s = None
    database = await asyncpg.connect(server.database_url)
    try:
        while True:
            if projected_s is None and await projected_paid(database, watch.sale_id) >= len(paid):
                projected_s = round(time.monotonic() - watch.stopped_at, 2)
            if await commissions_made(database) >= expected:
                commissioned_s = round(time.monotonic() - watch.stopped_at, 2)
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await database.close()
    await asyncio.sleep(2 * POLL_SECONDS)  # a commission too many would come with a later pass
    rows = await every_commission(admin)
    return {
        "projected_s": projected_s,
        "commissioned_s": commissioned_s,
        **audit(args, paid, rows),
    }


def audit(args: argparse.Namespace, paid: list[str], rows: list[dict[str, str]]) -> dict[str, Any]:
    """Each paid order: exactly one commission per level, to the right sharer, of the right amount; none for any
    other order. Buyer b<i> opened sharer<i mod K>'s link, and every sharer the upline's."""
    seen = Counter((row["order_id"], int(row["level"])) for row in rows)
    wanted = {(order, level) for order in paid for level in (1, 2)}
    wrong_sharer = wrong_amount = 0
    for row in rows:
        level = int(row["level"])
        buyer = row["buyer_id"]
        if buyer.startswith("b") and buyer[1:].isdigit():
            sharer = sharer_id(int(buyer[1:]) % args.sharers) if level == 1 else UPLINE
            wrong_sharer += row["sharer_id"] != sharer
        else:
            wrong_sharer += 1  # no buyer of the storm
        wrong_amount += int(row["amount"]) != expected_commission(level)
    figures = {
        "paid_orders": len(paid),
        "commissions": len(rows),
        "expected_commissions": len(wanted),
        "missing": len(wanted - set(seen)),
        "duplicates": sum(count - 1 for count in seen.values() if count > 1),
        "unexpected": len(set(seen) - wanted),
        "wrong_sharer": wrong_sharer,
        "wrong_amount": wrong_amount,
        "commission_states": dict(Counter(row["state"] for row in rows).most_common()),
    }
    problems = ("missing", "duplicates", "unexpected", "wrong_sharer", "wrong_amount")
    figures["exactly_once"] = bool(paid) and not any(figures[name] for name in problems)
    return figures


async def run_once(args: argparse.Namespace, config: str, number: int) -> dict[str, Any]:
    """One storm against a fresh server in this configuration: purchase_bench's figures, and the commissions'."""
    with running(workers=args.workers, env=ENV) as server:
        admin_token = tokens.staff(server.secret, MERCHANT, Role.ADMIN, "Bench Admin")
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as admin:
            watch = purchase_bench.Watch()
            if config == "shared":
                shop = await enable_and_share(args, server, admin)
                await settle(server)
                follower = asyncio.create_task(follow(args, server, admin, watch))
                try:
                    figures = await purchase_bench.measure(args, server, watch)
                    commissions = await follower
                finally:
                    follower.cancel()
                setup = {
                    "bind_s": shop.bind_s,
                    "sharer_visits": dict(shop.sharer_reasons),
                    "buyer_visits": dict(shop.buyer_reasons),
                }
            else:
                programme = await admin.get(f"/api/merchants/{MERCHANT}/referrals")
                programme.raise_for_status()
                if programme.json().get("enabled"):
                    raise RuntimeError(f"a new shop's programme is enabled: {programme.text[:300]}")
                await settle(server)
                figures = await purchase_bench.measure(args, server, watch)
                listed = await newest_commissions(admin)
                commissions = {"paid_orders": len(watch.paid_orders), "commissions": len(listed)}
                setup = {}
    return {"configuration": config, "round": number, **setup, **figures, **commissions}


def _median(runs: list[dict[str, Any]], figure: str) -> float:
    return float(statistics.median(run[figure] for run in runs))


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration, over its rounds: medians of rates, p99s and CPU; sums of orders and commissions; for
    shared, the slowest projection and commissioning, and whether every round's audit passed."""
    summary = []
    by_config = {config: [run for run in runs if run["configuration"] == config] for config in CONFIGS}
    rates = {config: _median(mine, "attempts_per_s") for config, mine in by_config.items()}
    for config, mine in by_config.items():
        shared = config == "shared"
        waits = [run["commissioned_s"] for run in mine] if shared else []
        projections = [run["projected_s"] for run in mine] if shared else []
        summary.append(
            {
                "configuration": config,
                "rounds": len(mine),
                "attempts_per_s_each": [run["attempts_per_s"] for run in mine],
                "attempts_per_s_median": round(rates[config]),
                "ratio": round(rates[config] / rates["direct"], 3) if rates["direct"] else None,
                "paid_per_s_median": round(_median(mine, "paid_per_s")),
                "latency_p99_ms_median": round(_median(mine, "latency_p99_ms"), 1),
                "payment_p99_ms_median": round(_median(mine, "payment_p99_ms"), 1),
                **{
                    f"{program}_cpu_percent": round(_median(mine, f"{program}_cpu_percent"))
                    for program in ("server", "redis", "postgres", "client", "others")
                },
                "paid_orders": sum(run["paid_orders"] for run in mine),
                "commissions": sum(run["commissions"] for run in mine),
                "expected_commissions": sum(run["expected_commissions"] for run in mine) if shared else 0,
                "projected_s_max": (None if None in projections else max(projections)) if shared else None,
                "commissioned_s_max": (None if None in waits else max(waits)) if shared else None,
                "commissioned_s_each": waits if shared else None,
                "exactly_once": all(run["exactly_once"] for run in mine) if shared else None,
                "bind_s_median": round(_median(mine, "bind_s"), 1) if shared else None,
                "buyers_reused": sum(run["answers"].get("409 limit_reached", 0) for run in mine),
                "oversold": sum(run["oversold"] for run in mine),
            }
        )
    return summary


def ok(result: dict[str, Any]) -> bool:
    """Nothing oversold; direct earned nothing; shared: every paid order commissioned exactly once per level."""
    direct, shared = result["summary"]
    return (
        direct["oversold"] == shared["oversold"] == 0
        and direct["commissions"] == 0
        and bool(shared["exactly_once"])
        and shared["commissioned_s_max"] is not None
    )


def report(result: dict[str, Any]) -> str:
    """The table (a row per configuration), the ratio, the commissions' audit, the command and the machine."""
    rows = [
        [
            line["configuration"],
            " · ".join(f"{rate:,}" for rate in line["attempts_per_s_each"]),
            line["attempts_per_s_median"],
            None if line["ratio"] is None else f"{line['ratio']:.2f}x",
            line["paid_per_s_median"],
            line["latency_p99_ms_median"],
            line["payment_p99_ms_median"],
            line["server_cpu_percent"],
            line["redis_cpu_percent"],
            line["postgres_cpu_percent"],
            line["client_cpu_percent"],
            line["others_cpu_percent"],
            line["paid_orders"],
            line["commissions"],
            None if line["projected_s_max"] is None else f"{line['projected_s_max']:.2f}",
            None if line["commissioned_s_max"] is None else f"{line['commissioned_s_max']:.2f}",
        ]
        for line in result["summary"]
    ]
    direct, shared = result["summary"]
    lines = [table.markdown(COLUMNS, rows), ""]
    if shared["ratio"] is not None:
        lines.append(f"ratio shared / direct: {shared['ratio']:.2f}x (medians of attempts/s)")
    shared_runs = [run for run in result["runs"] if run["configuration"] == "shared"]
    if shared["exactly_once"] and shared["commissioned_s_max"] is not None:
        lines.append(
            f"commissions: every paid order ({shared['paid_orders']:,}) has exactly one level-1 and one level-2 "
            f"commission, right sharer and amount ({shared['commissions']:,} rows), at most "
            f"{shared['commissioned_s_max']:.2f} s after the buyers stopped (each round: "
            + ", ".join(f"{wait:.2f}" for wait in shared["commissioned_s_each"])
            + f" s; PostgreSQL had every paid order at most {shared['projected_s_max']} s after)"
        )
    else:
        for run in shared_runs:
            figures = ("missing", "duplicates", "unexpected", "wrong_sharer", "wrong_amount")
            lines.append(
                f"commissions FAILED, round {run['round']}: {run['commissions']:,} of {run['expected_commissions']:,} "
                + (
                    f"after {run['commissioned_s']} s; "
                    if run["commissioned_s"] is not None
                    else f"not all within {result['commission_timeout']:g} s; "
                )
                + ", ".join(f"{name} {run[name]}" for name in figures)
            )
    if direct["commissions"]:
        lines.append(f"direct (programme disabled) earned {direct['commissions']} commissions: WRONG")
    lines.append(
        f"binding before each shared storm: {result['buyers']:,} buyers to {result['sharers']} sharers (and the "
        f"sharers to an upline), {shared['bind_s_median']} s (median)"
    )
    if direct["buyers_reused"] or shared["buyers_reused"]:
        lines.append(
            f"buyers reused (limit_reached answers: more attempts than --buyers): direct {direct['buyers_reused']:,}, "
            f"shared {shared['buyers_reused']:,}"
        )
    lines.append(f"oversold units: {direct['oversold'] + shared['oversold']}")
    lines.append(f"command: {result['command']}")
    lines.append(f"machine: {result['machine']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for number in range(1, args.rounds + 1):
        for config in CONFIGS if number % 2 else reversed(CONFIGS):
            result = await run_once(args, config, number)
            runs.append(result)
            print(
                f"round {number}/{args.rounds}, {config}: {result['attempts_per_s']:,} attempts/s, "
                f"{result['paid_per_s']:,} paid/s, p99 {result['latency_p99_ms']} ms, "
                f"commissions {result['commissions']:,} after {result.get('commissioned_s')} s, "
                f"others CPU {result['others_cpu_percent']}%",
                file=sys.stderr,
                flush=True,
            )
    return {
        "command": "python -m loadtests.bench.referral_bench " + " ".join(args.argv),
        "machine": runs[0]["machine"],
        "buyers": args.buyers,
        "sharers": args.sharers,
        "commission_timeout": args.commission_timeout,
        "summary": summarize(runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    purchase_bench.add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="storms of each configuration, alternated")
    parser.add_argument("--sharers", type=int, default=10, help="members with a share link; buyers round robin")
    parser.add_argument(
        "--commission-timeout", type=float, default=120, help="seconds to wait for every paid order's commissions"
    )
    parser.set_defaults(buyers=40_000)  # each opens a link before the storm: enough for every purchase, no more
    args = smoke.parse(parser, SMOKE, argv)
    args.pay = True  # a commission needs a paid order
    args.argv = sys.argv[1:] if argv is None else argv
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report)
    if not ok(result):
        sys.exit(1)


if __name__ == "__main__":
    main()
