"""The draw check of the pages (static/js/draw.js, run in Node with WebCrypto) against server/giveaways/draw.py: the
same commitment, entrants' hash and ranking on the same data, and a tampered seed, entrant list or winner fails."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from typing import Any

import orjson

from server.giveaways import draw
from tests.conftest import ROOT
from tests.timing import seconds

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

# Reads {seed, tickets, draw} on stdin; prints what draw.js computes of them.
SCRIPT = """
import { commitmentOf, entrantsHash, ranking, verify } from "./static/js/draw.js";
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString());
console.log(JSON.stringify({
  commitment: await commitmentOf(input.seed),
  entrants_hash: await entrantsHash(input.tickets),
  ranking: await ranking(input.seed, input.tickets),
  verified: await verify(input.draw),
}));
"""


def ticket() -> str:
    return "T-" + "".join(secrets.choice(ALPHABET) for _ in range(10))


def published(seed: str, tickets: list[str], winners: int) -> dict[str, Any]:
    """A draw as GET /api/giveaways/{g}/draw publishes it, made with the server's functions."""
    ranked = draw.ranking(seed, tickets)
    return {
        "giveaway_id": "g1",
        "commitment": draw.commitment(seed),
        "seed": seed,
        "entrants": sorted(tickets),
        "entrants_hash": draw.entrants_hash(tickets),
        "winners": [
            {"rank": rank, "ticket": ranked[rank - 1], "name": f"Fan {rank}", "state": "won"}
            for rank in range(1, min(winners, len(tickets)) + 1)
        ],
        "winners_count": winners,
    }


def in_node(seed: str, tickets: list[str], published_draw: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "the draw check test needs Node.js (scripts/test installs Debian's nodejs)"
    printed = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT],
        cwd=ROOT,
        input=orjson.dumps({"seed": seed, "tickets": tickets, "draw": published_draw}),
        capture_output=True,
        timeout=seconds(30),
        check=True,
    )
    result: dict[str, Any] = orjson.loads(printed.stdout)
    return result


def checks(result: dict[str, Any]) -> dict[str, bool]:
    return {check["name"]: check["ok"] for check in result["verified"]["checks"]}


def test_the_page_computes_what_the_server_computes() -> None:
    """On 200 random tickets, draw.js gives the server's commitment, entrants' hash and ranking, and verifies the
    server's draw: every check passes."""
    seed = draw.new_seed()
    tickets = [ticket() for _ in range(200)]
    result = in_node(seed, tickets, published(seed, tickets, 3))
    assert result["commitment"] == draw.commitment(seed)
    assert result["entrants_hash"] == draw.entrants_hash(tickets)
    assert result["ranking"] == draw.ranking(seed, tickets)
    assert result["verified"]["ranking"] == draw.ranking(seed, tickets)
    assert result["verified"]["ok"] is True
    assert checks(result) == {"commitment": True, "entrants": True, "winners": True}


def test_a_redraw_takes_the_next_rank() -> None:
    """A winner who forfeited stays listed at their rank and the next rank took the prize: still verified."""
    seed = draw.new_seed()
    tickets = [ticket() for _ in range(20)]
    redrawn = published(seed, tickets, 2)
    redrawn["winners"][0]["state"] = "forfeited"
    redrawn["winners"].append({"rank": 3, "ticket": draw.ranking(seed, tickets)[2], "name": "Fan 3", "state": "won"})
    assert in_node(seed, tickets, redrawn)["verified"]["ok"] is True


def test_no_entrants_is_a_draw_with_no_winner() -> None:
    """A giveaway nobody entered: the empty list's hash matches and no winner is owed."""
    seed = draw.new_seed()
    result = in_node(seed, [], published(seed, [], 1))
    assert result["entrants_hash"] == draw.entrants_hash([])
    assert result["verified"]["ok"] is True


def test_an_entrant_added_after_the_close_fails_the_entrants_check() -> None:
    """A ticket slipped into the published list no longer matches the published entrants' hash."""
    seed = draw.new_seed()
    tickets = [ticket() for _ in range(30)]
    tampered = published(seed, tickets, 1)
    tampered["entrants"] = sorted([*tickets, ticket()])
    result = in_node(seed, tickets, tampered)
    assert result["verified"]["ok"] is False
    assert checks(result)["entrants"] is False
    assert checks(result)["commitment"] is True


def test_a_seed_other_than_the_committed_one_fails() -> None:
    """A draw run on another seed than the one committed to fails the commitment check (and its winners differ)."""
    seed = draw.new_seed()
    tickets = [ticket() for _ in range(30)]
    other = draw.new_seed()
    tampered = published(other, tickets, 3)
    tampered["commitment"] = draw.commitment(seed)
    result = in_node(seed, tickets, tampered)
    assert result["verified"]["ok"] is False
    assert checks(result)["commitment"] is False


def test_a_winner_out_of_ranking_order_fails() -> None:
    """A published winner who is not the ticket at their rank fails the winners check."""
    seed = draw.new_seed()
    tickets = [ticket() for _ in range(30)]
    tampered = published(seed, tickets, 1)
    tampered["winners"][0]["ticket"] = draw.ranking(seed, tickets)[5]
    result = in_node(seed, tickets, tampered)
    assert checks(result) == {"commitment": True, "entrants": True, "winners": False}
