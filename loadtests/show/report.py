"""After a run: gather every process's ledger, check the invariants against the store, print the report,
write it (with a summary of locust's figures) as JSON, and make locust exit 1 when an invariant fails.

Distributed runs: each worker sends its ledger to the master as a locust custom message when its
users stop (its `test_stop`, which locust runs before the worker tells the master it stopped), and
again when the master asks for it (`livecart.collect`) at the master's `test_stop`; asked, a worker
first stops its users, so nothing is acknowledged after it answers. A worker that does not answer
within COLLECT_SECONDS fails the report: orders it was told of cannot be checked.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import gevent
import requests
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from loadtests.show.invariants import Ack, Ledger, Report, check, record_behind
from loadtests.show.options import RESOLVED_SECONDS, Show
from loadtests.show.users import LEDGER, PURCHASE, LiveUser

log = logging.getLogger("livecart.loadtest")

LEDGER_MESSAGE = "livecart.ledger"  # worker -> master: {"ledger": Ledger.to_dict()}
COLLECT_MESSAGE = "livecart.collect"  # master -> worker: send your ledger now
COLLECT_SECONDS = 30.0
RECORD_SECONDS = 30.0  # how long the report waits for the record (PostgreSQL) to catch up with Redis


class _Run:
    """The master's (or the single process's) view of the current run."""

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}  # worker id -> its ledger
        self.report: Report | None = None
        self.started = self.stopped = 0.0
        self.peak_users = 0
        self.watcher: gevent.Greenlet | None = None


RUN = _Run()


def install(events: Any) -> None:
    """Register the listeners (called once by the locustfile)."""
    events.init.add_listener(on_init)
    events.test_start.add_listener(on_test_start)
    events.test_stop.add_listener(on_test_stop)
    events.quitting.add_listener(on_quitting)


def on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(COLLECT_MESSAGE, _on_collect, concurrent=True)
    elif isinstance(runner, MasterRunner):
        runner.register_message(LEDGER_MESSAGE, _on_ledger)


def on_test_start(environment: Any, **_: Any) -> None:
    LEDGER.clear()
    if isinstance(environment.runner, WorkerRunner):
        return
    RUN.ledgers.clear()
    RUN.report = None
    RUN.started = time.time()
    RUN.peak_users = 0
    if RUN.watcher is None:
        RUN.watcher = gevent.spawn(_watch_users, environment)
    options = environment.parsed_options
    if options is not None:  # workers do not get --run-time: hand them the show's length
        setattr(options, RESOLVED_SECONDS, 0.0)
        setattr(options, RESOLVED_SECONDS, Show.of(options).seconds)


def on_test_stop(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _send_ledger(runner)
        return
    RUN.stopped = time.time()
    ledger, problems = _gather(runner)
    RUN.report = verify(environment, ledger, problems)
    print(RUN.report.render(), flush=True)
    if not RUN.report.ok:
        environment.process_exit_code = 1


def on_quitting(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or RUN.report is None:
        return
    if not RUN.report.ok:
        environment.process_exit_code = 1
    path = Show.of(environment.parsed_options).report_json
    if path:
        document = {"invariants": RUN.report.to_dict(), "summary": summary(environment, RUN.report)}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document, indent=2) + "\n")


# --- gathering the ledgers ------------------------------------------------------------------


def _send_ledger(runner: Any) -> None:
    runner.send_message(LEDGER_MESSAGE, {"ledger": LEDGER.to_dict()})


def _on_collect(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: stop the users (nothing is acknowledged after this answer), then send the ledger."""
    environment.runner.stop()
    _send_ledger(environment.runner)


def _on_ledger(environment: Any, msg: Any, **_: Any) -> None:
    RUN.ledgers[msg.node_id] = Ledger.from_dict(msg.data["ledger"])


def _gather(runner: Any) -> tuple[Ledger, list[str]]:
    """The whole run's ledger, and a problem for each worker whose ledger never came."""
    merged = Ledger()
    merged.merge(LEDGER)
    problems: list[str] = []
    if isinstance(runner, MasterRunner):
        missing = {client.id for client in runner.clients.all if client.state == STATE_MISSING}
        problems += [f"worker {worker} went missing: its acknowledged orders cannot be checked" for worker in missing]
        waiting = {client.id for client in runner.clients.all} - missing - set(RUN.ledgers)
        for worker in waiting:
            runner.send_message(COLLECT_MESSAGE, {"nonce": secrets.token_hex(4)}, client_id=worker)
        deadline = time.monotonic() + COLLECT_SECONDS
        while waiting - set(RUN.ledgers) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        problems += [
            f"worker {worker} did not send its acknowledged orders: they cannot be checked"
            for worker in sorted(waiting - set(RUN.ledgers))
        ]
        for ledger in RUN.ledgers.values():
            merged.merge(ledger)
    return merged, problems


# --- checking against the store ---------------------------------------------------------------


def verify(environment: Any, ledger: Ledger, problems: list[str]) -> Report:
    """Read each sale's audit and the merchant's orders, and check the ledger against them.

    The orders come from the record (PostgreSQL), which the server's backup fills a moment after Redis:
    they are read again until their units add up to the counters (holds still expiring settle too),
    for at most RECORD_SECONDS; a record that never catches up is a problem of its own.
    """
    show = Show.of(environment.parsed_options)
    if show.tamper:
        sale_id = next(iter(ledger.sales), "s_0000000000")
        fake = Ack(f"{sale_id}.{'0' * 12}", sale_id, "tamper", 1)
        log.warning("--tamper-invariant: adding order %s, which the server never made (test only)", fake.order_id)
        ledger.held(fake)
    if not ledger.sales:
        return check(ledger, {}, [], problems)
    if not show.staff_token:
        return Report([], [*problems, "no --host-token or --admin-token: the store cannot be read to check the sales"])
    base = (environment.host or LiveUser.host).rstrip("/")
    headers = {"Authorization": f"Bearer {show.staff_token}"}
    deadline = time.monotonic() + RECORD_SECONDS
    while True:
        read: list[str] = []
        audits, orders = _read_store(base, show.merchant, headers, ledger, read)
        behind = [] if read else record_behind(audits, orders)
        if not behind or time.monotonic() >= deadline:
            break
        gevent.sleep(0.25)
    problems += read
    problems += [f"{what}, after {RECORD_SECONDS:g} s: the record did not catch up" for what in behind]
    return check(ledger, audits, orders, problems)


def _read_store(
    base: str, merchant: str, headers: dict[str, str], ledger: Ledger, problems: list[str]
) -> tuple[dict[str, dict[str, Any] | None], list[dict[str, Any]]]:
    """The audit of each of the ledger's sales and their exported orders; what could not be read goes to `problems`."""
    audits: dict[str, dict[str, Any] | None] = {}
    orders: list[dict[str, Any]] = []
    try:
        for sale_id in ledger.sales:
            url = f"{base}/api/merchants/{merchant}/sales/{sale_id}/invariant"
            response = requests.get(url, headers=headers, timeout=30)
            if response.status_code == 200:
                audits[sale_id] = response.json()
            elif response.status_code != 404:
                problems.append(f"could not read the invariant of {sale_id}: {response.status_code} {response.text}")
        url = f"{base}/api/merchants/{merchant}/orders.jsonl"
        with requests.get(url, headers=headers, timeout=120, stream=True) as response:
            if response.status_code == 200:
                rows = (json.loads(line) for line in response.iter_lines() if line.strip())
                orders = [row for row in rows if row["sale_id"] in ledger.sales]  # not the shop's other sales
            else:
                problems.append(f"could not export the orders: {response.status_code} {response.text}")
    except requests.RequestException as problem:
        problems.append(f"could not read the store: {problem}")
    return audits, orders


# --- the figures of the run ----------------------------------------------------------------------


def _watch_users(environment: Any) -> None:
    while True:
        RUN.peak_users = max(RUN.peak_users, environment.runner.user_count)
        gevent.sleep(0.5)


def summary(environment: Any, report: Report) -> dict[str, Any]:
    """The figures the suite's table shows, from locust's own statistics (merged from the workers)."""
    stats = environment.runner.stats
    pushes = StatsEntry(stats, "event *", "WS")
    for (name, method), entry in stats.entries.items():
        if method == "WS" and name.startswith("event "):
            pushes.extend(entry)
    frames = stats.entries.get(("frame batch", "WS"))
    purchases = stats.entries.get((PURCHASE, "POST"))
    return {
        "peak_users": RUN.peak_users,
        "seconds": round(RUN.stopped - RUN.started, 1),
        "frames_per_s": round(_rate(frames), 1),
        "events_pushed": pushes.num_requests,
        "push_p50_ms": pushes.get_response_time_percentile(0.5) if pushes.num_requests else None,
        "push_p99_ms": pushes.get_response_time_percentile(0.99) if pushes.num_requests else None,
        "purchase_attempts": purchases.num_requests if purchases else 0,
        "purchase_attempts_per_s": round(_rate(purchases), 1),
        "purchase_p99_ms": purchases.get_response_time_percentile(0.99) if purchases else None,
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        "oversold": report.oversold,
        "invariants_ok": report.ok,
    }


def _rate(entry: StatsEntry | None) -> float:
    """Requests per second over the seconds from the entry's first request to its last."""
    if entry is None or not entry.num_reqs_per_sec:
        return 0.0
    seconds = max(entry.num_reqs_per_sec) - min(entry.num_reqs_per_sec) + 1
    return entry.num_requests / seconds
