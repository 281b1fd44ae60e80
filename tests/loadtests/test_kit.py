"""The load-test kit: short headless locust shows against a real server, the invariant checker, the suite's table.

Locust runs as a subprocess (it monkey-patches the standard library with gevent, which must not
happen inside pytest); these tests never import locust or the modules that use it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtests.bench.suite import COLUMNS, Step, table
from loadtests.show.invariants import Ack, Ledger, check, record_behind
from loadtests.show.plan import ShowPlan
from tests.conftest import ROOT, ServerProcess, Shop, free_port

LOCUSTFILE = "loadtests/show/locustfile.py"  # as the docs run it: from the repository root


def show_options(server: ServerProcess, shop: Shop, out: Path, seconds: int) -> list[str]:
    """A tiny show: 12 users, a sale of 10 units (2 per buyer, 2-second holds)."""
    return [
        *("--headless", "--only-summary", "--users", "12", "--spawn-rate", "12", "--run-time", f"{seconds}s"),
        *("--host", server.base_url, "--host-token", shop.host),
        *("--sale-quantity", "10", "--per-user-limit", "2", "--hold-seconds", "2"),
        *("--report-json", str(out / "report.json")),
    ]


def run_locust(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run locust from the repository root, as the docs do."""
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_headless_show_reports_invariants_holding(server: ServerProcess, shop: Shop, tmp_path: Path) -> None:
    """A headless show (room and merchant from the environment) exits 0 with a report, CSV and HTML of pushed events."""
    done = run_locust(
        [
            *show_options(server, shop, tmp_path, 10),
            "--csv",
            str(tmp_path / "show"),
            "--html",
            str(tmp_path / "r.html"),
        ],
        env={"LIVECART_ROOM": shop.room_id, "LIVECART_MERCHANT": shop.merchant_id},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "invariants: OK" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    invariants = report["invariants"]
    assert invariants["ok"] and invariants["problems"] == []
    assert invariants["oversold"] == 0
    [sale] = invariants["sales"]
    assert sale["initial"] == 10 == sale["available"] + sale["held"] + sale["paid"]
    assert sale["acked_holds"] > 0
    assert report["summary"]["peak_users"] == 12
    assert report["summary"]["push_p99_ms"] is not None
    with open(tmp_path / "show_stats.csv") as handle:
        names = {(row["Type"], row["Name"]) for row in csv.DictReader(handle)}
    assert ("WS", "frame batch") in names and ("WS", "event sale.started") in names
    assert ("POST", "POST /api/sales/[id]/purchases") in names
    assert "event sale.started" in (tmp_path / "r.html").read_text()


def test_distributed_tampered_show_exits_non_zero(server: ServerProcess, shop: Shop, tmp_path: Path) -> None:
    """With --tamper-invariant a master-and-worker show fails on the fabricated order alone, and exits 1."""
    port = str(free_port())
    worker_args = ["--worker", "--master-host", "127.0.0.1", "--master-port", port]
    worker = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(ROOT / LOCUSTFILE), *worker_args],
        cwd=tmp_path,  # a load machine runs it from elsewhere, with the repository on PYTHONPATH (docs/loadtests.md)
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        master = [*show_options(server, shop, tmp_path, 10), "--merchant", shop.merchant_id, "--room", shop.room_id]
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--expect-workers", "1"]
        done = run_locust([*master, "--tamper-invariant"], env={})
    finally:
        worker.kill()
        worker.wait()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "invariants: FAILED" in done.stdout
    invariants = json.loads((tmp_path / "report.json").read_text())["invariants"]
    [problem] = invariants["problems"]  # the worker's real acknowledgements all check out
    assert "is not in the store" in problem and ".000000000000" in problem
    assert invariants["acked_holds"] > 1  # the worker's holds reached the master, plus the fabricated one


# --- the checker, on made-up figures ---------------------------------------------------------------

SALE = "s_0123456789"


def audit(**changes: Any) -> dict[str, Any]:
    figures = {"quantity": 10, "available": 5, "held": 2, "paid": 3, "per_user_limit": 2, "max_user_units": 2}
    return {**figures, "ok": True, **changes}


def row(order_id: str, user_id: str, quantity: int, status: str) -> dict[str, Any]:
    return {"order_id": order_id, "sale_id": SALE, "user_id": user_id, "quantity": quantity, "status": status}


def ledger(**acks: list[Ack]) -> Ledger:
    result = Ledger()
    result.created(SALE, 10)
    for ack in acks.get("holds", []):
        result.held(ack)
    for ack in acks.get("payments", []):
        result.paid(ack)
    return result


ORDERS = [row(f"{SALE}.a", "u1", 2, "paid"), row(f"{SALE}.b", "u2", 1, "paid"), row(f"{SALE}.c", "u3", 2, "held")]
HOLDS = [Ack(f"{SALE}.a", SALE, "u1", 2), Ack(f"{SALE}.b", SALE, "u2", 1), Ack(f"{SALE}.c", SALE, "u3", 2)]


def test_checker_passes_a_consistent_sale() -> None:
    """Counters that add up, every acknowledgement in the store, nobody over the limit: ok."""
    report = check(ledger(holds=HOLDS, payments=HOLDS[:2]), {SALE: audit()}, ORDERS)
    assert report.ok, report.all_problems()
    assert "invariants: OK" in report.render()


def test_checker_fails_counters_that_do_not_add_up() -> None:
    """initial != available + held + paid fails, as does the store's own recount."""
    report = check(ledger(), {SALE: audit(available=6, ok=False)}, [])
    assert not report.ok
    assert any("initial 10 != available 6" in problem for problem in report.all_problems())
    assert any("recount" in problem for problem in report.all_problems())


def test_checker_counts_oversold_units() -> None:
    """Payments acknowledged beyond the initial quantity are oversold."""
    payments = [Ack(f"{SALE}.{n}", SALE, f"u{n}", 1) for n in range(11)]
    orders = [row(ack.order_id, ack.user_id, 1, "paid") for ack in payments]
    report = check(ledger(payments=payments), {SALE: audit(per_user_limit=1, max_user_units=1)}, orders)
    assert report.oversold == 1 and not report.ok


def test_checker_fails_a_user_over_the_limit() -> None:
    """A user with held-or-paid units over the per-user limit in the store fails."""
    orders = [*ORDERS, row(f"{SALE}.d", "u1", 1, "held")]
    report = check(ledger(), {SALE: audit()}, orders)
    assert any("over the limit of 2 (u1)" in problem for problem in report.all_problems())


def test_checker_fails_acknowledgements_the_store_lacks() -> None:
    """A hold missing from the store and a payment the store has as expired both fail."""
    orders = [row(f"{SALE}.a", "u1", 2, "expired")]
    report = check(ledger(holds=[HOLDS[1]], payments=[HOLDS[0]]), {SALE: audit()}, orders)
    problems = report.all_problems()
    assert any(f"order {SALE}.b acknowledged to u2 is not in the store" in problem for problem in problems)
    assert any(f"payment of {SALE}.a acknowledged to u1 is expired" in problem for problem in problems)
    assert report.sales[0].missing == 2


def test_checker_fails_an_unknown_sale_and_an_idempotency_mismatch() -> None:
    """A sale the store does not know, a retried purchase that got another order, and a retried payment that was
    not answered with the paid order all fail."""
    told = ledger()
    told.replay_mismatches += ["returned x after y", "answered 409 already_paid after paying z"]
    report = check(told, {}, [])
    assert any("does not know this sale" in problem for problem in report.all_problems())
    assert any("Idempotency-Key returned x after y" in problem for problem in report.all_problems())
    assert any("Idempotency-Key answered 409 already_paid after paying z" in problem for problem in report.problems)


def test_record_behind_until_the_exported_orders_add_up_to_the_counters() -> None:
    """The export (the record) lags Redis: until its held and paid units match the counters, the sale is behind."""
    audits = {SALE: audit(), "s_9999999999": None}  # held 2, paid 3; a sale the store does not know is not behind
    assert record_behind(audits, ORDERS) == []
    not_paid_yet = [ORDERS[0], {**ORDERS[1], "status": "held"}, ORDERS[2]]
    assert record_behind(audits, not_paid_yet) == [
        f"{SALE}: the record has 3 held and 2 paid, the counters 2 held and 3 paid"
    ]
    assert record_behind(audits, ORDERS[:2]) == [
        f"{SALE}: the record has 0 held and 3 paid, the counters 2 held and 3 paid"
    ]


def test_ledger_travels_between_processes_intact() -> None:
    """A ledger survives to_dict/from_dict (locust's messages), and merging keeps every acknowledgement."""
    first = ledger(holds=HOLDS[:1])
    first.refusals["sold_out"] += 2
    seen = Ledger()  # a process whose buyers only saw the sale: it does not know the initial quantity
    for ack in HOLDS[1:]:
        seen.held(ack)
    seen.paid(HOLDS[0])
    second = Ledger.from_dict(json.loads(json.dumps(seen.to_dict())))
    assert second.sales == {SALE: None}
    first.merge(second)
    assert set(first.holds) == {ack.order_id for ack in HOLDS}
    assert first.payments == {HOLDS[0].order_id: HOLDS[0]}
    assert first.sales == {SALE: 10} and first.refusals["sold_out"] == 2


def test_show_plan_runs_sales_back_to_back_inside_the_sale_window() -> None:
    """Sales are announced before they open, never overlap, and fit between the buyer spike and their leaving."""
    for seconds, count in ((12, 1), (300, 1), (300, 3), (3600, 5)):
        plan = ShowPlan(seconds, count)
        slots = plan.slots()
        assert len(slots) == count
        assert slots[0].opens == plan.sale_opens and slots[-1].ends == pytest.approx(plan.sale_ends)
        assert plan.sale_ends < plan.buyers_leave < plan.drain < plan.seconds
        for slot, following in zip(slots, [*slots[1:], None], strict=True):
            assert 0 <= slot.announce < slot.opens < slot.ends
            assert slot.opens - slot.announce <= 10
            if following is not None:
                assert slot.ends < following.opens and slot.opens <= following.announce


def test_suite_table_marks_missing_figures_and_failures() -> None:
    """The suite's markdown table has every column, n/a where a benchmark has no figure, and flags failures."""
    rendered = table([Step("hub_bench", {"viewers": 2000, "p99 push ms": 99.8}, True), Step("locust", {}, False)])
    header, rule, hub, failed = rendered.splitlines()
    assert header.count("|") == rule.count("|") == hub.count("|") == len(COLUMNS) + 1
    assert "| hub_bench | 2,000 | n/a | n/a | 99.8 |" in hub
    assert "**FAILED**" in failed
