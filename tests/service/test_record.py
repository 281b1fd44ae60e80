"""Threads as the record: an answer the buyer's pages never received reaches them by the messenger once; the
history outlives the server process; PostgreSQL away refuses clearly and a retry stores the message once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from server.ledger.embedded import EmbeddedPostgres
from server.store.embedded import EmbeddedRedis
from tests.access.conftest import new_email, sign_in
from tests.client import RoomClient
from tests.conftest import Person, Shop, make_shop, start_server
from tests.sale_helpers import assert_error, auth, query, wait_until
from tests.service.conftest import answer, ask, asked, conversation

pytestmark = pytest.mark.anyio


def notices(base_url: str, email: str) -> list[str]:
    """The messenger's notices of answers sent to this email (not its sign-in codes), oldest first."""
    inbox = httpx.get(f"{base_url}/api/sandbox/inbox", params={"email": email})
    assert inbox.status_code == 200, inbox.text
    return [m["text"] for m in reversed(inbox.json()["messages"]) if "answered you" in m["text"]]


async def test_an_answer_no_page_received_is_sent_by_the_messenger_once(
    shop: Shop, desks: list[ServerProcess], redis_url: str, database_url: str
) -> None:
    """With no socket of the buyer's open, the host's answer goes to the buyer's email after
    SERVICE_NOTIFY_AFTER_MS, once although two processes run the pass, with a link back; a later answer gets its own
    notice; an answer the buyer's page received (its delivery receipt) is not sent, nor is one to a buyer without an
    email."""
    email = new_email()
    mia = sign_in(shop.base_url, {"email": email})
    thread_id = asked(shop, mia["token"], "Where is my parcel?")["thread"]["id"]
    answer(shop, shop.host, thread_id, "It left this morning.")
    wait_until(lambda: len(notices(shop.base_url, email)) == 1, timeout=10)
    [text] = notices(shop.base_url, email)
    assert f"Shop {shop.merchant_id} answered you" in text and "It left this morning." in text
    assert f"/messages.html?merchant={shop.merchant_id}" in text
    answer(shop, shop.host, thread_id, "Tracking: ZX123.")
    answer(shop, shop.host, thread_id, "Arrives Friday.")
    wait_until(lambda: len(notices(shop.base_url, email)) == 2, timeout=10)
    second = notices(shop.base_url, email)[1]
    assert "(2 new messages)" in second and "Arrives Friday." in second

    # connected: the page received the answer (and said so); a buyer with no email is never sent one
    other_shop = make_shop(shop.base_url, shop.ws_url, redis_url)
    second_email = new_email()
    ben = sign_in(shop.base_url, {"email": second_email})
    connected = asked(shop, ben["token"], "Do you ship to Canada?")["thread"]["id"]
    nobody = Person("NoEmail")
    no_email = asked(shop, nobody.token, "Hello?")["thread"]["id"]
    async with await RoomClient.connect(shop.room_url(ben["token"])) as page:
        sent = answer(shop, shop.host, connected, "We do!")["message"]["id"]
        await page.wait_event("service.message")
        received = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages/receipt",
                              json={"delivered": sent}, headers=auth(ben["token"]))  # fmt: skip
        assert received.status_code == 200
    answer(shop, shop.host, no_email, "Hi there")
    # a later answer to the same buyer from another shop is notified: every earlier one was due by then
    later = asked(other_shop, ben["token"], "And you?")["thread"]["id"]
    answer(other_shop, other_shop.host, later, "Us too.")
    wait_until(lambda: len(notices(shop.base_url, second_email)) == 1, timeout=10)
    assert "Us too." in notices(shop.base_url, second_email)[0]

    def outcomes() -> list[tuple[str, str]]:
        rows = query(database_url, "SELECT thread_id, outcome FROM service_notices WHERE thread_id = ANY($1)",
                     [connected, no_email, thread_id])  # fmt: skip
        return sorted((row["thread_id"], row["outcome"]) for row in rows)

    expected = sorted([(no_email, "no_destination"), (thread_id, "sent"), (thread_id, "sent")])
    wait_until(lambda: outcomes() == expected)  # the connected buyer's answer: no notice at all


def test_the_history_outlives_the_server_process(shop: Shop, server_factory: Callable[..., ServerProcess]) -> None:
    """Messages written through one server process are all there, in order, with their states, from a new process
    after the first has stopped."""
    first = server_factory()
    mia = Person("Mia")
    thread_id = ask(shop, mia.token, "Before the restart", base_url=first.base_url).json()["thread"]["id"]
    answer(shop, shop.host, thread_id, "Noted.", base_url=first.base_url)
    before = conversation(shop, mia.token)
    first.stop()
    second = server_factory()
    after = httpx.get(f"{second.base_url}/api/merchants/{shop.merchant_id}/messages", headers=auth(mia.token))
    assert after.json() == before
    assert [m["text"] for m in after.json()["messages"]] == ["Before the restart", "Noted."]
    assert after.json()["thread"]["state"] == "pending"


def test_postgresql_away_refuses_a_message_clearly_and_the_retry_stores_it_once(tmp_path: Path) -> None:
    """With PostgreSQL down a message is refused with 503 `unavailable` and nothing is stored; once it is back the
    same Idempotency-Key stores it, once."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        postgres = EmbeddedPostgres(tmp_path / "postgres")
        database_url = postgres.start()
        server = start_server(tmp_path, {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url})
        try:
            shop = make_shop(server.base_url, server.ws_url, redis_server.url)
            mia = Person("Mia")
            postgres.stop()
            assert_error(ask(shop, mia.token, "Are you there?", key="retry-1"), 503, "unavailable")
            postgres.start()
            outcome: dict[str, Any] = {}

            def stored() -> bool:
                response = ask(shop, mia.token, "Are you there?", key="retry-1")
                outcome["status"] = response.status_code
                return response.status_code in (200, 201)

            wait_until(stored, timeout=20)
            again = ask(shop, mia.token, "Are you there?", key="retry-1")
            assert again.status_code == 200
            assert [m["text"] for m in conversation(shop, mia.token)["messages"]] == ["Are you there?"]
        finally:
            server.stop()
            postgres.stop()
