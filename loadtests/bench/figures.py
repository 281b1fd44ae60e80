"""A bench's summary figures: a percentile of its samples in ms, and over its rounds the median and the ratio of
two figures; None where there is nothing to compute."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from loadtests.bench import wsclient


def ms(values: list[float], fraction: float) -> float | None:
    """The `fraction` percentile of `values` (ms), to 0.1 ms."""
    return round(wsclient.percentile(values, fraction), 1) if values else None


def median(values: Iterable[float | None]) -> float | None:
    """The median of the figures present, to 0.1."""
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 1) if present else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, to 0.01."""
    return round(top / bottom, 2) if top is not None and bottom else None
