"""The people at a live show, as locust users: viewers, chatters, flash-sale buyers and the host.

Every user joins the room's WebSocket (room_socket.py reports each pushed event's lag);
REST calls go through locust's FastHttpUser client. What the server acknowledges to buyers (holds
and payments) and the sales the host creates go into this process's `LEDGER`, which the invariant
report checks against the store after the run (report.py).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import secrets
import time
from typing import Any

import gevent
from locust import FastHttpUser, between, constant, task
from locust.exception import StopUser

from loadtests.show.invariants import Ack, Ledger
from loadtests.show.options import Show
from loadtests.show.plan import SaleSlot, ShowPlan
from loadtests.show.room_socket import REPORTED, RoomSocket, RoomSocketError

log = logging.getLogger("livecart.loadtest")

LEDGER = Ledger()  # this process's: what the server told its buyers, and the sales its host created

GOOD_CARD = "4242424242424242"  # the sandbox provider's approved test card
PURCHASE = "POST /api/sales/[id]/purchases"
PAYMENT = "POST /api/orders/[id]/payment"
# Refusals a buyer expects in a busy sale: the server said no, correctly. They count as successes.
EXPECTED_REFUSALS = frozenset({"sold_out", "limit_reached", "ended", "not_started", "hold_expired"})
REPLAY_SHARE = 0.1  # purchases and payments retried with the same Idempotency-Key, as after a lost response
PIN_EVERY = 15.0  # seconds between the host's product changes outside the sale
CHAT_LINES = (
    "is this available in blue?",
    "how big is it?",
    "love it!",
    "does it ship to Canada?",
    "what's the fabric?",
    "just bought one",
    "can you show the back?",
)


class LiveUser(FastHttpUser):
    """Someone in the room: a guest token (or a staff one) and the room's WebSocket."""

    abstract = True
    host = "http://127.0.0.1:8000"  # --host (LOCUST_HOST) overrides it
    concurrency = 2  # connections in this user's HTTP pool
    socket: RoomSocket | None = None
    user_id = ""

    @property
    def show(self) -> Show:
        return Show.of(self.environment.parsed_options)

    def guest(self) -> str:
        """A guest token from POST /api/guest (as a browser gets one)."""
        response = self.client.post("/api/guest", name="POST /api/guest")
        body = response.json()
        self.user_id = body["user"]["id"]
        return str(body["token"])

    def member(self) -> str:
        """A signed-in shopper's token, as a browser gets one: a code sent to a made-up email, read from the sandbox
        messenger's inbox, and signed in with (flash sales admit signed-in buyers by default)."""
        email = {"email": f"buyer-{secrets.token_hex(6)}@load.example"}
        self.client.post("/api/sign-in/code", json=email, name="POST /api/sign-in/code")
        inbox = self.client.get("/api/sandbox/inbox", params=email, name="GET /api/sandbox/inbox").json()
        code = inbox["messages"][0]["text"].split("code is ")[1][:6]
        body = self.client.post("/api/sign-in", json={**email, "code": code}, name="POST /api/sign-in").json()
        self.user_id = body["user"]["id"]
        return str(body["token"])

    def join(self, token: str) -> RoomSocket:
        assert self.host is not None
        self.socket = RoomSocket(self.environment, self.host, self.show.room, token)
        try:
            self.socket.open()
        except RoomSocketError as problem:
            log.error("could not join room %r: %s", self.show.room, problem)
            raise StopUser() from None
        return self.socket

    def on_stop(self) -> None:
        if self.socket is not None:
            self.socket.close()


class ViewerUser(LiveUser):
    """Watches: receives every frame of the room, and taps like now and then."""

    weight = 6
    wait_time = between(5, 15)

    def on_start(self) -> None:
        self.join(self.guest())

    @task
    def like(self) -> None:
        if self.socket is not None and random.random() < 0.3:
            self.socket.send("like", count=random.randint(1, 5))


class ChatterUser(LiveUser):
    """Watches and chats (under the default rate limit of 5 messages in 5 seconds), and likes."""

    weight = 1
    wait_time = between(2, 6)

    def on_start(self) -> None:
        self.join(self.guest())

    @task(4)
    def chat(self) -> None:
        assert self.socket is not None
        with contextlib.suppress(*REPORTED):
            self.socket.request("chat.send", text=random.choice(CHAT_LINES))

    @task(1)
    def like(self) -> None:
        assert self.socket is not None
        self.socket.send("like", count=random.randint(1, 20))


class BuyerUser(LiveUser):
    """Watches for a live sale, buys (hold), then pays, cancels, or walks away until the hold expires.

    It keeps buying until the server says limit_reached, and now and then retries a purchase with
    the same Idempotency-Key, which must return the same order, or a payment with the key that paid,
    which must return the paid order (not already_paid).
    """

    weight = 3
    wait_time = between(0.2, 0.6)

    def on_start(self) -> None:
        self.token = self.member()
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.done: set[str] = set()  # sales where this buyer reached the limit
        self.join(self.token)

    @task
    def shop(self) -> None:
        assert self.socket is not None
        sale = self.socket.buyable(self.done)
        if sale is None:
            return
        quantity = 1 if random.random() < 0.8 else max(1, min(2, sale["per_user_limit"]))
        order = self.purchase(sale, quantity)
        if order is None:
            return
        gevent.sleep(random.uniform(0.2, float(sale["hold_seconds"]) * 1.1))  # deciding, typing the card
        show, choice = self.show, random.random()
        if choice < show.pay_ratio:
            self.pay(order)
        elif choice < show.pay_ratio + show.cancel_ratio:
            self.cancel(order)
        # else: walks away; the hold expires and its units go back on sale

    def purchase(self, sale: dict[str, Any], quantity: int) -> dict[str, Any] | None:
        """POST a purchase; the held order, or None when refused (as expected, or not)."""
        key = secrets.token_hex(8)
        order = self._purchase(sale, quantity, key, PURCHASE)
        if order is not None and random.random() < REPLAY_SHARE:
            LEDGER.replays += 1
            again = self._purchase(sale, quantity, key, PURCHASE + " (retry)")
            if again is not None and again["order_id"] != order["order_id"]:
                LEDGER.replay_mismatches.append(f"returned {again['order_id']} after {order['order_id']}")
        return order

    def _purchase(self, sale: dict[str, Any], quantity: int, key: str, name: str) -> dict[str, Any] | None:
        headers = {**self.headers, "Idempotency-Key": key}
        path = f"/api/sales/{sale['id']}/purchases"
        with self.client.post(path, json={"quantity": quantity}, headers=headers, name=name, catch_response=True) as r:
            if r.status_code in (200, 201):
                order: dict[str, Any] = r.json()
                LEDGER.held(Ack(order["order_id"], sale["id"], self.user_id, order["quantity"]))
                r.success()
                return order
            code = _error_code(r)
            if code in EXPECTED_REFUSALS:
                r.success()
                LEDGER.refusals[code] += 1
                if code == "limit_reached":
                    self.done.add(sale["id"])
                elif code == "sold_out":
                    sale["available"] = 0  # until the next stock event says otherwise
                elif code == "ended":
                    sale["status"] = "ended"
            else:
                r.failure(f"{r.status_code} {code}")
        return None

    def pay(self, order: dict[str, Any]) -> None:
        """POST a payment with a new Idempotency-Key (one per attempt); now and then the same again, as after a
        lost reply: it must answer with the paid order."""
        key = secrets.token_hex(8)
        if self._pay(order, key, PAYMENT) and random.random() < REPLAY_SHARE:
            LEDGER.replays += 1
            self._pay(order, key, PAYMENT + " (retry)", retry=True)

    def _pay(self, order: dict[str, Any], key: str, name: str, retry: bool = False) -> bool:
        """True when the order is paid; a retry that is not answered with the paid order is a mismatch."""
        path = f"/api/orders/{order['order_id']}/payment"
        headers = {**self.headers, "Idempotency-Key": key}
        with self.client.post(
            path, json={"card_number": GOOD_CARD}, headers=headers, name=name, catch_response=True
        ) as r:
            if r.status_code == 200 and r.json().get("status") == "paid":
                LEDGER.paid(Ack(order["order_id"], order["sale_id"], self.user_id, order["quantity"]))
                r.success()
                return True
            code = _error_code(r)
            if retry:
                LEDGER.replay_mismatches.append(f"answered {r.status_code} {code} after paying {order['order_id']}")
                r.failure(f"{r.status_code} {code}")
            elif code in EXPECTED_REFUSALS:
                LEDGER.refusals[code] += 1
                r.success()
            else:
                r.failure(f"{r.status_code} {code}")
        return False

    def cancel(self, order: dict[str, Any]) -> None:
        path = f"/api/orders/{order['order_id']}/cancel"
        name = "POST /api/orders/[id]/cancel"
        with self.client.post(path, headers=self.headers, name=name, catch_response=True) as r:
            code = "" if r.status_code == 200 else _error_code(r)
            if r.status_code == 200 or code in EXPECTED_REFUSALS:
                r.success()
            else:
                r.failure(f"{r.status_code} {code}")


class HostUser(LiveUser):
    """The host: sets the room live, fills the bag, pins products, and runs the sales on the show's schedule.

    One per run (fixed_count), wherever it runs. Without --host-token or --admin-token it stays away.
    """

    fixed_count = 1
    weight = 1
    wait_time = constant(0.25)

    def on_start(self) -> None:
        show = self.show
        self.started = time.monotonic()
        self.slots = ShowPlan(show.seconds, show.sales).slots()
        self.sale_ids: dict[int, str] = {}  # slot -> the sale created for it
        self.done: set[int] = set()  # slots finished: the sale ended, or could not be created
        self.next_pin = PIN_EVERY
        self.idle = not show.staff_token
        if self.idle:
            log.warning("no --host-token or --admin-token (LIVECART_HOST_TOKEN): the host stays away, no sale runs")
            return
        self.headers = {"Authorization": f"Bearer {show.staff_token}"}
        response = self.client.get(
            f"/api/merchants/{show.merchant}/products", headers=self.headers, name="GET /api/merchants/[m]/products"
        )
        self.products = [item["id"] for item in response.json()] if response.status_code == 200 else []
        if not self.products:
            log.error("merchant %r has no products (or the token is not theirs): no sale will run", show.merchant)
            raise StopUser()
        if show.product:
            self.products = [show.product, *(item for item in self.products if item != show.product)]
        self.pins = itertools.cycle(self.products)
        socket = self.join(show.staff_token)
        try:
            socket.request("room.status", status="live")
            socket.request("bag.set", product_ids=self.products[:10])
            socket.request("product.pin", product_id=self.products[0])
        except REPORTED as problem:
            log.error("the host could not set up room %r: %s", show.room, problem)
            raise StopUser() from problem

    @task
    def next_step(self) -> None:
        """Whatever the schedule says is due: announce a sale, end one, or pin the next product."""
        if self.idle:
            return
        now = time.monotonic() - self.started
        for slot in self.slots:
            if slot.index not in self.sale_ids and slot.index not in self.done and now >= slot.announce:
                self.start_sale(slot, now)
                return
            if slot.index in self.sale_ids and slot.index not in self.done and now >= slot.ends:
                self.end_sale(slot)
                return
        if now >= self.next_pin and not any(slot.announce <= now < slot.ends for slot in self.slots):
            self.next_pin = now + PIN_EVERY
            self.pin(next(self.pins))

    def product_of(self, slot: SaleSlot) -> str:
        return self.products[slot.index % len(self.products)]

    def pin(self, product_id: str) -> None:
        assert self.socket is not None
        with contextlib.suppress(*REPORTED):
            self.socket.request("product.pin", product_id=product_id)

    def start_sale(self, slot: SaleSlot, now: float) -> None:
        show = self.show
        opens_in = max(0.0, slot.opens - now)
        body = {
            "product_id": self.product_of(slot),
            "price": show.sale_price,
            "quantity": show.sale_quantity,
            "per_user_limit": show.per_user_limit,
            "starts_at": int((time.time() + opens_in) * 1000),
            "duration_seconds": math.ceil(slot.ends - slot.opens) + 5,  # the host ends it first
            "hold_seconds": show.hold_seconds,
        }
        path = f"/api/merchants/{show.merchant}/rooms/{show.room}/sales"
        name = "POST /api/merchants/[m]/rooms/[r]/sales"
        with self.client.post(path, json=body, headers=self.headers, name=name, catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"{r.status_code} {_error_code(r)}")
                log.error("the host could not create a sale: %s %s", r.status_code, r.text)
                self.done.add(slot.index)
                return
            sale_id = self.sale_ids[slot.index] = str(r.json()["id"])
        LEDGER.created(sale_id, show.sale_quantity)
        log.info("sale %s of %d x %s opens in %.1f s", sale_id, show.sale_quantity, body["product_id"], opens_in)
        self.pin(self.product_of(slot))  # present the product on sale

    def end_sale(self, slot: SaleSlot) -> None:
        show = self.show
        sale_id = self.sale_ids[slot.index]
        self.done.add(slot.index)
        self.client.post(
            f"/api/merchants/{show.merchant}/sales/{sale_id}/end",
            headers=self.headers,
            name="POST /api/merchants/[m]/sales/[id]/end",
        )
        log.info("sale %s ended", sale_id)


def _error_code(response: Any) -> str:
    """The API's stable error code, or the status when the body is not an API error."""
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return f"http {response.status_code}"
