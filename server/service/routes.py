"""REST of customer service (docs/customer-service.md): a buyer's threads, messages, receipts, typing, public
answers and blocks, and their orders; a shop's inbox, answers, states, assignment, canned replies, show figures."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import BadRequest
from server.http import client_address, identify, json_body, node_of, ok, require
from server.service import rules
from server.service.desk import Desk
from server.service.rules import Message, Thread

_M = "/api/merchants/{merchant_id}"
_T = f"{_M}/service/threads/{{thread_id}}"


def _desk(request: Request) -> Desk:
    return node_of(request).desk


def _merchant(request: Request) -> str:
    return str(request.path_params["merchant_id"])


def _key(request: Request) -> str:
    return rules.check_key(request.headers.get("idempotency-key"))


def _mark(body: dict[str, Any], name: str) -> int | None:
    return None if name not in body else rules.message_id(body[name], name)


def _page(request: Request) -> tuple[int | None, int]:
    return rules.optional_int(request.query_params.get("before"), "before"), rules.page_limit(
        request.query_params.get("limit")
    )


def _conversation(thread: Thread | None, messages: list[Message], more: bool, staff: bool) -> dict[str, Any]:
    shown = None if thread is None else thread.for_staff() if staff else thread.for_buyer()
    return {"thread": shown, "messages": [message.public() for message in messages], "more": more}


# --- the buyer's side ---------------------------------------------------------------------------


async def my_threads(request: Request) -> Response:
    """GET /api/me/threads: the caller's threads with every shop, newest activity first."""
    threads = await _desk(request).buyer_threads(identify(request))
    return ok({"threads": [thread.for_buyer() for thread in threads]})


async def my_orders(request: Request) -> Response:
    """GET /api/me/orders?merchant_id=&limit=: the caller's orders, newest first."""
    merchant_id = request.query_params.get("merchant_id") or None
    limit = rules.page_limit(request.query_params.get("limit"))
    return ok({"orders": await _desk(request).orders(identify(request), merchant_id, limit)})


async def messages(request: Request) -> Response:
    """GET: the caller's thread with the shop and a page of it; POST {text, room_id?, order_id?, product_id?} with
    an Idempotency-Key: a message to the shop."""
    desk, buyer, merchant_id = _desk(request), identify(request), _merchant(request)
    if request.method == "GET":
        before, limit = _page(request)
        thread, shown, more, blocked = await desk.conversation(buyer, merchant_id, before, limit)
        return ok({**_conversation(thread, shown, more, staff=False), "blocked": blocked})
    key = _key(request)
    appended = await desk.ask(buyer, client_address(request), merchant_id, await json_body(request), key)
    return ok({"thread": appended.thread.for_buyer(), "message": appended.message.public()},
              201 if appended.created else 200)  # fmt: skip


async def buyer_receipt(request: Request) -> Response:
    """POST {delivered?, read?}: the caller's pages received (and read) the shop's messages up to these ids."""
    body = await json_body(request)
    if "read" not in body and "delivered" not in body:
        raise BadRequest("give 'read' or 'delivered': a message id")
    thread = await _desk(request).buyer_receipt(identify(request), _merchant(request), _mark(body, "read"),
                                                _mark(body, "delivered"))  # fmt: skip
    return ok({"thread": None if thread is None else thread.for_buyer()})


async def buyer_typing(request: Request) -> Response:
    await _desk(request).typing(identify(request), _merchant(request), None)
    return Response(status_code=204)


async def decide_public(request: Request) -> Response:
    """POST {allow}: the caller lets the staff's answer go to the room's chat, or keeps it private."""
    allow = (await json_body(request)).get("allow")
    if not isinstance(allow, bool):
        raise BadRequest("'allow' must be true or false")
    thread, message = await _desk(request).decide_public(identify(request), _merchant(request),
                                                         int(request.path_params["message_id"]), allow)  # fmt: skip
    return ok({"thread": thread.for_buyer(), "message": message.public()})


async def block(request: Request) -> Response:
    """PUT: the caller blocks the shop; DELETE: lifts it."""
    thread = await _desk(request).block(identify(request), _merchant(request), request.method == "PUT")
    return ok({"thread": None if thread is None else thread.for_buyer(), "blocked": request.method == "PUT"})


# --- the staff's side ---------------------------------------------------------------------------


async def inbox(request: Request) -> Response:
    """GET ?state=&assignee=me|none|<id>&before=<updated_at ms>&limit=: the shop's threads and their counts."""
    actor = require(request, _merchant(request))
    params = request.query_params
    before, limit = _page(request)
    page = await _desk(request).inbox(actor, params.get("state") or None, params.get("assignee") or None, before,
                                      limit)  # fmt: skip
    return ok({"threads": [thread.for_staff() for thread in page.threads], "counts": page.counts})


async def thread(request: Request) -> Response:
    """GET ?before=<id>&limit=: a thread, a page of its messages, the buyer's orders in this shop."""
    actor = require(request, _merchant(request))
    before, limit = _page(request)
    found, shown, more, orders = await _desk(request).thread(actor, request.path_params["thread_id"], before, limit)
    return ok({**_conversation(found, shown, more, staff=True), "orders": orders})


async def answer(request: Request) -> Response:
    """POST {text} with an Idempotency-Key: an answer to the buyer."""
    actor = require(request, _merchant(request))
    key = _key(request)
    body = await json_body(request)
    appended = await _desk(request).answer(actor, request.path_params["thread_id"], body.get("text"), key)
    return ok({"thread": appended.thread.for_staff(), "message": appended.message.public()},
              201 if appended.created else 200)  # fmt: skip


async def ask_public(request: Request) -> Response:
    """POST {message_id, text} with an Idempotency-Key: an answer for the room's chat, the buyer asked first."""
    actor = require(request, _merchant(request))
    key = _key(request)
    body = await json_body(request)
    appended = await _desk(request).ask_public(actor, request.path_params["thread_id"], body.get("message_id"),
                                               body.get("text"), key)  # fmt: skip
    return ok({"thread": appended.thread.for_staff(), "message": appended.message.public()},
              201 if appended.created else 200)  # fmt: skip


async def set_state(request: Request) -> Response:
    actor = require(request, _merchant(request))
    state = (await json_body(request)).get("state")
    return ok({"thread": (await _desk(request).set_state(actor, request.path_params["thread_id"], state)).for_staff()})


async def assign(request: Request) -> Response:
    """POST {user_id: a staff member's id, or null}."""
    actor = require(request, _merchant(request))
    body = await json_body(request)
    if "user_id" not in body:
        raise BadRequest("give 'user_id': a staff member's id, or null for nobody")
    found = await _desk(request).assign(actor, request.path_params["thread_id"], body["user_id"])
    return ok({"thread": found.for_staff()})


async def staff_receipt(request: Request) -> Response:
    """POST {read}: the caller read the thread up to this message."""
    actor = require(request, _merchant(request))
    body = await json_body(request)
    if "read" not in body:
        raise BadRequest("give 'read': a message id")
    found = await _desk(request).staff_receipt(actor, request.path_params["thread_id"], _mark(body, "read"))
    return ok({"thread": found.for_staff()})


async def staff_typing(request: Request) -> Response:
    actor = require(request, _merchant(request))
    await _desk(request).typing(actor.identity, actor.merchant_id, request.path_params["thread_id"])
    return Response(status_code=204)


async def filled_replies(request: Request) -> Response:
    """GET: the shop's canned replies filled in for this thread's buyer."""
    actor = require(request, _merchant(request))
    return ok({"replies": await _desk(request).filled_replies(actor, request.path_params["thread_id"])})


async def replies(request: Request) -> Response:
    """GET: the shop's canned replies; POST {title, text}: a new one."""
    actor = require(request, _merchant(request))
    desk = _desk(request)
    if request.method == "GET":
        return ok({"replies": [reply.public() for reply in await desk.replies.all(actor.merchant_id)]})
    return ok((await desk.save_reply(actor, None, await json_body(request))).public(), 201)


async def reply(request: Request) -> Response:
    """PUT {title, text}: a canned reply changed; DELETE: removed."""
    actor = require(request, _merchant(request))
    desk, reply_id = _desk(request), request.path_params["reply_id"]
    if request.method == "DELETE":
        await desk.remove_reply(actor, reply_id)
        return Response(status_code=204)
    return ok((await desk.save_reply(actor, reply_id, await json_body(request))).public())


async def shows(request: Request) -> Response:
    """GET ?room_id=&limit=: the first-response figures of the room's shows, the live one first."""
    actor = require(request, _merchant(request))
    room_id = request.query_params.get("room_id")
    if not room_id:
        raise BadRequest("give 'room_id'")
    limit = rules.page_limit(request.query_params.get("limit"), default=10)
    return ok({"shows": await _desk(request).show_figures(actor, room_id, limit)})


routes = [
    Route("/api/me/threads", my_threads),
    Route("/api/me/orders", my_orders),
    Route(f"{_M}/messages", messages, methods=["GET", "POST"]),
    Route(f"{_M}/messages/receipt", buyer_receipt, methods=["POST"]),
    Route(f"{_M}/messages/typing", buyer_typing, methods=["POST"]),
    Route(f"{_M}/messages/{{message_id:int}}/public", decide_public, methods=["POST"]),
    Route(f"{_M}/block", block, methods=["PUT", "DELETE"]),
    Route(f"{_M}/service/threads", inbox),
    Route(_T, thread),
    Route(f"{_T}/messages", answer, methods=["POST"]),
    Route(f"{_T}/public", ask_public, methods=["POST"]),
    Route(f"{_T}/state", set_state, methods=["POST"]),
    Route(f"{_T}/assign", assign, methods=["POST"]),
    Route(f"{_T}/receipt", staff_receipt, methods=["POST"]),
    Route(f"{_T}/typing", staff_typing, methods=["POST"]),
    Route(f"{_T}/replies", filled_replies),
    Route(f"{_M}/service/replies", replies, methods=["GET", "POST"]),
    Route(f"{_M}/service/replies/{{reply_id}}", reply, methods=["PUT", "DELETE"]),
    Route(f"{_M}/service/shows", shows),
]
