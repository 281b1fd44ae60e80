"""Property-based: random reserve / pay / expire / cancel / retry / end / back-up sequences on real Redis and
PostgreSQL keep every guarantee.

The machine calls the Lua-backed Python API (Sales, Checkout with the sandbox provider, the ledger
backup) directly and keeps a model of what each call must do. After every step: quantity =
available + held + paid, the counters match the model and a recount of the orders, nobody holds
more than the limit, and the gateway's book matches the orders: a paid order's authorization
captured, every other approved one voided, none left open, each movement on the record once.
After each backup pass the record (PostgreSQL) has every order exactly as Redis has it, and every
change of it once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

from server.sales.records import Refusal, SaleRefused, check_quantity
from server.store.embedded import EmbeddedRedis
from tests.sales.machine import CARDS, MOSTLY, USERS, SaleMachineBase, person

QUANTITY = 6
LIMIT = 3
HOLD_MS = 80


@dataclass
class Expected:
    user: str
    quantity: int
    status: str
    expires: int
    pay_key: str | None = None  # the key of the payment that paid it
    payment_ref: str | None = None  # its authorization


class SaleMachine(SaleMachineBase):
    def __init__(self) -> None:
        super().__init__(QUANTITY, LIMIT, HOLD_MS)
        self.keys: dict[tuple[str, str], str] = {}
        self.model: dict[str, Expected] = {}
        self.ended = False
        self.attempts = 0  # payment attempts: each gets a new key

    def units(self, user: str | None = None, status: str | None = None) -> int:
        return sum(
            order.quantity
            for order in self.model.values()
            if (user is None or order.user == user)
            and (order.status in ("held", "paid") if status is None else order.status == status)
        )

    def draw_order(self, data: st.DataObject) -> str:
        """One of the orders, by when it was made (order ids are random: replays must draw the same)."""
        return list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]

    def refusal(self, call: Coroutine[Any, Any, Any]) -> Refusal | None:
        try:
            self.run(call)
        except SaleRefused as problem:
            return problem.code
        return None

    # --- rules -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(("k1", "k2", "k3")), quantity=st.integers(-1, LIMIT + 1))
    def reserve(self, user: str, key: str, quantity: int) -> None:
        """Buy (or retry: a key already used by this user)."""
        earlier = self.keys.get((user, key))
        try:
            check_quantity(quantity)
            outcome = self.run(self.sales.reserve(self.sale_id, user, key, quantity))
        except SaleRefused as problem:
            if earlier is not None and quantity >= 1:
                assert problem.code is Refusal.IDEMPOTENCY_KEY and self.model[earlier].quantity != quantity
            elif quantity < 1:
                assert problem.code is Refusal.BAD_QUANTITY
            elif self.ended:
                assert problem.code is Refusal.ENDED
            elif self.units(user) + quantity > LIMIT:
                assert problem.code is Refusal.LIMIT_REACHED
            else:
                assert problem.code is Refusal.SOLD_OUT
                assert QUANTITY - self.units() < quantity
            return
        if earlier is not None:
            assert not outcome.created and outcome.order.id == earlier
            assert outcome.order.quantity == quantity
            return
        assert outcome.created and not self.ended
        assert self.units(user) + quantity <= LIMIT and self.units() + quantity <= QUANTITY
        assert outcome.order.hold_expires_at == outcome.now + HOLD_MS
        self.keys[(user, key)] = outcome.order.id
        self.model[outcome.order.id] = Expected(user, quantity, "held", outcome.order.hold_expires_at)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), good_card=MOSTLY, own=MOSTLY, retry=st.booleans())
    def pay(self, data: st.DataObject, good_card: bool, own: bool, retry: bool) -> None:
        """Pay an order (someone else's, sometimes) with a good or a declined card, with a new key or (`retry`, once
        it is paid) the key that paid it, as after a lost reply."""
        order_id = self.draw_order(data)
        expected = self.model[order_id]
        card = next(number for number, good in CARDS.items() if good is good_card)
        payer = expected.user if own else next(user for user in USERS if user != expected.user)
        if retry and expected.pay_key is not None:
            key = expected.pay_key
        else:
            self.attempts += 1
            key = f"pay-{self.attempts}"
        try:
            outcome = self.run(self.checkout.pay(order_id, person(payer), card, key, "127.0.0.1"))
        except SaleRefused as problem:
            if not own:
                assert problem.code is Refusal.NOT_YOUR_ORDER
            elif expected.status == "paid":
                assert problem.code is Refusal.ALREADY_PAID and key != expected.pay_key
            elif expected.status == "held" and problem.code is Refusal.HOLD_EXPIRED:
                assert self.run(self.now()) >= expected.expires
            elif expected.status == "held":
                assert problem.code is Refusal.PAYMENT_DECLINED and not CARDS[card]
            else:
                assert (
                    problem.code
                    is {"cancelled": Refusal.ORDER_CANCELLED, "expired": Refusal.HOLD_EXPIRED}[expected.status]
                )
            return
        assert own and outcome.order.status == "paid"
        if expected.status == "paid":  # the retry of the payment that paid it: the same order, nothing charged again
            assert key == expected.pay_key and outcome.order.payment_ref == expected.payment_ref
            return
        assert CARDS[card] and expected.status == "held" and outcome.now < expected.expires
        assert outcome.order.payment_key == key and outcome.order.payment_ref
        expected.status, expected.pay_key, expected.payment_ref = "paid", key, outcome.order.payment_ref

    @precondition(lambda self: self.model)
    @rule(data=st.data(), own=MOSTLY)
    def cancel(self, data: st.DataObject, own: bool) -> None:
        """Cancel an order (someone else's, sometimes)."""
        order_id = self.draw_order(data)
        expected = self.model[order_id]
        caller = expected.user if own else next(user for user in USERS if user != expected.user)
        code = self.refusal(self.checkout.cancel(order_id, person(caller)))
        if not own:
            assert code is Refusal.NOT_YOUR_ORDER
        elif expected.status in ("held", "cancelled"):
            assert code is None
            expected.status = "cancelled"
        else:
            assert code is {"paid": Refusal.ALREADY_PAID, "expired": Refusal.HOLD_EXPIRED}[expected.status]

    @rule(wait=st.booleans())
    def expire(self, wait: bool) -> None:
        """Time passes (beyond every hold, when `wait`); the clock releases what expired, each once."""
        held = [order.expires for order in self.model.values() if order.status == "held"]
        if wait and held:
            time.sleep(max(0, max(held) - self.run(self.now()) + 5) / 1000)
        # Twice: the second call releases none of what the first did, only a hold whose deadline fell in between.
        for _ in range(2):
            released = self.run(self.sales.release_expired(self.sale_id))
            assert released is not None
            due = [order for order in self.model.values() if order.status == "held" and order.expires <= released.now]
            assert released.count == len(due)
            for order in due:
                order.status = "expired"

    @precondition(lambda self: not self.ended and len(self.model) >= 4)
    @rule()
    def end(self) -> None:
        """The host ends the sale (once a few orders exist)."""
        self.run(self.sales.end(self.sale_id))
        self.ended = True

    @rule()
    def back_up(self) -> None:
        """The ledger backup runs a pass and the log is projected (waiting for a server's projection under way, on
        the suite's PostgreSQL): the record then has every order as Redis has it, each change once."""
        self.run(self.backup.drain())
        self.run(self.ledger.project_all())
        live = {order.id: order for order in self.run(self.sales.orders(self.sale_id))}
        recorded = {order.id: order for order in self.run(self.ledger.orders(self.sale_id))}
        assert recorded == live
        rows = self.run(
            self.db.pool.fetch("SELECT order_id, version FROM order_changes WHERE sale_id = $1", self.sale_id)
        )
        versions: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            versions[row["order_id"]].append(row["version"])
        assert {order_id: sorted(found) for order_id, found in versions.items()} == {
            order.id: list(range(1, order.version + 1)) for order in live.values()
        }

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def stock_adds_up(self) -> None:
        audit = self.run(self.sales.audit(self.sale_id))
        assert audit is not None and audit.ok, audit
        assert audit.quantity == QUANTITY == audit.available + audit.held + audit.paid
        assert audit.held == self.units(status="held")
        assert audit.paid == self.units(status="paid")
        assert audit.max_user_units <= LIMIT
        assert all(self.units(user) <= LIMIT for user in USERS)

    @invariant()
    def money_matches_the_orders(self) -> None:
        """The gateway's book and our payments rows, against the model: nothing charged but a paid order's
        authorization, nothing left open, each movement recorded once."""
        booked, kinds = self.run(self.gateway_book())
        captured = set()
        for row in booked:
            expected, state = self.model[row["reference"]], row["state"]
            recorded = sorted(kinds.pop(row["authorization_id"], []))
            assert state in ("captured", "voided", "declined"), row  # never left open
            if state == "captured":
                assert expected.status == "paid" and row["authorization_id"] == expected.payment_ref
                assert recorded == ["authorization", "capture"]
                captured.add(row["reference"])
            elif state == "voided":
                assert recorded == ["authorization", "void"]
            else:
                assert recorded == []
        assert not kinds  # no movement on the record that the gateway does not know
        assert captured == {order_id for order_id, expected in self.model.items() if expected.status == "paid"}


def test_random_sale_operations_keep_every_guarantee(tmp_path: Path, database_url: str) -> None:
    """Hypothesis drives reserve/pay/expire/cancel/retry/end/back-up on a real sale; every guarantee holds throughout.

    On a Redis of its own: the sale clock of the suite's running servers would expire holds behind the model's back
    (the sales' rows in the suite's PostgreSQL are this test's own: new ids, read by id).
    """
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        SaleMachine.redis_url = redis_server.url
        SaleMachine.database_url = database_url
        run_state_machine_as_test(
            SaleMachine,
            settings=settings(
                max_examples=60,
                stateful_step_count=40,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
