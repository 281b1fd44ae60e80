"""Accounts and sessions for real: sign-in with a one-time code, a guest's orders kept, refresh that rotates,
sign-out, staff added and removed by an admin, login links, and the CLI that runs them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from loadtests.support.server import ServerProcess
from server.access.accounts import Accounts
from server.access.sessions import Sessions
from server.access.tokens import Tokens
from server.config import Settings
from server.ledger.client import Database
from tests.access.conftest import add_staff, code_for, new_email, sign_in
from tests.client import RoomClient
from tests.conftest import SECRET_KEY, Shop
from tests.sale_helpers import assert_error, auth, buy, create_sale, pay
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def test_a_code_signs_a_member_in_and_a_wrong_one_is_refused(server: ServerProcess) -> None:
    """A code sent to an email signs its owner in (the same account each time); a wrong code is refused with the
    tries left, and after five wrong tries the code is gone."""
    base = server.base_url
    email = {"email": new_email().upper()}
    first = sign_in(base, email)
    assert first["user"]["guest"] is False and first["user"]["id"].startswith("u_")
    again = sign_in(base, {"email": email["email"].lower()})
    assert again["user"]["id"] == first["user"]["id"]
    assert httpx.post(f"{base}/api/sign-in/code", json=email).status_code == 202
    for tries_left in (4, 3, 2, 1):
        wrong = httpx.post(f"{base}/api/sign-in", json={**email, "code": "000000"})
        assert f"{tries_left} tries left" in assert_error(wrong, 400, "bad_code")
    last = httpx.post(f"{base}/api/sign-in", json={**email, "code": "000000"})
    assert "too many" in assert_error(last, 400, "bad_code")
    assert_error(httpx.post(f"{base}/api/sign-in", json={**email, "code": code_for(base, email)}), 400, "bad_code")
    assert_error(httpx.post(f"{base}/api/sign-in/code", json={"email": "no-at-sign"}), 400, "bad_request")
    assert_error(httpx.post(f"{base}/api/sign-in/code", json={"phone": "555"}), 400, "bad_request")


def test_a_guest_who_signs_in_keeps_the_orders_made_as_a_guest(shop: Shop) -> None:
    """A guest buys in an open-to-anyone sale, then signs in: as a new member (same id) or into an account that
    existed (merged): either way the member reads, pays and cancels the guest's orders; the guest token is gone."""
    sale = create_sale(shop, buyers="anyone", per_user_limit=3)
    for existing in (False, True):
        guest = httpx.post(f"{shop.base_url}/api/guest").json()
        held = buy(shop.base_url, guest["token"], sale["id"])
        assert held.status_code == 201, held.text
        email = {"email": new_email()}
        if existing:
            sign_in(shop.base_url, email)
        member = sign_in(shop.base_url, email, token=guest["token"])
        assert (member["user"]["id"] == guest["user"]["id"]) is (not existing)
        order_id = held.json()["order_id"]
        read = httpx.get(f"{shop.base_url}/api/orders/{order_id}", headers=auth(member["token"]))
        assert read.status_code == 200 and read.json()["status"] == "held"
        assert pay(shop.base_url, member["token"], order_id).json()["status"] == "paid"
        assert_error(httpx.get(f"{shop.base_url}/api/me", headers=auth(guest["token"])), 401, "invalid_token")


def test_refresh_rotates_and_a_reused_refresh_token_signs_the_session_out(server: ServerProcess) -> None:
    """A refresh gives new tokens and a new refresh token; the old refresh token used again (a stolen copy) signs
    the whole session out: its newest tokens are refused too."""
    base = server.base_url
    session = sign_in(base)
    renewed = httpx.post(f"{base}/api/sessions/refresh", json={"refresh_token": session["refresh_token"]})
    assert renewed.status_code == 200
    fresh = renewed.json()
    assert fresh["refresh_token"] != session["refresh_token"] and fresh["user"]["id"] == session["user"]["id"]
    assert httpx.get(f"{base}/api/me", headers=auth(fresh["token"])).status_code == 200
    reused = httpx.post(f"{base}/api/sessions/refresh", json={"refresh_token": session["refresh_token"]})
    assert "already used" in assert_error(reused, 401, "invalid_token")
    assert_error(httpx.get(f"{base}/api/me", headers=auth(fresh["token"])), 401, "invalid_token")
    gone = httpx.post(f"{base}/api/sessions/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert_error(gone, 401, "invalid_token")
    for bad in (None, 7, "x", "ses_nope.secret"):
        assert_error(httpx.post(f"{base}/api/sessions/refresh", json={"refresh_token": bad}), 401, "invalid_token")


async def test_sign_out_closes_the_sessions_sockets_within_two_seconds(shop: Shop) -> None:
    """Signing out refuses the session's token everywhere and closes its room socket (4503) within 2 s;
    `everywhere` signs out every session of the user, another user's session carries on."""
    base = shop.base_url
    email = {"email": new_email()}
    one, two, other = sign_in(base, email), sign_in(base, email), sign_in(base)
    async with (
        await RoomClient.connect(shop.room_url(one["token"])) as first,
        await RoomClient.connect(shop.room_url(two["token"])) as second,
        await RoomClient.connect(shop.room_url(other["token"])) as bystander,
    ):
        started = time.monotonic()
        assert httpx.post(f"{base}/api/sessions/sign-out", headers=auth(one["token"])).status_code == 204
        code, _ = await first.wait_closed(2)
        assert code == 4503 and time.monotonic() - started < seconds(2)
        assert not second.closed
        assert_error(httpx.get(f"{base}/api/me", headers=auth(one["token"])), 401, "invalid_token")
        everywhere = httpx.post(f"{base}/api/sessions/sign-out", headers=auth(two["token"]), json={"everywhere": True})
        assert everywhere.status_code == 204
        assert (await second.wait_closed(2))[0] == 4503
        assert (await bystander.request("chat.send", text="still here"))["type"] == "ack"


def test_an_admin_adds_staff_who_sign_in_and_removes_them(shop: Shop) -> None:
    """An admin adds a host by email (an account made for them, its id the server's); the host signs in with a code
    and hosts; removed, every session of theirs is refused at once; the last admin cannot be removed."""
    base, merchant = shop.base_url, shop.merchant_id
    email = new_email()
    added = httpx.post(
        f"{base}/api/merchants/{merchant}/staff",
        json={"email": email, "name": "Hana", "role": "host", "user_id": "u_chosen"},
        headers=auth(shop.admin),
    )
    assert added.status_code == 201, added.text
    host_id = added.json()["user_id"]
    assert host_id != "u_chosen" and added.json()["role"] == "host"
    session = sign_in(base, {"email": email})
    assert session["user"]["id"] == host_id and session["user"]["roles"] == {merchant: "host"}
    product = httpx.put(
        f"{base}/api/merchants/{merchant}/products/p1", json={"price": 1}, headers=auth(session["token"])
    )
    assert product.status_code == 200
    listed = httpx.get(f"{base}/api/merchants/{merchant}/staff", headers=auth(shop.admin)).json()
    assert [member["user_id"] for member in listed] == [host_id]
    sessions = httpx.get(f"{base}/api/merchants/{merchant}/sessions", headers=auth(shop.admin)).json()
    assert [entry["user_id"] for entry in sessions] == [host_id]
    assert_error(httpx.get(f"{base}/api/merchants/{merchant}/staff", headers=auth(session["token"])), 403, "forbidden")
    removed = httpx.delete(f"{base}/api/merchants/{merchant}/staff/{host_id}", headers=auth(shop.admin))
    assert removed.status_code == 204
    assert_error(httpx.get(f"{base}/api/me", headers=auth(session["token"])), 401, "invalid_token")
    refreshed = httpx.post(f"{base}/api/sessions/refresh", json={"refresh_token": session["refresh_token"]})
    assert_error(refreshed, 401, "invalid_token")
    admin = httpx.post(
        f"{base}/api/merchants/{merchant}/staff",
        json={"email": new_email(), "name": "Ada", "role": "admin"},
        headers=auth(shop.admin),
    ).json()
    last = httpx.delete(f"{base}/api/merchants/{merchant}/staff/{admin['user_id']}", headers=auth(shop.admin))
    assert_error(last, 409, "last_admin")


async def test_an_admin_revokes_a_staff_session_and_its_socket_closes(shop: Shop) -> None:
    """An admin signs one of the host's sessions out: its room socket closes (4503) within 2 s, its token is
    refused; the audit log names the session."""
    base, merchant = shop.base_url, shop.merchant_id
    session = sign_in(base, {"email": add_staff(shop)["email"]})
    async with await RoomClient.connect(shop.room_url(session["token"])) as host:
        assert (await host.request("product.pin", product_id="p0"))["type"] == "ack"
        listed = httpx.get(f"{base}/api/merchants/{merchant}/sessions", headers=auth(shop.admin)).json()
        session_id = listed[0]["session_id"]
        revoked = httpx.delete(f"{base}/api/merchants/{merchant}/sessions/{session_id}", headers=auth(shop.admin))
        assert revoked.status_code == 204
        assert (await host.wait_closed(2))[0] == 4503
    assert_error(httpx.get(f"{base}/api/me", headers=auth(session["token"])), 401, "invalid_token")
    audit = httpx.get(f"{base}/api/merchants/{merchant}/audit", headers=auth(shop.admin)).json()
    assert any(entry["subject"] == f"session:{session_id}" for entry in audit["entries"])


def test_a_login_link_signs_in_once(shop: Shop) -> None:
    """An admin's login link for a staff member signs in once; used again, or forged, it is refused; its minutes
    are bounded; a link for someone not on the staff is refused."""
    base, merchant = shop.base_url, shop.merchant_id
    member = add_staff(shop, "moderator")
    link_url = f"{base}/api/merchants/{merchant}/staff/{member['user_id']}/login-link"
    link = httpx.post(link_url, headers=auth(shop.admin))
    assert link.status_code == 201 and link.json()["path"].endswith(link.json()["ticket"])
    ticket = link.json()["ticket"]
    signed = httpx.post(f"{base}/api/sign-in/link", json={"ticket": ticket})
    assert signed.status_code == 200 and signed.json()["user"]["roles"] == {merchant: "moderator"}
    assert_error(httpx.post(f"{base}/api/sign-in/link", json={"ticket": ticket}), 401, "invalid_token")
    assert_error(httpx.post(f"{base}/api/sign-in/link", json={"ticket": "x" * 32}), 401, "invalid_token")
    for minutes in (0, -1, 100000, "5", True):
        assert_error(httpx.post(link_url, json={"minutes": minutes}, headers=auth(shop.admin)), 400, "bad_request")
    stranger = sign_in(base)["user"]["id"]
    outsider = f"{base}/api/merchants/{merchant}/staff/{stranger}/login-link"
    assert_error(httpx.post(outsider, headers=auth(shop.admin)), 403, "forbidden")


def test_a_staff_member_given_another_role_is_signed_out(shop: Shop) -> None:
    """An admin who turns a host into a moderator signs the host's sessions out (their tokens said host); signed in
    again, they are a moderator."""
    member = add_staff(shop, "host")
    session = sign_in(shop.base_url, {"email": member["email"]})
    assert session["user"]["roles"] == {shop.merchant_id: "host"}
    changed = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/staff",
        json={"email": member["email"], "name": "Hana", "role": "moderator"},
        headers=auth(shop.admin),
    )
    assert changed.status_code == 201 and changed.json()["user_id"] == member["user_id"]
    assert_error(httpx.get(f"{shop.base_url}/api/me", headers=auth(session["token"])), 401, "invalid_token")
    again = sign_in(shop.base_url, {"email": member["email"]})
    assert again["user"]["roles"] == {shop.merchant_id: "moderator"}


async def test_sessions_that_ended_past_the_retention_period_are_purged(
    server: ServerProcess, database_url: str, redis_url: str
) -> None:
    """The retention purge removes a session that ended before its cut-off; a live one stays."""
    live = sign_in(server.base_url)
    user_id = live["user"]["id"]
    connection = await asyncpg.connect(database_url)
    database = Database(database_url, pool_size=2)
    redis = Redis.from_url(redis_url)
    await database.open()
    try:
        await connection.execute(
            "INSERT INTO sessions (session_id, user_id, refresh_hash, created_at, expires_at)"
            " VALUES ('ses_ancient', $1, '\\x00', now() - interval '10 years', now() - interval '9 years')",
            user_id,
        )
        sessions = Sessions(database, redis, Tokens(SECRET_KEY), Accounts(database), Settings())
        assert await sessions.purge(datetime.now(UTC) - timedelta(days=3 * 365)) >= 1
        left = await connection.fetch("SELECT session_id FROM sessions WHERE user_id = $1", user_id)
        assert [row["session_id"] for row in left] == [live["refresh_token"].partition(".")[0]]
    finally:
        await redis.aclose()
        await database.close()
        await connection.close()
