"""The standard benchmark suite in one command: the hub, purchase, ledger and archive benchmarks and a short
locust show, each against servers it starts itself on 127.0.0.1, bounded in time, summed up in one markdown table.

    python -m loadtests.bench.suite            # the standard run (about 4.5 minutes)
    python -m loadtests.bench.suite --quick    # a small run (about 90 seconds)
    python -m loadtests.bench.suite --smoke    # each step at its smoke size: proves the suite runs

Every step runs in its own process with a deadline; the raw results (each benchmark's JSON, locust's
CSV, HTML and invariant report, the logs) go to --out, and the table to its suite.md and stdout.
Exits 1 when a step fails, an invariant fails, anything was oversold, an order did not reach PostgreSQL
or a finished sale did not settle (archive_bench).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.support import procstat, tokens
from loadtests.support.server import ROOT, running
from loadtests.support.table import markdown
from server.protocol import Role

COLUMNS = (
    "benchmark",
    "viewers",
    "delivered frames/s",
    "p50 push ms",
    "p99 push ms",
    "purchase attempts/s",
    "p99 purchase ms",
    "memory per viewer KiB",
    "oversold",
    "ledger lag p99 s",
    "ratio",
)


@dataclass(frozen=True)
class Sizes:
    """How big each step is, and how long a benchmark may take."""

    hub_args: tuple[str, ...]
    purchase_args: tuple[str, ...]
    ledger_args: tuple[str, ...]
    archive_args: tuple[str, ...]
    locust_users: int
    locust_spawn_rate: int
    locust_seconds: int
    timeout: float


STANDARD = Sizes(
    hub_args=("--viewers", "2000", "--workers", "2", "--seconds", "20"),
    purchase_args=("--seconds", "10", "--workers", "2", "--connections", "128"),
    ledger_args=("--rounds", "1", "--seconds", "10", "--workers", "2", "--connections", "128"),
    archive_args=("--first", "10", "--total", "1000"),
    locust_users=200,
    locust_spawn_rate=20,
    locust_seconds=90,
    timeout=300,
)
QUICK = Sizes(
    hub_args=("--viewers", "200", "--workers", "1", "--seconds", "3"),
    purchase_args=("--seconds", "2", "--warmup", "1", "--workers", "1", "--connections", "16", "--buyers", "2000"),
    ledger_args=("--rounds", "1", "--seconds", "2", "--warmup", "1", "--workers", "1", "--connections", "16"),
    archive_args=("--first", "10", "--total", "100", "--idle-seconds", "1"),
    locust_users=20,
    locust_spawn_rate=20,
    locust_seconds=12,
    timeout=180,
)
SMOKE = Sizes(
    hub_args=("--smoke",),
    purchase_args=("--smoke",),
    ledger_args=("--smoke",),
    archive_args=("--smoke",),
    locust_users=10,
    locust_spawn_rate=10,
    locust_seconds=10,
    timeout=90,
)


@dataclass
class Step:
    name: str
    row: dict[str, Any]
    ok: bool
    raw: Any = None
    error: str = ""


def run_json(name: str, command: list[str], timeout: float, out: Path) -> tuple[Any, str]:
    """Run a benchmark with --json; (the JSON it wrote or None, an error or ''). Its output goes to <name>.log."""
    log, document = out / f"{name}.log", out / f"{name}.json"
    with open(log, "wb") as output:
        try:
            done = subprocess.run(
                [*command, "--json", str(document)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s (see {log})"
    if done.returncode != 0:
        return None, f"exited {done.returncode} (see {log})"
    try:
        return json.loads(document.read_text()), ""
    except (OSError, ValueError):
        return None, f"wrote no JSON (see {log})"


def hub_step(sizes: Sizes, out: Path) -> Step:
    command = [sys.executable, "-m", "loadtests.bench.hub_bench", *sizes.hub_args]
    result, error = run_json("hub_bench", command, sizes.timeout, out)
    if result is None:
        return Step("hub_bench", {}, False, error=error)
    [hub] = result
    workers = hub["workers"]
    row = {
        "viewers": hub["viewers"],
        "delivered frames/s": hub["frames_per_s"],
        "p50 push ms": hub["latency_p50_ms"],
        "p99 push ms": hub["latency_p99_ms"],
        "memory per viewer KiB": hub["rss_per_idle_viewer_kib"],
    }
    name = f"hub_bench ({workers} worker{'s' if workers > 1 else ''})"
    return Step(name, row, hub["closed_by_server"] == 0, hub, "" if not hub["closed_by_server"] else "closed")


def purchase_step(sizes: Sizes, out: Path) -> Step:
    command = [sys.executable, "-m", "loadtests.bench.purchase_bench", *sizes.purchase_args]
    result, error = run_json("purchase_bench", command, sizes.timeout, out)
    if result is None:
        return Step("purchase_bench", {}, False, error=error)
    row = {
        "purchase attempts/s": result["attempts_per_s"],
        "p99 purchase ms": result["latency_p99_ms"],
        "oversold": result["oversold"],
    }
    workers = result["workers"]
    name = f"purchase_bench ({workers} worker{'s' if workers != 1 else ''}, {result['connections']} connections)"
    return Step(name, row, row["oversold"] == 0, result, "" if row["oversold"] == 0 else "oversold")


def ledger_steps(sizes: Sizes, out: Path) -> list[Step]:
    """The purchase storm with the ledger consumer off, on, and on with DURABLE_ACK: a row each."""
    command = [sys.executable, "-m", "loadtests.bench.ledger_bench", *sizes.ledger_args]
    result, error = run_json("ledger_bench", command, sizes.timeout, out)
    if result is None:
        return [Step("ledger_bench", {}, False, error=error)]
    steps = []
    for line in result["summary"]:
        row = {
            "purchase attempts/s": line["attempts_per_s_median"],
            "p99 purchase ms": line["latency_p99_ms_median"],
            "oversold": line["oversold"],
            "ledger lag p99 s": None if line["lag_gauge_max_s"] is None else f"{line['lag_gauge_max_s']:.2f}",
            "ratio": f"{line['vs_consumer_off']:.2f}x",
        }
        consumer = line["configuration"] != "consumer off"
        missing = line["orders"] - line["ledger_rows"] if consumer else 0
        problems = [f"{line['oversold']} oversold"] if line["oversold"] else []
        problems += [f"{missing} orders not in PostgreSQL"] if missing else []
        name = f"ledger_bench, {line['configuration']}"
        steps.append(Step(name, row, not problems, line, "; ".join(problems)))
    return steps


def archive_steps(sizes: Sizes, out: Path) -> list[Step]:
    """Redis after the first and the last of the finished sales, on a server that archives them and one that never
    does: a row each, with the ratio of used_memory (last / first)."""
    command = [sys.executable, "-m", "loadtests.bench.archive_bench", *sizes.archive_args]
    result, error = run_json("archive_bench", command, sizes.timeout, out)
    if result is None:
        return [Step("archive_bench", {}, False, error=error)]
    steps = []
    for name, readings in result["servers"].items():
        first, last = readings[0], readings[-1]
        archives = name.startswith("archiving")
        problems = [f"{last['sale_keys']} keys of archived sales left"] if archives and last["sale_keys"] else []
        problems += [f"{line['unsettled']} sales not settled" for line in readings if line["unsettled"]]
        problems += [
            f"{2 * line['finished_sales'] - line['orders_in_postgres']} orders not in PostgreSQL"
            for line in readings
            if line["orders_in_postgres"] != 2 * line["finished_sales"]
        ]
        row = {"ratio": f"{last['used_memory'] / first['used_memory']:.2f}x"}
        label = f"archive_bench, {name} (Redis after {last['finished_sales']:,} / {first['finished_sales']:,} sales)"
        steps.append(Step(label, row, not problems, readings, "; ".join(problems)))
    return steps


def locust_step(sizes: Sizes, out: Path) -> Step:
    """A short show (viewers, chatters, buyers, the host) with locust, against a fresh server."""
    name = f"locust show ({sizes.locust_seconds} s)"
    with running(log=out / "locust-server.log") as server:
        time.sleep(1)
        web = server.tree()[0]
        rss_before = sum(procstat.rss_bytes(pid) for pid in web)
        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], sum(procstat.rss_bytes(pid) for pid in web))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        admin = tokens.staff(server.secret, "demo", Role.ADMIN, "Suite")
        report = out / "locust-report.json"
        command = [sys.executable, "-m", "locust", "-f", "loadtests/show/locustfile.py", "--headless", "--only-summary"]
        command += ["--users", str(sizes.locust_users), "--spawn-rate", str(sizes.locust_spawn_rate)]
        command += ["--run-time", f"{sizes.locust_seconds}s", "--host", server.base_url]
        command += ["--merchant", "demo", "--room", "demo", "--admin-token", admin]
        command += ["--csv", str(out / "locust"), "--html", str(out / "locust.html"), "--report-json", str(report)]
        with open(out / "locust.log", "wb") as locust_log:
            try:
                done = subprocess.run(
                    command,
                    cwd=ROOT,
                    stdout=locust_log,
                    stderr=subprocess.STDOUT,
                    timeout=sizes.locust_seconds + 120,
                )
                code: int | None = done.returncode
            except subprocess.TimeoutExpired:
                code = None
        stop.set()
        sampler.join()
    if not report.exists():
        return Step(name, {}, False, error=f"locust exited {code} without a report (see {out / 'locust.log'})")
    document = json.loads(report.read_text())
    summary = document["summary"]
    row = {
        "viewers": summary["peak_users"],
        "delivered frames/s": summary["frames_per_s"],
        "p50 push ms": summary["push_p50_ms"],
        "p99 push ms": summary["push_p99_ms"],
        "purchase attempts/s": summary["purchase_attempts_per_s"],
        "p99 purchase ms": summary["purchase_p99_ms"],
        "memory per viewer KiB": round((peak[0] - rss_before) / 1024 / max(1, summary["peak_users"]), 1),
        "oversold": summary["oversold"],
    }
    error = "" if code == 0 else f"locust exited {code}: " + "; ".join(document["invariants"]["problems"][:3])
    return Step(name, row, code == 0, document, error)


def table(steps: list[Step]) -> str:
    """One markdown table; 'n/a' where a benchmark does not measure the column."""
    rows = [
        [step.name + ("" if step.ok else " **FAILED**"), *(step.row.get(column) for column in COLUMNS[1:])]
        for step in steps
    ]
    return markdown(COLUMNS, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a small run, in seconds rather than minutes")
    size.add_argument("--smoke", action="store_true", help="each step at its smoke size: proves the suite runs")
    parser.add_argument("--out", type=Path, help="where the raw results go (default loadtests/results/suite-<time>)")
    parser.add_argument(
        "--only",
        default="hub,purchase,locust,ledger,archive",
        help="comma-separated steps to run (default: hub,purchase,locust,ledger,archive)",
    )
    args = parser.parse_args(argv)
    kind = "quick" if args.quick else "smoke" if args.smoke else "standard"
    sizes = {"quick": QUICK, "smoke": SMOKE, "standard": STANDARD}[kind]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or ROOT / "loadtests" / "results" / f"suite-{stamp}{'' if kind == 'standard' else '-' + kind}"
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    started = time.monotonic()
    steps: list[Step] = []
    if "hub" in only:
        print(f"hub_bench {' '.join(sizes.hub_args)} ...", file=sys.stderr, flush=True)
        steps.append(hub_step(sizes, out))
    if "purchase" in only:
        print(f"purchase_bench {' '.join(sizes.purchase_args)} ...", file=sys.stderr, flush=True)
        steps.append(purchase_step(sizes, out))
    if "locust" in only:
        print(f"locust: a {sizes.locust_seconds} s show, {sizes.locust_users} users ...", file=sys.stderr, flush=True)
        steps.append(locust_step(sizes, out))
    if "ledger" in only:
        print(f"ledger_bench {' '.join(sizes.ledger_args)} ...", file=sys.stderr, flush=True)
        steps.extend(ledger_steps(sizes, out))
    if "archive" in only:
        print(f"archive_bench {' '.join(sizes.archive_args)} ...", file=sys.stderr, flush=True)
        steps.extend(archive_steps(sizes, out))
    rendered = table(steps)
    failures = [f"- {step.name}: {step.error or 'failed'}" for step in steps if not step.ok]
    oversold = sum(step.row.get("oversold") or 0 for step in steps)
    footer = f"\n{kind} run, {time.monotonic() - started:.0f} s; raw results in {out}"
    (out / "suite.md").write_text(rendered + "\n" + "\n".join(failures) + footer + "\n")
    (out / "suite.json").write_text(
        json.dumps([{"name": s.name, "ok": s.ok, "row": s.row, "error": s.error} for s in steps], indent=2) + "\n"
    )
    print(rendered)
    if failures:
        print("\n".join(failures))
    print(footer.strip())
    return 1 if failures or oversold else 0


if __name__ == "__main__":
    sys.exit(main())
