"""What rooms hear of their sales, and the sale clock: announcements, coalesced stock, sampled toasts, expired holds.

Every server process runs one feed. Nothing here decides anything about stock or orders (the sale
scripts do); it tells rooms what happened and makes time pass for sales nobody is buying from:

- Announcements (durable room events sale.created / started / sold_out / ended) are claimed
  per sale in Redis before publishing, so one process tells each step (at least once: a process
  that dies mid-way leaves a claim that lapses, and another tells it again; applying a step
  twice changes nothing).
- Stock reaches the room at most every STOCK_INTERVAL per sale, whatever the purchase rate: the
  sales this process changed are flushed every STOCK_INTERVAL by a script that reads the
  counters and publishes them in one step, and only if no process published in the interval.
- Toasts ("someone just bought") are sampled: one per sale per TOAST_INTERVAL per process.
- The clock visits each sale when something is due (the start, the end, the first hold to
  expire; a live sale at least every LIVE_REVISIT_MS), releases expired holds and announces.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import keys
from server.history import History, UnknownRoom
from server.protocol import event, now_ms
from server.sales import Sales

log = logging.getLogger("livecart.sales")

STOCK_INTERVAL = 0.1  # seconds between stock publishes of a sale, at most
TOAST_INTERVAL = 2.0  # seconds between toasts of a sale from one process, at most
CLOCK_INTERVAL = 0.25  # seconds between looks at what is due
LIVE_REVISIT_MS = 500  # a live sale is visited at least this often (holds expire, it may sell out)
CLAIM_MS = 5000  # how long an announcement claim lasts if its process dies
DUE_BATCH = 100

STEPS = ("sale.created", "sale.started", "sale.sold_out", "sale.ended")
STEP_STATUS = ("scheduled", "live", "sold_out", "ended")


class SalesFeed:
    """This process's announcer, stock and toast publisher, and sale clock (see the module docstring)."""

    def __init__(self, sales: Sales, history: History, redis: Redis) -> None:
        self.sales = sales
        self.history = history
        self.redis = redis
        self.token = secrets.token_hex(6)  # this process, in announcement claims
        self._last_toast: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(STOCK_INTERVAL, self.flush), name="sales-stock"),
            asyncio.create_task(self._every(CLOCK_INTERVAL, self.tick), name="sales-clock"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _every(self, seconds: float, step: Any) -> None:
        await asyncio.sleep(random.uniform(0, seconds))  # processes started together do not tick together
        while True:
            try:
                await step()
            except (RedisError, OSError) as error:
                log.warning("%s failed, store unavailable: %s", step.__name__, error)
            except Exception:
                log.exception("%s failed", step.__name__)
            await asyncio.sleep(seconds)

    # --- announcements -----------------------------------------------------------------------

    async def announce(self, sale_id: str) -> int:
        """Tell the sale's room every step that is due and unclaimed; return the last step told (-1: none)."""
        told = -1
        while (step := await self.sales.claim_announcement(sale_id, self.token, CLAIM_MS)) >= 0:
            sale = await self.sales.get(sale_id)
            if sale is None:
                return told
            public = sale.public(STEP_STATUS[step])
            try:
                await self.history.publish(
                    sale.room_id,
                    event(STEPS[step], sale=public),
                    {f"sale:{sale_id}": orjson.dumps(public).decode()},
                )
            except UnknownRoom:
                log.warning("sale %s: room %s is gone; not announcing %s", sale_id, sale.room_id, STEPS[step])
            await self.sales.announced(sale_id, self.token, step)
            told = step
        return told

    # --- stock and toasts --------------------------------------------------------------------

    async def flush(self) -> None:
        """Publish the stock of the sales this process changed, and a toast where one is due."""
        changed, self.sales.changed = self.sales.changed, {}
        try:
            for sale_id, room_id in list(changed.items()):
                if await self.sales.publish_stock(sale_id, keys.channel(room_id), int(STOCK_INTERVAL * 1000)) >= 0:
                    del changed[sale_id]
        finally:
            for sale_id, room_id in changed.items():  # published too recently elsewhere, or failed: next flush
                self.sales.changed.setdefault(sale_id, room_id)
        now = time.monotonic()
        for sale_id, (orders, units) in list(self.sales.bought.items()):
            if now - self._last_toast.get(sale_id, 0.0) < TOAST_INTERVAL:
                continue
            del self.sales.bought[sale_id]
            self._last_toast[sale_id] = now
            sale, _ = await self.sales.terms(sale_id)
            await self.history.publish_latest(
                sale.room_id, event("sale.toast", sale_id=sale_id, orders=orders, quantity=units)
            )
        for sale_id, at in list(self._last_toast.items()):
            if now - at > TOAST_INTERVAL and sale_id not in self.sales.bought:
                del self._last_toast[sale_id]

    # --- the clock -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Visit every sale whose next moment has come."""
        due = await self.redis.zrangebyscore(keys.sales_due(), "-inf", now_ms(), start=0, num=DUE_BATCH)
        for sale_id in due:
            await self.visit(sale_id)

    async def visit(self, sale_id: str) -> None:
        """Release the sale's expired holds, announce what is due, and note when to come back (or never)."""
        released = await self.sales.release_expired(sale_id)
        if released is None:
            await self.redis.zrem(keys.sales_due(), sale_id)
            return
        announced = max(released.announced, await self.announce(sale_id))
        now = released.now
        moments = [] if released.next_hold_expiry is None else [released.next_hold_expiry]
        if now < released.starts_at and released.starts_at < released.ends_at:
            moments.append(released.starts_at)
        elif now < released.ends_at:
            moments.append(min(released.ends_at, now + LIVE_REVISIT_MS))
        elif announced < len(STEPS) - 1:
            moments.append(now + CLAIM_MS)  # another process holds the claim to announce the end
        if moments:
            await self.redis.zadd(keys.sales_due(), {sale_id: min(moments)})
        else:
            await self.redis.zrem(keys.sales_due(), sale_id)
