"""Group buys (docs/group-buys.md) against real Redis, PostgreSQL and server processes: groups fill and fail, every
member's own order is refunded exactly once, expired holds free their slots, retries are idempotent, and no group
ever has more than N members or an offer more units out than it has, whatever the concurrency."""

from __future__ import annotations

import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from loadtests.support.server import ServerProcess
from server import keys
from server.ledger.embedded import EmbeddedPostgres
from server.sales.payments import SLOW_REFUND_CARD
from server.store.embedded import EmbeddedRedis
from tests.conftest import Shop, make_shop, start_server
from tests.referrals.conftest import Person, program, share, visit
from tests.sale_helpers import (
    GOOD_CARD,
    assert_error,
    auth,
    create_sale,
    invariant,
    pay,
    query,
    record_of_sale,
    repair,
    wait_until,
)
from tests.timing import seconds

GROUP_DB = "?db=7"  # the group tests' own Redis keyspace: only their servers' clocks visit their offers


@pytest.fixture(scope="module")
def group_stores(stores: dict[str, str]) -> dict[str, str]:
    """The session's stores, on a Redis keyspace of the group tests' own, with windows and leases short."""
    return {
        **stores,
        "REDIS_URL": stores["REDIS_URL"] + GROUP_DB,
        "GROUP_WINDOW_MIN_SECONDS": "1",
        "GROUP_REFUND_LEASE_MS": str(int(seconds(1) * 1000)),
        "SALE_CLOCK_MS": "50",
    }


@pytest.fixture(scope="module")
def servers(group_stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two server processes on the group tests' stores."""
    started = [start_server(tmp_path_factory.mktemp(f"groups{n}"), group_stores) for n in range(2)]
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def shop(servers: list[ServerProcess], group_stores: dict[str, str]) -> Shop:
    return make_shop(servers[0].base_url, servers[0].ws_url, group_stores["REDIS_URL"])


def offer(shop: Shop, size: int = 3, window: int = 600, base_url: str | None = None, **terms: Any) -> dict[str, Any]:
    group = {"size": size, "window_seconds": window, **terms.pop("group", {})}
    return create_sale(shop, base_url, price=700, group=group, **terms)


def open_group(url: str, buyer: Person, sale_id: str, key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/api/sales/{sale_id}/groups",
        headers={**auth(buyer.token), "Idempotency-Key": key or secrets.token_hex(8)},
        timeout=seconds(10),
    )


def join(url: str, buyer: Person, group_id: str, key: str | None = None) -> httpx.Response:
    sale_id = group_id.partition(".")[0]
    return httpx.post(
        f"{url}/api/sales/{sale_id}/groups/{group_id}/join",
        headers={**auth(buyer.token), "Idempotency-Key": key or secrets.token_hex(8)},
        timeout=seconds(10),
    )


def held(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "held" and body["group_id"] == body["group"]["id"]
    return body


def paid(url: str, buyer: Person, order_id: str, card: str = GOOD_CARD) -> dict[str, Any]:
    response = pay(url, buyer.token, order_id, card)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "paid"
    return body


def group_of(url: str, group_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/groups/{group_id}", timeout=seconds(10))
    assert response.status_code == 200, response.text
    return dict(response.json())


def order_of(url: str, buyer: Person, order_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/api/orders/{order_id}", headers=auth(buyer.token), timeout=seconds(10))
    assert response.status_code == 200, response.text
    return dict(response.json())


def lead(url: str, sale_id: str, name: str = "Leader", card: str = GOOD_CARD) -> tuple[Person, dict[str, Any]]:
    """A leader opens a group and pays: the group is open. The leader and their paid order (with the group)."""
    leader = Person(name)
    order = held(open_group(url, leader, sale_id))
    paid(url, leader, order["order_id"], card)
    return leader, order


def test_a_group_fills_when_its_last_member_pays(shop: Shop, servers: list[ServerProcess], database_url: str) -> None:
    """Opening holds the leader's unit (at the leader's price) and reserves N-1; the group opens when the leader pays,
    joiners take reserved units, and the N-th payment fills it: every order paid, nothing reserved, the record has
    the group and each member's own price."""
    url, other = servers[0].base_url, servers[1].base_url
    sale = offer(shop, quantity=9, group={"leader_price": 500})
    assert sale["group"] == {"size": 3, "window_seconds": 600, "leader_price": 500}
    leader = Person("Ana")
    opened = held(open_group(url, leader, sale["id"]))
    assert opened["unit_price"] == 500 and opened["group"]["state"] == "pending"
    assert invariant(shop, sale["id"])["reserved"] == 2
    assert_error(join(url, Person(), opened["group_id"]), 409, "group_not_open")
    paid(url, leader, opened["order_id"])
    group = group_of(other, opened["group_id"])
    assert group["state"] == "open" and group["joined"] == 1 and group["expires_at"] > group["opened_at"]
    board = httpx.get(f"{other}/api/sales/{sale['id']}/groups").json()
    assert [item["id"] for item in board["open"]] == [opened["group_id"]] and board["forming"] == 1
    bo, cy = Person("Bo"), Person("Cy")
    second = held(join(other, bo, opened["group_id"]))
    third = held(join(url, cy, opened["group_id"]))
    assert second["unit_price"] == 700 and third["group"]["joined"] == 3
    assert_error(join(url, Person(), opened["group_id"]), 409, "group_full")
    paid(other, bo, second["order_id"])
    assert group_of(url, opened["group_id"])["state"] == "open"
    assert paid(url, cy, third["order_id"])["group"]["state"] == "filled"  # the payment's answer has the group
    group = group_of(other, opened["group_id"])
    assert group["state"] == "filled" and group["paid"] == 3
    assert [member["name"] for member in group["members"]] == ["Ana", "Bo", "Cy"]
    numbers = invariant(shop, sale["id"])
    assert (numbers["paid"], numbers["reserved"], numbers["held"], numbers["available"]) == (3, 0, 0, 6)
    wait_until(
        lambda: (
            query(database_url, "SELECT state FROM group_buys WHERE group_id = $1", opened["group_id"])
            == [{"state": "filled"}]
        )
    )
    rows = query(database_url, "SELECT unit_price, status FROM orders WHERE group_id = $1 ORDER BY created_at",
                 opened["group_id"])  # fmt: skip
    assert rows == [{"unit_price": 500, "status": "paid"}, {"unit_price": 700, "status": "paid"},
                    {"unit_price": 700, "status": "paid"}]  # fmt: skip
    amounts = query(database_url, "SELECT amount FROM payments WHERE order_id = $1 AND kind = 'capture'",
                    opened["order_id"])  # fmt: skip
    assert amounts == [{"amount": 500}]


def test_a_group_that_does_not_fill_refunds_each_member_once(
    shop: Shop, servers: list[ServerProcess], database_url: str
) -> None:
    """When the window ends with the group short, each paid member's own order is refunded once (the sandbox's book
    and the payments show one refund each), a held member's hold expires, and every unit is back on sale."""
    url = servers[0].base_url
    sale = offer(shop, quantity=6, window=2)
    leader, opened = lead(url, sale["id"])
    joiner, waiter = Person("Bo"), Person("Cy")
    second = held(join(url, joiner, opened["group_id"]))
    paid(url, joiner, second["order_id"])
    third = held(join(url, waiter, opened["group_id"]))  # never pays
    wait_until(lambda: group_of(url, opened["group_id"])["state"] == "failed", timeout=10)
    for buyer, order_id in ((leader, opened["order_id"]), (joiner, second["order_id"])):
        wait_until(lambda: "refund" in order_of(url, buyer, order_id), timeout=10)  # noqa: B023
        order = order_of(url, buyer, order_id)
        assert order["status"] == "refunded"
        assert order["refund"]["amount"] == 700 and order["refund"]["reason"] == "group did not fill"
    assert order_of(url, waiter, third["order_id"])["status"] == "expired"
    assert_error(pay(url, waiter.token, third["order_id"]), 409, "hold_expired")
    refunds = query(database_url, "SELECT order_id, count(*) AS n FROM payments WHERE kind = 'refund'"
                    " AND order_id = ANY($1) GROUP BY order_id", [opened["order_id"], second["order_id"]])  # fmt: skip
    assert sorted(row["n"] for row in refunds) == [1, 1]
    book = query(database_url, "SELECT state FROM sandbox_authorizations WHERE reference = ANY($1)",
                 [opened["order_id"], second["order_id"]])  # fmt: skip
    assert [row["state"] for row in book] == ["refunded", "refunded"]
    numbers = invariant(shop, sale["id"])
    assert (numbers["available"], numbers["reserved"], numbers["held"], numbers["paid"]) == (6, 0, 0, 0)
    # The buyers may buy again: their limit came back with their units.
    assert held(open_group(url, leader, sale["id"]))["group"]["state"] == "pending"


def test_expired_holds_free_their_slots_and_a_leader_who_never_pays_cancels_the_group(
    shop: Shop, servers: list[ServerProcess]
) -> None:
    """A joiner whose hold expires frees the slot for the next one (its unit back in the group's reserve); a leader
    whose hold expires before paying takes the pending group with them (its N units back on sale)."""
    url = servers[1].base_url
    sale = offer(shop, quantity=6, hold_seconds=1)
    _, opened = lead(url, sale["id"])
    late = Person("Late")
    slot = held(join(url, late, opened["group_id"]))
    payer = Person("Payer")
    paid(url, payer, held(join(url, payer, opened["group_id"]))["order_id"])
    assert_error(join(url, Person(), opened["group_id"]), 409, "group_full")
    wait_until(lambda: order_of(url, late, slot["order_id"])["status"] == "expired", timeout=10)
    assert group_of(url, opened["group_id"])["joined"] == 2
    last = Person("Last")
    taken = held(join(url, last, opened["group_id"]))
    assert taken["group"]["joined"] == 3
    paid(url, last, taken["order_id"])
    assert group_of(url, opened["group_id"])["state"] == "filled"
    ghost = Person("Ghost")
    pending = held(open_group(url, ghost, sale["id"]))
    assert invariant(shop, sale["id"])["reserved"] == 2
    wait_until(lambda: group_of(url, pending["group_id"])["state"] == "cancelled", timeout=10)
    numbers = invariant(shop, sale["id"])
    assert numbers["reserved"] == 0 and numbers["available"] == 3


def test_retries_are_idempotent_and_one_forming_group_at_a_time(shop: Shop, servers: list[ServerProcess]) -> None:
    """The same Idempotency-Key returns the same order on either process and moves nothing twice; a buyer in a
    forming group can neither open nor join another; a plain purchase of an offer, a group of a flash sale, a group
    id of another offer and a cancelled group's join are refused with their codes."""
    url, other = servers[0].base_url, servers[1].base_url
    sale = offer(shop, quantity=9, per_user_limit=3)
    leader = Person()
    first = open_group(url, leader, sale["id"], key="open-1")
    again = open_group(other, leader, sale["id"], key="open-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["order_id"] == first.json()["order_id"]
    assert invariant(shop, sale["id"])["reserved"] == 2
    message = assert_error(open_group(url, leader, sale["id"]), 409, "in_group")
    assert "already" in message
    paid(url, leader, first.json()["order_id"])
    friend = Person()
    joined = join(url, friend, first.json()["group_id"], key="join-1")
    rejoined = join(other, friend, first.json()["group_id"], key="join-1")
    assert joined.status_code == 201 and rejoined.status_code == 200
    assert rejoined.json()["order_id"] == joined.json()["order_id"]
    assert group_of(url, first.json()["group_id"])["joined"] == 2
    assert_error(join(url, friend, first.json()["group_id"]), 409, "in_group")
    _, another = lead(url, sale["id"])
    assert_error(join(url, leader, another["group_id"], key="open-1"), 400, "idempotency_key")
    purchase = httpx.post(
        f"{url}/api/sales/{sale['id']}/purchases", json={}, headers={**auth(friend.token), "Idempotency-Key": "p1"}
    )
    assert_error(purchase, 409, "group_only")
    flash = create_sale(shop, quantity=5)
    assert_error(open_group(url, Person(), flash["id"]), 409, "not_a_group_offer")
    other_offer = offer(shop, quantity=3)
    wrong = httpx.post(
        f"{url}/api/sales/{other_offer['id']}/groups/{first.json()['group_id']}/join",
        headers={**auth(friend.token), "Idempotency-Key": "x"},
    )
    assert_error(wrong, 404, "unknown_group")
    assert_error(join(url, Person(), f"{sale['id']}.g000000000000"), 404, "unknown_group")
    assert httpx.get(f"{url}/api/groups/nonsense").status_code == 404
    guest = httpx.post(f"{url}/api/guest").json()["token"]
    refused = httpx.post(
        f"{url}/api/sales/{sale['id']}/groups", headers={**auth(guest), "Idempotency-Key": "g1"}, timeout=seconds(10)
    )
    assert_error(refused, 403, "sign_in_required")
    invariant(shop, sale["id"])


def test_offer_terms_are_checked(shop: Shop) -> None:
    """A group of fewer than 2, a window outside its bounds, a leader's price above the group price, a group bigger
    than the stock: each is 400 and makes nothing."""
    for group in (
        {"size": 1, "window_seconds": 600},
        {"size": 3, "window_seconds": 0},
        {"size": 3, "window_seconds": 90_000},
        {"size": 3, "window_seconds": 600, "leader_price": 800},
        {"size": 20, "window_seconds": 600},
        "three",
    ):
        response = httpx.post(
            f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/sales",
            json={"product_id": shop.products[0], "price": 700, "quantity": 10, "starts_at": int(time.time() * 1000),
                  "duration_seconds": 600, "group": group},
            headers=auth(shop.host),
        )  # fmt: skip
        assert_error(response, 400, "bad_request")


def test_300_buyers_racing_never_overfill_a_group_or_oversell(
    shop: Shop, servers: list[ServerProcess], database_url: str
) -> None:
    """300 buyers race to join 40 open groups of 3 (80 places) across two processes, paying at once: no group has
    more than 3 members, exactly 80 joins succeed, the invariant holds, and the record agrees."""
    urls = [process.base_url for process in servers]
    sale = offer(shop, quantity=120, per_user_limit=1)
    groups = [lead(urls[n % 2], sale["id"], f"L{n}")[1]["group_id"] for n in range(40)]
    buyers = [Person(f"B{n}") for n in range(300)]

    def attempt(n: int) -> str:
        buyer, url = buyers[n], urls[n % 2]
        for offset in range(3):  # a buyer refused a full group tries the next
            response = join(url, buyer, groups[(n + offset * 7) % len(groups)])
            if response.status_code == 201:
                paid(url, buyer, response.json()["order_id"])
                return "joined"
            code = response.json()["error"]["code"]
            assert code in ("group_full", "group_closed"), response.text
        return "refused"

    with ThreadPoolExecutor(32) as pool:
        outcomes = Counter(pool.map(attempt, range(300)))
    states = [group_of(urls[0], group_id) for group_id in groups]
    assert max(group["joined"] for group in states) == 3
    filled = sum(group["state"] == "filled" for group in states)
    assert outcomes["joined"] == 2 * filled and filled <= 40
    numbers = invariant(shop, sale["id"])
    assert numbers["paid"] == 40 + outcomes["joined"]
    assert numbers["available"] + numbers["reserved"] == 120 - numbers["paid"]
    wait_until(
        lambda: query(database_url, "SELECT count(*) AS n FROM group_buys WHERE sale_id = $1 AND state = 'filled'",
                      sale["id"]) == [{"n": filled}], timeout=10)  # fmt: skip
    biggest = query(database_url, "SELECT max(jsonb_array_length(members)) AS n FROM group_buys WHERE sale_id = $1",
                    sale["id"])  # fmt: skip
    assert biggest == [{"n": 3}]


def test_a_refunder_killed_midway_leaves_the_refund_to_another_process(
    group_stores: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    """The process that claimed a failed group's refunds is killed while the gateway is refunding (a slow refund);
    once its claim lapses another process makes each refund, and each member is refunded exactly once (and counted
    on its /metrics)."""
    stores = {**group_stores, "SANDBOX_SLOW_CARD_MS": str(int(seconds(3) * 1000)),
              "REDIS_URL": group_stores["REDIS_URL"].replace(GROUP_DB, "?db=8")}  # fmt: skip
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = start_server(tmp_path / "first", stores)
    try:
        shop = make_shop(first.base_url, first.ws_url, stores["REDIS_URL"])
        sale = offer(shop, quantity=6, window=2, base_url=first.base_url)
        _, opened = lead(first.base_url, sale["id"], card=SLOW_REFUND_CARD)
        joiner = Person()
        second = held(join(first.base_url, joiner, opened["group_id"]))
        paid(first.base_url, joiner, second["order_id"], SLOW_REFUND_CARD)
        orders = [opened["order_id"], second["order_id"]]
        wait_until(lambda: group_of(first.base_url, opened["group_id"])["state"] == "failed", timeout=10)
        # The only process claimed the refunds and is inside the gateway's slow refund: kill it there.
        book = query(database_url, "SELECT state FROM sandbox_authorizations WHERE reference = ANY($1)", orders)
        assert [row["state"] for row in book] == ["captured", "captured"]
        first.stop(signal.SIGKILL)
    finally:
        first.stop()
    assert query(database_url, "SELECT * FROM refunds WHERE order_id = ANY($1)", orders) == []
    second_process = start_server(tmp_path / "second", stores)
    try:
        wait_until(
            lambda: len(query(database_url, "SELECT 1 FROM refunds WHERE order_id = ANY($1)", orders)) == 2,
            timeout=20,
        )
        rows = query(database_url, "SELECT kind, count(*) AS n FROM payments WHERE order_id = ANY($1)"
                     " GROUP BY kind ORDER BY kind", orders)  # fmt: skip
        assert rows == [
            {"kind": "authorization", "n": 2},
            {"kind": "capture", "n": 2},
            {"kind": "refund", "n": 2},
        ]
        book = query(database_url, "SELECT state FROM sandbox_authorizations WHERE reference = ANY($1)", orders)
        assert [row["state"] for row in book] == ["refunded", "refunded"]
        text = httpx.get(f"{second_process.base_url}/metrics", headers=second_process.metrics_headers).text
        assert 'livecart_group_refunds_total{outcome="made"} 2.0' in text.splitlines()
    finally:
        second_process.stop()


def test_a_sharer_earns_on_a_group_member_and_loses_it_when_the_group_fails(
    shop: Shop, servers: list[ServerProcess], database_url: str
) -> None:
    """Share and earn counts a group member's paid order like any other (the member came through a share link), and
    the failed group's refund reverses the commission: a commission row and its reversal, both of the member's own
    price."""
    url = servers[0].base_url
    program(shop, enabled=True, refund_days=0, default={"level1": {"rate_bp": 1000}})
    sharer, fan = Person("Sharer"), Person("Fan")
    visit(shop, share(shop, sharer)["code"], fan)
    sale = offer(shop, quantity=3, window=2, group={"leader_price": 600})
    opened = open_group(url, fan, sale["id"])
    paid(url, fan, held(opened)["order_id"])
    order_id = opened.json()["order_id"]

    def rows() -> list[dict[str, Any]]:
        return query(
            database_url, "SELECT kind, amount FROM commissions WHERE order_id = $1 ORDER BY entry_id", order_id
        )

    wait_until(lambda: len(rows()) == 2, timeout=15)
    assert rows() == [{"kind": "commission", "amount": 60}, {"kind": "reversal", "amount": -60}]


def test_redis_and_postgresql_going_away_mid_group_lose_nothing(tmp_path: Path) -> None:
    """With Redis down a join is a clear 503 and, once Redis is back, the group has its members and the retry with
    the same key takes the place once; with PostgreSQL down when the window ends, the group still fails at once (the
    units back on sale) and its members' money goes back, once each, when PostgreSQL is back."""
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        postgres = EmbeddedPostgres(tmp_path / "postgres")
        database_url = postgres.start()
        stores = {"REDIS_URL": redis_server.url, "DATABASE_URL": database_url, "GROUP_WINDOW_MIN_SECONDS": "1",
                  "GROUP_REFUND_LEASE_MS": str(int(seconds(1) * 1000)), "SALE_CLOCK_MS": "50"}  # fmt: skip
        server = start_server(tmp_path, stores)
        try:
            url = server.base_url
            shop = make_shop(url, server.ws_url, redis_server.url)
            sale = offer(shop, quantity=3, window=int(seconds(8)))
            leader, opened = lead(url, sale["id"])
            joiner = Person("Bo")
            redis_server.stop()
            message = assert_error(join(url, joiner, opened["group_id"], key="bo-1"), 503, "unavailable")
            assert "Idempotency-Key" in message
            redis_server.start()
            wait_until(lambda: join(url, joiner, opened["group_id"], key="bo-1").status_code == 200, timeout=15)
            group = group_of(url, opened["group_id"])
            assert (group["state"], group["joined"]) == ("open", 2)
            second = join(url, joiner, opened["group_id"], key="bo-1").json()["order_id"]
            paid(url, joiner, second)
            postgres.stop()
            wait_until(lambda: group_of(url, opened["group_id"])["state"] == "failed", timeout=20)
            board = httpx.get(f"{url}/api/sales/{sale['id']}/groups").json()
            assert (board["forming"], board["failed"], board["reserved"]) == (0, 1, 0)
            postgres.start()
            orders = [opened["order_id"], second]
            refunds = "SELECT 1 FROM refunds WHERE order_id = ANY($1)"
            wait_until(lambda: len(query(database_url, refunds, orders)) == 2, timeout=30)
            moves = "SELECT count(*) AS n FROM payments WHERE kind = 'refund' AND order_id = ANY($1)"
            assert query(database_url, moves, orders) == [{"n": 2}]
            assert order_of(url, leader, opened["order_id"])["refund"]["amount"] == 700
        finally:
            server.stop()
            postgres.stop()


def test_an_offer_whose_redis_keys_were_lost_is_rebuilt_with_its_groups(
    shop: Shop, servers: list[ServerProcess], group_stores: dict[str, str], database_url: str
) -> None:
    """Every Redis key of an offer is deleted mid-offer. repair-sale rebuilds its groups from the record (an open
    group with a member still to pay, a pending group), their reserve and who is in which group: the invariant holds,
    the last member pays and fills the group, and a member cannot open a second group."""
    url = servers[0].base_url
    sale = offer(shop, quantity=9)
    leader, opened = lead(url, sale["id"])
    joiner, last = Person("Bo"), Person("Cy")
    paid(url, joiner, held(join(url, joiner, opened["group_id"]))["order_id"])
    pending_last = held(join(url, last, opened["group_id"]))
    waiting = Person("Di")
    pending = held(open_group(url, waiting, sale["id"]))
    client = redis.Redis.from_url(group_stores["REDIS_URL"], decode_responses=True)
    try:
        wait_until(
            lambda: (
                len(record_of_sale(database_url, sale["id"])) == 4
                and client.xlen(keys.sale_log(sale["id"])) == 0
                and len(query(database_url, "SELECT 1 FROM group_buys WHERE sale_id = $1", sale["id"])) == 2
            ),
            timeout=10,
        )
        before = invariant(shop, sale["id"])
        client.delete(*client.scan_iter(match=f"sale:{{{sale['id']}}}*"))
    finally:
        client.close()
    done = repair(group_stores, sale["id"])
    assert done.returncode == 0, done.stderr
    after = invariant(shop, sale["id"])
    fields = ("available", "reserved", "held", "paid")
    assert [after[name] for name in fields] == [before[name] for name in fields] == [3, 2, 2, 2]
    group = group_of(url, opened["group_id"])
    assert (group["state"], group["joined"], group["paid"]) == ("open", 3, 2)
    assert group_of(url, pending["group_id"])["state"] == "pending"
    assert_error(open_group(url, waiting, sale["id"]), 409, "in_group")
    paid(url, last, pending_last["order_id"])
    assert group_of(url, opened["group_id"])["state"] == "filled"
    board = httpx.get(f"{url}/api/sales/{sale['id']}/groups").json()
    assert (board["forming"], board["filled"], board["reserved"]) == (0, 1, 2)
    assert order_of(url, leader, opened["order_id"])["status"] == "paid"


def test_opening_needs_a_whole_group_of_units(shop: Shop, servers: list[ServerProcess]) -> None:
    """Opening takes N units at once: with fewer left, opening is sold_out and says to join a group instead; joining
    still works, and the units are never more than the offer has."""
    url = servers[0].base_url
    sale = offer(shop, quantity=4)
    _, opened = lead(url, sale["id"])
    message = assert_error(open_group(url, Person(), sale["id"]), 409, "sold_out")
    assert "join an open group" in message
    held(join(url, Person(), opened["group_id"]))
    numbers = invariant(shop, sale["id"])
    assert (numbers["available"], numbers["reserved"], numbers["held"], numbers["paid"]) == (1, 1, 1, 1)
