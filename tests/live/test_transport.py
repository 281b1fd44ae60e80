"""The room socket: bad input gets an error or a documented close code, nobody else notices; the frames it writes."""

from __future__ import annotations

import contextlib
import time

import orjson
import pytest
import websockets
from websockets.frames import Frame, Opcode

from server.access.tokens import Identity, Tokens
from server.webserver import text_frame
from tests.client import RoomClient
from tests.conftest import SECRET_KEY, Shop
from tests.timing import seconds

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_batch_frames_are_encoded_as_websockets_encodes_a_server_text_frame(size: int) -> None:
    """The frame the hub writes to every socket is byte for byte what websockets writes for a server's text frame,
    in each of the three length forms (7 bits, 16 bits, 64 bits)."""
    payload = bytes(range(32, 127)) * (size // 95) + b"x" * (size % 95)
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


async def test_malformed_frames_get_error_messages_and_change_nothing(shop: Shop) -> None:
    """Bad JSON, non-objects, unknown types, missing and mistyped fields each get an error; the socket stays open."""
    async with (
        await RoomClient.connect(shop.room_url(shop.host)) as host,
        await RoomClient.connect(shop.room_url(shop.guest())) as bystander,
    ):
        cases = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_request"),
            ('{"type": "teleport", "id": 1}', "unknown_type"),
            ('{"type": "chat.send", "id": 2}', "bad_request"),
            ('{"type": "chat.send", "text": 5, "id": 3}', "bad_request"),
            ('{"type": "like", "count": 0, "id": 4}', "bad_request"),
            ('{"type": "like", "count": true, "id": 5}', "bad_request"),
            ('{"type": "room.status", "status": "party", "id": 6}', "bad_request"),
            ('{"type": "product.pin", "id": 7}', "bad_request"),
        ]
        for raw, _ in cases:
            await host.send_raw(raw)
        await host.wait(lambda: len([r for r in host.replies if r["type"] == "error"]) == len(cases))
        errors = [r for r in host.replies if r["type"] == "error"]
        assert [e["code"] for e in errors] == [code for _, code in cases]
        assert all(e["message"] for e in errors)
        assert [e.get("id") for e in errors[2:]] == [1, 2, 3, 4, 5, 6, 7]
        assert not host.closed
        assert (await host.request("product.pin", product_id=shop.products[0]))["type"] == "ack"
        await bystander.wait_event("product.pinned")
        assert not [r for r in bystander.replies if r["type"] == "error"]


async def test_viewer_sending_host_commands_is_refused(shop: Shop) -> None:
    """A viewer's pin, bag and status commands are forbidden; the room is unchanged."""
    async with await RoomClient.connect(shop.room_url(shop.guest())) as viewer:
        assert (await viewer.request("product.pin", product_id=shop.products[0]))["code"] == "forbidden"
        assert (await viewer.request("bag.set", product_ids=shop.products))["code"] == "forbidden"
        assert (await viewer.request("room.status", status="ended"))["code"] == "forbidden"
    async with await RoomClient.connect(shop.room_url(shop.guest())) as check:
        assert check.first is not None
        assert check.first["pinned"] is None and check.first["room"]["status"] == "scheduled"


async def test_oversized_frame_closes_with_1009(shop: Shop) -> None:
    """A frame over the 16 KiB limit closes that connection with 1009 (message too big), others carry on."""
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as big,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
    ):
        await big.send_raw(orjson.dumps({"type": "chat.send", "text": "x" * 20000}).decode())
        code, _ = await big.wait_closed()
        assert code == 1009
        assert (await host.request("chat.send", text="still here"))["type"] == "ack"


async def _close_code(url: str, first: str | None = None, **kwargs: object) -> tuple[int | None, str | None]:
    """Connect, send `first` as the first frame (if any), read until the server closes."""
    connection = await websockets.connect(url, **kwargs)  # type: ignore[arg-type]
    if first is not None:
        await connection.send(first)
    with contextlib.suppress(websockets.ConnectionClosed):
        await connection.recv()
    return connection.close_code, connection.close_reason


def _auth(token: str) -> str:
    return orjson.dumps({"type": "auth", "token": token}).decode()


async def test_unknown_room_closes_with_4504(shop: Shop) -> None:
    """Joining a room that does not exist closes with 4504 and says so."""
    code, reason = await _close_code(f"{shop.ws_url}/ws/rooms/no-such-room", _auth(shop.guest()))
    assert code == 4504 and reason == "no such room"


async def test_missing_forged_and_expired_tokens_close_with_4500(shop: Shop) -> None:
    """A first frame that is not an auth frame, a tampered token and an expired token each close with 4500 and a
    reason naming the problem."""
    base = f"{shop.ws_url}/ws/rooms/{shop.room_id}"
    code, reason = await _close_code(base, orjson.dumps({"type": "chat.send", "text": "hi"}).decode())
    assert code == 4500 and "auth" in (reason or "")
    token = shop.guest()
    code, reason = await _close_code(base, _auth(f"{token[:-3]}abc"))
    assert code == 4500 and "signature" in (reason or "")
    old = Tokens(SECRET_KEY).issue(Identity("u1", "Old", "ses_old", int(time.time()) - 10))
    code, reason = await _close_code(base, _auth(old))
    assert (code, reason) == (4500, "the token has expired")


async def test_foreign_origin_closes_with_4501(shop: Shop) -> None:
    """A browser page on another site cannot open the room socket; the server's own origin can."""
    url = shop.room_url(shop.guest())
    code, reason = await _close_code(url, origin="https://evil.example")
    assert (code, reason) == (4501, "origin not allowed")
    async with await RoomClient.connect(url, origin=shop.base_url) as same_site:
        assert same_site.first is not None and same_site.first["type"] == "snapshot"


async def test_flooding_client_is_closed_with_4029(shop: Shop) -> None:
    """A client sending more than 20 messages in two seconds is closed with 4029; the room carries on."""
    async with (
        await RoomClient.connect(shop.room_url(shop.guest())) as flooder,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
    ):
        started = time.monotonic()
        for _ in range(25):
            await flooder.send_raw('{"type": "like", "count": 1}')
        code, reason = await flooder.wait_closed()
        assert code == 4029 and "too many" in (reason or "")
        assert time.monotonic() - started < seconds(2)
        assert (await host.request("chat.send", text="all fine"))["type"] == "ack"
