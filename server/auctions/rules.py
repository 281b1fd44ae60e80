"""An auction's terms, increments, refusals and card (docs/auctions.md), without I/O."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from server.errors import DomainError

MODES = ("anti_snipe", "sudden_death")
UNPAID = ("next_bidder", "host")
MAX_SECONDS = 3600
MAX_PRICE = 100_000_000  # minor units
DEFAULT_EXTEND_SECONDS, MIN_EXTEND_SECONDS, MAX_EXTEND_SECONDS = 10, 5, 60
MAX_PAY_SECONDS = 86_400
MAX_TIERS = 20
DEFAULT_INCREMENTS = ((0, 50), (1000, 100), (5000, 200), (10_000, 500), (50_000, 1000), (100_000, 2500))


class Refusal(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_AUCTION = "unknown_auction"
    AUCTION_RUNNING = "auction_running"
    AUCTION_CLOSED = "auction_closed"
    TOO_LOW = "too_low"
    BARRED = "barred"
    BANNED = "banned"
    SIGN_IN_REQUIRED = "sign_in_required"
    IDEMPOTENCY_KEY = "idempotency_key"


_STATUS = {
    Refusal.BAD_REQUEST: 400,
    Refusal.IDEMPOTENCY_KEY: 400,
    Refusal.UNKNOWN_AUCTION: 404,
    Refusal.BARRED: 403,
    Refusal.BANNED: 403,
    Refusal.SIGN_IN_REQUIRED: 403,
}

_MESSAGES = {
    Refusal.UNKNOWN_AUCTION: "We couldn't find this auction.",
    Refusal.AUCTION_RUNNING: "An auction is already running in this room: wait until it closes.",
    Refusal.AUCTION_CLOSED: "This auction has closed: bids are no longer taken.",
    Refusal.BARRED: "The seller has stopped you bidding in their auctions.",
    Refusal.BANNED: "You can't bid in this room.",
    Refusal.SIGN_IN_REQUIRED: "Sign in to bid: the winner must be able to pay.",
    Refusal.IDEMPOTENCY_KEY: (
        "Every bid needs an Idempotency-Key header: 1-64 visible ASCII characters, new for each bid and the same "
        "when you retry it."
    ),
}


class AuctionRefused(DomainError):
    """A bid or an auction request refused with a stable code; nothing changed."""

    def __init__(self, code: Refusal, message: str | None = None, **details: Any) -> None:
        super().__init__(message or _MESSAGES[code], code.value, _STATUS.get(code, 409), details)


Tiers = tuple[tuple[int, int], ...]


def step(tiers: Tiers, price: int) -> int:
    """The increment at this price: the last tier whose `from` is at most the price."""
    found = tiers[0][1]
    for start, size in tiers:
        if price < start:
            break
        found = size
    return found


@dataclass(frozen=True)
class Terms:
    product: dict[str, Any]  # id, title, image_url, price, currency
    currency: str
    starting_bid: int
    duration_ms: int
    mode: str
    extend_ms: int
    increments: Tiers
    unpaid: str
    pay_ms: int


@dataclass(frozen=True)
class Auction:
    """An auction as its card shows it: its terms and where the bidding (or its result) stands."""

    id: str
    merchant_id: str
    room_id: str
    terms: Terms
    state: str  # open, closed, awarded, sold, unsold
    price: int  # 0: no bid yet
    leader: str  # user id ("" none): never shown, only the name
    leader_name: str
    bids: int
    starts_at: int
    ends_at: int
    extensions: int
    version: int
    award: dict[str, Any] | None = None  # {round, state}: the win offered now or last

    def next_bid(self) -> int:
        return self.terms.starting_bid if self.bids == 0 else self.price + step(self.terms.increments, self.price)

    def card(self) -> dict[str, Any]:
        terms = self.terms
        card: dict[str, Any] = {
            "id": self.id,
            "room_id": self.room_id,
            "product": terms.product,
            "currency": terms.currency,
            "starting_bid": terms.starting_bid,
            "increments": [list(tier) for tier in terms.increments],
            "mode": terms.mode,
            "extend_seconds": terms.extend_ms // 1000,
            "unpaid": terms.unpaid,
            "state": self.state,
            "price": self.price or None,
            "leader": self.leader_name or None,
            "next_bid": self.next_bid(),
            "bids": self.bids,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "extensions": self.extensions,
            "version": self.version,
        }
        if self.state != "open":
            card["winner"] = self.leader_name or None
            card["award"] = self.award
        return card


def new_id() -> str:
    return "a_" + secrets.token_hex(5)


def award_sale_id(auction_id: str, round_: int) -> str:
    """The award sale of a win's offer: the same id whoever makes it, however often (a sale id: s_ + 10 hex)."""
    return "s_" + hashlib.sha256(f"{auction_id}:{round_}".encode()).hexdigest()[:10]


def _int(body: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise AuctionRefused(Refusal.BAD_REQUEST, f"'{name}' must be a whole number from {low} to {high}")
    return value


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name, choices[0])
    if value not in choices:
        raise AuctionRefused(Refusal.BAD_REQUEST, f"'{name}' must be one of {', '.join(choices)}")
    return str(value)


def _increments(value: object) -> Tiers:
    if value is None:
        return DEFAULT_INCREMENTS
    problem = AuctionRefused(
        Refusal.BAD_REQUEST,
        f"'increments' must be up to {MAX_TIERS} tiers [from, step] of whole numbers, the first from 0, 'from' "
        "ascending, each step at least 1",
    )
    if not isinstance(value, list) or not 0 < len(value) <= MAX_TIERS:
        raise problem
    tiers = []
    for tier in value:
        if not (
            isinstance(tier, list)
            and len(tier) == 2
            and all(isinstance(item, int) and not isinstance(item, bool) for item in tier)
            and 0 <= tier[0] <= MAX_PRICE
            and 1 <= tier[1] <= MAX_PRICE
        ):
            raise problem
        tiers.append((tier[0], tier[1]))
    if tiers[0][0] != 0 or any(later[0] <= earlier[0] for earlier, later in itertools.pairwise(tiers)):
        raise problem
    return tuple(tiers)


def terms_from(
    body: dict[str, Any], product: dict[str, Any], min_seconds: int, pay_seconds: int, pay_min: int
) -> Terms:
    """Check a host's new auction."""
    return Terms(
        product={name: product[name] for name in ("id", "title", "image_url", "price", "currency")},
        currency=product["currency"],
        starting_bid=_int(body, "starting_bid", 1, MAX_PRICE),
        duration_ms=_int(body, "duration_seconds", min_seconds, MAX_SECONDS) * 1000,
        mode=_choice(body, "mode", MODES),
        extend_ms=_int(body, "extend_seconds", MIN_EXTEND_SECONDS, MAX_EXTEND_SECONDS, DEFAULT_EXTEND_SECONDS) * 1000,
        increments=_increments(body.get("increments")),
        unpaid=_choice(body, "unpaid", UNPAID),
        pay_ms=_int(body, "pay_seconds", pay_min, MAX_PAY_SECONDS, max(pay_min, pay_seconds)) * 1000,
    )


def terms_json(terms: Terms) -> str:
    return orjson.dumps(
        {
            "product": terms.product,
            "currency": terms.currency,
            "starting_bid": terms.starting_bid,
            "duration_ms": terms.duration_ms,
            "mode": terms.mode,
            "extend_ms": terms.extend_ms,
            "increments": terms.increments,
            "unpaid": terms.unpaid,
            "pay_ms": terms.pay_ms,
        }
    ).decode()


def terms_of(raw: str | bytes) -> Terms:
    data = orjson.loads(raw)
    return Terms(**{**data, "increments": tuple(tuple(tier) for tier in data["increments"])})


def money(amount: int, currency: str) -> str:
    """An amount in minor units as people read it: 2100, USD -> 21.00 USD."""
    return f"{amount / 100:.2f} {currency}"


def check_amount(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PRICE:
        raise AuctionRefused(
            Refusal.BAD_REQUEST, f"'{name}' must be a whole number of minor units from 1 to {MAX_PRICE}"
        )
    return value
