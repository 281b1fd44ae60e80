"""Per-merchant backup and restore (`python -m server.cli export-merchant / import-merchant`) between two installs
of real embedded Redis and PostgreSQL: a round trip gives back the same file, and every refusal is clear."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.ledger.embedded import EmbeddedPostgres
from server.rooms.catalog import Catalog
from server.store.embedded import EmbeddedRedis
from tests.client import RoomClient
from tests.conftest import ROOT, Shop
from tests.referrals.conftest import Person, buy_and_pay, program, share, visit
from tests.sale_helpers import GOOD_CARD, auth, buy, create_sale, pay, query, viewer_token, wait_recorded, wait_until
from tests.timing import seconds

# Every table of the record that holds a merchant's rows (order_changes through its sales).
MERCHANT_ROWS = {
    "shows": "merchant_id = $1",
    "sales": "merchant_id = $1",
    "orders": "merchant_id = $1",
    "order_changes": "sale_id IN (SELECT sale_id FROM sales WHERE merchant_id = $1)",
    "payments": "merchant_id = $1",
    "audit_log": "merchant_id = $1",
    "referral_programs": "merchant_id = $1",
    "commission_rules": "merchant_id = $1",
    "shares": "merchant_id = $1",
    "share_visits": "merchant_id = $1",
    "referral_bindings": "merchant_id = $1",
    "refunds": "merchant_id = $1",
    "commissions": "merchant_id = $1",
    "payouts": "merchant_id = $1",
    "group_buys": "merchant_id = $1",
    "sandbox_payouts": "payout_id IN (SELECT payout_id FROM payouts WHERE merchant_id = $1)",
    "service_threads": "merchant_id = $1",
    "service_messages": "merchant_id = $1",
    "service_blocks": "merchant_id = $1",
    "service_replies": "merchant_id = $1",
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An empty install: its own Redis and PostgreSQL server processes (no server ever ran on them)."""
    folder = tmp_path_factory.mktemp("target")
    with EmbeddedRedis(folder / "redis") as redis, EmbeddedPostgres(folder / "postgres") as postgres:
        yield {"REDIS_URL": redis.url, "DATABASE_URL": postgres.url}


def cli(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m server.cli` with these stores (and nothing else of the environment's livecart settings)."""
    environment = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path / "cli"), "SECRET_KEY": "cli", **env}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds(60),
    )


def counts(database_url: str, merchant_id: str) -> dict[str, int]:
    return {
        table: query(database_url, f"SELECT count(*) AS n FROM {table} WHERE {where}", merchant_id)[0]["n"]
        for table, where in MERCHANT_ROWS.items()
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def merchant_in(redis_url: str, merchant_id: str) -> dict[str, str] | None:
    async def read() -> dict[str, str] | None:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            return await Catalog(redis).get_merchant(merchant_id)
        finally:
            await redis.aclose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


async def stage_a_show(shop: Shop) -> None:
    """The room goes live (a show opens), a product is pinned and in the bag, slow mode on, some likes."""
    async with await RoomClient.connect(shop.room_url(shop.host)) as host:
        for kind, fields in [
            ("room.status", {"status": "live"}),
            ("product.pin", {"product_id": "p1"}),
            ("bag.set", {"product_ids": ["p0", "p1"]}),
            ("chat.slow_mode", {"seconds": 5}),
            ("like", {"count": 7}),
        ]:
            reply = await host.request(kind, **fields)
            assert reply["type"] == "ack", (kind, reply)
        await host.wait_event("likes", total=7)  # in the room's record


def sell(shop: Shop, database_url: str) -> dict[str, str]:
    """A sale with three buyers: one pays, one cancels, one keeps the hold; every order in the record."""
    sale = create_sale(shop, quantity=10)
    buyers = [viewer_token() for _ in range(3)]
    orders = []
    for token in buyers:
        response = buy(shop.base_url, token, sale["id"])
        assert response.status_code == 201, response.text
        orders.append(response.json()["order_id"])
    assert pay(shop.base_url, buyers[0], orders[0], GOOD_CARD).status_code == 200
    cancelled = httpx.post(f"{shop.base_url}/api/orders/{orders[1]}/cancel", headers=auth(buyers[1]))
    assert cancelled.status_code == 200
    statuses = {orders[0]: "paid", orders[1]: "cancelled", orders[2]: "held"}
    wait_recorded(database_url, statuses)
    wait_until(lambda: len(query(database_url, "SELECT 1 FROM payments WHERE order_id = $1", orders[0])) >= 2)
    return statuses


def share_and_earn(shop: Shop, database_url: str) -> None:
    """A sharer brings two buyers who pay; one order is refunded; the sharer withdraws and is paid."""
    program(shop, enabled=True, refund_days=0, min_withdrawal=100, default={"level1": {"rate_bp": 5000}})
    sharer = Person("Ana")
    code = share(shop, sharer)["code"]
    sale = create_sale(shop, quantity=10, price=500)["id"]
    orders = []
    for _ in range(2):
        buyer = Person()
        visit(shop, code, buyer)
        orders.append(buy_and_pay(shop, sale, buyer))
    wait_until(lambda: len(query(database_url, "SELECT 1 FROM commissions WHERE sharer_id = $1", sharer.user_id)) == 2)
    refunded = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/orders/{orders[0]}/refund",
                          json={"reason": "returned"}, headers=auth(shop.admin))  # fmt: skip
    assert refunded.status_code == 201, refunded.text
    wait_until(lambda: len(query(database_url, "SELECT 1 FROM commissions WHERE sharer_id = $1", sharer.user_id)) == 3)
    asked = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/withdrawals",
                       json={"amount": 250, "recipient": "ana@bank.example"},
                       headers={**auth(sharer.token), "Idempotency-Key": "w"})  # fmt: skip
    assert asked.status_code == 201, asked.text
    payout = asked.json()["payout_id"]
    assert httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/withdrawals/{payout}/approve",
                      headers=auth(shop.admin)).status_code == 200  # fmt: skip
    wait_until(lambda: query(database_url, "SELECT state FROM payouts WHERE payout_id = $1", payout)[0]["state"]
               == "paid")  # fmt: skip


def group_buy(shop: Shop, database_url: str) -> None:
    """Two members fill a group of a group-buy offer (the leader at the leader's price)."""
    sale = create_sale(shop, quantity=4, price=500, group={"size": 2, "window_seconds": 900, "leader_price": 400})
    group_id = None
    for person in (Person("Lead"), Person("Bo")):
        path = f"/api/sales/{sale['id']}/groups" + (f"/{group_id}/join" if group_id else "")
        held = httpx.post(f"{shop.base_url}{path}", headers={**auth(person.token), "Idempotency-Key": "g"})
        assert held.status_code == 201, held.text
        group_id = held.json()["group_id"]
        assert pay(shop.base_url, person.token, held.json()["order_id"]).status_code == 200
    wait_until(lambda: query(database_url, "SELECT state FROM group_buys WHERE group_id = $1", group_id)
               == [{"state": "filled"}])  # fmt: skip


def customer_service(shop: Shop) -> None:
    """A buyer's question and the host's answer, a buyer who blocked the shop, a canned reply."""
    buyer, blocker = Person("Mia"), Person("Bo")
    asked = httpx.post(f"{shop.base_url}/api/merchants/{shop.merchant_id}/messages", json={"text": "Size?"},
                       headers={**auth(buyer.token), "Idempotency-Key": "q1"})  # fmt: skip
    assert asked.status_code == 201, asked.text
    service = f"{shop.base_url}/api/merchants/{shop.merchant_id}/service"
    answered = httpx.post(f"{service}/threads/{asked.json()['thread']['id']}/messages", json={"text": "M"},
                          headers={**auth(shop.host), "Idempotency-Key": "a1"})  # fmt: skip
    assert answered.status_code == 201, answered.text
    blocked = httpx.put(f"{shop.base_url}/api/merchants/{shop.merchant_id}/block", headers=auth(blocker.token))
    assert blocked.status_code == 200, blocked.text
    reply = httpx.post(f"{service}/replies", json={"title": "Hi", "text": "Hi {buyer_name}"}, headers=auth(shop.admin))
    assert reply.status_code == 201, reply.text


@pytest.mark.anyio
async def test_a_merchant_round_trips_through_export_and_import(
    shop: Shop, database_url: str, redis_url: str, target: dict[str, str], tmp_path: Path
) -> None:
    """A shop with products, a block list, a live room with a show, a sale with paid, cancelled and held orders,
    payments, share-and-earn records (programme, rule, link, visits, bindings, commissions, a refund, a paid
    withdrawal), a filled group of a group-buy offer, a customer-service thread, block and canned reply, and audit
    entries is exported, imported into an empty install,
    and exported again: the two files are the same line for line (but the export time); the target has every row
    and the merchant; the id sequences are past the imported ids."""
    await stage_a_show(shop)
    httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/blocklist",
        json={"words": ["spam", "scam"]},
        headers=auth(shop.admin),
    ).raise_for_status()
    await asyncio.to_thread(sell, shop, database_url)
    await asyncio.to_thread(share_and_earn, shop, database_url)
    await asyncio.to_thread(group_buy, shop, database_url)
    await asyncio.to_thread(customer_service, shop)
    httpx.put(f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/rules/product/p1",
              json={"level1": {"fixed": 10}}, headers=auth(shop.admin)).raise_for_status()  # fmt: skip
    source = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    before = await asyncio.to_thread(counts, database_url, shop.merchant_id)
    assert all(before.values()), before  # every kind of row is there to round-trip

    first = tmp_path / "first.ndjson"
    exported = await asyncio.to_thread(
        cli, "export-merchant", shop.merchant_id, "-o", str(first), env=source, tmp_path=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    assert f"exported merchant {shop.merchant_id}" in exported.stderr
    imported = await asyncio.to_thread(cli, "import-merchant", str(first), env=target, tmp_path=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert f"imported merchant {shop.merchant_id}" in imported.stderr
    second = tmp_path / "second.ndjson"
    again = await asyncio.to_thread(
        cli, "export-merchant", shop.merchant_id, "-o", str(second), env=target, tmp_path=tmp_path
    )
    assert again.returncode == 0, again.stderr

    original, restored = lines(first), lines(second)
    assert original[0]["type"] == "header" and original[0]["merchant_id"] == shop.merchant_id
    for header in (original[0], restored[0]):
        del header["exported_at"]
    assert restored == original
    kinds = {line["type"] for line in original}
    assert kinds >= {"header", "merchant", "product", "blocklist", "room", "show", "sale", "order", "order_change"}
    assert kinds >= {"payment", "audit", "end"}
    room = next(line for line in original if line["type"] == "room")
    assert (room["status"], room["pinned"]["id"], room["slow_mode"], room["likes"]) == ("live", "p1", 5, 7)

    assert await asyncio.to_thread(counts, target["DATABASE_URL"], shop.merchant_id) == before
    serials = (("audit_log", "audit_id"), ("payments", "payment_id"), ("commissions", "entry_id"),
               ("service_messages", "message_id"))  # fmt: skip
    for table, column in serials:
        sequence = query(
            target["DATABASE_URL"],
            f"SELECT (SELECT last_value FROM {table}_{column}_seq) AS next, max({column}) AS top FROM {table}",
        )[0]
        assert sequence["next"] >= sequence["top"], table


@pytest.mark.anyio
async def test_importing_into_an_install_that_has_the_merchant_is_refused(
    shop: Shop, database_url: str, redis_url: str, target: dict[str, str], tmp_path: Path
) -> None:
    """Importing a merchant twice is refused and changes nothing; so is importing it back into its own install."""
    backup = tmp_path / "backup.ndjson"
    source = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    assert (
        await asyncio.to_thread(
            cli, "export-merchant", shop.merchant_id, "-o", str(backup), env=source, tmp_path=tmp_path
        )
    ).returncode == 0
    assert (await asyncio.to_thread(cli, "import-merchant", str(backup), env=target, tmp_path=tmp_path)).returncode == 0
    rows = await asyncio.to_thread(counts, target["DATABASE_URL"], shop.merchant_id)
    for stores in (target, source):
        refused = await asyncio.to_thread(cli, "import-merchant", str(backup), env=stores, tmp_path=tmp_path)
        assert refused.returncode == 1
        assert f"merchant '{shop.merchant_id}' already exists in this install" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert await asyncio.to_thread(counts, target["DATABASE_URL"], shop.merchant_id) == rows


def test_the_commands_say_clearly_what_is_wrong(
    shop: Shop, database_url: str, redis_url: str, target: dict[str, str], tmp_path: Path
) -> None:
    """No store URLs, a store that is not there, an unknown merchant, a missing file, a file that is not an export,
    and an export cut short: each is one clear line, no traceback, and no file or data is left behind."""
    source = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}
    unset = cli("export-merchant", shop.merchant_id, env={}, tmp_path=tmp_path)
    assert unset.returncode == 2 and "set REDIS_URL and DATABASE_URL" in unset.stderr
    assert "redis/redis.sock" in unset.stderr and "postgres&port=5432" in unset.stderr
    no_redis = cli(
        "export-merchant", "m", env={**source, "REDIS_URL": f"unix://{tmp_path}/none.sock"}, tmp_path=tmp_path
    )
    assert no_redis.returncode == 1 and "cannot reach Redis at REDIS_URL" in no_redis.stderr
    no_postgres = cli(
        "import-merchant",
        "-",
        env={**source, "DATABASE_URL": f"postgresql://livecart@/livecart?host={tmp_path}"},
        tmp_path=tmp_path,
    )
    assert no_postgres.returncode == 1 and "cannot reach PostgreSQL at DATABASE_URL" in no_postgres.stderr
    output = tmp_path / "nobody.ndjson"
    unknown = cli("export-merchant", "nobody", "-o", str(output), env=source, tmp_path=tmp_path)
    assert unknown.returncode == 1 and "no merchant 'nobody'" in unknown.stderr
    assert not output.exists() and not (tmp_path / "nobody.ndjson.part").exists()
    missing = cli("import-merchant", str(tmp_path / "missing.ndjson"), env=source, tmp_path=tmp_path)
    assert missing.returncode == 1 and "cannot open" in missing.stderr

    backup = tmp_path / "backup.ndjson"
    assert cli("export-merchant", shop.merchant_id, "-o", str(backup), env=source, tmp_path=tmp_path).returncode == 0
    text = backup.read_bytes().splitlines(keepends=True)
    garbage = tmp_path / "garbage.ndjson"
    garbage.write_text("id,title\n")
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(b"".join(text[:-1]))  # no end line
    for path, message in ((garbage, "line 1: not valid JSON"), (cut, "cut short")):
        result = cli("import-merchant", str(path), env=target, tmp_path=tmp_path)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert merchant_in(target["REDIS_URL"], shop.merchant_id) is None
    assert set(counts(target["DATABASE_URL"], shop.merchant_id).values()) == {0}
    for result in (unset, no_redis, no_postgres, unknown, missing):
        assert "Traceback" not in result.stderr
