"""Messages live on room sockets across processes: a buyer's question reaches staff connected to another process,
the answer reaches the buyer, typing and read receipts travel, and nobody else in the room hears any of it."""

from __future__ import annotations

import httpx
import pytest

from loadtests.support.server import ServerProcess
from tests.client import RoomClient
from tests.conftest import Person, Shop
from tests.sale_helpers import auth
from tests.service.conftest import answer, asked, conversation

pytestmark = pytest.mark.anyio


def room_url(server: ServerProcess, shop: Shop, token: str) -> str:
    return f"{server.ws_url}/ws/rooms/{shop.room_id}?token={token}"


async def test_a_question_on_one_process_reaches_staff_on_another_and_the_answer_comes_back(
    shop: Shop, desks: list[ServerProcess]
) -> None:
    """The buyer writes through process A; the host's socket on process B gets `service.message` with the staff's
    view of the thread (1 unread), the buyer's socket on A gets it too; the host's answer on B reaches the buyer's
    socket on A; a third viewer's socket, and a moderator of another shop, get none of it."""
    first, second = desks
    mia, eve = Person("Mia"), Person("Eve")
    async with (
        await RoomClient.connect(room_url(first, shop, mia.token)) as buyer,
        await RoomClient.connect(room_url(second, shop, shop.host)) as host,
        await RoomClient.connect(room_url(second, shop, eve.token)) as other,
    ):
        sent = asked(shop, mia.token, "Does this run small?", room_id=shop.room_id, product_id=shop.products[0])
        thread_id = sent["thread"]["id"]
        seen = await host.wait_event("service.message", timeout=5)
        assert seen["message"]["text"] == "Does this run small?" and seen["message"]["side"] == "buyer"
        assert seen["message"]["product_id"] == shop.products[0]
        assert (seen["thread"]["id"], seen["thread"]["unread"], seen["thread"]["state"]) == (thread_id, 1, "open")
        assert seen["thread"]["buyer_name"] == "Mia" and seen["thread"]["user_id"] == mia.user_id
        await buyer.wait_event("service.message")

        answer(shop, shop.host, thread_id, "It runs a half size small.", base_url=second.base_url)
        await buyer.wait(lambda: any(e["type"] == "service.message" and e["message"]["side"] == "staff"
                                     for e in buyer.events))  # fmt: skip
        reply = next(e for e in buyer.events if e["type"] == "service.message" and e["message"]["side"] == "staff")
        assert reply["message"]["text"] == "It runs a half size small."
        assert reply["thread"]["unread"] == 1 and reply["thread"]["state"] == "pending"
        assert "user_id" not in reply["thread"]  # the buyer's view

        typing = httpx.post(f"{first.base_url}/api/merchants/{shop.merchant_id}/messages/typing",
                            headers=auth(mia.token))  # fmt: skip
        assert typing.status_code == 204
        signal = await host.wait_event("service.typing")
        assert (signal["thread_id"], signal["side"], signal["name"]) == (thread_id, "buyer", "Mia")

        receipt = httpx.post(f"{first.base_url}/api/merchants/{shop.merchant_id}/messages/receipt",
                             json={"read": reply["message"]["id"]}, headers=auth(mia.token))  # fmt: skip
        assert receipt.status_code == 200 and receipt.json()["thread"]["unread"] == 0
        changed = await host.wait_event("service.thread")
        assert changed["thread"]["buyer_read"] == reply["message"]["id"]
        await host.request("chat.send", text="Thanks for watching!")
        await other.wait_event("chat.message")  # the room's events reach this viewer: the service events did not
        assert not [e for e in other.events if e["type"].startswith("service.")]
    assert conversation(shop, mia.token)["thread"]["unread"] == 0
