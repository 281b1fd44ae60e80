"""The service desk: what each customer-service request does (docs/customer-service.md): who may, the rate limits,
the message's checks, the audit entry of every staff action, then the personal events that tell both sides."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from server import metrics
from server.access.accounts import Accounts
from server.access.limits import Limits, Rule
from server.access.tokens import Actor, Identity
from server.config import Settings
from server.errors import BadRequest, NotFound
from server.ledger.audit import AuditLog
from server.live.personal import Audience, Delivery, to_staff, to_user
from server.protocol import Role, event
from server.rooms.catalog import Catalog
from server.rooms.chat import Chat
from server.rooms.shows import Shows
from server.sales.ledger import SalesLedger
from server.sales.records import Order, Sale
from server.service import rules
from server.service.replies import Replies, Reply
from server.service.rules import Message, ServiceRefused, Thread
from server.service.threads import Appended, Draft, ThreadPage, Threads

ORDERS_SHOWN = 20  # a buyer's orders in a shop, beside their thread


class Desk:
    def __init__(
        self,
        threads: Threads,
        replies: Replies,
        delivery: Delivery,
        limits: Limits,
        audit: AuditLog,
        chat: Chat,
        catalog: Catalog,
        shows: Shows,
        sales: SalesLedger,
        accounts: Accounts,
        settings: Settings,
    ) -> None:
        self.threads = threads
        self.replies = replies
        self.delivery = delivery
        self.limits = limits
        self.audit = audit
        self.chat = chat
        self.catalog = catalog
        self.shows = shows
        self.sales = sales
        self.accounts = accounts
        self.settings = settings

    # --- the buyer's side -------------------------------------------------------------------------

    async def ask(self, buyer: Identity, address: str, merchant_id: str, body: dict[str, Any], key: str) -> Appended:
        """A buyer's message to the shop (their thread made by the first one); the same key stores it once."""
        _member(buyer)
        await self._shop(merchant_id)
        room_id = rules.optional_id(body, "room_id")
        if room_id is not None:
            room = await self.catalog.get_room(room_id)
            if room is None or room.merchant_id != merchant_id:
                raise NotFound(f"no room '{room_id}' of this shop", "unknown_room")
        text = rules.check_text(body.get("text"), self.settings.service_message_max_length,
                                await self.chat.blocklist(merchant_id))  # fmt: skip
        order_id, product_id = rules.optional_id(body, "order_id"), rules.optional_id(body, "product_id")
        await self.limits.take(
            "you are sending messages too fast",
            (Rule("service-messages", *self.settings.limit_service_messages), buyer.user_id),
            (Rule("service-address", *self.settings.limit_service_address), address),
            attempt=f"service:{buyer.user_id}:{key}",
        )
        draft = Draft("buyer", buyer, Role.VIEWER, text, key, room_id, order_id, product_id)

        async def live_show() -> str | None:
            show = None if room_id is None else await self.shows.current(room_id)
            return None if show is None else show.id

        asked = await self.threads.ask(merchant_id, draft, live_show)
        appended = replace(asked, thread=await self._named(asked.thread))
        if appended.created:
            metrics.SERVICE_MESSAGES.labels("buyer").inc()
            await self._tell_message(appended.thread, appended.message)
        return appended

    async def conversation(
        self, buyer: Identity, merchant_id: str, before: int | None, limit: int
    ) -> tuple[Thread | None, list[Message], bool, bool]:
        """The buyer's thread with the shop, a page of its messages, whether there are more, whether the buyer
        blocked the shop (also before any thread)."""
        thread = await self.threads.of_buyer(merchant_id, buyer.user_id)
        if thread is None:
            await self._shop(merchant_id)
            return None, [], False, await self.threads.blocked(buyer.user_id, merchant_id)
        messages, more = await self.threads.messages(thread.id, before, limit)
        return await self._named(thread), messages, more, thread.blocked

    async def buyer_threads(self, buyer: Identity) -> list[Thread]:
        return [await self._named(thread) for thread in await self.threads.buyer_threads(buyer.user_id)]

    async def buyer_receipt(
        self, buyer: Identity, merchant_id: str, read: int | None, delivered: int | None
    ) -> Thread | None:
        thread = await self.threads.of_buyer(merchant_id, buyer.user_id)
        if thread is None:
            return None
        thread, moved = await self.threads.receipt(merchant_id, thread.id, "buyer", read, delivered)
        if moved:
            await self._tell_thread(thread)
        return await self._named(thread)

    async def decide_public(
        self, buyer: Identity, merchant_id: str, message_id: int, allow: bool
    ) -> tuple[Thread, Message]:
        """The buyer allows a staff answer to go to the room's chat (posted there at once) or keeps it private."""

        async def post(message: Message) -> None:
            assert message.room_id is not None and message.question is not None
            await self.chat.answer_in_public(message.room_id, message.author_id, message.author_name,
                                             Role(message.author_role), message.question, message.text)  # fmt: skip

        thread, message = await self.threads.decide_public(merchant_id, buyer.user_id, message_id, allow, post)
        thread = await self._named(thread)
        await self._tell_message(thread, message)  # a message changed: never coalesced away, as a new one
        return thread, message

    async def block(self, buyer: Identity, merchant_id: str, blocked: bool) -> Thread | None:
        _member(buyer)
        await self._shop(merchant_id)
        thread = await self.threads.block(buyer.user_id, merchant_id, blocked)
        if thread is not None:
            await self._tell_thread(thread)
        return None if thread is None else await self._named(thread)

    async def orders(self, buyer: Identity, merchant_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The buyer's orders (every id they bought under), newest first, each with its shop's name."""
        found = await self.sales.orders_of([buyer.user_id, *buyer.aliases], merchant_id, limit)
        names = {shop: await self._shop_name(shop) for shop in {sale.merchant_id for _, sale in found}}
        return [
            {**_order(order, sale), "merchant_id": sale.merchant_id, "merchant_name": names[sale.merchant_id]}
            for order, sale in found
        ]

    # --- the staff's side -------------------------------------------------------------------------

    async def answer(self, actor: Actor, thread_id: str, text: object, key: str) -> Appended:
        """A staff member's answer (the thread pending on the buyer; theirs, when nobody had it)."""
        checked = rules.check_text(text, self.settings.service_message_max_length,
                                   await self.chat.blocklist(actor.merchant_id))  # fmt: skip
        return await self._staff_message(actor, thread_id, checked, key, None)

    async def ask_public(self, actor: Actor, thread_id: str, question_id: object, text: object, key: str) -> Appended:
        """A staff answer meant for the room's chat: the buyer is asked first (docs/customer-service.md)."""
        question = rules.message_id(question_id, "message_id")
        checked = rules.check_text(text, self.settings.chat_max_length, await self.chat.blocklist(actor.merchant_id))
        return await self._staff_message(actor, thread_id, checked, key, question)

    async def _staff_message(
        self, actor: Actor, thread_id: str, text: str, key: str, question_id: int | None
    ) -> Appended:
        await self.limits.take(
            "you are sending messages too fast",
            (Rule("service-staff", *self.settings.limit_service_staff), actor.user_id),
            attempt=f"service:{actor.user_id}:{key}",
        )
        draft = Draft("staff", actor.identity, actor.role, text, key, question_id=question_id)
        action = "service.replied" if question_id is None else "service.public_asked"
        async with self.audit.change(actor, action, thread_id) as entry:
            appended = await self.threads.answer(actor.merchant_id, thread_id, draft)
            entry.after = appended.message.public()
        if appended.created:
            metrics.SERVICE_MESSAGES.labels("staff").inc()
            await self._tell_message(appended.thread, appended.message)
        return appended

    async def inbox(
        self, actor: Actor, state: str | None, assignee: str | None, before: int | None, limit: int
    ) -> ThreadPage:
        if state is not None:
            rules.check_state(state)
        if assignee == "me":
            assignee = actor.user_id
        return await self.threads.staff_threads(actor.merchant_id, state, assignee, before, limit)

    async def thread(
        self, actor: Actor, thread_id: str, before: int | None, limit: int
    ) -> tuple[Thread, list[Message], bool, list[dict[str, Any]]]:
        """A thread, a page of its messages, and the buyer's orders in this shop."""
        thread = await self.threads.get(actor.merchant_id, thread_id)
        messages, more = await self.threads.messages(thread_id, before, limit)
        user = await self._user_ids(thread.user_id)
        found = await self.sales.orders_of(user, actor.merchant_id, ORDERS_SHOWN)
        return thread, messages, more, [_order(order, sale) for order, sale in found]

    async def set_state(self, actor: Actor, thread_id: str, state: object) -> Thread:
        checked = rules.check_state(state)
        async with self.audit.change(actor, "service.state_changed", thread_id) as entry:
            thread, before = await self.threads.set_state(actor.merchant_id, thread_id, checked)
            entry.before, entry.after = {"state": before}, {"state": checked}
        await self._tell_thread(thread)
        return thread

    async def assign(self, actor: Actor, thread_id: str, user_id: object) -> Thread:
        """Assign the thread to a staff member of the shop (the caller, or one the staff list has), or nobody."""
        if user_id is not None and not isinstance(user_id, str):
            raise BadRequest("'user_id' must be a staff member's id, or null for nobody")
        name = None
        if user_id == actor.user_id:
            name = actor.name
        elif user_id is not None:
            member = next((m for m in await self.accounts.staff(actor.merchant_id) if m.user_id == user_id), None)
            if member is None:
                raise ServiceRefused(f"'{user_id}' is not on this shop's staff", "not_staff")
            name = member.name
        async with self.audit.change(actor, "service.assigned", thread_id) as entry:
            thread, before = await self.threads.assign(actor.merchant_id, thread_id, user_id, name)
            entry.before, entry.after = {"assignee": before}, {"assignee": user_id}
        await self._tell_thread(thread)
        return thread

    async def staff_receipt(self, actor: Actor, thread_id: str, read: int | None) -> Thread:
        """The staff read the thread up to `read` (audited when it moved: who read a buyer's messages, and when)."""
        async with self.audit.change(actor, "service.read", thread_id) as entry:
            thread, moved = await self.threads.receipt(actor.merchant_id, thread_id, "staff", read, None)
            entry.after = {"read": thread.staff_read}
        if moved:
            await self._tell_thread(thread)
        return thread

    async def filled_replies(self, actor: Actor, thread_id: str) -> list[dict[str, Any]]:
        """The shop's canned replies with their variables filled in for this thread's buyer."""
        thread = await self.threads.get(actor.merchant_id, thread_id)
        order_id = thread.last_message.order_id if thread.last_message else None
        if order_id is None:
            newest = await self.sales.orders_of(await self._user_ids(thread.user_id), actor.merchant_id, 1)
            order_id = newest[0][0].id if newest else None
        values = {
            "buyer_name": thread.buyer_name,
            "order_number": "" if order_id is None else rules.order_number(order_id),
            "shop_name": await self._shop_name(actor.merchant_id),
            "staff_name": actor.name,
        }
        return [
            {"id": reply.id, "title": reply.title, "text": rules.fill(reply.text, values)}
            for reply in await self.replies.all(actor.merchant_id)
        ]

    async def save_reply(self, actor: Actor, reply_id: str | None, body: dict[str, Any]) -> Reply:
        limit = self.settings.service_message_max_length
        title, text = rules.check_template(body.get("title"), body.get("text"), limit)
        before = None if reply_id is None else (await self.replies.get(actor.merchant_id, reply_id)).public()
        async with self.audit.change(actor, "service.reply_saved", reply_id or "", before) as entry:
            reply = await self.replies.save(actor.merchant_id, reply_id, title, text)
            entry.subject, entry.after = reply.id, reply.public()
        return reply

    async def remove_reply(self, actor: Actor, reply_id: str) -> None:
        async with self.audit.change(actor, "service.reply_removed", reply_id) as entry:
            entry.before = (await self.replies.remove(actor.merchant_id, reply_id)).public()

    async def show_figures(self, actor: Actor, room_id: str, limit: int) -> list[dict[str, Any]]:
        """The first-response figures of the room's shows: the live one first, then the ended ones, newest first."""
        room = await self.catalog.get_room(room_id)
        if room is None or room.merchant_id != actor.merchant_id:
            raise NotFound(f"no room '{room_id}' in this shop", "unknown_room")
        live = await self.shows.current(room_id)
        shows = ([] if live is None else [live]) + await self.shows.of_room(room_id, limit)
        shows = shows[:limit]
        figures = await self.threads.shows([show.id for show in shows])
        return [
            {"show_id": show.id, "started_at": show.started_at, "ended_at": show.ended_at, **figures[show.id]}
            for show in shows
        ]

    # --- both -------------------------------------------------------------------------------------

    async def typing(self, identity: Identity, merchant_id: str, thread_id: str | None) -> None:
        """A typing signal to the other side: the buyer's (no thread id) to the staff, a staff member's to the buyer."""
        await self.limits.take(
            "too many typing signals", (Rule("service-typing", *self.settings.limit_service_typing), identity.user_id)
        )
        if thread_id is None:
            found = await self.threads.of_buyer(merchant_id, identity.user_id)
            if found is None:
                return
            side, audience = "buyer", to_staff(merchant_id)
            thread_id = found.id
        else:
            thread = await self.threads.get(merchant_id, thread_id)
            side, audience = "staff", to_user(thread.user_id)
        signal = event("service.typing", thread_id=thread_id, merchant_id=merchant_id, side=side, name=identity.name)
        await self.delivery.send([(audience, signal)])

    # --- telling both sides -----------------------------------------------------------------------

    async def _tell_message(self, thread: Thread, message: Message) -> None:
        """A message of the thread, new or changed (a public answer decided): to the buyer and the shop's staff."""
        buyer, public = thread if thread.merchant_name else await self._named(thread), message.public()
        await self.delivery.send(
            [
                (to_user(thread.user_id), event("service.message", thread=buyer.for_buyer(), message=public)),
                (to_staff(thread.merchant_id), event("service.message", thread=thread.for_staff(), message=public)),
            ]
        )

    async def _tell_thread(self, thread: Thread) -> None:
        """A thread changed without a message changing (state, assignee, receipts, a block)."""
        buyer = await self._named(thread)
        to_buyer = event("service.thread", thread_id=thread.id, thread=buyer.for_buyer())
        staff = event("service.thread", thread_id=thread.id, thread=thread.for_staff())
        events: list[tuple[Audience, dict[str, Any]]] = [
            (to_user(thread.user_id), to_buyer),
            (to_staff(thread.merchant_id), staff),
        ]
        await self.delivery.send(events)

    async def _named(self, thread: Thread) -> Thread:
        return replace(thread, merchant_name=await self._shop_name(thread.merchant_id))

    async def _shop(self, merchant_id: str) -> None:
        if await self.catalog.get_merchant(merchant_id) is None:
            raise NotFound(f"no shop '{merchant_id}'", "unknown_merchant")

    async def _shop_name(self, merchant_id: str) -> str:
        shop = await self.catalog.get_merchant(merchant_id)
        return str((shop or {}).get("name", merchant_id))

    async def _user_ids(self, user_id: str) -> list[str]:
        """The ids a person bought under: theirs and the guest ids merged into their account."""
        try:
            return [user_id, *(await self.accounts.user(user_id)).aliases]
        except NotFound:
            return [user_id]


def _order(order: Order, sale: Sale) -> dict[str, Any]:
    """An order as a page lists it (no server clock: it is not a live answer)."""
    public = order.public(sale, 0)
    del public["server_time"]
    return public


def _member(identity: Identity) -> None:
    if identity.guest:
        raise rules.sign_in_required()
