"""Flash sales in Redis: create, reserve units as expiring holds, pay, cancel, release expired holds, end, audit,
and, once a sale is over and backed up, archive (its keys leave Redis; it is read from PostgreSQL after).

Contract: every change of a sale's stock or orders is one Lua script (server/sales/lua/sale_*.lua) on the
sale's own keys, which share one {hash tag}. The script checks the sale window against the Redis
clock, the stock, the user's limit and the order's state, then moves the units, writes the order
and appends the change to the sale's order log, all at once or not at all. So at every moment

    quantity == available + held + paid

and a user's held-or-paid units never pass the sale's per-user limit. A purchase carries the
buyer's idempotency key: the same key returns the same order and moves stock once. Refusals
(SaleRefused) change nothing. Every order change is also an entry of the sale's order log, which
server.sales.backup copies to PostgreSQL (server.sales.ledger) and then deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server import keys
from server.protocol import now_ms
from server.sales.changes import SaleChanges
from server.sales.groups import BOARD_SIZE, FORMING, Group, GroupTerms, new_group_id, sale_of_group
from server.sales.ledger import SalesLedger
from server.sales.records import (
    MAX_DURATION,
    MAX_QUANTITY,
    Audit,
    Order,
    Outcome,
    Refusal,
    Released,
    Sale,
    SaleRefused,
    Stock,
    Terms,
    adjust_refused,
    is_sale_id,
    new_order_id,
    refusal,
    refused,
    sale_of_order,
)
from server.store import scripts
from server.store.batcher import ScriptBatcher

RELEASE_BATCH = 500  # holds one release call frees at most
LOG_GROUP = "ledger"  # the consumer group of every sale's order log (made by sale_create.lua)
READ_SALES = 1000  # order logs read in one XREADGROUP
_TERMS_CACHE = 4096  # sales whose terms a process keeps


def _sale_keys(sale_id: str) -> dict[str, str]:
    return {
        "sale": keys.sale(sale_id),
        "orders": keys.sale_orders(sale_id),
        "users": keys.sale_users(sale_id),
        "idem": keys.sale_keys(sale_id),
        "holds": keys.sale_holds(sale_id),
        "log": keys.sale_log(sale_id),
        "groups": keys.sale_groups(sale_id),
        "members": keys.sale_members(sale_id),
        "open": keys.sale_open_groups(sale_id),
        "board": keys.sale_board(sale_id),
        "refunds": keys.sale_refunds(sale_id),
    }


def _group_keys(k: dict[str, str]) -> list[str]:
    """The keys group.lua works on, in the order the scripts take them."""
    return [k["groups"], k["members"], k["open"], k["board"]]


def _terms_fields(terms: Terms | Sale) -> dict[str, str | int]:
    """The sale hash's fields for what a host set (sale_create.lua adds the counters and times; a group offer's
    counters start here)."""
    kind: dict[str, str | int] = {}  # a group-buy offer's, or an auction's award sale's
    if terms.group is not None:
        kind = {"group": terms.group.to_json(), "reserved": 0, "forming": 0, "filled": 0, "failed": 0}
    if terms.auction_id is not None and terms.winner is not None:
        kind = {"auction_id": terms.auction_id, "winner": terms.winner}
    return {
        **kind,
        "merchant_id": terms.merchant_id,
        "room_id": terms.room_id,
        "product": orjson.dumps(terms.product).decode(),
        "price": terms.price,
        "currency": terms.currency,
        "per_user_limit": terms.per_user_limit,
        "buyers": terms.buyers,
        "hold_ms": terms.hold_ms,
    }


@dataclass(frozen=True)
class GroupClock:
    """What a group clock call did, and what the sale clock needs to know next."""

    failed: int  # groups failed
    refunds: list[str]  # refunded orders claimed: their money is to go back now
    next_window_end: int | None
    next_refund: int | None  # when a claimed refund is due again (its claimer died), ms
    now: int


LogReply = list[tuple[str, list[tuple[str, dict[str, str] | None]]]] | None  # XREADGROUP's (RESP2)


@dataclass(frozen=True)
class Unsaved:
    """Order-log entries to write to the record, per sale, oldest first."""

    entries: dict[str, list[tuple[str, dict[str, str]]]]
    pending: bool  # some were given to this consumer before: more of those may follow


class Sales:
    """Flash sales of every merchant, on one Redis. See the module docstring for the guarantees.

    Every change it makes is noted in `changes` (stock changed, units bought), for the feed to tell
    the rooms.
    """

    def __init__(self, redis: Redis, batcher: ScriptBatcher, changes: SaleChanges, ledger: SalesLedger) -> None:
        self.redis = redis
        self.batcher = batcher
        self.changes = changes
        self.ledger = ledger
        self._terms: dict[str, tuple[Sale, dict[str, str]]] = {}
        self._loading: dict[str, asyncio.Future[Sale | None]] = {}
        self._create = scripts.register(redis, __file__, "sale_create")
        self._reserve = scripts.register(redis, __file__, "sale_reserve")
        self._pay = scripts.register(redis, __file__, "sale_pay", "group")
        self._cancel = scripts.register(redis, __file__, "sale_cancel", "group")
        self._release = scripts.register(redis, __file__, "sale_release", "group")
        self._group_reserve = scripts.register(redis, __file__, "group_reserve", "group")
        self._group_clock = scripts.register(redis, __file__, "group_clock", "group")
        self._end = scripts.register(redis, __file__, "sale_end")
        self._adjust = scripts.register(redis, __file__, "sale_adjust")
        self._announce = scripts.register(redis, __file__, "sale_announce")
        self._stock = scripts.register(redis, __file__, "sale_stock")
        self._archive = scripts.register(redis, __file__, "sale_archive")
        self._restore = scripts.register(redis, __file__, "sale_restore", "group")
        self._log_saved = scripts.register(redis, __file__, "sale_log_saved")

    # --- sales ---------------------------------------------------------------------------

    async def create(self, terms: Terms, show_id: str | None = None, sale_id: str | None = None) -> Sale:
        """A new sale with all its units available; it opens at its start time (Redis clock). It is in the
        record (PostgreSQL) before anyone can buy: should that fail, the sale is taken back and the error raised.
        With `sale_id` (an auction's award sale), a sale of that id made before is returned as it is."""
        if sale_id is not None and (made := await self.get(sale_id)) is not None:
            await self.ledger.record_sale(made, show_id)  # a process that made it may have died before this
            return made
        given, sale_id = sale_id, sale_id or "s_" + secrets.token_hex(5)
        fields = _terms_fields(terms)
        # Scheduled first: should this process die right after, the clock finds no sale and drops it.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.sales_due(), {sale_id: now_ms() + 1000})
            await pipe.execute()
        try:
            await self._create(
                keys=[keys.sale(sale_id), keys.sale_log(sale_id)],
                args=[
                    sale_id,
                    orjson.dumps(fields).decode(),
                    terms.quantity,
                    terms.starts_at,
                    terms.countdown_ms,
                    terms.duration_ms,
                ],
            )
        except ResponseError as error:
            if given is None or not str(error).startswith("EXISTS"):
                raise
            return await self.create(terms, show_id, given)  # another process made it at the same moment
        # Backed up once its log exists (a backup pass that finds no log and no sale drops the id).
        await self.redis.zadd(keys.sales_ledger(), {sale_id: now_ms()})
        sale = await self.get(sale_id)
        assert sale is not None
        try:
            await self.ledger.record_sale(sale, show_id)
        except BaseException:
            await self.redis.delete(*_sale_keys(sale_id).values())
            raise
        return sale

    async def get(self, sale_id: str) -> Sale | None:
        """The sale as it is now (terms, counters, end time), or None; an archived sale from the record."""
        if not is_sale_id(sale_id):
            return None
        fields = cast(dict[str, str], await self.redis.hgetall(keys.sale(sale_id)))
        if fields:
            return Sale.from_hash(fields)
        return await self.ledger.sale(sale_id)

    async def terms(self, sale_id: str) -> tuple[Sale, dict[str, str]]:
        """The sale read once by this process (use only what never changes: not counters, not ends_at) and its keys."""
        cached = self._terms.get(sale_id)
        if cached is not None:
            return cached
        sale = await self._load_once(sale_id)
        if sale is None:
            raise refused(Refusal.UNKNOWN_SALE)
        if len(self._terms) >= _TERMS_CACHE:
            del self._terms[next(iter(self._terms))]
        cached = self._terms[sale_id] = (sale, _sale_keys(sale_id))
        return cached

    async def _load_once(self, sale_id: str) -> Sale | None:
        """The sale read from Redis once however many callers ask at the same moment (a flash sale's first second)."""
        loading = self._loading.get(sale_id)
        if loading is None:
            loading = self._loading[sale_id] = asyncio.ensure_future(self.get(sale_id))
            loading.add_done_callback(lambda _: self._loading.pop(sale_id, None))
        return await asyncio.shield(loading)  # one caller going away does not cancel the read for the others

    async def _order_terms(self, order_id: str) -> tuple[Sale, dict[str, str]]:
        """The terms of the sale an order id names; unknown_order when there is no such sale."""
        try:
            return await self.terms(sale_of_order(order_id))
        except SaleRefused as problem:
            if problem.code is Refusal.UNKNOWN_SALE:
                raise refused(Refusal.UNKNOWN_ORDER) from None
            raise

    async def of_merchant(self, merchant_id: str) -> list[Sale]:
        """The merchant's sales, newest first (live ones as Redis has them, archived ones from the record)."""
        sales = [await self.get(sale_id) for sale_id in await self.ledger.sale_ids(merchant_id)]
        return [sale for sale in sales if sale is not None]

    async def end(self, sale_id: str) -> Sale:
        """End the sale now (no effect on an ended one); holds already taken stay payable until they expire."""
        sale, k = await self.terms(sale_id)
        if not await self.batcher.call(self._end, [k["sale"]], []):
            archived = await self.ledger.sale(sale_id)  # ended long ago: nothing to do
            if archived is None:
                raise refused(Refusal.UNKNOWN_SALE)
            return archived
        await self.redis.zadd(keys.sales_due(), {sale_id: 0})
        self.changes.stock_changed(sale_id, sale.room_id)
        ended = await self.get(sale_id)
        assert ended is not None
        await self.ledger.changed(ended)
        return ended

    async def adjust(self, sale_id: str, what: str, amount: int = 0) -> Sale:
        """A host's change of a sale that is on (sale_adjust.lua): 'start' it now, 'restock' `amount` units, or
        'extend' it by `amount` ms. The record follows; the clock comes at once (to announce a start)."""
        sale, k = await self.terms(sale_id)
        most = {"restock": MAX_QUANTITY, "extend": MAX_DURATION * 1000}.get(what, 0)
        verdict, _ = await self._adjust(keys=[k["sale"]], args=[what, amount, most])
        if verdict != "ok":
            raise adjust_refused(verdict)
        await self.redis.zadd(keys.sales_due(), {sale_id: 0})
        self.changes.stock_changed(sale_id, sale.room_id)
        adjusted = await self.get(sale_id)
        assert adjusted is not None
        await self.ledger.changed(adjusted)
        return adjusted

    # --- orders --------------------------------------------------------------------------

    async def reserve(
        self, sale_id: str, user_id: str, key: str, quantity: int, admit: Callable[[Sale], None] | None = None
    ) -> Outcome:
        """Hold `quantity` units for the user until the sale's hold time passes; or return the key's earlier order.
        `admit` may refuse the buyer on the sale's terms first (its `buyers` rule: server.sales.checkout)."""
        sale, k = await self.terms(sale_id)
        if admit is not None:
            admit(sale)
        verdict = "taken"
        while verdict == "taken":  # a random id already in use (rare as a 48-bit collision): another one
            verdict, raw, available, now = await self.batcher.call(
                self._reserve,
                [k["sale"], k["orders"], k["users"], k["idem"], k["holds"], k["log"]],
                [user_id, key, quantity, new_order_id(sale_id)],
            )
        if verdict == "held":
            self.changes.stock_changed(sale_id, sale.room_id)
            return Outcome(Order.from_json(raw), sale, now, created=True)
        if verdict == "unknown_sale":  # we know its terms: it ended and left Redis; the key may have an order
            order = await self.ledger.order_by_key(sale_id, user_id, key)
            if order is None:
                raise refused(Refusal.ENDED)
            verdict, raw = "existing", order.to_json()
        if verdict == "existing":
            order = Order.from_json(raw)
            if order.quantity != quantity:
                raise SaleRefused(
                    Refusal.IDEMPOTENCY_KEY,
                    f"This Idempotency-Key was already used for a purchase of {order.quantity}; use a new key.",
                )
            return Outcome(order, sale, now)
        raise refusal(verdict, sale, available, now)

    async def reserve_group(
        self,
        sale_id: str,
        user_id: str,
        name: str,
        key: str,
        group_id: str | None = None,
        admit: Callable[[Sale], None] | None = None,
    ) -> Outcome:
        """Open a group of the offer (`group_id` None: the buyer leads a new one) or join the open group `group_id`:
        a one-unit hold at the group's price; or the key's earlier order. `name` is shown to the room."""
        sale, k = await self.terms(sale_id)
        if admit is not None:
            admit(sale)
        mode = "open" if group_id is None else "join"
        verdict = "taken"
        while verdict == "taken":  # a random id already in use (rare as a 48-bit collision): others
            verdict, raw, now, found = await self.batcher.call(
                self._group_reserve,
                [k["sale"], k["orders"], k["users"], k["idem"], k["holds"], k["log"], *_group_keys(k)],
                [user_id, key, new_order_id(sale_id), mode, group_id or new_group_id(sale_id), name],
            )
        if verdict == "held":
            self.changes.stock_changed(sale_id, sale.room_id)
            self.changes.group_changed(sale.room_id, found)
            return Outcome(Order.from_json(raw), sale, now, created=True, group=found)
        if verdict == "unknown_sale":  # we know its terms: it ended and left Redis; the key may have an order
            order = await self.ledger.order_by_key(sale_id, user_id, key)
            if order is None:
                raise refused(Refusal.ENDED if mode == "open" else Refusal.GROUP_CLOSED)
            verdict, raw = "existing", order.to_json()
        if verdict == "existing":
            order = Order.from_json(raw)
            if order.group_id is None or (group_id is not None and order.group_id != group_id):
                raise SaleRefused(
                    Refusal.IDEMPOTENCY_KEY,
                    "This Idempotency-Key was already used for another purchase; use a new key.",
                )
            return Outcome(order, sale, now)
        if verdict == "sold_out" and sale.group is not None:
            raise SaleRefused(
                Refusal.SOLD_OUT, f"Not enough left to open a group of {sale.group.size}: join an open group instead."
            )
        raise refusal(verdict, sale, 0, now)

    async def pay(self, order_id: str, user_id: str, payment_ref: str, payment_key: str) -> Outcome:
        """Mark the user's held order paid (final), unless its hold expired; idempotent per payment key."""
        sale, k = await self._order_terms(order_id)
        verdict, raw, now, group = await self.batcher.call(
            self._pay,
            [k["sale"], k["orders"], k["holds"], k["log"], *_group_keys(k)],
            [order_id, user_id, payment_ref, payment_key],
        )
        if verdict == "unknown_order":
            await self._archived(order_id, user_id)
        if verdict != "paid":
            raise refusal(verdict, sale, 0, now)
        order = Order.from_json(raw)
        if order.paid_at == now:  # paid by this call (a replay has an older paid_at)
            self.changes.stock_changed(sale.id, sale.room_id)
            self.changes.bought(sale.id, order.quantity)
            if group:
                self.changes.group_changed(sale.room_id, group)
        return Outcome(order, sale, now, group=group or None)

    async def cancel(self, order_id: str, user_id: str) -> Outcome:
        """The buyer gives up a held order: its units go back on sale. Cancelling twice is fine."""
        sale, k = await self._order_terms(order_id)
        verdict, raw, now, group = await self.batcher.call(
            self._cancel,
            [k["sale"], k["orders"], k["users"], k["holds"], k["log"], *_group_keys(k)],
            [order_id, user_id],
        )
        if verdict == "unknown_order":
            order = await self._archived(order_id, user_id)
            return Outcome(order, sale, now)
        if verdict != "cancelled":
            raise refusal(verdict, sale, 0, now)
        self.changes.stock_changed(sale.id, sale.room_id)
        if group:
            self.changes.group_changed(sale.room_id, group)
        return Outcome(Order.from_json(raw), sale, now, group=group or None)

    async def _archived(self, order_id: str, user_id: str) -> Order:
        """An order Redis does not have: its sale left Redis, so the record's (final) order if it is the user's
        and was cancelled, else the refusal its state calls for."""
        order = await self.ledger.order(order_id)
        if order is None:
            raise refused(Refusal.UNKNOWN_ORDER)
        if order.user_id != user_id:
            raise refused(Refusal.NOT_YOUR_ORDER)
        if order.status != "cancelled":
            already = {"paid": Refusal.ALREADY_PAID, "refunded": Refusal.ALREADY_PAID}
            raise refused(already.get(order.status, Refusal.HOLD_EXPIRED))
        return order

    async def order(self, order_id: str) -> tuple[Order, Sale]:
        """An order and its sale's terms (no owner check: callers check); an archived sale's from the record."""
        sale, k = await self._order_terms(order_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k["orders"], order_id)
            pipe.exists(k["sale"])
            raw, live = await pipe.execute()
        if raw is not None:
            return Order.from_json(raw), sale
        order = None if live else await self.ledger.order(order_id)
        if order is None:
            raise refused(Refusal.UNKNOWN_ORDER)
        return order, sale

    async def orders(self, sale_id: str) -> list[Order]:
        """Every order of the sale, oldest first; an archived sale's from the record."""
        raws = await self._live_values(sale_id, keys.sale_orders(sale_id))
        if raws is None:
            return await self.ledger.orders(sale_id)
        return sorted((Order.from_json(raw) for raw in raws), key=lambda order: (order.created_at, order.id))

    async def _live_values(self, sale_id: str, key: str) -> list[str] | None:
        """The values of one of the sale's hashes, None once the sale left Redis (read it from the record)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hvals(key)
            pipe.exists(keys.sale(sale_id))
            raws, live = await pipe.execute()
        return cast(list[str], raws) if live else None

    # --- the order log, the archive and repair ----------------------------------------------

    async def unsaved(self, consumer: str, count: int, *, mine: bool, claim_ms: int | None) -> Unsaved:
        """Order-log entries not yet confirmed in the record, per sale, at most about `count` per sale: new
        ones; with `mine`, first those given to `consumer` before and not confirmed (a write that failed, a
        restart); with `claim_ms`, also those another consumer left idle that long (it died: now ours).

        Every sale's log is read in one command (per READ_SALES sales): a log with nothing new costs
        Redis one comparison, so sales waiting for their archive cost next to nothing."""
        sale_ids = cast(list[str], await self.redis.zrange(keys.sales_ledger(), 0, -1))
        if not sale_ids:
            return Unsaved({}, pending=False)
        if claim_ms is not None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sale_id in sale_ids:
                    pipe.xautoclaim(keys.sale_log(sale_id), LOG_GROUP, consumer, claim_ms, count=count, justid=True)
                claims = await pipe.execute(raise_on_error=False)
            for sale_id, claim in zip(sale_ids, claims, strict=True):
                if isinstance(claim, Exception):
                    await self._lost_log(sale_id, claim)
                elif claim:  # the ids it claimed
                    mine = True
        # Entries given to us before ("0") are older than any new one (">"): appended in that order, a sale's
        # entries stay oldest first.
        found: dict[str, list[tuple[str, dict[str, str]]]] = {}
        pending = False
        for start in ("0", ">") if mine else (">",):
            for first in range(0, len(sale_ids), READ_SALES):
                chunk = sale_ids[first : first + READ_SALES]
                for sale_id, entries in (await self._read(consumer, chunk, start, count)).items():
                    pending = pending or (start == "0" and bool(entries))
                    found.setdefault(sale_id, []).extend(entries)
        return Unsaved({sale_id: entries for sale_id, entries in found.items() if entries}, pending=pending)

    async def _read(
        self, consumer: str, sale_ids: list[str], start: str, count: int
    ) -> dict[str, list[tuple[str, dict[str, str]]]]:
        """XREADGROUP of these sales' logs from `start` ("0": ours not confirmed, ">": new), per sale: one command
        per log (each log is in its sale's slot on a Redis Cluster), all in one round trip."""
        logs = {keys.sale_log(sale_id): sale_id for sale_id in sale_ids}
        async with self.redis.pipeline(transaction=False) as pipe:
            for log in logs:
                pipe.xreadgroup(LOG_GROUP, consumer, {log: start}, count=count)
            answers = await pipe.execute(raise_on_error=False)
        replies: list[tuple[str, list[tuple[str, dict[str, str] | None]]]] = []
        for sale_id, answer in zip(logs.values(), answers, strict=True):
            if isinstance(answer, Exception):  # the log lost its group (or left Redis): mend or drop it
                await self._lost_log(sale_id, answer)
            else:
                replies += cast(LogReply, answer) or []
        # A deleted entry still given to us reads without fields: it is in the record (saved deletes).
        return {logs[log]: [(entry_id, fields) for entry_id, fields in entries if fields] for log, entries in replies}

    async def _lost_log(self, sale_id: str, error: Exception) -> None:
        """A log without its consumer group: made again when the sale is live; else the sale left Redis."""
        if "NOGROUP" not in str(error):
            raise error
        if await self.redis.exists(keys.sale(sale_id)):
            with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it meanwhile
                await self.redis.xgroup_create(keys.sale_log(sale_id), LOG_GROUP, "0", mkstream=True)
        else:
            await self.redis.zrem(keys.sales_ledger(), sale_id)

    async def saved(self, entries: dict[str, list[str]]) -> None:
        """These log entries are in the record: confirm and delete them (the log keeps only what is not)."""
        await asyncio.gather(
            *(
                self.batcher.call(self._log_saved, [keys.sale_log(sale_id)], [LOG_GROUP, *ids])
                for sale_id, ids in entries.items()
            )
        )

    async def archive(self, sale_id: str, grace_ms: int) -> bool:
        """Remove the sale's keys from Redis once it ended `grace_ms` ago, holds no units and its log is all in
        the record, projected into its orders; False when it is not that far yet. From then on it is read from
        the record."""
        sale = await self.get(sale_id)
        if sale is None:
            return True
        if await self.ledger.unprojected(sale_id) is not None:
            return False  # its last changes are copied, not yet in its orders' rows: after the projection
        await self.ledger.changed(sale)
        k = _sale_keys(sale_id)
        done = int(
            await self._archive(
                keys=[
                    *(k[name] for name in ("sale", "orders", "users", "idem", "holds", "log")),
                    *(k[name] for name in ("groups", "members", "board", "open", "refunds")),
                ],
                args=[grace_ms],
            )
        )
        if done:
            await self.ledger.archived(sale_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.sales_ledger(), sale_id)
                pipe.zrem(keys.sales_due(), sale_id)
                await pipe.execute()
            self._terms.pop(sale_id, None)
        return bool(done)

    async def restore(
        self,
        sale: Sale,
        orders: list[Order],
        changed: list[tuple[str, Order | Group]],
        groups: Sequence[Group] = (),
        refunds: Sequence[str] = (),
    ) -> Audit:
        """Rebuild a sale's keys in Redis from the record: its terms, these orders (the newest of each) and the
        counters they add up to; a group-buy offer's groups and the refunds still to make. `changed` are orders
        (and groups) the record lacked the last change of: they go in the log, to be written to the record. Returns
        the invariant, checked."""
        k = _sale_keys(sale.id)
        fields = {
            **_terms_fields(sale),
            "quantity": sale.quantity,
            "starts_at": sale.starts_at,
            "ends_at": sale.ends_at,
            "created_at": sale.created_at,
        }
        await self._restore(
            keys=[
                *(k[name] for name in ("sale", "orders", "users", "idem", "holds", "log")),
                *_group_keys(k),
                k["refunds"],
            ],
            args=[
                sale.id,
                orjson.dumps(fields).decode(),
                orjson.dumps([order.to_json() for order in orders]).decode(),
                orjson.dumps([[change, item.to_json()] for change, item in changed]).decode(),
                orjson.dumps([group.to_json() for group in groups]).decode(),
                orjson.dumps(list(refunds)).decode(),
            ],
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.sales_due(), {sale.id: 0})
            pipe.zadd(keys.sales_ledger(), {sale.id: sale.created_at})
            await pipe.execute()
        self._terms.pop(sale.id, None)
        self.changes.stock_changed(sale.id, sale.room_id)
        audit = await self.audit(sale.id)
        assert audit is not None
        return audit

    # --- the clock, the feed and the merchant ----------------------------------------------

    async def release_expired(self, sale_id: str) -> Released | None:
        """Put the units of expired holds back on sale (each exactly once); None when the sale is gone."""
        k = _sale_keys(sale_id)
        reply = await self._release(
            keys=[k["sale"], k["orders"], k["users"], k["holds"], k["log"], *_group_keys(k)], args=[RELEASE_BATCH]
        )
        if not reply:
            return None
        count, next_hold, now, starts_at, ends_at, announced, groups = reply
        if count:
            sale, _ = await self.terms(sale_id)
            self.changes.stock_changed(sale_id, sale.room_id)
            for group in groups:
                self.changes.group_changed(sale.room_id, group)
        return Released(count, next_hold if next_hold >= 0 else None, now, starts_at, ends_at, announced)

    async def clock_groups(self, sale_id: str, limit: int, lease_ms: int) -> GroupClock | None:
        """Fail the offer's groups whose window passed (each exactly once) and claim the refunds due (for `lease_ms`);
        None when the offer is gone."""
        k = _sale_keys(sale_id)
        reply = await self._group_clock(
            keys=[k["sale"], k["orders"], k["users"], k["holds"], k["log"], *_group_keys(k), k["refunds"]],
            args=[limit, lease_ms],
        )
        if not reply:
            return None
        failed, claimed, next_end, next_refund, now = reply
        if failed:
            sale, _ = await self.terms(sale_id)
            self.changes.stock_changed(sale_id, sale.room_id)
            for group in failed:
                self.changes.group_changed(sale.room_id, group)
        return GroupClock(
            len(failed),
            list(claimed),
            None if next_end < 0 else next_end,
            None if next_refund < 0 else next_refund,
            now,
        )

    async def refund_done(self, order_id: str) -> None:
        """A failed group's order has its money back (its refund row is written): off the offer's queue."""
        await self.redis.zrem(keys.sale_refunds(sale_of_order(order_id)), order_id)

    async def board(self, sale_id: str) -> dict[str, Any]:
        """The offer's board: its open groups closest to filling first (at most BOARD_SIZE) and its counts."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(keys.sale_board(sale_id), 0, BOARD_SIZE - 1)
            pipe.hmget(keys.sale(sale_id), ["version", "forming", "filled", "failed", "reserved"])
            ids, counters = await pipe.execute()
        raws = cast(list[str | None], await self.redis.hmget(keys.sale_groups(sale_id), ids)) if ids else []
        version, forming, filled, failed, reserved = (int(value or 0) for value in counters)
        return {
            "sale_id": sale_id,
            "version": version,
            "open": [Group.from_json(raw).public() for raw in raws if raw is not None],
            "forming": forming,
            "filled": filled,
            "failed": failed,
            "reserved": reserved,
        }

    async def group(self, group_id: str) -> Group | None:
        """One group as it is now (from the record once its offer left Redis)."""
        sale_id = sale_of_group(group_id)
        if sale_id is None:
            return None
        raw = await self.redis.hget(keys.sale_groups(sale_id), group_id)
        if raw is not None:
            return Group.from_json(raw)
        if await self.redis.exists(keys.sale(sale_id)):
            return None
        return await self.ledger.group(group_id)

    async def groups(self, sale_id: str) -> list[Group]:
        """Every group of the offer, newest first (from the record once it left Redis)."""
        raws = await self._live_values(sale_id, keys.sale_groups(sale_id))
        if raws is None:
            return await self.ledger.groups(sale_id)
        return sorted((Group.from_json(raw) for raw in raws), key=lambda group: (-group.created_at, group.id))

    async def due(self, limit: int) -> list[str]:
        """Sales whose next moment (start, end, a hold expiring) has come, by the clock of this process."""
        return cast(list[str], await self.redis.zrangebyscore(keys.sales_due(), "-inf", now_ms(), start=0, num=limit))

    async def come_back(self, sale_id: str, at_ms: int | None) -> None:
        """Visit the sale again at `at_ms` (None: never; nothing more will happen to it)."""
        if at_ms is None:
            await self.redis.zrem(keys.sales_due(), sale_id)
        else:
            await self.redis.zadd(keys.sales_due(), {sale_id: at_ms})

    async def claim_announcement(self, sale_id: str, token: str, lease_ms: int) -> int:
        """The next step to tell the room (0 created, 1 started, 2 sold out, 3 ended), now claimed; -1: none."""
        return int(await self._announce(keys=[keys.sale(sale_id)], args=["claim", token, lease_ms]))

    async def announced(self, sale_id: str, token: str, step: int) -> None:
        """The room has been told `step`; release the claim."""
        await self._announce(keys=[keys.sale(sale_id)], args=["done", token, step])

    async def stock_to_publish(self, sale_id: str, interval_ms: int) -> tuple[bool, Stock | None]:
        """(too soon, stock): the stock when it changed since any process last published it (now
        counted as published), None when it did not; too soon when the last publish is under
        `interval_ms` old (try again in a moment)."""
        reply = await self._stock(keys=[keys.sale(sale_id)], args=[interval_ms])
        if not isinstance(reply, list):
            return reply == -1, None
        available, held, paid, quantity, version = (int(value) for value in reply)
        return False, Stock.of(sale_id, available, held, paid, quantity, version)

    async def stocks(self, sale_ids: list[str]) -> dict[str, Stock]:
        """The live stock of these sales (those that exist), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sale_id in sale_ids:
                pipe.hmget(keys.sale(sale_id), ["available", "held", "paid", "quantity", "version"])
            counters = await pipe.execute()
        return {
            sale_id: Stock.of(sale_id, *(int(value) for value in values))
            for sale_id, values in zip(sale_ids, counters, strict=True)
            if values[0] is not None
        }

    async def now(self) -> int:
        """The Redis clock, ms (the clock of every sale script)."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def audit(self, sale_id: str) -> Audit | None:
        """The invariant, checked: counters and a recount of orders and per-user units, in one transaction
        (an archived sale's from the record)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(
                keys.sale(sale_id), ["quantity", "available", "held", "paid", "per_user_limit", "reserved", "group"]
            )
            pipe.hvals(keys.sale_orders(sale_id))
            pipe.hvals(keys.sale_users(sale_id))
            pipe.hvals(keys.sale_groups(sale_id))
            counters, raws, users, groups = await pipe.execute()
        if counters[0] is None:
            return await self.ledger.audit(sale_id)
        orders = [Order.from_json(raw) for raw in raws]
        units = [int(value) for value in users]
        terms = None if counters[6] is None else GroupTerms.from_json(counters[6])
        formed = [Group.from_json(raw) for raw in groups]
        return Audit(
            quantity=int(counters[0]),
            available=int(counters[1]),
            held=int(counters[2]),
            paid=int(counters[3]),
            orders_held=sum(order.quantity for order in orders if order.status == "held"),
            orders_paid=sum(order.quantity for order in orders if order.status == "paid"),
            users_units=sum(units),
            max_user_units=max(units, default=0),
            per_user_limit=int(counters[4]),
            reserved=int(counters[5] or 0),
            slots_empty=sum(group.size - len(group.members) for group in formed if group.state in FORMING),
            group_size=0 if terms is None else terms.size,
            max_group_members=max((len(group.members) for group in formed), default=0),
        )
