"""Auctions against real Redis, PostgreSQL and two server processes (docs/auctions.md): proxy bids against manual
ones, a storm of 500 bidders in the last seconds of an anti-snipe auction, a win paid or passed on, bars."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from loadtests.support.server import ServerProcess
from tests.access.conftest import new_email, sign_in
from tests.auctions.conftest import bid, card, placed, reaches, start, started
from tests.client import RoomClient
from tests.conftest import Person, Shop
from tests.sale_helpers import assert_error, auth, pay, query, wait_until
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def bids_of(shop: Shop, auction_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{shop.base_url}/api/auctions/{auction_id}/bids", timeout=seconds(10))
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


async def test_proxy_bids_answer_manual_bids_one_step_at_a_time(shop: Shop, pair: list[ServerProcess]) -> None:
    """A maximum bids for its owner only as far as needed; an equal maximum leaves the earlier bidder in front; the
    leader may raise their maximum without raising the price; a repeated key bids once; the bidder who lost the lead
    hears it; viewers on both processes see every change."""
    ada, bob = Person("Ada"), Person("Bob")
    auction = started(shop, starting_bid=1000)
    aid = auction["id"]
    async with (
        await RoomClient.connect(shop.room_url(bob.token)) as bob_socket,
        await RoomClient.connect(shop.room_url(ada.token).replace(pair[0].ws_url, pair[1].ws_url)) as watcher,
    ):
        assert placed(shop.base_url, ada.token, aid, 1000, 2000)["outcome"] == "leading"
        answer = placed(pair[1].base_url, bob.token, aid, 1100)
        assert answer["outcome"] == "outbid" and answer["auction"]["price"] == 1200
        assert answer["auction"]["leader"] == "Ada" and answer["auction"]["next_bid"] == 1300
        tie = placed(shop.base_url, bob.token, aid, 1300, 2000)
        assert tie["outcome"] == "outbid" and tie["auction"]["price"] == 2000 and tie["auction"]["leader"] == "Ada"
        key = secrets.token_hex(8)
        first = bid(shop.base_url, bob.token, aid, 2100, key=key)
        assert first.status_code == 201 and first.json()["outcome"] == "leading"
        replay = bid(pair[1].base_url, bob.token, aid, 2100, key=key)
        assert replay.status_code == 200 and replay.json()["auction"]["bids"] == first.json()["auction"]["bids"]
        assert placed(shop.base_url, ada.token, aid, 2200, 3000)["auction"]["price"] == 2200
        told = await bob_socket.wait_event("auction.outbid", auction_id=aid)
        assert told["price"] == 2200 and told["next_bid"] == 2300
        assert placed(shop.base_url, bob.token, aid, 2300)["auction"]["price"] == 2400
        raised = placed(shop.base_url, ada.token, aid, 2500, 5000)
        assert raised["outcome"] == "raised" and raised["auction"]["price"] == 2400
        message = assert_error(bid(shop.base_url, ada.token, aid, 2500, 4000), 409, "too_low")
        assert "already in the lead" in message
        stale = bid(shop.base_url, bob.token, aid, 2400)
        assert_error(stale, 409, "too_low")
        assert stale.json()["error"]["next_bid"] == 2500

        final = card(shop.base_url, aid)
        await watcher.wait_event("auction", id=aid, version=final["version"])
        assert final["bids"] == 9 and final["leader"] == "Ada" and final["price"] == 2400

    wait_until(lambda: len(bids_of(shop, aid)) == 9)
    assert [(row["name"], row["amount"], row["proxy"]) for row in bids_of(shop, aid)] == [
        ("Ada", 1000, False),
        ("Bob", 1100, False),
        ("Ada", 1200, True),
        ("Bob", 2000, True),
        ("Ada", 2000, True),
        ("Bob", 2100, False),
        ("Ada", 2200, False),
        ("Bob", 2300, False),
        ("Ada", 2400, True),
    ]


async def test_500_bidders_on_two_processes_in_the_last_seconds_of_an_anti_snipe_auction(
    shop: Shop, pair: list[ServerProcess], database_url: str
) -> None:
    """500 bidders on two processes bid in the last 2 seconds: every accepted bid is in the record, each extended
    the end to 5 s after it, the earlier of two equal maximums wins at that maximum, and viewers on both processes
    end on the final card."""
    top = 100_000
    first, second = Person("First"), Person("Second")
    storm = [Person(f"Bidder {index}") for index in range(498)]
    maxima = {person.user_id: 2000 + 10 * index for index, person in enumerate(storm)} | {second.user_id: top}
    auction = started(shop, starting_bid=1000, duration_seconds=8, mode="anti_snipe", extend_seconds=5)
    aid = auction["id"]
    assert placed(shop.base_url, first.token, aid, 1000, top)["outcome"] == "leading"
    accepted: list[tuple[str, int]] = []

    async def bidder(client: httpx.AsyncClient, person: Person, base_url: str, amount: int) -> None:
        """One bid with one's maximum: accepted while the maximum covers the next bid, else refused (not lost)."""
        response = await client.post(
            f"{base_url}/api/auctions/{aid}/bids",
            json={"amount": amount, "max": maxima[person.user_id]},
            headers={**auth(person.token), "Idempotency-Key": secrets.token_hex(8)},
        )
        if response.status_code == 201:
            accepted.append((person.user_id, response.json()["auction"]["ends_at"]))
        else:
            assert response.json()["error"]["code"] in ("too_low", "auction_closed"), response.text

    async with (
        await RoomClient.connect(shop.room_url(first.token)) as near,
        await RoomClient.connect(shop.room_url(second.token).replace(pair[0].ws_url, pair[1].ws_url)) as far,
    ):
        now = card(shop.base_url, aid)
        wait_until(lambda: card(shop.base_url, aid)["ends_at"] - card(shop.base_url, aid)["server_time"] <= 2000, 10)
        limits = httpx.Limits(max_connections=200)
        opening = card(shop.base_url, aid)["next_bid"]
        async with httpx.AsyncClient(timeout=seconds(30), limits=limits) as client:
            # The first of the storm opens it at once (a busy machine may take seconds to send the rest): its bid in
            # the last 2 seconds moves the end to 5 s after it, and each accepted bid after it moves it again.
            await bidder(client, storm[0], pair[0].base_url, opening)
            await asyncio.gather(
                *(
                    bidder(client, person, pair[index % 2].base_url, opening)
                    for index, person in enumerate([second, *storm[1:]])
                )
            )
        closed = reaches(shop.base_url, aid, "awarded", "sold", "unsold", timeout=20)
        for socket in (near, far):
            await socket.wait_event("auction", timeout=10, id=aid, version=closed["version"])

    assert closed["winner"] == "First" and closed["price"] == top
    assert any(user == second.user_id for user, _ in accepted)
    rows = query(database_url, "SELECT user_id, amount, at FROM auction_bids WHERE auction_id = $1 ORDER BY seq", aid)
    assert len(rows) == closed["bids"] == 1 + 2 * len(accepted)  # each storm bid answered by First's maximum
    challengers = {(row["user_id"], row["amount"]) for row in rows if row["user_id"] != first.user_id}
    assert challengers == {(user, maxima[user]) for user, _ in accepted}
    ends, extensions = auction["ends_at"], 0  # replayed: a bid less than 5 s before the end moves it to 5 s after
    for row in rows[1::2] if len(rows) > 1 else []:  # each storm bid's own row (then First's answer)
        at = int(row["at"].timestamp() * 1000)
        if ends - at < 5000:
            ends, extensions = at + 5000, extensions + 1
    assert (closed["ends_at"], closed["extensions"]) == (ends, extensions)
    assert closed["ends_at"] == max(ends for _, ends in accepted) and extensions >= 1
    assert closed["ends_at"] > now["ends_at"]
    assert_error(bid(shop.base_url, second.token, aid, top + 2500), 409, "auction_closed")


async def test_an_unpaid_win_passes_to_the_next_bidder_who_pays(shop: Shop, pair: list[ServerProcess]) -> None:
    """The winner gets a held order at the winning price only they may buy; unpaid, it lapses (a strike) and the next
    highest bidder gets an order at their own highest bid; paid, the auction is sold. A barred bidder's bids are
    refused in the merchant's auctions until the bar is lifted."""
    ada, bob, cy = Person("Ada"), Person("Bob"), Person("Cy")
    pay_seconds = round(seconds(3))
    async with (
        await RoomClient.connect(shop.room_url(cy.token)) as cy_socket,
        await RoomClient.connect(shop.room_url(bob.token).replace(pair[0].ws_url, pair[1].ws_url)) as bob_socket,
    ):
        auction = started(shop, duration_seconds=1, mode="sudden_death", pay_seconds=pay_seconds, unpaid="next_bidder")
        aid = auction["id"]
        placed(shop.base_url, ada.token, aid, 1000)
        placed(pair[1].base_url, bob.token, aid, 1100)
        placed(shop.base_url, cy.token, aid, 1200)
        won = await cy_socket.wait_event("auction.won", timeout=10, auction_id=aid)
        assert won["price"] == 1200 and won["pay_by"] > 0
        order = httpx.get(f"{shop.base_url}/api/orders/{won['order_id']}", headers=auth(cy.token)).json()
        assert order["status"] == "held" and order["amount"] == 1200
        sale_id = order["sale_id"]
        stranger = httpx.post(
            f"{shop.base_url}/api/sales/{sale_id}/purchases",
            json={"quantity": 1},
            headers={**auth(ada.token), "Idempotency-Key": secrets.token_hex(8)},
        )
        assert_error(stranger, 403, "not_the_winner")

        passed = await bob_socket.wait_event("auction.won", timeout=pay_seconds + 10, auction_id=aid)
        assert passed["price"] == 1100
        paid = pay(pair[1].base_url, bob.token, passed["order_id"])
        assert paid.status_code == 200, paid.text
    sold = reaches(shop.base_url, aid, "sold")
    assert sold["winner"] == "Bob" and sold["award"] == {"round": 2, "state": "paid"}

    staff = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/auctions", headers=auth(shop.admin)).json()
    awards = next(item for item in staff if item["id"] == aid)["awards"]
    assert [(award["user_id"], award["outcome"]) for award in awards] == [(cy.user_id, "unpaid"), (bob.user_id, "paid")]
    bidders = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/bidders", headers=auth(shop.admin)).json()
    assert [(row["user_id"], row["strikes"]) for row in bidders] == [(cy.user_id, 1)]

    bar_url = f"{shop.base_url}/api/merchants/{shop.merchant_id}/bidders/{cy.user_id}/bar"
    assert_error(httpx.put(bar_url, headers=auth(shop.host)), 403, "forbidden")
    next_one = started(shop, duration_seconds=60)
    assert httpx.put(bar_url, headers=auth(shop.admin)).status_code == 200
    assert_error(bid(pair[1].base_url, cy.token, next_one["id"], 1000), 403, "barred")
    assert httpx.delete(bar_url, headers=auth(shop.admin)).status_code == 200
    assert placed(shop.base_url, cy.token, next_one["id"], 1000)["outcome"] == "leading"


async def test_with_the_host_policy_an_unpaid_win_ends_the_auction_unsold(shop: Shop) -> None:
    """`unpaid: host`: when the winner does not pay, the item goes back to the host (unsold), nobody else is asked."""
    ada, bob = Person("Ada"), Person("Bob")
    auction = started(shop, duration_seconds=1, mode="sudden_death", pay_seconds=1, unpaid="host")
    placed(shop.base_url, ada.token, auction["id"], 1000)
    placed(shop.base_url, bob.token, auction["id"], 1100)
    unsold = reaches(shop.base_url, auction["id"], "unsold", timeout=15)
    assert unsold["award"] == {"round": 1, "state": "unpaid"}


async def test_bids_are_refused_for_guests_the_banned_after_the_end_and_too_low(shop: Shop) -> None:
    """A guest, a person banned from the room, a bid under the next bid or after a sudden-death end: refused with a
    code that says why; one auction per room at a time; an auction nobody bid on ends unsold."""
    auction = started(shop, duration_seconds=2, mode="sudden_death")
    aid = auction["id"]
    assert_error(start(shop), 409, "auction_running")
    assert_error(bid(shop.base_url, shop.guest(), aid, 1000), 403, "sign_in_required")
    troll = Person("Troll")
    async with await RoomClient.connect(shop.room_url(shop.moderator)) as moderator:
        assert (await moderator.request("chat.ban", user_id=troll.user_id))["type"] == "ack"
    assert_error(bid(shop.base_url, troll.token, aid, 1000), 403, "banned")
    assert_error(bid(shop.base_url, Person().token, aid, 999), 409, "too_low")
    assert_error(bid(shop.base_url, Person().token, aid, 0), 400, "bad_request")
    wait_until(lambda: card(shop.base_url, aid)["server_time"] >= auction["ends_at"], 10)
    assert_error(bid(shop.base_url, Person().token, aid, 1000), 409, "auction_closed")
    assert reaches(shop.base_url, aid, "unsold")["bids"] == 0
    assert_error(start(shop, increments=[[10, 5]]), 400, "bad_request")
    assert_error(start(shop, mode="dutch"), 400, "bad_request")


async def test_a_member_who_wins_hears_by_messenger_and_a_signed_out_session_cannot_bid(
    shop: Shop, pair: list[ServerProcess]
) -> None:
    """A winner signed in with an email gets the win by the messenger (with the order to pay); once they sign out,
    their token's bids are refused on every process."""
    email = new_email()
    member = sign_in(shop.base_url, {"email": email})
    auction = started(shop, duration_seconds=1, mode="sudden_death")
    placed(shop.base_url, member["token"], auction["id"], 1000)

    def inbox() -> list[str]:
        found = httpx.get(f"{shop.base_url}/api/sandbox/inbox", params={"email": email}, timeout=seconds(10))
        return [message["text"] for message in found.json()["messages"]]

    wait_until(lambda: any("You won" in text for text in inbox()), 15)
    awarded = reaches(shop.base_url, auction["id"], "awarded")
    assert "Red scarf" in inbox()[0] and "10.00 USD" in inbox()[0] and awarded["winner"] == member["user"]["name"]

    signed_out = httpx.post(f"{shop.base_url}/api/sessions/sign-out", headers=auth(member["token"]))
    assert signed_out.status_code == 204
    next_one = started(shop, duration_seconds=60)
    me = f"{pair[1].base_url}/api/me"
    wait_until(lambda: httpx.get(me, headers=auth(member["token"])).status_code == 401, 5)  # every process hears
    for server in pair:
        assert_error(bid(server.base_url, member["token"], next_one["id"], 1000), 401, "invalid_token")
    assert card(shop.base_url, next_one["id"])["bids"] == 0


async def test_an_auction_whose_redis_keys_are_lost_closes_on_its_recorded_bids(shop: Shop, redis_url: str) -> None:
    """Redis loses a running auction (a flush, a failover without the data): the clock closes it on the bids the
    record has, and offers the win to the highest of them; nothing waits forever."""
    ada, bob = Person("Ada"), Person("Bob")
    auction = started(shop, duration_seconds=600)
    placed(shop.base_url, ada.token, auction["id"], 1000)
    placed(shop.base_url, bob.token, auction["id"], 1500)
    wait_until(lambda: len(bids_of(shop, auction["id"])) == 2)

    redis = Redis.from_url(redis_url)
    try:
        lost = await redis.keys(f"room:{{{shop.room_id}}}:auction:{auction['id']}*")
        await redis.delete(*lost)
    finally:
        await redis.aclose()
    offered = reaches(shop.base_url, auction["id"], "awarded", timeout=10)
    assert (offered["winner"], offered["price"], offered["bids"]) == ("Bob", 1500, 2)
