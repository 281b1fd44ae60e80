"""A thread's life through the REST API: states, assignment, unread counts, canned replies, who may see it, the
checks on a message, blocking, answers in public with the buyer's consent, first response per show, history that
outlives the process."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.access.conftest import add_staff
from tests.client import RoomClient
from tests.conftest import Person, Shop, make_shop
from tests.sale_helpers import assert_error, auth
from tests.service.conftest import (
    answer,
    ask,
    asked,
    conversation,
    inbox,
    staff_call,
    staff_thread,
)

pytestmark = pytest.mark.anyio


def audit_actions(shop: Shop) -> list[str]:
    entries = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit", headers=auth(shop.admin))
    assert entries.status_code == 200, entries.text
    return [entry["action"] for entry in entries.json()["entries"]]


def post(shop: Shop, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = staff_call(shop, token, "POST", path, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_thread_moves_open_pending_resolved_and_reopens_with_every_staff_action_audited(shop: Shop) -> None:
    """A question opens the thread; the host's answer leaves it pending and assigns it to the host (nobody had it);
    resolved by staff, a new question reopens it; assignment goes to a staff member of the shop or nobody, never
    to someone else; each staff action is an audit entry."""
    mia = Person("Mia")
    thread_id = asked(shop, mia.token, "Is the scarf wool?")["thread"]["id"]
    assert inbox(shop, shop.moderator, state="open")["threads"][0]["id"] == thread_id
    answered = answer(shop, shop.host, thread_id, "Yes, merino.")["thread"]
    assert (answered["state"], answered["assignee_name"]) == ("pending", "Host")
    assert post(shop, shop.moderator, f"/threads/{thread_id}/state", {"state": "resolved"})["thread"]["state"] == (
        "resolved"
    )
    assert [t["id"] for t in inbox(shop, shop.admin, state="resolved")["threads"]] == [thread_id]
    assert asked(shop, mia.token, "And the mug?")["thread"]["state"] == "open"
    assert inbox(shop, shop.admin)["counts"] == {"open": 1, "pending": 0, "resolved": 0, "unread": 1}

    hana = add_staff(shop, "moderator", "Hana")
    assigned = post(shop, shop.admin, f"/threads/{thread_id}/assign", {"user_id": hana["user_id"]})["thread"]
    assert (assigned["assignee"], assigned["assignee_name"]) == (hana["user_id"], "Hana")
    assert [t["id"] for t in inbox(shop, shop.admin, assignee=hana["user_id"])["threads"]] == [thread_id]
    assert inbox(shop, shop.admin, assignee="none")["threads"] == []
    stranger = staff_call(shop, shop.admin, "POST", f"/threads/{thread_id}/assign", json={"user_id": mia.user_id})
    assert_error(stranger, 400, "not_staff")
    assert post(shop, shop.admin, f"/threads/{thread_id}/assign", {"user_id": None})["thread"]["assignee"] is None
    assert_error(staff_call(shop, shop.admin, "POST", f"/threads/{thread_id}/state", json={"state": "gone"}), 400,
                 "bad_request")  # fmt: skip
    actions = audit_actions(shop)
    assert actions.count("service.replied") == 1 and actions.count("service.state_changed") == 1
    assert actions.count("service.assigned") == 2


async def test_unread_counts_are_right_after_a_reconnect(shop: Shop) -> None:
    """Answers written while the buyer's socket was away are counted unread when they come back (as the page asks
    again on reconnect); received is not read; read moves forward only, never past the newest message; the staff's
    unread count follows the buyer's messages and their read mark."""
    mia = Person("Mia")
    thread_id = asked(shop, mia.token, "One")["thread"]["id"]
    asked(shop, mia.token, "Two")
    third = asked(shop, mia.token, "Three")["message"]["id"]
    assert inbox(shop, shop.host)["threads"][0]["unread"] == 3
    first_answer = answer(shop, shop.host, thread_id, "Hi!")["message"]["id"]
    assert inbox(shop, shop.host)["threads"][0]["unread"] == 0  # writing reads what came before
    second_answer = answer(shop, shop.host, thread_id, "Anything else?")["message"]["id"]
    assert third < first_answer < second_answer
    async with await RoomClient.connect(shop.room_url(mia.token)) as again:
        assert again.first is not None
        mine = conversation(shop, mia.token)
        assert mine["thread"]["unread"] == 2 and [m["text"] for m in mine["messages"]][-2:] == ["Hi!", "Anything else?"]
    receipt = f"/api/merchants/{shop.merchant_id}/messages/receipt"
    delivered = httpx.post(f"{shop.base_url}{receipt}", json={"delivered": second_answer}, headers=auth(mia.token))
    assert delivered.json()["thread"]["unread"] == 2
    assert staff_thread(shop, shop.host, thread_id)["thread"]["buyer_delivered"] == second_answer
    read = httpx.post(f"{shop.base_url}{receipt}", json={"read": first_answer}, headers=auth(mia.token))
    assert read.json()["thread"]["unread"] == 1
    back = httpx.post(f"{shop.base_url}{receipt}", json={"read": third}, headers=auth(mia.token))
    assert back.json()["thread"]["unread"] == 1  # never back
    beyond = httpx.post(f"{shop.base_url}{receipt}", json={"read": second_answer + 10_000}, headers=auth(mia.token))
    assert beyond.json()["thread"]["unread"] == 0
    assert staff_thread(shop, shop.host, thread_id)["thread"]["buyer_read"] == second_answer
    asked(shop, mia.token, "Four")
    assert inbox(shop, shop.host)["counts"]["unread"] == 1


def test_canned_replies_are_filled_in_for_the_thread_and_unknown_variables_refused(shop: Shop) -> None:
    """A canned reply's {buyer_name}, {order_number}, {shop_name}, {staff_name} are filled in for the thread (the
    order its last message is about); an unknown variable or a stray brace is refused when saved; changes and
    removals are audited."""
    replies = f"/api/merchants/{shop.merchant_id}/service/replies"
    made = httpx.post(f"{shop.base_url}{replies}", headers=auth(shop.admin), json={
        "title": "Shipping", "text": "Hi {buyer_name}, order {order_number} ships today from {shop_name}. {staff_name}",
    })  # fmt: skip
    assert made.status_code == 201, made.text
    unknown = httpx.post(f"{shop.base_url}{replies}", headers=auth(shop.admin),
                         json={"title": "Bad", "text": "Hi {name}"})  # fmt: skip
    assert "{name}" in assert_error(unknown, 400, "bad_request")
    stray = httpx.post(f"{shop.base_url}{replies}", headers=auth(shop.admin), json={"title": "Bad", "text": "a { b"})
    assert_error(stray, 400, "bad_request")
    mia = Person("Mia")
    thread_id = asked(shop, mia.token, "Where is my order?", order_id="o_abc123")["thread"]["id"]
    filled = staff_call(shop, shop.host, "GET", f"/threads/{thread_id}/replies").json()["replies"]
    assert filled == [{"id": made.json()["id"], "title": "Shipping",
                       "text": f"Hi Mia, order O_ABC1 ships today from Shop {shop.merchant_id}. Host"}]  # fmt: skip
    changed = httpx.put(f"{shop.base_url}{replies}/{made.json()['id']}", headers=auth(shop.host),
                        json={"title": "Shipping", "text": "On its way, {buyer_name}!"})  # fmt: skip
    assert changed.status_code == 200 and changed.json()["text"] == "On its way, {buyer_name}!"
    removed = httpx.delete(f"{shop.base_url}{replies}/{made.json()['id']}", headers=auth(shop.host))
    assert removed.status_code == 204
    assert httpx.get(f"{shop.base_url}{replies}", headers=auth(shop.host)).json() == {"replies": []}
    assert_error(httpx.delete(f"{shop.base_url}{replies}/{made.json()['id']}", headers=auth(shop.host)), 404,
                 "unknown_reply")  # fmt: skip
    actions = audit_actions(shop)
    assert actions.count("service.reply_saved") == 2 and actions.count("service.reply_removed") == 1


def test_another_shops_staff_never_see_a_thread(shop: Shop, redis_url: str) -> None:
    """Staff of another shop are refused the shop's inbox and threads (403); through their own shop a thread of this
    one is unknown (404); a buyer sees only their own thread."""
    mia, eve = Person("Mia"), Person("Eve")
    thread_id = asked(shop, mia.token, "Private question")["thread"]["id"]
    other = make_shop(shop.base_url, shop.ws_url, redis_url)
    outsider = other.admin
    for method, path, body in [
        ("GET", "/threads", None),
        ("GET", f"/threads/{thread_id}", None),
        ("POST", f"/threads/{thread_id}/messages", {"text": "hi"}),
        ("POST", f"/threads/{thread_id}/state", {"state": "resolved"}),
        ("GET", "/replies", None),
    ]:
        refused = staff_call(shop, outsider, method, path, json=body, headers={"Idempotency-Key": "k1"})
        assert_error(refused, 403, "forbidden")
    through_own = httpx.get(f"{shop.base_url}/api/merchants/{other.merchant_id}/service/threads/{thread_id}",
                            headers=auth(other.admin))  # fmt: skip
    assert_error(through_own, 404, "unknown_thread")
    assert conversation(shop, eve.token) == {"thread": None, "messages": [], "more": False, "blocked": False}
    assert_error(staff_call(shop, mia.token, "GET", f"/threads/{thread_id}"), 403, "forbidden")


def test_a_message_is_stored_once_per_key_and_checked_like_chat(shop: Shop) -> None:
    """The same Idempotency-Key stores one message (201, then 200 with the same one); a guest is asked to sign in;
    a message too long, empty, without a key or with a word the shop blocks is refused and stores nothing; past
    LIMIT_SERVICE_MESSAGES a buyer is told to wait (429)."""
    mia = Person("Mia")
    first = ask(shop, mia.token, "Hello\u200b there", key="same-key")
    again = ask(shop, mia.token, "Hello there", key="same-key")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["message"] == again.json()["message"] and first.json()["message"]["text"] == "Hello there"
    assert_error(ask(shop, shop.guest(), "Hi"), 403, "sign_in_required")
    assert_error(ask(shop, mia.token, "x" * 1001), 400, "too_long")
    assert_error(ask(shop, mia.token, " \u200b "), 400, "bad_request")
    blocklist = httpx.put(f"{shop.base_url}/api/merchants/{shop.merchant_id}/blocklist", json={"words": ["scam"]},
                          headers=auth(shop.admin))  # fmt: skip
    assert blocklist.status_code == 200, blocklist.text
    assert_error(ask(shop, mia.token, "is this a SCAM?"), 400, "blocked_word")
    keyless = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages", json={"text": "Hi"},
                         headers=auth(mia.token))  # fmt: skip
    assert_error(keyless, 400, "bad_request")
    assert len(conversation(shop, mia.token)["messages"]) == 1
    eve = Person("Eve")
    codes = [ask(shop, eve.token, f"message {n}").status_code for n in range(11)]
    assert codes == [201] * 10 + [429]


def test_a_buyer_who_blocks_the_shop_is_not_written_to(shop: Shop) -> None:
    """Blocked, the shop's answers are refused (blocked_by_buyer) and the buyer's own messages too until they unblock
    (merchant_blocked); the thread stays readable on both sides."""
    mia = Person("Mia")
    thread_id = asked(shop, mia.token, "Question")["thread"]["id"]
    block = f"{shop.base_url}/api/merchants/{shop.merchant_id}/block"
    blocked = httpx.put(block, headers=auth(mia.token))
    assert blocked.status_code == 200 and blocked.json()["thread"]["blocked"] is True
    refused = staff_call(shop, shop.host, "POST", f"/threads/{thread_id}/messages", json={"text": "Hi"},
                         headers={"Idempotency-Key": "a1"})  # fmt: skip
    assert_error(refused, 403, "blocked_by_buyer")
    assert_error(ask(shop, mia.token, "Hello?"), 403, "merchant_blocked")
    assert staff_thread(shop, shop.host, thread_id)["thread"]["blocked"] is True
    assert len(conversation(shop, mia.token)["messages"]) == 1
    assert httpx.delete(block, headers=auth(mia.token)).json()["thread"]["blocked"] is False
    eve = Person("Eve")  # blocks before ever writing: the conversation says so
    assert httpx.put(block, headers=auth(eve.token)).json() == {"thread": None, "blocked": True}
    assert conversation(shop, eve.token)["blocked"] is True
    answer(shop, shop.host, thread_id, "Thanks for coming back")


async def test_an_answer_goes_public_only_when_the_buyer_allows_it(shop: Shop) -> None:
    """Asked to answer in public, the buyer sees the request; allowed, the room's chat gets the staff member's answer
    quoting the question without the buyer's name (posted); declined, nothing is posted; a decision is made once;
    a question not asked in a room can only be answered privately."""
    mia, eve = Person("Mia"), Person("Eve")
    question = asked(shop, mia.token, "Does the mug fit a dishwasher?", room_id=shop.room_id)
    thread_id, question_id = question["thread"]["id"], question["message"]["id"]

    def ask_public(question_id: int, text: str) -> httpx.Response:
        return staff_call(shop, shop.host, "POST", f"/threads/{thread_id}/public",
                          json={"message_id": question_id, "text": text},
                          headers={"Idempotency-Key": secrets.token_hex(6)})  # fmt: skip

    request = ask_public(question_id, "Yes, top rack.")
    assert request.status_code == 201, request.text
    public = request.json()["message"]["public"]
    assert public == {"state": "asked", "question_id": question_id, "question": "Does the mug fit a dishwasher?"}
    decide = f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages/{request.json()['message']['id']}/public"
    async with await RoomClient.connect(shop.room_url(eve.token)) as room:
        allowed = httpx.post(decide, json={"allow": True}, headers=auth(mia.token))
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["message"]["public"]["state"] == "posted"
        line = (await room.wait_event("chat.message"))["message"]
        assert (line["text"], line["question"], line["name"], line["role"]) == (
            "Yes, top rack.",
            "Does the mug fit a dishwasher?",
            "Host",
            "host",
        )
        assert "Mia" not in str(line) and mia.user_id not in str(line)
    assert_error(httpx.post(decide, json={"allow": False}, headers=auth(mia.token)), 409, "not_asked")
    assert_error(httpx.post(decide, json={"allow": True}, headers=auth(Person().token)), 404, "unknown_message")

    second = asked(shop, mia.token, "Is it microwave safe?", room_id=shop.room_id)["message"]["id"]
    declined_request = ask_public(second, "Yes.").json()["message"]["id"]
    declined = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages/{declined_request}/public",
                          json={"allow": False}, headers=auth(mia.token))  # fmt: skip
    assert declined.json()["message"]["public"]["state"] == "declined"
    roomless = asked(shop, mia.token, "From the orders page")["message"]["id"]
    assert_error(ask_public(roomless, "Sure"), 409, "no_room")
    assert_error(ask_public(roomless + 10_000, "Sure"), 404, "unknown_message")
    async with await RoomClient.connect(shop.room_url(eve.token)) as joining:
        assert joining.first is not None
        texts = [m["text"] for m in joining.first["chat"]]
        assert texts.count("Yes, top rack.") == 1 and "Yes." not in texts


async def test_first_response_time_is_counted_per_show(shop: Shop) -> None:
    """A question asked in a room while its show is live starts a wait counted for that show (a second message
    while waiting does not start another); the answer records how long it took; a question still unanswered is
    waiting; the live show comes first in the figures."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        await host.request("room.status", status="live")
        mia, eve = Person("Mia"), Person("Eve")
        thread_id = asked(shop, mia.token, "Size?", room_id=shop.room_id)["thread"]["id"]
        asked(shop, mia.token, "Hello?", room_id=shop.room_id)
        answer(shop, shop.host, thread_id, "M fits most.")
        asked(shop, eve.token, "Colour?", room_id=shop.room_id)
        asked(shop, Person().token, "Not from the room")
        figures = staff_call(shop, shop.host, "GET", "/shows", params={"room_id": shop.room_id}).json()["shows"]
        assert len(figures) == 1 and figures[0]["ended_at"] is None
        show = figures[0]
        assert (show["questions"], show["answered"], show["waiting"]) == (2, 1, 1)
        assert show["first_response_ms"]["median"] == show["first_response_ms"]["p90"] >= 0
