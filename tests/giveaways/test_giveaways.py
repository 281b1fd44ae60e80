"""Giveaways against real Redis, PostgreSQL and two server processes (docs/giveaways.md): the published draw checked
by the verification script, watch time from presence, the conditions, claims and redraws."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtests.support.server import ServerProcess
from server.giveaways import draw
from tests.client import RoomClient
from tests.conftest import Person, Shop
from tests.giveaways.conftest import SLOT_MS, card, claim, drawn, enter, progress, start, started
from tests.sale_helpers import assert_error, auth, wait_until
from tests.timing import seconds

pytestmark = pytest.mark.anyio


def verify(source: str) -> subprocess.CompletedProcess[str]:
    """Run the repository's verification script on a published draw (a URL or a saved file)."""
    return subprocess.run(
        [sys.executable, "-m", "server.giveaways.verify", source],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=False,
    )


async def test_the_verification_script_reproduces_a_recorded_draw_and_fails_on_a_tampered_one(
    shop: Shop, pair: list[ServerProcess], tmp_path: Path
) -> None:
    """Entrants on both processes; at the close the published draw is reproduced by the script, the winners are the
    ranking's first places and were told privately; a tampered entrant list or seed fails the check."""
    people = [Person(f"Fan {index}") for index in range(7)]
    async with await RoomClient.connect(shop.room_url(people[0].token)) as first_winner_socket:
        giveaway = started(shop, winners=3, duration_seconds=2)
        assert "seed" not in giveaway and len(giveaway["commitment"]) == 64
        tickets = {}
        for index, person in enumerate(people):
            response = enter(pair[index % 2].base_url, person.token, giveaway["id"])
            assert response.status_code == 201, response.text
            tickets[person.user_id] = response.json()["ticket"]
        again = enter(pair[1].base_url, people[0].token, giveaway["id"])
        assert again.status_code == 200 and again.json()["ticket"] == tickets[people[0].user_id]

        result = drawn(shop.base_url, giveaway["id"])
        published = httpx.get(f"{pair[1].base_url}/api/giveaways/{giveaway['id']}/draw", timeout=seconds(10)).json()
        assert published["entrants"] == sorted(tickets.values())
        assert draw.commitment(published["seed"]) == giveaway["commitment"] == published["commitment"]
        ranked = draw.ranking(published["seed"], list(tickets.values()))
        assert [winner["ticket"] for winner in result["winners"]] == ranked[:3]
        assert result["entrants"] == 7 and result["seed"] == published["seed"]

        checked = verify(f"{shop.base_url}/api/giveaways/{giveaway['id']}/draw")
        assert checked.returncode == 0 and "verified" in checked.stdout, checked.stdout + checked.stderr

        winner_ids = {user for user, ticket in tickets.items() if ticket in ranked[:3]}
        if people[0].user_id in winner_ids:
            told = await first_winner_socket.wait_event("giveaway.won", giveaway_id=giveaway["id"])
            assert told["ticket"] == tickets[people[0].user_id]
        mine = progress(shop.base_url, people[0].token, giveaway["id"])
        assert (mine["won"] is not None) == (people[0].user_id in winner_ids)

    tampered = {**published, "entrants": sorted([*published["entrants"][1:], "T-TAMPERED22"])}
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    failed = verify(str(tmp_path / "tampered.json"))
    assert failed.returncode == 1 and "entrant list does not match" in failed.stdout

    reseeded = {**published, "seed": draw.new_seed()}
    (tmp_path / "reseeded.json").write_text(json.dumps(reseeded))
    failed = verify(str(tmp_path / "reseeded.json"))
    assert failed.returncode == 1 and "commitment" in failed.stdout


async def test_watch_time_counts_only_while_present_across_reconnects_and_processes(
    shop: Shop, pair: list[ServerProcess]
) -> None:
    """Watch time grows while the viewer has a room socket open (on either process), stops while they are away,
    and goes on from there when they come back; entering waits for enough of it."""
    watcher, other = Person("Watcher"), Person("Other")
    needed = 3 * SLOT_MS // 1000 + 2  # seconds: several slots
    giveaway = started(shop, duration_seconds=60, conditions={"watch_seconds": needed})
    gid = giveaway["id"]

    def watched(person: Person) -> int:
        return int(progress(shop.base_url, person.token, gid)["watched_seconds"])

    async with await RoomClient.connect(shop.room_url(other.token)):
        async with await RoomClient.connect(shop.room_url(watcher.token)):
            wait_until(lambda: watched(watcher) >= 1, 10)
            refused = enter(shop.base_url, watcher.token, gid)
            assert_error(refused, 409, "watch_more")
        away_at = watched(watcher)
        other_at = watched(other)
        wait_until(lambda: watched(other) >= other_at + 2, 10)  # two seconds pass for someone present
        assert watched(watcher) <= away_at + 1  # at most the slot that was running when the socket closed

        second = shop.room_url(watcher.token).replace(pair[0].ws_url, pair[1].ws_url)
        async with await RoomClient.connect(second):
            wait_until(lambda: watched(watcher) >= needed, 15)
            entered = enter(pair[1].base_url, watcher.token, gid)
            assert entered.status_code == 201, entered.text
    assert watched(watcher) < watched(other)


async def test_entry_conditions_are_checked_and_said_which_is_missing(shop: Shop, pair: list[ServerProcess]) -> None:
    """Signed in, the keyword typed in chat during the giveaway, not banned: each refusal names what is missing;
    one giveaway per room runs at a time; entries close at the end."""
    giveaway = started(shop, duration_seconds=3, conditions={"signed_in": True, "keyword": "Lucky Cat"})
    gid = giveaway["id"]
    assert_error(start(shop), 409, "giveaway_running")
    assert_error(enter(shop.base_url, shop.guest(), gid), 403, "sign_in_required")

    fan, banned = Person("Fan"), Person("Troll")
    assert_error(enter(shop.base_url, fan.token, gid), 409, "keyword_required")
    async with await RoomClient.connect(shop.room_url(fan.token)) as socket:
        reply = await socket.request("chat.send", text="I want the lucky  CAT!!")
        assert reply["type"] == "ack", reply
    assert progress(pair[1].base_url, fan.token, gid)["keyword_said"] is True
    assert enter(pair[1].base_url, fan.token, gid).status_code == 201

    async with await RoomClient.connect(shop.room_url(shop.moderator)) as moderator:
        assert (await moderator.request("chat.ban", user_id=banned.user_id))["type"] == "ack"
    assert_error(enter(shop.base_url, banned.token, gid), 403, "banned")

    drawn(shop.base_url, gid)
    late = Person("Late")
    assert_error(enter(shop.base_url, late.token, gid), 409, "giveaway_closed")
    assert started(shop, duration_seconds=1)["state"] == "open"  # the room may run the next one


async def test_an_unclaimed_prize_is_redrawn_from_the_same_published_ranking(
    shop: Shop, pair: list[ServerProcess]
) -> None:
    """A winner who does not claim in time forfeits; the prize goes to the next in the ranking, who claims with an
    address the studio sees; the published draw still verifies; a late or a stranger's claim is refused."""
    people = {person.user_id: person for person in (Person(f"Fan {index}") for index in range(4))}
    giveaway = started(shop, duration_seconds=1, claim_seconds=round(seconds(3)))
    gid = giveaway["id"]
    for person in people.values():
        assert enter(shop.base_url, person.token, gid).status_code == 201
    first = drawn(shop.base_url, gid)["winners"][0]

    def winners() -> list[dict[str, Any]]:
        return list(card(shop.base_url, gid)["winners"])

    wait_until(lambda: len(winners()) == 2, 15)
    forfeited, second = winners()
    assert forfeited["ticket"] == first["ticket"] and forfeited["state"] == "forfeited"
    assert second["rank"] == 2 and second["state"] == "won"

    staff = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/giveaways/{gid}", headers=auth(shop.admin))
    owner = {entry["ticket"]: entry["user_id"] for entry in staff.json()["entrants_list"]}
    late, winner = people[owner[first["ticket"]]], people[owner[second["ticket"]]]
    assert_error(claim(shop.base_url, late.token, gid), 409, "claim_expired")
    stranger = next(person for person in people.values() if person not in (late, winner))
    assert_error(claim(shop.base_url, stranger.token, gid), 403, "not_a_winner")

    claimed = claim(pair[1].base_url, winner.token, gid, phone="+15550100")
    assert claimed.status_code == 201, claimed.text
    assert claim(shop.base_url, winner.token, gid).json() == claimed.json()
    staff = httpx.get(f"{shop.base_url}/api/merchants/{shop.merchant_id}/giveaways/{gid}", headers=auth(shop.admin))
    assert staff.json()["claims"][0]["address"] == "1 Main St, Springfield"
    assert winners()[1]["state"] == "claimed"
    checked = verify(f"{shop.base_url}/api/giveaways/{gid}/draw")
    assert checked.returncode == 0, checked.stdout


async def test_a_giveaway_with_nobody_entered_closes_with_no_winner(shop: Shop) -> None:
    """No entrant: drawn with an empty list, no winner; the published draw verifies."""
    giveaway = started(shop, duration_seconds=1, winners=2)
    result = drawn(shop.base_url, giveaway["id"])
    assert result["entrants"] == 0 and result["winners"] == []
    assert verify(f"{shop.base_url}/api/giveaways/{giveaway['id']}/draw").returncode == 0


async def test_bad_terms_are_refused(shop: Shop) -> None:
    """A watch condition longer than the giveaway allows, too many winners, or a blank keyword is refused."""
    assert_error(start(shop, duration_seconds=10, conditions={"watch_seconds": 11}), 400, "bad_request")
    assert_error(start(shop, winners=101), 400, "bad_request")
    assert_error(start(shop, conditions={"keyword": "   "}), 400, "bad_request")
    assert_error(start(shop, duration_seconds=901), 400, "bad_request")


async def test_one_entry_per_person_whatever_the_concurrency(shop: Shop, pair: list[ServerProcess]) -> None:
    """Ten taps on Enter at once, on both processes: one entry (one 201), the same ticket for all."""
    fan = Person("Eager")
    giveaway = started(shop, duration_seconds=60)
    async with httpx.AsyncClient(timeout=seconds(10)) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{pair[index % 2].base_url}/api/giveaways/{giveaway['id']}/entries", headers=auth(fan.token)
                )
                for index in range(10)
            )
        )
    assert sorted(answer.status_code for answer in answers) == [200] * 9 + [201]
    assert len({answer.json()["ticket"] for answer in answers}) == 1
    assert card(shop.base_url, giveaway["id"])["entrants"] == 1
