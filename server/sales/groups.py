"""Group buys (docs/group-buys.md) without I/O: an offer's group terms, a group as the scripts keep it, its public
form, and the checks of what hosts send."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

MAX_SIZE = 50  # members of one group
MAX_WINDOW = 24 * 3600  # seconds
STATES = ("pending", "open", "filled", "failed", "cancelled")
FORMING = ("pending", "open")
BOARD_SIZE = 20  # open groups a board shows
if TYPE_CHECKING:
    from server.sales.records import Order

_GROUP_ID = re.compile(r"^(s_[0-9a-f]{10})\.g[0-9a-f]{12}$")


@dataclass(frozen=True)
class GroupTerms:
    """What makes a sale a group-buy offer: members per group, the window to fill it, the leader's price."""

    size: int
    window_ms: int
    leader_price: int | None = None

    @classmethod
    def from_json(cls, raw: str | bytes) -> GroupTerms:
        data = orjson.loads(raw)
        return cls(int(data["size"]), int(data["window_ms"]), data.get("leader_price"))

    def to_json(self) -> str:
        data: dict[str, int] = {"size": self.size, "window_ms": self.window_ms}
        if self.leader_price is not None:
            data["leader_price"] = self.leader_price
        return orjson.dumps(data).decode()

    def public(self) -> dict[str, Any]:
        return {"size": self.size, "window_seconds": self.window_ms // 1000, "leader_price": self.leader_price}


@dataclass(frozen=True)
class Member:
    order_id: str
    user_id: str
    name: str
    paid: bool
    leader: bool


@dataclass(frozen=True)
class Group:
    id: str
    sale_id: str
    leader: str  # user id
    size: int
    state: str  # one of STATES
    members: tuple[Member, ...]
    created_at: int
    version: int
    opened_at: int | None = None  # the leader paid: the window started
    expires_at: int | None = None  # the window ends (an open group fails then)
    closed_at: int | None = None  # filled, failed or cancelled

    @classmethod
    def from_json(cls, raw: str | bytes) -> Group:
        data = orjson.loads(raw)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Group:
        return cls(
            id=data["id"],
            sale_id=sale_of_group(data["id"]) or "",
            leader=data["leader"],
            size=int(data["size"]),
            state=data["state"],
            members=tuple(
                Member(item["order_id"], item["user_id"], item["name"], bool(item["paid"]), bool(item["leader"]))
                for item in data["members"]
            ),
            created_at=int(data["created_at"]),
            version=int(data["version"]),
            opened_at=_optional_int(data.get("opened_at")),
            expires_at=_optional_int(data.get("expires_at")),
            closed_at=_optional_int(data.get("closed_at")),
        )

    def to_json(self) -> str:
        """The group as the scripts keep it (the inverse of from_json)."""
        data: dict[str, Any] = {
            "id": self.id,
            "leader": self.leader,
            "size": self.size,
            "state": self.state,
            "members": [
                {"order_id": m.order_id, "user_id": m.user_id, "name": m.name, "paid": m.paid, "leader": m.leader}
                for m in self.members
            ],
            "created_at": self.created_at,
            "version": self.version,
        }
        moments = {"opened_at": self.opened_at, "expires_at": self.expires_at, "closed_at": self.closed_at}
        data.update({name: value for name, value in moments.items() if value is not None})
        return orjson.dumps(data).decode()

    def public(self) -> dict[str, Any]:
        """What anyone may see: names as members gave them, never user or order ids."""
        return {
            "id": self.id,
            "sale_id": self.sale_id,
            "state": self.state,
            "size": self.size,
            "joined": len(self.members),
            "paid": sum(member.paid for member in self.members),
            "members": [{"name": member.name, "paid": member.paid, "leader": member.leader} for member in self.members],
            "created_at": self.created_at,
            "opened_at": self.opened_at,
            "expires_at": self.expires_at,
            "closed_at": self.closed_at,
            "version": self.version,
        }

    def staff(self) -> dict[str, Any]:
        """What the merchant's staff see: the public form with each member's order and user."""
        public = self.public()
        public["members"] = [
            {**shown, "order_id": member.order_id, "user_id": member.user_id}
            for shown, member in zip(public["members"], self.members, strict=True)
        ]
        return public


def rebuilt(group: Group, orders: Mapping[str, Order], window_ms: int, now: int) -> Group:
    """A forming group as its members' orders say it is (repair-sale: the record's group may be older than its
    orders): members whose order went are out, payments count, a group whose member was refunded failed, a leader
    who went cancels a pending group, a leader's payment opens it and the N-th fills it. A closed group stays."""
    if group.state not in FORMING:
        return group
    statuses = {member.order_id: orders[member.order_id].status for member in group.members}
    members = tuple(
        replace(member, paid=statuses[member.order_id] == "paid")
        for member in group.members
        if statuses[member.order_id] in ("held", "paid")
    )
    leader = next((orders[m.order_id] for m in group.members if m.leader), None)
    state, opened_at, expires_at, closed_at = group.state, group.opened_at, group.expires_at, group.closed_at
    if "refunded" in statuses.values():
        state, closed_at, members = "failed", now, group.members
    elif leader is None or leader.status not in ("held", "paid"):
        state, closed_at, members = "cancelled", now, group.members
    else:
        if state == "pending" and leader.status == "paid":
            state, opened_at = "open", leader.paid_at
            expires_at = (leader.paid_at or now) + window_ms
        if sum(member.paid for member in members) == group.size:
            state, closed_at = "filled", now
    changed = replace(
        group, state=state, members=members, opened_at=opened_at, expires_at=expires_at, closed_at=closed_at
    )
    return changed if changed == group else replace(changed, version=group.version + 1)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def new_group_id(sale_id: str) -> str:
    """A new random group id of the offer: "<sale id>.g<12 hex>" (the open script refuses one in use: `taken`)."""
    return f"{sale_id}.g{secrets.token_hex(6)}"


def sale_of_group(group_id: str) -> str | None:
    """The offer a group id belongs to (group ids are "<sale id>.g<12 hex>"), None for a malformed id."""
    match = _GROUP_ID.match(group_id)
    return None if match is None else match[1]
