"""Access benchmark: the purchase storm on this code beside the same storm on the code before accounts and limits.

Runs purchase_bench's measurement (a sale in the demo room, --connections keep-alive connections
buying, a new signed-in buyer each time, limit 1) against a fresh server of each, alternated over
--rounds (the order swaps each round) so that the machine's noise hits both alike:

- before: the code at --baseline (default: the last commit before sessions, accounts, revocation and
  the limits), checked out in a temporary git worktree and started from there; its tokens are of its
  own kind (30-day signed tokens, no session), made here the way it made them;
- now: this checkout, where each purchase's token is also checked against the process's copy of the
  signed-out sessions and the sale's `buyers` rule.

No WebSocket viewers (--viewers 0): the old code took a socket's token in its URL. Prints attempts/s
(each round, the median, the ratio now/before), p99 latency and CPU; --json FILE writes every run.

    python -m loadtests.bench.access_bench --seconds 10 --workers 2 --connections 128 --rounds 5
    python -m loadtests.bench.access_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from itsdangerous import URLSafeSerializer

from loadtests.bench import purchase_bench
from loadtests.support import smoke, table, tokens
from loadtests.support.baseline import checkout
from loadtests.support.server import ROOT, running
from server.protocol import Role

BASELINE = "daf2f7c"  # the ledger, landed: the last commit before accounts and sessions
SMOKE = {**purchase_bench.SMOKE, "viewers": 0, "rounds": 1}
TARGET_RATIO = 0.90  # the issue: purchase throughput within 10% of the code before the limits
COLUMNS = ("code", "attempts/s (each round)", "median attempts/s", "now / before", "p99 ms", "server CPU %")


class Before:
    """Tokens as the code before sessions made them: signed claims with a role and a merchant, no session."""

    @staticmethod
    def _mint(secret: str, user_id: str, name: str, role: Role, merchant_id: str | None) -> str:
        claims = {"sub": user_id, "name": name, "role": role.value, "mid": merchant_id, "exp": int(time.time()) + 3600}
        return URLSafeSerializer(secret, salt="livecart.token.v1").dumps(claims)

    def staff(self, secret: str, merchant_id: str, role: Role, name: str = "Staff") -> str:
        return self._mint(secret, f"u_{secrets.token_hex(3)}", name, role, merchant_id)

    def buyer(self, secret: str, user_id: str | None = None, name: str = "Buyer") -> str:
        return self._mint(secret, user_id or f"g_{secrets.token_hex(6)}", name, Role.VIEWER, None)

    def guest(self, secret: str) -> str:
        return self.buyer(secret)


async def run_once(args: argparse.Namespace, code: str, folder: Path, number: int) -> dict[str, Any]:
    sign: purchase_bench.Signer = Before() if code == "before" else tokens
    with running(workers=args.workers, cwd=folder) as server:
        figures = await purchase_bench.measure(args, server, sign=sign)
    return {"code": code, "round": number, **figures}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with checkout(args.baseline) as before:
        for number in range(args.rounds):
            order = [("before", before), ("now", ROOT)]
            for code, folder in order if number % 2 == 0 else reversed(order):
                print(f"round {number + 1}: {code}", file=sys.stderr, flush=True)
                runs.append(await run_once(args, code, folder, number))
    return {"baseline": args.baseline, "runs": runs, "summary": summarize(runs)}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    rates = {code: statistics.median(run["attempts_per_s"] for run in runs if run["code"] == code) for code in
             ("before", "now")}  # fmt: skip
    for code in ("before", "now"):
        mine = [run for run in runs if run["code"] == code]
        summary.append(
            {
                "code": code,
                "attempts_per_s_each": [run["attempts_per_s"] for run in mine],
                "attempts_per_s_median": round(rates[code]),
                "ratio": round(rates[code] / rates["before"], 3) if rates["before"] else None,
                "latency_p99_ms_median": round(statistics.median(run["latency_p99_ms"] for run in mine), 1),
                "server_cpu_percent": round(statistics.median(run["server_cpu_percent"] for run in mine)),
                "oversold": sum(run["oversold"] for run in mine),
            }
        )
    return summary


def report(result: dict[str, Any]) -> str:
    rows = [
        [
            line["code"],
            " · ".join(f"{rate:,}" for rate in line["attempts_per_s_each"]),
            line["attempts_per_s_median"],
            f"{line['ratio']:.2f}x" if line["ratio"] is not None else None,
            line["latency_p99_ms_median"],
            line["server_cpu_percent"],
        ]
        for line in result["summary"]
    ]
    now = result["summary"][1]
    verdict = "meets" if (now["ratio"] or 0) >= TARGET_RATIO else "MISSES"
    oversold = sum(line["oversold"] for line in result["summary"])
    return "\n".join(
        [
            table.markdown(COLUMNS, rows),
            f"\nbefore: {result['baseline']}; now {now['ratio']:.2f}x of before: {verdict} the target "
            f"(at least {TARGET_RATIO:.2f}x); oversold units: {oversold}",
            f"machine: {result['runs'][0]['machine']}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    purchase_bench.add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="storms of each code, alternated")
    parser.add_argument("--baseline", default=BASELINE, help="the git commit whose code is 'before'")
    parser.set_defaults(viewers=0)
    args = smoke.parse(parser, SMOKE, argv)
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report)


if __name__ == "__main__":
    main()
