"""THE canned replies of each merchant (`service_replies`, their one writer): a title and a text with variables
(server/service/rules.py), filled in for a thread when staff pick one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from server.errors import BadRequest, NotFound
from server.ledger.client import Database, Record, at, ms
from server.protocol import now_ms

MAX_REPLIES = 200


@dataclass(frozen=True)
class Reply:
    id: str
    merchant_id: str
    title: str
    text: str
    updated_at: int

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "updated_at": self.updated_at}


def unknown_reply(reply_id: str) -> NotFound:
    return NotFound(f"no canned reply '{reply_id}'", "unknown_reply")


class Replies:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self, merchant_id: str) -> list[Reply]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM service_replies WHERE merchant_id = $1 ORDER BY title, reply_id LIMIT $2",
            merchant_id,
            MAX_REPLIES,
        )
        return [_reply(row) for row in rows]

    async def get(self, merchant_id: str, reply_id: str) -> Reply:
        row = await self.db.pool.fetchrow(
            "SELECT * FROM service_replies WHERE merchant_id = $1 AND reply_id = $2", merchant_id, reply_id
        )
        if row is None:
            raise unknown_reply(reply_id)
        return _reply(row)

    async def save(self, merchant_id: str, reply_id: str | None, title: str, text: str) -> Reply:
        """Add a reply (no id; at most MAX_REPLIES a shop) or replace one; the reply as stored."""
        if reply_id is None:
            count = await self.db.pool.fetchval("SELECT count(*) FROM service_replies WHERE merchant_id = $1",
                                                merchant_id)  # fmt: skip
            if count >= MAX_REPLIES:
                raise BadRequest(f"a shop keeps at most {MAX_REPLIES} canned replies: remove one first")
            row = await self.db.pool.fetchrow(
                "INSERT INTO service_replies (reply_id, merchant_id, title, body, updated_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING *",
                "cr_" + secrets.token_hex(6),
                merchant_id,
                title,
                text,
                at(now_ms()),
            )
        else:
            row = await self.db.pool.fetchrow(
                "UPDATE service_replies SET title = $3, body = $4, updated_at = $5"
                " WHERE merchant_id = $1 AND reply_id = $2 RETURNING *",
                merchant_id,
                reply_id,
                title,
                text,
                at(now_ms()),
            )
        if row is None:
            raise unknown_reply(reply_id or "")
        return _reply(row)

    async def remove(self, merchant_id: str, reply_id: str) -> Reply:
        row = await self.db.pool.fetchrow(
            "DELETE FROM service_replies WHERE merchant_id = $1 AND reply_id = $2 RETURNING *", merchant_id, reply_id
        )
        if row is None:
            raise unknown_reply(reply_id)
        return _reply(row)


def _reply(row: Record) -> Reply:
    return Reply(row["reply_id"], row["merchant_id"], row["title"], row["body"], ms(row["updated_at"]) or 0)
