"""Every benchmark runs: each in smoke mode (real servers, tiny sizes, seconds), printing its table.

They run as people run them: `python -m loadtests.bench.<name> --smoke`, a subprocess from the
repository root, with a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.timing import seconds


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
    """hub_bench --smoke --baseline --stalled measures the hub (with a viewer that stops reading) and a bare broadcast()
    server and prints their CPU ratio."""
    printed = smoke("hub_bench", "--baseline", "--stalled")
    hub, bare = rows(printed)
    assert hub["server"] == "livecart hub, 1 worker(s)" and bare["server"] == "websockets.broadcast(), 1 process"
    for row in (hub, bare):
        assert row["viewers"] == "200" and row["closed by server"] == "0"
        assert number(row["delivered frames/s"]) > 0 and number(row["server µs per delivery"]) > 0
    assert re.search(r"^ratio hub / websockets\.broadcast\(\): \d+\.\d\dx ", printed, re.MULTILINE)
    assert re.search(r"^a viewer that stopped reading: ", printed, re.MULTILINE)


def test_idle_memory_bench_smoke_measures_the_server_beside_the_library_server() -> None:
    """idle_memory_bench --smoke holds idle viewers on the server and on a bare websockets server, none closed, and
    prints each one's memory per idle viewer and its ratio to the library server's."""
    printed = smoke("idle_memory_bench")
    ours, library = rows(printed)
    assert ours["server"] == "livecart (python -m server)" and library["server"] == "websockets library server (bare)"
    for row in (ours, library):
        assert row["viewers"] == "200" and row["closed"] == "0" and number(row["KiB per idle viewer"]) > 0
    assert library["/ library"] == "1.00x" and re.fullmatch(r"\d+\.\d\dx", ours["/ library"])


def test_reconnect_bench_smoke_brings_every_dropped_viewer_back_missing_nothing() -> None:
    """reconnect_bench --smoke drops 100 of 150 viewers while chat flows: every one comes back recovered, with no gap
    and no duplicate, and the table has its rate and the stayers' chat p99 (during a storm this short, maybe none)."""
    printed = smoke("reconnect_bench")
    [row] = rows(printed)
    assert row["code"] == "now" and row["viewers"] == "150" and row["dropped"] == "100"
    assert row["recovered"] == "100" and row["snapshots"] == "0" and row["failed"] == "0"
    assert row["gaps"] == "0" and row["duplicates"] == "0"
    assert number(row["reconnects/s"]) > 0 and number(row["stayers' p99 ms before"]) > 0
    assert re.search(r"^now: [\d,]+ reconnects/s \((meets|MISSES) the target of 2,000\)", printed, re.MULTILINE)


def test_purchase_bench_smoke_buys_without_overselling() -> None:
    """purchase_bench --smoke keeps buyers purchasing from a real sale and prints its table with 0 oversold."""
    printed = smoke("purchase_bench")
    [row] = rows(printed)
    assert row["workers"] == "1" and row["connections"] == "8"
    assert number(row["attempts/s"]) > 0 and number(row["holds granted"]) > 0
    assert row["oversold"] == "0"
    assert "answers: 201 held" in printed and "its own recount agrees" in printed


def test_access_bench_smoke_measures_this_code_beside_the_code_before(tmp_path: Path) -> None:
    """access_bench --smoke runs the storm on the code before accounts and limits (a git worktree of it) and on this
    code, and prints both rates and their ratio, with nothing oversold and no worktree left behind."""
    printed = smoke("access_bench", "--json", str(tmp_path / "access.json"), timeout=150)
    before, now = rows(printed)
    assert (before["code"], now["code"]) == ("before", "now") and before["now / before"] == "1.00x"
    for row in (before, now):
        assert number(row["median attempts/s"]) > 0
    assert re.search(r"now \d+\.\d\dx of before: (meets|MISSES) the target", printed)
    result = json.loads((tmp_path / "access.json").read_text())
    assert all(line["oversold"] == 0 for line in result["summary"])
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "livecart-before-" not in worktrees


def test_ledger_bench_smoke_measures_the_storm_with_and_without_the_backup(tmp_path: Path) -> None:
    """ledger_bench --smoke runs the purchase storm with the ledger consumer off, on, and on with DURABLE_ACK: nothing
    oversold, every change copied and every order projected into PostgreSQL (the log drained) when the consumer
    runs, none when it does not."""
    printed = smoke("ledger_bench", "--json", str(tmp_path / "ledger.json"), timeout=180)
    off, on, durable = rows(printed)
    names = [row["configuration"] for row in (off, on, durable)]
    assert names == ["consumer off", "consumer on", "consumer on + DURABLE_ACK"]
    for row in (off, on, durable):
        assert number(row["median attempts/s"]) > 0 and number(row["orders"]) > 0 and row["oversold"] == "0"
    assert off["vs consumer off"] == "1.00x" and off["in PostgreSQL"] == "0" and off["projected s"] == "n/a"
    for row in (on, durable):
        assert row["in PostgreSQL"] == row["orders"]
        assert 0 <= number(row["copied s"]) <= number(row["projected s"])
        assert number(row["lag p99 s (gauge, max)"]) >= 0
        assert 0 < number(row["lag ≤ 1 s %"]) <= 100
    assert re.search(r"^ratio consumer on / consumer off: \d+\.\d\dx ", printed, re.MULTILINE)
    runs = json.loads((tmp_path / "ledger.json").read_text())["runs"]
    for run in runs:
        assert run["orders"] >= run["holds_granted"] > 0 and run["sale_after"]["ok"]
        consumer = run["configuration"] != "consumer off"
        assert run["ledger_rows"] == (run["orders"] if consumer else 0)
        assert run["log_entries_left"] == (0 if consumer else run["orders"])


def test_referral_bench_smoke_commissions_every_order_shared_exactly_once(tmp_path: Path) -> None:
    """referral_bench --smoke runs the paying storm with the referral programme off and with every buyer bound to a
    sharer (and the sharers to an upline): both rates and their ratio, nothing oversold, no commission without the
    programme, and with it exactly one level-1 and one level-2 commission per paid order, right sharer and amount."""
    printed = smoke("referral_bench", "--json", str(tmp_path / "referral.json"), timeout=240)
    direct, shared = rows(printed)
    assert (direct["configuration"], shared["configuration"]) == ("direct", "shared")
    assert direct["shared / direct"] == "1.00x" and direct["commissions"] == "0" and direct["commissioned s"] == "n/a"
    for row in (direct, shared):
        assert number(row["median attempts/s"]) > 0 and number(row["paid/s"]) > 0 and number(row["paid orders"]) > 0
    assert number(shared["commissions"]) == 2 * number(shared["paid orders"])
    assert 0 <= number(shared["projected s"]) <= number(shared["commissioned s"])
    assert re.search(r"^ratio shared / direct: \d+\.\d\dx ", printed, re.MULTILINE)
    assert "has exactly one level-1 and one level-2 commission" in printed and "oversold units: 0" in printed
    result = json.loads((tmp_path / "referral.json").read_text())
    [run] = [run for run in result["runs"] if run["configuration"] == "shared"]
    assert run["exactly_once"] and run["buyer_visits"] == {"bound": result["buyers"]}
    assert run["paid_orders"] == run["sale_after"]["paid"] and run["missing"] == run["duplicates"] == 0


def test_group_bench_smoke_races_joins_and_no_group_passes_its_size(tmp_path: Path) -> None:
    """group_bench --smoke measures flash-sale purchases and group joins on the same server and prints their ratio:
    joins granted and refused, every invariant ok, no group over 3 members, every 201 join a member of its group."""
    printed = smoke("group_bench", "--json", str(tmp_path / "group.json"), timeout=180)
    purchase, join = rows(printed)
    assert (purchase["configuration"], join["configuration"]) == ("purchase", "join")
    assert purchase["join / purchase"] == "1.00x" and purchase["refused"] == "0"
    assert number(purchase["stock updates/s at a viewer"]) > 0
    for row in (purchase, join):
        assert number(row["median attempts/s"]) > 0 and number(row["201s"]) > 0 and number(row["p99 ms"]) > 0
    assert re.search(r"^ratio join / purchase: \d+\.\d\dx ", printed, re.MULTILINE)
    assert "FAILED" not in printed and "no group over 3 members" in printed
    result = json.loads((tmp_path / "group.json").read_text())
    [run] = [run for run in result["runs"] if run["configuration"] == "join"]
    assert run["invariant"]["ok"] and run["groups"] == run["groups_opened"] == result["groups"]
    assert run["largest_group"] == 3 and run["groups_over_size"] == 0  # the racers filled some groups, none past 3
    assert run["joined_members"] == run["joins_answered"] > 0
    assert run["answers"].get("409 group_full", 0) > 0  # more racers than slots: some lost


def test_service_bench_smoke_delivers_every_private_message_to_its_sockets_only(tmp_path: Path) -> None:
    """service_bench --smoke fills a room with guests, chatters, buyers and a host, times the chat alone and then
    beside questions and answers through the REST API: every message answered 201 reaches its sockets (0 lost),
    no service event reaches a guest, a chatter or another buyer (0 leaked), and both ratios are printed."""
    printed = smoke("service_bench", "--json", str(tmp_path / "service.json"), timeout=150)
    alone, private = rows(printed)
    assert (alone["phase"], private["phase"]) == ("chat alone", "chat + private messages")
    for row in (alone, private):
        assert row["lost"] == "0" and row["leaked"] == "0" and number(row["chat p99 ms"]) > 0
    assert alone["sent (201)"] == "n/a" and alone["question p99 ms"] == "n/a"
    assert number(private["sent (201)"]) > 0
    assert number(private["question p99 ms"]) > 0 and number(private["answer p99 ms"]) > 0
    assert re.search(r"^ratio private p99 / chat p99 \(same phase\): \d+\.\d\dx ", printed, re.MULTILINE)
    assert re.search(r"^ratio chat p99 with private messages / without: \d+\.\d\dx ", printed, re.MULTILINE)
    assert "FAILED" not in printed and "checks: 0 lost" in printed
    result = json.loads((tmp_path / "service.json").read_text())
    [phase] = [phase for phase in result["phases"] if phase["phase"] == "private"]
    assert phase["questions"] > 0 and phase["answers"] > 0 and phase["sent"] == phase["answered_201"]
    assert phase["leaked_to_guests"] == phase["leaked_to_buyers"] == 0 and phase["duplicates"] == 0
    assert result["guests_connected"] == 200 - 1 - 10 - 2  # the smoke's viewers less its host, buyers and chatters
    assert phase["leaked_to_chatters"] == 0


def test_auction_bench_smoke_loses_no_bid_and_shows_every_viewer_the_final_card(tmp_path: Path) -> None:
    """auction_bench --smoke fills a room, then bids on an auction and buys from a flash sale at the same offered
    rate, the room's chat timed beside both: every bid answered 201 is counted by the closed auction and recorded in
    PostgreSQL, the price is the highest of them, every viewer was shown the final card, and the ratios are printed."""
    printed = smoke("auction_bench", "--json", str(tmp_path / "auction.json"), timeout=150)
    purchase, bid = rows(printed)
    assert (purchase["phase"], bid["phase"]) == ("purchase (baseline)", "bid")
    for row in (purchase, bid):
        assert row["workers"] == "1" and number(row["requests/s"]) > 0 and number(row["accepted/s"]) > 0
        assert number(row["p99 ms"]) > 0 and row["chat p50 / p99 ms"] != "n/a"
    assert bid["lost"] == "0" and purchase["lost"] == "n/a" and purchase["on screen p50 / p99 ms (from send)"] == "n/a"
    assert bid["on screen p50 / p99 ms (from send)"] != "n/a" and number(bid["cards/s at a viewer"]) > 0
    for label in (
        "bid p99 / purchase p99",
        "bid requests/s / purchase requests/s",
        "on-screen p99 from send / chat p99",
    ):
        assert re.search(rf"^ratio {re.escape(label)}.*, 1 worker\(s\): \d+\.\d\dx ", printed, re.MULTILINE), label
    assert "FAILED" not in printed and "checks: 0 lost" in printed
    result = json.loads((tmp_path / "auction.json").read_text())
    [server] = result["servers"]
    [phase] = [phase for phase in server["phases"] if phase["phase"] == "bid"]
    final = phase["final"]
    assert final["state"] != "open" and final["bids"] == phase["accepted_all"] > 0
    assert final["price"] == phase["highest_amount"] == phase["recorded"]["highest"]
    assert phase["recorded"]["bids"] == final["bids"]
    assert phase["viewers_shown"] == {str(final["version"]): server["guests_connected"]}
    assert phase["viewers_behind"] == phase["unseen"] == 0 and phase["stale_samples"] > 0
    assert set(phase["answers_all"]) <= {"201 leading", "409 too_low"}


def test_archive_bench_smoke_leaves_no_keys_of_finished_sales(tmp_path: Path) -> None:
    """archive_bench --smoke finishes sales on a server that archives them and on one that never does: the archived
    sales leave no key in Redis, the others keep theirs, and PostgreSQL has every order of both."""
    printed = smoke("archive_bench", "--json", str(tmp_path / "archive.json"), timeout=180)
    archived_first, archived_last, kept_first, kept_last = rows(printed)
    for row, sales in ((archived_first, 3), (archived_last, 10), (kept_first, 3), (kept_last, 10)):
        assert number(row["finished sales"]) == sales and number(row["orders in PostgreSQL"]) == 2 * sales
        assert row["refused"] == "0" and number(row["Redis used_memory KiB"]) > 0
    assert archived_first["server"] == "archiving (grace 0)" and kept_first["server"] == "never archived (baseline)"
    assert archived_first["sale keys"] == archived_last["sale keys"] == "0"
    assert number(kept_first["sale keys"]) >= 3 and number(kept_last["sale keys"]) >= 10
    assert re.search(r"^ratio archiving \(grace 0\): used_memory after 10 / after 3 sales \d+\.\d\dx", printed, re.M)
    for reading in json.loads((tmp_path / "archive.json").read_text())["readings"]:
        sales = reading["finished_sales"]
        assert reading["unsettled"] == 0 and reading["orders_by_status"] == {"paid": sales, "expired": sales}


def test_relay_bench_smoke_measures_the_relay_and_stock_with_ratios() -> None:
    """relay_bench --smoke streams through this tree's relay and stock MediaRelay and prints the ratio (the run
    before a change, --before, is left out of the smoke: a CI clone may not have that commit)."""
    printed = smoke("relay_bench", timeout=180)
    ours, stock = rows(printed)
    assert (ours["relay"], ours["viewers"], ours["processes"]) == ("livecart relay", "2", "1")
    assert (stock["relay"], stock["viewers"]) == ("aiortc MediaRelay", "1")
    for row in (ours, stock):
        assert number(row["video fps median"]) > 0 and number(row["audio packets/s median"]) > 0
        assert row["decoded"] == "640x360"  # the one decoding viewer saw the publisher's picture
    assert re.search(r"^ratio stock MediaRelay / livecart relay: \d+\.\dx ", printed, re.MULTILINE)


def test_suite_smoke_runs_every_step(tmp_path: Path) -> None:
    """The suite's --smoke runs hub_bench, purchase_bench, a locust show, ledger_bench and archive_bench, and prints
    one table, nothing failed."""
    printed = smoke("suite", "--out", str(tmp_path), timeout=300)
    hub, purchase, show, *ledger, archived, kept = rows(printed)
    assert hub["benchmark"] == "hub_bench (1 worker)" and number(hub["delivered frames/s"]) > 0
    assert purchase["benchmark"] == "purchase_bench (1 worker, 8 connections)" and purchase["oversold"] == "0"
    assert show["benchmark"] == "locust show (10 s)" and show["oversold"] == "0"
    assert [row["benchmark"] for row in ledger] == [
        "ledger_bench, consumer off",
        "ledger_bench, consumer on",
        "ledger_bench, consumer on + DURABLE_ACK",
    ]
    assert all(row["oversold"] == "0" and number(row["purchase attempts/s"]) > 0 for row in ledger)
    assert archived["benchmark"] == "archive_bench, archiving (grace 0) (Redis after 10 / 3 sales)"
    assert kept["benchmark"] == "archive_bench, never archived (baseline) (Redis after 10 / 3 sales)"
    assert "FAILED" not in printed and "smoke run" in printed
    assert (tmp_path / "suite.md").read_text().startswith(printed.splitlines()[0])


def test_failover_bench_smoke_counts_lost_holds_and_repairs_them() -> None:
    """failover_bench --smoke: a Sentinel failover behind a partition with REDIS_WAIT_REPLICAS 0 and 1; WAIT 1 loses no
    acknowledged hold, and the invariant holds after the repair in both."""
    printed = smoke("failover_bench", timeout=180)
    unreplicated, replicated = rows(printed)
    assert (unreplicated["REDIS_WAIT_REPLICAS"], replicated["REDIS_WAIT_REPLICAS"]) == ("0", "1")
    assert replicated["acked lost by the failover"] == "0"
    assert int(unreplicated["acked lost by the failover"]) >= int(unreplicated["lost after repair"])
    for row in (unreplicated, replicated):
        assert (row["topology"], row["scenario"], row["invariant after repair"]) == ("sentinels", "partition", "ok")
        assert number(row["holds/s before the kill"]) > 0 and number(row["acked holds"]) > 0


def test_capacity_bench_smoke_checks_the_model_on_the_cluster() -> None:
    """capacity_bench --smoke runs one server process and then two on a local Redis Cluster under the hub bench's load:
    every viewer gets every durable event, and the scaled run's CPU is set beside the model's prediction."""
    printed = smoke("capacity_bench", timeout=180)
    calibration, scaled = rows(printed)
    assert (calibration["processes"], scaled["processes"]) == ("1", "2")
    assert number(scaled["viewers"]) == 2 * number(calibration["viewers"]) == 200
    assert calibration["durable lost"] == scaled["durable lost"] == "0"
    assert number(scaled["delivered frames/s"]) > 0 and number(scaled["measured / predicted"]) > 0


def test_hls_bench_smoke_measures_ll_hls_latency_beside_plain_hls() -> None:
    """hls_bench --smoke plays the real server's LL-HLS and plain HLS streams, decoding the publisher's time stamps:
    both measured, LL-HLS under 3 s and ahead of plain HLS."""
    printed = smoke("hls_bench", timeout=240)
    ll, plain = rows(printed)
    assert (ll["stream"], plain["stream"]) == ("LL-HLS", "plain HLS")
    for row in (ll, plain):
        assert number(row["pictures"]) > 0 and row["decoded"] == "320x240"
    assert number(ll["latency median s"]) < min(seconds(3), number(plain["latency median s"]))
    assert re.search(r"^ratio plain HLS / LL-HLS median latency: \d+\.\dx", printed, re.MULTILINE)
