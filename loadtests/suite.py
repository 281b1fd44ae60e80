"""The standard benchmark suite in one command: the hub and purchase benchmarks and a short locust show,
each against a server it starts itself on 127.0.0.1, bounded in time, summed up in one markdown table.

    python -m loadtests.suite            # the standard run (a few minutes)
    python -m loadtests.suite --quick    # a small run (well under a minute)

Every step runs in its own process with a deadline; the raw results (each benchmark's JSON, locust's
CSV, HTML and invariant report, the logs) go to --out, and the table to its suite.md and stdout.
Exits 1 when a step fails, an invariant fails or anything was oversold.
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

from loadtests import procstat, serverproc
from server.access.tokens import Tokens
from server.protocol import Role

ROOT = serverproc.ROOT
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
)


@dataclass(frozen=True)
class Sizes:
    """How big each step is."""

    hub_viewers: int
    hub_workers: int
    hub_seconds: int
    purchase_args: tuple[str, ...]
    locust_users: int
    locust_spawn_rate: int
    locust_seconds: int


STANDARD = Sizes(
    hub_viewers=2000,
    hub_workers=2,
    hub_seconds=20,
    purchase_args=("--seconds", "10", "--workers", "2", "--connections", "128"),
    locust_users=200,
    locust_spawn_rate=20,
    locust_seconds=90,
)
QUICK = Sizes(
    hub_viewers=200,
    hub_workers=1,
    hub_seconds=3,
    purchase_args=("--seconds", "2", "--warmup", "1", "--workers", "1", "--connections", "16", "--buyers", "2000"),
    locust_users=20,
    locust_spawn_rate=20,
    locust_seconds=12,
)


@dataclass
class Step:
    name: str
    row: dict[str, Any]
    ok: bool
    raw: Any = None
    error: str = ""


def run_json(name: str, command: list[str], timeout: float, out: Path) -> tuple[Any, str]:
    """Run a benchmark that prints one JSON document; (the document or None, an error or '')."""
    log = out / f"{name}.log"
    with open(log, "wb") as stderr:
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s (see {log})"
    (out / f"{name}.json").write_bytes(done.stdout)
    if done.returncode != 0:
        return None, f"exited {done.returncode} (see {log})"
    try:
        return json.loads(done.stdout), ""
    except ValueError:
        return None, f"printed no JSON (see {log})"


def hub_step(sizes: Sizes, out: Path) -> Step:
    command = [sys.executable, "-m", "loadtests.hub_bench", "--viewers", str(sizes.hub_viewers)]
    command += ["--workers", str(sizes.hub_workers), "--seconds", str(sizes.hub_seconds)]
    name = f"hub_bench ({sizes.hub_workers} worker{'s' if sizes.hub_workers > 1 else ''})"
    result, error = run_json("hub_bench", command, sizes.hub_seconds + 180, out)
    if result is None:
        return Step(name, {}, False, error=error)
    row = {
        "viewers": result["viewers"],
        "delivered frames/s": result["frames_per_s"],
        "p50 push ms": result["latency_p50_ms"],
        "p99 push ms": result["latency_p99_ms"],
        "memory per viewer KiB": result["rss_per_idle_viewer_kib"],
    }
    return Step(name, row, result["closed_by_server"] == 0, result, "" if not result["closed_by_server"] else "closed")


def purchase_step(sizes: Sizes, out: Path) -> Step | None:
    """loadtests/purchase_bench.py, when it exists (it starts its own server and prints JSON)."""
    if not (ROOT / "loadtests" / "purchase_bench.py").exists():
        return None
    command = [sys.executable, "-m", "loadtests.purchase_bench", *sizes.purchase_args]
    result, error = run_json("purchase_bench", command, 300, out)
    if result is None:
        return Step("purchase_bench", {}, False, error=error)
    row = {
        "purchase attempts/s": result.get("attempts_per_s"),
        "p99 purchase ms": result.get("latency_p99_ms"),
        "oversold": result.get("oversold"),
    }
    workers = result.get("workers")
    name = f"purchase_bench ({workers} worker{'s' if workers != 1 else ''}, {result.get('connections')} connections)"
    return Step(name, row, row["oversold"] == 0, result, "" if row["oversold"] == 0 else "oversold")


def locust_step(sizes: Sizes, out: Path) -> Step:
    """A short show (viewers, chatters, buyers, the host) with locust, against a fresh server."""
    name = f"locust show ({sizes.locust_seconds} s)"
    with open(out / "locust-server.log", "wb") as server_log, serverproc.running(log=server_log) as server:
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
        admin = Tokens(server.secret).mint(
            user_id="suite-admin", name="Suite", role=Role.ADMIN, merchant_id="demo", ttl_seconds=3600
        )
        report = out / "locust-report.json"
        command = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless", "--only-summary"]
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
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    for step in steps:
        cells = [step.name + ("" if step.ok else " **FAILED**")]
        cells += [_cell(step.row.get(column)) for column in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run, in seconds rather than minutes")
    parser.add_argument("--out", type=Path, help="where the raw results go (default loadtests/results/suite-<time>)")
    parser.add_argument(
        "--only", default="hub,purchase,locust", help="comma-separated steps to run (default: hub,purchase,locust)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else STANDARD
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or ROOT / "loadtests" / "results" / f"suite-{stamp}{'-quick' if args.quick else ''}"
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    started = time.monotonic()
    steps: list[Step] = []
    if "hub" in only:
        print(f"hub_bench: {sizes.hub_viewers} viewers for {sizes.hub_seconds} s ...", file=sys.stderr, flush=True)
        steps.append(hub_step(sizes, out))
    if "purchase" in only:
        print("purchase_bench ...", file=sys.stderr, flush=True)
        step = purchase_step(sizes, out)
        if step is None:
            print("purchase_bench: loadtests/purchase_bench.py is not there yet; skipped", file=sys.stderr)
        else:
            steps.append(step)
    if "locust" in only:
        print(f"locust: a {sizes.locust_seconds} s show, {sizes.locust_users} users ...", file=sys.stderr, flush=True)
        steps.append(locust_step(sizes, out))
    rendered = table(steps)
    failures = [f"- {step.name}: {step.error or 'failed'}" for step in steps if not step.ok]
    oversold = sum(step.row.get("oversold") or 0 for step in steps)
    footer = f"\n{'quick' if args.quick else 'standard'} run, {time.monotonic() - started:.0f} s; raw results in {out}"
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
