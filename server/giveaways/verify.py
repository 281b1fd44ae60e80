"""Check a giveaway's published draw (docs/giveaways.md): python -m server.giveaways.verify <url or file>.

Exit 0 and "verified" when the seed matches the commitment, the entrant list its hash and the winners the ranking;
exit 1 saying what differs otherwise. Standard library only.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

from server.giveaways import draw


def problems(published: dict[str, Any]) -> list[str]:
    """What in a published draw does not follow from its seed and entrants (nothing: the draw is verified)."""
    found = []
    seed, entrants = published["seed"], published["entrants"]
    if draw.commitment(seed) != published["commitment"]:
        found.append("the seed does not match the commitment published at the start")
    if draw.entrants_hash(entrants) != published["entrants_hash"]:
        found.append("the entrant list does not match the hash published at the close")
    if entrants != sorted(entrants) or len(set(entrants)) != len(entrants):
        found.append("the entrant list is not sorted, or has a ticket twice")
    ranked = draw.ranking(seed, entrants)
    winners = sorted(published["winners"], key=lambda winner: winner["rank"])
    if [winner["rank"] for winner in winners] != list(range(1, len(winners) + 1)):
        found.append("the winners' ranks are not 1, 2, 3…")
    for winner in winners:
        rank = winner["rank"]
        if rank > len(ranked) or ranked[rank - 1] != winner["ticket"]:
            found.append(f"rank {rank}: ticket {winner['ticket']} is not that place in the ranking")
    expected = min(published["winners_count"], len(entrants))
    if sum(winner["state"] != "forfeited" for winner in winners) > expected:
        found.append("more winners hold a prize than there are prizes")
    if len(winners) < expected:
        found.append(f"{expected} winners were due, {len(winners)} published")
    return found


def _load(source: str) -> dict[str, Any]:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as reply:
            data: dict[str, Any] = json.load(reply)
            return data
    with open(source) as handle:
        loaded: dict[str, Any] = json.load(handle)
        return loaded


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m server.giveaways.verify <url of /api/giveaways/{id}/draw, or a saved file>")
        return 2
    found = problems(_load(argv[0]))
    for problem in found:
        print(f"FAILED: {problem}")
    if not found:
        print("verified: the winners follow from the committed seed and the published entrants")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
