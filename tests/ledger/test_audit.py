"""The audit log against real server processes and the real PostgreSQL: every staff action, who may read it,
paging, and that nothing (the API or SQL) edits or deletes an entry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from loadtests.support.server import ServerProcess
from server.ledger.audit import ACTIONS, AuditLog
from server.ledger.client import Database
from server.ledger.embedded import EmbeddedPostgres
from server.protocol import Role
from tests.client import RoomClient
from tests.conftest import Shop, make_shop, mint
from tests.sale_helpers import auth, create_sale
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def audit(shop: Shop, token: str | None = None, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit",
        params=params,
        headers=auth(token or shop.admin),
        timeout=seconds(10),
    )


def entries(shop: Shop) -> list[dict[str, Any]]:
    """Every entry of the shop, newest first (all pages)."""
    found: list[dict[str, Any]] = []
    before = None
    while True:
        response = audit(shop, **({"before": before} if before else {}), limit=500)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["entries"]
        before = page["next"]
        if before is None:
            return found


def only(found: list[dict[str, Any]], action: str, subject: str | None = None) -> dict[str, Any]:
    """The one entry of this action (and subject)."""
    matching = [e for e in found if e["action"] == action and (subject is None or e["subject"] == subject)]
    assert len(matching) == 1, (action, subject, [e["action"] for e in found])
    return matching[0]


def api(shop: Shop, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    url = f"{shop.base_url}/api/merchants/{shop.merchant_id}{path}"
    return httpx.request(method, url, headers=auth(token), timeout=seconds(10), **kwargs)


def test_catalog_tokens_sales_and_exports_are_audited_with_who_what_before_and_after(shop: Shop) -> None:
    """Creating the shop (room, products), adding a staff member, changing and deleting a product, the block list, a
    sale created and ended and an export each leave one entry: the acting staff member, the subject, before and
    after."""
    added = api(
        shop, "POST", "/staff", shop.admin, json={"email": "mo@shop.example", "role": "moderator", "name": "Mo"}
    )
    assert added.status_code == 201
    price = api(shop, "PUT", "/products/p0", shop.host, json={"price": 1500})
    assert price.status_code == 200
    assert api(shop, "DELETE", "/products/p2", shop.host).status_code == 204
    assert api(shop, "PUT", "/blocklist", shop.moderator, json={"words": ["Spam"]}).status_code == 200
    sale = create_sale(shop)
    assert api(shop, "POST", f"/sales/{sale['id']}/end", shop.host).status_code == 200
    assert api(shop, "GET", "/orders.csv?status=paid", shop.admin).status_code == 200

    found = entries(shop)
    assert all(entry["action"] in ACTIONS for entry in found)
    assert [entry["id"] for entry in found] == sorted((entry["id"] for entry in found), reverse=True)
    room = only(found, "room.created")
    assert room["subject"] == f"room:{shop.room_id}"
    assert room["actor"]["role"] == "admin" and room["actor"]["name"] == "Admin"
    assert room["before"] is None and room["after"]["title"] == "Test show"
    created = only(found, "product.created", "product:p0")
    assert created["after"] == {
        "id": "p0",
        "merchant_id": shop.merchant_id,
        "title": "Red scarf",
        "image_url": "",
        "price": 1000,
        "currency": "USD",
    }
    staff = only(found, "staff.added")
    assert staff["subject"] == f"user:{added.json()['user_id']}"
    assert staff["after"]["role"] == "moderator" and staff["after"]["name"] == "Mo"
    updated = only(found, "product.updated", "product:p0")
    assert (updated["before"]["price"], updated["after"]["price"]) == (1000, 1500)
    assert updated["actor"]["role"] == "host"
    deleted = only(found, "product.deleted", "product:p2")
    assert deleted["before"]["title"] == "Green tea" and deleted["after"] is None
    blocklist = only(found, "blocklist.changed")
    assert (blocklist["before"], blocklist["after"]) == ({"words": []}, {"words": ["spam"]})
    assert blocklist["actor"]["role"] == "moderator"
    sale_created = only(found, "sale.created", f"sale:{sale['id']}")
    assert sale_created["after"]["quantity"] == sale["quantity"] and sale_created["after"]["status"] == "live"
    ended = only(found, "sale.ended", f"sale:{sale['id']}")
    assert (ended["before"]["status"], ended["after"]["status"]) == ("live", "ended")
    exported = only(found, "orders.exported")
    assert exported["after"] == {"format": "csv", "status": "paid"} and exported["actor"]["role"] == "admin"
    for entry in found:
        assert isinstance(entry["at"], int) and entry["actor"]["id"]


def test_a_refused_action_leaves_no_entry(shop: Shop) -> None:
    """A product id that is taken (409) and a bad price (400) change nothing, and nothing is audited."""
    before = entries(shop)
    assert api(shop, "POST", "/products", shop.host, json={"id": "p0", "title": "Again", "price": 1}).status_code == 409
    assert api(shop, "PUT", "/products/p1", shop.host, json={"price": -1}).status_code == 400
    assert entries(shop) == before


async def test_moderation_and_room_status_over_the_room_socket_are_audited(shop: Shop) -> None:
    """A moderator's ban, unban, mute, message deletion and slow mode, and the host's room status, each leave an
    entry naming the room; a deleted message's entry keeps what it said."""
    async with (
        await RoomClient.connect(shop.room_url(shop.moderator)) as moderator,
        await RoomClient.connect(shop.room_url(shop.host)) as host,
        await RoomClient.connect(shop.room_url(shop.guest())) as viewer,
    ):
        posted = await viewer.request("chat.send", text="buy my stuff elsewhere")
        await moderator.wait_event("chat.message")
        for kind, fields in [
            ("chat.delete", {"message_id": posted["message_id"]}),
            ("chat.mute", {"user_id": "g_noisy", "seconds": 60}),
            ("chat.ban", {"user_id": "g_rude"}),
            ("chat.unban", {"user_id": "g_rude"}),
            ("chat.slow_mode", {"seconds": 15}),
        ]:
            assert (await moderator.request(kind, **fields))["type"] == "ack", kind
        assert (await host.request("room.status", status="ended"))["type"] == "ack"

    found = entries(shop)
    deleted = only(found, "chat.message_deleted", f"message:{posted['message_id']}")
    assert deleted["before"]["text"] == "buy my stuff elsewhere" and deleted["before"]["room_id"] == shop.room_id
    assert deleted["actor"]["role"] == "moderator" and deleted["actor"]["name"] == "Mod"
    muted = only(found, "chat.muted", "user:g_noisy")
    assert muted["after"] == {"room_id": shop.room_id, "user_id": "g_noisy", "seconds": 60}
    assert only(found, "chat.banned", "user:g_rude")["after"] == {"room_id": shop.room_id, "user_id": "g_rude"}
    assert only(found, "chat.unbanned", "user:g_rude")["after"] == {"room_id": shop.room_id, "user_id": "g_rude"}
    slow = only(found, "chat.slow_mode_changed", f"room:{shop.room_id}")
    assert (slow["before"]["slow_mode"], slow["after"]["slow_mode"]) == (0, 15)
    status = only(found, "room.status_changed", f"room:{shop.room_id}")
    assert (status["before"], status["after"]) == ({"status": "scheduled"}, {"status": "ended"})
    assert status["actor"]["role"] == "host"


def test_only_the_merchants_admins_read_its_audit_log(shop: Shop, server: ServerProcess, redis_url: str) -> None:
    """Hosts, moderators and another merchant's admin get 403, no token 401; the admin reads only its own entries."""
    other = make_shop(server.base_url, server.ws_url, redis_url)
    for token in (shop.host, shop.moderator, other.admin, mint(other.merchant_id, Role.ADMIN)):
        response = audit(shop, token)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    anonymous = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/audit")
    assert anonymous.status_code == 401
    assert all(f"room:{other.room_id}" != entry["subject"] for entry in entries(shop))


def test_the_audit_log_pages_newest_first(shop: Shop) -> None:
    """?limit=n pages from the newest entry; each page's `next` reads the one after it, the last says null;
    together the pages are the whole log, each entry once."""
    for index in range(7):
        assert api(shop, "PUT", "/blocklist", shop.admin, json={"words": [f"w{index}"]}).status_code == 200
    whole = entries(shop)
    assert len(whole) == 1 + 3 + 7  # the room, the three products, the block lists
    assert whole[0]["after"] == {"words": ["w6"]}
    pages: list[list[dict[str, Any]]] = []
    before: int | None = None
    while True:
        page = audit(shop, limit=3, **({"before": before} if before else {})).json()
        pages.append(page["entries"])
        before = page["next"]
        if before is None:
            break
        assert before == page["entries"][-1]["id"]
    assert [len(page) for page in pages] == [3, 3, 3, 2]
    assert [entry for page in pages for entry in page] == whole
    assert audit(shop, before=whole[-1]["id"]).json() == {"entries": [], "next": None}
    for bad in ({"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"before": -1}, {"before": "x"}):
        response = audit(shop, **bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request", bad


def test_the_api_neither_edits_nor_deletes_the_audit_log(shop: Shop) -> None:
    """PUT, PATCH, DELETE and POST on the audit route are 405 (JSON) and the log is unchanged."""
    before = entries(shop)
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = api(shop, method, "/audit", shop.admin, json={"entries": []})
        assert response.status_code == 405, method
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert "GET" in response.headers["allow"]
    assert entries(shop) == before


async def test_sql_cannot_update_or_delete_an_entry(shop: Shop, database_url: str) -> None:
    """Straight in SQL, UPDATE and DELETE of an audit entry are refused by the table's trigger."""
    entry = entries(shop)[0]
    connection = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("UPDATE audit_log SET action = 'nothing' WHERE audit_id = $1", entry["id"])
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("DELETE FROM audit_log WHERE audit_id = $1", entry["id"])
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("DELETE FROM audit_log WHERE merchant_id = $1", shop.merchant_id)
    finally:
        await connection.close()
    assert entries(shop)[0] == entry


def test_with_postgresql_down_a_staff_action_answers_503_and_does_not_happen(
    tmp_path: Path, redis_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    """While the server's PostgreSQL is down a product change answers 503 and the product stays as it was (no
    unaudited change); once PostgreSQL is back the same request succeeds and is audited."""
    postgres = EmbeddedPostgres(tmp_path / "postgres")
    postgres.start()
    try:
        served = server_factory(DATABASE_URL=postgres.url)
        shop = make_shop(served.base_url, served.ws_url, redis_url)
        postgres.stop()
        response = api(shop, "PUT", "/products/p0", shop.host, json={"price": 1})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert (
            api(shop, "POST", "/products", shop.host, json={"id": "new", "title": "New", "price": 1}).status_code == 503
        )
        products = api(shop, "GET", "/products", shop.host).json()
        assert [(p["id"], p["price"]) for p in products] == [("p0", 1000), ("p1", 1001), ("p2", 1002)]
        postgres.start()
        assert api(shop, "PUT", "/products/p0", shop.host, json={"price": 1}).status_code == 200
        assert only(entries(shop), "product.updated")["after"]["price"] == 1
    finally:
        postgres.stop()


async def test_only_the_retention_purge_removes_entries_and_only_old_ones(shop: Shop, database_url: str) -> None:
    """AuditLog.purge removes the entries older than its cut-off (and its permission ends with its transaction);
    newer entries stay, and a plain DELETE is still refused afterwards."""
    merchant = f"old-{shop.merchant_id}"
    connection = await asyncpg.connect(database_url)
    try:
        old_id = await connection.fetchval(
            "INSERT INTO audit_log (merchant_id, at, actor_id, actor_name, actor_role, action, subject)"
            " VALUES ($1, now() - interval '10 years', 'u', 'U', 'admin', 'product.created', 'product:x')"
            " RETURNING audit_id",
            merchant,
        )
        database = Database(database_url, pool_size=2)
        await database.open()
        try:
            removed = await AuditLog(database).purge(datetime.now(UTC) - timedelta(days=5 * 365))
        finally:
            await database.close()
        assert removed >= 1
        assert await connection.fetchval("SELECT count(*) FROM audit_log WHERE audit_id = $1", old_id) == 0
        assert entries(shop) and all(entry["action"] in ACTIONS for entry in entries(shop))
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("DELETE FROM audit_log WHERE merchant_id = $1", shop.merchant_id)
    finally:
        await connection.close()
