"""What the property-based sale machines share (tests/sales/test_store.py, test_group_store.py): one real sale on a
Redis of the test's own and the suite's PostgreSQL, driven through the Lua-backed Python API with the sandbox
provider, and the buyers, cards and clock they use."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from redis.asyncio import Redis

from server.access.addresses import Addresses
from server.access.limits import Limits
from server.access.tokens import Identity
from server.config import Settings
from server.ledger.audit import AuditLog
from server.ledger.client import Database, Record
from server.sales.backup import Backup
from server.sales.changes import SaleChanges
from server.sales.checkout import Checkout
from server.sales.groups import GroupTerms
from server.sales.ledger import SalesLedger
from server.sales.payments import SandboxProvider
from server.sales.records import Terms
from server.sales.refunds import Refunds
from server.sales.shipping import Shipping
from server.sales.store import Sales
from server.store.batcher import ScriptBatcher

USERS = ("alice", "bob", "carol")
CARDS = {"4242424242424242": True, "4000000000000002": False}
GOOD_CARD = "4242424242424242"
MOSTLY = st.sampled_from((True, True, True, False))  # own order / good card, most of the time
T = TypeVar("T")


def person(user_id: str) -> Identity:
    """A signed-in buyer with this id."""
    return Identity(user_id, "Buyer", f"ses_{user_id}", int(time.time()) + 3600, guest=False)


def sale_terms(quantity: int, per_user_limit: int, hold_ms: int, group: GroupTerms | None = None) -> Terms:
    """A sale (an offer, with `group`) of 50 a unit, open now for ten minutes."""
    return Terms(
        merchant_id="prop",
        room_id="prop",
        product={"id": "p", "title": "Thing", "image_url": "", "price": 100, "currency": "USD"},
        price=50,
        currency="USD",
        quantity=quantity,
        per_user_limit=per_user_limit,
        buyers="signed_in",
        starts_at=int(time.time() * 1000) - 1000,
        countdown_ms=0,
        duration_ms=600_000,
        hold_ms=hold_ms,
        group=group,
    )


class SaleMachineBase(RuleBasedStateMachine):
    """A fresh sale on a flushed Redis for each run: `sales`, `checkout` (payment limits lifted: every attempt goes
    through), `refunds`, `backup`, `ledger` and `db`; `run` awaits on the machine's own event loop."""

    redis_url: ClassVar[str]
    database_url: ClassVar[str]

    def __init__(self, quantity: int, per_user_limit: int, hold_ms: int, group: GroupTerms | None = None) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.redis: Redis = self.run(self._connect())
        self.run(self.redis.flushdb())  # a clean slate: the backup reads every sale's log in this Redis
        self.db = Database(self.database_url, pool_size=2)
        self.run(self.db.open())
        self.ledger = SalesLedger(self.db)
        self.sales = Sales(self.redis, ScriptBatcher(self.redis), SaleChanges(), self.ledger)
        self.provider = SandboxProvider(self.db)
        unlimited = (1_000_000, 1)  # the payment limits are tests/access's
        settings = Settings(
            limit_payments_order=unlimited, limit_payments_user=unlimited, limit_payments_address=unlimited
        )
        shipping = Shipping(self.db, Addresses(self.db))
        self.checkout = Checkout(self.sales, self.provider, Limits(self.redis), shipping, settings)
        self.refunds = Refunds(self.db, self.sales, self.provider, AuditLog(self.db))
        self.backup = Backup("property", self.sales, Settings())
        terms = sale_terms(quantity, per_user_limit, hold_ms, group)
        self.sale_id = self.run(self.sales.create(terms)).id

    async def _connect(self) -> Redis:
        return Redis.from_url(self.redis_url, decode_responses=True)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    async def now(self) -> int:
        """The Redis clock, ms."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def gateway_book(self) -> tuple[list[Record], dict[str, list[str]]]:
        """The sale's authorizations in the sandbox gateway's book, and the kinds of movement our payments rows have
        of each (authorization id -> kinds)."""
        booked = await self.db.pool.fetch(
            "SELECT reference, authorization_id, state FROM sandbox_authorizations WHERE reference LIKE $1",
            f"{self.sale_id}.%",
        )
        moves = await self.db.pool.fetch(
            "SELECT authorization_id, kind FROM payments WHERE order_id LIKE $1", f"{self.sale_id}.%"
        )
        kinds: dict[str, list[str]] = defaultdict(list)
        for move in moves:
            kinds[move["authorization_id"]].append(move["kind"])
        return booked, kinds

    def teardown(self) -> None:
        self.run(self.db.close())
        self.run(self.redis.aclose())
        self.runner.close()
