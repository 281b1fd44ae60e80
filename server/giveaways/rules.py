"""A giveaway's terms, conditions, refusals and public forms (docs/giveaways.md), without I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from server.errors import DomainError
from server.rooms.text import Blocklist, text_field

MAX_WINNERS = 100
MAX_SECONDS = 900  # 15 minutes
MAX_CLAIM_SECONDS = 14 * 86_400
DEFAULT_CLAIM_SECONDS = 48 * 3600
MAX_KEYWORD = 30
TICKET_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud and typed without mistakes
TICKET_LENGTH = 10


class Refusal(StrEnum):
    BAD_REQUEST = "bad_request"
    UNKNOWN_GIVEAWAY = "unknown_giveaway"
    GIVEAWAY_RUNNING = "giveaway_running"
    GIVEAWAY_CLOSED = "giveaway_closed"
    SIGN_IN_REQUIRED = "sign_in_required"
    KEYWORD_REQUIRED = "keyword_required"
    WATCH_MORE = "watch_more"
    BANNED = "banned"
    NOT_DRAWN = "not_drawn"
    NOT_A_WINNER = "not_a_winner"
    CLAIM_EXPIRED = "claim_expired"


_STATUS = {
    Refusal.BAD_REQUEST: 400,
    Refusal.UNKNOWN_GIVEAWAY: 404,
    Refusal.SIGN_IN_REQUIRED: 403,
    Refusal.BANNED: 403,
    Refusal.NOT_A_WINNER: 403,
}

_MESSAGES = {
    Refusal.UNKNOWN_GIVEAWAY: "We couldn't find this giveaway.",
    Refusal.GIVEAWAY_RUNNING: "A giveaway is already running in this room: wait until it is drawn.",
    Refusal.GIVEAWAY_CLOSED: "This giveaway has closed: entries are no longer taken.",
    Refusal.SIGN_IN_REQUIRED: "Sign in to enter this giveaway: it is for signed-in viewers.",
    Refusal.KEYWORD_REQUIRED: "Type the giveaway's keyword in the chat first, then enter.",
    Refusal.BANNED: "You can't enter giveaways in this room.",
    Refusal.NOT_DRAWN: "This giveaway hasn't been drawn yet.",
    Refusal.NOT_A_WINNER: "Only a winner of this giveaway can claim its prize.",
    Refusal.CLAIM_EXPIRED: "The time to claim this prize has passed: it went to the next entrant in the draw.",
}


class GiveawayRefused(DomainError):
    """A giveaway request refused with a stable code; nothing changed."""

    def __init__(self, code: Refusal, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES[code], code.value, _STATUS.get(code, 409))


@dataclass(frozen=True)
class Conditions:
    """Who may enter: a member (not a guest), someone who typed the keyword in chat, someone who watched enough."""

    signed_in: bool = True
    keyword: str | None = None
    watch_seconds: int = 0

    def public(self) -> dict[str, Any]:
        return {"signed_in": self.signed_in, "keyword": self.keyword, "watch_seconds": self.watch_seconds}

    def said(self, text: str) -> bool:
        """Does a chat message contain the keyword (case and width folded, whole words)?"""
        return self.keyword is not None and Blocklist([self.keyword]).find(text) is not None


@dataclass(frozen=True)
class Terms:
    product: dict[str, Any]  # the prize's card: id, title, image_url
    winners: int
    duration_ms: int
    conditions: Conditions
    claim_seconds: int


@dataclass(frozen=True)
class Winner:
    rank: int  # place in the ranking
    user_id: str
    name: str
    ticket: str
    claim_by: int  # ms
    outcome: str | None  # claimed, forfeited; None while the claim is awaited

    @property
    def state(self) -> str:
        return self.outcome or "won"

    def public(self) -> dict[str, Any]:
        return {"rank": self.rank, "ticket": self.ticket, "name": self.name, "state": self.state}


@dataclass(frozen=True)
class Giveaway:
    id: str
    merchant_id: str
    room_id: str
    product: dict[str, Any]
    winners_count: int
    conditions: Conditions
    claim_seconds: int
    starts_at: int  # ms
    ends_at: int
    state: str  # open, drawn
    commitment: str
    seed: str  # secret while open
    entrants: int  # counted now while open; at the draw once drawn
    entrants_hash: str | None
    version: int  # the database's clock when read, ms: a later read is newer
    winners: list[Winner] = field(default_factory=list)

    def card(self) -> dict[str, Any]:
        """The public card (the `giveaway` event): the seed only once drawn."""
        card: dict[str, Any] = {
            "id": self.id,
            "room_id": self.room_id,
            "product": self.product,
            "winners_count": self.winners_count,
            "conditions": self.conditions.public(),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "claim_seconds": self.claim_seconds,
            "state": self.state,
            "entrants": self.entrants,
            "commitment": self.commitment,
            "version": self.version,
        }
        if self.state == "drawn":
            card |= {
                "entrants_hash": self.entrants_hash,
                "seed": self.seed,
                "winners": [winner.public() for winner in self.winners],
            }
        return card


def new_id() -> str:
    return "g_" + secrets.token_hex(5)


def new_ticket() -> str:
    return "T-" + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))


def _int(body: dict[str, Any], name: str, low: int, high: int, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise GiveawayRefused(Refusal.BAD_REQUEST, f"'{name}' must be a whole number from {low} to {high}")
    return value


def terms_from(
    body: dict[str, Any], product: dict[str, Any], min_seconds: int, watch_margin: int, claim_min: int
) -> Terms:
    """Check a host's new giveaway: winners, duration, conditions (watch time leaves `watch_margin` seconds), claim."""
    duration = _int(body, "duration_seconds", min_seconds, MAX_SECONDS)
    given = body.get("conditions", {})
    if not isinstance(given, dict):
        raise GiveawayRefused(Refusal.BAD_REQUEST, "'conditions' must be an object: signed_in, keyword, watch_seconds")
    signed_in = given.get("signed_in", True)
    if not isinstance(signed_in, bool):
        raise GiveawayRefused(Refusal.BAD_REQUEST, "'signed_in' must be true or false")
    keyword = text_field(given, "keyword", MAX_KEYWORD, required=False)
    if keyword is not None and not Blocklist([keyword]).find(keyword):
        raise GiveawayRefused(Refusal.BAD_REQUEST, "'keyword' must contain a letter or a digit")
    conditions = Conditions(signed_in, keyword, _int(given, "watch_seconds", 0, max(0, duration - watch_margin), 0))
    return Terms(
        product={name: product[name] for name in ("id", "title", "image_url")},
        winners=_int(body, "winners", 1, MAX_WINNERS),
        duration_ms=duration * 1000,
        conditions=conditions,
        claim_seconds=_int(body, "claim_seconds", claim_min, MAX_CLAIM_SECONDS, max(claim_min, DEFAULT_CLAIM_SECONDS)),
    )
