"""Customer service's rules without I/O (docs/customer-service.md): a thread's states, a message's checks, the
public forms of threads and messages, and canned replies' variables."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from server.errors import BadRequest, DomainError, Forbidden, NotFound
from server.rooms.text import Blocklist, clean
from server.sales.records import valid_idempotency_key

STATES = ("open", "pending", "resolved")
SIDES = ("buyer", "staff")
PUBLIC_STATES = ("asked", "posted", "declined")
VARIABLES = {
    "buyer_name": "the buyer's name",
    "order_number": "the order the thread is about, else the buyer's newest order in the shop",
    "shop_name": "the shop's name",
    "staff_name": "the name of the staff member sending it",
}
TITLE_MAX = 60
MAX_ID = 2**62  # message ids are bigints
PAGE_MAX = 100
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ServiceRefused(DomainError):
    """A customer-service request refused for a reason the page shows (docs/customer-service.md, Errors)."""


def unknown_thread(thread_id: str) -> NotFound:
    return NotFound(f"no conversation '{thread_id}' here", "unknown_thread")


def sign_in_required() -> Forbidden:
    return Forbidden("sign in to write to the shop: answers come back to your account", "sign_in_required")


def check_text(raw: object, max_length: int, blocklist: Blocklist) -> str:
    """A message's text as stored: cleaned as chat is, 1..max_length characters, no blocked word."""
    if not isinstance(raw, str):
        raise BadRequest("'text' must be a string")
    if len(raw) > max_length * 4:
        raise ServiceRefused(f"messages are limited to {max_length} characters", "too_long")
    text = clean(raw)
    if not text:
        raise BadRequest("the message is empty")
    if len(text) > max_length:
        raise ServiceRefused(f"messages are limited to {max_length} characters", "too_long")
    if blocklist.find(text) is not None:
        raise ServiceRefused("the message contains a word this shop does not allow", "blocked_word")
    return text


def check_key(value: str | None) -> str:
    if value is None or not valid_idempotency_key(value):
        raise BadRequest(
            "every message needs an Idempotency-Key header: 1-64 visible ASCII characters, new for each message "
            "and the same when you send it again"
        )
    return value


def optional_id(body: dict[str, Any], name: str) -> str | None:
    """An id the body may give (absent: None)."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str) or not _ID.match(value):
        raise BadRequest(f"'{name}' must be an id")
    return value


def message_id(value: object, name: str) -> int:
    """A message id from a body."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise BadRequest(f"'{name}' must be a message id")
    return value


def check_state(value: object) -> str:
    if value not in STATES:
        raise BadRequest(f"'state' must be one of {', '.join(STATES)}")
    return str(value)


def page_limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    if not raw.isdecimal() or not 1 <= int(raw) <= PAGE_MAX:
        raise BadRequest(f"'limit' must be 1 to {PAGE_MAX}")
    return int(raw)


def optional_int(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdecimal():
        raise BadRequest(f"'{name}' must be a whole number")
    return int(raw)


def state_after(side: str) -> str:
    """A buyer's message opens the thread (a resolved one reopens); a staff message leaves it pending on the buyer."""
    return "open" if side == "buyer" else "pending"


def check_template(title: object, text: object, max_length: int) -> tuple[str, str]:
    """A canned reply's title and text, its variables all known."""
    if not isinstance(title, str) or not 1 <= len(title.strip()) <= TITLE_MAX:
        raise BadRequest(f"'title' must be 1-{TITLE_MAX} characters")
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= max_length:
        raise BadRequest(f"'text' must be 1-{max_length} characters")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        raise BadRequest("'text' has an unmatched { or }: write {{ and }} for the characters") from None
    unknown = sorted(names - VARIABLES.keys())
    if unknown:
        known = ", ".join("{" + name + "}" for name in VARIABLES)
        raise BadRequest(f"unknown variable {{{unknown[0]}}}: the variables are {known}")
    return title.strip(), text.strip()


def order_number(order_id: str) -> str:
    """The order number buyers and staff see: the first six characters of the order id's last part, upper-cased
    (static/js/ui.js orderNumber shows it the same way)."""
    return order_id.split(".")[-1][:6].upper()


def fill(text: str, values: dict[str, str]) -> str:
    """A canned reply's text with its variables filled in (a value missing: left empty)."""
    return text.format_map({name: values.get(name, "") for name in VARIABLES})


@dataclass(frozen=True)
class Message:
    id: int
    thread_id: str
    side: str
    author_id: str
    author_name: str
    author_role: str
    text: str
    at: int
    room_id: str | None = None
    order_id: str | None = None
    product_id: str | None = None
    public_state: str | None = None
    question_id: int | None = None
    question: str | None = None  # a public answer's question, as quoted

    def public(self) -> dict[str, Any]:
        public = None
        if self.public_state is not None:
            public = {"state": self.public_state, "question_id": self.question_id, "question": self.question}
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "side": self.side,
            "author_name": self.author_name,
            "text": self.text,
            "at": self.at,
            "room_id": self.room_id,
            "order_id": self.order_id,
            "product_id": self.product_id,
            "public": public,
        }


@dataclass(frozen=True)
class Thread:
    id: str
    merchant_id: str
    user_id: str
    buyer_name: str
    state: str
    assignee_id: str | None
    assignee_name: str | None
    room_id: str | None
    last_message_id: int
    buyer_read: int
    buyer_delivered: int
    staff_read: int
    waiting_since: int | None
    created_at: int
    updated_at: int
    blocked: bool = False
    unread_buyer: int = 0  # staff messages the buyer has not read
    unread_staff: int = 0  # buyer messages the staff have not read
    last_message: Message | None = None
    merchant_name: str = ""

    def for_buyer(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "merchant_name": self.merchant_name or self.merchant_id,
            "state": self.state,
            "unread": self.unread_buyer,
            "blocked": self.blocked,
            "staff_read": self.staff_read,
            "assignee_name": self.assignee_name,
            "last_message": None if self.last_message is None else self.last_message.public(),
            "updated_at": self.updated_at,
        }

    def for_staff(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "user_id": self.user_id,
            "buyer_name": self.buyer_name,
            "state": self.state,
            "assignee": self.assignee_id,
            "assignee_name": self.assignee_name,
            "unread": self.unread_staff,
            "buyer_read": self.buyer_read,
            "buyer_delivered": self.buyer_delivered,
            "staff_read": self.staff_read,
            "blocked": self.blocked,
            "waiting_since": self.waiting_since,
            "room_id": self.room_id,
            "last_message": None if self.last_message is None else self.last_message.public(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
