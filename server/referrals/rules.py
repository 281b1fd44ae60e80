"""A merchant's programme and commission rules, parsed and checked, and what an order earns (no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from server.errors import BadRequest
from server.rooms.catalog import CURRENCIES

LEVELS = (1, 2)  # never three or more: paying uplines over three levels is pyramid selling (传销)
BINDINGS = ("first_touch", "last_touch", "new_buyers")
SCOPES = ("product", "sale")  # a rule's scope besides the merchant's default
MAX_DAYS = {"binding_days": 365, "refund_days": 90}
MAX_MONEY = 10**12  # minor units


@dataclass(frozen=True)
class Rate:
    """What one level earns: a fixed amount per unit (minor units) wins over a rate (basis points: 1000 is 10%)."""

    rate_bp: int | None = None
    fixed: int | None = None

    def earns(self, base: int, quantity: int) -> int:
        """The commission on `base` (what the buyer paid for `quantity` units), rounded down, never above it."""
        amount = self.fixed * quantity if self.fixed is not None else base * (self.rate_bp or 0) // 10_000
        return max(0, min(amount, base))

    def public(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Program:
    """A merchant's share-and-earn settings (docs/referrals.md)."""

    merchant_id: str
    enabled: bool = False
    levels: int = 1
    binding: str = "first_touch"
    binding_days: int = 30
    refund_days: int = 7
    self_purchase: bool = False
    daily_cap: int | None = None
    min_withdrawal: int = 1000
    currency: str = "USD"
    saved: bool = False  # False: the defaults of a merchant that never set a programme

    def public(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if name != "saved"}

    def changed(self, body: dict[str, Any]) -> Program:
        """These settings with the ones in `body` (a PUT's) changed; BadRequest names a wrong one."""
        changes: dict[str, Any] = {}
        for name in ("enabled", "self_purchase"):
            if name in body:
                changes[name] = _bool(body, name)
        if "levels" in body:
            if body["levels"] not in LEVELS or isinstance(body["levels"], bool):
                raise BadRequest("'levels' must be 1 or 2 (never more: that would be pyramid selling)")
            changes["levels"] = body["levels"]
        if "binding" in body:
            if body["binding"] not in BINDINGS:
                raise BadRequest(f"'binding' must be one of {', '.join(BINDINGS)}")
            changes["binding"] = body["binding"]
        for name, most in MAX_DAYS.items():
            if name in body:
                changes[name] = _int(body, name, 1 if name == "binding_days" else 0, most)
        if "daily_cap" in body:
            changes["daily_cap"] = None if body["daily_cap"] is None else _int(body, "daily_cap", 0, MAX_MONEY)
        if "currency" in body:
            if body["currency"] not in CURRENCIES:
                raise BadRequest(f"'currency' must be one of {', '.join(sorted(CURRENCIES))}")
            changes["currency"] = body["currency"]
        if "min_withdrawal" in body:
            changes["min_withdrawal"] = _int(body, "min_withdrawal", 1, MAX_MONEY)
        return replace(self, **changes)


def rates_from(body: object) -> dict[int, Rate]:
    """{"level1": {"rate_bp"?, "fixed"?}, "level2": …} as rates per level; a level left out earns nothing."""
    if not isinstance(body, dict):
        raise BadRequest('rules must be an object: {"level1": {"rate_bp": 1000}, "level2": {"fixed": 50}}')
    unknown = set(body) - {f"level{level}" for level in LEVELS}
    if unknown:
        raise BadRequest(f"unknown rule fields: {', '.join(sorted(unknown))} (level1 and level2 only)")
    rates = {}
    for level in LEVELS:
        given = body.get(f"level{level}")
        if given is None:
            continue
        if not isinstance(given, dict) or not set(given) <= {"rate_bp", "fixed"}:
            raise BadRequest(f"'level{level}' must be an object with 'rate_bp' and/or 'fixed'")
        rate = Rate(
            None if given.get("rate_bp") is None else _int(given, "rate_bp", 0, 10_000),
            None if given.get("fixed") is None else _int(given, "fixed", 0, MAX_MONEY),
        )
        if rate.rate_bp is None and rate.fixed is None:
            raise BadRequest(f"'level{level}' needs 'rate_bp' or 'fixed'")
        rates[level] = rate
    return rates


def public_rates(rates: dict[int, Rate]) -> dict[str, dict[str, int]]:
    return {f"level{level}": rate.public() for level, rate in sorted(rates.items())}


@dataclass(frozen=True)
class Split:
    """What one paid order earns each level (level 2 never takes more than level 1 left)."""

    level1: int
    level2: int


def split(base: int, quantity: int, rates: dict[int, Rate], levels: int) -> Split:
    first = rates[1].earns(base, quantity) if 1 in rates else 0
    second = rates[2].earns(base, quantity) if levels == 2 and 2 in rates else 0
    return Split(first, min(second, base - first))


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def _int(body: dict[str, Any], name: str, least: int, most: int) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
        raise BadRequest(f"'{name}' must be a whole number from {least} to {most}")
    return value
