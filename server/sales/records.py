"""The records of flash sales, without I/O: refusals and their stable codes, a sale, its stock, an order,
the audit, and the checks of what hosts and buyers send."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from server import protocol
from server.errors import DomainError
from server.sales.groups import MAX_SIZE, MAX_WINDOW, GroupTerms

MAX_UNITS = 1000  # one purchase; the sale's per-user limit may be lower
MAX_QUANTITY = 1_000_000  # one sale
MAX_PRICE = 100_000_000  # minor units
MIN_COUNTDOWN, MAX_COUNTDOWN = 10, 300  # seconds
MAX_DURATION = 24 * 3600  # seconds
MAX_HOLD = 3600  # seconds
MAX_LEAD_DAYS = 30  # how far ahead a sale may be scheduled
BUYERS = ("anyone", "signed_in", "verified_phone")  # who may buy in a sale; signed_in unless the host says
_SALE_ID = re.compile(r"^s_[0-9a-f]{10}$")
_ORDER_ID = re.compile(r"^(s_[0-9a-f]{10})\.[0-9a-f]{12}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")


class Refusal(StrEnum):
    """Why a request about a sale or an order was refused: a stable code for clients."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_SALE = "unknown_sale"
    UNKNOWN_ORDER = "unknown_order"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    SOLD_OUT = "sold_out"
    LIMIT_REACHED = "limit_reached"
    BAD_QUANTITY = "bad_quantity"
    IDEMPOTENCY_KEY = "idempotency_key"
    NOT_YOUR_ORDER = "not_your_order"
    HOLD_EXPIRED = "hold_expired"
    ALREADY_PAID = "already_paid"
    ORDER_CANCELLED = "order_cancelled"
    PAYMENT_DECLINED = "payment_declined"
    SIGN_IN_REQUIRED = "sign_in_required"
    PHONE_REQUIRED = "phone_required"
    GROUP_ONLY = "group_only"
    NOT_A_GROUP_OFFER = "not_a_group_offer"
    UNKNOWN_GROUP = "unknown_group"
    GROUP_NOT_OPEN = "group_not_open"
    GROUP_CLOSED = "group_closed"
    GROUP_FULL = "group_full"
    IN_GROUP = "in_group"
    NOT_THE_WINNER = "not_the_winner"

    @property
    def status(self) -> int:
        """The HTTP status that goes with the code."""
        return _STATUS.get(self, 409)


_STATUS = {
    Refusal.BAD_REQUEST: 400,
    Refusal.BAD_QUANTITY: 400,
    Refusal.IDEMPOTENCY_KEY: 400,
    Refusal.UNKNOWN_SALE: 404,
    Refusal.UNKNOWN_ORDER: 404,
    Refusal.UNKNOWN_GROUP: 404,
    Refusal.NOT_YOUR_ORDER: 403,
    Refusal.PAYMENT_DECLINED: 402,
    Refusal.SIGN_IN_REQUIRED: 403,
    Refusal.PHONE_REQUIRED: 403,
    Refusal.NOT_THE_WINNER: 403,
}


class SaleRefused(DomainError):
    """A request refused with a stable code and a message a shopper understands; nothing changed."""

    def __init__(self, code: Refusal, message: str) -> None:
        super().__init__(message, code.value, code.status)
        self.code = code


@dataclass(frozen=True)
class Stock:
    """A sale's live counters as everyone sees them: what Redis counts as paid, people see as sold."""

    sale_id: str
    available: int
    held: int
    sold: int
    quantity: int
    version: int

    @classmethod
    def of(cls, sale_id: str, available: int, held: int, paid: int, quantity: int, version: int) -> Stock:
        return cls(sale_id, available, held, paid, quantity, version)

    def fields(self) -> dict[str, Any]:
        """The stock's public fields (as in a sale's public form and the stock event)."""
        return {
            "sale_id": self.sale_id,
            "available": self.available,
            "held": self.held,
            "sold": self.sold,
            "quantity": self.quantity,
            "version": self.version,
        }

    def event(self) -> dict[str, Any]:
        return protocol.stock(**self.fields())


@dataclass(frozen=True)
class Terms:
    """What a host sets for a new sale (already checked by terms_from)."""

    merchant_id: str
    room_id: str
    product: dict[str, Any]  # the product card (id, title, image_url, price, currency)
    price: int  # the live-only unit price, minor units
    currency: str
    quantity: int
    per_user_limit: int
    buyers: str  # one of BUYERS
    starts_at: int  # ms since the epoch; 0 = start after countdown_ms
    countdown_ms: int
    duration_ms: int
    hold_ms: int
    group: GroupTerms | None = None  # a group-buy offer's (docs/group-buys.md); None for a flash sale
    auction_id: str | None = None  # an auction's award sale (docs/auctions.md): only `winner` may hold its unit
    winner: str | None = None


@dataclass(frozen=True)
class Sale:
    id: str
    merchant_id: str
    room_id: str
    product: dict[str, Any]
    price: int
    currency: str
    quantity: int
    per_user_limit: int
    buyers: str
    starts_at: int
    ends_at: int
    hold_ms: int
    created_at: int
    available: int
    held: int
    paid: int
    version: int  # grows with every change of the counters or the end time
    announced: int  # the last step told to the room (see sale_announce.lua)
    group: GroupTerms | None = None  # a group-buy offer's terms; None for a flash sale
    reserved: int = 0  # units kept for the empty slots of forming groups
    forming: int = 0  # open groups
    filled: int = 0
    failed: int = 0
    auction_id: str | None = None  # an auction's award sale: only `winner` may hold its unit (docs/auctions.md)
    winner: str | None = None

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> Sale:
        return cls(
            id=fields["id"],
            merchant_id=fields["merchant_id"],
            room_id=fields["room_id"],
            product=orjson.loads(fields["product"]),
            price=int(fields["price"]),
            currency=fields["currency"],
            quantity=int(fields["quantity"]),
            per_user_limit=int(fields["per_user_limit"]),
            buyers=fields.get("buyers", "signed_in"),
            starts_at=int(fields["starts_at"]),
            ends_at=int(fields["ends_at"]),
            hold_ms=int(fields["hold_ms"]),
            created_at=int(fields["created_at"]),
            available=int(fields["available"]),
            held=int(fields["held"]),
            paid=int(fields["paid"]),
            version=int(fields["version"]),
            announced=int(fields["announced"]),
            group=GroupTerms.from_json(fields["group"]) if "group" in fields else None,
            reserved=int(fields.get("reserved", 0)),
            forming=int(fields.get("forming", 0)),
            filled=int(fields.get("filled", 0)),
            failed=int(fields.get("failed", 0)),
            auction_id=fields.get("auction_id"),
            winner=fields.get("winner"),
        )

    @property
    def shelf(self) -> bool:
        """A product's shelf (its units at the regular price, server/sales/shelf.py): a sale of no room."""
        return self.room_id == ""

    def status(self, now: int) -> str:
        """scheduled, live, sold_out (every unit paid) or ended."""
        if now >= self.ends_at:
            return "ended"
        if now < self.starts_at:
            return "scheduled"
        return "sold_out" if self.available == 0 and self.held == 0 and self.reserved == 0 else "live"

    def stock(self) -> Stock:
        return Stock.of(self.id, self.available, self.held, self.paid, self.quantity, self.version)

    def public(self, status: str) -> dict[str, Any]:
        """What anyone may see of the sale: its terms, status and stock."""
        stock = self.stock().fields()
        del stock["sale_id"]
        return {
            "id": self.id,
            "room_id": self.room_id,
            "product": self.product,
            "price": self.price,
            "currency": self.currency,
            "quantity": self.quantity,
            "per_user_limit": self.per_user_limit,
            "buyers": self.buyers,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "hold_seconds": self.hold_ms / 1000,
            "status": status,
            **stock,
            **self._group_fields(),
            **({} if self.auction_id is None else {"auction_id": self.auction_id}),
            **({"shelf": True} if self.shelf else {}),
        }

    def _group_fields(self) -> dict[str, Any]:
        """An offer's group terms and counts (docs/group-buys.md); nothing for a flash sale."""
        if self.group is None:
            return {}
        return {
            "group": self.group.public(),
            "reserved": self.reserved,
            "forming": self.forming,
            "filled": self.filled,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class Order:
    id: str
    sale_id: str
    user_id: str
    quantity: int
    status: str  # held, paid, expired, cancelled or refunded (a paid order of a group that failed)
    created_at: int
    hold_expires_at: int
    idempotency_key: str
    paid_at: int | None = None
    closed_at: int | None = None  # when it expired or was cancelled
    payment_ref: str | None = None  # the gateway's authorization id
    payment_key: str | None = None  # the payer's idempotency key of the payment
    version: int = 1  # 1 when held, one more with every change
    group_id: str | None = None  # a group-buy order's group
    price: int | None = None  # the unit price when it is not the sale's (a group leader's)

    @classmethod
    def from_json(cls, raw: str) -> Order:
        data = orjson.loads(raw)
        return cls(
            id=data["id"],
            sale_id=data["id"].partition(".")[0],
            user_id=data["user_id"],
            quantity=int(data["quantity"]),
            status=data["status"],
            created_at=int(data["created_at"]),
            hold_expires_at=int(data["hold_expires_at"]),
            idempotency_key=data["idempotency_key"],
            paid_at=int(data["paid_at"]) if "paid_at" in data else None,
            closed_at=int(data["closed_at"]) if "closed_at" in data else None,
            payment_ref=data.get("payment_ref"),
            payment_key=data.get("payment_key"),
            version=int(data.get("version", 1)),
            group_id=data.get("group_id"),
            price=data.get("price"),
        )

    def unit_price(self, sale: Sale) -> int:
        """What one unit of this order costs the buyer."""
        return sale.price if self.price is None else self.price

    def amount(self, sale: Sale) -> int:
        return self.unit_price(sale) * self.quantity

    def to_json(self) -> str:
        """The order as the sale scripts keep it (the inverse of from_json)."""
        data: dict[str, Any] = {
            "id": self.id,
            "user_id": self.user_id,
            "quantity": self.quantity,
            "status": self.status,
            "created_at": self.created_at,
            "hold_expires_at": self.hold_expires_at,
            "idempotency_key": self.idempotency_key,
            "version": self.version,
        }
        optional = {
            "paid_at": self.paid_at,
            "closed_at": self.closed_at,
            "payment_ref": self.payment_ref,
            "payment_key": self.payment_key,
            "group_id": self.group_id,
            "price": self.price,
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        return orjson.dumps(data).decode()

    def public(self, sale: Sale, now: int) -> dict[str, Any]:
        """What the buyer (and the merchant) see of the order; `server_time` is the Redis clock."""
        public = {
            "order_id": self.id,
            "sale_id": self.sale_id,
            "status": self.status,
            "quantity": self.quantity,
            "unit_price": self.unit_price(sale),
            "amount": self.amount(sale),
            "currency": sale.currency,
            "product": {"id": sale.product["id"], "title": sale.product["title"]},
            "created_at": self.created_at,
            "hold_expires_at": self.hold_expires_at,
            "paid_at": self.paid_at,
            "closed_at": self.closed_at,
            "server_time": now,
        }
        if self.group_id is not None:
            public["group_id"] = self.group_id
        return public


@dataclass(frozen=True)
class Outcome:
    """An order after a change (or a retry that found it)."""

    order: Order
    sale: Sale  # the sale's terms; its counters may be older than the change
    now: int  # the Redis clock at the change, ms
    created: bool = False  # reserve: True for a new hold, False for the key's earlier order
    group: str | None = None  # a group order's group after the change (JSON), when it changed


@dataclass(frozen=True)
class Released:
    """What a release call did, and what the clock needs to know about the sale next."""

    count: int
    next_hold_expiry: int | None
    now: int
    starts_at: int
    ends_at: int
    announced: int


@dataclass(frozen=True)
class Audit:
    """The sale's counters beside a recount of its orders, read at one instant."""

    quantity: int
    available: int
    held: int
    paid: int
    orders_held: int  # units in held orders
    orders_paid: int  # units in paid orders
    users_units: int  # units counted against users' limits
    max_user_units: int
    per_user_limit: int
    reserved: int = 0  # a group offer's units kept for empty slots
    slots_empty: int = 0  # a recount of them: the empty slots of its pending and open groups
    group_size: int = 0  # a group offer's N
    max_group_members: int = 0  # the most members any group of the offer has

    @property
    def ok(self) -> bool:
        return (
            self.quantity == self.available + self.reserved + self.held + self.paid
            and self.reserved == self.slots_empty
            and self.max_group_members <= self.group_size
            and self.available >= 0
            and self.held == self.orders_held
            and self.paid == self.orders_paid
            and self.users_units == self.held + self.paid
            and self.max_user_units <= self.per_user_limit
        )

    def public(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "available": self.available,
            "held": self.held,
            "paid": self.paid,
            "orders_held": self.orders_held,
            "orders_paid": self.orders_paid,
            "users_units": self.users_units,
            "max_user_units": self.max_user_units,
            "per_user_limit": self.per_user_limit,
            "reserved": self.reserved,
            "slots_empty": self.slots_empty,
            "group_size": self.group_size,
            "max_group_members": self.max_group_members,
            "ok": self.ok,
        }


def int_field(body: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SaleRefused(Refusal.BAD_REQUEST, f"'{name}' must be a whole number from {low} to {high}")
    return value


def terms_from(
    body: dict[str, Any],
    merchant_id: str,
    room_id: str,
    product: dict[str, Any],
    hold_seconds: int,
    now: int,
    min_window_seconds: int,
) -> Terms:
    """Check a host's new-sale body: price, quantity, per-user limit, start (or countdown), duration, hold, and a
    group-buy offer's `group` (size, window, leader's price)."""
    quantity = int_field(body, "quantity", 1, MAX_QUANTITY)
    price = int_field(body, "price", 0, MAX_PRICE)
    if ("starts_at" in body) == ("countdown_seconds" in body):
        raise SaleRefused(Refusal.BAD_REQUEST, "give either 'starts_at' (ms since the epoch) or 'countdown_seconds'")
    starts_at = countdown = 0
    if "starts_at" in body:
        starts_at = int_field(body, "starts_at", now - 60_000, now + MAX_LEAD_DAYS * 86_400_000)
    else:
        countdown = int_field(body, "countdown_seconds", MIN_COUNTDOWN, MAX_COUNTDOWN)
    return Terms(
        merchant_id=merchant_id,
        room_id=room_id,
        product=product,
        price=price,
        currency=product["currency"],
        quantity=quantity,
        per_user_limit=int_field(body, "per_user_limit", 1, min(quantity, MAX_UNITS), default=1),
        buyers=_buyers(body.get("buyers", "signed_in")),
        starts_at=starts_at,
        countdown_ms=countdown * 1000,
        duration_ms=int_field(body, "duration_seconds", 1, MAX_DURATION) * 1000,
        hold_ms=int_field(body, "hold_seconds", 1, MAX_HOLD, default=hold_seconds) * 1000,
        group=_group_terms(body.get("group"), price, quantity, min_window_seconds),
    )


def _group_terms(value: object, price: int, quantity: int, min_window_seconds: int) -> GroupTerms | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SaleRefused(Refusal.BAD_REQUEST, "'group' must be an object: size, window_seconds, leader_price?")
    size = int_field(value, "size", 2, min(MAX_SIZE, quantity))
    window = int_field(value, "window_seconds", min_window_seconds, MAX_WINDOW)
    leader_price = None if value.get("leader_price") is None else int_field(value, "leader_price", 0, price)
    return GroupTerms(size, window * 1000, leader_price)


def _buyers(value: object) -> str:
    if not isinstance(value, str) or value not in BUYERS:
        raise SaleRefused(Refusal.BAD_REQUEST, f"'buyers' must be one of {', '.join(BUYERS)}")
    return value


def check_buyer(sale: Sale, guest: bool, phone_verified: bool) -> None:
    """May this buyer buy in this sale (its `buyers` rule)? A refusal that says what to do otherwise."""
    if sale.buyers == "anyone":
        return
    if guest:
        raise refused(Refusal.SIGN_IN_REQUIRED)
    if sale.buyers == "verified_phone" and not phone_verified:
        raise refused(Refusal.PHONE_REQUIRED)


def check_quantity(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_UNITS:
        raise SaleRefused(Refusal.BAD_QUANTITY, f"Quantity must be a whole number from 1 to {MAX_UNITS}.")
    return value


def valid_idempotency_key(value: str) -> bool:
    """1-64 visible ASCII characters (a purchase's, a payment's, a message's)."""
    return _IDEMPOTENCY_KEY.match(value) is not None


def check_idempotency_key(value: str | None) -> str:
    if value is None or not valid_idempotency_key(value):
        raise SaleRefused(
            Refusal.IDEMPOTENCY_KEY,
            "Every purchase and payment needs an Idempotency-Key header: 1-64 visible ASCII characters, new for "
            "each purchase or payment and the same when you retry it.",
        )
    return value


def is_sale_id(value: str) -> bool:
    return _SALE_ID.match(value) is not None


def new_order_id(sale_id: str) -> str:
    """A new random order id of the sale: "<sale id>.<12 hex>" (the scripts refuse one in use: `taken`)."""
    return f"{sale_id}.{secrets.token_hex(6)}"


def sale_of_order(order_id: str) -> str:
    """The sale an order id belongs to (order ids are "<sale id>.<12 hex>")."""
    match = _ORDER_ID.match(order_id)
    if match is None:
        raise SaleRefused(Refusal.UNKNOWN_ORDER, "We couldn't find this order.")
    return match[1]


def refusal(verdict: str, sale: Sale, available: int, now: int) -> SaleRefused:
    """The refusal a script's verdict stands for, in a shopper's words."""
    code = Refusal(verdict)
    if code is Refusal.NOT_STARTED:
        seconds = max(1, -(-(sale.starts_at - now) // 1000))
        return SaleRefused(code, f"This sale hasn't started yet: it opens in {seconds} seconds.")
    if code is Refusal.SOLD_OUT and available > 0:
        return SaleRefused(code, f"Only {available} left: try a smaller quantity.")
    if code is Refusal.LIMIT_REACHED:
        return SaleRefused(code, f"You can buy at most {sale.per_user_limit} of this item in this sale.")
    return refused(code)


def adjust_refused(verdict: str) -> SaleRefused:
    """The refusal of a host's change of a sale (sale_adjust.lua's verdict)."""
    if verdict == "too_many":
        return SaleRefused(Refusal.BAD_QUANTITY, f"A sale has at most {MAX_QUANTITY} units.")
    if verdict == "too_long":
        return SaleRefused(Refusal.BAD_REQUEST, f"A sale runs at most {MAX_DURATION // 3600} hours.")
    return refused(Refusal(verdict))


def refused(code: Refusal) -> SaleRefused:
    """The refusal with its standard message."""
    return SaleRefused(code, _MESSAGES[code])


_MESSAGES = {
    Refusal.UNKNOWN_SALE: "We couldn't find this sale.",
    Refusal.UNKNOWN_ORDER: "We couldn't find this order.",
    Refusal.ENDED: "This sale has ended.",
    Refusal.SOLD_OUT: "Sold out: every unit has been claimed.",
    Refusal.BAD_QUANTITY: f"Quantity must be a whole number from 1 to {MAX_UNITS}.",
    Refusal.NOT_YOUR_ORDER: "This order belongs to someone else.",
    Refusal.HOLD_EXPIRED: (
        "Your reservation expired before payment, so the item went back on sale. You were not charged."
    ),
    Refusal.ALREADY_PAID: "This order is already paid.",
    Refusal.ORDER_CANCELLED: "This order was cancelled.",
    Refusal.SIGN_IN_REQUIRED: "Sign in to buy in this sale: it is for signed-in shoppers only.",
    Refusal.PHONE_REQUIRED: "Sign in with your phone number to buy in this sale: it is for verified phones only.",
    Refusal.GROUP_ONLY: "This is a group buy: open a group or join one to get the group price.",
    Refusal.NOT_A_GROUP_OFFER: "This sale is not a group buy: buy it directly.",
    Refusal.UNKNOWN_GROUP: "We couldn't find this group.",
    Refusal.GROUP_NOT_OPEN: "This group opens once its leader has paid: try again in a moment.",
    Refusal.GROUP_CLOSED: (
        "This group is closed (it filled, or its time ran out); you were not charged. Open a new group or join another."
    ),
    Refusal.GROUP_FULL: "Every place in this group is taken. Join another group or open your own.",
    Refusal.IN_GROUP: "You're already in a group of this offer: wait until it fills or its time runs out.",
    Refusal.NOT_THE_WINNER: "This item was won in an auction: only its winner can buy it.",
}
