"""Chat: posting (length, block list, bans, mutes, rate limit, slow mode) and moderation. Text is data, never HTML."""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis

from server import keys
from server.access.accounts import Accounts
from server.access.tokens import Identity
from server.config import Settings
from server.protocol import STAFF, ErrorCode, ProtocolError, Role, event, now_ms
from server.rooms import record
from server.rooms.catalog import Catalog
from server.rooms.record import RoomRecords
from server.rooms.state import RoomState
from server.rooms.text import Blocklist, clean
from server.store import scripts

_REFUSALS = {
    "banned": (ErrorCode.BANNED, "you have been banned from this room's chat"),
    "muted": (ErrorCode.MUTED, "you are muted for {} more seconds"),
    "rate_limited": (ErrorCode.RATE_LIMITED, "too many messages; wait {} seconds"),
    "slow_mode": (ErrorCode.SLOW_MODE, "slow mode is on; wait {} seconds"),
}


QUOTE_LENGTH = 140  # a public answer's question, as quoted


class Chat:
    """Post and moderate chat messages in rooms."""

    def __init__(
        self, redis: Redis, catalog: Catalog, records: RoomRecords, accounts: Accounts, settings: Settings
    ) -> None:
        self.redis = redis
        self.catalog = catalog
        self.records = records
        self.accounts = accounts
        self.settings = settings
        self._check = scripts.register(redis, __file__, "chat_check")
        self._blocklists: dict[str, tuple[float, Blocklist]] = {}

    async def post(self, room_id: str, room: RoomState, author: Identity, role: Role, address: str, text: str) -> str:
        """Post a message as the author's role in this room; return its id. Staff skip the rate limits and slow
        mode. The text is stored cleaned (server.rooms.text): one that is empty then is refused."""
        if len(text) > self.settings.chat_max_length * 4:
            raise ProtocolError(
                ErrorCode.TOO_LONG, f"messages are limited to {self.settings.chat_max_length} characters"
            )
        text = clean(text)
        if not text:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "the message is empty")
        if len(text) > self.settings.chat_max_length:
            raise ProtocolError(
                ErrorCode.TOO_LONG, f"messages are limited to {self.settings.chat_max_length} characters"
            )
        if (await self.blocklist(room.merchant_id)).find(text) is not None:
            raise ProtocolError(ErrorCode.BLOCKED_WORD, "the message contains a blocked word")
        if role not in STAFF:
            verdict = await self._check(
                keys=[
                    keys.banned(room_id),
                    keys.muted(room_id),
                    keys.chat_rate(room_id, author.user_id),
                    keys.chat_slow(room_id, author.user_id),
                    keys.chat_rate(room_id, f"address:{address}"),
                ],
                args=[
                    author.user_id,
                    author.device_id or "",
                    now_ms(),
                    self.settings.chat_rate_count,
                    self.settings.chat_rate_seconds,
                    room.slow_mode,
                    self.settings.chat_address_rate_count,
                ],
            )
            if verdict != "ok":
                reason, _, seconds = verdict.partition(":")
                code, message = _REFUSALS[reason]
                raise ProtocolError(code, message.format(seconds))
        return await self._say(room_id, author.user_id, author.name, role, text)

    async def answer_in_public(
        self, room_id: str, author_id: str, author_name: str, role: Role, question: str, answer: str
    ) -> str:
        """Post a staff member's answer to a buyer's private question (the buyer allowed it), the question quoted
        without the buyer's name (docs/customer-service.md); return the chat message's id."""
        quote = question if len(question) <= QUOTE_LENGTH else question[: QUOTE_LENGTH - 1] + "…"
        return await self._say(room_id, author_id, author_name, role, answer, question=quote)

    async def _say(self, room_id: str, user_id: str, name: str, role: Role, text: str, **extra: str) -> str:
        """Publish a chat line as it was checked; its id."""
        message_id = secrets.token_hex(6)
        body = {"id": message_id, "user_id": user_id, "name": name, "role": role.value, "text": text, **extra}
        await self.records.publish(room_id, event("chat.message", message=body))
        return message_id

    async def delete(self, room_id: str, message_id: str) -> None:
        await self.records.publish(room_id, event("chat.deleted", message_id=message_id))

    async def set_slow_mode(self, room_id: str, seconds: int) -> None:
        await self.records.publish(room_id, event("chat.slow_mode", seconds=seconds), record.slow_mode(seconds))

    async def _person(self, user_id: str) -> list[str]:
        """Who a ban or mute of `user_id` covers: the account, and the device a guest uses (a new guest on it too)."""
        device_id = await self.accounts.device_of(user_id)
        return [user_id] if device_id is None else [user_id, device_id]

    async def mute(self, room_id: str, user_id: str, seconds: int) -> None:
        until = now_ms() + seconds * 1000
        await self.redis.hset(keys.muted(room_id), mapping=dict.fromkeys(await self._person(user_id), until))

    async def ban(self, room_id: str, user_id: str) -> None:
        await self.redis.sadd(keys.banned(room_id), *await self._person(user_id))

    async def unban(self, room_id: str, user_id: str) -> None:
        person = await self._person(user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(keys.banned(room_id), *person)
            pipe.hdel(keys.muted(room_id), *person)
            await pipe.execute()

    async def is_banned(self, room_id: str, person: Identity) -> bool:
        """Is this person (their account, or the device a guest uses) banned from the room?"""
        who = [person.user_id] if person.device_id is None else [person.user_id, person.device_id]
        return any(await self.redis.smismember(keys.banned(room_id), who))

    async def blocklist(self, merchant_id: str) -> Blocklist:
        """The merchant's block list, kept for BLOCKLIST_CACHE_MS (a change on another process shows after that)."""
        cached = self._blocklists.get(merchant_id)
        if cached is not None and time.monotonic() - cached[0] < self.settings.blocklist_cache_ms / 1000:
            return cached[1]
        blocklist = Blocklist(await self.catalog.get_blocklist(merchant_id))
        self._blocklists[merchant_id] = (time.monotonic(), blocklist)
        return blocklist

    async def set_blocklist(self, merchant_id: str, words: list[str]) -> list[str]:
        """Replace the merchant's block list; it applies at once on this process. Returns the stored list."""
        await self.catalog.set_blocklist(merchant_id, [word.strip().casefold() for word in words if word.strip()])
        self._blocklists.pop(merchant_id, None)
        return await self.catalog.get_blocklist(merchant_id)
