"""Every benchmark runs: each in smoke mode (real servers, tiny sizes, seconds), printing its table.

They run as people run them: `python -m loadtests.bench.<name> --smoke`, a subprocess from the
repository root, with a deadline.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def smoke(name: str, *args: str, timeout: float = 90) -> str:
    """Run a benchmark with --smoke; what it printed, once it has exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", f"loadtests.bench.{name}", "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def rows(printed: str) -> list[dict[str, str]]:
    """The markdown table in a benchmark's output, one dict per row (column name -> cell)."""
    lines = [line for line in printed.splitlines() if line.startswith("|")]
    header, rule, *body = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    assert set(rule) == {"---"}, lines[1]
    return [dict(zip(header, row, strict=True)) for row in body]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_hub_bench_smoke_measures_the_hub_and_its_baseline() -> None:
    """hub_bench --smoke --baseline measures the hub and a bare broadcast() server and prints their CPU ratio."""
    printed = smoke("hub_bench", "--baseline")
    hub, bare = rows(printed)
    assert hub["server"] == "livecart hub, 1 worker(s)" and bare["server"] == "websockets.broadcast(), 1 process"
    for row in (hub, bare):
        assert row["viewers"] == "40" and row["closed by server"] == "0"
        assert number(row["delivered frames/s"]) > 0 and number(row["server µs per delivery"]) > 0
    assert re.search(r"^ratio hub / websockets\.broadcast\(\): \d+\.\d\dx ", printed, re.MULTILINE)


def test_purchase_bench_smoke_buys_without_overselling() -> None:
    """purchase_bench --smoke keeps buyers purchasing from a real sale and prints its table with 0 oversold."""
    printed = smoke("purchase_bench")
    [row] = rows(printed)
    assert row["workers"] == "1" and row["connections"] == "8"
    assert number(row["attempts/s"]) > 0 and number(row["holds granted"]) > 0
    assert row["oversold"] == "0"
    assert "answers: 201 held" in printed and "its own recount agrees" in printed


def test_relay_bench_smoke_measures_both_relays_and_their_ratio() -> None:
    """relay_bench --smoke streams through the real server's pass-through relay and stock MediaRelay, with a ratio."""
    printed = smoke("relay_bench")
    ours, stock = rows(printed)
    assert (ours["relay"], ours["viewers"]) == ("livecart pass-through", "2")
    assert (stock["relay"], stock["viewers"]) == ("aiortc MediaRelay", "1")
    for row in (ours, stock):
        assert number(row["video fps median"]) > 0 and number(row["audio packets/s median"]) > 0
        assert row["decoded"] == "640x360"  # the one decoding viewer saw the publisher's picture
    assert re.search(r"^ratio stock MediaRelay / pass-through: (\d+\.\dx|n/a) ", printed, re.MULTILINE)


def test_suite_smoke_runs_every_step(tmp_path: Path) -> None:
    """The suite's --smoke runs hub_bench, purchase_bench and a locust show, and prints one table, nothing failed."""
    printed = smoke("suite", "--out", str(tmp_path), timeout=150)
    hub, purchase, show = rows(printed)
    assert hub["benchmark"] == "hub_bench (1 worker)" and number(hub["delivered frames/s"]) > 0
    assert purchase["benchmark"] == "purchase_bench (1 worker, 8 connections)" and purchase["oversold"] == "0"
    assert show["benchmark"] == "locust show (10 s)" and show["oversold"] == "0"
    assert "FAILED" not in printed and "smoke run" in printed
    assert (tmp_path / "suite.md").read_text().startswith(printed.splitlines()[0])
