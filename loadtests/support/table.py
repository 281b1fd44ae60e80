"""Markdown tables for benchmark reports: a header, a rule, one row per run, `n/a` where a run has no figure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    """A figure as the tables show it: thousands separated, one decimal below 100, `n/a` for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """One markdown table; each row has a value (or None) per column."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
