"""THE customer-service threads, their messages and the buyers' blocks (`service_threads`, `service_messages`,
`service_blocks`: their one writer), and the first-response figures of shows.

A message and its thread's new state are written in one transaction, the thread's row locked: a buyer's
message opens the thread (and starts a wait if none was running), a staff message leaves it pending on the
buyer (and ends the wait, recording how long it was). A message sent twice with the same key is stored once
(the unique constraint on thread, author and key); the replay returns the stored one.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.access.tokens import Identity
from server.errors import Conflict, NotFound
from server.ledger.client import Connection, Database, Record, at, ms
from server.protocol import Role, now_ms
from server.service.rules import Message, ServiceRefused, Thread, state_after, unknown_thread

_MESSAGE = (
    "m.message_id, m.thread_id, m.side, m.author_id, m.author_name, m.author_role, m.body, m.created_at, m.room_id,"
    " m.order_id, m.product_id, m.public_state, m.question_id, q.body AS question"
)
_MESSAGES = f"SELECT {_MESSAGE} FROM service_messages m LEFT JOIN service_messages q ON q.message_id = m.question_id"
_THREAD = (
    "SELECT t.*,"
    " (SELECT count(*) FROM service_messages m WHERE m.thread_id = t.thread_id AND m.side = 'staff'"
    "  AND m.message_id > t.buyer_read) AS unread_buyer,"
    " (SELECT count(*) FROM service_messages m WHERE m.thread_id = t.thread_id AND m.side = 'buyer'"
    "  AND m.message_id > t.staff_read) AS unread_staff,"
    " EXISTS (SELECT 1 FROM service_blocks b WHERE b.user_id = t.user_id AND b.merchant_id = t.merchant_id)"
    "  AS blocked"
    " FROM service_threads t"
)


@dataclass(frozen=True)
class Draft:
    """A message to append: who writes, what, and what it is about."""

    side: str
    author: Identity
    role: Role  # viewer for the buyer
    text: str
    key: str
    room_id: str | None = None
    order_id: str | None = None
    product_id: str | None = None
    question_id: int | None = None  # a staff answer asked to go public: the buyer's question


@dataclass(frozen=True)
class Appended:
    thread: Thread
    message: Message
    created: bool  # False: the same key was sent before, nothing stored


@dataclass(frozen=True)
class ThreadPage:
    threads: list[Thread]
    counts: dict[str, int]


class Threads:
    """Threads and messages in PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- writing ----------------------------------------------------------------------------------

    async def ask(self, merchant_id: str, draft: Draft, show_id: Callable[[], Awaitable[str | None]]) -> Appended:
        """A buyer's message to the merchant, their thread made by the first one. `show_id` names the show live in
        the message's room, asked only when the message starts a wait."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            now = now_ms()
            await connection.execute(
                "INSERT INTO service_threads (thread_id, merchant_id, user_id, buyer_name, state, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, 'open', $5, $5) ON CONFLICT (merchant_id, user_id) DO NOTHING",
                "t_" + secrets.token_hex(8),
                merchant_id,
                draft.author.user_id,
                draft.author.name,
                at(now),
            )
            row = await connection.fetchrow(
                "SELECT * FROM service_threads WHERE merchant_id = $1 AND user_id = $2 FOR UPDATE",
                merchant_id,
                draft.author.user_id,
            )
            assert row is not None
            return await self._append(connection, row, draft, show_id)

    async def answer(self, merchant_id: str, thread_id: str, draft: Draft) -> Appended:
        """A staff member's message in a thread of their merchant (a public answer's request too)."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await self._locked(connection, merchant_id, thread_id)
            return await self._append(connection, row, draft, _no_show)

    async def _append(
        self, connection: Connection, row: Record, draft: Draft, show_id: Callable[[], Awaitable[str | None]]
    ) -> Appended:
        thread_id = row["thread_id"]
        replay = await connection.fetchrow(
            f"{_MESSAGES} WHERE m.thread_id = $1 AND m.author_id = $2 AND m.client_key = $3",
            thread_id,
            draft.author.user_id,
            draft.key,
        )
        if replay is not None:
            return Appended(await self._thread(connection, thread_id), _message(replay), False)
        if await _blocked(connection, row["user_id"], row["merchant_id"]):
            if draft.side == "buyer":
                raise ServiceRefused("you blocked this shop: unblock it to write to them", "merchant_blocked", 403)
            raise ServiceRefused("this buyer blocked the shop: they cannot be written to", "blocked_by_buyer", 403)
        question = None
        if draft.question_id is not None:
            question = await connection.fetchrow(
                "SELECT room_id FROM service_messages WHERE message_id = $1 AND thread_id = $2 AND side = 'buyer'",
                draft.question_id,
                thread_id,
            )
            if question is None:
                raise NotFound(f"no question {draft.question_id} from the buyer here", "unknown_message")
            if question["room_id"] is None:
                raise ServiceRefused("this question was not asked in a room: answer it privately", "no_room", 409)
        now = now_ms()
        waiting_since: datetime | None = row["waiting_since"]
        starts_wait = draft.side == "buyer" and waiting_since is None
        show = await show_id() if starts_wait and draft.room_id else None
        ends_wait = draft.side == "staff" and waiting_since is not None
        response_ms = now - (ms(waiting_since) or now) if ends_wait else None
        message_id = await connection.fetchval(
            "INSERT INTO service_messages (thread_id, merchant_id, side, author_id, author_name, author_role, body,"
            " client_key, room_id, order_id, product_id, show_id, starts_wait, response_ms, public_state, question_id,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            " RETURNING message_id",
            thread_id,
            row["merchant_id"],
            draft.side,
            draft.author.user_id,
            draft.author.name,
            draft.role.value,
            draft.text,
            draft.key,
            draft.room_id if question is None else question["room_id"],
            draft.order_id,
            draft.product_id,
            show if starts_wait else (row["waiting_show"] if ends_wait else None),
            starts_wait,
            response_ms,
            None if question is None else "asked",
            draft.question_id,
            at(now),
        )
        if draft.side == "buyer":
            await connection.execute(
                "UPDATE service_threads SET state = 'open', last_message_id = $2, updated_at = $3,"
                " buyer_name = $4, room_id = COALESCE($5, room_id), buyer_read = $2, buyer_delivered = $2,"
                " waiting_since = COALESCE(waiting_since, $3), waiting_show = CASE WHEN waiting_since IS NULL"
                " THEN $6 ELSE waiting_show END WHERE thread_id = $1",
                thread_id,
                message_id,
                at(now),
                draft.author.name,
                draft.room_id,
                show,
            )
        else:
            await connection.execute(
                f"UPDATE service_threads SET state = '{state_after('staff')}', last_message_id = $2,"
                " updated_at = $3, staff_read = $2, waiting_since = NULL, waiting_show = NULL,"
                " assignee_id = COALESCE(assignee_id, $4), assignee_name = COALESCE(assignee_name, $5)"
                " WHERE thread_id = $1",
                thread_id,
                message_id,
                at(now),
                draft.author.user_id,
                draft.author.name,
            )
        message = await self._message(connection, message_id)
        return Appended(await self._thread(connection, thread_id), message, True)

    async def decide_public(
        self, merchant_id: str, user_id: str, message_id: int, allow: bool, post: Callable[[Message], Awaitable[None]]
    ) -> tuple[Thread, Message]:
        """The buyer's answer to a staff request to answer their question in public. Allowed, `post` puts it in the
        room's chat before the decision commits: a failed post leaves it asked, for the buyer to try again."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT thread_id FROM service_threads WHERE merchant_id = $1 AND user_id = $2 FOR UPDATE",
                merchant_id,
                user_id,
            )
            if row is None:
                raise NotFound(f"no message {message_id} for you here", "unknown_message")
            decided = await connection.fetchval(
                "UPDATE service_messages SET public_state = $3 WHERE message_id = $1 AND thread_id = $2"
                " AND public_state = 'asked' RETURNING message_id",
                message_id,
                row["thread_id"],
                "posted" if allow else "declined",
            )
            if decided is None:
                found = await connection.fetchval(
                    "SELECT public_state FROM service_messages WHERE message_id = $1 AND thread_id = $2",
                    message_id,
                    row["thread_id"],
                )
                if found is None:
                    raise NotFound(f"no message {message_id} for you here", "unknown_message")
                raise Conflict(f"you already answered this request ({found})", "not_asked")
            message = await self._message(connection, message_id)
            if allow:
                await post(message)
            await connection.execute(
                "UPDATE service_threads SET updated_at = $2 WHERE thread_id = $1", row["thread_id"], at(now_ms())
            )
            return await self._thread(connection, row["thread_id"]), message

    async def set_state(self, merchant_id: str, thread_id: str, state: str) -> tuple[Thread, str]:
        """Set a thread's state; the new thread and the state it had."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await self._locked(connection, merchant_id, thread_id)
            await connection.execute(
                "UPDATE service_threads SET state = $2, updated_at = $3 WHERE thread_id = $1",
                thread_id,
                state,
                at(now_ms()),
            )
            return await self._thread(connection, thread_id), str(row["state"])

    async def assign(
        self, merchant_id: str, thread_id: str, assignee_id: str | None, assignee_name: str | None
    ) -> tuple[Thread, str | None]:
        """Assign a thread (or nobody); the new thread and who had it."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await self._locked(connection, merchant_id, thread_id)
            await connection.execute(
                "UPDATE service_threads SET assignee_id = $2, assignee_name = $3, updated_at = $4 WHERE thread_id = $1",
                thread_id,
                assignee_id,
                assignee_name,
                at(now_ms()),
            )
            return await self._thread(connection, thread_id), row["assignee_id"]

    async def receipt(
        self, merchant_id: str, thread_id: str, side: str, read: int | None, delivered: int | None
    ) -> tuple[Thread, bool]:
        """Move a side's read (and the buyer's delivered) marks forward, never past the newest message, never back;
        the thread and whether anything moved."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            row = await self._locked(connection, merchant_id, thread_id)

            def moved(mark: str, to: int | None) -> int:
                return max(int(row[mark]), min(to or 0, int(row["last_message_id"])))  # forward, not past the newest

            marks = (
                {
                    "buyer_read": moved("buyer_read", read),
                    "buyer_delivered": moved("buyer_delivered", max(read or 0, delivered or 0)),
                }
                if side == "buyer"
                else {"staff_read": moved("staff_read", read)}
            )
            changed = {mark: value for mark, value in marks.items() if value != row[mark]}
            if changed:
                columns = ", ".join(f"{mark} = ${number}" for number, mark in enumerate(changed, 2))
                await connection.execute(
                    f"UPDATE service_threads SET {columns} WHERE thread_id = $1", thread_id, *changed.values()
                )
            return await self._thread(connection, thread_id), bool(changed)

    async def block(self, user_id: str, merchant_id: str, blocked: bool) -> Thread | None:
        """The buyer blocks the merchant (or lifts it); their thread, if they have one."""
        async with self.db.pool.acquire() as connection, connection.transaction():
            if blocked:
                await connection.execute(
                    "INSERT INTO service_blocks (user_id, merchant_id, blocked_at) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    user_id,
                    merchant_id,
                    at(now_ms()),
                )
            else:
                await connection.execute(
                    "DELETE FROM service_blocks WHERE user_id = $1 AND merchant_id = $2", user_id, merchant_id
                )
            thread_id = await connection.fetchval(
                "SELECT thread_id FROM service_threads WHERE merchant_id = $1 AND user_id = $2", merchant_id, user_id
            )
            return None if thread_id is None else await self._thread(connection, thread_id)

    async def purge(self, before: datetime) -> int:
        """Remove the threads (and their messages) whose last message is older than `before`."""
        status = await self.db.pool.execute("DELETE FROM service_threads WHERE updated_at < $1", before)
        return int(status.split()[-1])

    # --- reading ----------------------------------------------------------------------------------

    async def get(self, merchant_id: str, thread_id: str) -> Thread:
        row = await self.db.pool.fetchrow(f"{_THREAD} WHERE t.thread_id = $1 AND t.merchant_id = $2", thread_id,
                                          merchant_id)  # fmt: skip
        if row is None:
            raise unknown_thread(thread_id)
        return (await self._with_last([row]))[0]

    async def of_buyer(self, merchant_id: str, user_id: str) -> Thread | None:
        row = await self.db.pool.fetchrow(f"{_THREAD} WHERE t.merchant_id = $1 AND t.user_id = $2", merchant_id,
                                          user_id)  # fmt: skip
        return None if row is None else (await self._with_last([row]))[0]

    async def blocked(self, user_id: str, merchant_id: str) -> bool:
        async with self.db.pool.acquire() as connection:
            return await _blocked(connection, user_id, merchant_id)

    async def buyer_threads(self, user_id: str, limit: int = 100) -> list[Thread]:
        rows = await self.db.pool.fetch(
            f"{_THREAD} WHERE t.user_id = $1 ORDER BY t.updated_at DESC LIMIT $2", user_id, limit
        )
        return await self._with_last(rows)

    async def staff_threads(
        self, merchant_id: str, state: str | None, assignee: str | None, before: int | None, limit: int
    ) -> ThreadPage:
        """The merchant's threads newest activity first; `assignee` a user id, "none" (unassigned) or None (all)."""
        rows = await self.db.pool.fetch(
            f"{_THREAD} WHERE t.merchant_id = $1 AND ($2::text IS NULL OR t.state = $2)"
            " AND ($3::text IS NULL OR ($3 = 'none' AND t.assignee_id IS NULL) OR t.assignee_id = $3)"
            " AND ($4::timestamptz IS NULL OR t.updated_at < $4) ORDER BY t.updated_at DESC LIMIT $5",
            merchant_id,
            state,
            assignee,
            at(before),
            limit,
        )
        counted = await self.db.pool.fetch(
            "SELECT t.state, count(*) AS threads, sum((SELECT count(*) FROM service_messages m"
            " WHERE m.thread_id = t.thread_id AND m.side = 'buyer' AND m.message_id > t.staff_read)) AS unread"
            " FROM service_threads t WHERE t.merchant_id = $1 GROUP BY t.state",
            merchant_id,
        )
        counts = {state: 0 for state in ("open", "pending", "resolved")} | {"unread": 0}
        for row in counted:
            counts[row["state"]] = int(row["threads"])
            counts["unread"] += int(row["unread"] or 0)
        return ThreadPage(await self._with_last(rows), counts)

    async def messages(self, thread_id: str, before: int | None, limit: int) -> tuple[list[Message], bool]:
        """A thread's messages oldest first: the newest `limit` of those before `before`; whether there are more."""
        rows = await self.db.pool.fetch(
            f"{_MESSAGES} WHERE m.thread_id = $1 AND ($2::bigint IS NULL OR m.message_id < $2)"
            " ORDER BY m.message_id DESC LIMIT $3",
            thread_id,
            before,
            limit + 1,
        )
        return [_message(row) for row in reversed(rows[:limit])], len(rows) > limit

    async def message(self, thread_id: str, message_id: int) -> Message | None:
        row = await self.db.pool.fetchrow(f"{_MESSAGES} WHERE m.message_id = $1 AND m.thread_id = $2", message_id,
                                          thread_id)  # fmt: skip
        return None if row is None else _message(row)

    async def shows(self, show_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each show's questions, answers, how long the first response took (median, 90th percentile), waiting."""
        rows = await self.db.pool.fetch(
            "SELECT s.show_id,"
            " (SELECT count(*) FROM service_messages m WHERE m.show_id = s.show_id AND m.starts_wait) AS questions,"
            " (SELECT count(*) FROM service_messages m WHERE m.show_id = s.show_id AND m.response_ms IS NOT NULL)"
            "  AS answered,"
            " (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY m.response_ms) FROM service_messages m"
            "  WHERE m.show_id = s.show_id AND m.response_ms IS NOT NULL) AS median,"
            " (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY m.response_ms) FROM service_messages m"
            "  WHERE m.show_id = s.show_id AND m.response_ms IS NOT NULL) AS p90,"
            " (SELECT count(*) FROM service_threads t WHERE t.waiting_show = s.show_id"
            "  AND t.waiting_since IS NOT NULL) AS waiting"
            " FROM unnest($1::text[]) AS s(show_id)",
            list(show_ids),
        )
        return {
            row["show_id"]: {
                "questions": row["questions"],
                "answered": row["answered"],
                "waiting": row["waiting"],
                "first_response_ms": {"median": row["median"], "p90": row["p90"]},
            }
            for row in rows
        }

    # --- inside a transaction ---------------------------------------------------------------------

    async def _locked(self, connection: Connection, merchant_id: str, thread_id: str) -> Record:
        row = await connection.fetchrow(
            "SELECT * FROM service_threads WHERE thread_id = $1 AND merchant_id = $2 FOR UPDATE",
            thread_id,
            merchant_id,
        )
        if row is None:
            raise unknown_thread(thread_id)
        return row

    async def _thread(self, connection: Connection, thread_id: str) -> Thread:
        row = await connection.fetchrow(f"{_THREAD} WHERE t.thread_id = $1", thread_id)
        assert row is not None
        return (await self._with_last([row], connection))[0]

    async def _message(self, connection: Connection, message_id: int) -> Message:
        row = await connection.fetchrow(f"{_MESSAGES} WHERE m.message_id = $1", message_id)
        assert row is not None
        return _message(row)

    async def _with_last(self, rows: Sequence[Record], connection: Connection | None = None) -> list[Thread]:
        """The threads of `rows`, each with its newest message."""
        ids = [row["last_message_id"] for row in rows if row["last_message_id"]]
        found = await (connection or self.db.pool).fetch(f"{_MESSAGES} WHERE m.message_id = ANY($1::bigint[])", ids)
        last = {row["message_id"]: _message(row) for row in found}
        return [_thread(row, last.get(row["last_message_id"])) for row in rows]


async def _no_show() -> str | None:
    return None


async def _blocked(connection: Connection, user_id: str, merchant_id: str) -> bool:
    return bool(
        await connection.fetchval(
            "SELECT 1 FROM service_blocks WHERE user_id = $1 AND merchant_id = $2", user_id, merchant_id
        )
    )


def _message(row: Record) -> Message:
    return Message(
        id=row["message_id"],
        thread_id=row["thread_id"],
        side=row["side"],
        author_id=row["author_id"],
        author_name=row["author_name"],
        author_role=row["author_role"],
        text=row["body"],
        at=ms(row["created_at"]) or 0,
        room_id=row["room_id"],
        order_id=row["order_id"],
        product_id=row["product_id"],
        public_state=row["public_state"],
        question_id=row["question_id"],
        question=row["question"],
    )


def _thread(row: Record, last: Message | None) -> Thread:
    return Thread(
        id=row["thread_id"],
        merchant_id=row["merchant_id"],
        user_id=row["user_id"],
        buyer_name=row["buyer_name"],
        state=row["state"],
        assignee_id=row["assignee_id"],
        assignee_name=row["assignee_name"],
        room_id=row["room_id"],
        last_message_id=row["last_message_id"],
        buyer_read=row["buyer_read"],
        buyer_delivered=row["buyer_delivered"],
        staff_read=row["staff_read"],
        waiting_since=ms(row["waiting_since"]),
        created_at=ms(row["created_at"]) or 0,
        updated_at=ms(row["updated_at"]) or 0,
        blocked=row["blocked"],
        unread_buyer=row["unread_buyer"],
        unread_staff=row["unread_staff"],
        last_message=last,
    )
