"""The flash-sale invariants of a load-test run: what buyers were told (the ledger), checked against the store.

No I/O and no locust here: the locust listeners (report.py) fill a `Ledger` while the run goes,
read each sale's audit (`GET /api/merchants/{m}/sales/{id}/invariant`) and the merchant's orders
(`GET /api/merchants/{m}/orders.jsonl`) after it, and hand all three to `check()`. A sale passes when

- its initial quantity (as the host created it) = available + held + paid, and the store's own
  recount of orders and per-user units agrees with its counters;
- nothing is oversold: held + paid never exceeds the quantity, nor do the units of payments
  acknowledged to buyers;
- no user holds or has paid more than the per-user limit (in the store, and in what buyers were told);
- every order acknowledged to a buyer is in the store, for that user and quantity, and every payment
  acknowledged to a buyer is an order the store has as paid;
- a purchase retried with the same Idempotency-Key got back the same order, and a payment retried
  with the key that paid got back the paid order.

The orders are read from the export, which comes from the record (PostgreSQL), a moment behind
Redis (the ledger backup's lag): `record_behind` says whether it has caught up with the counters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ack:
    """An order the server acknowledged to a buyer: a hold (201/200 to a purchase) or a payment (200)."""

    order_id: str
    sale_id: str
    user_id: str
    quantity: int


@dataclass
class Ledger:
    """What one locust process (or, merged, the whole run) was told by the server."""

    sales: dict[str, int | None] = field(default_factory=dict)  # sale id -> initial quantity (None: not ours)
    holds: dict[str, Ack] = field(default_factory=dict)
    payments: dict[str, Ack] = field(default_factory=dict)
    refusals: Counter[str] = field(default_factory=Counter)
    replays: int = 0  # purchases and payments retried with the same Idempotency-Key
    replay_mismatches: list[str] = field(default_factory=list)

    def created(self, sale_id: str, quantity: int) -> None:
        self.sales[sale_id] = quantity

    def seen(self, sale_id: str) -> None:
        self.sales.setdefault(sale_id, None)

    def held(self, ack: Ack) -> None:
        self.seen(ack.sale_id)
        self.holds[ack.order_id] = ack

    def paid(self, ack: Ack) -> None:
        self.seen(ack.sale_id)
        self.payments[ack.order_id] = ack

    def clear(self) -> None:
        self.sales.clear()
        self.holds.clear()
        self.payments.clear()
        self.refusals.clear()
        self.replays = 0
        self.replay_mismatches.clear()

    def merge(self, other: Ledger) -> None:
        for sale_id, quantity in other.sales.items():
            if quantity is not None or sale_id not in self.sales:
                self.sales[sale_id] = quantity
        self.holds.update(other.holds)
        self.payments.update(other.payments)
        self.refusals.update(other.refusals)
        self.replays += other.replays
        self.replay_mismatches.extend(other.replay_mismatches)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (for locust's messages between processes, and the JSON report)."""
        return {
            "sales": [[sale_id, quantity] for sale_id, quantity in self.sales.items()],
            "holds": [_ack_row(ack) for ack in self.holds.values()],
            "payments": [_ack_row(ack) for ack in self.payments.values()],
            "refusals": dict(self.refusals),
            "replays": self.replays,
            "replay_mismatches": list(self.replay_mismatches),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ledger:
        return cls(
            sales={sale_id: quantity for sale_id, quantity in data["sales"]},
            holds={row[0]: Ack(*row) for row in data["holds"]},
            payments={row[0]: Ack(*row) for row in data["payments"]},
            refusals=Counter(data["refusals"]),
            replays=data["replays"],
            replay_mismatches=list(data["replay_mismatches"]),
        )


def _ack_row(ack: Ack) -> list[Any]:
    return [ack.order_id, ack.sale_id, ack.user_id, ack.quantity]


@dataclass
class SaleResult:
    """One sale's figures and what is wrong with it (nothing, when `ok`)."""

    sale_id: str
    initial: int | None
    quantity: int = 0
    available: int = 0
    held: int = 0
    paid: int = 0
    per_user_limit: int = 0
    max_user_units: int = 0
    oversold: int = 0
    acked_holds: int = 0
    acked_payments: int = 0
    missing: int = 0  # acknowledged orders or payments the store does not have as told
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    """Every sale's result, and problems that belong to no sale (a worker whose ledger never came)."""

    sales: list[SaleResult]
    problems: list[str] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)
    replays: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and all(sale.ok for sale in self.sales)

    @property
    def oversold(self) -> int:
        return sum(sale.oversold for sale in self.sales)

    def all_problems(self) -> list[str]:
        return [*self.problems, *(problem for sale in self.sales for problem in sale.problems)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "oversold": self.oversold,
            "acked_holds": sum(sale.acked_holds for sale in self.sales),
            "acked_payments": sum(sale.acked_payments for sale in self.sales),
            "refusals": self.refusals,
            "replays": self.replays,
            "problems": self.all_problems(),
            "sales": [
                {
                    "sale_id": sale.sale_id,
                    "initial": sale.initial,
                    "quantity": sale.quantity,
                    "available": sale.available,
                    "held": sale.held,
                    "paid": sale.paid,
                    "oversold": sale.oversold,
                    "max_user_units": sale.max_user_units,
                    "per_user_limit": sale.per_user_limit,
                    "acked_holds": sale.acked_holds,
                    "acked_payments": sale.acked_payments,
                    "missing": sale.missing,
                    "ok": sale.ok,
                }
                for sale in self.sales
            ],
        }

    def render(self) -> str:
        """The report as people read it: a table of sales, then every problem, then the verdict."""
        header = ("sale", "initial", "available", "held", "paid", "oversold", "max/user", "limit")
        header += ("acked holds", "acked paid", "missing")
        rows = [
            (
                sale.sale_id,
                "?" if sale.initial is None else str(sale.initial),
                str(sale.available),
                str(sale.held),
                str(sale.paid),
                str(sale.oversold),
                str(sale.max_user_units),
                str(sale.per_user_limit),
                str(sale.acked_holds),
                str(sale.acked_payments),
                str(sale.missing),
            )
            for sale in self.sales
        ]
        lines = [f"livecart invariant report: {f'{len(rows)} sale(s)' if rows else 'no sale'}"]
        if rows:
            widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
            for cells in [header, *rows]:
                lines.append("  " + "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)))
        if self.refusals:
            refused = ", ".join(f"{code} {count}" for code, count in sorted(self.refusals.items()))
            lines.append(f"  refused as expected: {refused}; idempotent retries: {self.replays}")
        lines += [f"  FAILED: {problem}" for problem in self.all_problems()]
        lines.append("invariants: OK" if self.ok else "invariants: FAILED")
        return "\n".join(lines)


def check(
    ledger: Ledger,
    audits: dict[str, dict[str, Any] | None],
    orders: list[dict[str, Any]],
    problems: list[str] | None = None,
) -> Report:
    """Check every sale of the ledger against its audit (None: the store does not know it) and the orders export."""
    by_id = {row["order_id"]: row for row in orders}
    rows_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in orders:
        rows_of[row["sale_id"]].append(row)
    holds_of: dict[str, list[Ack]] = defaultdict(list)
    for ack in ledger.holds.values():
        holds_of[ack.sale_id].append(ack)
    payments_of: dict[str, list[Ack]] = defaultdict(list)
    for ack in ledger.payments.values():
        payments_of[ack.sale_id].append(ack)
    results = [
        _check_sale(
            sale_id,
            ledger.sales[sale_id],
            audits.get(sale_id),
            rows_of[sale_id],
            holds_of[sale_id],
            payments_of[sale_id],
            by_id,
        )
        for sale_id in sorted(ledger.sales)
    ]
    report_problems = list(problems or [])
    report_problems += [
        f"a purchase or payment retried with the same Idempotency-Key {what}" for what in ledger.replay_mismatches
    ]
    return Report(results, report_problems, dict(ledger.refusals), ledger.replays)


def record_behind(audits: dict[str, dict[str, Any] | None], orders: list[dict[str, Any]]) -> list[str]:
    """Sales whose exported orders (the record) do not yet add up to their counters (Redis): the units of held and
    of paid orders against `held` and `paid`. Empty once the record has caught up."""
    held: Counter[str] = Counter()
    paid: Counter[str] = Counter()
    for row in orders:
        if row["status"] == "held":
            held[row["sale_id"]] += row["quantity"]
        elif row["status"] == "paid":
            paid[row["sale_id"]] += row["quantity"]
    return [
        f"{sale_id}: the record has {held[sale_id]} held and {paid[sale_id]} paid,"
        f" the counters {audit['held']} held and {audit['paid']} paid"
        for sale_id, audit in sorted(audits.items())
        if audit is not None and (held[sale_id], paid[sale_id]) != (audit["held"], audit["paid"])
    ]


def _check_sale(
    sale_id: str,
    initial: int | None,
    audit: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    holds: list[Ack],
    payments: list[Ack],
    by_id: dict[str, dict[str, Any]],
) -> SaleResult:
    result = SaleResult(sale_id, initial, acked_holds=len(holds), acked_payments=len(payments))
    problems = result.problems
    if audit is None:
        problems.append(f"{sale_id}: the store does not know this sale")
        result.missing = len(payments)
        return result
    result.quantity, result.available = audit["quantity"], audit["available"]
    result.held, result.paid = audit["held"], audit["paid"]
    result.per_user_limit, result.max_user_units = audit["per_user_limit"], audit["max_user_units"]
    total = result.available + result.held + result.paid
    if initial is not None and initial != total:
        problems.append(
            f"{sale_id}: initial {initial} != available {result.available} + held {result.held} + paid {result.paid}"
        )
    if result.quantity != total:
        problems.append(f"{sale_id}: quantity {result.quantity} != available + held + paid = {total}")
    if not audit.get("ok", False):
        problems.append(f"{sale_id}: the store's recount of orders and users disagrees with its counters: {audit}")

    live_units = sum(row["quantity"] for row in rows if row["status"] in ("held", "paid"))
    paid_told = sum(ack.quantity for ack in payments)
    limit = initial if initial is not None else result.quantity
    result.oversold = max(
        0, result.held + result.paid - limit, live_units - limit, paid_told - limit, -result.available
    )
    if result.oversold:
        problems.append(f"{sale_id}: {result.oversold} unit(s) oversold")

    per_user: Counter[str] = Counter()
    for row in rows:
        if row["status"] in ("held", "paid"):
            per_user[row["user_id"]] += row["quantity"]
    paid_per_user: Counter[str] = Counter()
    for ack in payments:
        paid_per_user[ack.user_id] += ack.quantity
    result.max_user_units = max(result.max_user_units, *per_user.values(), *paid_per_user.values(), 0)
    if result.max_user_units > result.per_user_limit:
        over = [
            user
            for user in {*per_user, *paid_per_user}
            if max(per_user[user], paid_per_user[user]) > result.per_user_limit
        ]
        problems.append(
            f"{sale_id}: {result.max_user_units} units for one user, over the limit of {result.per_user_limit}"
            f" ({', '.join(sorted(over)[:5]) or 'by the store count'})"
        )

    for ack in holds:
        row = by_id.get(ack.order_id)
        if row is None:
            result.missing += 1
            problems.append(f"order {ack.order_id} acknowledged to {ack.user_id} is not in the store")
        elif row["user_id"] != ack.user_id or row["quantity"] != ack.quantity:
            result.missing += 1
            problems.append(
                f"order {ack.order_id} acknowledged to {ack.user_id} for {ack.quantity} is in the store"
                f" for {row['user_id']} and {row['quantity']}"
            )
    for ack in payments:
        row = by_id.get(ack.order_id)
        status = None if row is None else row["status"]
        if status != "paid":
            result.missing += 1
            problems.append(
                f"payment of {ack.order_id} acknowledged to {ack.user_id} is {status or 'missing'} in the store"
            )
    return result
