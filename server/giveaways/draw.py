"""The draw of a giveaway (docs/giveaways.md, "The draw"): commitment, entrants' hash, ranking, winners.

Standard library only, so anyone can read it in a minute and run it anywhere; `static/js/draw.js` does the same in
the browser (tests/giveaways/test_draw_js.py runs both on the same data).
"""

from __future__ import annotations

import hashlib
import secrets


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_seed() -> str:
    """A secret seed: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    """What is published at the start: the seed's hash."""
    return sha256(seed)


def entrants_hash(tickets: list[str]) -> str:
    """The hash of the entrant list, sorted (published at the close)."""
    return sha256("\n".join(sorted(tickets)))


def ranking(seed: str, tickets: list[str]) -> list[str]:
    """Every ticket in draw order: by sha256(seed + ":" + ticket), then ticket. Winners are the first ones; each
    redraw takes the next."""
    return sorted(tickets, key=lambda ticket: (sha256(f"{seed}:{ticket}"), ticket))
