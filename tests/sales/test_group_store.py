"""Property-based: random open / join / pay / cancel / expire / fail / refund / back-up sequences on a real group-buy
offer (Redis and PostgreSQL) keep every guarantee.

The machine calls the Lua-backed Python API (Sales, Checkout and Refunds with the sandbox provider, the ledger
backup) directly. After every step, read from Redis alone: quantity = available + reserved + held + paid, the
reserve equals the empty slots of the forming groups, no group has more than N members, nobody passes the limit or
is in two forming groups, each group's members' orders agree with its state (a filled group's are all paid, a
failed group's none held or paid), the open groups are exactly those on the board, and the gateway has captured
exactly the paid orders, and refunded (or voided) exactly the refunds made, each once. After each backup pass the
record has every order and every group as Redis has them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test
from redis.asyncio import Redis

from server import keys
from server.ledger.client import Database
from server.sales import store as store_module
from server.sales.changes import SaleChanges
from server.sales.groups import FORMING, Group, GroupTerms
from server.sales.ledger import SalesLedger
from server.sales.records import Order, SaleRefused
from server.sales.store import Sales
from server.store.batcher import ScriptBatcher
from server.store.embedded import EmbeddedRedis
from tests.sales.machine import CARDS, GOOD_CARD, MOSTLY, USERS, SaleMachineBase, person, sale_terms

QUANTITY = 7
SIZE = 3
LIMIT = 2
HOLD_MS = 150
WINDOW_MS = 300


class GroupMachine(SaleMachineBase):
    def __init__(self) -> None:
        super().__init__(QUANTITY, LIMIT, HOLD_MS, GroupTerms(SIZE, WINDOW_MS, leader_price=40))
        self.group_ids: list[str] = []
        self.order_ids: list[str] = []
        self.keys: dict[tuple[str, str], str] = {}  # (user, key) -> order id
        self.refunded: set[str] = set()  # orders whose refund was made
        self.attempts = 0

    def groups(self) -> list[Group]:
        return self.run(self.sales.groups(self.sale_id))

    def orders(self) -> dict[str, Order]:
        return {order.id: order for order in self.run(self.sales.orders(self.sale_id))}

    # --- rules -----------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), key=st.sampled_from(("k1", "k2", "k3")), data=st.data())
    def reserve(self, user: str, key: str, data: st.DataObject) -> None:
        """Open a group, or join one of those made so far (or retry a key used before)."""
        group_id = None
        if self.group_ids and data.draw(MOSTLY):  # mostly the newest groups: those likely still open
            group_id = self.group_ids[-1 - data.draw(st.integers(0, len(self.group_ids) - 1).filter(lambda n: n < 3))]
        earlier = self.keys.get((user, key))
        try:
            outcome = self.run(self.sales.reserve_group(self.sale_id, user, user.title(), key, group_id))
        except SaleRefused:
            return  # why is checked by the invariants: a refusal changes nothing
        if earlier is not None:
            assert not outcome.created and outcome.order.id == earlier
            return
        assert outcome.created and outcome.order.group_id is not None
        self.keys[(user, key)] = outcome.order.id
        self.order_ids.append(outcome.order.id)
        if group_id is None:
            assert outcome.order.price == 40  # the leader's price
            self.group_ids.append(outcome.order.group_id)
        else:
            assert outcome.order.group_id == group_id and outcome.order.price == 50

    @rule(leader=st.sampled_from(USERS))
    def form(self, leader: str) -> None:
        """A leader opens a group and pays, and the others join it and pay at once (each step may be refused: a
        buyer in another group, past the limit, stock short)."""
        self.attempts += 1
        try:
            opened = self.run(self.sales.reserve_group(self.sale_id, leader, "Lead", f"f{self.attempts}"))
        except SaleRefused:
            return
        assert opened.order.group_id is not None
        self.group_ids.append(opened.order.group_id)
        self.order_ids.append(opened.order.id)
        for user in [leader, *(other for other in USERS if other != leader)]:
            self.attempts += 1
            try:
                if user != leader:
                    joined = self.run(
                        self.sales.reserve_group(self.sale_id, user, "Fan", f"f{self.attempts}", opened.order.group_id)
                    )
                    self.order_ids.append(joined.order.id)
                order_id = opened.order.id if user == leader else joined.order.id
                self.run(self.checkout.pay(order_id, person(user), GOOD_CARD, f"p{self.attempts}", "::1"))
            except SaleRefused:
                continue

    @precondition(lambda self: self.order_ids)
    @rule(data=st.data(), good_card=MOSTLY)
    def pay(self, data: st.DataObject, good_card: bool) -> None:
        """A member pays their order, mostly a held one (a declined card, sometimes)."""
        orders = self.orders()
        held = [order_id for order_id in self.order_ids if orders[order_id].status == "held"]
        choices = held if held and data.draw(MOSTLY) else self.order_ids
        order = orders[choices[data.draw(st.integers(0, len(choices) - 1))]]
        order_id = order.id
        card = next(number for number, good in CARDS.items() if good is good_card)
        self.attempts += 1
        try:
            outcome = self.run(self.checkout.pay(order_id, person(order.user_id), card, f"p{self.attempts}", "::1"))
        except SaleRefused:
            return
        assert good_card and order.status == "held" and outcome.order.status == "paid"

    @precondition(lambda self: self.order_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """A member gives a held order up (refused for a paid one)."""
        order_id = self.order_ids[data.draw(st.integers(0, len(self.order_ids) - 1))]
        order = self.orders()[order_id]
        try:
            self.run(self.sales.cancel(order_id, order.user_id))
        except SaleRefused:
            assert order.status not in ("held", "cancelled")

    @rule(wait=st.sampled_from((0, HOLD_MS, WINDOW_MS)))
    def clock(self, wait: int) -> None:
        """Time passes; the sale clock releases expired holds, fails groups whose window passed and makes the refunds
        it claimed."""
        time.sleep(wait / 1000)
        self.run(self.sales.release_expired(self.sale_id))
        ticked = self.run(self.sales.clock_groups(self.sale_id, 100, 60_000))
        assert ticked is not None
        for order_id in ticked.refunds:
            self.run(self.refunds.refund_failed_group(order_id))
            self.run(self.sales.refund_done(order_id))
            self.refunded.add(order_id)

    @rule()
    def back_up(self) -> None:
        """The backup copies the log and it is projected: the record has every order and group as Redis has them."""
        self.run(self.backup.drain())
        self.run(self.ledger.project_all())
        assert {order.id: order for order in self.run(self.ledger.orders(self.sale_id))} == self.orders()
        recorded = {group.id: group for group in self.run(self.ledger.groups(self.sale_id))}
        assert recorded == {group.id: group for group in self.groups()}

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def stock_and_slots_add_up(self) -> None:
        audit = self.run(self.sales.audit(self.sale_id))
        assert audit is not None and audit.ok, audit
        assert audit.quantity == QUANTITY and audit.max_group_members <= SIZE and audit.max_user_units <= LIMIT

    @invariant()
    def groups_agree_with_their_orders(self) -> None:
        orders = self.orders()
        members = self.run(self.redis.hgetall(keys.sale_members(self.sale_id)))
        board = set(self.run(self.redis.zrange(keys.sale_board(self.sale_id), 0, -1)))
        deadlines = set(self.run(self.redis.zrange(keys.sale_open_groups(self.sale_id), 0, -1)))
        forming_of: dict[str, set[str]] = defaultdict(set)
        for group in self.groups():
            statuses = [orders[member.order_id].status for member in group.members]
            assert len(group.members) <= SIZE
            assert [member.paid for member in group.members] == [status == "paid" for status in statuses] or (
                group.state == "failed"
            )
            if group.state in FORMING:
                assert set(statuses) <= {"held", "paid"}
                assert group.members[0].leader and group.members[0].user_id == group.leader
                for member in group.members:
                    forming_of[member.user_id].add(group.id)
            if group.state == "pending":
                assert statuses == ["held"]
            if group.state == "filled":
                assert statuses == ["paid"] * SIZE
            if group.state == "failed":
                assert not {"held", "paid"} & set(statuses)
            assert (group.id in board) == (group.id in deadlines) == (group.state == "open")
        assert all(len(found) == 1 for found in forming_of.values())  # one forming group at a time
        assert members == {user: next(iter(found)) for user, found in forming_of.items()}
        for order in orders.values():  # every order is a member of its group, but those who left
            group = next(group for group in self.groups() if group.id == order.group_id)
            inside = any(member.order_id == order.id for member in group.members)
            assert inside or order.status in ("expired", "cancelled")

    @invariant()
    def money_matches_the_orders(self) -> None:
        """Captured: exactly the paid orders (and the refunded ones not yet refunded); refunded or voided: exactly the
        refunds made; nothing left open; each movement recorded once."""
        orders = self.orders()
        booked, kinds = self.run(self.gateway_book())
        for row in booked:
            order, state = orders[row["reference"]], row["state"]
            recorded = sorted(kinds.pop(row["authorization_id"], []))
            mine = order.payment_ref == row["authorization_id"]
            if state == "captured":
                assert mine and (
                    order.status == "paid" or (order.status == "refunded" and order.id not in self.refunded)
                )
                assert recorded == ["authorization", "capture"]
            elif state == "refunded":
                assert mine and order.status == "refunded" and order.id in self.refunded
                assert recorded == ["authorization", "capture", "refund"]
            elif state == "voided":
                assert recorded == ["authorization", "void"]
            else:
                assert state == "declined" and recorded == []
        assert not kinds


def test_random_group_operations_keep_every_guarantee(tmp_path: Path, database_url: str) -> None:
    """Hypothesis drives open/join/pay/cancel/expire/fail/refund/back-up on a real offer; every guarantee holds.

    On a Redis of its own, so no running server's clock moves the offer behind the machine's back."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        GroupMachine.redis_url = redis_server.url
        GroupMachine.database_url = database_url
        run_state_machine_as_test(
            GroupMachine,
            settings=settings(
                max_examples=30,
                stateful_step_count=40,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


@pytest.mark.anyio
async def test_an_id_already_in_use_is_never_overwritten(
    redis_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Order and group ids are random: when one drawn is already in use (a collision, forced here), the script
    refuses it (`taken`, nothing moved) and another is drawn, so no order or group is ever overwritten (the
    benchmark's 30,000 groups met a 40-bit group id twice once)."""
    orders = iter(["a" * 12, "a" * 12, "b" * 12, "c" * 12, "c" * 12, "d" * 12])
    groups = iter(["a" * 12, "a" * 12, "b" * 12])
    monkeypatch.setattr(store_module, "new_order_id", lambda sale_id: f"{sale_id}.{next(orders)}")
    monkeypatch.setattr(store_module, "new_group_id", lambda sale_id: f"{sale_id}.g{next(groups)}")
    redis = Redis.from_url(redis_url, decode_responses=True)
    db = Database(database_url, pool_size=2)
    await db.open()
    try:
        sales = Sales(redis, ScriptBatcher(redis), SaleChanges(), SalesLedger(db))
        sale = await sales.create(sale_terms(9, 1, 60_000, GroupTerms(3, 60_000)))
        first = await sales.reserve_group(sale.id, "ana", "Ana", "k")
        second = await sales.reserve_group(sale.id, "bo", "Bo", "k")
        assert (first.order.id, second.order.id) == (f"{sale.id}.{'a' * 12}", f"{sale.id}.{'b' * 12}")
        assert (first.order.group_id, second.order.group_id) == (f"{sale.id}.g{'a' * 12}", f"{sale.id}.g{'b' * 12}")
        assert {group.leader for group in await sales.groups(sale.id)} == {"ana", "bo"}
        audit = await sales.audit(sale.id)
        assert audit is not None and audit.ok and audit.reserved == audit.slots_empty == 4
        flash = await sales.create(sale_terms(9, 1, 60_000))
        bought = [(await sales.reserve(flash.id, user, "k", 1)).order.id for user in ("cy", "di")]
        assert bought == [f"{flash.id}.{'c' * 12}", f"{flash.id}.{'d' * 12}"]
        audit = await sales.audit(flash.id)
        assert audit is not None and audit.ok and audit.held == 2
    finally:
        await db.close()
        await redis.aclose()
