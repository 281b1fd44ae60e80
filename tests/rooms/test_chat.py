"""Chat: text stays data, limits, rate limit, slow mode, moderation and the merchant's block list."""

from __future__ import annotations

import httpx
import pytest

from tests.client import RoomClient
from tests.conftest import Shop

pytestmark = pytest.mark.anyio


async def test_chat_text_is_data_never_html(shop: Shop) -> None:
    """A <script> message arrives exactly as typed, as a JSON string, with the author's name and role."""
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as author,
        await RoomClient.connect(shop.room_url(shop.guest())) as reader,
    ):
        text = '<script>alert("x")</script> & <b>bold</b>'
        reply = await author.request("chat.send", text=text)
        assert reply["type"] == "ack" and reply["message_id"]
        message = (await reader.wait_event("chat.message"))["message"]
        assert message["text"] == text
        assert message["id"] == reply["message_id"]
        assert message["role"] == "viewer" and message["name"].startswith("Guest")


async def test_long_and_empty_messages_are_refused(shop: Shop) -> None:
    """Over 300 characters is too_long, blank is bad_request; neither reaches the room."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as author:
        assert (await author.request("chat.send", text="x" * 301))["code"] == "too_long"
        assert (await author.request("chat.send", text="   "))["code"] == "bad_request"
        assert (await author.request("chat.send", text="x" * 300))["type"] == "ack"
        await author.wait_event("chat.message")
        assert len([e for e in author.events if e["type"] == "chat.message"]) == 1


async def test_chat_rate_limit_per_user(shop: Shop) -> None:
    """A viewer may post five messages per five seconds; the sixth is rate_limited with the wait."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as author:
        for i in range(5):
            assert (await author.request("chat.send", text=f"hi {i}"))["type"] == "ack"
        refused = await author.request("chat.send", text="one more")
        assert refused["code"] == "rate_limited"
        assert "wait" in refused["message"]


async def test_slow_mode_spaces_each_viewers_messages_but_not_the_hosts(shop: Shop) -> None:
    """With slow mode at 30 s a viewer's second message is refused; the host is exempt; everyone sees the setting."""
    async with (
        await RoomClient.connect(shop.room_url(shop.host)) as host,
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
    ):
        assert (await host.request("chat.slow_mode", seconds=30))["type"] == "ack"
        assert (await viewer.wait_event("chat.slow_mode"))["seconds"] == 30
        assert (await viewer.request("chat.send", text="first"))["type"] == "ack"
        second = await viewer.request("chat.send", text="second")
        assert second["code"] == "slow_mode"
        assert (await host.request("chat.send", text="host one"))["type"] == "ack"
        assert (await host.request("chat.send", text="host two"))["type"] == "ack"
        assert (await host.request("chat.slow_mode", seconds=0))["type"] == "ack"
        await viewer.wait_event("chat.slow_mode", seconds=0)
        assert (await viewer.request("chat.send", text="third"))["type"] == "ack"


async def test_moderator_mutes_bans_unbans_and_deletes(shop: Shop) -> None:
    """Mute and ban stop a viewer's messages, unban lets them back, delete removes a message for everyone."""
    async with (
        await RoomClient.connect(shop.room_url(shop.moderator)) as moderator,
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
    ):
        sent = await viewer.request("chat.send", text="buy my stuff elsewhere")
        user_id = (await moderator.wait_event("chat.message"))["message"]["user_id"]
        assert (await moderator.request("chat.delete", message_id=sent["message_id"]))["type"] == "ack"
        deleted = await viewer.wait_event("chat.deleted")
        assert deleted["message_id"] == sent["message_id"]

        assert (await moderator.request("chat.mute", user_id=user_id, seconds=60))["type"] == "ack"
        muted = await viewer.request("chat.send", text="hello?")
        assert muted["code"] == "muted" and "seconds" in muted["message"]

        assert (await moderator.request("chat.ban", user_id=user_id))["type"] == "ack"
        assert (await viewer.request("chat.send", text="hello??"))["code"] == "banned"

        assert (await moderator.request("chat.unban", user_id=user_id))["type"] == "ack"
        assert (await viewer.request("chat.send", text="sorry"))["type"] == "ack"
        await viewer.wait(lambda: any(e.get("message", {}).get("text") == "sorry" for e in viewer.events))
    async with await RoomClient.connect(shop.room_url(shop.guest())) as late:
        assert late.first is not None
        assert [message["text"] for message in late.first["chat"]] == ["sorry"]


async def test_viewers_cannot_moderate(shop: Shop) -> None:
    """Every moderation command from a viewer is forbidden and changes nothing."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        for kind, fields in [
            ("chat.delete", {"message_id": "x"}),
            ("chat.mute", {"user_id": "x", "seconds": 10}),
            ("chat.ban", {"user_id": "x"}),
            ("chat.unban", {"user_id": "x"}),
            ("chat.slow_mode", {"seconds": 10}),
        ]:
            reply = await viewer.request(kind, **fields)
            assert reply["code"] == "forbidden", kind


async def test_merchant_block_list_stops_matching_messages(shop: Shop) -> None:
    """A word on the merchant's block list (any case) keeps the message out of the room."""
    response = httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/blocklist",
        json={"words": ["Scam"]},
        headers=shop.headers(shop.admin),
    )
    assert response.status_code == 200 and response.json() == {"words": ["scam"]}
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        assert (await viewer.request("chat.send", text="this is a SCAM!"))["code"] == "blocked_word"
        assert (await viewer.request("chat.send", text="this is great"))["type"] == "ack"
